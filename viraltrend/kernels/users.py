"""Per-event trust signals from the users behind the events, and MinHash sketches of those users.

Faked popularity is a few accounts repeating an action, brand-new accounts, or one ring of accounts
pushing several products.  :class:`UserSignals` gives three signals per event, in numba over
numpy columns, with memory bounded by the pairs active in the last window; :class:`UserSketches`
keeps MinHash signatures of the users of a few watched products, to compare their audiences.

The rules, for event ``i`` in arrival order, where ``W`` is ``cap_window_ms``, ``F``
``fresh_window_ms`` and ``L`` ``allowed_lateness_ms``.  ``M_i`` is the largest ``ts_ms`` seen so
far (event ``i`` included) and ``e_i = max(ts_ms[i], M_i - L)`` the event's *effective time*: its
own ``ts`` unless it is more than ``L`` behind ``M_i``, when it counts as if it happened at ``M_i - L``.
Give ``L`` the event clock's allowed lateness and pass only the events it accepts: then
``e_i = ts_ms[i]`` for every event and the rules below compare each event's own ``ts``.

* ``weight[i]`` is 1.0 when no earlier event with the same (product, user, type_code) was *counted*
  at a time ``s >= e_i - W``, else 0.0; a counted event stores ``e_i`` for its key.  A counted event
  has ``e_i > s + W``, so a stored time only increases; a late event does not count when its key
  was counted at any time from ``e_i - W`` on, later ones included.  A user's hundred likes of a
  product within ``W`` count once.
* ``new_pair[i]``: the same rule keyed by (product, user) alone, any type.  Its decayed sum counts
  distinct users, each at most once per ``W``.
* ``fresh[i]``: ``e_i - first_seen < F``, where ``first_seen`` is the effective time of the user's
  first event in arrival order (so a user's first event is fresh).

Each output depends only on the events before it, in arrival order: never on how the stream is
cut into batches.  Clamping late events to ``M_i - L`` keeps it so with bounded memory: a stored
time ``s < M - L - W`` can never block an event again (every later ``e >= M - L``), so the table
drops such entries when it rebuilds, and dropping them changes no output.  Under the plain rule
(compare with ``ts_ms[i]`` whatever its lateness) an old entry could block a late event forever and
nothing could ever be dropped exactly.

**The table.**  Keys live in one open-addressing table (linear probing), a C-contiguous
``int64[capacity, 2]`` array; a row is ``(product << 32 | user, kind << 55 | (s + 2**53))``, where
``kind`` is the ``type_code`` (0..127) for a cap entry and 128 for the pair entry, and ``s`` the
stored time (``|s| <= 2**53`` fits 55 bits).  The row is hashed (splitmix64) from (product, user)
alone, so a pair's entries sit side by side and an event's two look-ups mostly share a cache line.
An entry is *expired* once ``s < M - L - W``.  A new key takes the first expired row of its probe
run, else the empty row ending it.  Before an insert into an empty row would fill more than 3/4
of the table, it is rebuilt without the expired entries into the smallest power of two (at least
``table_capacity``) that they fill at most 3/8: at least ``3/8 capacity`` inserts pass between
rebuilds, so a rebuild costs under 3 rows scanned and 1 entry moved per insert, and the table
grows or shrinks with the live entries.  Right after a rebuild the capacity is 8/3 to 16/3 times
the live entries; at 16 bytes per row (:data:`BYTES_PER_ENTRY`) that is 43 to 85 bytes per live
entry.  A live pair holds one entry plus one per event type it counted in the window (2.05 in the
benchmark below), so about 90 to 175 bytes per live pair; 95 to 103 measured.  Expired rows are
reused in place: the table was rebuilt 12 times in the 24 h benchmark, growth included.

Benchmark (``/tmp`` script, ``UserSignals.process`` in batches of 100 000, a shared 2-core AMD EPYC
VM): 10M events over 24 h, 1M products and 1M users drawn from Zipf(1), 6 types, ``W`` = 1 h:
6.1M events/s of CPU time (3.4M without the prefetch); 354k live pairs (724k live entries) in a
2M-row table, 32 MiB.  The same events over 6 h: 6.4M events/s, 1.3M live pairs, 128 MiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeAlias, TypeVar

import numba
import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError
from viraltrend.kernels._checks import check_range, column, owned
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.decay import PREFETCH_DISTANCE, _prefetch  # one llvm.prefetch intrinsic

__all__ = ["BYTES_PER_ENTRY", "UserSignals", "UserSketches"]

#: Bytes of one table entry (a live pair takes one, plus one per event type counted in the window).
BYTES_PER_ENTRY: Final = 16
_EMPTY: Final = -1  # the key of an empty row (real keys are >= 0)
_PAIR_KIND: Final = 128  # kind of the (product, user) entry; cap entries use their type_code
_KIND_SHIFT: Final = 55
_TS_OFFSET: Final = 2**53
_TS_MASK: Final = 2**55 - 1
_MAX_ABS_TS_MS: Final = 2**53
_MAX_PRODUCT: Final = 2**31  # product slots fill bits 32..62 of a key
_MAX_USERS: Final = 2**32
_SCAN_BUCKETS: Final = 64  # compact()'s count of live entries, by stored time
_UNSET: Final = int(np.iinfo(np.int64).min)
_M64: Final = 2**64 - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
_U64_MAX: Final = np.iinfo(np.uint64).max
_Scalar = TypeVar("_Scalar", bound=np.generic)
_Int: TypeAlias = int | np.integer[Any]  # kernels take and return int64 scalars
_Bools: TypeAlias = NDArray[np.bool_]


def _mix64_py(x: _Int) -> int:
    """Return splitmix64's output for state ``x`` (int64 bits), as a Python int in ``[0, 2**64)``."""
    z = (int(x) + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
    _mix64 = _mix64_py  # numpy scalars would warn on the wrapping multiplications

else:

    @njit(cache=True)
    def _mix64(x: _Int) -> np.uint64:
        """splitmix64 of ``x`` (int64 bits) as uint64: add the golden gamma, then the finaliser."""
        z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _bucket(key: _Int, mask: _Int) -> _Int:
    """Home row of ``key`` (product << 32 | user) in a table of ``mask + 1`` rows."""
    return np.int64(_mix64(key) & np.uint64(mask))


@no_refcounts
def _find(rows: NDArray[np.int64], key: _Int, kind: _Int, mask: _Int) -> _Int:
    """Row of the entry (``key``, ``kind``), or the empty row where it would go (the table is never full)."""
    idx = _bucket(key, mask)
    while True:
        k = rows[idx, 0]
        if k == _EMPTY or (k == key and rows[idx, 1] >> _KIND_SHIFT == kind):
            return idx
        idx = (idx + 1) & mask


@no_refcounts
def _probe(rows: NDArray[np.int64], key: _Int, kind: _Int, mask: _Int, cutoff_ms: _Int) -> tuple[_Int, bool]:
    """Return ``(row, found)``: the row of (``key``, ``kind``), else where to insert it.

    The insertion row is the first *expired* row of the probe run (stored time ``< cutoff_ms``:
    it can never match again), else the empty row that ends the run.  Reusing expired rows keeps
    every key reachable (a run only loses rows in rebuilds) and postpones rebuilds.
    """
    idx = _bucket(key, mask)
    spare: _Int = -1
    while True:
        k = rows[idx, 0]
        if k == _EMPTY:
            return (idx if spare < 0 else spare), False
        if k == key and rows[idx, 1] >> _KIND_SHIFT == kind:
            return idx, True
        if spare < 0 and (rows[idx, 1] & _TS_MASK) - _TS_OFFSET < cutoff_ms:
            spare = idx
        idx = (idx + 1) & mask


@njit(cache=True)
def _sorted_has(values: NDArray[np.int64], x: _Int) -> bool:
    """``x in values`` for a sorted int64[m]."""
    pos = np.searchsorted(values, x)
    return pos < values.shape[0] and values[pos] == x  # type: ignore[no-any-return]


@njit(cache=True)
def _rebuild(
    rows: NDArray[np.int64], cutoff_ms: _Int, min_capacity: _Int, reserve: _Int,
    drop_products: NDArray[np.int64], drop_users: NDArray[np.int64],
) -> tuple[NDArray[np.int64], _Int]:  # fmt: skip
    """Copy the entries with stored time ``>= cutoff_ms`` into a new table; return it and their count.

    Entries of the products and users in the sorted ``drop_products`` / ``drop_users`` (int64[m])
    are left out too.  The new capacity is the smallest power of two ``>= min_capacity`` that holds
    the entries plus ``reserve`` at most 3/8 full (the process kernel rebuilds past 3/4).
    """
    keep = np.zeros(rows.shape[0], np.bool_)
    live = 0
    for idx in range(rows.shape[0]):
        key = rows[idx, 0]
        if key == _EMPTY or (rows[idx, 1] & _TS_MASK) - _TS_OFFSET < cutoff_ms:
            continue
        if drop_products.shape[0] and _sorted_has(drop_products, key >> 32):
            continue
        if drop_users.shape[0] and _sorted_has(drop_users, key & 0xFFFFFFFF):
            continue
        keep[idx] = True
        live += 1
    capacity = min_capacity
    while 3 * capacity < 8 * (live + reserve):
        capacity *= 2
    out = np.full((capacity, 2), _EMPTY, np.int64)
    for idx in range(rows.shape[0]):
        if keep[idx]:
            j = _find(out, rows[idx, 0], rows[idx, 1] >> _KIND_SHIFT, capacity - 1)
            out[j, 0] = rows[idx, 0]
            out[j, 1] = rows[idx, 1]
    return out, live


@no_refcounts
def _process_run(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    product: NDArray[np.int64], user: NDArray[np.int64], type_code: NDArray[np.int8],
    ts_ms: NDArray[np.int64], cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int,
    prefetch_distance: int, i: int, step0: int, weight: NDArray[np.float64], new_pair: _Bools,
    fresh: _Bools,
) -> tuple[int, int, _Int, _Int]:  # fmt: skip
    """:func:`_process`'s per-event steps from event ``i``'s insert ``step0`` on (0: pair entry, 1: cap).

    Returns ``(i, step, used, max_ts_ms)``: stops before (nothing of it done) an insert into an empty
    row that would fill the table past 3/4 (``step``: which of event ``i``'s two entries), or at the
    end (``i == n``); the shell rebuilds the table and calls it again from there.  Resuming an event
    redoes its first steps (the largest time, its user's first-seen time and ``fresh[i]``: the same
    values again), not its inserts before ``step0``.  Without reference counts (perf25: the table,
    carried round the loop, and the probes' arrays were taken and dropped at each event).
    """
    n = ts_ms.shape[0]
    mask = rows.shape[0] - 1
    flat = rows.reshape(-1)
    first_step = step0
    while i < n:
        ahead = i + prefetch_distance
        if prefetch_distance > 0 and ahead < n:
            _prefetch(flat, 2 * _bucket((product[ahead] << 32) | user[ahead], mask))
            _prefetch(first_seen_ms, user[ahead])
        t = ts_ms[i]
        if t > max_ts_ms:
            max_ts_ms = t
        e = max(t, max_ts_ms - lateness_ms)
        u = user[i]
        if first_seen_ms[u] == _UNSET:
            first_seen_ms[u] = e
        fresh[i] = e - first_seen_ms[u] < fresh_window_ms
        key = (product[i] << 32) | u
        cutoff = max_ts_ms - lateness_ms - cap_window_ms
        for step in range(2):  # a constant trip count: range(first_step, 2) measured ~3 % slower
            if step < first_step:
                continue  # inserted before the rebuild
            kind = _PAIR_KIND if step == 0 else np.int64(type_code[i])
            idx, found = _probe(rows, key, kind, mask, cutoff)
            if found:
                counted = (rows[idx, 1] & _TS_MASK) - _TS_OFFSET < e - cap_window_ms
            else:
                if rows[idx, 0] == _EMPTY:
                    if 4 * (used + 1) > 3 * rows.shape[0]:
                        return i, step, used, max_ts_ms  # a rebuild: the shell's
                    used += 1
                rows[idx, 0] = key
                counted = True
            if counted:
                rows[idx, 1] = (kind << _KIND_SHIFT) | (e + _TS_OFFSET)
            if step == 0:
                new_pair[i] = counted
            else:
                weight[i] = 1.0 if counted else 0.0
        first_step = 0
        i += 1
    return i, 0, used, max_ts_ms


@njit(cache=True)
def _process(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    product: NDArray[np.int64], user: NDArray[np.int64], type_code: NDArray[np.int8],
    ts_ms: NDArray[np.int64], cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int,
    min_capacity: _Int, prefetch_distance: int,
) -> tuple[NDArray[np.int64], _Int, _Int, NDArray[np.float64], _Bools, _Bools]:  # fmt: skip
    """Run the rules of the module docstring over a batch, in order (serial: keys repeat).

    ``rows`` int64[capacity, 2] (the table, holding ``used`` entries), ``first_seen_ms``
    int64[capacity_users] (INT64 min: unseen; updated in place), ``max_ts_ms`` the largest ``ts`` so
    far (INT64 min: none); inputs int64[n] / int8[n], checked by the caller.  Returns the table (a
    new array after a rebuild), its entry count, the new ``max_ts_ms``, ``weight`` float64[n],
    ``new_pair`` bool[n] and ``fresh`` bool[n].  The events run in :func:`_process_run` (no reference
    counts); where an insert into an empty row would fill the table past 3/4, it stops, the table
    is rebuilt here (without the entries expired at that event) and the run takes that insert.
    """
    n = ts_ms.shape[0]
    weight = np.zeros(n, np.float64)
    new_pair = np.zeros(n, np.bool_)
    fresh = np.zeros(n, np.bool_)
    rows, used, max_ts_ms = _process_into(
        rows, used, max_ts_ms, first_seen_ms, product, user, type_code, ts_ms, cap_window_ms, fresh_window_ms,
        lateness_ms, min_capacity, prefetch_distance, weight, new_pair, fresh,
    )  # fmt: skip
    return rows, used, max_ts_ms, weight, new_pair, fresh


@njit(cache=True)
def _process_into(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, first_seen_ms: NDArray[np.int64],
    product: NDArray[np.int64], user: NDArray[np.int64], type_code: NDArray[np.int8],
    ts_ms: NDArray[np.int64], cap_window_ms: _Int, fresh_window_ms: _Int, lateness_ms: _Int,
    min_capacity: _Int, prefetch_distance: int, weight: NDArray[np.float64], new_pair: _Bools, fresh: _Bools,
) -> tuple[NDArray[np.int64], _Int, _Int]:  # fmt: skip
    """:func:`_process` writing ``weight``, ``new_pair`` and ``fresh`` into the caller's arrays.

    Each must hold at least ``n`` entries; entries ``[0, n)`` are all written (every event's three
    outputs, also an event resumed after a rebuild), the rest are left as they are.  Returns the
    table, its entry count and the new ``max_ts_ms``.  The engine's tick loop passes scratch arrays
    (perf27: no allocation per segment).
    """
    n = ts_ms.shape[0]
    i = 0
    step = 0
    while True:
        i, step, used, max_ts_ms = _process_run(
            rows, used, max_ts_ms, first_seen_ms, product, user, type_code, ts_ms, cap_window_ms,
            fresh_window_ms, lateness_ms, prefetch_distance, i, step, weight, new_pair, fresh,
        )  # fmt: skip
        if i >= n:
            break
        cutoff = max_ts_ms - lateness_ms - cap_window_ms  # max_ts_ms holds event i's time
        no_drop = np.empty(0, np.int64)
        rows, used = _rebuild(rows, cutoff, min_capacity, 2, no_drop, no_drop)
    return rows, used, max_ts_ms


@no_refcounts
def _live_entry(rows: NDArray[np.int64], product: _Int, user: _Int, kind: _Int, cutoff_ms: _Int) -> bool:
    """Whether (``product``, ``user``)'s entry of ``kind`` is in the table, stored at ``>= cutoff_ms``."""
    key = (product << 32) | user
    idx = _find(rows, key, kind, rows.shape[0] - 1)
    return rows[idx, 0] == key and (rows[idx, 1] & _TS_MASK) - _TS_OFFSET >= cutoff_ms  # type: ignore[no-any-return]


@njit(cache=True)
def _has_live(
    rows: NDArray[np.int64], product: NDArray[np.int64], user: NDArray[np.int64], kind: _Int,
    cutoff_ms: _Int,
) -> _Bools:  # fmt: skip
    """Per (product, user): whether its entry of ``kind`` is in the table, stored at ``>= cutoff_ms``."""
    out = np.zeros(product.shape[0], np.bool_)
    for i in range(product.shape[0]):
        out[i] = _live_entry(rows, product[i], user[i], kind, cutoff_ms)
    return out


@njit(cache=True)
def _count_live(rows: NDArray[np.int64], cutoff_ms: _Int) -> _Int:
    """Entries of the table with stored time ``>= cutoff_ms`` (those a rebuild keeps)."""
    live = 0
    for idx in range(rows.shape[0]):
        if rows[idx, 0] != _EMPTY and (rows[idx, 1] & _TS_MASK) - _TS_OFFSET >= cutoff_ms:
            live += 1
    return live


@njit(cache=True)
def _live_histogram(
    rows: NDArray[np.int64], cutoff_ms: _Int, step_ms: _Int, n_buckets: _Int
) -> NDArray[np.int64]:
    """Entries with stored time ``s >= cutoff_ms`` per bucket ``min((s - cutoff_ms) // step_ms, n - 1)``.

    Their sum is :func:`_count_live`'s count (one pass over the table as it).
    """
    out = np.zeros(n_buckets, np.int64)
    for idx in range(rows.shape[0]):
        if rows[idx, 0] != _EMPTY:
            s = (rows[idx, 1] & _TS_MASK) - _TS_OFFSET
            if s >= cutoff_ms:
                out[min((s - cutoff_ms) // step_ms, n_buckets - 1)] += 1
    return out


def _still_live(hist: NDArray[np.int64], lo_ms: int, step_ms: int, cutoff_ms: int) -> int:
    """Entries of ``hist`` (:func:`_live_histogram` at ``lo_ms``) whose whole bucket is ``>= cutoff_ms``."""
    first = max(-((lo_ms - cutoff_ms) // step_ms), 0)  # ceil((cutoff - lo) / step): the first such bucket
    return int(hist[first:].sum()) if first < hist.shape[0] else 0


def _rebuild_capacity(live: int, min_capacity: int) -> int:
    """The capacity :func:`_rebuild` picks for ``live`` entries (at most 3/8 full)."""
    need = min_capacity
    while 3 * need < 8 * live:
        need *= 2
    return need


def _inserted_since(used: int, max_ts_ms: int, scan_used: int, scan_max_ms: int, cap_window_ms: int) -> int:
    """Live entries, at least, among those that entered the table since a count (``used``, ``max_ts`` then).

    While the latest time has moved at most ``cap_window_ms`` since the count, every entry
    inserted since is live and the table holds at least ``used - scan_used`` of them
    (:meth:`UserSignals.compact`'s docstring); afterwards nothing is known (0).
    """
    return max(used - scan_used, 0) if max_ts_ms - scan_max_ms <= cap_window_ms else 0


@njit(cache=True)
def _compact_step(
    rows: NDArray[np.int64], used: _Int, max_ts_ms: _Int, min_capacity: _Int, lateness_ms: _Int,
    cap_window_ms: _Int, has_scan: bool, scan_lo: _Int, scan_step: _Int, scan_hist: NDArray[np.int64],
    scan_used: _Int, scan_max_ms: _Int,
) -> tuple[NDArray[np.int64], _Int, bool, bool, _Int, _Int, NDArray[np.int64]]:  # fmt: skip
    """:meth:`UserSignals.compact`'s steps in one compiled call (the tick loop's user sweeps run it).

    ``has_scan``, ``scan_lo``, ``scan_step``, ``scan_hist``, ``scan_used``, ``scan_max_ms``: its
    last count (``_live_at_scan``).  Returns ``(rows, used, rebuilt, counted, lo, step, hist)``:
    ``counted`` True when it counted again (``(lo, step, hist, used, max_ts_ms)`` the new
    ``_live_at_scan``, ``hist`` a new array, ``used`` the returned one).
    """
    if max_ts_ms == _UNSET or rows.shape[0] <= min_capacity:
        return rows, used, False, False, scan_lo, scan_step, scan_hist
    cutoff = max(max_ts_ms - lateness_ms - cap_window_ms, _UNSET)
    if has_scan:  # _still_live's bound plus _inserted_since's, then _rebuild_capacity's
        first = max(-((scan_lo - cutoff) // scan_step), 0)
        bound = 0
        for b in range(first, scan_hist.shape[0]):
            bound += scan_hist[b]
        if max_ts_ms - scan_max_ms <= cap_window_ms and used > scan_used:
            bound += used - scan_used
        need = min_capacity
        while 3 * need < 8 * bound:
            need *= 2
        if 4 * need > rows.shape[0]:
            return rows, used, False, False, scan_lo, scan_step, scan_hist
    step = max(-(-(max_ts_ms - cutoff + 1) // _SCAN_BUCKETS), 1)
    hist = _live_histogram(rows, cutoff, step, _SCAN_BUCKETS)
    live = 0
    for b in range(hist.shape[0]):
        live += hist[b]
    need = min_capacity
    while 3 * need < 8 * live:
        need *= 2
    if 4 * need > rows.shape[0]:
        return rows, used, False, True, cutoff, step, hist
    no_drop = np.empty(0, np.int64)
    rows, used = _rebuild(rows, cutoff, min_capacity, 0, no_drop, no_drop)
    return rows, used, True, True, cutoff, step, hist


@njit(cache=True)
def _count_entries(rows: NDArray[np.int64]) -> _Int:
    """Count the entries of a table; -1 if one is malformed or not where a look-up finds it."""
    mask = rows.shape[0] - 1
    used = 0
    for idx in range(rows.shape[0]):
        key = rows[idx, 0]
        if key == _EMPTY:
            continue
        kind = rows[idx, 1] >> _KIND_SHIFT
        s = (rows[idx, 1] & _TS_MASK) - _TS_OFFSET
        if key < 0 or rows[idx, 1] < 0 or kind > _PAIR_KIND or abs(s) > _TS_OFFSET:
            return -1
        if _find(rows, key, kind, mask) != idx:  # unreachable, or a duplicate of an earlier row
            return -1
        used += 1
    return used


def _column(name: str, values: object, dtype: type[_Scalar], n: int | None = None) -> NDArray[_Scalar]:
    """Check a 1-D array column of ``dtype`` (length ``n``, like ``product``); make it contiguous."""
    return column(name, values, dtype, n, like="product")


_check_range = check_range


def _int_arg(name: str, value: object, low: int, high: int) -> int:
    """Return ``value`` as an int after checking it is an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise TypeError(msg)
    if not low <= int(value) <= high:
        msg = f"{name} must be in [{low}, {high}], got {value}"
        raise ValueError(msg)
    return int(value)


def _checkpoint_array(
    arrays: Mapping[str, NDArray[np.generic]], what: str, key: str, dtype: type[np.generic], ndim: int
) -> NDArray[Any]:
    """Return ``arrays[key]`` as a C-contiguous copy (see :func:`owned`) after checking its dtype and axes."""
    a = arrays.get(key)
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
        got = "missing" if a is None else f"{getattr(a, 'dtype', type(a).__name__)}{list(np.shape(a))}"
        msg = f"{what} checkpoint array {key!r} must be {np.dtype(dtype)} with {ndim} axes, got {got}"
        raise CheckpointError(msg)
    return owned(a, dtype)


class UserSignals:
    """Per-event ``weight`` (per-user caps), ``new_pair`` and ``fresh`` flags; rules in the module docstring.

    Parameters
    ----------
    cap_window_ms : int
        ``W``: a (product, user, type) counts at most once per ``W``, a (product, user) pair is new
        at most once per ``W`` (>= 0).
    fresh_window_ms : int
        ``F``: a user is fresh for ``F`` after its first event (>= 1).
    capacity_users : int
        Initial number of user slots; grows with :meth:`ensure_users`.
    table_capacity : int
        Smallest table capacity (rows), rounded up to a power of two; the table grows past it.
    allowed_lateness_ms : int
        ``L``: events up to ``L`` behind the newest ``ts`` follow the rules with their own ``ts``,
        older ones as if ``L`` behind (>= 0).  Use the event clock's allowed lateness.

    Attributes
    ----------
    first_seen_ms : int64[capacity_users]
        Effective time of each user's first event; INT64 min for users not seen yet.
    rows : int64[table_capacity, 2]
        The table of stored times (layout in the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> s = UserSignals(cap_window_ms=1000, fresh_window_ms=5000)
    >>> w, new, fresh = s.process(np.array([7, 7, 7, 7], np.int64), np.array([3, 3, 3, 3], np.int64),
    ...                           np.array([0, 0, 1, 0], np.int8), np.array([0, 500, 600, 6000], np.int64))
    >>> w.tolist(), new.tolist(), fresh.tolist()
    ([1.0, 0.0, 1.0, 1.0], [True, False, False, True], [True, True, True, False])
    """

    def __init__(
        self, *, cap_window_ms: int, fresh_window_ms: int, capacity_users: int = 1024,
        table_capacity: int = 4096, allowed_lateness_ms: int = 300_000,
    ) -> None:  # fmt: skip
        self.cap_window_ms = _int_arg("cap_window_ms", cap_window_ms, 0, _MAX_ABS_TS_MS)
        self.fresh_window_ms = _int_arg("fresh_window_ms", fresh_window_ms, 1, _MAX_ABS_TS_MS)
        self.allowed_lateness_ms = _int_arg("allowed_lateness_ms", allowed_lateness_ms, 0, _MAX_ABS_TS_MS)
        capacity_users = _int_arg("capacity_users", capacity_users, 1, _MAX_USERS)
        table_capacity = _int_arg("table_capacity", table_capacity, 1, 2**40)
        self.min_table_capacity = 1 << (table_capacity - 1).bit_length()
        self.first_seen_ms: NDArray[np.int64] = np.full(capacity_users, _UNSET, np.int64)
        self.rows: NDArray[np.int64] = np.full((self.min_table_capacity, 2), _EMPTY, np.int64)
        self._used = 0
        self._max_ts_ms = _UNSET
        # compact()'s last count of the live entries by stored time (lo_ms, step_ms, counts) and the
        # entry count and latest time at it (after its rebuild, if any): see there
        self._live_at_scan: tuple[int, int, NDArray[np.int64], int, int] | None = None

    @property
    def capacity_users(self) -> int:
        """Number of user slots allocated (``user`` values must be below it)."""
        return int(self.first_seen_ms.shape[0])

    @property
    def table_capacity(self) -> int:
        """Rows of the table now (a power of two)."""
        return int(self.rows.shape[0])

    @property
    def n_entries(self) -> int:
        """Entries in the table: one per (product, user) pair and one per (product, user, type)."""
        return self._used

    @property
    def max_ts_ms(self) -> int | None:
        """The largest ``ts_ms`` seen so far (None before the first event)."""
        return None if self._max_ts_ms == _UNSET else self._max_ts_ms

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays owned: the table (empty rows included) and the per-user times."""
        return int(self.rows.nbytes + self.first_seen_ms.nbytes)

    def ensure_users(self, n_users: int) -> None:
        """Make user slots ``0 .. n_users - 1`` valid: double the capacity as needed, new users unseen."""
        n_users = _int_arg("n_users", n_users, 0, _MAX_USERS)
        if n_users <= self.capacity_users:
            return
        new = self.capacity_users
        while new < n_users:
            new *= 2
        first = np.full(min(new, _MAX_USERS), _UNSET, np.int64)
        first[: self.capacity_users] = self.first_seen_ms
        self.first_seen_ms = first

    def process(
        self, product: NDArray[np.int64], user: NDArray[np.int64], type_code: NDArray[np.int8],
        ts_ms: NDArray[np.int64],
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:  # fmt: skip
        """Return ``(weight float64[n], new_pair bool[n], fresh bool[n])`` and remember the batch.

        ``product`` int64[n] slots in ``[0, 2**31)``, ``user`` int64[n] slots in
        ``[0, capacity_users)``, ``type_code`` int8[n] in ``[0, 127]``, ``ts_ms`` int64[n] epoch ms
        with ``|ts_ms| <= 2**53``, in arrival order.  A wrong dtype raises TypeError, a wrong
        length or value ValueError, and then nothing changes.
        """
        product = _column("product", product, np.int64)
        n = product.shape[0]
        user = _column("user", user, np.int64, n)
        type_code = _column("type_code", type_code, np.int8, n)
        ts_ms = _column("ts_ms", ts_ms, np.int64, n)
        if n == 0:
            return np.zeros(0, np.float64), np.zeros(0, np.bool_), np.zeros(0, np.bool_)
        _check_range("product", product, 0, _MAX_PRODUCT, " (a product slot)")
        _check_range("user", user, 0, self.capacity_users, "; call ensure_users(max(user) + 1) first")
        _check_range("type_code", type_code, 0, 128)
        _check_range("ts_ms", ts_ms, -_MAX_ABS_TS_MS, _MAX_ABS_TS_MS + 1, " (epoch milliseconds)")
        rows, used, max_ts, weight, new_pair, fresh = _process(
            self.rows, np.int64(self._used), np.int64(self._max_ts_ms), self.first_seen_ms,
            product, user, type_code, ts_ms, np.int64(self.cap_window_ms),
            np.int64(self.fresh_window_ms), np.int64(self.allowed_lateness_ms),
            np.int64(self.min_table_capacity), PREFETCH_DISTANCE,
        )  # fmt: skip
        self.rows, self._used, self._max_ts_ms = rows, int(used), int(max_ts)
        return weight, new_pair, fresh

    def counted_lately(
        self, product: NDArray[np.int64], user: NDArray[np.int64], type_code: int
    ) -> NDArray[np.bool_]:
        """Per (product, user) slot pair (int64[n]): whether an event of ``type_code`` was counted lately.

        Lately: the pair's cap entry for that type is still live (stored within ``cap_window_ms`` plus
        the allowed lateness of the latest event seen), i.e. about the last ``cap_window_ms``.  A
        read-only look-up in the caps table, ``O(n)``.

        >>> s = UserSignals(cap_window_ms=1000, fresh_window_ms=5000)
        >>> _ = s.process(np.array([7, 8], np.int64), np.array([3, 3], np.int64), np.array([0, 4], np.int8),
        ...               np.array([100, 200], np.int64))
        >>> s.counted_lately(np.array([7, 8, 7]), np.array([3, 3, 4]), 0).tolist()
        [True, False, False]
        """
        product = _column("product", product, np.int64)
        user = _column("user", user, np.int64, product.shape[0])
        if product.shape[0] == 0 or self._max_ts_ms == _UNSET:
            return np.zeros(product.shape[0], np.bool_)
        cutoff = self._max_ts_ms - self.allowed_lateness_ms - self.cap_window_ms
        return _has_live(self.rows, product, user, np.int64(type_code), np.int64(cutoff))

    def forget_users(self, users: NDArray[np.int64]) -> None:
        """Forget ``users`` (int64[m] slots) before their slots are reused: first-seen times and entries.

        A reused slot then starts as a new, fresh user with no caps.  O(table) per call: call it
        once per batch of released slots.
        """
        users = _column("users", users, np.int64)
        _check_range("users", users, 0, self.capacity_users)
        self.first_seen_ms[users] = _UNSET
        self._drop(np.empty(0, np.int64), np.unique(users))

    def forget_products(self, products: NDArray[np.int64]) -> None:
        """Drop the entries of ``products`` (int64[m] slots) before their slots are reused; O(table)."""
        products = _column("products", products, np.int64)
        _check_range("products", products, 0, _MAX_PRODUCT)
        self._drop(np.unique(products), np.empty(0, np.int64))

    def _drop(self, products: NDArray[np.int64], users: NDArray[np.int64]) -> None:
        """Rebuild the table without the entries of ``products`` and ``users`` (sorted int64[m])."""
        if products.shape[0] or users.shape[0]:
            cutoff = self._max_ts_ms - self.allowed_lateness_ms - self.cap_window_ms
            rows, used = _rebuild(
                self.rows, np.int64(max(cutoff, _UNSET)), np.int64(self.min_table_capacity), np.int64(0),
                products, users,
            )  # fmt: skip
            self.rows, self._used = rows, int(used)
            self._live_at_scan = None  # live entries were dropped: the last count no longer bounds them

    def compact(self) -> bool:
        """Shrink the table when its live entries would fit one at least four times smaller.

        Expired entries (stored time ``< M - L - W``) can never block an event again (module
        docstring), so dropping them changes no output; without this, a table grown for a busy hour
        keeps its rows (and their resident pages) until the next insert-triggered rebuild, which a
        quiet stream may never make.  The engine calls it at its user sweeps.  Returns True if the
        table was rebuilt.

        Most calls cost O(1): one O(table) pass counts the live entries exactly, by stored time,
        and remembers that count with the entry count ``used0`` and latest time ``M0`` at it (just
        after its rebuild, if it rebuilt).  A later call first takes a lower bound ``A + B`` of the
        live entries; when they alone need a table more than a quarter of this one, no rebuild is
        due and nothing is scanned.  Otherwise it counts again.  The answer is always the exact
        count's, because ``A + B`` is never above it:

        * ``A``: the entries counted then at stored times ``>= cutoff`` now (whole buckets).  They
          are still live and still in the table: a stored time only increases, and an entry
          leaves the table only expired (a rebuild's drop, or an expired row taken by a new key)
          or by :meth:`forget_users` / :meth:`forget_products`, which forget the count.
        * ``B = max(used - used0, 0)`` while ``M - M0 <= W``, else 0 (perf25b).  Let ``N`` be the
          entries inserted since the count (a probe that did not find them).  Each stored its
          effective time ``e >= M_then - L >= M0 - L >= M - L - W`` and a stored time only
          increases: all of ``N`` is live now and still in the table, and none of ``A`` is in
          ``N`` (found all along).  ``used`` is the number of entries in the table, and each of
          them was in the table at the count (``used0`` of them) or is in ``N``, whatever
          rebuilds came between: ``used <= used0 + |N|``, so ``A + B <= |A| + |N| <= live``.
          (New keys that took an expired row are in ``N`` but did not raise ``used``: the bound
          misses them, it never counts one twice.)
        """
        if self._max_ts_ms == _UNSET or self.rows.shape[0] <= self.min_table_capacity:
            return False
        cutoff = np.int64(max(self._max_ts_ms - self.allowed_lateness_ms - self.cap_window_ms, _UNSET))
        if self._live_at_scan is not None:
            lo_ms, step_ms, hist, used0, max0 = self._live_at_scan
            bound = _still_live(hist, lo_ms, step_ms, int(cutoff))  # live now, at least
            bound += _inserted_since(self._used, self._max_ts_ms, used0, max0, self.cap_window_ms)
            if 4 * _rebuild_capacity(bound, self.min_table_capacity) > self.rows.shape[0]:
                return False
        step = max(-(-(self._max_ts_ms - int(cutoff) + 1) // _SCAN_BUCKETS), 1)  # stored times <= max_ts
        hist = _live_histogram(self.rows, cutoff, np.int64(step), np.int64(_SCAN_BUCKETS))
        live = int(hist.sum())
        rebuilt = 4 * _rebuild_capacity(live, self.min_table_capacity) <= int(self.rows.shape[0])
        if rebuilt:
            no_drop = np.empty(0, np.int64)
            self.rows, used = _rebuild(
                self.rows, cutoff, np.int64(self.min_table_capacity), np.int64(0), no_drop, no_drop
            )
            self._used = int(used)
        self._live_at_scan = (int(cutoff), step, hist, self._used, self._max_ts_ms)
        return rebuilt

    def to_arrays(self, *, copy: bool = True) -> dict[str, NDArray[np.generic]]:
        """Return the state as plain numpy arrays for a checkpoint (copies; copy=False: views of big ones).

        Keys: ``rows`` int64[table_capacity, 2], ``first_seen_ms`` int64[capacity_users],
        ``max_ts_ms`` int64[1] (INT64 min before the first event) and ``windows_ms`` int64[3]
        (``cap_window_ms``, ``fresh_window_ms``, ``allowed_lateness_ms``; checked on restore).
        """
        cp = np.copy if copy else np.ndarray.view  # a view: owndata False, so a caller tells it from a copy
        return {"rows": cp(self.rows), "first_seen_ms": cp(self.first_seen_ms),
                "max_ts_ms": np.array([self._max_ts_ms], np.int64),
                "windows_ms": np.array(self._windows(), np.int64)}  # fmt: skip

    def _windows(self) -> list[int]:
        return [self.cap_window_ms, self.fresh_window_ms, self.allowed_lateness_ms]

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return dict(self.to_arrays(copy=copy)), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> UserSignals:
        """:meth:`from_arrays` with these signals' windows."""
        return type(self).from_arrays(
            arrays, cap_window_ms=self.cap_window_ms, fresh_window_ms=self.fresh_window_ms,
            table_capacity=self.min_table_capacity, allowed_lateness_ms=self.allowed_lateness_ms,
        )  # fmt: skip

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, NDArray[np.generic]], *, cap_window_ms: int, fresh_window_ms: int,
        table_capacity: int = 4096, allowed_lateness_ms: int = 300_000,
    ) -> UserSignals:  # fmt: skip
        """Rebuild signals from :meth:`to_arrays` output, exactly; CheckpointError if they do not fit."""
        out = cls(cap_window_ms=cap_window_ms, fresh_window_ms=fresh_window_ms, capacity_users=1,
                  table_capacity=table_capacity, allowed_lateness_ms=allowed_lateness_ms)  # fmt: skip
        rows = _checkpoint_array(arrays, "user signals", "rows", np.int64, 2)
        first = _checkpoint_array(arrays, "user signals", "first_seen_ms", np.int64, 1)
        max_ts = _checkpoint_array(arrays, "user signals", "max_ts_ms", np.int64, 1)
        windows = _checkpoint_array(arrays, "user signals", "windows_ms", np.int64, 1)
        cap = rows.shape[0]
        if rows.shape[1] != 2 or cap < 1 or cap & (cap - 1) or not 1 <= first.shape[0] <= _MAX_USERS:
            msg = (
                "user signals checkpoint must have rows int64[power of two, 2] and first_seen_ms "
                f"int64[1..2**32], got rows{list(rows.shape)}, first_seen_ms{list(first.shape)}"
            )
            raise CheckpointError(msg)
        if windows.tolist() != out._windows():
            msg = (
                f"user signals checkpoint has (cap_window_ms, fresh_window_ms, allowed_lateness_ms) "
                f"{tuple(windows.tolist())}, the configuration has {tuple(out._windows())}; restore "
                "with the windows it was written with"
            )
            raise CheckpointError(msg)
        used = int(_count_entries(rows))
        times = np.concatenate([max_ts, first])
        beyond = (times < -_MAX_ABS_TS_MS) | (times > _MAX_ABS_TS_MS)
        bad_ts = max_ts.shape != (1,) or bool((beyond & (times != _UNSET)).any())
        if used < 0 or 4 * used > 3 * cap or bad_ts:
            msg = "user signals checkpoint is corrupt: bad rows, a table over 3/4 full or a time past 2**53"
            raise CheckpointError(msg)
        out.rows, out.first_seen_ms, out._used, out._max_ts_ms = rows, first, used, int(max_ts[0])
        return out


@njit(cache=True)
def _sketch_update(
    sig: NDArray[np.uint64], nonempty: NDArray[np.bool_], row_of: NDArray[np.int64],
    seeds: NDArray[np.int64], product: NDArray[np.int64], user: NDArray[np.int64],
) -> None:  # fmt: skip
    """``sig[row, j] = min(sig[row, j], mix64(user ^ seeds[j]))`` for events of watched products.

    ``sig`` uint64[rows, k], ``nonempty`` bool[rows], ``row_of`` int64[n_slots] (-1: not
    watched), ``seeds`` int64[k]; ``product`` (>= 0) and ``user`` int64[n].
    """
    for i in range(product.shape[0]):
        p = product[i]
        if p >= row_of.shape[0] or row_of[p] < 0:
            continue
        r = row_of[p]
        nonempty[r] = True
        u = user[i]
        for j in range(seeds.shape[0]):
            h = _mix64(u ^ seeds[j])
            if h < sig[r, j]:
                sig[r, j] = h


@njit(cache=True)
def _watch(
    row_of: NDArray[np.int64], product_of_row: NDArray[np.int64], sig: NDArray[np.uint64],
    nonempty: NDArray[np.bool_], products: NDArray[np.int64],
) -> int:  # fmt: skip
    """:meth:`UserSketches.watch` when no array has to grow; -1 (nothing changed) when one must.

    The new products (ascending, distinct) take the free rows (ascending).  Returns how many were
    added, or -1 when a new product lies beyond ``row_of`` or the free rows are too few.
    """
    new = np.empty(products.shape[0], np.int64)
    m = 0
    for i in range(products.shape[0]):
        p = products[i]
        if p >= row_of.shape[0]:
            return -1
        if row_of[p] < 0:
            new[m] = p
            m += 1
    if m == 0:
        return 0
    new = np.unique(new[:m])
    rows = np.empty(new.shape[0], np.int64)
    k = 0
    for r in range(product_of_row.shape[0]):
        if k == new.shape[0]:
            break
        if product_of_row[r] < 0:
            rows[k] = r
            k += 1
    if k < new.shape[0]:
        return -1
    for j in range(k):
        row_of[new[j]] = rows[j]
        product_of_row[rows[j]] = new[j]
        sig[rows[j], :] = np.iinfo(np.uint64).max
        nonempty[rows[j]] = False
    return k


@njit(cache=True)
def _unwatch(
    row_of: NDArray[np.int64], product_of_row: NDArray[np.int64], sig: NDArray[np.uint64],
    nonempty: NDArray[np.bool_], products: NDArray[np.int64],
) -> None:  # fmt: skip
    """:meth:`UserSketches.unwatch`: free the rows of the watched ``products``."""
    for i in range(products.shape[0]):
        p = products[i]
        if p < row_of.shape[0] and row_of[p] >= 0:
            r = row_of[p]
            row_of[p] = -1
            product_of_row[r] = -1
            sig[r, :] = np.iinfo(np.uint64).max
            nonempty[r] = False


class UserSketches:
    """MinHash signatures of the users behind watched products, for Jaccard estimates between them.

    ``h_j(user) = splitmix64(user ^ seed_j)`` with ``seed_j`` the ``j``-th output of a splitmix64
    generator seeded with ``seed``; a product's signature is ``min h_j`` over the users of its events
    since it was watched or :meth:`reset`.  Equal signature entries between two products are an
    unbiased estimate of the Jaccard similarity of their user sets (standard error
    ``sqrt(J (1 - J) / k)``), and different users never collide (splitmix64 is a bijection).
    Memory: ``row_of`` int64 up to the largest product slot watched, plus ``8 k + 9`` bytes per row;
    rows of unwatched products are reused lowest-first.  Order of updates never matters (a min).

    Parameters
    ----------
    k : int
        Signature length, in ``[1, 4096]``.
    seed : int
        Seed of the hash family, in ``[0, 2**64)``.

    Examples
    --------
    >>> import numpy as np
    >>> sk = UserSketches(k=64)
    >>> sk.watch(np.array([1, 2], np.int64))
    >>> sk.update(np.array([1, 1, 2, 2, 5], np.int64), np.array([10, 11, 10, 11, 12], np.int64))
    >>> sk.similarity(np.array([1, 1], np.int64), np.array([2, 5], np.int64)).tolist()
    [1.0, nan]
    """

    def __init__(self, *, k: int = 16, seed: int = 0) -> None:
        self.k = _int_arg("k", k, 1, 4096)
        self.seed = _int_arg("seed", seed, 0, _M64)
        gen = [_mix64_py((self.seed + j * _GOLDEN) & _M64) for j in range(self.k)]
        self._seeds: NDArray[np.int64] = np.array(gen, np.uint64).view(np.int64)
        self.row_of: NDArray[np.int64] = np.full(0, -1, np.int64)
        self.product_of_row: NDArray[np.int64] = np.full(0, -1, np.int64)
        self.sig: NDArray[np.uint64] = np.full((0, self.k), _U64_MAX, np.uint64)
        self.nonempty: NDArray[np.bool_] = np.zeros(0, np.bool_)

    def __len__(self) -> int:
        """Return the number of products watched."""
        return int((self.product_of_row >= 0).sum())

    @property
    def seeds(self) -> NDArray[np.uint64]:
        """``seed_j`` of the hash family, uint64[k] (a copy)."""
        return self._seeds.view(np.uint64).copy()

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays owned, free rows included."""
        arrays = (self.row_of, self.product_of_row, self.sig, self.nonempty, self._seeds)
        return int(sum(a.nbytes for a in arrays))

    def _products(self, name: str, products: object) -> NDArray[np.int64]:
        values = _column(name, products, np.int64)
        _check_range(name, values, 0, _MAX_PRODUCT, " (a product slot)")
        return values

    def _rows(self, products: NDArray[np.int64]) -> NDArray[np.int64]:
        """Row of each product, -1 where it is not watched."""
        inside = products < self.row_of.shape[0]
        out = np.full(products.shape[0], -1, np.int64)
        out[inside] = self.row_of[products[inside]]
        return out

    def is_watched(self, products: NDArray[np.int64]) -> NDArray[np.bool_]:
        """``bool[m]``: whether each product is watched."""
        return self._rows(self._products("products", products)) >= 0

    def watch(self, products: NDArray[np.int64]) -> None:
        """Start tracking ``products`` (int64[m]) with empty signatures; watched ones are left as they are."""
        products = self._products("products", products)
        if _watch(self.row_of, self.product_of_row, self.sig, self.nonempty, products) >= 0:
            return  # done in one compiled pass: no array had to grow
        new = np.unique(products[self._rows(products) < 0])
        if new.shape[0] == 0:
            return
        if int(new[-1]) >= self.row_of.shape[0]:
            size = max(1024, self.row_of.shape[0])
            while size <= int(new[-1]):
                size *= 2
            self.row_of = np.concatenate([self.row_of, np.full(size - self.row_of.shape[0], -1, np.int64)])
        free = np.flatnonzero(self.product_of_row < 0)
        if free.shape[0] < new.shape[0]:
            old = self.product_of_row.shape[0]
            size = max(16, old)
            while size - old + free.shape[0] < new.shape[0]:
                size *= 2
            self.product_of_row = np.concatenate([self.product_of_row, np.full(size - old, -1, np.int64)])
            self.sig = np.concatenate([self.sig, np.full((size - old, self.k), _U64_MAX, np.uint64)])
            self.nonempty = np.concatenate([self.nonempty, np.zeros(size - old, np.bool_)])
            free = np.flatnonzero(self.product_of_row < 0)
        rows = free[: new.shape[0]]
        self.row_of[new] = rows
        self.product_of_row[rows] = new
        self.sig[rows] = _U64_MAX
        self.nonempty[rows] = False

    def unwatch(self, products: NDArray[np.int64]) -> None:
        """Stop tracking ``products`` (int64[m]) and free their rows; unwatched ones are ignored."""
        _unwatch(
            self.row_of, self.product_of_row, self.sig, self.nonempty, self._products("products", products)
        )

    def reset(self, products: NDArray[np.int64]) -> None:
        """Empty the signatures of watched ``products`` (int64[m]): start a new window; others ignored."""
        rows = self._rows(self._products("products", products))
        rows = rows[rows >= 0]
        self.sig[rows] = _U64_MAX
        self.nonempty[rows] = False

    def update(self, product: NDArray[np.int64], user: NDArray[np.int64]) -> None:
        """Add the users of events (``product`` slots and ``user`` ids, int64[n]) to watched products."""
        product = self._products("product", product)
        user = _column("user", user, np.int64, product.shape[0])
        if product.shape[0]:
            _sketch_update(self.sig, self.nonempty, self.row_of, self._seeds, product, user)

    def signatures(self, products: NDArray[np.int64]) -> NDArray[np.uint64]:
        """Return copies of the signatures of watched ``products``, uint64[m, k] (2**64 - 1 while empty)."""
        products = self._products("products", products)
        rows = self._rows(products)
        if (rows < 0).any():
            msg = f"product {products[rows < 0][0]} is not watched; call watch() first"
            raise KeyError(msg)
        return self.sig[rows]

    def similarity(self, a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.float64]:
        """Jaccard estimates between the user sets of ``a[j]`` and ``b[j]`` (int64[m]), float64[m].

        The fraction of equal signature entries; NaN where either product is unwatched or empty.
        """
        ra = self._rows(self._products("a", a))
        rb = self._rows(self._products("b", b))
        if ra.shape != rb.shape:
            msg = f"a and b must have the same length, got {ra.shape[0]} and {rb.shape[0]}"
            raise ValueError(msg)
        ok = (ra >= 0) & (rb >= 0)
        ok[ok] = self.nonempty[ra[ok]] & self.nonempty[rb[ok]]
        out = np.full(ra.shape[0], np.nan)
        out[ok] = (self.sig[ra[ok]] == self.sig[rb[ok]]).mean(axis=1)
        return out

    def count_nonempty(self) -> int:
        """Return the number of watched products with a user since they were watched or reset."""
        return int(self.nonempty.sum())

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Return the state as plain numpy arrays (copies), for a checkpoint.

        Keys: ``row_of`` int64[n_slots], ``product_of_row`` int64[rows], ``sig`` uint64[rows, k],
        ``nonempty`` bool[rows] and ``seeds`` uint64[k] (checked on restore).
        """
        return {"row_of": self.row_of.copy(), "product_of_row": self.product_of_row.copy(),
                "sig": self.sig.copy(), "nonempty": self.nonempty.copy(), "seeds": self.seeds}  # fmt: skip

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, NDArray[np.generic]], *, k: int = 16, seed: int = 0
    ) -> UserSketches:
        """Rebuild sketches from :meth:`to_arrays` output, exactly; CheckpointError if they do not fit."""
        out = cls(k=k, seed=seed)
        row_of = _checkpoint_array(arrays, "user sketches", "row_of", np.int64, 1)
        product_of_row = _checkpoint_array(arrays, "user sketches", "product_of_row", np.int64, 1)
        sig = _checkpoint_array(arrays, "user sketches", "sig", np.uint64, 2)
        nonempty = _checkpoint_array(arrays, "user sketches", "nonempty", np.bool_, 1)
        seeds = _checkpoint_array(arrays, "user sketches", "seeds", np.uint64, 1)
        if not np.array_equal(seeds, out.seeds):
            msg = "user sketches checkpoint was written with another k or seed; restore with the ones it used"
            raise CheckpointError(msg)
        n_rows = product_of_row.shape[0]
        if sig.shape != (n_rows, out.k) or nonempty.shape != (n_rows,) or row_of.shape[0] > _MAX_PRODUCT:
            msg = (f"user sketches checkpoint arrays disagree: product_of_row{list(product_of_row.shape)}, "
                   f"sig{list(sig.shape)}, nonempty{list(nonempty.shape)}, k={out.k}")  # fmt: skip
            raise CheckpointError(msg)
        watched = np.flatnonzero(row_of >= 0)
        rows = row_of[watched]
        consistent = (
            bool(((row_of >= -1) & (row_of < n_rows)).all())
            and bool((product_of_row >= -1).all())
            and int((product_of_row >= 0).sum()) == watched.shape[0]
            and bool((product_of_row[rows] == watched).all())
        )
        if not consistent:
            msg = "user sketches checkpoint is corrupt: row_of and product_of_row do not map to each other"
            raise CheckpointError(msg)
        out.row_of, out.product_of_row, out.sig, out.nonempty = row_of, product_of_row, sig, nonempty
        return out
