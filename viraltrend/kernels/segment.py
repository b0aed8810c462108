"""One compiled call per segment of a batch: user signals, decayed counters and trust counters.

Between two ticks the engine adds a segment of accepted events to its state.  Done step by step
(:meth:`~viraltrend.kernels.users.UserSignals.process`, :meth:`DecayedCounters.add
<viraltrend.kernels.decay.DecayedCounters.add>` twice, :func:`~viraltrend.kernels.columns.trust_rows`)
each step checks its inputs in Python again; on a day of 10-second ticks the segments are small and
those checks cost more than the loops.  :func:`apply_segment` runs the same kernels in the same
order in one numba call, so every sum is added in the same order and the state is bit-identical
(the tests compare it with the step-by-step path).  It checks once what the steps would have
checked, and returns None (the caller then takes the steps) when a step would do something else
than its loop: a counter without a landmark yet, a landmark to move, or any input out of range.
:func:`apply_segment_all`, the one the engine calls, adds the audience steps to the same call.
"""

from __future__ import annotations

import math
from typing import Any, Final, NamedTuple, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels._checks import check_range
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.audience import (
    ActivityCounts,
    AudienceSketches,
    _bottomk_update_val,
    _count_min_observe,
    _union_rows,
)
from viraltrend.kernels.columns import (
    BELOW_MARGIN,
    SORT_STACK,
    _baseline_rates,
    _below,
    _keep_hot,
    _trust_rows,
    _trust_rows_into,
)
from viraltrend.kernels.cusum import ChangeDetector
from viraltrend.kernels.decay import (
    _EVERY_ROW,
    _MAX_ABS_TS_MS,
    PREFETCH_DISTANCE,
    DecayedCounters,
    _add_events,
    _decay_live_rows_flat,
    _exp,
    _scaled_by,
    live_rows,
)
from viraltrend.kernels.ndjson import EVENT_TYPES
from viraltrend.kernels.prefilter import (
    Screen,
    TickBaseline,
    _evict_horizon,
    _evict_looked,
    _tick_prelude_into,
)
from viraltrend.kernels.users import (
    _MAX_PRODUCT,
    _SCAN_BUCKETS,
    UserSignals,
    _compact_step,
    _live_entry,
    _process,
    _process_into,
    _unwatch,
    _watch,
)

__all__ = [
    "AFTER",
    "AudienceStep",
    "CATALOGUE",
    "BEFORE",
    "DONE",
    "EvictSweep",
    "SEGMENT",
    "SweepPlan",
    "TAIL",
    "TickRun",
    "VETERAN_MS",
    "apply_segment",
    "apply_segment_all",
    "fold_funnel",
    "run_ticks",
]

_NEVER: Final = int(np.iinfo(np.int64).min)
_INT64_MAX: Final = int(np.iinfo(np.int64).max)
_I32_LO, _I32_HI = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)
_I64, _I8 = np.dtype(np.int64), np.dtype(np.int8)
_VIEW: Final = EVENT_TYPES.index("view")
_CART: Final = EVENT_TYPES.index("add_to_cart")  # and purchase after it: a buy
_Int: TypeAlias = int | np.integer[Any]


@no_refcounts
def _valid(
    slots: NDArray[np.int64], users: NDArray[np.int64], types: NDArray[np.int8], ts: NDArray[np.int64],
    n_slots: int, n_users: int, n_types: int, max_abs_ts: int,
) -> bool:  # fmt: skip
    """Every input within what each step accepts."""
    for i in range(slots.shape[0]):
        if not (0 <= slots[i] < n_slots and 0 <= users[i] < n_users and 0 <= types[i] < n_types):
            return False
        if ts[i] < -max_abs_ts or ts[i] > max_abs_ts:
            return False
    return True


@no_refcounts
def _segment_ok(
    slots: NDArray[np.int64], users: NDArray[np.int64], types: NDArray[np.int8], ts: NDArray[np.int64],
    n_slots: int, n_users: int, n_types: int, max_abs_ts: int, landmark: np.int64, t_landmark: np.int64,
    lam_max: float, renorm: float, t_lam_max: float, t_renorm: float,
) -> bool:  # fmt: skip
    """:func:`_checked_segment`'s checks: :func:`_valid` and ``_steady`` of both counters."""
    if not _valid(slots, users, types, ts, n_slots, n_users, n_types, max_abs_ts):
        return False
    ts_max = ts[0]
    for i in range(1, ts.shape[0]):
        ts_max = max(ts_max, ts[i])
    if not (
        lam_max * (ts_max - landmark) / 1000.0 <= renorm
        and t_lam_max * (ts_max - t_landmark) / 1000.0 <= t_renorm
    ):
        return False
    return True


@no_refcounts
def _mark_first(slots: NDArray[np.int64], last_ts: NDArray[np.int64], never: _Int) -> int:
    """:func:`_segment`'s first step: the slots with no event before get ``never + 1``; their count."""
    n_first = 0
    for i in range(slots.shape[0]):  # mark: _add_events then sets the true last time (> never + 1)
        if last_ts[slots[i]] == never:
            last_ts[slots[i]] = never + 1
            n_first += 1
    return n_first


@njit(cache=True)
def _segment(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    slots: NDArray[np.int64], users: NDArray[np.int64], types: NDArray[np.int8], ts: NDArray[np.int64],
    cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int, min_capacity: _Int,
    acc: NDArray[np.float64], g_acc: NDArray[np.float64], first_ts: NDArray[np.int64],
    last_ts: NDArray[np.int64], lam: NDArray[np.float64], landmark: np.int64,
    t_acc: NDArray[np.float64], t_g_acc: NDArray[np.float64], t_first_ts: NDArray[np.int64],
    t_last_ts: NDArray[np.int64], t_lam: NDArray[np.float64], t_landmark: np.int64, never: _Int,
    prefetch: int,
) -> tuple[NDArray[np.int64], _Int, _Int, NDArray[np.bool_], _Int]:  # fmt: skip
    """The steps of :func:`apply_segment` in one call.

    Returns the user table, its entry count, ``max_ts_ms``, ``new_pair`` bool[n] and the number
    of distinct slots that held no event before.
    """
    n_first = _mark_first(slots, last_ts, never)
    rows, used, max_ts_ms, weight, new_pair, fresh = _process(
        rows,
        used,
        max_ts_ms,
        first_seen_ms,
        slots,
        users,
        types,
        ts,
        cap_window_ms,
        fresh_window_ms,
        lateness_ms,
        min_capacity,
        prefetch,
    )
    _add_events(acc, g_acc, first_ts, last_ts, slots, types, ts, weight, lam, landmark, prefetch)
    t_slots, channel, t_ts = _trust_rows(slots, ts, new_pair, fresh)
    ones = np.ones(channel.shape[0], np.float64)
    _add_events(
        t_acc, t_g_acc, t_first_ts, t_last_ts, t_slots, channel, t_ts, ones, t_lam, t_landmark, prefetch
    )
    return rows, used, max_ts_ms, new_pair, n_first


@njit(cache=True)
def _checked_segment(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    slots: NDArray[np.int64], users: NDArray[np.int64], types: NDArray[np.int8], ts: NDArray[np.int64],
    cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int, min_capacity: _Int,
    acc: NDArray[np.float64], g_acc: NDArray[np.float64], first_ts: NDArray[np.int64],
    last_ts: NDArray[np.int64], lam: NDArray[np.float64], landmark: np.int64,
    t_acc: NDArray[np.float64], t_g_acc: NDArray[np.float64], t_first_ts: NDArray[np.int64],
    t_last_ts: NDArray[np.int64], t_lam: NDArray[np.float64], t_landmark: np.int64, never: _Int,
    prefetch: int, n_slots: int, n_users: int, n_types: int, max_abs_ts: int, lam_max: float, renorm: float,
    t_lam_max: float, t_renorm: float,
) -> tuple[bool, NDArray[np.int64], _Int, _Int, NDArray[np.bool_], _Int]:  # fmt: skip
    """:func:`_valid`, ``_steady`` of both counters, :func:`_segment`; False (no change) if a check fails."""
    if not _segment_ok(
        slots, users, types, ts, n_slots, n_users, n_types, max_abs_ts, landmark, t_landmark, lam_max, renorm,
        t_lam_max, t_renorm,
    ):  # fmt: skip
        return False, rows, used, max_ts_ms, np.zeros(0, np.bool_), 0
    rows, used, max_ts_ms, new_pair, first = _segment(
        rows,
        used,
        max_ts_ms,
        first_seen_ms,
        slots,
        users,
        types,
        ts,
        cap_window_ms,
        fresh_window_ms,
        lateness_ms,
        min_capacity,
        acc,
        g_acc,
        first_ts,
        last_ts,
        lam,
        landmark,
        t_acc,
        t_g_acc,
        t_first_ts,
        t_last_ts,
        t_lam,
        t_landmark,
        never,
        prefetch,
    )
    return True, rows, used, max_ts_ms, new_pair, first


def _segment_args(
    signals: UserSignals,
    counters: DecayedCounters,
    trust: DecayedCounters,
    slots: NDArray[np.int64],
    users: NDArray[np.int64],
    types: NDArray[np.int8],
    ts_ms: NDArray[np.int64],
) -> tuple[Any, ...] | None:
    """The arguments :func:`_checked_segment` and :func:`_segment_all` share, or None.

    None where a segment must be taken step by step: empty, other dtypes or shapes, a counter
    without a landmark, fewer than 3 trust channels.  Columns are made contiguous.
    """
    n = slots.shape[0]
    shape = (n,)
    if (
        n == 0
        or slots.dtype != _I64
        or users.dtype != _I64
        or types.dtype != _I8
        or ts_ms.dtype != _I64
        or slots.shape != shape
        or users.shape != shape
        or types.shape != shape
        or ts_ms.shape != shape
    ):
        return None
    if trust.n_types < 3 or counters._landmark_ms is None or trust._landmark_ms is None:  # noqa: SLF001
        return None
    n_slots = min(counters.capacity, trust.capacity, _MAX_PRODUCT)
    slots, users = np.ascontiguousarray(slots), np.ascontiguousarray(users)
    types, ts_ms = np.ascontiguousarray(types), np.ascontiguousarray(ts_ms)
    return (
        signals.rows, signals._used, signals._max_ts_ms, signals.first_seen_ms,  # noqa: SLF001
        slots, users, types, ts_ms, signals.cap_window_ms, signals.fresh_window_ms,
        signals.allowed_lateness_ms, signals.min_table_capacity,
        counters.acc, counters.global_acc, counters.first_ts_ms, counters.last_ts_ms, counters.lam,
        np.int64(counters._landmark_ms), trust.acc, trust.global_acc, trust.first_ts_ms,  # noqa: SLF001
        trust.last_ts_ms, trust.lam, np.int64(trust._landmark_ms), _NEVER, PREFETCH_DISTANCE,  # noqa: SLF001
        n_slots, signals.capacity_users, counters.n_types, _MAX_ABS_TS_MS,
        counters._lam_max, counters.renorm_exponent, trust._lam_max, trust.renorm_exponent,  # noqa: SLF001
    )  # fmt: skip


def apply_segment(
    signals: UserSignals,
    counters: DecayedCounters,
    trust: DecayedCounters,
    slots: NDArray[np.int64],
    users: NDArray[np.int64],
    types: NDArray[np.int8],
    ts_ms: NDArray[np.int64],
) -> tuple[NDArray[np.bool_], int] | None:
    """Add a segment (``slots``, ``users`` int64[n], ``types`` int8[n], ``ts_ms`` int64[n]) in one call.

    Exactly ``weight, new_pair, fresh = signals.process(slots, users, types, ts_ms)``,
    ``counters.add(slots, types, ts_ms, weight)``, ``trust.add(*trust_rows(slots, ts_ms,
    new_pair, fresh), ones)`` (trust channels 0, 1, 2 as types).  Returns ``(new_pair bool[n],
    first)``, ``first`` the number of distinct slots whose ``counters.last_ts_ms`` was unset before,
    or None, changing nothing, when the steps must be taken one by one (see the module docstring).
    ``trust`` may keep no times (``times=False``: empty ``first_ts_ms``, which ``_add_events`` skips).
    """
    args = _segment_args(signals, counters, trust, slots, users, types, ts_ms)
    if args is None:
        return None
    # _valid, _steady (both counters) and _segment in one call: False when a check fails
    ok, rows, used, max_ts, new_pair, first = _checked_segment(*args)
    if not ok:
        return None
    signals.rows, signals._used, signals._max_ts_ms = rows, int(used), int(max_ts)  # noqa: SLF001
    return new_pair, int(first)


@njit(cache=True)
def _segment_all(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    s_slots: NDArray[np.int64], s_users: NDArray[np.int64], s_types: NDArray[np.int8],
    s_ts: NDArray[np.int64], cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int,
    min_capacity: _Int,
    acc: NDArray[np.float64], g_acc: NDArray[np.float64], first_ts: NDArray[np.int64],
    last_ts: NDArray[np.int64], lam: NDArray[np.float64], landmark: np.int64,
    t_acc: NDArray[np.float64], t_g_acc: NDArray[np.float64], t_first_ts: NDArray[np.int64],
    t_last_ts: NDArray[np.int64], t_lam: NDArray[np.float64], t_landmark: np.int64, never: _Int,
    prefetch: int, n_slots: int, n_users: int, n_types: int, max_abs_ts: int, lam_max: float, renorm: float,
    t_lam_max: float, t_renorm: float,
    sig: NDArray[np.uint64], val: NDArray[np.uint16], fun: NDArray[np.uint8], nonempty: NDArray[np.bool_],
    row_of: NDArray[np.int64], seed: np.int64, cells: NDArray[np.uint16], ev_hash: NDArray[np.int64],
    view_code: int, cart_code: int, scratch: SegmentScratch,
) -> tuple[bool, NDArray[np.int64], _Int, _Int, _Int, int, int, int]:  # fmt: skip
    """The engine's ``_apply`` of one segment in one call: :func:`_checked_segment`, then the audiences.

    After the user signals and both counters: the events' users' activity counts
    (``ActivityCounts.observe``), whether each cart or purchase's user viewed the product lately
    (``UserSignals.counted_lately``), the audience samples (``AudienceSketches.update``).  Returns
    ``(ok, rows, used, max_ts_ms, first, n_buys, n_blind, n_new)``: ``first`` the slots with no
    event before, ``n_buys``/``n_blind`` the carts and purchases and those with no view lately
    (the funnel share's), ``scratch.fresh[:n_new]`` the slots of the events that were a new
    (product, user) pair; ``ok`` False: nothing changed (a check of :func:`_checked_segment` failed).
    Its per-event columns live in ``scratch`` (:func:`segment_scratch`, at least the segment's length):
    the tick loop allocates them once per call, not per segment (perf27).
    """
    # _checked_segment's steps written out (its checks, then _segment's): each compiled call takes and
    # drops a reference on every array it receives (perf23: the two calls were 15 % of a Taobao
    # replay's NRT_incref calls)
    if not _segment_ok(
        s_slots, s_users, s_types, s_ts, n_slots, n_users, n_types, max_abs_ts, landmark, t_landmark, lam_max,
        renorm, t_lam_max, t_renorm,
    ):  # fmt: skip
        return False, rows, used, max_ts_ms, 0, 0, 0, 0
    n = s_slots.shape[0]
    weight, new_pair, fresh_pair = scratch.weight[:n], scratch.new_pair[:n], scratch.fresh_pair[:n]
    first = _mark_first(s_slots, last_ts, never)
    rows, used, max_ts_ms = _process_into(
        rows, used, max_ts_ms, first_seen_ms, s_slots, s_users, s_types, s_ts, cap_window_ms, fresh_window_ms,
        lateness_ms, min_capacity, prefetch, weight, new_pair, fresh_pair,
    )  # fmt: skip
    n_buys, n_blind, n_new = _segment_rest(
        rows, max_ts_ms - lateness_ms - cap_window_ms, s_slots, s_users, s_types, s_ts, acc, g_acc,
        first_ts, last_ts, lam, landmark, t_acc, t_g_acc, t_first_ts, t_last_ts, t_lam, t_landmark, prefetch,
        sig, val, fun, nonempty, row_of, seed, cells, ev_hash, view_code, cart_code, scratch,
    )  # fmt: skip
    return True, rows, used, max_ts_ms, first, n_buys, n_blind, n_new


@no_refcounts
def _segment_rest(
    rows: NDArray[np.int64], cutoff_ms: _Int, s_slots: NDArray[np.int64], s_users: NDArray[np.int64],
    s_types: NDArray[np.int8], s_ts: NDArray[np.int64],
    acc: NDArray[np.float64], g_acc: NDArray[np.float64], first_ts: NDArray[np.int64],
    last_ts: NDArray[np.int64], lam: NDArray[np.float64], landmark: np.int64,
    t_acc: NDArray[np.float64], t_g_acc: NDArray[np.float64], t_first_ts: NDArray[np.int64],
    t_last_ts: NDArray[np.int64], t_lam: NDArray[np.float64], t_landmark: np.int64, prefetch: int,
    sig: NDArray[np.uint64], val: NDArray[np.uint16], fun: NDArray[np.uint8], nonempty: NDArray[np.bool_],
    row_of: NDArray[np.int64], seed: np.int64, cells: NDArray[np.uint16], ev_hash: NDArray[np.int64],
    view_code: int, cart_code: int, scratch: SegmentScratch,
) -> tuple[int, int, int]:  # fmt: skip
    """:func:`_segment_all`'s steps after the user signals (their outputs in ``scratch``).

    Both counters, the activity counts, the funnel and the audience samples, then the new pairs'
    slots into ``scratch.fresh``.  Returns ``(n_buys, n_blind, n_new)``; ``cutoff_ms`` is the caps
    table's expiry (a view counted lately is stored at or after it).  Allocates nothing: without
    reference counts (perf27: the tick loop calls it once per tick with events, with ~40 arrays).
    """
    n = s_slots.shape[0]
    weight, new_pair, fresh_pair = scratch.weight[:n], scratch.new_pair[:n], scratch.fresh_pair[:n]
    _add_events(acc, g_acc, first_ts, last_ts, s_slots, s_types, s_ts, weight, lam, landmark, prefetch)
    m = _trust_rows_into(s_slots, s_ts, new_pair, fresh_pair, scratch.t_slots, scratch.channel, scratch.t_ts)
    _add_events(
        t_acc, t_g_acc, t_first_ts, t_last_ts, scratch.t_slots[:m], scratch.channel[:m], scratch.t_ts[:m],
        scratch.ones[:m], t_lam, t_landmark, prefetch,
    )  # fmt: skip
    hashes = ev_hash  # each event's own user hash (a slot may already hold a later user's: _run_ticks)
    activity = scratch.activity[:n]
    _count_min_observe(cells, hashes, activity)
    # the engine's funnel step: carts and purchases, and whether their user viewed lately
    viewed = scratch.viewed[:n]
    n_buys = 0
    n_blind = 0
    for i in range(n):
        seen = False
        if s_types[i] >= cart_code:
            n_buys += 1
            seen = _live_entry(rows, s_slots[i], s_users[i], np.int64(view_code), np.int64(cutoff_ms))
            if not seen:
                n_blind += 1
        viewed[i] = seen
    _bottomk_update_val(sig, val, fun, nonempty, row_of, seed, s_slots, hashes, activity, s_types, viewed)
    fresh = scratch.fresh
    n_new = 0
    for i in range(n):
        if new_pair[i]:
            fresh[n_new] = s_slots[i]
            n_new += 1
    return n_buys, n_blind, n_new


class SegmentScratch(NamedTuple):
    """:func:`_segment_all`'s per-event columns, each at least a segment long.

    ``t_*``, ``channel`` and ``ones`` three times that.  Written before they are read: the user
    signals' outputs, the trust counters' rows (their weights, all 1.0), the activity counts, the
    funnel's ``viewed`` and the new pairs' slots.
    """

    weight: NDArray[np.float64]
    new_pair: NDArray[np.bool_]
    fresh_pair: NDArray[np.bool_]
    t_slots: NDArray[np.int64]
    channel: NDArray[np.int8]
    t_ts: NDArray[np.int64]
    ones: NDArray[np.float64]
    activity: NDArray[np.uint16]
    viewed: NDArray[np.bool_]
    fresh: NDArray[np.int64]


@njit(cache=True)
def segment_scratch(n: int) -> SegmentScratch:
    """:class:`SegmentScratch` for segments of up to ``n`` events."""
    n = max(n, 1)
    return SegmentScratch(
        np.empty(n, np.float64), np.empty(n, np.bool_), np.empty(n, np.bool_),
        np.empty(3 * n, np.int64), np.empty(3 * n, np.int8), np.empty(3 * n, np.int64),
        np.ones(3 * n, np.float64), np.empty(n, np.uint16), np.empty(n, np.bool_), np.empty(n, np.int64),
    )  # fmt: skip


def apply_segment_all(
    signals: UserSignals,
    counters: DecayedCounters,
    trust: DecayedCounters,
    sketches: AudienceSketches,
    activity: ActivityCounts,
    hashes: NDArray[np.uint64],
    slots: NDArray[np.int64],
    users: NDArray[np.int64],
    types: NDArray[np.int8],
    ts_ms: NDArray[np.int64],
) -> tuple[NDArray[np.int64], int, int, int] | None:
    """The engine's ``_apply`` of a segment in one compiled call: :func:`apply_segment`, then the audiences.

    Exactly :func:`apply_segment`'s steps, then with ``hashes`` (uint64[n], each event's user id
    hash, as int64 bits; the user slot's hash when the event was interned)
    ``activity.observe(hashes)``, ``viewed`` (carts and purchases whose pair has a live view entry:
    ``signals.counted_lately``) and ``sketches.update(slots, hashes, activity, types, viewed)``.
    Returns ``(slots[new_pair], first, n_buys, n_blind)`` (``n_blind``: the carts and purchases not
    viewed lately), or None, changing nothing, where :func:`apply_segment` would (the caller then
    takes the steps one by one).
    """
    if hashes.dtype != np.uint64 or hashes.shape != slots.shape:
        return None
    args = _segment_args(signals, counters, trust, slots, users, types, ts_ms)
    if args is None:
        return None
    audiences = (
        sketches.sig, sketches._fit_val(), sketches._fit_fun(), sketches.nonempty, sketches.row_of,  # noqa: SLF001
        np.int64(sketches._seeds[0]),  # noqa: SLF001
        activity.cells, np.ascontiguousarray(hashes).view(np.int64), _VIEW, _CART,
    )  # fmt: skip
    scratch = segment_scratch(slots.shape[0])
    full: tuple[Any, ...] = (*args, *audiences, scratch)
    ok, rows, used, max_ts, first, n_buys, n_blind, n_new = _segment_all(*full)
    if not ok:
        return None
    signals.rows, signals._used, signals._max_ts_ms = rows, int(used), int(max_ts)  # noqa: SLF001
    return scratch.fresh[:n_new].copy(), int(first), int(n_buys), int(n_blind)


# ---------------------------------------------------------------------- a batch's ticks in one call
#: How :func:`run_ticks` stopped (``TickRun.kind``).
DONE: Final = 0  # every tick up to ``k_end`` ran, every segment before them was applied
SEGMENT: Final = (
    1  # the segment before tick ``k`` was not applied (the steps must take it), tick ``k`` not run
)
BEFORE: Final = 2  # the segment before tick ``k`` was applied, tick ``k`` not started
AFTER: Final = 3  # tick ``k``'s numeric start (:meth:`~viraltrend.kernels.prefilter.Screen.tick`) ran
TAIL: Final = 4  # tick ``k`` ran up to its audience step: its end (snapshot, eviction, cap) is Python's
CATALOGUE: Final = 5  # as TAIL, and the audience step's last part (the catalogue's reference) first
_NONE: Final = int(np.iinfo(np.int64).max)  # an unset time in :func:`_run_ticks` (None in Python)


@njit(cache=True)
def _joined(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
    if a.shape[0] == 0:
        return b.copy()
    out = np.empty(a.shape[0] + b.shape[0], np.int64)
    out[: a.shape[0]] = a
    out[a.shape[0] :] = b
    return out


@njit(cache=True)
def _moves(landmark: _Int, new: _Int, lam_max: float, renorm: float) -> bool:
    """:meth:`DecayedCounters.rebase`'s test: a landmark at ``landmark`` moves to ``new`` (whole seconds)."""
    return bool(new > landmark and lam_max * (new - landmark) / 1000.0 > renorm / 2)


@njit(cache=True)
def _next_rebase(landmark: _Int, lam_max: float, renorm: float) -> _Int:
    """:meth:`DecayedCounters.next_rebase_ms` for a landmark at ``landmark``, the same search."""
    new = landmark + (int(renorm / 2 / lam_max) + 1) * 1000
    while new - 1000 > landmark and _moves(landmark, new - 1000, lam_max, renorm):
        new -= 1000
    while not _moves(landmark, new, lam_max, renorm):
        new += 1000
    return new


@njit(cache=True)
def _rebase(
    acc: NDArray[np.float64], g_acc: NDArray[np.float64], live: NDArray[np.int64], lam: NDArray[np.float64],
    lam_max: float, renorm: float, landmark: _Int, now: _Int,
) -> _Int:  # fmt: skip
    """:meth:`DecayedCounters.rebase` at ``now`` on the counters' arrays: the landmark after it.

    The same steps as ``_move_landmark``: the live rows (``live``: ``last_ts_ms``, or empty for
    every row) by ``_decay_live_rows_flat``, the global totals as ``_decay_rows`` scales them.
    """
    new = (now // 1000) * 1000
    if not _moves(landmark, new, lam_max, renorm):
        return landmark
    shift_s = (new - landmark) / 1000.0
    _decay_live_rows_flat(acc, live, _NEVER, lam, shift_s)
    n_hl = g_acc.shape[1]
    x = np.empty(n_hl, np.float64)
    f = np.empty(n_hl, np.float64)
    for h in range(n_hl):
        x[h] = -lam[h] * shift_s
        f[h] = _exp(x[h])
    for k in range(g_acc.shape[0]):
        for h in range(n_hl):
            g_acc[k, h] = _scaled_by(g_acc[k, h], f[h], x[h])
    return new


@njit(cache=True)
def _evict_sweep(
    acc: NDArray[np.float64], first_ts: NDArray[np.int64], last_ts: NDArray[np.int64],
    t_acc: NDArray[np.float64], t_first_ts: NDArray[np.int64], t_last_ts: NDArray[np.int64],
    stat: NDArray[np.float32], back: NDArray[np.int32], bins: NDArray[np.uint8], coarse: NDArray[np.uint16],
    last_tick: NDArray[np.int64], hw: int, after_s: NDArray[np.int32], base_ms: int, now: _Int,
    landmark: _Int,
    h: int, lam: float, w: NDArray[np.float64], limit: float, margin: float, promise_ms: int,
) -> tuple[bool, NDArray[np.int64]]:  # fmt: skip
    """The engine's eviction sweep at ``now``: ``(done, cold)``, the products it cleared.

    ``Engine._maybe_evict``'s path that skips the products above the limit, nothing watched.

    Not done (nothing changed; the engine's own sweep decides) where a product lies within
    ``margin`` of the limit (:func:`~viraltrend.kernels.columns.below` returns None there).
    Clears as ``DecayedCounters.clear`` (both counters) and ``ChangeDetector.clear`` do.
    """
    elapsed_s = np.int64((now - base_ms) // 1000)
    n_live, looked = _evict_looked(last_ts, np.int64(_NEVER), np.int64(hw), after_s, elapsed_s)
    if n_live == 0:
        return True, looked[:0]
    dt_s = (now - landmark) / 1000.0
    low = np.empty(looked.shape[0], np.int8)
    if _below(acc, looked, lam, dt_s, h, w, limit, margin, low):
        return False, looked[:0]
    horizon = np.empty(looked.shape[0], np.int64)
    _evict_horizon(acc, looked, lam, dt_s, h, w, limit, int(now), horizon)
    cap = now + promise_ms
    cold = np.empty(looked.shape[0], np.int64)
    n_cold = 0
    for j in range(looked.shape[0]):
        s = looked[j]
        after = (min(horizon[j], cap) - base_ms) // 1000
        after_s[s] = min(max(after, _I32_LO), _I32_HI)
        if low[j] != 0:
            after_s[s] = _I32_LO  # a cleared slot is a fresh product's
            cold[n_cold] = s
            n_cold += 1
    for j in range(n_cold):
        s = cold[j]
        acc[s] = 0.0
        t_acc[s] = 0.0
        if first_ts.shape[0]:
            first_ts[s], last_ts[s] = _INT64_MAX, _NEVER
        if t_first_ts.shape[0]:
            t_first_ts[s], t_last_ts[s] = _INT64_MAX, _NEVER
        stat[s] = 0.0
        back[s] = 0
        bins[s] = 0
        coarse[s] = 0
        last_tick[s] = _NEVER
    return True, cold[:n_cold]


_U64_TOP: Final = np.uint64(2**64 - 1)


@njit(cache=True)
def _quiet_due(sk_ms: NDArray[np.int64], idle_ms: int, has_ref: bool, py_due: int, cat_due: int) -> int:
    """The first tick at which :func:`_audience_step` may act at a tick with no screened-in product.

    Before it such a step changes nothing (``Engine._quiet_from_ms``'s times): no sketched product
    idle past ``idle_ms``, no dict of the guard to age, the catalogue's reference not due.
    """
    if sk_ms.shape[0] == 0:
        return py_due if has_ref else _NONE
    oldest = sk_ms[0]
    for i in range(sk_ms.shape[0]):
        oldest = min(oldest, sk_ms[i])
    return int(min(py_due, cat_due, oldest + idle_ms + 1))


@njit(cache=True)
def _audience_step(
    kept: NDArray[np.int64], t_acc: NDArray[np.float64], t_lam1: float, t_dt_s: float, norm: float,
    floor: float, cycle: float, stat: NDArray[np.float32], last_tick: NDArray[np.int64],
    rho_m1: NDArray[np.float64], tick: int, tick_s: float, h: float, hot_evidence: float,
    sk: NDArray[np.int64], sk_ms: NDArray[np.int64], sk_ev: NDArray[np.float64], now: _Int, idle_ms: int,
    cap: int, has_ref: bool, py_due: int, cat_due: int,
    row_of: NDArray[np.int64], product_of_row: NDArray[np.int64], sig: NDArray[np.uint64],
    nonempty: NDArray[np.bool_], m_slot: NDArray[np.int64], m_seller: NDArray[np.int64],
    m_seen: NDArray[np.int64], m_sig: NDArray[np.uint64], seller_of: NDArray[np.int32],
) -> tuple[int, NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], int]:  # fmt: skip
    """The engine's ``_sketch_only`` (``kept`` screened in, none may score) or ``AudienceGuard.quiet`` (none).

    ``(code, sketched, their last hot times, their evidence, memory rows taken)``.  Code 0: done
    (or nothing to do: what ``_quiet_from_ms`` skips), the sketched set and the audience samples and
    memory (``row_of`` ... ``sig``, ``m_*``: ``AudienceMemory``'s arrays) updated in place exactly as
    ``AudienceGuard.track`` with nothing ready; 2: the same, and its last step, the catalogue's
    reference (due from ``cat_due`` while anything is sketched), is Python's; 1: nothing changed,
    Python must take the tick (a dict of the guard due to age at ``py_due``, a sample table that
    must grow, a baseline the detector refuses).  The
    evidence is ``SequentialDetector.evidence``'s (``ChangeDetector.read``'s statistics, the baseline
    ``columns.baseline_rates`` of the trust counters' channel 0, half-life 1), bit for bit.
    """
    n = kept.shape[0]
    n_sk = sk.shape[0]
    if n == 0:  # AudienceGuard.quiet: called while products are sketched or refusals kept
        if n_sk == 0 and not has_ref:
            return 0, sk, sk_ms, sk_ev, 0
        if now >= py_due:
            return 1, sk, sk_ms, sk_ev, 0
        if n_sk == 0:
            return 0, sk, sk_ms, sk_ev, 0  # refusals only, none due: nothing changes
        oldest = sk_ms[0]
        for i in range(n_sk):
            oldest = min(oldest, sk_ms[i])
        if now < cat_due and now - oldest <= idle_ms:  # keep_hot keeps every one: nothing changes
            return 0, sk, sk_ms, sk_ev, 0
    elif now >= py_due:
        return 1, sk, sk_ms, sk_ev, 0
    hot = np.empty(n, np.int64)
    hot_ev = np.empty(n, np.float64)
    n_hot = 0
    if n:
        mu = np.empty(n, np.float64)
        if _baseline_rates(t_acc, kept, 0, 1, t_lam1, t_dt_s, norm, floor, cycle, mu) >= 0:
            return 1, sk, sk_ms, sk_ev, 0
        for j in range(n):
            if not (mu[j] > 0.0 and mu[j] < np.inf):  # ChangeDetector.read raises
                return 1, sk, sk_ms, sk_ev, 0
        for j in range(n):  # ChangeDetector.read's statistics (idle ticks applied), max / h
            p = kept[j]
            last = last_tick[p]
            top = -np.inf
            nan = False
            for g in range(rho_m1.shape[0]):
                s = float(stat[p, g])
                if last == _NEVER:
                    s = 0.0
                elif s > 0.0 and tick > last:
                    drop = rho_m1[g] * mu[j] * tick_s * (tick - last)
                    s = 0.0 if drop >= s else s - drop
                if s != s:
                    nan = True
                elif s > top:
                    top = s
            ev = (np.nan if nan else top) / h  # stat.max(axis=1) / h: a NaN wins numpy's max
            if ev >= hot_evidence:
                hot[n_hot], hot_ev[n_hot] = p, ev
                n_hot += 1
    hot, hot_ev = hot[:n_hot], hot_ev[:n_hot]
    if n_sk + n_hot > cap:
        for i in range(n_sk):
            if sk_ev[i] != sk_ev[i]:  # keep_hot's numpy path
                return 1, sk, sk_ms, sk_ev, 0
    new, new_ms, new_ev = _keep_hot(sk, sk_ms, sk_ev, hot, hot_ev, int(now), idle_ms, cap)
    same = new.shape[0] == n_sk
    if same:
        for i in range(n_sk):
            if new[i] != sk[i]:
                same = False
                break
    if not same:  # the sketches' watch must not grow an array: else Python
        gone = np.empty(n_sk, np.int64)
        n_gone = 0
        j = 0
        for i in range(n_sk):
            while j < new.shape[0] and new[j] < sk[i]:
                j += 1
            if not (j < new.shape[0] and new[j] == sk[i]):
                gone[n_gone] = sk[i]
                n_gone += 1
        free = 0
        for r in range(product_of_row.shape[0]):
            if product_of_row[r] < 0:
                free += 1
        for i in range(n_gone):
            p = gone[i]
            if p < row_of.shape[0] and row_of[p] >= 0:
                free += 1
        need = 0
        for i in range(new.shape[0]):
            p = new[i]
            if p >= row_of.shape[0]:
                return 1, sk, sk_ms, sk_ev, 0
            if row_of[p] < 0:
                need += 1
        if free < need:
            return 1, sk, sk_ms, sk_ev, 0
        if n_gone:
            _unwatch(row_of, product_of_row, sig, nonempty, gone[:n_gone])
        _watch(row_of, product_of_row, sig, nonempty, new)
    if new.shape[0] == 0:
        return 0, new, new_ms, new_ev, 0
    # the hot ones with events still sketched, with users sampled: remembered (AudienceMemory.remember)
    changed = np.empty(n_hot, np.int64)
    n_c = 0
    j = 0
    for i in range(n_hot):
        while j < new.shape[0] and new[j] < hot[i]:
            j += 1
        if j < new.shape[0] and new[j] == hot[i] and nonempty[row_of[hot[i]]]:
            changed[n_c] = hot[i]
            n_c += 1
    taken = 0
    if n_c:
        rows = np.empty(n_c, np.int64)
        for i in range(n_c):
            c = changed[i]
            r = -1
            for q in range(m_slot.shape[0]):
                if m_slot[q] == c:
                    r = q
                    break
            if r < 0:  # a free row (never seen) or the oldest: numpy's argmin, the first minimum
                r = 0
                for q in range(1, m_seen.shape[0]):
                    if m_seen[q] < m_seen[r]:
                        r = q
                m_slot[r] = c
                m_sig[r, :] = _U64_TOP
                taken += 1
            rows[i] = r
            m_seller[r], m_seen[r] = np.int64(seller_of[c]), now
        src = np.empty((n_c, sig.shape[1]), np.uint64)
        for i in range(n_c):
            src[i, :] = sig[row_of[changed[i]], :]
        _union_rows(m_sig, rows, src)
    return (2 if now >= cat_due else 0), new, new_ms, new_ev, taken  # 2: the catalogue's reference is due


@no_refcounts
def _idle_ticks(
    cuts: NDArray[np.int64], tick_values: NDArray[np.int64], k: int, k_end: int, seg: int, next_sweep: int,
    label_due: int, next_rebase: int, t_next_rebase: int, next_evict: int, last_snapshot: int,
    snapshot_ms: float, snaps: NDArray[np.int64], n_snaps: int,
) -> tuple[int, int, int]:  # fmt: skip
    """:func:`_run_ticks`'s idle ticks from ``k`` on, without reference counts.

    Returns ``(k, n_snaps, last_snapshot)`` after them.

    The caller has nothing touched pending and the product cap not exceeded; a tick is idle here
    when no segment precedes it and no user sweep, label, landmark move or eviction is due: only
    its snapshot, if due, is recorded (the loop's idle branch, the same steps).  Stops at the first
    tick that is not, or ``k_end``.  perf23: the loop's reference counts at each idle tick were a
    fifth of a Taobao replay's ``NRT_incref`` calls.
    """
    while k < k_end:
        now = tick_values[k]
        if (
            cuts[k] > seg
            or now >= next_sweep
            or now >= label_due
            or now >= next_rebase
            or now >= t_next_rebase
        ):
            break
        if next_evict == _NONE or now >= next_evict:
            break
        if last_snapshot == _NONE or now - last_snapshot >= snapshot_ms:
            snaps[n_snaps] = now
            n_snaps += 1
            last_snapshot = now
        k += 1
    return k, n_snaps, last_snapshot


@njit(cache=True)
def _run_ticks(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int, min_capacity: _Int,
    acc: NDArray[np.float64], g_acc: NDArray[np.float64], first_ts: NDArray[np.int64],
    last_ts: NDArray[np.int64], lam: NDArray[np.float64], landmark: np.int64,
    t_acc: NDArray[np.float64], t_g_acc: NDArray[np.float64], t_first_ts: NDArray[np.int64],
    t_last_ts: NDArray[np.int64], t_lam: NDArray[np.float64], t_landmark: np.int64, never: _Int,
    prefetch: int, n_slots: int, n_users: int, n_types: int, max_abs_ts: int, lam_max: float, renorm: float,
    t_lam_max: float, t_renorm: float,
    slots: NDArray[np.int64], users: NDArray[np.int64], types: NDArray[np.int8], ts: NDArray[np.int64],
    cuts: NDArray[np.int64], tick_values: NDArray[np.int64], k0: int, k_end: int, seg0: int,
    carry_touched: NDArray[np.int64], carry_new: NDArray[np.int64],
    sig: NDArray[np.uint64], val: NDArray[np.uint16], fun: NDArray[np.uint8], nonempty: NDArray[np.bool_],
    row_of: NDArray[np.int64], seed: np.int64, cells: NDArray[np.uint16], ev_hash: NDArray[np.int64],
    view_code: int, cart_code: int, funnel: NDArray[np.int64], n_funnel: NDArray[np.int64],
    i_hour: int, i_base: int, lam_hour: float, lam_base: float, prior_factor: float, floor_min: float,
    clip_lo: float, clip_hi: float,
    stat: NDArray[np.float32], back: NDArray[np.int32], bins: NDArray[np.uint8], coarse: NDArray[np.uint16],
    per_coarse: int, last_tick: NDArray[np.int64], log_rho: NDArray[np.float64], rho_m1: NDArray[np.float64],
    cusum_tick_ms: int,
    w: NDArray[np.float64], i_trend: int, i_base_s: int, min_baseline_h: float, global_factor: float,
    lift_mid: float, lift_k: float, z_mid: float, z_k: float, h: float, score_below: float,
    evidence_below: float, has_start: bool, start_ms: int,
    next_sweep: int, next_rebase: int, t_next_rebase: int, label_due: int, last_snapshot: int,
    snapshot_ms: float, next_evict: int, max_products: int, n_live: int, quiet_from: int,
    snaps: NDArray[np.int64],
    live: NDArray[np.int64], t_live: NDArray[np.int64], evict_on: bool, evict_every_ms: int,
    evict_base_ms: int,
    hw: int, after_s: NDArray[np.int32], e_h: int, e_lam: float, e_w: NDArray[np.float64], e_limit: float,
    e_margin: float, e_promise_ms: int,
    sw_ticks: NDArray[np.int64], sw_next: NDArray[np.int64], sw_rel: NDArray[np.int64],
    sw_rel_off: NDArray[np.int64], sw_ret: NDArray[np.int64], sw_ret_off: NDArray[np.int64], veteran_ms: int,
    sweep_out: NDArray[np.int64], scan_hist: NDArray[np.int64],
    aud_on: bool, has_ref: bool, py_due: int, cat_due: int, sk_idle_ms: int, sk_cap: int, hot_evidence: float,
    sk: NDArray[np.int64], sk_ms: NDArray[np.int64], sk_ev: NDArray[np.float64],
    product_of_row: NDArray[np.int64], m_slot: NDArray[np.int64], m_seller: NDArray[np.int64],
    m_seen: NDArray[np.int64], m_sig: NDArray[np.uint64], seller_of: NDArray[np.int32],
) -> tuple[
    int, int, int, NDArray[np.int64], _Int, _Int, int, int, int, int, NDArray[np.int64], NDArray[np.int64],
    float, float, float, NDArray[np.int64], NDArray[np.int64], bool, bool, _Int, _Int, int, NDArray[np.int64],
    NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], int, int,
]:  # fmt: skip
    """The engine's loop over a batch's ticks ``k0 .. k_end - 1`` while no tick needs Python.

    Per tick ``k``: the segment before it (accepted events ``[seg, cuts[k])``, users interned) as
    :func:`apply_segment` and the engine's ``_apply`` add it (user signals, both counters, the
    audience samples and activity counts); then the tick as the engine's ``_tick`` runs it when
    the board watches nothing, nothing is traced and the screen is on: an idle tick does nothing;
    a tick with events runs ``Screen.tick``'s numeric start (``_tick_prelude``); a snapshot due
    is recorded in ``snaps``.  It stops (see ``DONE`` ... ``AFTER``) where Python must act: a
    segment the fused step refuses, a user sweep not planned (``sw_*``: the planned ones run here,
    their user-signal steps; ``sweep_out`` [planned sweeps run, next sweep time, then the caps
    table's last count: has one, its low time, its step, counted again, its entry count, its
    latest time] in and out, ``scan_hist``
    its counts), a label, an eviction not run here or the product cap due, a screened-in product
    or audiences to age (a tick with events at ``quiet_from`` or later).  Returns ``(kind, k, seg, rows,
    used, max_ts_ms, n_live, applied, n_snaps, last_snapshot, touched, new_users, norm_base, floor,
    cycle, uniq, kept, may_score, ok)``: ``touched``/``new_users`` the slots applied and not yet
    seen by a tick, the last six ``Screen.tick``'s results at ``AFTER``; then (``aud_on``) the
    sketched products after the audience steps it ran (:func:`_audience_step`: a tick whose
    screened-in products may not score, or whose touched ones are all screened out, stops for
    Python only where that step cannot run), their times and evidence, the last tick that
    sketched (``_NEVER``: none) and the audience memory's rows newly taken.
    """
    aud_now = _NEVER
    n_new = 0
    q_due = _quiet_due(sk_ms, sk_idle_ms, has_ref, py_due, cat_due)
    n_snaps = 0
    applied = 0
    seg = seg0
    pend_t = carry_touched
    pend_n = carry_new
    empty = carry_touched[:0].copy()
    cold = empty  # the products the sweeps below cleared (the engine's _evicted)
    bound = min(acc.shape[0], stat.shape[0])
    tick_s = cusum_tick_ms / 1000.0
    # the prelude's temporaries (_tick_prelude_into), grown to the longest touched / new users seen
    sc_n = 64
    sc_buf, sc_uniq = np.empty(sc_n, np.int64), np.empty(sc_n, np.int64)
    sc_counts, sc_kept = np.empty(sc_n, np.int64), np.empty(sc_n, np.int64)
    sc_x, sc_mu = np.empty(sc_n, np.float64), np.empty(sc_n, np.float64)
    sc_out = np.empty(sc_n, np.int8)
    sc_stack = np.empty(SORT_STACK, np.int64)
    sc_g = np.empty(g_acc.shape[1], np.float64)
    longest = 0  # the longest segment of these ticks: _segment_all's columns, allocated once
    at = seg0
    for kk in range(k0, k_end):
        longest = max(longest, cuts[kk] - at)
        at = max(at, cuts[kk])
    scratch = segment_scratch(longest)
    k = k0
    while k < k_end:
        if pend_t.shape[0] == 0 and n_live <= max_products:  # idle ticks first, without reference counts
            k, n_snaps, last_snapshot = _idle_ticks(
                cuts, tick_values, k, k_end, seg, next_sweep, label_due, next_rebase, t_next_rebase,
                next_evict, last_snapshot, snapshot_ms, snaps, n_snaps,
            )  # fmt: skip
            if k >= k_end:
                break
        cut = cuts[k]
        now = tick_values[k]
        if cut > seg:  # the engine's _apply
            s_slots, s_ts = slots[seg:cut], ts[seg:cut]
            # _segment_all's steps written out: its call would take and drop a reference on each of its
            # ~50 arrays per tick with events (perf27); _segment_rest runs without reference counts
            s_users, s_types = users[seg:cut], types[seg:cut]
            if not _segment_ok(
                s_slots, s_users, s_types, s_ts, n_slots, n_users, n_types, max_abs_ts, landmark, t_landmark,
                lam_max, renorm, t_lam_max, t_renorm,
            ):  # fmt: skip
                return (SEGMENT, k, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
                        pend_t, pend_n, 0.0, 0.0, 0.0, empty, empty, False, True,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip
            n = cut - seg
            first = _mark_first(s_slots, last_ts, never)
            rows, used, max_ts_ms = _process_into(
                rows, used, max_ts_ms, first_seen_ms, s_slots, s_users, s_types, s_ts, cap_window_ms,
                fresh_window_ms, lateness_ms, min_capacity, prefetch, scratch.weight[:n],
                scratch.new_pair[:n], scratch.fresh_pair[:n],
            )  # fmt: skip
            n_buys, n_blind, n_fresh = _segment_rest(
                rows, max_ts_ms - lateness_ms - cap_window_ms, s_slots, s_users, s_types, s_ts, acc, g_acc,
                first_ts, last_ts, lam, landmark, t_acc, t_g_acc, t_first_ts, t_last_ts, t_lam, t_landmark,
                prefetch, sig, val, fun, nonempty, row_of, seed, cells, ev_hash[seg:cut], view_code,
                cart_code, scratch,
            )  # fmt: skip
            n_live += first
            f = n_funnel[0]
            funnel[f, 0], funnel[f, 1], funnel[f, 2] = n_buys, n_blind, s_ts.max()
            n_funnel[0] = f + 1
            pend_t = _joined(pend_t, s_slots)
            pend_n = _joined(pend_n, scratch.fresh[:n_fresh])
            applied += cut - seg
            seg = cut
        # the engine's _tick: a user sweep first (planned: Engine._plan_sweeps), else Python; a label: Python
        if now >= next_sweep:
            p = sweep_out[0]
            if not (p < sw_ticks.shape[0] and sw_ticks[p] == now):
                return (BEFORE, k, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
                        pend_t, pend_n, 0.0, 0.0, 0.0, empty, empty, False, True,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip
            # Engine._sweep_users' steps on the user signals: the released slots start unseen, the
            # caps table compacts, the users coming back in the next window are not fresh
            for j in range(sw_rel_off[p], sw_rel_off[p + 1]):
                first_seen_ms[sw_rel[j]] = never
            rows, used, _, counted, lo, step, hist = _compact_step(
                rows, used, max_ts_ms, min_capacity, lateness_ms, cap_window_ms, sweep_out[2] != 0,
                sweep_out[3], sweep_out[4], scan_hist, sweep_out[6], sweep_out[7],
            )  # fmt: skip
            if counted:
                sweep_out[2], sweep_out[3], sweep_out[4], sweep_out[5] = 1, lo, step, 1
                sweep_out[6], sweep_out[7] = used, max_ts_ms
                scan_hist[:] = hist
            for j in range(sw_ret_off[p], sw_ret_off[p + 1]):
                first_seen_ms[sw_ret[j]] = veteran_ms
            next_sweep = sw_next[p]
            sweep_out[0], sweep_out[1] = p + 1, next_sweep
        if now >= label_due:
            return (BEFORE, k, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
                    pend_t, pend_n, 0.0, 0.0, 0.0, empty, empty, False, True,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip
        if now >= next_rebase:  # _tick_start's landmark moves (DecayedCounters.rebase), the same steps
            moved = _rebase(acc, g_acc, live, lam, lam_max, renorm, landmark, now)
            if moved != landmark:
                landmark, next_rebase = np.int64(moved), int(_next_rebase(moved, lam_max, renorm))
        if now >= t_next_rebase:
            moved = _rebase(t_acc, t_g_acc, t_live, t_lam, t_lam_max, t_renorm, t_landmark, now)
            if moved != t_landmark:
                t_landmark, t_next_rebase = np.int64(moved), int(_next_rebase(moved, t_lam_max, t_renorm))
        snap_due = last_snapshot == _NONE or now - last_snapshot >= snapshot_ms
        evict_due = next_evict == _NONE or now >= next_evict
        # the cap, or an eviction sweep not run here: Python (the engine's _maybe_evict, _cap_products)
        later = n_live > max_products or (evict_due and not evict_on)
        if pend_t.shape[0] == 0:  # idle unless a snapshot, an eviction or the cap is due
            swept = not later
            if evict_due and not later:
                swept, gone = _evict_sweep(
                acc, first_ts, last_ts, t_acc, t_first_ts, t_last_ts, stat, back, bins, coarse, last_tick, hw,
                after_s, evict_base_ms, now, landmark, e_h, e_lam, e_w, e_limit, e_margin, e_promise_ms,
            )  # fmt: skip
                if swept:
                    next_evict = (now // evict_every_ms + 1) * evict_every_ms
                    n_live -= gone.shape[0]
                    cold = _joined(cold, gone)
            if not swept:
                return (BEFORE, k, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
                        pend_t, pend_n, 0.0, 0.0, 0.0, empty, empty, False, True,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip
            if snap_due:
                snaps[n_snaps] = now
                n_snaps += 1
                last_snapshot = now
            k += 1
            continue
        observed_s = 0.0
        if has_start:
            observed_s = (now - start_ms) / 1000.0
        seen = max(observed_s, 1.0)  # TickBaseline.norms
        norm_hour = lam_hour / -math.expm1(-lam_hour * seen)
        norm_base = lam_base / -math.expm1(-lam_base * seen)
        cycle_on = i_hour >= 0 and has_start
        dt_s = (now - landmark) / 1000.0
        t_dt_s = (now - t_landmark) / 1000.0
        if pend_t.shape[0] > sc_n or pend_n.shape[0] > sc_n:
            sc_n = max(2 * sc_n, pend_t.shape[0], pend_n.shape[0])
            sc_buf, sc_uniq = np.empty(sc_n, np.int64), np.empty(sc_n, np.int64)
            sc_counts, sc_kept = np.empty(sc_n, np.int64), np.empty(sc_n, np.int64)
            sc_x, sc_mu = np.empty(sc_n, np.float64), np.empty(sc_n, np.float64)
            sc_out = np.empty(sc_n, np.int8)
        code, floor, cycle, ok, n_uniq, n_kept, may_score = _tick_prelude_into(
            g_acc, lam, dt_s, t_g_acc, t_acc, t_lam, t_dt_s, 0, 1, i_hour, i_base, norm_hour, norm_base,
            cycle_on, n_live, prior_factor, floor_min, clip_lo, clip_hi, pend_n, stat, back, bins, coarse,
            per_coarse, last_tick, log_rho, rho_m1, now // cusum_tick_ms, tick_s, acc, pend_t, w, observed_s,
            i_trend, i_base_s, min_baseline_h, global_factor, lift_mid, lift_k, z_mid, z_k, h, score_below,
            evidence_below, bound, sc_g, sc_buf, sc_stack, sc_uniq, sc_counts, sc_x, sc_mu, sc_out, sc_kept,
        )  # fmt: skip
        if code:  # nothing changed: the engine's step raises its error
            return (BEFORE, k, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
                    pend_t, pend_n, 0.0, 0.0, 0.0, empty, empty, False, True,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip
        pend_t, pend_n = empty, empty
        tail = AFTER  # TAIL or CATALOGUE: the audience step ran here, Python takes the rest of the tick
        if not ok or later or (n_kept > 0 and may_score):
            swept = False
        elif aud_on and n_kept == 0 and now < q_due:
            swept = True  # a quiet tick whose audience step would change nothing
            tail = TAIL
        elif aud_on:  # the engine's _sketch_only or AudienceGuard.quiet, here unless Python must act
            code, sk2, ms2, ev2, taken = _audience_step(
                sc_kept[:n_kept].copy(), t_acc, t_lam[1], t_dt_s, norm_base, floor, cycle, stat, last_tick,
                rho_m1, now // cusum_tick_ms, tick_s, h, hot_evidence, sk, sk_ms, sk_ev, now, sk_idle_ms,
                sk_cap, has_ref, py_due, cat_due, row_of, product_of_row, sig, nonempty, m_slot, m_seller,
                m_seen, m_sig, seller_of,
            )  # fmt: skip
            swept = code != 1
            if swept:
                sk, sk_ms, sk_ev = sk2, ms2, ev2
                n_new += taken
                q_due = _quiet_due(sk_ms, sk_idle_ms, has_ref, py_due, cat_due)
                if n_kept:
                    aud_now = now
                tail = CATALOGUE if code == 2 else TAIL
                swept = code == 0
        else:
            swept = not (n_kept or now >= quiet_from)
        if swept and evict_due:  # the engine's _maybe_evict, at the end of the tick
            swept, gone = _evict_sweep(
                acc, first_ts, last_ts, t_acc, t_first_ts, t_last_ts, stat, back, bins, coarse, last_tick, hw,
                after_s, evict_base_ms, now, landmark, e_h, e_lam, e_w, e_limit, e_margin, e_promise_ms,
            )  # fmt: skip
            if swept:
                next_evict = (now // evict_every_ms + 1) * evict_every_ms
                n_live -= gone.shape[0]
                cold = _joined(cold, gone)
        if not swept:
            return (tail, k, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
                    pend_t, pend_n, norm_base, floor, cycle, sc_uniq[:n_uniq].copy(), sc_kept[:n_kept].copy(),
                    may_score, ok,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip
        if snap_due:
            snaps[n_snaps] = now
            n_snaps += 1
            last_snapshot = now
        k += 1
    return (DONE, k_end, seg, rows, used, max_ts_ms, n_live, applied, n_snaps, last_snapshot,
            pend_t, pend_n, 0.0, 0.0, 0.0, empty, empty, False, True,
                    landmark, t_landmark, next_evict,
                    cold, sk, sk_ms, sk_ev, aud_now, n_new)  # fmt: skip


class TickRun(NamedTuple):
    """What :func:`run_ticks` did: see :func:`_run_ticks`.

    ``k``: the tick it stopped at (``k_end`` at ``DONE``); ``seg``: the accepted events before it
    were applied; ``snapshots``: the ticks whose board snapshot is due, in order (the board did not
    change at them); ``touched``/``new_users``: applied since the last tick run (the engine's
    ``_touched``/``_new_users``); ``prelude``: at ``AFTER``, ``Screen.tick``'s result for tick ``k``.
    """

    kind: int
    k: int
    seg: int
    n_live: int
    applied: int
    snapshots: list[int]
    last_snapshot_ms: int | None
    touched: NDArray[np.int64]
    new_users: NDArray[np.int64]
    prelude: tuple[tuple[float, float, float], NDArray[np.int64], NDArray[np.int64], bool] | None
    funnel: NDArray[np.int64]  # [m, 3] per segment applied: carts and purchases, blind ones, latest ts
    next_evict_ms: int | None  # after the eviction sweeps the loop ran (EvictSweep)
    evicted: NDArray[np.int64]  # the products those sweeps cleared, for the engine's _evicted
    sweep_pos: int  # the planned user sweeps run up to here (SweepPlan entries)
    next_sweep_ms: int | None  # the next user sweep due after them
    sketched: (
        tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]] | None
    )  # after its audience steps
    sketched_at_ms: int | None  # the last tick that sketched (the engine's _guard_now_ms), None: none
    memory_taken: int  # audience memory rows given to new products (the memory's slot index is stale)


class SweepPlan(NamedTuple):
    """The user sweeps due at a batch's ticks, their user-table steps already taken (``Engine._plan_sweeps``).

    Per sweep ``i``: the tick it runs at (``ticks[i]``), the next sweep's time after it
    (``next_ms[i]``), the slots it released (``released[released_off[i]:released_off[i + 1]]``:
    their first-seen times reset to never), the slots of users coming back in the window after it
    (``returning[...]``: first seen long ago, set after the reset) and the users holding a slot
    then (``populations[i]``, the co-audience test's population).
    """

    ticks: NDArray[np.int64]
    next_ms: NDArray[np.int64]
    released: NDArray[np.int64]
    released_off: NDArray[np.int64]
    returning: NDArray[np.int64]
    returning_off: NDArray[np.int64]
    populations: list[int]


class EvictSweep(NamedTuple):
    """The engine's eviction sweep, for :func:`run_ticks` to run at the ticks it is due.

    ``Engine._maybe_evict``'s path that skips products above the limit: ``every_ms`` apart, promises in
    ``after_s`` (int32 seconds past ``base_ms``, one per product slot up to ``hw`` at least), the
    weighted count at half-life index ``half_life`` (rate ``lam``) below ``limit`` clears a product,
    promises no longer than ``promise_ms``.
    """

    every_ms: int
    base_ms: int
    after_s: NDArray[np.int32]
    hw: int
    half_life: int
    lam: float
    weights: NDArray[np.float64]
    limit: float
    promise_ms: int


class AudienceStep(NamedTuple):
    """The engine's audience state for :func:`run_ticks` to sketch at ticks that only sketch.

    ``AudienceGuard.track`` with nothing ready: ``sketched`` (sorted slots), their last hot
    times and evidence (``GuardBook.sketched_ms``/``sketched_ev``), ``idle_ms``/``cap`` (``_SKETCH_IDLE_MS``,
    ``trust.max_sketched``), ``evidence`` (``_SKETCH_EVIDENCE``), the audience memory's arrays
    (``AudienceMemory.slot``/``seller``/``seen_ms``/``sig``) and the products' sellers; the loop
    stops for Python from ``py_due`` (a refusal, hold or vouch of the guard to age: ``_NEVER`` at
    once) and, while anything is or becomes sketched, from ``catalogue_due`` (the catalogue's
    reference); ``refusals``: ring refusals are kept (``AudienceGuard.quiet`` is called for them).
    """

    sketched: NDArray[np.int64]
    sketched_ms: NDArray[np.int64]
    sketched_ev: NDArray[np.float64]
    idle_ms: int
    cap: int
    evidence: float
    refusals: bool
    py_due: int
    catalogue_due: int
    mem_slot: NDArray[np.int64]
    mem_seller: NDArray[np.int64]
    mem_seen_ms: NDArray[np.int64]
    mem_sig: NDArray[np.uint64]
    seller_of: NDArray[np.int32]


_EXACT_SPAN: Final = 2**53  # a time step whose division by a half-life is Python's bit for bit


@njit(cache=True)
def _fold_funnel(
    half_lives: NDArray[np.int64], buys: NDArray[np.float64], blind: NDArray[np.float64], at_ms: int,
    rows: NDArray[np.int64],
) -> tuple[int, int]:  # fmt: skip
    """:func:`fold_funnel`'s loop: ``(at_ms, rows folded)``; stops at a step of ``_EXACT_SPAN`` or more."""
    at = at_ms
    for r in range(rows.shape[0]):
        now = rows[r, 2]
        if now > at and now - at >= _EXACT_SPAN:
            return at, r
        for i in range(half_lives.shape[0]):
            if now > at:
                h = half_lives[i] if half_lives[i] > 1 else 1
                w = 0.5 ** (np.float64(now - at) / np.float64(h))
                buys[i], blind[i] = buys[i] * w, blind[i] * w
            buys[i] += np.float64(rows[r, 0])
            blind[i] += np.float64(rows[r, 1])
        at = now if now > at else at
    return at, rows.shape[0]


def fold_funnel(
    half_lives_ms: tuple[int, ...], buys: list[float], blind: list[float], at_ms: int, rows: NDArray[np.int64]
) -> tuple[list[float], list[float], int, int]:
    """``FunnelShare.add(rows[j, 0], rows[j, 1], now_ms=rows[j, 2])`` for each row, in one compiled call.

    Takes and returns the share's state (``buys``, ``blind``, ``at_ms``) and how many rows were
    folded: all but from a row whose step from ``at_ms`` is ``2**53`` ms or more (where Python's
    exact integer division could round otherwise; the caller adds those the Python way).  Bit for
    bit :meth:`viraltrend.trust.FunnelShare.add` (``tests/kernels/test_segment.py``).
    """
    b, bl = np.array(buys, np.float64), np.array(blind, np.float64)
    hl = np.array(half_lives_ms, np.int64)
    at, done = _fold_funnel(hl, b, bl, int(at_ms), np.ascontiguousarray(rows, np.int64).reshape(-1, 3))
    return b.tolist(), bl.tolist(), int(at), int(done)


_NO_EVICT: Final = EvictSweep(1, 0, np.zeros(0, np.int32), 0, 0, 1.0, np.zeros(1), 1.0, 0)
_NO_SWEEPS: Final = SweepPlan(
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(1, np.int64),
    np.zeros(0, np.int64),
    np.zeros(1, np.int64),
    [],
)
#: first_seen_ms of a released user who came back: long ago, never fresh (the engine's)
VETERAN_MS: Final = -(2**53)


#: The last plan :func:`_plan_fits` looked at, whether its arrays passed, and its largest released or
#: returning slot (-1: none), as one tuple replaced whole (a reader never sees two plans' halves).
#: A batch's plan is checked once, not at each of its compiled calls.
_PLAN_MEMO: list[tuple[Any, bool, int]] = [(None, False, -1)]


def _plan_fits(plan: SweepPlan, sweep_pos: int, capacity_users: int) -> bool:
    """Whether :func:`run_ticks` may take ``plan`` from entry ``sweep_pos`` with ``capacity_users`` users.

    Its arrays int64 and contiguous, the offsets closing on their arrays, ``sweep_pos`` in range and
    every released or returning slot below ``capacity_users``.  A plan is never changed once made
    (``Engine._plan_sweeps``), so its arrays are read once per plan (O(batch)); then each call
    compares the largest slot with the user capacity (O(1): a batch's compiled calls would otherwise
    scan the whole plan each time).
    """
    memo = _PLAN_MEMO[0]
    if memo[0] is not plan:
        ok = (
            all(a.dtype == _I64 and a.flags.c_contiguous for a in plan[:6])
            and int(plan.released_off[-1]) == plan.released.shape[0]
            and int(plan.returning_off[-1]) == plan.returning.shape[0]
        )
        top = -1
        if ok:
            for a in (plan.released, plan.returning):
                if a.shape[0]:
                    top = max(top, int(a.max()))
        memo = (plan, ok, top)
        _PLAN_MEMO[0] = memo
    _, ok, top = memo
    return ok and 0 <= sweep_pos <= plan.ticks.shape[0] and top < capacity_users


_NO_AUDIENCES: Final = AudienceStep(
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0, np.float64),
    0,
    0,
    0.0,
    False,
    _NEVER,
    _NEVER,
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros((0, 1), np.uint64),
    np.zeros(0, np.int32),
)


def _audience_fits(aud: AudienceStep, sketches: AudienceSketches, n_slots: int) -> bool:
    """Whether :func:`_audience_step` may take ``aud``: its arrays as the engine keeps them (else off)."""
    n = aud.sketched.shape[0]
    one = (aud.sketched, aud.sketched_ms, aud.mem_slot, aud.mem_seller, aud.mem_seen_ms)
    if any(a.dtype != _I64 or a.ndim != 1 or not a.flags.c_contiguous for a in one):
        return False
    if aud.sketched_ms.shape[0] != n or aud.sketched_ev.shape != (n,) or aud.sketched_ev.dtype != np.float64:
        return False
    m = aud.mem_slot.shape[0]
    if aud.mem_seller.shape[0] != m or aud.mem_seen_ms.shape[0] != m or m == 0:
        return False
    sig = sketches.sig
    if aud.mem_sig.dtype != np.uint64 or aud.mem_sig.shape != (m, sig.shape[1]) or sig.dtype != np.uint64:
        return False
    if not (aud.mem_sig.flags.c_contiguous and sig.flags.c_contiguous and aud.sketched_ev.flags.c_contiguous):
        return False
    if aud.seller_of.dtype != np.int32 or aud.seller_of.ndim != 1 or aud.seller_of.shape[0] < n_slots:
        return False
    por = sketches.product_of_row
    return bool(
        por.dtype == _I64
        and por.shape[0] == sig.shape[0] == sketches.nonempty.shape[0]
        and sketches.row_of.dtype == _I64
    )


def _time(t: int | None) -> int:
    return _NONE if t is None else int(t)


def run_ticks(
    *,
    signals: UserSignals,
    counters: DecayedCounters,
    trust: DecayedCounters,
    sketches: AudienceSketches,
    activity: ActivityCounts,
    user_hash: NDArray[np.uint64],
    cusum: ChangeDetector,
    screen: Screen,
    base: TickBaseline,
    slots: NDArray[np.int64],
    users: NDArray[np.int64],
    types: NDArray[np.int8],
    ts_ms: NDArray[np.int64],
    cuts: NDArray[np.int64],
    ticks: NDArray[np.int64],
    k0: int,
    k_end: int,
    seg0: int,
    touched: NDArray[np.int64],
    new_users: NDArray[np.int64],
    start_ms: int | None,
    next_sweep_ms: int | None,
    label_due_ms: int | None,
    last_snapshot_ms: int | None,
    snapshot_interval_ms: float,
    next_evict_ms: int | None,
    max_products: int,
    n_live: int,
    quiet_from_ms: int | None,
    evict: EvictSweep | None = None,
    trust_live: NDArray[np.int64] | None = None,
    sweeps: SweepPlan | None = None,
    sweep_pos: int = 0,
    audiences: AudienceStep | None = None,
) -> TickRun | None:
    """Ticks ``k0 .. k_end - 1`` of a batch and the segments before them, in one compiled call.

    The engine's per-tick loop (``_apply`` of each segment, then ``_on_tick``) for a board that
    watches nothing, with the screen on and nothing traced, bit for bit, until a tick needs Python
    (:func:`_run_ticks`).  ``slots``/``users``/``types``/``ts_ms``: the batch's accepted events
    (``users`` interned up to ``cuts[k_end - 1]`` at least); ``cuts``/``ticks`` int64[m]: tick ``k``
    fires before accepted event ``cuts[k]``; ``seg0``: the events before it are applied.  None
    (nothing done) where the fused steps do not apply (a counter without a landmark yet, inputs
    of another dtype).  Landmark moves due run in the loop (``DecayedCounters.rebase``'s steps) and
    so do eviction sweeps when ``evict`` is given (else the loop stops for Python at them).
    ``trust_live``: as :meth:`DecayedCounters.rebase`'s ``live`` for the trust counters' moves.
    ``quiet_from_ms``: the first tick at which a tick with events, all screened out, stops for
    Python to age the audiences (``AudienceGuard.quiet``; None: never).
    ``user_hash``: each accepted event's user id hash (uint64, as ``slots``).  ``sweeps``: the
    user sweeps planned for this batch's ticks (:class:`SweepPlan`, from entry ``sweep_pos`` on):
    the loop runs their steps on the user signals at their ticks; without one (or past it) it
    stops for Python at a user sweep due.  ``audiences`` (:class:`AudienceStep`; None: off): the
    loop takes the audience steps of the ticks whose screened-in products may not score and of those
    whose touched products are all screened out (then ``quiet_from_ms`` is not read), and stops for
    Python only where those steps need it.
    """
    if counters._landmark_ms is None or trust._landmark_ms is None or trust.n_types < 3:  # noqa: SLF001
        return None
    if trust.global_acc.shape[1] < 2 or not k0 < k_end <= ticks.shape[0]:
        return None
    arrays = (slots, users, ts_ms, cuts, ticks, touched, new_users)
    if any(a.dtype != _I64 or a.ndim != 1 or not a.flags.c_contiguous for a in arrays):
        return None
    if types.dtype != _I8 or not types.flags.c_contiguous or int(cuts[k_end - 1]) > users.shape[0]:
        return None
    if user_hash.dtype != np.uint64 or user_hash.shape != slots.shape or not user_hash.flags.c_contiguous:
        return None
    plan = sweeps if sweeps is not None else _NO_SWEEPS
    if plan is not _NO_SWEEPS and not _plan_fits(plan, sweep_pos, signals.capacity_users):
        plan = _NO_SWEEPS
    scan = signals._live_at_scan  # noqa: SLF001
    sweep_out = np.zeros(8, np.int64)
    sweep_out[0], sweep_out[1] = sweep_pos, _NEVER if next_sweep_ms is None else int(next_sweep_ms)
    if scan is not None:
        sweep_out[2], sweep_out[3], sweep_out[4] = 1, scan[0], scan[1]
        sweep_out[6], sweep_out[7] = scan[3], scan[4]
    scan_hist = scan[2].copy() if scan is not None else np.zeros(_SCAN_BUCKETS, np.int64)
    n_slots = min(counters.capacity, trust.capacity, _MAX_PRODUCT)
    snaps = np.empty(k_end - k0, np.int64)
    funnel, n_funnel = np.empty((k_end - k0, 3), np.int64), np.zeros(1, np.int64)
    ev_on = evict is not None and next_evict_ms is not None and counters.times
    if evict is not None and not (evict.after_s.dtype == np.int32 and evict.after_s.flags.c_contiguous):
        ev_on = False
    ev = evict if ev_on and evict is not None else _NO_EVICT
    if not 0 <= ev.hw <= min(ev.after_s.shape[0], n_slots, cusum.stat.shape[0]):
        ev_on, ev = False, _NO_EVICT
    fixed = screen._fixed  # noqa: SLF001
    score_below, evidence_below = screen._limits  # noqa: SLF001
    bound = min(counters.acc.shape[0], cusum.stat.shape[0])  # the screened-in slots lie below it
    aud = audiences if audiences is not None and _audience_fits(audiences, sketches, bound) else _NO_AUDIENCES
    out = _run_ticks(
        signals.rows, signals._used, signals._max_ts_ms, signals.first_seen_ms,  # noqa: SLF001
        signals.cap_window_ms, signals.fresh_window_ms, signals.allowed_lateness_ms,
        signals.min_table_capacity,
        counters.acc, counters.global_acc, counters.first_ts_ms, counters.last_ts_ms, counters.lam,
        np.int64(counters._landmark_ms), trust.acc, trust.global_acc, trust.first_ts_ms,  # noqa: SLF001
        trust.last_ts_ms, trust.lam, np.int64(trust._landmark_ms), _NEVER, PREFETCH_DISTANCE,  # noqa: SLF001
        n_slots, signals.capacity_users, counters.n_types, _MAX_ABS_TS_MS,
        counters._lam_max, counters.renorm_exponent, trust._lam_max, trust.renorm_exponent,  # noqa: SLF001
        slots, users, types, ts_ms, cuts, ticks, int(k0), int(k_end), int(seg0), touched, new_users,
        sketches.sig, sketches._fit_val(), sketches._fit_fun(), sketches.nonempty, sketches.row_of,  # noqa: SLF001
        np.int64(sketches._seeds[0]), activity.cells, user_hash.view(np.int64),  # noqa: SLF001
        _VIEW, _CART, funnel, n_funnel,
        base.i_hour, base.i_base, base.lam_hour, base.lam_base, base.prior_factor, base.floor_min,
        float(base.clip[0]), float(base.clip[1]),
        cusum.stat, cusum.back, cusum.bins, cusum.coarse, cusum.ticks_per_coarse, cusum.last_tick,
        cusum._log_rho, cusum._rho_m1, cusum.tick_ms,  # noqa: SLF001
        screen._w, *fixed, screen._h, score_below, evidence_below,  # noqa: SLF001
        start_ms is not None, 0 if start_ms is None else int(start_ms),
        _NEVER if next_sweep_ms is None else int(next_sweep_ms),  # none yet: a sweep is due at once
        _time(counters.next_rebase_ms()), _time(trust.next_rebase_ms()),
        _time(label_due_ms), _time(last_snapshot_ms), float(snapshot_interval_ms), _time(next_evict_ms),
        int(max_products), int(n_live), _time(quiet_from_ms), snaps,
        counters.last_ts_ms if counters.times else _EVERY_ROW,
        trust.last_ts_ms if trust.times else live_rows(trust_live, trust.capacity),
        ev_on, int(ev.every_ms), int(ev.base_ms), int(ev.hw), ev.after_s, int(ev.half_life), float(ev.lam),
        np.ascontiguousarray(ev.weights, np.float64), float(ev.limit), BELOW_MARGIN, int(ev.promise_ms),
        plan.ticks, plan.next_ms, plan.released, plan.released_off, plan.returning, plan.returning_off,
        VETERAN_MS, sweep_out, scan_hist,
        aud is not _NO_AUDIENCES, aud.refusals, int(aud.py_due), int(aud.catalogue_due), int(aud.idle_ms),
        int(aud.cap), float(aud.evidence), aud.sketched, aud.sketched_ms, aud.sketched_ev,
        sketches.product_of_row, aud.mem_slot, aud.mem_seller, aud.mem_seen_ms, aud.mem_sig, aud.seller_of,
    )  # fmt: skip
    kind, k, seg, rows, used, max_ts, n_live, applied, n_snaps, last_snap = out[:10]
    pend_t, pend_n, norm, floor, cycle, uniq, kept, may_score, ok = out[10:19]
    landmark, t_landmark, next_evict, evicted = out[19:23]
    sk, sk_ms, sk_ev, aud_now, taken = out[23:]
    signals.rows, signals._used, signals._max_ts_ms = rows, int(used), int(max_ts)  # noqa: SLF001
    counters._landmark_ms, trust._landmark_ms = int(landmark), int(t_landmark)  # noqa: SLF001
    if sweep_out[5]:  # the sweeps' compaction counted the live entries again: compact()'s memory of it
        scan_at = (int(sweep_out[3]), int(sweep_out[4]), scan_hist, int(sweep_out[6]), int(sweep_out[7]))
        signals._live_at_scan = scan_at  # noqa: SLF001
    prelude = None
    if kind == AFTER:
        if not ok:  # a slot out of range: Screen.tick's check raises
            check_range("slots", uniq, 0, min(counters.acc.shape[0], cusum.stat.shape[0]))
        prelude = ((float(norm), float(floor), float(cycle)), uniq, kept, bool(may_score))
    return TickRun(
        int(kind), int(k), int(seg), int(n_live), int(applied), snaps[:n_snaps].tolist(),
        None if last_snap == _NONE else int(last_snap), pend_t, pend_n, prelude,
        funnel[: int(n_funnel[0])], None if next_evict == _NONE else int(next_evict), evicted,
        int(sweep_out[0]), None if sweep_out[1] == _NEVER else int(sweep_out[1]),
        None if aud is _NO_AUDIENCES else (sk, sk_ms, sk_ev), None if aud_now == _NEVER else int(aud_now),
        int(taken),
    )  # fmt: skip
