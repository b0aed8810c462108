"""Small column kernels of the engine's batch path: membership of sorted slots, trust-counter rows.

Each replaces a handful of numpy calls (and their fixed cost per call) made per tick or per
segment of a batch with one compiled pass; results are exactly those of the numpy expressions
they replace (the tests compare them).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels._checks import check_range, column
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.decay import _exp, _scaled_by

#: Relative distance from the limit within which :func:`below` leaves the verdict to the caller.
BELOW_MARGIN = 1e-9

__all__ = ["baseline_rates", "below", "coldest", "in_sorted", "keep_hot", "trust_rows", "unique_counts"]


@no_refcounts
def _in_sorted(a: NDArray[np.int64], b: NDArray[np.int64], out: NDArray[np.bool_]) -> None:
    """``out[i] = a[i] in b`` for ascending ``a`` and ``b``: one merge pass."""
    j = 0
    for i in range(a.shape[0]):
        while j < b.shape[0] and b[j] < a[i]:
            j += 1
        out[i] = j < b.shape[0] and b[j] == a[i]


def in_sorted(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Bool[m]: ``np.isin(a, b)`` for ascending int64 ``a`` (int64[m]) and ``b``, in one merge pass.

    >>> in_sorted(np.array([1, 3, 5, 7]), np.array([3, 4, 7])).tolist()
    [False, True, False, True]
    """
    a = column("a", a, np.int64, None, "")
    b = column("b", b, np.int64, None, "")
    out = np.empty(a.shape[0], np.bool_)
    _in_sorted(a, b, out)
    return out


@njit(cache=True)
def _trust_rows(
    slots: NDArray[np.int64], ts_ms: NDArray[np.int64], new_pair: NDArray[np.bool_], fresh: NDArray[np.bool_],
) -> tuple[NDArray[np.int64], NDArray[np.int8], NDArray[np.int64]]:  # fmt: skip
    n_new = 0
    n_fresh = 0
    for i in range(slots.shape[0]):
        n_new += new_pair[i]
        n_fresh += fresh[i]
    m = n_new + n_fresh + slots.shape[0]
    out_slot = np.empty(m, np.int64)
    channel = np.empty(m, np.int8)
    out_ts = np.empty(m, np.int64)
    _trust_rows_into(slots, ts_ms, new_pair, fresh, out_slot, channel, out_ts)
    return out_slot, channel, out_ts


@no_refcounts
def _trust_rows_into(
    slots: NDArray[np.int64], ts_ms: NDArray[np.int64], new_pair: NDArray[np.bool_], fresh: NDArray[np.bool_],
    out_slot: NDArray[np.int64], channel: NDArray[np.int8], out_ts: NDArray[np.int64],
) -> int:  # fmt: skip
    """:func:`_trust_rows` into the caller's arrays (each at least ``3 n`` long); returns the row count."""
    j = 0
    for c in range(3):
        for i in range(slots.shape[0]):
            if c == 2 or (c == 0 and new_pair[i]) or (c == 1 and fresh[i]):
                out_slot[j] = slots[i]
                channel[j] = c
                out_ts[j] = ts_ms[i]
                j += 1
    return j


def trust_rows(
    slots: NDArray[np.int64], ts_ms: NDArray[np.int64], new_pair: NDArray[np.bool_], fresh: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int8], NDArray[np.int64]]:
    """The trust counters' rows of a segment: (slot int64[m], channel int8[m], ts_ms int64[m]).

    Channel 0 for the events of new (user, product) pairs, 1 for those of fresh accounts, 2 for
    every event, in that order and in event order within each: ``np.concatenate`` of
    ``slots[new_pair]``, ``slots[fresh]`` and ``slots`` (and the same for ``ts_ms``).

    >>> yes, no = np.array([True, True]), np.array([False, True])
    >>> s, c, t = trust_rows(np.array([4, 5]), np.array([10, 20]), no, yes)
    >>> s.tolist(), c.tolist(), t.tolist()
    ([5, 4, 5, 4, 5], [0, 1, 1, 2, 2], [20, 10, 20, 10, 20])
    """
    slots = column("slots", slots, np.int64, None, "")
    ts_ms = column("ts_ms", ts_ms, np.int64, slots.shape[0], "slots")
    new_pair = column("new_pair", new_pair, np.bool_, slots.shape[0], "slots")
    fresh = column("fresh", fresh, np.bool_, slots.shape[0], "slots")
    return _trust_rows(slots, ts_ms, new_pair, fresh)


@njit(cache=True)
def _below(
    acc: NDArray[np.float64], slots: NDArray[np.int64], lam: float, dt_s: float, h: int,
    w: NDArray[np.float64], limit: float, margin: float, out: NDArray[np.int8],
) -> int:  # fmt: skip
    n_unsure = 0
    x = -lam * dt_s
    f = _exp(x)
    for j in range(slots.shape[0]):
        p = slots[j]
        total = 0.0
        size = 0.0
        for k in range(acc.shape[1]):
            term = _scaled_by(acc[p, k, h], f, x) * w[k]
            total += term
            size += abs(term)
        if not (abs(total - limit) > margin * (size + abs(limit))):  # NaN: unsure
            out[j] = -1
            n_unsure += 1
        else:
            out[j] = 1 if total < limit else 0
    return n_unsure


def below(
    acc: NDArray[np.float64],
    slots: NDArray[np.int64],
    *,
    lam: float,
    dt_s: float,
    half_life: int,
    weights: NDArray[np.float64],
    limit: float,
) -> NDArray[np.int8] | None:
    """Int8[m]: 1 where the weighted decayed count of ``slots`` at one half-life is below ``limit``, else 0.

    ``acc`` float64[capacity, n_types, n_hl] are forward-decay accumulators read at ``dt_s``
    seconds past their landmark with rate ``lam`` (that of half-life index ``half_life``),
    ``weights`` float64[n_types].  None when some slot lies within :data:`BELOW_MARGIN` (relative)
    of ``limit``: there the order of the sum could decide, so the caller computes exactly.
    """
    slots = column("slots", slots, np.int64, None, "")
    check_range("slots", slots, 0, acc.shape[0])
    out = np.empty(slots.shape[0], np.int8)
    unsure = _below(
        acc, slots, float(lam), float(dt_s), int(half_life), weights, float(limit), BELOW_MARGIN, out
    )
    return None if unsure else out


#: Entries of :func:`_unique_counts_into`'s ``stack`` scratch: two per pending partition, at most
#: log2(n) + 1 pending (the larger side is pushed, the smaller sorted first).
SORT_STACK: Final = 130
_INSERTION_BELOW: Final = 16


@no_refcounts
def _sort_in_place(a: NDArray[np.int64], n: int, stack: NDArray[np.int64]) -> None:
    """Sort ``a[:n]`` ascending in place, allocating nothing (``stack``: int64[>= SORT_STACK] scratch).

    An iterative quicksort (median of three, Hoare partition) with insertion sort below 16 entries:
    the larger side is pushed, so at most ``log2(n) + 1`` partitions wait.  Integers in ascending
    order are one answer whatever the algorithm: ``np.sort``'s, bit for bit.
    """
    top = 0
    lo, hi = 0, n - 1
    while True:
        while hi - lo >= _INSERTION_BELOW:
            mid = (lo + hi) >> 1
            if a[mid] < a[lo]:
                a[mid], a[lo] = a[lo], a[mid]
            if a[hi] < a[mid]:
                a[hi], a[mid] = a[mid], a[hi]
                if a[mid] < a[lo]:
                    a[mid], a[lo] = a[lo], a[mid]
            pivot = a[mid]
            i, j = lo, hi
            while i <= j:
                while a[i] < pivot:
                    i += 1
                while a[j] > pivot:
                    j -= 1
                if i <= j:
                    a[i], a[j] = a[j], a[i]
                    i += 1
                    j -= 1
            if j - lo < hi - i:  # [lo, j] <= pivot <= [i, hi]: push the larger, go on with the smaller
                stack[top], stack[top + 1] = i, hi
                hi = j
            else:
                stack[top], stack[top + 1] = lo, j
                lo = i
            top += 2
        for k in range(lo + 1, hi + 1):
            v = a[k]
            p = k - 1
            while p >= lo and a[p] > v:
                a[p + 1] = a[p]
                p -= 1
            a[p + 1] = v
        if top == 0:
            return
        top -= 2
        lo, hi = stack[top], stack[top + 1]


@no_refcounts
def _unique_counts_into(
    a: NDArray[np.int64], buf: NDArray[np.int64], stack: NDArray[np.int64], vals: NDArray[np.int64],
    counts: NDArray[np.int64],
) -> int:  # fmt: skip
    """The distinct values of ``a`` and their counts, into scratch: ``m``, ``vals[:m]``, ``counts[:m]``.

    ``np.unique(a, return_counts=True)`` without allocating: ``buf``, ``vals``, ``counts`` at least
    as long as ``a`` (``buf`` holds ``a`` sorted), ``stack`` :func:`_sort_in_place`'s.
    """
    n = a.shape[0]
    for i in range(n):
        buf[i] = a[i]
    _sort_in_place(buf, n, stack)
    m = 0
    for i in range(n):
        if m and vals[m - 1] == buf[i]:
            counts[m - 1] += 1
        else:
            vals[m] = buf[i]
            counts[m] = 1
            m += 1
    return m


def unique_counts(parts: list[NDArray[np.int64]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``np.unique(np.concatenate(parts), return_counts=True)`` for int64 arrays, in one compiled pass.

    The engine calls this at every tick with the tick's few slots, where ``np.unique``'s fixed
    cost per call (tens of microseconds) was most of the work.

    >>> v, c = unique_counts([np.array([5, 1, 5]), np.array([1, 7, 5])])
    >>> v.tolist(), c.tolist()
    ([1, 5, 7], [2, 3, 1])
    """
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a = parts[0] if len(parts) == 1 else np.concatenate(parts)
    a = column("values", a, np.int64, None, "")
    n = a.shape[0]
    vals, counts = np.empty(n, np.int64), np.empty(n, np.int64)
    m = _unique_counts_into(a, np.empty(n, np.int64), np.empty(SORT_STACK, np.int64), vals, counts)
    return vals[:m].copy(), counts[:m].copy()


@njit(cache=True)
def _coldest(
    acc: NDArray[np.float64], last_ts: NDArray[np.int64], never: int, h: int, w: NDArray[np.float64],
    keep: NDArray[np.bool_], n: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:  # fmt: skip
    m = 0
    for p in range(n):
        if last_ts[p] != never and not keep[p]:
            m += 1
    slots = np.empty(m, np.int64)
    score = np.empty(m, np.float64)
    j = 0
    for p in range(n):
        if last_ts[p] != never and not keep[p]:
            total = 0.0
            for k in range(acc.shape[1]):
                total += acc[p, k, h] * w[k]
            slots[j] = p
            score[j] = total
            j += 1
    return slots, score


def coldest(
    acc: NDArray[np.float64],
    last_ts_ms: NDArray[np.int64],
    *,
    never: int,
    half_life: int,
    weights: NDArray[np.float64],
    name_hash: NDArray[np.uint64],
    keep: NDArray[np.bool_],
    n: int,
) -> NDArray[np.int64]:
    """Live slots below ``n`` (``last_ts_ms != never``, not ``keep``), coldest first.

    Cold: the smallest weighted accumulator at half-life index ``half_life`` (the decayed counts
    share one decay factor, so the order is that of the decayed counts); equal ones in the order
    of ``name_hash`` (the product id's hash, not its slot: slots depend on batching, ids do not).
    """
    slots, score = _coldest(acc, last_ts_ms, int(never), int(half_life), weights, keep, int(n))
    return slots[np.lexsort((name_hash[slots], score))]


@njit(cache=True)
def _baseline_rates(
    acc: NDArray[np.float64], slots: NDArray[np.int64], k: int, h: int, lam: float, dt_s: float, norm: float,
    floor: float, cycle: float, out: NDArray[np.float64],
) -> int:  # fmt: skip
    x = -lam * dt_s
    f = _exp(x)
    for j in range(slots.shape[0]):
        p = slots[j]
        if p < 0 or p >= acc.shape[0]:
            return j
        v = _scaled_by(acc[p, k, h], f, x) * norm
        out[j] = (v if not v < floor else floor) * cycle  # np.maximum(v, floor): NaN stays NaN
    return -1


def baseline_rates(
    acc: NDArray[np.float64],
    slots: NDArray[np.int64],
    *,
    channel: int,
    half_life: int,
    lam: float,
    dt_s: float,
    norm: float,
    floor: float,
    cycle: float,
) -> NDArray[np.float64]:
    """``np.maximum(decayed(acc[slots, channel, half_life]) * norm, floor) * cycle``, float64[m], in one pass.

    ``acc`` forward-decay accumulators read at ``dt_s`` seconds past their landmark with rate ``lam``:
    the value of ``DecayedCounters.read(slots)[:, channel, half_life]``, bit for bit (the same
    ``_scaled``), scaled as ``SequentialDetector.baseline`` does, without the intermediate
    ``[m, channels, half-lives]`` array and its checks.
    """
    slots = column("slots", slots, np.int64, None, "")
    out = np.empty(slots.shape[0], np.float64)
    bad = _baseline_rates(acc, slots, channel, half_life, lam, dt_s, norm, floor, cycle, out)
    if bad >= 0:
        check_range("slots", slots, 0, acc.shape[0])
    return out


@njit(cache=True)
def _keep_hot(
    old: NDArray[np.int64], old_ms: NDArray[np.int64], old_ev: NDArray[np.float64], hot: NDArray[np.int64],
    evidence: NDArray[np.float64], now_ms: int, idle_ms: int, cap: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:  # fmt: skip
    n_old = old.shape[0]
    stay = np.empty(n_old, np.bool_)
    j = 0
    m = 0
    for i in range(n_old):  # hot is ascending: a merge tells which old ones are hot again
        while j < hot.shape[0] and hot[j] < old[i]:
            j += 1
        stay[i] = now_ms - old_ms[i] <= idle_ms and not (j < hot.shape[0] and hot[j] == old[i])
        m += stay[i]
    n = m + hot.shape[0]
    slots = np.empty(n, np.int64)
    ms = np.empty(n, np.int64)
    ev = np.empty(n, np.float64)
    k = 0
    for i in range(n_old):
        if stay[i]:
            slots[k], ms[k], ev[k] = old[i], old_ms[i], old_ev[i]
            k += 1
    for i in range(hot.shape[0]):
        slots[k], ms[k], ev[k] = hot[i], now_ms, evidence[i]
        k += 1
    if n > cap:
        top = np.argsort(-ev, kind="mergesort")[:cap]
        slots, ms, ev = slots[top], ms[top], ev[top]
    order = np.argsort(slots, kind="mergesort")
    return slots[order], ms[order], ev[order]


def keep_hot(
    old: NDArray[np.int64],
    old_ms: NDArray[np.int64],
    old_ev: NDArray[np.float64],
    hot: NDArray[np.int64],
    evidence: NDArray[np.float64],
    *,
    now_ms: int,
    idle_ms: int,
    cap: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """The sketched set after a tick: ``old`` ones hot within ``idle_ms`` and not in ``hot``, plus ``hot``.

    Exactly the numpy expression of ``AudienceGuard.keep_sketched`` (``old`` and ``hot`` ascending int64):
    at most ``cap``, most evidence first (stable: earlier rows win ties), returned sorted by slot
    with each one's last hot time and evidence.
    """
    hot = column("hot", hot, np.int64, None, "")
    evidence = column("evidence", evidence, np.float64, hot.shape[0], "hot")
    if old.shape[0] + hot.shape[0] > cap and (np.isnan(evidence).any() or np.isnan(old_ev).any()):
        return keep_hot_numpy(old, old_ms, old_ev, hot, evidence, now_ms=now_ms, idle_ms=idle_ms, cap=cap)
    return _keep_hot(old, old_ms, old_ev, hot, evidence, int(now_ms), int(idle_ms), int(cap))


def keep_hot_numpy(
    old: NDArray[np.int64],
    old_ms: NDArray[np.int64],
    old_ev: NDArray[np.float64],
    hot: NDArray[np.int64],
    evidence: NDArray[np.float64],
    *,
    now_ms: int,
    idle_ms: int,
    cap: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """:func:`keep_hot` in numpy (the reference; where an evidence is NaN, numpy's sort order decides)."""
    stay = (now_ms - old_ms <= idle_ms) & ~in_sorted(old, hot)
    slots = np.concatenate([old[stay], hot])
    ms = np.concatenate([old_ms[stay], np.full(hot.size, now_ms, np.int64)])
    ev = np.concatenate([old_ev[stay], evidence])
    if slots.size > cap:
        top = np.argsort(-ev, kind="stable")[:cap]
        slots, ms, ev = slots[top], ms[top], ev[top]
    order = np.argsort(slots, kind="stable")
    return slots[order], ms[order], ev[order]
