"""User ids as 64-bit hashes in a numba open-addressing table, with slots released after inactivity.

Users need no names: a batch's ``user_id`` strings are hashed in one vectorised step
(:func:`hash_ids`: the ids are joined into one UTF-8 buffer with a NUL between them, and a numba
loop computes FNV-1a 64 of each id followed by murmur3's finaliser; 13 ns per id measured, polars
``Series.hash`` 20 ns and a ``dict`` look-up 70 ns), and :class:`UserTable` maps each hash to a
dense ``int64`` slot, the index the user kernels (:mod:`viraltrend.kernels.users`) work on.  The
hash is fixed by this module (not a library's, which may change between versions), so hashes in a
checkpoint stay valid after an upgrade.

**Collisions.**  Two different user ids with the same 64-bit hash are one user to the engine
(their caps and first-seen time are shared).  For ``n`` distinct users the chance that any two
collide is at most ``n**2 / 2**65``: 2.7e-6 at 10M users (the birthday bound).  A collision merges
two users, never two products: products keep their names in
:class:`~viraltrend.kernels.intern.Interner`.

**Slots.**  A hash not in the table takes the lowest free slot, else the next new one, in event
order: slots are a deterministic function of the events and of when :meth:`UserTable.release_idle`
and :meth:`UserTable.recycle` are called (the engine calls them at event-time ticks, so slots do
not depend on batching).  Each slot keeps ``last_ms``, the largest *effective* time of its user's
events (``max(ts, M - L)`` with ``M`` the largest ``ts`` so far and ``L`` the allowed lateness,
the rule of :class:`~viraltrend.kernels.users.UserSignals`).  :meth:`UserTable.release_idle`
removes the users whose ``last_ms < M - L - idle_ms``: with ``idle_ms >= max(cap_window,
fresh_window)`` every later event of such a user has ``e > last_ms + idle_ms``, so its caps have
expired and it is no longer fresh.  Forgetting it changes no signal, provided a returning user is
known not to be fresh: released hashes stay in a map of *veterans* (hash -> last slot, 12 bytes
per user released, at most 3/4 full), and :meth:`UserTable.intern` flags a veteran's return.  The
veterans are kept in two generations, as dedup keeps ids: once the newer one holds
``max_veterans / 2`` users it becomes the older one and the oldest generation is forgotten, so
hostile or merely endless random user ids cost a bounded map; a user released more than two
generations ago counts as new again when it returns.

A released slot is *held* until :meth:`UserTable.recycle` makes it reusable.  The engine recycles
a slot only once its MinHash values (:class:`~viraltrend.kernels.users.UserSketches` hashes the
slot) are in no kept signature (:func:`signature_slots`): else a new user in that slot would look
like the old one to the audience comparison.  A veteran coming back while its slot is held takes
that slot back, so a ring's accounts returning hours later are still the same accounts to the
remembered audiences.  (A veteran whose slot was recycled gets a new one: its old values were in
no kept minimum, so no kept overlap is lost.)

Memory per live user: the slot table (one ``uint64`` per row, the hash's low 32 bits above the
slot; a probe that matches them checks the full hash in ``hash_of``; at most 3/4 full, at least
3/8 after growth: 11 to 21 bytes), ``hash_of``, ``prev_of`` and ``last_ms`` (24 bytes per
slot; 16 without ``prev_of``, which a caller that never holds slots does not keep), and 4 bytes
per free slot in the free list.

Examples
--------
>>> import numpy as np
>>> t = UserTable(idle_ms=1000, allowed_lateness_ms=0)
>>> h = hash_ids(["u1", "u2", "u1"])
>>> t.intern(h, np.array([0, 10, 20], np.int64))[0].tolist()
[0, 1, 0]
>>> t.intern(hash_ids(["u3"]), np.array([1500], np.int64))[0].tolist()
[2]
>>> t.release_idle().tolist()  # u1 (last at 20) and u2 (last at 10) idle for more than 1000 ms
[0, 1]
>>> t.recycle(t.held_slots()[:1])  # slot 0 may be reused, slot 1 stays u2's
>>> slots, returning = t.intern(hash_ids(["u4", "u2"]), np.array([1600, 1700], np.int64))
>>> slots.tolist(), returning.tolist()
([0, 1], [False, True])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.decay import _prefetch

__all__ = ["UserTable", "hash_ids", "signature_slots"]

_EMPTY: Final = 0  # key of an empty row: hash_ids never returns 0
_FREE_ROW: Final = np.uint64(2**64 - 1)  # an empty row of the slot table (no slot is 2**32 - 1)
_LOW32: Final = np.uint64(0xFFFFFFFF)
_UNSET: Final = int(np.iinfo(np.int64).min)
#: Hashes ahead whose home rows the interning, the releases and the veterans' inserts prefetch: the
#: veterans' map (millions of rows on a busy day) does not fit in cache, nor, mostly, the slot table.
_AHEAD: Final = 8
_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_Int: TypeAlias = int | np.integer[Any]
_U64: TypeAlias = NDArray[np.uint64]
_I64: TypeAlias = NDArray[np.int64]
_I32: TypeAlias = NDArray[np.int32]  # slots in the hash maps (< 2**31)


@njit(cache=True)
def _finish(h: np.uint64) -> np.uint64:
    """murmur3's 64-bit finaliser (spreads FNV's weak high bits); 0 maps to 1 (0 marks empty rows)."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h if h != np.uint64(0) else np.uint64(1)


@njit(cache=True)
def _hash_joined(buf: NDArray[np.uint8], n: _Int) -> _U64:
    """Hashes of the ``n`` ids in ``buf`` (uint8, the ids' UTF-8 joined by single NUL bytes)."""
    out = np.empty(n, np.uint64)
    i = 0
    h = np.uint64(_FNV_OFFSET)
    for j in range(buf.shape[0]):
        b = buf[j]
        if b == 0:
            out[i] = _finish(h)
            i += 1
            h = np.uint64(_FNV_OFFSET)
        else:
            h = (h ^ np.uint64(b)) * np.uint64(_FNV_PRIME)
    if n > 0:
        out[i] = _finish(h)
    return out


@njit(cache=True)
def _hash_spans(buf: NDArray[np.uint8], ends: _I64) -> _U64:
    """Hashes of the ids ``buf[ends[i - 1]:ends[i]]`` (any bytes, NUL included)."""
    out = np.empty(ends.shape[0], np.uint64)
    start = 0
    for i in range(ends.shape[0]):
        h = np.uint64(_FNV_OFFSET)
        for j in range(start, ends[i]):
            h = (h ^ np.uint64(buf[j])) * np.uint64(_FNV_PRIME)
        out[i] = _finish(h)
        start = ends[i]
    return out


def hash_ids(ids: Sequence[str]) -> _U64:
    """Return the 64-bit hash of each id (``uint64[n]``, never 0): FNV-1a 64 of its UTF-8, finalised.

    One ``join``, one ``encode`` and one numba pass over the bytes; ids that contain a NUL
    character (which the join uses as separator) take a slower path with per-id lengths.
    """
    n = len(ids)
    if n == 0:
        return np.empty(0, np.uint64)
    joined = "\x00".join(ids).encode("utf-8", "surrogatepass")
    buf = np.frombuffer(joined, np.uint8)
    with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
        if joined.count(b"\x00") == n - 1:
            return _hash_joined(buf, n)
        parts = [s.encode("utf-8", "surrogatepass") for s in ids]
        ends = np.cumsum(np.fromiter(map(len, parts), np.int64, n))
        return _hash_spans(np.frombuffer(b"".join(parts), np.uint8), ends)


@njit(cache=True)
def _home(h: np.uint64, mask: _Int) -> _Int:
    """Home row of hash ``h`` in a table of ``mask + 1`` rows (the hash is already mixed)."""
    return np.int64(h & np.uint64(mask))


@no_refcounts
def _find(keys: _U64, h: np.uint64) -> _Int:
    """Row of ``h`` in ``keys`` (linear probing), or the empty row where it would go."""
    mask = keys.shape[0] - 1
    idx = _home(h, mask)
    while keys[idx] != h and keys[idx] != _EMPTY:
        idx = (idx + 1) & mask
    return idx


@njit(cache=True)
def _delete(keys: _U64, vals: _I32, idx: _Int) -> None:
    """Empty row ``idx`` by backward-shift deletion: later rows of its run move up; no tombstones."""
    mask = keys.shape[0] - 1
    hole = idx
    j = idx
    while True:
        j = (j + 1) & mask
        if keys[j] == _EMPTY:
            break
        home = _home(keys[j], mask)
        # move j into the hole unless its home lies cyclically in (hole, j]
        if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole and home > j):
            keys[hole] = keys[j]
            vals[hole] = vals[j]
            hole = j
    keys[hole] = _EMPTY
    vals[hole] = -1


@njit(cache=True)
def _rehash(keys: _U64, vals: _I32, capacity: _Int) -> tuple[_U64, _I32]:
    """Copy every entry into a table of ``capacity`` rows (a power of two)."""
    nk = np.zeros(capacity, np.uint64)
    nv = np.full(capacity, -1, np.int32)
    for idx in range(keys.shape[0]):
        if keys[idx] != _EMPTY:
            j = _find(nk, keys[idx])
            nk[j] = keys[idx]
            nv[j] = vals[idx]
    return nk, nv


@no_refcounts
def _row_find(rows: _U64, hash_of: _U64, h: np.uint64) -> _Int:
    """Row of hash ``h`` in the slot table, or the empty row where it would go.

    A row holds the hash's low 32 bits above the slot; the full hash is checked in ``hash_of``.
    """
    mask = rows.shape[0] - 1  # < 2**32: the low 32 bits give the home row
    low = h & _LOW32
    idx = np.int64(low & np.uint64(mask))
    while rows[idx] != _FREE_ROW:
        if rows[idx] >> np.uint64(32) == low and hash_of[np.int64(rows[idx] & _LOW32)] == h:
            return idx
        idx = (idx + 1) & mask
    return idx


@no_refcounts
def _row_delete(rows: _U64, idx: _Int) -> None:
    """Empty row ``idx`` of the slot table by backward-shift deletion."""
    mask = rows.shape[0] - 1
    hole = idx
    j = idx
    while True:
        j = (j + 1) & mask
        if rows[j] == _FREE_ROW:
            break
        home = np.int64((rows[j] >> np.uint64(32)) & np.uint64(mask))
        if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole and home > j):
            rows[hole] = rows[j]
            hole = j
    rows[hole] = _FREE_ROW


@njit(cache=True)
def _row_rehash(rows: _U64, capacity: _Int) -> _U64:
    """The slot table's rows in a table of ``capacity`` rows (a power of two)."""
    out = np.full(capacity, _FREE_ROW, np.uint64)
    mask = capacity - 1
    for r in range(rows.shape[0]):
        if rows[r] != _FREE_ROW:
            j = np.int64((rows[r] >> np.uint64(32)) & np.uint64(mask))
            while out[j] != _FREE_ROW:
                j = (j + 1) & mask
            out[j] = rows[r]
    return out


@njit(cache=True)
def _row_build(hashes: _U64, slots: _I64, capacity: _Int) -> _U64:
    """A slot table of ``capacity`` rows holding ``hashes[i] -> slots[i]``."""
    out = np.full(capacity, _FREE_ROW, np.uint64)
    mask = capacity - 1
    for i in range(hashes.shape[0]):
        low = hashes[i] & _LOW32
        j = np.int64(low & np.uint64(mask))
        while out[j] != _FREE_ROW:
            j = (j + 1) & mask
        out[j] = (low << np.uint64(32)) | np.uint64(slots[i])
    return out


@no_refcounts
def _sorted_has_from(values: _I32, start: _Int, x: _Int) -> bool:
    """``x in values[start:]`` for an ascending int32 array: a binary search without a slice."""
    lo, hi = start, values.shape[0]
    while lo < hi:  # the first position >= start holding a value >= x, as searchsorted's left side
        mid = (lo + hi) >> 1
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return bool(lo < values.shape[0] and values[lo] == x)


@no_refcounts
def _intern_run(
    rows: _U64, used: _Int, hash_of: _U64, prev_of: _U64, last_ms: _I64, high_water: _Int,
    free: _I32, free_pos: _Int, vet_keys: _U64, vet_vals: _I32, vet_used: _Int, old_keys: _U64,
    old_vals: _I32, old_used: _Int, max_ts_ms: _Int, hashes: _U64, ts_ms: _I64, lateness_ms: _Int,
    i: int, slots: _I64, returning: NDArray[np.bool_],
) -> tuple[int, _Int, _Int, _Int, _Int]:  # fmt: skip
    """:func:`_intern`'s steps from event ``i`` on while no array must grow; the scalars after them.

    Returns ``(i, used, high_water, free_pos, max_ts_ms)``.  Stops before (nothing of it done) the
    first event whose new entry needs the row table rehashed or a slot at ``high_water`` past
    ``hash_of``'s end, or at the end; the shell grows that array and calls it again from there.  Without
    reference counts (perf23: the arrays carried round the per-event loop were taken and dropped at
    each event).
    """
    n = hashes.shape[0]
    while i < n:
        if i + _AHEAD < n:  # a hint only (never faults): the rows the lookups below will read
            ha = hashes[i + _AHEAD]
            _prefetch(rows, np.int64(ha & _LOW32 & np.uint64(rows.shape[0] - 1)))
            if vet_used:
                _prefetch(vet_keys, _home(ha, vet_keys.shape[0] - 1))
            if old_used:
                _prefetch(old_keys, _home(ha, old_keys.shape[0] - 1))
        h = hashes[i]
        idx = _row_find(rows, hash_of, h)
        t = ts_ms[i]
        m_ts = t if t > max_ts_ms else max_ts_ms
        e = max(t, m_ts - lateness_ms)
        if rows[idx] != _FREE_ROW:
            s: _Int = np.int64(rows[idx] & _LOW32)
        else:
            if 4 * (used + 1) > 3 * rows.shape[0]:
                break  # a rehash: the shell's
            s = -1
            v = -1
            if vet_used:  # the newer generation of veterans first, then the older one
                j = _find(vet_keys, h)
                if vet_keys[j] == h:
                    v = vet_vals[j]
            if v < 0 and old_used:
                j = _find(old_keys, h)
                if old_keys[j] == h:
                    v = old_vals[j]
            back = False
            if v >= 0:
                back = True
                held = (
                    prev_of.shape[0] > 0  # held slots tracked
                    and hash_of[v] == _EMPTY
                    and prev_of[v] == h
                    and not _sorted_has_from(free, free_pos, v)
                )
                if held:
                    s = v  # held: its MinHash values may be in kept signatures, so keep them its own
            if s < 0 and free_pos < free.shape[0]:
                s = free[free_pos]
                free_pos += 1
            elif s < 0:
                if high_water >= hash_of.shape[0]:
                    break  # the slot arrays grow: the shell's
                s = high_water
                high_water += 1
            returning[i] = back
            rows[idx] = ((h & _LOW32) << np.uint64(32)) | np.uint64(s)
            used += 1
            hash_of[s] = h
            last_ms[s] = e
        max_ts_ms = m_ts
        if e > last_ms[s]:
            last_ms[s] = e
        slots[i] = s
        i += 1
    return i, used, high_water, free_pos, max_ts_ms


@njit(cache=True)
def _intern(
    rows: _U64, used: _Int, hash_of: _U64, prev_of: _U64, last_ms: _I64, high_water: _Int,
    free: _I32, free_pos: _Int, vet_keys: _U64, vet_vals: _I32, vet_used: _Int, old_keys: _U64,
    old_vals: _I32, old_used: _Int, max_ts_ms: _Int, hashes: _U64, ts_ms: _I64, lateness_ms: _Int,
) -> tuple[_U64, _Int, _U64, _U64, _I64, _Int, _Int, _Int, _I64, NDArray[np.bool_]]:  # fmt: skip
    """Slots of ``hashes`` in order, new ones from ``free[free_pos:]`` (sorted) then ``high_water``.

    Updates ``last_ms`` with each event's effective time; returns the (possibly regrown)
    slot table ``rows``, ``hash_of``, ``prev_of``, ``last_ms`` and the new ``used``, ``high_water``,
    ``free_pos``, ``max_ts_ms``, plus ``slots`` int64[n] and ``returning`` bool[n] (a new entry
    whose hash is a veteran's).  A veteran takes back its last slot while that slot is held
    (released by it, ``prev_of[slot] == hash``, and not recycled: free slots are ``free[free_pos:]``).
    The events run in :func:`_intern_run` (no reference counts); where an event's new entry needs the
    row table rehashed or the slot arrays grown, it stops, the array grows here and the run takes
    that event.
    """
    n = hashes.shape[0]
    slots = np.empty(n, np.int64)
    returning = np.zeros(n, np.bool_)
    i = 0
    while True:
        i, used, high_water, free_pos, max_ts_ms = _intern_run(
            rows, used, hash_of, prev_of, last_ms, high_water, free, free_pos, vet_keys, vet_vals, vet_used,
            old_keys, old_vals, old_used, max_ts_ms, hashes, ts_ms, lateness_ms, i, slots, returning,
        )  # fmt: skip
        if i >= n:
            break
        if 4 * (used + 1) > 3 * rows.shape[0]:  # event i's new entry would fill the row table past 3/4
            rows = _row_rehash(rows, 2 * rows.shape[0])
        else:  # event i's new user takes a slot at high_water, past hash_of's end
            grown_h = np.zeros(2 * hash_of.shape[0], np.uint64)
            grown_h[: hash_of.shape[0]] = hash_of
            grown_p = np.zeros(2 * hash_of.shape[0] if prev_of.shape[0] else 0, np.uint64)
            grown_p[: prev_of.shape[0]] = prev_of
            grown_l = np.full(2 * hash_of.shape[0], _UNSET, np.int64)
            grown_l[: hash_of.shape[0]] = last_ms
            hash_of, prev_of, last_ms = grown_h, grown_p, grown_l
    return rows, used, hash_of, prev_of, last_ms, high_water, free_pos, max_ts_ms, slots, returning


@no_refcounts
def _release_into(
    rows: _U64, hash_of: _U64, prev_of: _U64, last_ms: _I64, high_water: _Int, cutoff_ms: _Int,
    out: _I64, out_h: _U64, empty: _I64,
) -> tuple[_Int, _Int]:  # fmt: skip
    """:func:`_release`'s steps into scratch of at least ``high_water`` values; ``(m, k)``.

    One pass over the slots writes the released slots (``last_ms < cutoff_ms``, ascending) to
    ``out[:m]`` with their hashes in ``out_h[:m]``, and the slots already empty to ``empty[:k]``;
    then the released rows are deleted in that order, as before.  Without reference counts (perf25:
    each deletion's helper calls took and dropped the table's arrays).
    """
    m = 0
    k = 0
    for s in range(high_water):  # the slots first, then their rows deleted in the same order
        h = hash_of[s]
        if h == _EMPTY:
            empty[k] = s
            k += 1
        elif last_ms[s] < cutoff_ms:
            out[m] = s
            out_h[m] = h
            m += 1
    mask = np.uint64(rows.shape[0] - 1)
    for j in range(m):
        if j + _AHEAD < m:  # a hint only: the home row of a release a few places ahead
            _prefetch(rows, np.int64(out_h[j + _AHEAD] & _LOW32 & mask))
        s = out[j]
        h = out_h[j]
        _row_delete(rows, _row_find(rows, hash_of, h))
        if prev_of.shape[0]:
            prev_of[s] = h
        hash_of[s] = _EMPTY
        last_ms[s] = _UNSET
    return m, k


@njit(cache=True)
def _release(
    rows: _U64, hash_of: _U64, prev_of: _U64, last_ms: _I64, high_water: _Int, cutoff_ms: _Int
) -> _I64:
    """Delete the users whose ``last_ms < cutoff_ms`` from the table; return their slots (ascending).

    ``prev_of[slot]`` keeps the released hash (a veteran takes its slot back only if it is still its).
    """
    out = np.empty(high_water, np.int64)
    m, _ = _release_into(
        rows, hash_of, prev_of, last_ms, high_water, cutoff_ms, out, np.empty(high_water, np.uint64),
        np.empty(high_water, np.int64),
    )  # fmt: skip
    return out[:m]


@no_refcounts
def _add_veterans_run(
    vet_keys: _U64, vet_vals: _I32, vet_used: _Int, hashes: _U64, slots: _I64, i: int
) -> tuple[int, _Int]:
    """:func:`_add_veterans`' steps from ``i`` on while the map need not grow; ``(i, vet_used)``.

    Stops before (nothing of it done) the first insert that needs the map rehashed, or at the end.
    Without reference counts (perf25).
    """
    n = hashes.shape[0]
    while i < n:
        if 4 * (vet_used + 1) > 3 * vet_keys.shape[0]:
            break  # a rehash: the shell's
        if i + _AHEAD < n:  # a hint only: the home row of an insert a few places ahead
            home = _home(hashes[i + _AHEAD], vet_keys.shape[0] - 1)
            _prefetch(vet_keys, home)
            _prefetch(vet_vals, home)
        j = _find(vet_keys, hashes[i])
        if vet_keys[j] == _EMPTY:
            vet_keys[j] = hashes[i]
            vet_used += 1
        vet_vals[j] = slots[i]
        i += 1
    return i, vet_used


@njit(cache=True)
def _add_veterans(
    vet_keys: _U64, vet_vals: _I32, vet_used: _Int, hashes: _U64, slots: _I64
) -> tuple[_U64, _I32, _Int]:
    """Set ``veteran[hashes[i]] = slots[i]`` (the map grows to stay at most 3/4 full).

    The inserts run in :func:`_add_veterans_run`; where one would fill the map past 3/4, the map is
    rehashed here into twice the rows and the run takes that insert.
    """
    n = hashes.shape[0]
    i = 0
    while True:
        i, vet_used = _add_veterans_run(vet_keys, vet_vals, vet_used, hashes, slots, i)
        if i >= n:
            break
        vet_keys, vet_vals = _rehash(vet_keys, vet_vals, 2 * vet_keys.shape[0])  # the run takes insert i
    return vet_keys, vet_vals, vet_used


@njit(cache=True)
def _release_recycle(
    rows: _U64, hash_of: _U64, prev_of: _U64, last_ms: _I64, high_water: _Int, cutoff_ms: _Int,
    vet_keys: _U64, vet_vals: _I32, vet_used: _Int, free: _I32, free_pos: _Int,
) -> tuple[_I64, _U64, _I32, _Int, _I32, _Int]:  # fmt: skip
    """:meth:`UserTable.release_idle`'s steps then :meth:`UserTable.recycle_all`'s, in one call.

    Returns ``(slots, vet_keys, vet_vals, vet_used, free, free_pos)``; the veterans' rotation is the
    caller's (after it, as ``release_idle`` does).  One pass over the slots (:func:`_release_into`):
    the released hashes are kept as found and the free slots after the release are the ones empty
    before it and the released ones, merged (no copy of ``hash_of``, no second and third pass).
    """
    out = np.empty(high_water, np.int64)
    out_h = np.empty(high_water, np.uint64)
    empty = np.empty(high_water, np.int64)
    m, k = _release_into(rows, hash_of, prev_of, last_ms, high_water, cutoff_ms, out, out_h, empty)
    slots = out[:m]
    if m:
        vet_keys, vet_vals, vet_used = _add_veterans(vet_keys, vet_vals, vet_used, out_h[:m], slots)
    n_free = m + k  # the empty slots below high_water now
    if n_free != free.shape[0] - free_pos:  # some slot is held: recycle_all's new free list
        free = np.empty(n_free, np.int32)
        a = b = 0
        for q in range(n_free):  # both ascending, disjoint
            if b >= m or (a < k and empty[a] < out[b]):
                free[q] = empty[a]
                a += 1
            else:
                free[q] = out[b]
                b += 1
        free_pos = 0
    return slots, vet_keys, vet_vals, vet_used, free, free_pos


@njit(cache=True)
def _grown(buf: _I64, n: _Int, need: _Int) -> _I64:
    """``buf`` (its first ``n`` values kept) with room for ``need`` values."""
    if need <= buf.shape[0]:
        return buf
    out = np.empty(max(2 * buf.shape[0], need), np.int64)
    out[:n] = buf[:n]
    return out


@no_refcounts
def _copy_into(src: _I64, dst: _I64, at: _Int) -> None:
    """``dst[at:at + len(src)] = src`` (without the slice's reference counts)."""
    for i in range(src.shape[0]):
        dst[at + i] = src[i]


@no_refcounts
def _count_true(mask: NDArray[np.bool_]) -> _Int:
    """How many of ``mask`` are set."""
    k = 0
    for i in range(mask.shape[0]):
        k += mask[i]
    return k


@no_refcounts
def _take_true(values: _I64, mask: NDArray[np.bool_], out: _I64, k: _Int) -> _Int:
    """Write ``values[mask]`` to ``out`` from ``k`` on, in order; return the next position."""
    for i in range(values.shape[0]):
        if mask[i]:
            out[k] = values[i]
            k += 1
    return k


@njit(cache=True)
def _plan_sweeps(
    rows: _U64, used: _Int, hash_of: _U64, prev_of: _U64, last_ms: _I64, high_water: _Int,
    free: _I32, free_pos: _Int, vet_keys: _U64, vet_vals: _I32, vet_used: _Int, old_keys: _U64,
    old_vals: _I32, old_used: _Int, max_ts_ms: _Int, hashes: _U64, ts_ms: _I64, lateness_ms: _Int,
    idle_ms: _Int, half_veterans: _Int, cuts: _I64, ticks: _I64, has_next: bool, next_sweep_ms: _Int,
    every_ms: _Int,
) -> tuple[
    _U64, _Int, _U64, _U64, _I64, _Int, _I32, _Int, _U64, _I32, _Int, _U64, _I32, _Int, _Int, _I64, _I64,
    _I64, _I64, _I64, _I64, _I64, _I64, _I64,
]:  # fmt: skip
    """:meth:`UserTable.plan_sweeps`'s loop: intern up to a sweep's tick, release and recycle, and on.

    The same calls as :meth:`UserTable.intern` on each window and :meth:`UserTable.release_and_recycle`
    at each sweep (``half_veterans``: ``max_veterans // 2``, or -1 for None).  Returns the table's
    state, then ``slots`` int64[n], the returning slots before the first sweep, and per sweep its
    tick, the next sweep's time, the users holding a slot after it, its released slots and the
    returning slots of the window after it (values and offsets).
    """
    n, m = hashes.shape[0], ticks.shape[0]
    slots = np.empty(n, np.int64)
    at, nxt, pops = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
    rel_off, ret_off = np.zeros(m + 1, np.int64), np.zeros(m + 1, np.int64)
    rel, ret, pre = np.empty(16, np.int64), np.empty(16, np.int64), np.empty(0, np.int64)
    n_rel = 0
    n_ret: _Int = 0
    n_sw = 0
    j = 0
    done = 0
    sweep, has = next_sweep_ms, has_next
    while True:
        if has:
            while j < m and ticks[j] < sweep:
                j += 1
        end = cuts[j] if j < m else n
        if end > done:
            out = _intern(
                rows, used, hash_of, prev_of, last_ms, high_water, free, free_pos, vet_keys, vet_vals,
                vet_used, old_keys, old_vals, old_used, max_ts_ms, hashes[done:end], ts_ms[done:end],
                lateness_ms,
            )  # fmt: skip
            rows, used, hash_of, prev_of, last_ms, high_water, free_pos, max_ts_ms, got, back = out
            _copy_into(got, slots, done)
            k = _count_true(back)
            if n_sw == 0:
                pre = np.empty(k, np.int64)
                _take_true(got, back, pre, 0)
            else:
                ret = _grown(ret, n_ret, n_ret + k)
                n_ret = _take_true(got, back, ret, n_ret)
            done = end
        if n_sw:
            ret_off[n_sw] = n_ret
        if j >= m:
            break
        now = ticks[j]
        sweep, has = (now // every_ms + 1) * every_ms, True
        cutoff = _UNSET + 1 if max_ts_ms == _UNSET else max(max_ts_ms - lateness_ms - idle_ms, _UNSET + 1)
        gone, vet_keys, vet_vals, vet_used, free, free_pos = _release_recycle(
            rows, hash_of, prev_of, last_ms, high_water, cutoff, vet_keys, vet_vals, vet_used, free, free_pos
        )
        if gone.shape[0]:
            used -= gone.shape[0]
            if half_veterans >= 0 and vet_used >= half_veterans:  # _rotate_veterans
                old_keys, old_vals, old_used = vet_keys, vet_vals, vet_used
                vet_keys = np.zeros(16, np.uint64)
                vet_vals = np.full(16, -1, np.int32)
                vet_used = 0
        rel = _grown(rel, n_rel, n_rel + gone.shape[0])
        rel[n_rel : n_rel + gone.shape[0]] = gone
        n_rel += gone.shape[0]
        at[n_sw], nxt[n_sw], pops[n_sw] = now, sweep, used
        n_sw += 1
        rel_off[n_sw] = n_rel
    return (
        rows, used, hash_of, prev_of, last_ms, high_water, free, free_pos, vet_keys, vet_vals, vet_used,
        old_keys, old_vals, old_used, max_ts_ms, slots, pre, at[:n_sw], nxt[:n_sw], pops[:n_sw],
        rel[:n_rel], rel_off[: n_sw + 1], ret[:n_ret], ret_off[: n_sw + 1],
    )  # fmt: skip


@njit(cache=True)
def _signature_slots(stored: _U64, seeds: _U64, high_water: _Int) -> NDArray[np.bool_]:
    """Mark each slot ``s < high_water`` whose ``splitmix64(s ^ seeds[j])`` is some ``stored[r, j]``.

    splitmix64 is a bijection: each stored value names one slot per position, found by inverting
    the finaliser (xor-shifts undone, multipliers inverted modulo 2**64) and the golden-gamma add.
    """
    out = np.zeros(high_water, np.bool_)
    for r in range(stored.shape[0]):
        for j in range(seeds.shape[0]):
            z = stored[r, j]
            z = z ^ (z >> np.uint64(31)) ^ (z >> np.uint64(62))
            z = z * np.uint64(0x319642B2D24D8EC3)  # 0x94D049BB133111EB ** -1 mod 2**64
            z = z ^ (z >> np.uint64(27)) ^ (z >> np.uint64(54))
            z = z * np.uint64(0x96DE1B173F119089)  # 0xBF58476D1CE4E5B9 ** -1 mod 2**64
            z = z ^ (z >> np.uint64(30)) ^ (z >> np.uint64(60))
            s = (z - np.uint64(0x9E3779B97F4A7C15)) ^ seeds[j]
            if s < np.uint64(high_water):
                out[np.int64(s)] = True
    return out


def signature_slots(stored: _U64, seeds: _U64, high_water: int) -> NDArray[np.bool_]:
    """``bool[high_water]``: the user slots whose MinHash value is kept in ``stored`` at its position.

    The hash family of :class:`~viraltrend.kernels.users.UserSketches` (``splitmix64(user ^ seed_j)``,
    ``seeds`` uint64[k]), ``stored`` uint64[r, k] the signatures kept.  O(r k), whatever the number
    of slots.  A released slot whose values are in no stored signature can be given to another user
    without the signatures mistaking one for the other; one that is must wait.
    """
    if stored.ndim != 2 or stored.shape[1] != seeds.shape[0]:
        msg = f"stored must be uint64[r, {seeds.shape[0]}], got shape {stored.shape}"
        raise ValueError(msg)
    with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
        return _signature_slots(
            np.ascontiguousarray(stored, np.uint64),
            np.ascontiguousarray(seeds, np.uint64),
            np.int64(high_water),
        )


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


def _repeats(a: NDArray[Any]) -> bool:
    """Whether a value occurs twice in ``a`` (a sort: faster here than :func:`numpy.unique`'s hashing)."""
    if a.shape[0] < 2:
        return False
    s = np.sort(a)
    return bool((s[1:] == s[:-1]).any())


class UserTable:
    """User hashes -> dense slots, with idle users released and their slots reused lowest-first.

    Parameters
    ----------
    idle_ms : int
        A user whose latest effective event time is more than ``idle_ms`` behind ``M - L`` is
        released by :meth:`release_idle`.  Give ``max(cap_window_ms, fresh_window_ms)`` of the
        user signals: then releasing changes none of their outputs.
    allowed_lateness_ms : int
        ``L``, the event clock's allowed lateness (as for :class:`~viraltrend.kernels.users.UserSignals`).
    capacity : int
        Initial number of slots (grows by doubling).
    max_veterans : int or None
        Released users remembered, in two generations of ``max_veterans / 2`` (see the module
        docstring); None: all of them.
    track_held : bool
        Keep ``prev_of`` (8 bytes per slot) so that a veteran takes back its *held* slot.  A caller
        that recycles every released slot at once (:meth:`recycle_all` right after
        :meth:`release_idle`, as the engine does) never has a held slot and passes False:
        ``prev_of`` is then empty and no slot is ever taken back.
    """

    def __init__(
        self, *, idle_ms: int, allowed_lateness_ms: int, capacity: int = 1024,
        max_veterans: int | None = None, track_held: bool = True,
    ) -> None:  # fmt: skip
        if idle_ms < 0 or allowed_lateness_ms < 0 or capacity < 1:
            msg = (
                f"idle_ms and allowed_lateness_ms must be >= 0 and capacity >= 1, got {idle_ms}, "
                f"{allowed_lateness_ms}, {capacity}"
            )
            raise ValueError(msg)
        self.idle_ms = int(idle_ms)
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        cap = _pow2_at_least(capacity)
        self._rows: _U64 = np.full(2 * cap, _FREE_ROW, np.uint64)  # hash low 32 bits << 32 | slot
        self._used = 0
        self.hash_of: _U64 = np.zeros(cap, np.uint64)
        self.track_held = bool(track_held)
        self.prev_of: _U64 = np.zeros(cap if track_held else 0, np.uint64)  # last user released per slot
        self.last_ms: _I64 = np.full(cap, _UNSET, np.int64)
        self._high_water = 0
        self._free: _I32 = np.empty(0, np.int32)  # free slots, ascending (< 2**31)
        self._free_pos = 0
        self._vet_keys: _U64 = np.zeros(16, np.uint64)
        self._vet_vals: _I32 = np.full(16, -1, np.int32)
        self._vet_used = 0
        self._old_keys: _U64 = np.zeros(16, np.uint64)  # the older generation of veterans
        self._old_vals: _I32 = np.full(16, -1, np.int32)
        self._old_used = 0
        if max_veterans is not None and max_veterans < 2:
            msg = f"max_veterans must be >= 2 or None, got {max_veterans}"
            raise ValueError(msg)
        self.max_veterans = max_veterans
        self._max_ts_ms = _UNSET

    def __len__(self) -> int:
        """Number of users holding a slot."""
        return self._used

    @property
    def high_water(self) -> int:
        """One past the highest slot ever handed out: arrays indexed by slot need this length."""
        return self._high_water

    @property
    def n_veterans(self) -> int:
        """Released users remembered by hash (both generations; one released twice may count twice)."""
        return self._vet_used + self._old_used

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays owned (empty rows and unused slots included)."""
        arrays = (
            self._rows,
            self.hash_of,
            self.prev_of,
            self.last_ms,
            self._free,
            self._vet_keys,
            self._vet_vals,
            self._old_keys,
            self._old_vals,
        )
        return int(sum(a.nbytes for a in arrays))

    def _check_new(self, hashes: _U64, ts_ms: _I64) -> None:
        """Refuse events' user hashes and times that :meth:`intern` or :meth:`plan_sweeps` cannot take."""
        if hashes.dtype != np.uint64 or ts_ms.dtype != np.int64 or hashes.shape != ts_ms.shape:
            msg = f"hashes must be uint64[n] and ts_ms int64[n], got {hashes.dtype}, {ts_ms.dtype}"
            raise TypeError(msg)
        if (hashes == _EMPTY).any():
            msg = "hashes must come from hash_ids (never 0)"
            raise ValueError(msg)
        if self._high_water + hashes.shape[0] >= 2**31:
            msg = f"the user table holds at most 2**31 - 1 slots; {self._high_water} are in use"
            raise OverflowError(msg)

    def intern(self, hashes: _U64, ts_ms: _I64) -> tuple[_I64, NDArray[np.bool_]]:
        """Return ``(slots int64[n], returning bool[n])`` for events' user hashes, in arrival order.

        ``hashes`` uint64[n] from :func:`hash_ids`, ``ts_ms`` int64[n] the events' times (only
        accepted events: they set the effective times).  ``returning`` marks an event that gave a
        released user a new slot: that user is known, not new.
        """
        self._check_new(hashes, ts_ms)
        out = _intern(
            self._rows, np.int64(self._used), self.hash_of, self.prev_of, self.last_ms,
            np.int64(self._high_water), self._free, np.int64(self._free_pos), self._vet_keys,
            self._vet_vals, np.int64(self._vet_used), self._old_keys, self._old_vals,
            np.int64(self._old_used), np.int64(self._max_ts_ms), np.ascontiguousarray(hashes),
            np.ascontiguousarray(ts_ms), np.int64(self.allowed_lateness_ms),
        )  # fmt: skip
        (
            self._rows,
            used,
            self.hash_of,
            self.prev_of,
            self.last_ms,
            hw,
            fp,
            mx,
            slots,
            returning,
        ) = out
        self._used, self._high_water, self._free_pos, self._max_ts_ms = int(used), int(hw), int(fp), int(mx)
        return slots, returning

    def release_idle(self) -> _I64:
        """Release the users idle for more than ``idle_ms`` (see the module docstring); return their slots.

        Their hashes join the veterans; their slots are *held* (see :meth:`held_slots`) until
        :meth:`recycle` makes them reusable.  O(high_water) in numba.
        """
        if self._max_ts_ms == _UNSET or self._used == 0:
            return np.empty(0, np.int64)
        cutoff = self._max_ts_ms - self.allowed_lateness_ms - self.idle_ms
        cutoff = max(cutoff, _UNSET + 1)
        gone_hashes = self.hash_of[: self._high_water].copy()
        slots = _release(
            self._rows, self.hash_of, self.prev_of, self.last_ms, np.int64(self._high_water),
            np.int64(cutoff),
        )  # fmt: skip
        if slots.shape[0]:
            self._used -= int(slots.shape[0])
            self._vet_keys, self._vet_vals, vet_used = _add_veterans(
                self._vet_keys, self._vet_vals, np.int64(self._vet_used), gone_hashes[slots], slots
            )
            self._vet_used = int(vet_used)
            if self.max_veterans is not None and self._vet_used >= self.max_veterans // 2:
                self._rotate_veterans()
        return slots

    def release_and_recycle(self) -> _I64:
        """``slots = release_idle(); recycle_all(); return slots`` in one compiled call (the engine's)."""
        if self._max_ts_ms == _UNSET or self._used == 0:
            slots = self.release_idle()
            self.recycle_all()
            return slots
        cutoff = max(self._max_ts_ms - self.allowed_lateness_ms - self.idle_ms, _UNSET + 1)
        slots, self._vet_keys, self._vet_vals, vet_used, self._free, free_pos = _release_recycle(
            self._rows, self.hash_of, self.prev_of, self.last_ms, np.int64(self._high_water),
            np.int64(cutoff), self._vet_keys, self._vet_vals, np.int64(self._vet_used), self._free,
            np.int64(self._free_pos),
        )  # fmt: skip
        self._vet_used, self._free_pos = int(vet_used), int(free_pos)
        if slots.shape[0]:
            self._used -= int(slots.shape[0])
            if self.max_veterans is not None and self._vet_used >= self.max_veterans // 2:
                self._rotate_veterans()
        return slots

    def plan_sweeps(
        self, hashes: _U64, ts_ms: _I64, cuts: _I64, ticks: _I64, next_sweep_ms: int | None, every_ms: int
    ) -> tuple[_I64, _I64, tuple[_I64, ...]]:
        """Intern a batch's events and run the sweeps due at its ticks, in one compiled call.

        Exactly, in event order: :meth:`intern` of the events before the first tick at or after
        ``next_sweep_ms`` (None: the first tick), :meth:`release_and_recycle` there, the next sweep
        ``every_ms`` after that tick's whole multiple, and so on; then :meth:`intern` of the rest.
        ``cuts``/``ticks`` int64[m]: tick ``k`` (ascending) comes before event ``cuts[k]``.
        Returns ``(slots int64[n], returning slots before the first sweep, (ticks, next sweep
        times, users holding a slot after each, released slots, their offsets int64[s + 1],
        returning slots of the window after each, their offsets))``.
        """
        self._check_new(hashes, ts_ms)
        half = -1 if self.max_veterans is None else self.max_veterans // 2
        out = _plan_sweeps(
            self._rows, np.int64(self._used), self.hash_of, self.prev_of, self.last_ms,
            np.int64(self._high_water), self._free, np.int64(self._free_pos), self._vet_keys,
            self._vet_vals, np.int64(self._vet_used), self._old_keys, self._old_vals,
            np.int64(self._old_used), np.int64(self._max_ts_ms), np.ascontiguousarray(hashes),
            np.ascontiguousarray(ts_ms), np.int64(self.allowed_lateness_ms), np.int64(self.idle_ms),
            np.int64(half), np.ascontiguousarray(cuts, np.int64), np.ascontiguousarray(ticks, np.int64),
            next_sweep_ms is not None, np.int64(0 if next_sweep_ms is None else next_sweep_ms),
            np.int64(every_ms),
        )  # fmt: skip
        self._rows, used, self.hash_of, self.prev_of, self.last_ms, hw, self._free, fp = out[:8]
        self._vet_keys, self._vet_vals, vu, self._old_keys, self._old_vals, ou, mx = out[8:15]
        self._used, self._high_water, self._free_pos, self._max_ts_ms = int(used), int(hw), int(fp), int(mx)
        self._vet_used, self._old_used = int(vu), int(ou)
        return out[15], out[16], tuple(out[17:])

    def _rotate_veterans(self) -> None:
        """The newer generation of veterans becomes the older one; the older one is forgotten."""
        self._old_keys, self._old_vals, self._old_used = self._vet_keys, self._vet_vals, self._vet_used
        self._vet_keys = np.zeros(16, np.uint64)
        self._vet_vals = np.full(16, -1, np.int32)
        self._vet_used = 0

    def _held_mask(self) -> NDArray[np.bool_]:
        held: NDArray[np.bool_] = self.hash_of[: self._high_water] == _EMPTY
        held[self._free[self._free_pos :]] = False
        return held

    def held_slots(self) -> _I64:
        """Released slots not yet reusable (int64[m], ascending)."""
        return np.flatnonzero(self._held_mask()).astype(np.int64)

    def recycle(self, slots: _I64) -> None:
        """Make held ``slots`` (int64[m]) reusable: later :meth:`intern` calls take them lowest first."""
        slots = np.unique(np.asarray(slots, np.int64))
        if slots.shape[0] == 0:
            return
        if slots[0] < 0 or slots[-1] >= self._high_water or not self._held_mask()[slots].all():
            msg = "recycle takes held slots only (released by release_idle and not recycled yet)"
            raise ValueError(msg)
        self._free = np.sort(np.concatenate([self._free[self._free_pos :], slots])).astype(np.int32)
        self._free_pos = 0

    def recycle_all(self) -> None:
        """``recycle(held_slots())`` in one pass: every released slot becomes reusable, lowest first."""
        free = np.flatnonzero(self.hash_of[: self._high_water] == _EMPTY).astype(np.int32)
        if free.shape[0] != self._free.shape[0] - self._free_pos:  # some slot is held
            self._free, self._free_pos = free, 0

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Plain numpy arrays for a checkpoint (the slot table is rebuilt from ``hash_of`` on restore).

        Keys: ``hash_of`` uint64[high_water] (0: free slot), ``prev_of`` uint64[high_water] (the
        last user released from each slot, 0: none; uint64[0] without ``track_held``),
        ``last_ms`` int64[high_water],
        ``free`` int64[m] (free slots, ascending), ``veterans`` uint64[v] (ascending) and
        ``veteran_slots`` int64[v] (the last slot of each), the same of the older generation
        (``veterans_old``, ``veteran_slots_old``; absent in older checkpoints), ``meta``
        int64[3] (``max_ts_ms``, ``idle_ms``, ``allowed_lateness_ms``).  Free slots not in
        ``free`` are held.
        """
        hw = self._high_water
        filled = self._vet_keys != _EMPTY
        order = np.argsort(self._vet_keys[filled])
        old = self._old_keys != _EMPTY
        old_order = np.argsort(self._old_keys[old])
        return {
            "veterans_old": self._old_keys[old][old_order],
            "veteran_slots_old": self._old_vals[old][old_order].astype(np.int64),
            "hash_of": self.hash_of[:hw].copy(),
            "prev_of": self.prev_of[:hw].copy(),
            "last_ms": self.last_ms[:hw].copy(),
            "free": self._free[self._free_pos :].astype(np.int64),
            "veterans": self._vet_keys[filled][order],
            "veteran_slots": self._vet_vals[filled][order].astype(np.int64),
            "meta": np.array([self._max_ts_ms, self.idle_ms, self.allowed_lateness_ms], np.int64),
        }

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return dict(self.to_arrays()), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> UserTable:
        """:meth:`from_arrays` with this table's settings.

        From ``meta["users"]``, the user names of a checkpoint written before hashing: :meth:`from_names`,
        last seen at ``meta["users_max_ts_ms"]``.
        """
        if "users" in meta:
            table = type(self).from_names(
                meta["users"], idle_ms=self.idle_ms, allowed_lateness_ms=self.allowed_lateness_ms,
                max_ts_ms=meta.get("users_max_ts_ms"),
            )  # fmt: skip
            table.max_veterans = self.max_veterans
            return table
        return type(self).from_arrays(
            arrays, idle_ms=self.idle_ms, allowed_lateness_ms=self.allowed_lateness_ms,
            max_veterans=self.max_veterans, track_held=self.track_held,
        )  # fmt: skip

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, NDArray[Any]],
        *,
        idle_ms: int,
        allowed_lateness_ms: int,
        max_veterans: int | None = None,
        track_held: bool = True,
    ) -> UserTable:
        """Rebuild a table from :meth:`to_arrays` output, exactly; CheckpointError if it does not fit.

        Without ``track_held`` a checkpoint's ``prev_of`` is dropped; with it, a checkpoint written
        without (``prev_of`` empty) restores with no slot held for a veteran.
        """
        try:
            hash_of = np.asarray(arrays["hash_of"], np.uint64)
            prev_of = np.asarray(arrays["prev_of"], np.uint64)
            last_ms = np.asarray(arrays["last_ms"], np.int64)
            free = np.asarray(arrays["free"], np.int64)
            vets = np.asarray(arrays["veterans"], np.uint64)
            vet_slots = np.asarray(arrays["veteran_slots"], np.int64)
            meta = np.asarray(arrays["meta"], np.int64)
            old = np.asarray(arrays.get("veterans_old", np.empty(0, np.uint64)), np.uint64)
            old_slots = np.asarray(arrays.get("veteran_slots_old", np.empty(0, np.int64)), np.int64)
        except KeyError as exc:
            msg = f"user table checkpoint lacks array {exc}; it cannot be restored"
            raise CheckpointError(msg) from exc
        if meta.shape != (3,) or meta[1:].tolist() != [idle_ms, allowed_lateness_ms]:
            msg = (
                f"user table checkpoint has (max_ts_ms, idle_ms, allowed_lateness_ms) {meta.tolist()}, "
                f"the configuration gives idle_ms={idle_ms}, allowed_lateness_ms={allowed_lateness_ms}"
            )
            raise CheckpointError(msg)
        hw = hash_of.shape[0]
        live = np.flatnonzero(hash_of != _EMPTY)
        empty = np.flatnonzero(hash_of == _EMPTY)
        if (
            last_ms.shape != (hw,)
            or prev_of.shape not in ((hw,), (0,))
            or _repeats(free)
            or not np.isin(free, empty).all()
            or _repeats(hash_of[live])
            or _repeats(vets)
            or (vets == _EMPTY).any()
            or vet_slots.shape != vets.shape
            or _repeats(old)
            or (old == _EMPTY).any()
            or old_slots.shape != old.shape
        ):
            msg = "user table checkpoint is corrupt: slots, free list or hashes disagree"
            raise CheckpointError(msg)
        out = cls(
            idle_ms=idle_ms,
            allowed_lateness_ms=allowed_lateness_ms,
            capacity=max(hw, 1),
            max_veterans=max_veterans,
            track_held=track_held,
        )
        out.hash_of[:hw] = hash_of
        if track_held and prev_of.shape[0]:
            out.prev_of[:hw] = prev_of
        out.last_ms[:hw] = last_ms
        out._high_water = hw
        out._free = np.sort(free).astype(np.int32)
        out._rows = _row_build(
            np.asarray(hash_of[live], np.uint64), live.astype(np.int64), out._rows.shape[0]
        )
        out._used = int(live.shape[0])
        out._vet_keys, out._vet_vals, vet_used = _add_veterans(
            out._vet_keys, out._vet_vals, np.int64(0), vets, vet_slots
        )
        out._vet_used = int(vet_used)
        out._old_keys, out._old_vals, old_used = _add_veterans(
            out._old_keys, out._old_vals, np.int64(0), old, old_slots
        )
        out._old_used = int(old_used)
        out._max_ts_ms = int(meta[0])
        return out

    @classmethod
    def from_names(
        cls, names: Sequence[str | None], *, idle_ms: int, allowed_lateness_ms: int, max_ts_ms: int | None
    ) -> UserTable:
        """A table from an older checkpoint's list of user names (slot order kept; None: free).

        Users are taken as last seen at ``max_ts_ms`` (the user signals' newest time): they are
        released ``idle_ms`` later at the earliest, which changes no signal.
        """
        hw = len(names)
        hash_of = np.zeros(hw, np.uint64)
        live = [i for i, s in enumerate(names) if s is not None]
        if live:
            hash_of[live] = hash_ids([names[i] or "" for i in live])
        t = _UNSET if max_ts_ms is None else int(max_ts_ms)
        arrays = {
            "hash_of": hash_of,
            "prev_of": np.zeros(hw, np.uint64),
            "last_ms": np.where(hash_of != _EMPTY, t, _UNSET).astype(np.int64),
            "free": np.flatnonzero(hash_of == _EMPTY).astype(np.int64),
            "veterans": np.empty(0, np.uint64),
            "veteran_slots": np.empty(0, np.int64),
            "meta": np.array([t, idle_ms, allowed_lateness_ms], np.int64),
        }
        return cls.from_arrays(arrays, idle_ms=idle_ms, allowed_lateness_ms=allowed_lateness_ms)
