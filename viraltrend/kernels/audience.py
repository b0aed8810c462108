"""Bottom-k samples of the audiences of watched products, and containment between them.

A product's *audience sample* is the ``k`` smallest distinct values ``splitmix64(user_hash ^ seed)``
over the users of its events since it was watched, sorted ascending (``2**64 - 1`` pads a sample
of fewer than ``k`` users).  Unlike ``k`` MinHash minima, it answers "what share of A's users are
also B's?" (*containment*) when A is much smaller than B: both samples hold exactly the users whose
value lies below their threshold (the ``k``-th value, or everything while not full), so below
``tau = min(threshold_A, threshold_B)`` both are the complete user sets, and

    containment(A in B) ~ |{x in A, x in B, x <= tau}| / |{x in A, x <= tau}|

is a plain ratio over a uniform random subset of A's users (exact when both audiences are below
``k`` users).  With ``k`` MinHash minima a 12-user audience inside a 400-user one shows about
``k * 12 / 400`` equal minima (1 of 32); with a 256-sample about ``256 * 12 / 400 = 8`` of its 12
users fall below ``tau`` and all of them are found in B.

Values come from the users' 64-bit id hashes (:func:`~viraltrend.kernels.hashtable.hash_ids`),
not their slots, so a user released and interned again keeps its identity, and no slot has to be
held back for a stored sample.  Memory: ``11 k + 9`` bytes per watched row (the sample, its users' activity
and funnel bits), plus ``row_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.ndjson import EVENT_TYPES
from viraltrend.kernels.users import UserSketches, _mix64

__all__ = [
    "ActivityCounts",
    "AudienceSketches",
    "activity_dispersion",
    "blind_buyers",
    "containment",
    "pooled_overdispersion",
    "union_into",
]

_U64_MAX: Final = np.uint64(2**64 - 1)
_COUNT_MAX: Final = 65535  # uint16 activity counts saturate here


#: Funnel bits per sampled user (``fun``): a view of the product seen since the user was sampled,
#: a cart or purchase seen, and a cart or purchase seen while no view of it had been (a *blind buyer*).
VIEWED: Final = 1
BOUGHT: Final = 2
BLIND: Final = 4
_VIEW_CODE: Final = EVENT_TYPES.index("view")
_CART_CODE: Final = 4


@njit(cache=True)
def _funnel_step(state: np.uint8, kind: np.int8, viewed: bool) -> np.uint8:
    """A sampled user's funnel bits after one more event of type code ``kind`` (-1: unknown).

    ``viewed``: a view of the product by the user was seen lately (before the product was watched too).
    """
    s = int(state)
    if kind >= _CART_CODE:
        if not s & VIEWED and not viewed:
            s |= BLIND
        s |= BOUGHT
    elif kind == _VIEW_CODE:
        s |= VIEWED
    return np.uint8(s)


@no_refcounts
def _insert_val(
    sig: NDArray[np.uint64], val: NDArray[np.uint16], fun: NDArray[np.uint8], r: int, h: np.uint64,
    v: np.uint16, kind: np.int8, viewed: bool,
) -> None:  # fmt: skip
    """Insert ``h`` into the sorted row ``sig[r]`` (uint64[k]) if among the k smallest and new.

    ``val[r]`` (the sampled users' activity) and ``fun[r]`` (their funnel bits) move along with
    ``sig[r]``; a user already sampled gets its funnel bits updated with the event's ``kind``.
    """
    k = sig.shape[1]
    if h > sig[r, k - 1]:
        return
    lo, hi = 0, k - 1
    while lo < hi:  # first position holding a value >= h
        mid = (lo + hi) // 2
        if sig[r, mid] < h:
            lo = mid + 1
        else:
            hi = mid
    if sig[r, lo] == h:
        fun[r, lo] = _funnel_step(fun[r, lo], kind, viewed)
        return
    if h >= sig[r, k - 1]:
        return
    for j in range(k - 1, lo, -1):
        sig[r, j] = sig[r, j - 1]
        val[r, j] = val[r, j - 1]
        fun[r, j] = fun[r, j - 1]
    sig[r, lo] = h
    val[r, lo] = v
    fun[r, lo] = _funnel_step(np.uint8(0), kind, viewed)


@no_refcounts
def _bottomk_update_val(
    sig: NDArray[np.uint64], val: NDArray[np.uint16], fun: NDArray[np.uint8], nonempty: NDArray[np.bool_],
    row_of: NDArray[np.int64], seed: np.int64, product: NDArray[np.int64], user: NDArray[np.int64],
    activity: NDArray[np.uint16], kind: NDArray[np.int8], viewed: NDArray[np.bool_],
) -> None:  # fmt: skip
    """Per event of a watched product: insert ``mix64(user ^ seed)`` into its row (sorted, distinct).

    The user's ``activity`` at its first sampled event is kept beside it in ``val``, and its funnel
    bits (:data:`VIEWED`, :data:`BOUGHT`, :data:`BLIND`) from the events' type codes ``kind`` in ``fun``
    (``viewed[i]``: the user viewed the product lately, before it was watched too).

    ``sig`` uint64[rows, k], ``val`` uint16[rows, k], ``fun`` uint8[rows, k], ``nonempty`` bool[rows],
    ``row_of`` int64[n_slots] (-1: unwatched), ``product`` (>= 0) and ``user`` (id hashes as int64
    bits) int64[n], ``kind`` int8[n].  Serial: rows repeat.  ``2**64 - 1`` is the padding.
    """
    top: np.uint64 = np.uint64(2**64 - 2)
    for i in range(product.shape[0]):
        p = product[i]
        if p >= row_of.shape[0] or row_of[p] < 0:
            continue
        r = row_of[p]
        nonempty[r] = True
        h = np.uint64(_mix64(user[i] ^ seed))
        _insert_val(sig, val, fun, r, min(h, top), activity[i], kind[i], viewed[i])


@no_refcounts
def _count_min_observe(cells: NDArray[np.uint16], user: NDArray[np.int64], out: NDArray[np.uint16]) -> None:
    """Per event in order: ``out[i]`` = the user's events before it (count-min estimate), then count it.

    ``cells`` uint16[d, w] (``w`` a power of two); row ``j`` hashes ``mix64(user ^ j)``.  Conservative
    update: only the rows at the minimum are incremented (saturating at 65535).
    """
    d, w = cells.shape[0], cells.shape[1]
    mask = np.uint64(w - 1)
    for i in range(user.shape[0]):
        best = _COUNT_MAX
        for j in range(d):
            c = int(cells[j, np.int64(np.uint64(_mix64(user[i] ^ np.int64(j * 0x51ED27))) & mask)])
            if c < best:
                best = c
        out[i] = best
        if best < _COUNT_MAX:
            for j in range(d):
                at = np.int64(np.uint64(_mix64(user[i] ^ np.int64(j * 0x51ED27))) & mask)
                if int(cells[j, at]) == best:
                    cells[j, at] = best + 1


class ActivityCounts:
    """Events per user since the engine started, in a count-min sketch of configured size.

    The user table releases idle users' slots (after an hour), so a per-slot count would restart
    at every visit; the audience-uniformity signal needs each account's activity over days.  A
    count-min sketch (Cormode and Muthukrishnan 2005) of ``depth`` rows of ``width`` uint16 cells,
    keyed by the users' 64-bit id hashes, holds it in ``2 * depth * width`` bytes whatever the
    number of users (collisions only ever add to a count; conservative update keeps that small).

    >>> act = ActivityCounts(width=1024, depth=2)
    >>> act.observe(np.array([7, 7, 9, 7], np.int64)).tolist()
    [0, 1, 0, 2]
    >>> act.nbytes
    4096
    """

    def __init__(self, *, width: int = 1 << 18, depth: int = 2) -> None:
        if width < 1 or width & (width - 1) or not 1 <= depth <= 8:
            msg = f"activity counts: width must be a power of two and depth in [1, 8], got {width}, {depth}"
            raise ValueError(msg)
        self.cells: NDArray[np.uint16] = np.zeros((depth, width), np.uint16)

    @property
    def nbytes(self) -> int:
        """Bytes of the cells (the configured bound)."""
        return int(self.cells.nbytes)

    def observe(self, user: NDArray[np.int64]) -> NDArray[np.uint16]:
        """Each event's user's earlier events (int64[n] id hashes, in order), counting the events in."""
        out = np.empty(user.shape[0], np.uint16)
        if user.shape[0]:
            _count_min_observe(self.cells, np.ascontiguousarray(user, np.int64), out)
        return out

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Plain arrays for a checkpoint."""
        return {"cells": self.cells.copy()}

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return dict(self.to_arrays()), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> ActivityCounts:
        """:meth:`load_arrays`, in place."""
        self.load_arrays(arrays)
        return self

    def load_arrays(self, arrays: Mapping[str, NDArray[np.generic]]) -> None:
        """Restore from :meth:`to_arrays` output (an empty mapping: an older checkpoint, counts restart)."""
        if "cells" not in arrays:
            self.cells[:] = 0
            return
        got = np.asarray(arrays["cells"])
        if got.shape != self.cells.shape or got.dtype != self.cells.dtype:
            msg = (
                f"activity counts: expected {self.cells.dtype}{self.cells.shape}, got {got.dtype}{got.shape}"
            )
            raise ValueError(msg)
        self.cells = got.copy()


def activity_dispersion(
    sig: NDArray[np.uint64], val: NDArray[np.uint16]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per audience sample: (users sampled, their mean earlier events, variance / mean of those).

    The index of dispersion of the sampled users' activity: about 1 for accounts acting at one
    common rate (Poisson counts), far above it for real audiences (user activity is heavy-tailed,
    so ``variance = mean + mean**2 * CV**2`` of the rates).  ``sig``/``val``: uint64/uint16[m, k].

    >>> sig = np.array([[1, 2, 3, 2**64 - 1]], np.uint64)
    >>> n, mean, disp = activity_dispersion(sig, np.array([[4, 6, 5, 99]], np.uint16))
    >>> n.tolist(), mean.tolist(), [round(float(x), 2) for x in disp]
    ([3], [5.0], [0.13])
    """
    held = sig != _U64_MAX
    n = held.sum(axis=-1)
    x = np.where(held, val.astype(np.float64), 0.0)
    mean = x.sum(axis=-1) / np.maximum(n, 1)
    var = np.where(held, (x - mean[..., None]) ** 2, 0.0).sum(axis=-1) / np.maximum(n, 1)
    return n.astype(np.int64), mean, var / np.maximum(mean, 1e-9)


def pooled_overdispersion(sig: NDArray[np.uint64], val: NDArray[np.uint16]) -> tuple[float, int]:
    """The squared coefficient of variation of the users' activity rates, pooled over audience samples.

    Within each row (uint64/uint16[r, k]), ``variance - mean`` estimates ``mean**2 * CV**2`` (Poisson
    counts over rates of squared coefficient of variation ``CV**2``); pooled over rows, weighted by
    their users: ``sum n (var - mean) / sum n mean**2`` (0 where nothing is active), and the users
    behind it.  About 0 where every user acts at one rate, 1 and more for heavy-tailed activity.

    >>> sig = np.tile(np.arange(1, 5, dtype=np.uint64), (2, 1))
    >>> phi, n = pooled_overdispersion(sig, np.array([[4, 4, 4, 4], [1, 1, 1, 13]], np.uint16))
    >>> round(phi, 2), n
    (0.59, 8)
    """
    n, mean, disp = activity_dispersion(sig, val)
    var = disp * mean
    den = float((n * mean * mean).sum())
    return (float((n * (var - mean)).sum()) / den if den > 0 else 0.0), int(n.sum())


def blind_buyers(
    sig: NDArray[np.uint64], fun: NDArray[np.uint8]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per audience sample: (sampled buyers, those of them who bought before any view of theirs was seen).

    A real buyer walks the funnel: views the product, then adds it to a cart, then buys, so an
    organic product's carts and purchases come from users who viewed it (up to late delivery).
    Accounts told to "engage with an organic mix" send carts and purchases with no view before them.
    ``sig``/``fun``: uint64/uint8[m, k] (:meth:`AudienceSketches.funnel`).

    >>> sig = np.array([[1, 2, 3, 4, 2**64 - 1]], np.uint64)
    >>> fun = np.array([[VIEWED | BOUGHT, BOUGHT | BLIND, VIEWED, BLIND | BOUGHT | VIEWED, BLIND]], np.uint8)
    >>> [x.tolist() for x in blind_buyers(sig, fun)]
    [[3], [2]]
    """
    held = sig != _U64_MAX
    bought = held & ((fun & BOUGHT) != 0)
    blind = bought & ((fun & BLIND) != 0)
    return bought.sum(axis=-1).astype(np.int64), blind.sum(axis=-1).astype(np.int64)


@njit(cache=True)
def _union_rows(dst: NDArray[np.uint64], rows: NDArray[np.int64], src: NDArray[np.uint64]) -> None:
    """``dst[rows[i]] = the k smallest distinct values of dst[rows[i]] and src[i]`` (sorted rows)."""
    k = dst.shape[1]
    buf = np.empty(k, np.uint64)
    for i in range(rows.shape[0]):
        r = rows[i]
        a = b = n = 0
        while n < k:
            x = dst[r, a] if a < k else _U64_MAX
            y = src[i, b] if b < k else _U64_MAX
            if x == _U64_MAX and y == _U64_MAX:
                break
            if x < y:
                buf[n] = x
                a += 1
            elif y < x:
                buf[n] = y
                b += 1
            else:
                buf[n] = x
                a += 1
                b += 1
            n += 1
        for j in range(n):
            dst[r, j] = buf[j]
        for j in range(n, k):
            dst[r, j] = _U64_MAX


@njit(cache=True)
def _containment(
    cand: NDArray[np.uint64], mem: NDArray[np.uint64], rows: NDArray[np.int64],
    sampled: NDArray[np.int64], shared: NDArray[np.int64],
) -> None:  # fmt: skip
    """Sampled and shared users of every candidate ``i`` against every memory row ``rows[j]``.

    ``sampled[i, j]``: the candidate's values at or below ``tau = min(threshold_i, threshold_j)``;
    ``shared[i, j]``: those also in the row.  ``cand`` uint64[m, k] and ``mem`` uint64[r, k],
    sorted rows padded with ``2**64 - 1``.  O(m * len(rows) * k).
    """
    k = cand.shape[1]
    for i in range(cand.shape[0]):
        for jj in range(rows.shape[0]):
            r = rows[jj]
            tau = min(cand[i, k - 1], mem[r, k - 1])  # 2**64 - 1 while a sample is not full
            a = b = n = s = 0
            while a < k:
                x = cand[i, a]
                if x == _U64_MAX or x > tau:
                    break
                n += 1
                while b < k and mem[r, b] < x:
                    b += 1
                if b < k and mem[r, b] == x:
                    s += 1
                a += 1
            sampled[i, jj] = n
            shared[i, jj] = s


def containment(
    cand: NDArray[np.uint64], mem: NDArray[np.uint64], rows: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return ``(sampled, shared)``, int64[m, len(rows)], of each candidate against each memory row.

    See :func:`_containment`; ``shared / sampled`` estimates the share of candidate ``i``'s users
    in row ``rows[j]``'s audience.

    >>> a = np.array([[1, 2, 3, 2**64 - 1]], np.uint64)
    >>> b = np.array([[2, 3, 5, 7]], np.uint64)
    >>> [x.tolist() for x in containment(a, b, np.array([0]))]
    [[[3]], [[2]]]
    """
    m = cand.shape[0]
    sampled = np.zeros((m, rows.shape[0]), np.int64)
    shared = np.zeros((m, rows.shape[0]), np.int64)
    if m and rows.shape[0]:
        _containment(np.ascontiguousarray(cand), mem, np.ascontiguousarray(rows, np.int64), sampled, shared)
    return sampled, shared


def union_into(dst: NDArray[np.uint64], rows: NDArray[np.int64], src: NDArray[np.uint64]) -> None:
    """Replace each ``dst[rows[i]]`` by the bottom-k sample of the union of it and ``src[i]`` (in place).

    >>> dst = np.array([[1, 4, 2**64 - 1]], np.uint64)
    >>> union_into(dst, np.array([0]), np.array([[2, 4, 9]], np.uint64))
    >>> dst.tolist()
    [[1, 2, 4]]
    """
    if rows.shape[0]:
        _union_rows(dst, np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(src, np.uint64))


def sample_size(sig: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Values held per sorted row (uint64[..., k]): the audience size while below ``k``."""
    return np.asarray((sig != _U64_MAX).sum(axis=-1), np.int64)


def estimated_users(sig: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Distinct users behind bottom-k rows: exact below ``k``, else ``(k - 1) / (threshold / 2**64)``.

    >>> vals = np.sort(np.random.default_rng(0).integers(0, 2**63, 1000).astype(np.uint64) * 2)
    >>> 700 < float(estimated_users(vals[None, :256])[0]) < 1400
    True
    """
    k = sig.shape[-1]
    n = sample_size(sig).astype(np.float64)
    top = sig[..., k - 1].astype(np.float64) / 2.0**64
    full = n >= k
    return np.where(full, (k - 1) / np.maximum(top, 1e-300), n)


class AudienceSketches(UserSketches):
    """Bottom-k audience samples of watched products (see the module docstring).

    The watch / unwatch / reset / signatures / checkpoint interface of
    :class:`~viraltrend.kernels.users.UserSketches`; a row of ``sig`` is the sorted sample.
    :meth:`update` takes the users' 64-bit id hashes (as int64 bits), not their slots.

    Examples
    --------
    >>> sk = AudienceSketches(k=4)
    >>> sk.watch(np.array([1, 2], np.int64))
    >>> sk.update(np.array([1, 1, 1, 2, 5], np.int64), np.array([10, 10, 11, 10, 12], np.int64))
    >>> sample_size(sk.signatures(np.array([1, 2], np.int64))).tolist()
    [2, 1]
    """

    val: NDArray[np.uint16]  # per sampled user: its activity (events before) when first sampled
    fun: NDArray[np.uint8]  # per sampled user: its funnel bits (VIEWED, BOUGHT, BLIND)

    def _fit_val(self) -> NDArray[np.uint16]:
        """``val`` with as many rows as ``sig`` (watch() grows ``sig``; new rows start at 0)."""
        val: NDArray[np.uint16] | None = getattr(self, "val", None)
        if val is None or val.shape[0] != self.sig.shape[0]:
            out = np.zeros((self.sig.shape[0], self.k), np.uint16)
            if val is not None:
                n = min(int(val.shape[0]), int(out.shape[0]))
                out[:n] = val[:n]
            self.val = val = out
        return val

    def _fit_fun(self) -> NDArray[np.uint8]:
        """``fun`` with as many rows as ``sig`` (new rows start at 0: no funnel step seen)."""
        fun: NDArray[np.uint8] | None = getattr(self, "fun", None)
        if fun is None or fun.shape[0] != self.sig.shape[0]:
            out = np.zeros((self.sig.shape[0], self.k), np.uint8)
            if fun is not None:
                n = min(int(fun.shape[0]), int(out.shape[0]))
                out[:n] = fun[:n]
            self.fun = fun = out
        return fun

    def update(
        self,
        product: NDArray[np.int64],
        user: NDArray[np.int64],
        activity: NDArray[np.uint16] | None = None,
        kind: NDArray[np.int8] | None = None,
        viewed: NDArray[np.bool_] | None = None,
    ) -> None:
        """Add the users (id hashes, int64 bits) of events on ``product`` slots (int64[n]) to the samples.

        ``activity`` (uint16[n]): each event's user's earlier events (:class:`ActivityCounts`), kept
        beside a user when it enters a sample (:meth:`values`).  ``kind`` (int8[n], the events' type
        codes; None: unknown) moves the sampled users' funnel bits (:meth:`funnel`); ``viewed`` (bool[n],
        None: all False) tells the carts and purchases whose user viewed the product lately, also
        before it was watched (the caps table's view entry, :meth:`UserSignals.counted_lately`).
        """
        if product.dtype != np.int64 or user.dtype != np.int64 or product.shape != user.shape:
            msg = f"product and user must be int64[n] of one length, got {product.dtype}, {user.dtype}"
            raise TypeError(msg)
        if not product.shape[0]:
            return
        if activity is None:
            activity = np.zeros(product.shape[0], np.uint16)
        if activity.shape != product.shape:
            msg = f"activity must be uint16[{product.shape[0]}], got {activity.dtype}{list(activity.shape)}"
            raise TypeError(msg)
        if kind is None:
            kind = np.full(product.shape[0], -1, np.int8)
        if kind.shape != product.shape:
            msg = f"kind must be int8[{product.shape[0]}], got {kind.dtype}{list(kind.shape)}"
            raise TypeError(msg)
        if viewed is None:
            viewed = np.zeros(product.shape[0], np.bool_)
        if viewed.shape != product.shape:
            msg = f"viewed must be bool[{product.shape[0]}], got {viewed.dtype}{list(viewed.shape)}"
            raise TypeError(msg)
        val, fun = self._fit_val(), self._fit_fun()
        _bottomk_update_val(
            self.sig, val, fun, self.nonempty, self.row_of, self._seeds[0],
            np.ascontiguousarray(product), np.ascontiguousarray(user),
            np.ascontiguousarray(activity, np.uint16), np.ascontiguousarray(kind, np.int8),
            np.ascontiguousarray(viewed, np.bool_),
        )  # fmt: skip

    def funnel(self, products: NDArray[np.int64]) -> NDArray[np.uint8]:
        """The sampled users' funnel bits of watched ``products`` (uint8[m, k], beside :meth:`signatures`)."""
        rows = self._rows(self._products("products", products))
        if (rows < 0).any():
            msg = f"product {products[rows < 0][0]} is not watched; call watch() first"
            raise KeyError(msg)
        return self._fit_fun()[rows]

    def values(self, products: NDArray[np.int64]) -> NDArray[np.uint16]:
        """The sampled users' activity of watched ``products`` (uint16[m, k], beside :meth:`signatures`)."""
        rows = self._rows(self._products("products", products))
        if (rows < 0).any():
            msg = f"product {products[rows < 0][0]} is not watched; call watch() first"
            raise KeyError(msg)
        return self._fit_val()[rows]

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """:meth:`UserSketches.to_arrays` plus ``val`` uint16[rows, k] and ``fun`` uint8[rows, k]."""
        return super().to_arrays() | {"val": self._fit_val().copy(), "fun": self._fit_fun().copy()}

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return dict(self.to_arrays()), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> AudienceSketches:
        """:meth:`from_arrays` with these samples' size and seed."""
        return type(self).from_arrays(arrays, k=self.k, seed=self.seed)

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, NDArray[np.generic]], *, k: int = 16, seed: int = 0
    ) -> AudienceSketches:
        """Rebuild samples from :meth:`to_arrays` output, exactly; CheckpointError if they do not fit."""
        out = super().from_arrays(arrays, k=k, seed=seed)
        assert isinstance(out, AudienceSketches)
        if "val" in arrays:  # older checkpoints: the sampled users' activity restarts at 0
            val = np.asarray(arrays["val"])
            if val.shape != out.sig.shape or val.dtype != np.uint16:
                msg = (f"audience sketches checkpoint: val{list(val.shape)} {val.dtype} does not fit "
                       f"sig{list(out.sig.shape)}")  # fmt: skip
                raise CheckpointError(msg)
            out.val = val.copy()
        if "fun" in arrays:  # older checkpoints: the sampled users' funnel bits restart at 0
            fun = np.asarray(arrays["fun"])
            if fun.shape != out.sig.shape or fun.dtype != np.uint8:
                msg = (f"audience sketches checkpoint: fun{list(fun.shape)} {fun.dtype} does not fit "
                       f"sig{list(out.sig.shape)}")  # fmt: skip
                raise CheckpointError(msg)
            out.fun = fun.copy()
        out._fit_val()
        out._fit_fun()
        return out


@njit(cache=True)
def _activity_chance(
    chance: NDArray[np.float64],
    weight: NDArray[np.float64],
    sampled: NDArray[np.int64],
    out: NDArray[np.float64],
) -> None:
    """Fill ``out`` (float64[m, r]) with :func:`~viraltrend.trust.activity_chance`'s mean chances.

    Per candidate ``i`` and audience ``j``: the first ``sampled[i, j]`` terms
    ``min(1, chance[j] * weight[i, t])`` added one after the other from the first (numpy's
    ``cumsum``, a running sum, read at the last of them), over ``max(sampled, 1)``; ``chance[j]``
    where none is sampled.  numpy's ``minimum`` keeps a NaN; a running sum in the same order, the
    same bits (``k >= 1``).
    """
    m, k = weight.shape
    r = chance.shape[0]
    for i in range(m):
        for j in range(r):
            n = sampled[i, j]
            if n <= 0:
                out[i, j] = chance[j]
                continue
            last = min(max(n - 1, 0), k - 1)  # numpy's clip of the index
            c = chance[j]
            tot = 0.0
            for t in range(last + 1):
                x = c * weight[i, t]
                v = x if (x != x or x < 1.0) else 1.0  # minimum(1.0, x)
                tot = v if t == 0 else tot + v
            out[i, j] = tot / float(max(n, 1))
