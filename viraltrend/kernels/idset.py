"""Event ids as 128-bit hashes in numba open-addressing tables: the duplicate filter's memory.

:func:`hash_pairs` gives each id two independent 64-bit hashes in one numba pass over the ids'
joined UTF-8 (FNV-1a 64 with murmur3's finaliser, as :func:`~viraltrend.kernels.hashtable.hash_ids`,
and a polynomial hash with splitmix64's finaliser).  :class:`SeenIds` maps a pair to the ``ts`` of
the last kept event that carried it; :func:`filter_seen` runs the duplicate rule over a batch in
arrival order, in one compiled loop, with no Python object per event.

**Collisions.**  Two different ids are one id to the filter only if both hashes agree.  For ``n``
distinct ids in memory (two windows at most) the chance that any two do is at most
``n**2 / 2**129`` for ids not crafted against these (public, unkeyed) hashes: 1.5e-25 at 10M ids.
A collision can only make a later event a duplicate of an earlier one; it never merges products.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.decay import _prefetch_2d
from viraltrend.kernels.hashtable import _FNV_OFFSET, _FNV_PRIME, _finish

__all__ = ["SeenIds", "filter_seen", "hash_pairs"]

_EMPTY: Final = 0  # first key of an empty row: hash_pairs never returns 0 there
_AHEAD: Final = 8  # events ahead whose home rows _filter prefetches (the tables outgrow the cache)
_POLY_MUL: Final = 0x9E3779B97F4A7C15  # odd: the polynomial hash's multiplier (golden ratio)
_U64: TypeAlias = NDArray[np.uint64]
_I64: TypeAlias = NDArray[np.int64]
_I64_2: TypeAlias = NDArray[np.int64]  # int64[rows, 3]
_Int: TypeAlias = int | np.integer[Any]


@njit(cache=True)
def _splitmix(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _hash_pairs(buf: NDArray[np.uint8], ends: _I64) -> tuple[_U64, _U64]:
    """Both hashes of each id ``buf[ends[i - 1] + 1:ends[i]]`` (the first from 0: one separator byte each)."""
    n = ends.shape[0]
    h1 = np.empty(n, np.uint64)
    h2 = np.empty(n, np.uint64)
    start = 0
    for i in range(n):
        a = np.uint64(_FNV_OFFSET)
        b = np.uint64(0)
        for j in range(start, ends[i]):
            a = (a ^ np.uint64(buf[j])) * np.uint64(_FNV_PRIME)
            b = b * np.uint64(_POLY_MUL) + np.uint64(buf[j]) + np.uint64(1)
        h1[i] = _finish(a)
        h2[i] = _splitmix(b + np.uint64(ends[i] - start))
        start = ends[i] + 1
    return h1, h2


def hash_pairs(ids: Sequence[str]) -> tuple[_U64, _U64]:
    """Two 64-bit hashes of each id's UTF-8 (``uint64[n]`` each; the first never 0).

    The first is :func:`~viraltrend.kernels.hashtable.hash_ids`'s.  One ``join``, one ``encode``
    and one numba pass; ids holding a NUL (the join's separator) take per-id lengths.
    """
    n = len(ids)
    if n == 0:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    joined = "\x00".join(ids).encode("utf-8", "surrogatepass")
    with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
        if joined.count(b"\x00") == n - 1:
            buf = np.frombuffer(joined, np.uint8)
            ends = np.append(np.flatnonzero(buf == 0), buf.shape[0]).astype(np.int64)
            return _hash_pairs(buf, ends)
        parts = [s.encode("utf-8", "surrogatepass") for s in ids]
        sizes = np.fromiter(map(len, parts), np.int64, n)
        ends = np.cumsum(sizes + 1) - 1  # as if separated by one byte each
        return _hash_pairs(np.frombuffer(b"\x00".join(parts), np.uint8), ends)


@no_refcounts
def _find(rows: _I64_2, a: np.int64, b: np.int64) -> _Int:
    """Row of the pair ``(a, b)`` (linear probing), or the empty row where it would go."""
    mask = rows.shape[0] - 1
    idx = np.int64(np.uint64(a) & np.uint64(mask))
    while rows[idx, 0] != _EMPTY and (rows[idx, 0] != a or rows[idx, 1] != b):
        idx = (idx + 1) & mask
    return idx


@njit(cache=True)
def _grow(rows: _I64_2) -> _I64_2:
    out = np.zeros((2 * rows.shape[0], 3), np.int64)
    for r in range(rows.shape[0]):
        if rows[r, 0] != _EMPTY:
            j = _find(out, rows[r, 0], rows[r, 1])
            out[j, 0], out[j, 1], out[j, 2] = rows[r, 0], rows[r, 1], rows[r, 2]
    return out


@no_refcounts
def _filter_run(
    cur: _I64_2, used: _Int, prev: _I64_2, p_used: _Int, h1: _I64, h2: _I64, has_id: NDArray[np.bool_],
    ts: _I64, horizon: _I64, never: _Int, i: int, keep: NDArray[np.bool_],
) -> tuple[int, _Int]:  # fmt: skip
    """:func:`_filter`'s steps from event ``i`` on while the current table need not grow.

    Returns ``(i, used)``: stops before (nothing of it done) the first event whose new entry needs
    the table grown, or at the end; the shell grows it and calls it again from there.  Without
    reference counts (perf25: the tables were taken and dropped at each event's probes).
    """
    n = h1.shape[0]
    while i < n:
        ahead = i + _AHEAD
        if ahead < n and has_id[ahead]:  # a hint only (never faults): the home rows of an id ahead
            h = np.uint64(h1[ahead])
            r = np.int64(h & np.uint64(cur.shape[0] - 1))
            _prefetch_2d(cur, r, 0)
            _prefetch_2d(cur, r, 2)  # a row may straddle two cache lines
            if p_used:
                r = np.int64(h & np.uint64(prev.shape[0] - 1))
                _prefetch_2d(prev, r, 0)
                _prefetch_2d(prev, r, 2)
        if not has_id[i]:
            i += 1
            continue
        a, b = h1[i], h2[i]
        j = _find(cur, a, b)
        before = cur[j, 2] if cur[j, 0] != _EMPTY else never
        if p_used:
            q = _find(prev, a, b)
            if prev[q, 0] != _EMPTY and prev[q, 2] > before:
                before = prev[q, 2]
        if before >= horizon[i]:
            keep[i] = False
            i += 1
            continue
        if cur[j, 0] == _EMPTY:
            if 4 * (used + 1) > 3 * cur.shape[0]:
                break  # the table grows: the shell's
            cur[j, 0], cur[j, 1] = a, b
            used += 1
        cur[j, 2] = ts[i]
        i += 1
    return i, used


@njit(cache=True)
def _filter(
    cur: _I64_2, used: _Int, prev: _I64_2, p_used: _Int, h1: _I64, h2: _I64, has_id: NDArray[np.bool_],
    ts: _I64, horizon: _I64, never: _Int,
) -> tuple[NDArray[np.bool_], _I64_2, _Int]:  # fmt: skip
    """``keep[i]``: event ``i`` has no id, or the last kept ``ts`` of its id is below ``horizon[i]``.

    Tables are ``int64[rows, 3]`` (both hashes' bits, then ``ts``: one cache line per probe).  Kept
    events with an id are stored in the current table at once, so a repeat later in the batch sees
    them; ``prev`` is the previous generation (read only).  The events run in :func:`_filter_run`
    (no reference counts); where a kept event's new entry would fill the table past 3/4, it stops,
    the table grows here and the run takes that event.
    """
    n = h1.shape[0]
    keep = np.ones(n, np.bool_)
    i = 0
    while True:
        i, used = _filter_run(cur, used, prev, p_used, h1, h2, has_id, ts, horizon, never, i, keep)
        if i >= n:
            break
        cur = _grow(cur)  # event i is kept and its new entry would fill the table past 3/4: the run's
    return keep, cur, used


class SeenIds:
    """A set of id hash pairs, each with the ``ts`` of its last kept event (one dedup generation)."""

    def __init__(self, capacity: int = 1024) -> None:
        cap = 1 << max(int(capacity) - 1, 1).bit_length()
        self.rows: _I64_2 = np.zeros((cap, 3), np.int64)
        self.used = 0

    def __len__(self) -> int:
        return self.used

    @property
    def nbytes(self) -> int:
        """Bytes of the table (24 per row, at most 3/4 of the rows used)."""
        return int(self.rows.nbytes)

    def to_lists(self) -> list[list[int]]:
        """``[h1s, h2s, ts]`` of every entry (hashes unsigned), in row order: JSON-able checkpoint data."""
        filled = self.rows[self.rows[:, 0] != _EMPTY]
        h = filled[:, :2].copy().view(np.uint64)
        return [h[:, 0].tolist(), h[:, 1].tolist(), filled[:, 2].tolist()]

    @classmethod
    def from_arrays(cls, h1: _U64, h2: _U64, ts: _I64) -> SeenIds:
        """A table of ``(h1[i], h2[i]) -> ts[i]`` (a later entry wins); ValueError on a 0 in ``h1``."""
        h1 = np.asarray(h1, np.uint64)
        h2 = np.asarray(h2, np.uint64)
        ts = np.asarray(ts, np.int64)
        if not (h1.shape == h2.shape == ts.shape) or h1.ndim != 1 or (h1 == _EMPTY).any():
            msg = "seen-id arrays must be three 1-D arrays of one length, with no 0 in the first"
            raise ValueError(msg)
        out = cls(capacity=max(2 * h1.shape[0], 16))
        everyone = np.ones(h1.shape[0], np.bool_)
        low = np.full(h1.shape[0], np.iinfo(np.int64).max, np.int64)  # nothing is a duplicate
        _, out.rows, used = _filter(
            out.rows, 0, out.rows[:1], 0, h1.view(np.int64), h2.view(np.int64), everyone, ts, low, 0
        )
        out.used = int(used)
        return out


def filter_seen(
    current: SeenIds,
    previous: SeenIds,
    h1: _U64,
    h2: _U64,
    has_id: NDArray[np.bool_],
    ts_ms: _I64,
    horizon_ms: _I64,
    never: int,
) -> NDArray[np.bool_]:
    """``keep`` bool[n] of a batch (see :func:`_filter`); kept ids go into ``current``.

    ``h1, h2`` uint64[n] (any value where ``has_id`` is False), ``ts_ms`` and ``horizon_ms``
    int64[n]; ``never`` is the ``ts`` read for an id not stored (below every horizon).
    """
    n = ts_ms.shape[0]
    if not (h1.shape == h2.shape == has_id.shape == horizon_ms.shape == (n,)):
        msg = f"h1, h2, has_id and horizon_ms must have the length of ts_ms ({n})"
        raise ValueError(msg)
    keep, current.rows, used = _filter(
        current.rows, np.int64(current.used), previous.rows, np.int64(previous.used),
        np.ascontiguousarray(h1, np.uint64).view(np.int64),
        np.ascontiguousarray(h2, np.uint64).view(np.int64),
        np.ascontiguousarray(has_id, np.bool_), np.ascontiguousarray(ts_ms, np.int64),
        np.ascontiguousarray(horizon_ms, np.int64), np.int64(never),
    )  # fmt: skip
    current.used = int(used)
    return keep
