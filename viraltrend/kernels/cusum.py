"""Per-product sequential change test: Poisson CUSUMs on distinct-user arrivals, plus recent tick counts.

A product's evidence stream is the number ``x`` of *new distinct users* (new (user, product)
pairs, see :class:`~viraltrend.kernels.users.UserSignals`) in each event-time tick of ``tick_ms``.
Under "no change" they arrive as a Poisson process of rate ``mu`` (the product's own baseline,
corrected for the daily cycle: the caller supplies it per tick); after a change at rate
``rho * mu``.  Page's CUSUM for that alternative (Lorden's minimax-optimal stopping rule) is::

    S <- max(0, S + x * ln(rho) - (rho - 1) * mu * dt)

and an alarm is ``S >= h``.  A grid of ``rho`` values approximates the generalised likelihood
ratio (the unknown lift): the largest statistic over the grid is the evidence.  ``S`` reaches
``h`` after a delay of about ``h / (rate * ln rho - (rho - 1) mu)``: seconds for a steep onset,
longer for a gentle one, with no fixed wait.  The last time ``S`` was 0 estimates the change
point (where the evidence began), per grid value.

**Laziness.**  Only products with events in a tick are updated at that tick.  For an idle stretch
of ``n`` ticks the recursion with ``x = 0`` is exactly ``S <- max(0, S - n * (rho - 1) * mu * dt)``,
so it is applied in one step when the product is next touched (or read), with the ``mu`` of that
moment: an idle tick costs nothing.

**Recent counts.**  Each product also keeps its new-user counts of the last ``n_bins`` ticks in a
ring (``uint8``, saturating at 255), so the detector can read the *shape* of the growth since the change
point (sustained, accelerating or fading) rather than wait a fixed time.

A second, coarse ring (``uint16``) sums the same counts over ``ticks_per_coarse`` ticks per bin,
for the growth of slower ramps.  Updates happen at ticks only, so a slot's last update is its
``last_tick`` (int64), and each change point is kept as ticks before it (int32).  State per
product: ``n_lifts`` statistics (float32) and change points, the last tick and the rings:
``8 * n_lifts + 8 + n_bins + 2 * n_coarse`` bytes (106 with four lifts, 18 fine and 24 coarse bins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError
from viraltrend.kernels._checks import check_range, column, owned
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.columns import SORT_STACK, _unique_counts_into
from viraltrend.kernels.decay import _scaled, grown_capacity

__all__ = ["ChangeDetector"]

_NEVER: Final = int(np.iinfo(np.int64).min)
_BIN_MAX: Final = 255  # new users of one product in one tick: a uint8 that saturates
_BACK_MAX: Final = 2**31 - 1
_COARSE_MAX: Final = 65_535


_NO_X: Final = np.zeros(0, np.float64)


@njit(cache=True)
def _first_bad(
    slots: NDArray[np.int64], mu: NDArray[np.float64], x: NDArray[np.float64], capacity: int
) -> int:
    """0: all valid and ``slots`` strictly ascending; 4: all valid, ``slots`` not ascending.

    Else the first failed check: 1 a slot outside ``[0, capacity)``, 2 a ``mu`` not finite and > 0,
    3 an ``x`` < 0 (an empty ``x`` is not checked).
    """
    ascending = True
    for i in range(slots.shape[0]):
        if slots[i] < 0 or slots[i] >= capacity:
            return 1
        if i and slots[i] <= slots[i - 1]:
            ascending = False
    for i in range(mu.shape[0]):
        if not (mu[i] > 0.0 and mu[i] < np.inf):
            return 2
    negative = False
    for i in range(x.shape[0]):
        if x[i] != x[i]:  # NaN: the minimum is NaN, which numpy's ``x.min() < 0`` let through
            negative = False
            break
        negative |= x[i] < 0.0
    if negative:
        return 3
    return 0 if ascending else 4


@no_refcounts
def _update(
    stat: NDArray[np.float32],
    back: NDArray[np.int32],
    bins: NDArray[np.uint8],
    coarse: NDArray[np.uint16],
    per_coarse: int,
    last_tick: NDArray[np.int64],
    slots: NDArray[np.int64],
    x: NDArray[np.float64],
    mu: NDArray[np.float64],
    log_rho: NDArray[np.float64],
    rho_m1: NDArray[np.float64],
    tick: int,
    tick_s: float,
) -> None:
    """Apply tick number ``tick``'s counts ``x`` (float64[m]) of ``slots`` (int64[m], unique).

    ``mu`` (float64[m]) is each slot's baseline rate per second now.  The idle ticks since the
    slot's last update are applied first (``x = 0`` each), then this tick.  ``back`` holds how many
    ticks before the slot's last update its change point lies.
    """
    n_bins = bins.shape[1]
    for i in range(slots.shape[0]):
        p = slots[i]
        last = last_tick[p]
        for g in range(log_rho.shape[0]):
            s = float(stat[p, g])
            d = rho_m1[g] * mu[i] * tick_s  # drift of one tick without events
            zero = last - back[p, g]
            if last == _NEVER:
                s = 0.0
            elif s > 0.0 and tick - 1 > last:
                drop = d * (tick - 1 - last)
                if drop >= s:
                    zero = last + int(math.ceil(s / d))
                    s = 0.0
                else:
                    s -= drop
            if s == 0.0:
                zero = tick - 1  # at 0 until this tick's events: the change is no earlier
            s += x[i] * log_rho[g] - d
            if s <= 0.0:
                s = 0.0
                zero = tick
            stat[p, g] = s
            back[p, g] = min(tick - zero, _BACK_MAX)
        if last == _NEVER or tick - last >= n_bins:
            bins[p, :] = 0
        else:
            for k in range(1, tick - last):
                bins[p, (last + k) % n_bins] = 0
        v = x[i]
        bins[p, tick % n_bins] = _BIN_MAX if v >= _BIN_MAX else int(v)
        n_coarse = coarse.shape[1]
        c, last_c = tick // per_coarse, last // per_coarse
        if last == _NEVER or c - last_c >= n_coarse:
            coarse[p, :] = 0
        else:
            for k in range(1, c - last_c + 1):
                coarse[p, (last_c + k) % n_coarse] = 0
        total = coarse[p, c % n_coarse] + v
        coarse[p, c % n_coarse] = _COARSE_MAX if total >= _COARSE_MAX else int(total)
        last_tick[p] = tick


@no_refcounts
def _update_from_users_into(
    stat: NDArray[np.float32], back: NDArray[np.int32], bins: NDArray[np.uint8], coarse: NDArray[np.uint16],
    per_coarse: int, last_tick: NDArray[np.int64], new_users: NDArray[np.int64], acc: NDArray[np.float64],
    channel: int, half_life: int, lam: float, dt_s: float, norm: float, floor: float, cycle: float,
    log_rho: NDArray[np.float64], rho_m1: NDArray[np.float64], tick: int, tick_s: float,
    buf: NDArray[np.int64], stack: NDArray[np.int64], vals: NDArray[np.int64], counts: NDArray[np.int64],
    x: NDArray[np.float64], mu: NDArray[np.float64],
) -> int:  # fmt: skip
    """:func:`_update` of the tick's new users (one slot per new user, any order), in one call.

    The slots are counted (``np.unique(..., return_counts=True)``) and each one's baseline ``mu`` read
    as ``columns.baseline_rates`` reads it, bit for bit.  Returns 0, or (nothing changed) 1 for a slot
    outside both arrays, 2 for a ``mu`` not finite and > 0.  Its temporaries are scratch at least as
    long as ``new_users`` (``stack``: ``columns.SORT_STACK`` entries): no reference counts, no
    allocation (the compiled tick loop calls it at every tick with new users).
    """
    m = _unique_counts_into(new_users, buf, stack, vals, counts)
    for j in range(m):
        x[j] = np.float64(counts[j])
    for j in range(m):
        p = vals[j]
        if p < 0 or p >= acc.shape[0] or p >= last_tick.shape[0]:
            return 1
        v = _scaled(acc[p, channel, half_life], -lam * dt_s) * norm
        mu[j] = (v if not v < floor else floor) * cycle
        if not (mu[j] > 0.0 and mu[j] < np.inf):
            return 2
    _update(
        stat,
        back,
        bins,
        coarse,
        per_coarse,
        last_tick,
        vals[:m],
        x[:m],
        mu[:m],
        log_rho,
        rho_m1,
        tick,
        tick_s,
    )
    return 0


@njit(cache=True)
def _read(
    stat: NDArray[np.float32],
    back: NDArray[np.int32],
    bins: NDArray[np.uint8],
    coarse: NDArray[np.uint16],
    per_coarse: int,
    last_tick: NDArray[np.int64],
    slots: NDArray[np.int64],
    mu: NDArray[np.float64],
    rho_m1: NDArray[np.float64],
    tick: int,
    tick_s: float,
    out_stat: NDArray[np.float64],
    out_zero: NDArray[np.int64],
    out_bins: NDArray[np.float64],
    out_coarse: NDArray[np.float64],
) -> None:
    """Statistics and change-point ticks (idle ticks applied up to ``tick``), and both rings, oldest first."""
    n_bins = bins.shape[1]
    for i in range(slots.shape[0]):
        p = slots[i]
        last = last_tick[p]
        for g in range(rho_m1.shape[0]):
            s = float(stat[p, g])
            zero = last - back[p, g]
            if last == _NEVER:
                s = 0.0
            elif s > 0.0 and tick > last:
                drop = rho_m1[g] * mu[i] * tick_s * (tick - last)
                s = 0.0 if drop >= s else s - drop
            if s == 0.0:
                zero = tick
            out_stat[i, g] = s
            out_zero[i, g] = zero
        for j in range(n_bins):
            t = tick - n_bins + 1 + j
            if last != _NEVER and last - n_bins < t <= last:
                out_bins[i, j] = bins[p, t % n_bins]
            else:
                out_bins[i, j] = 0.0
        n_coarse = coarse.shape[1]
        c, last_c = tick // per_coarse, last // per_coarse
        for j in range(n_coarse):
            t = c - n_coarse + 1 + j
            if last != _NEVER and last_c - n_coarse < t <= last_c:
                out_coarse[i, j] = coarse[p, t % n_coarse]
            else:
                out_coarse[i, j] = 0.0


class ChangeDetector:
    """Poisson CUSUMs at a grid of lifts per product slot, and each slot's recent tick counts.

    Parameters
    ----------
    lifts : sequence of float
        The alternatives ``rho`` (each > 1): the rate after a change, in multiples of the baseline.
    tick_ms : int
        Length of a tick of event time; :meth:`update` is called once per tick with that tick's counts.
    n_bins : int
        Ticks of counts kept per product (the window the growth shape is read over).
    ticks_per_coarse, n_coarse : int
        A second ring of ``n_coarse`` bins of ``ticks_per_coarse`` ticks each (uint16): the growth
        of slower ramps.
    capacity : int
        Initial product slots; grows with :meth:`ensure_capacity`.

    Examples
    --------
    >>> d = ChangeDetector(lifts=(4.0,), tick_ms=10_000, n_bins=6, capacity=4, ticks_per_coarse=3, n_coarse=2)
    >>> slots = np.array([1], np.int64)
    >>> d.update(slots, np.array([5.0]), np.array([0.01]), now_ms=10_000)
    >>> d.update(slots, np.array([2.0]), np.array([0.01]), now_ms=20_000)
    >>> stat, zero, bins, coarse = d.read(slots, np.array([0.01]), now_ms=30_000)
    >>> round(float(stat[0, 0]), 3), int(zero[0, 0]), bins[0].tolist(), coarse[0].tolist()
    (8.804, 0, [0.0, 0.0, 0.0, 5.0, 2.0, 0.0], [7.0, 0.0])
    """

    def __init__(
        self, *, lifts: Sequence[float], tick_ms: int, n_bins: int, capacity: int = 1024,
        ticks_per_coarse: int = 6, n_coarse: int = 24,
    ) -> None:  # fmt: skip
        rho = np.asarray(lifts, np.float64)
        if rho.ndim != 1 or rho.shape[0] == 0 or not bool(np.all(np.isfinite(rho) & (rho > 1.0))):
            msg = f"lifts must be a non-empty sequence of finite numbers > 1, got {lifts!r}"
            raise ValueError(msg)
        if tick_ms < 1 or n_bins < 2 or capacity < 1 or ticks_per_coarse < 1 or n_coarse < 2:
            msg = (
                "need tick_ms >= 1, n_bins >= 2, capacity >= 1, ticks_per_coarse >= 1, n_coarse >= 2; "
                f"got {tick_ms}, {n_bins}, {capacity}, {ticks_per_coarse}, {n_coarse}"
            )
            raise ValueError(msg)
        self.ticks_per_coarse = int(ticks_per_coarse)
        self.lifts: tuple[float, ...] = tuple(float(r) for r in rho)
        self.tick_ms = int(tick_ms)
        self.n_bins = int(n_bins)
        self._log_rho = np.log(rho)
        self._rho_m1 = rho - 1.0
        g = rho.shape[0]
        self.stat: NDArray[np.float32] = np.zeros((capacity, g), np.float32)
        self.back: NDArray[np.int32] = np.zeros((capacity, g), np.int32)
        self.bins: NDArray[np.uint8] = np.zeros((capacity, n_bins), np.uint8)
        self.coarse: NDArray[np.uint16] = np.zeros((capacity, n_coarse), np.uint16)
        self.last_tick: NDArray[np.int64] = np.full(capacity, _NEVER, np.int64)

    @property
    def capacity(self) -> int:
        """Product slots allocated."""
        return int(self.last_tick.shape[0])

    @property
    def nbytes_per_slot(self) -> int:
        """Bytes of state per product slot."""
        return int(
            self.stat[0].nbytes + self.back[0].nbytes + self.bins[0].nbytes + self.coarse[0].nbytes + 8
        )

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays owned."""
        return int(sum(a.nbytes for a in self._arrays().values()))

    def _arrays(self) -> dict[str, NDArray[np.generic]]:
        return {
            "stat": self.stat,
            "back": self.back,
            "bins": self.bins,
            "coarse": self.coarse,
            "last_tick": self.last_tick,
        }

    def ensure_capacity(self, n_slots: int, limit: int | None = None) -> None:
        """Make slots ``0 .. n_slots - 1`` valid, new rows empty; capacity by :func:`~.decay.grown_capacity`.

        Doubling, but a doubling that would pass ``limit`` (the engine's ``state.max_products``) while
        ``n_slots`` fits under it stops at ``limit``: ``last_tick`` is filled with a sentinel, so every
        slot allocated costs resident memory (8 bytes), used or not.
        """
        if n_slots <= self.capacity:
            return
        new = grown_capacity(self.capacity, n_slots, limit)
        for name, old in self._arrays().items():
            # zeros come from calloc: the pages of the unused capacity stay untouched (no RSS)
            shape = (new, *old.shape[1:])
            grown = np.full(shape, _NEVER, old.dtype) if name == "last_tick" else np.zeros(shape, old.dtype)
            grown[: old.shape[0]] = old
            setattr(self, name, grown)

    def clear(self, slots: NDArray[np.int64]) -> None:
        """Forget ``slots`` (evicted products): they start again like new ones."""
        slots = column("slots", slots, np.int64, None, "")
        check_range("slots", slots, 0, self.capacity)
        self.stat[slots] = 0.0
        self.back[slots] = 0
        self.bins[slots] = 0
        self.coarse[slots] = 0
        self.last_tick[slots] = _NEVER

    def _check(
        self,
        slots: NDArray[np.int64],
        mu: NDArray[np.float64],
        now_ms: int,
        x: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], bool]:
        """Checked ``slots`` and ``mu`` (and ``x`` if given), plus whether ``slots`` is strictly ascending."""
        slots = column("slots", slots, np.int64, None, "")
        mu = column("mu", mu, np.float64, slots.shape[0], "slots")
        xs = _NO_X if x is None else column("x", x, np.float64, slots.shape[0], "slots")
        bad = _first_bad(slots, mu, xs, self.capacity)  # one compiled pass over every column
        if bad == 1:
            check_range("slots", slots, 0, self.capacity)
        if bad == 2:
            msg = "mu must be finite and > 0 (a baseline rate per second); floor it before the call"
            raise ValueError(msg)
        if now_ms % self.tick_ms:
            msg = f"now_ms must be a multiple of tick_ms={self.tick_ms}, got {now_ms}"
            raise ValueError(msg)
        if bad == 3:
            msg = "x must be >= 0 (counts of new users in the tick)"
            raise ValueError(msg)
        return slots, mu, bad == 0

    def update(
        self, slots: NDArray[np.int64], x: NDArray[np.float64], mu: NDArray[np.float64], *, now_ms: int
    ) -> None:
        """Apply the tick ending at ``now_ms``: ``x`` new users per slot (``slots`` unique)."""
        slots, mu, ascending = self._check(slots, mu, now_ms, x)
        x = np.ascontiguousarray(x)
        if not ascending and np.unique(slots).shape[0] != slots.shape[0]:
            msg = "slots must be unique: aggregate a tick's counts per slot first (np.unique, return_counts)"
            raise ValueError(msg)
        _update(
            self.stat, self.back, self.bins, self.coarse, self.ticks_per_coarse, self.last_tick, slots, x, mu,
            self._log_rho, self._rho_m1, int(now_ms) // self.tick_ms, self.tick_ms / 1000.0,
        )  # fmt: skip

    def update_from_users(
        self,
        new_users: NDArray[np.int64],
        acc: NDArray[np.float64],
        *,
        channel: int,
        half_life: int,
        lam: float,
        dt_s: float,
        norm: float,
        floor: float,
        cycle: float,
        now_ms: int,
    ) -> None:
        """:meth:`update` of the tick's new users (one slot per new user), counted, in one compiled call.

        ``slots, x = np.unique(new_users, return_counts=True)``, and ``mu`` read off decayed counters
        as :func:`~viraltrend.kernels.columns.baseline_rates` reads it (bit for bit).
        """
        new_users = column("new_users", new_users, np.int64, None, "")
        if now_ms % self.tick_ms:
            msg = f"now_ms must be a multiple of tick_ms={self.tick_ms}, got {now_ms}"
            raise ValueError(msg)
        n = new_users.shape[0]
        bad = _update_from_users_into(
            self.stat, self.back, self.bins, self.coarse, self.ticks_per_coarse, self.last_tick, new_users,
            acc, int(channel), int(half_life), float(lam), float(dt_s), float(norm), float(floor),
            float(cycle), self._log_rho, self._rho_m1, int(now_ms) // self.tick_ms, self.tick_ms / 1000.0,
            np.empty(n, np.int64), np.empty(SORT_STACK, np.int64), np.empty(n, np.int64),
            np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64),
        )  # fmt: skip
        if bad == 1:
            check_range("slots", new_users, 0, min(self.capacity, acc.shape[0]))
        if bad == 2:
            msg = "mu must be finite and > 0 (a baseline rate per second); floor it before the call"
            raise ValueError(msg)

    def read(
        self, slots: NDArray[np.int64], mu: NDArray[np.float64], *, now_ms: int
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """Statistics, change points and recent counts of ``slots`` at ``now_ms``; changes nothing.

        Returns statistics float64[m, n_lifts], change points int64[m, n_lifts] (ms), and the
        last ``n_bins`` ticks' new-user counts float64[m, n_bins] (oldest first, the tick ending
        at ``now_ms`` last) and the coarse ring float64[m, n_coarse] (oldest first, the bin holding
        the tick that ends at ``now_ms`` last, partial until its last tick).
        """
        slots, mu, _ = self._check(slots, mu, now_ms)
        m, g = slots.shape[0], len(self.lifts)
        stat, zero = np.empty((m, g), np.float64), np.empty((m, g), np.int64)
        bins = np.empty((m, self.n_bins), np.float64)
        coarse = np.empty((m, self.coarse.shape[1]), np.float64)
        _read(
            self.stat, self.back, self.bins, self.coarse, self.ticks_per_coarse, self.last_tick, slots, mu,
            self._rho_m1, int(now_ms) // self.tick_ms, self.tick_ms / 1000.0, stat, zero, bins, coarse,
        )  # fmt: skip
        return stat, zero * self.tick_ms, bins, coarse

    def to_arrays(self, *, copy: bool = True) -> dict[str, NDArray[np.generic]]:
        """Plain arrays for a checkpoint (copies; ``copy=False``: views)."""
        return {k: v.copy() if copy else v.view() for k, v in self._arrays().items()}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, NDArray[np.generic]], *, lifts: Sequence[float], tick_ms: int, n_bins: int,
        ticks_per_coarse: int = 6, n_coarse: int = 24,
    ) -> ChangeDetector:  # fmt: skip
        """Rebuild from :meth:`to_arrays` output; CheckpointError if the shapes do not fit."""
        try:
            cap = int(np.asarray(arrays["last_tick"]).shape[0])
            d = cls(
                lifts=lifts, tick_ms=tick_ms, n_bins=n_bins, capacity=max(cap, 1),
                ticks_per_coarse=ticks_per_coarse, n_coarse=n_coarse,
            )  # fmt: skip
            for name, want in d._arrays().items():
                got = np.asarray(arrays[name])
                if got.shape != (cap, *want.shape[1:]) or got.dtype != want.dtype:
                    shape = (cap, *want.shape[1:])
                    msg = f"detector array {name}: expected {want.dtype}{shape}, got {got.dtype}{got.shape}"
                    raise CheckpointError(msg)
                setattr(d, name, owned(got, got.dtype))
        except KeyError as exc:
            msg = f"detector checkpoint lacks array {exc}"
            raise CheckpointError(msg) from exc
        return d


def alarm_threshold(false_alarms_per_day: float, tick_s: float, n_lifts: int) -> float:
    """CUSUM threshold ``h`` for a false-alarm budget per day per 100k products.

    Lorden's bound gives a mean run length of at least ``e**h`` ticks between false alarms of one
    CUSUM; with ``86400 / tick_s`` ticks a day, 100k products and a union bound over the lifts,
    ``h = ln(ticks_per_day * 1e5 * n_lifts / budget)``.

    >>> round(alarm_threshold(1.0, 10.0, 4), 2)
    21.96
    """
    return math.log((86_400.0 / tick_s) * 1e5 * n_lifts / false_alarms_per_day)
