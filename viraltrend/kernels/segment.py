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
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels.columns import _trust_rows
from viraltrend.kernels.decay import _MAX_ABS_TS_MS, PREFETCH_DISTANCE, DecayedCounters, _add_events
from viraltrend.kernels.users import _MAX_PRODUCT, UserSignals, _process

__all__ = ["apply_segment"]

_NEVER: Final = int(np.iinfo(np.int64).min)
_I64, _I8 = np.dtype(np.int64), np.dtype(np.int8)
_Int: TypeAlias = int | np.integer[Any]


@njit(cache=True)
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
    n_first = 0
    for i in range(slots.shape[0]):  # mark: _add_events then sets the true last time (> never + 1)
        if last_ts[slots[i]] == never:
            last_ts[slots[i]] = never + 1
            n_first += 1
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
    if not _valid(slots, users, types, ts, n_slots, n_users, n_types, max_abs_ts):
        return False, rows, used, max_ts_ms, np.zeros(0, np.bool_), 0
    ts_max = ts[0]
    for i in range(1, ts.shape[0]):
        ts_max = max(ts_max, ts[i])
    if not (
        lam_max * (ts_max - landmark) / 1000.0 <= renorm
        and t_lam_max * (ts_max - t_landmark) / 1000.0 <= t_renorm
    ):
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
    if not (
        slots.flags.c_contiguous
        and users.flags.c_contiguous
        and types.flags.c_contiguous
        and ts_ms.flags.c_contiguous
    ):
        slots, users = np.ascontiguousarray(slots), np.ascontiguousarray(users)
        types, ts_ms = np.ascontiguousarray(types), np.ascontiguousarray(ts_ms)
    # _valid, _steady (both counters) and _segment in one call: False when a check fails
    ok, rows, used, max_ts, new_pair, first = _checked_segment(
        signals.rows, signals._used, signals._max_ts_ms, signals.first_seen_ms,  # noqa: SLF001
        slots, users, types, ts_ms, signals.cap_window_ms, signals.fresh_window_ms,
        signals.allowed_lateness_ms, signals.min_table_capacity,
        counters.acc, counters.global_acc, counters.first_ts_ms, counters.last_ts_ms, counters.lam,
        np.int64(counters._landmark_ms), trust.acc, trust.global_acc, trust.first_ts_ms,  # noqa: SLF001
        trust.last_ts_ms, trust.lam, np.int64(trust._landmark_ms), _NEVER, PREFETCH_DISTANCE,  # noqa: SLF001
        n_slots, signals.capacity_users, counters.n_types, _MAX_ABS_TS_MS,
        counters._lam_max, counters.renorm_exponent, trust._lam_max, trust.renorm_exponent,  # noqa: SLF001
    )  # fmt: skip
    if not ok:
        return None
    signals.rows, signals._used, signals._max_ts_ms = rows, int(used), int(max_ts)  # noqa: SLF001
    return new_pair, int(first)
