"""Which touched products could matter at a tick: a cheap, conservative screen before the exact features.

At a tick the engine scores the products touched since the last one.  Under the rule scorer
almost all of them are *quiet*: their score is below every board threshold and their change
evidence below the sketching level, so the exact path (:class:`~viraltrend.scoring.FeatureReader`,
the detector's columns, the score, the board) decides nothing for them.  This kernel computes, per
product, the rule score (``lift`` and ``z`` of the trend window against the baseline, as
:class:`~viraltrend.scoring.RuleScorer` does) and an upper bound of the change evidence (the
largest CUSUM statistic as stored: a read at a later tick only lowers it), and keeps a product
unless both lie *below* their limits by a margin.  The margin (``1e-9``) is far wider than the
rounding by which a fused loop can differ from numpy's vectorised formulas (a few ulps), so a
product the screen drops is one the exact path would have found quiet too; a NaN keeps it.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels._checks import check_range, column
from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.columns import SORT_STACK, _unique_counts_into
from viraltrend.kernels.cusum import ChangeDetector, _update_from_users_into
from viraltrend.kernels.decay import (
    DecayedCounters,
    _exp,
    _global_figures_into,
    _scaled,
    _scaled_by,
)

__all__ = [
    "EVICT_SLACK",
    "EVIDENCE",
    "MARGIN",
    "SCORE",
    "Screen",
    "TickBaseline",
    "evict_horizon",
    "evict_looked",
    "may_matter",
]

#: How far below its limit a quiet product's score and evidence must lie.
MARGIN: Final = 1e-9
#: Bits of :func:`may_matter`'s answer: the score may reach its limit; the evidence may reach its.
SCORE: Final = 1
EVIDENCE: Final = 2


@njit(cache=True)
def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * min(max(x, -60.0), 60.0)))


@no_refcounts
def _may_matter(
    acc: NDArray[np.float64], global_acc: NDArray[np.float64], lam: NDArray[np.float64], dt_s: float,
    slots: NDArray[np.int64], w: NDArray[np.float64], observed_s: float, n_products: int,
    i_trend: int, i_base: int, min_baseline_h: float, global_factor: float,
    lift_mid: float, lift_k: float, z_mid: float, z_k: float,
    stat: NDArray[np.float32], h: float, score_below: float, evidence_below: float,
    out: NDArray[np.int8],
) -> None:  # fmt: skip
    """``out[j]``: 1 if ``slots[j]`` may have score >= ``score_below``, + 2 if evidence >= ``evidence_below``.

    ``acc`` float64[capacity, n_types, n_hl] and ``global_acc`` float64[n_types, n_hl]
    (forward-decay accumulators, read at ``dt_s`` past the landmark), ``lam`` float64[n_hl],
    ``w`` float64[n_types], ``stat`` float32[capacity, n_lifts] (CUSUM statistics), ``slots``
    int64[m], ``out`` int8[m].  The rates' bias correction for a stream observed ``observed_s``
    seconds and the baseline floor (``min_baseline_h``, ``global_factor`` x the catalogue's
    rate per product) follow :meth:`~viraltrend.scoring.FeatureReader.read`.
    """
    seen = max(observed_s, 1.0)
    norm_t = lam[i_trend] / -math.expm1(-lam[i_trend] * seen)
    norm_b = lam[i_base] / -math.expm1(-lam[i_base] * seen)
    glob = 0.0
    for k in range(global_acc.shape[0]):
        glob += _scaled(global_acc[k, i_base], -lam[i_base] * dt_s) * w[k]
    prior_h = global_factor * glob * norm_b * 3600.0 / max(n_products, 1)
    floor_h = max(min_baseline_h, prior_h)
    log_mid = math.log(lift_mid)
    x_t, x_b = -lam[i_trend] * dt_s, -lam[i_base] * dt_s
    f_t, f_b = _exp(x_t), _exp(x_b)
    for j in range(slots.shape[0]):
        p = slots[j]
        eng_t = 0.0
        ev_t = 0.0
        eng_b = 0.0
        ev_b = 0.0
        for k in range(acc.shape[1]):
            ct = _scaled_by(acc[p, k, i_trend], f_t, x_t)
            cb = _scaled_by(acc[p, k, i_base], f_b, x_b)
            eng_t += ct * w[k]
            ev_t += ct
            eng_b += cb * w[k]
            ev_b += cb
        rate_t = eng_t * norm_t * 3600.0
        baseline = max(eng_b * norm_b * 3600.0, floor_h)
        per_weight = ev_b / max(eng_b, 1e-300) if eng_b > 0 else 1.0
        expected = baseline * per_weight / 3600.0 / norm_t
        z = (ev_t - expected) / math.sqrt(expected + 1.0)
        lift = rate_t / baseline
        score = _sigmoid(lift_k * (math.log(max(lift, 1e-12)) - log_mid)) * _sigmoid(z_k * (z - z_mid))
        top = 0.0
        for g in range(stat.shape[1]):
            top = max(top, float(stat[p, g]))
        out[j] = (0 if score < score_below else 1) + (0 if top / h < evidence_below else 2)


def may_matter(
    acc: NDArray[np.float64],
    global_acc: NDArray[np.float64],
    lam: NDArray[np.float64],
    dt_s: float,
    slots: NDArray[np.int64],
    *,
    type_weights: NDArray[np.float64],
    observed_s: float,
    n_products: int,
    i_trend: int,
    i_base: int,
    min_baseline_per_hour: float,
    global_baseline_factor: float,
    lift_midpoint: float,
    lift_steepness: float,
    z_midpoint: float,
    z_steepness: float,
    stat: NDArray[np.float32],
    h: float,
    score_limit: float,
    evidence_limit: float,
) -> NDArray[np.int8]:
    """Int8[m]: per slot, bit :data:`SCORE` or :data:`EVIDENCE` if either may reach its limit.

    :data:`SCORE` if the rule score may reach ``score_limit``, plus :data:`EVIDENCE` if the change
    evidence may reach ``evidence_limit``; 0 for a quiet product.  See the module docstring; both
    limits are lowered by :data:`MARGIN` (a product within it counts).  A NaN score or evidence
    counts as reaching its limit.
    """
    slots = column("slots", slots, np.int64, None, "")
    check_range("slots", slots, 0, min(acc.shape[0], stat.shape[0]))
    out = np.empty(slots.shape[0], np.int8)
    _may_matter(
        acc, global_acc, lam, float(dt_s), slots, type_weights, float(observed_s), int(n_products),
        int(i_trend), int(i_base), float(min_baseline_per_hour), float(global_baseline_factor),
        float(lift_midpoint), float(lift_steepness), float(z_midpoint), float(z_steepness),
        stat, float(h), float(score_limit) - MARGIN, float(evidence_limit) - MARGIN, out,
    )  # fmt: skip
    return out


@njit(cache=True)
def _tick_prelude(
    g_acc: NDArray[np.float64], lam: NDArray[np.float64], dt_s: float, t_g_acc: NDArray[np.float64],
    t_acc: NDArray[np.float64], t_lam: NDArray[np.float64], t_dt_s: float, channel: int, half_life: int,
    i_hour: int, i_base: int, norm_hour: float, norm_base: float, cycle_on: bool, n_live: int,
    prior_factor: float, floor_min: float, clip_lo: float, clip_hi: float,
    new_users: NDArray[np.int64], stat: NDArray[np.float32], back: NDArray[np.int32], bins: NDArray[np.uint8],
    coarse: NDArray[np.uint16], per_coarse: int, last_tick: NDArray[np.int64], log_rho: NDArray[np.float64],
    rho_m1: NDArray[np.float64], tick: int, tick_s: float,
    acc: NDArray[np.float64], touched: NDArray[np.int64], w: NDArray[np.float64], observed_s: float,
    i_trend: int, i_base_s: int, min_baseline_h: float, global_factor: float, lift_mid: float, lift_k: float,
    z_mid: float, z_k: float, h: float, score_below: float, evidence_below: float, bound: int,
) -> tuple[int, float, float, bool, NDArray[np.int64], NDArray[np.int64], bool]:  # fmt: skip
    """:func:`tick_prelude` in one call: (update code, floor, cycle, screened, touched, kept, may score).

    :func:`_tick_prelude_into` with scratch of its own (``Screen.tick``'s Python path; the compiled
    tick loop keeps its scratch across ticks).
    """
    n = max(new_users.shape[0], touched.shape[0])
    uniq, kept = np.empty(n, np.int64), np.empty(n, np.int64)
    code, floor, cycle, ok, m, n_kept, may_score = _tick_prelude_into(
        g_acc, lam, dt_s, t_g_acc, t_acc, t_lam, t_dt_s, channel, half_life, i_hour, i_base, norm_hour,
        norm_base, cycle_on, n_live, prior_factor, floor_min, clip_lo, clip_hi, new_users, stat, back, bins,
        coarse, per_coarse, last_tick, log_rho, rho_m1, tick, tick_s, acc, touched, w, observed_s, i_trend,
        i_base_s, min_baseline_h, global_factor, lift_mid, lift_k, z_mid, z_k, h, score_below, evidence_below,
        bound, np.empty(g_acc.shape[1], np.float64), np.empty(n, np.int64), np.empty(SORT_STACK, np.int64),
        uniq, np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.int8),
        kept,
    )  # fmt: skip
    return code, floor, cycle, ok, uniq[:m].copy(), kept[:n_kept].copy(), may_score


@no_refcounts
def _screen_touched_into(
    acc: NDArray[np.float64], global_acc: NDArray[np.float64], lam: NDArray[np.float64], dt_s: float,
    touched: NDArray[np.int64], w: NDArray[np.float64], observed_s: float, n_products: int,
    i_trend: int, i_base: int, min_baseline_h: float, global_factor: float,
    lift_mid: float, lift_k: float, z_mid: float, z_k: float,
    stat: NDArray[np.float32], h: float, score_below: float, evidence_below: float, bound: int,
    buf: NDArray[np.int64], stack: NDArray[np.int64], uniq: NDArray[np.int64], counts: NDArray[np.int64],
    out: NDArray[np.int8], kept: NDArray[np.int64],
) -> tuple[bool, int, int, bool]:  # fmt: skip
    """:meth:`Screen.touched` into scratch (as long as ``touched`` at least): ``(ok, m, n_kept, may_score)``.

    ``uniq[:m]`` holds the distinct touched slots, ``kept[:n_kept]`` those that may matter; not ok
    (nothing screened, none kept) if a slot is outside ``[0, bound)``.  No reference counts, no
    allocation.
    """
    m = _unique_counts_into(touched, buf, stack, uniq, counts)
    if m and (uniq[0] < 0 or uniq[m - 1] >= bound):
        return False, m, 0, False
    _may_matter(
        acc, global_acc, lam, dt_s, uniq[:m], w, observed_s, n_products, i_trend, i_base, min_baseline_h,
        global_factor, lift_mid, lift_k, z_mid, z_k, stat, h, score_below, evidence_below, out[:m],
    )  # fmt: skip
    n_kept = 0
    may_score = False
    for j in range(m):
        if out[j] != 0:
            kept[n_kept] = uniq[j]
            n_kept += 1
        if out[j] & SCORE:
            may_score = True
    return True, m, n_kept, may_score


@no_refcounts
def _tick_prelude_into(
    g_acc: NDArray[np.float64], lam: NDArray[np.float64], dt_s: float, t_g_acc: NDArray[np.float64],
    t_acc: NDArray[np.float64], t_lam: NDArray[np.float64], t_dt_s: float, channel: int, half_life: int,
    i_hour: int, i_base: int, norm_hour: float, norm_base: float, cycle_on: bool, n_live: int,
    prior_factor: float, floor_min: float, clip_lo: float, clip_hi: float,
    new_users: NDArray[np.int64], stat: NDArray[np.float32], back: NDArray[np.int32], bins: NDArray[np.uint8],
    coarse: NDArray[np.uint16], per_coarse: int, last_tick: NDArray[np.int64], log_rho: NDArray[np.float64],
    rho_m1: NDArray[np.float64], tick: int, tick_s: float,
    acc: NDArray[np.float64], touched: NDArray[np.int64], w: NDArray[np.float64], observed_s: float,
    i_trend: int, i_base_s: int, min_baseline_h: float, global_factor: float, lift_mid: float, lift_k: float,
    z_mid: float, z_k: float, h: float, score_below: float, evidence_below: float, bound: int,
    g: NDArray[np.float64], buf: NDArray[np.int64], stack: NDArray[np.int64], uniq: NDArray[np.int64],
    counts: NDArray[np.int64], x: NDArray[np.float64], mu: NDArray[np.float64], out: NDArray[np.int8],
    kept: NDArray[np.int64],
) -> tuple[int, float, float, bool, int, int, bool]:  # fmt: skip
    """:func:`_tick_prelude` into scratch: ``(code, floor, cycle, ok, m, n_kept, may_score)``.

    The same steps in the same order, without reference counts or allocations (the compiled tick
    loop runs it at every tick with events): ``g`` float64[n_hl]; ``buf``, ``uniq``, ``counts``,
    ``x``, ``mu``, ``out``, ``kept`` at least as long as ``new_users`` and ``touched``; ``stack``
    ``columns.SORT_STACK`` entries.  ``uniq[:m]``/``kept[:n_kept]``: ``_tick_prelude``'s ``uniq``/``kept``
    when the code is 0 (``m`` = ``n_kept`` = 0 otherwise).
    """
    users = _global_figures_into(g_acc, lam, dt_s, t_g_acc, t_lam, t_dt_s, channel, half_life, g)
    cycle = 1.0
    if cycle_on:
        rate_1h, rate_24h = g[i_hour] * norm_hour, g[i_base] * norm_base
        if not (rate_24h <= 0.0) and math.isfinite(rate_1h / rate_24h):
            cycle = rate_1h / rate_24h
            cycle = clip_lo if clip_lo > cycle else cycle  # min(max(r, lo), hi) as Python takes them
            cycle = clip_hi if clip_hi < cycle else cycle
    prior = prior_factor * users * norm_base / max(n_live, 1)
    floor = floor_min if floor_min > prior else prior  # max(prior, floor_min)
    if new_users.shape[0]:  # the change detector's update_from_users
        code = _update_from_users_into(
            stat, back, bins, coarse, per_coarse, last_tick, new_users, t_acc, channel, half_life,
            t_lam[half_life], t_dt_s, norm_base, floor, cycle, log_rho, rho_m1, tick, tick_s,
            buf, stack, uniq, counts, x, mu,
        )  # fmt: skip
        if code:
            return code, floor, cycle, False, 0, 0, False
    ok, m, n_kept, may_score = _screen_touched_into(
        acc, g_acc, lam, dt_s, touched, w, observed_s, n_live, i_trend, i_base_s, min_baseline_h,
        global_factor, lift_mid, lift_k, z_mid, z_k, stat, h, score_below, evidence_below, bound,
        buf, stack, uniq, counts, out, kept,
    )  # fmt: skip
    return 0, floor, cycle, ok, m, n_kept, may_score


#: How far above the eviction limit a product's value must lie for :func:`evict_horizon` to vouch for it.
EVICT_SLACK: Final = 1e-6


@njit(cache=True)
def _evict_horizon(
    acc: NDArray[np.float64], slots: NDArray[np.int64], lam: float, dt_s: float, h: int,
    w: NDArray[np.float64], limit: float, now_ms: int, out: NDArray[np.int64],
) -> None:  # fmt: skip
    """``out[j]``: a time (ms) before which ``slots[j]``'s weighted decayed count stays above ``limit``."""
    x = -lam * dt_s
    f = _exp(x)
    bar = limit * (1.0 + EVICT_SLACK)
    for j in range(slots.shape[0]):
        p = slots[j]
        total = 0.0
        for k in range(acc.shape[1]):
            total += _scaled_by(acc[p, k, h], f, x) * w[k]
        out[j] = now_ms
        if total > bar and total < math.inf:  # NaN, or near the limit: no promise
            ahead_ms = math.floor(math.log(total / bar) / lam * 1000.0 * (1.0 - EVICT_SLACK))
            if ahead_ms > 0:
                out[j] = now_ms + min(ahead_ms, 2**53)


@njit(cache=True)
def _evict_looked(
    last_ts_ms: NDArray[np.int64],
    never: np.int64,
    n: np.int64,
    after_s: NDArray[np.int32],
    elapsed_s: np.int64,
) -> tuple[int, NDArray[np.int64]]:
    """``(len(live), live[after_s[live] <= elapsed_s])``, ``live`` the slots ``< n`` with an event."""
    out = np.empty(n, np.int64)
    n_live = 0
    m = 0
    for s in range(n):
        if last_ts_ms[s] != never:
            n_live += 1
            if np.int64(after_s[s]) <= elapsed_s:
                out[m] = s
                m += 1
    return n_live, out[:m]


def evict_looked(
    last_ts_ms: NDArray[np.int64], never: int, n: int, after_s: NDArray[np.int32], elapsed_s: int
) -> tuple[int, NDArray[np.int64]]:
    """The eviction sweep's live products and those past their promise, in one pass.

    Returns the number of slots ``s < n`` with ``last_ts_ms[s] != never`` (live) and, ascending,
    those of them with ``after_s[s] <= elapsed_s`` (int32 promises in seconds, compared exactly):
    ``np.flatnonzero(last_ts_ms[:n] != never)`` and its filter, without the two temporaries.
    """
    last_ts_ms = column("last_ts_ms", last_ts_ms, np.int64, None, "")
    after_s = column("after_s", after_s, np.int32, None, "")
    if not 0 <= n <= min(last_ts_ms.shape[0], after_s.shape[0]):
        msg = f"n must be in [0, {min(last_ts_ms.shape[0], after_s.shape[0])}], got {n}"
        raise ValueError(msg)
    n_live, looked = _evict_looked(last_ts_ms, np.int64(never), np.int64(n), after_s, np.int64(elapsed_s))
    return int(n_live), looked


def evict_horizon(
    acc: NDArray[np.float64],
    slots: NDArray[np.int64],
    *,
    lam: float,
    dt_s: float,
    half_life: int,
    weights: NDArray[np.float64],
    limit: float,
    now_ms: int,
) -> NDArray[np.int64]:
    """Int64[m]: per slot, a time before which its count at ``half_life`` cannot fall below ``limit``.

    ``acc`` float64[capacity, n_types, n_hl] forward-decay accumulators read at ``dt_s`` seconds
    past their landmark with rate ``lam > 0`` (that of ``half_life``), ``weights`` float64[n_types]
    all ``>= 0`` and ``limit > 0``.  Without events a product's count decays as ``exp(-lam t)``;
    events (of weight ``>= 0``) only add to it.  So a count ``v > limit (1 + EVICT_SLACK)`` now stays
    above ``limit (1 + EVICT_SLACK)`` for ``ln(v / (limit (1 + EVICT_SLACK))) / lam`` seconds (taken
    shorter by the same relative slack, far wider than the rounding of any read of it, a landmark
    move's included): the engine's eviction sweep need not look at it before.  ``now_ms`` where
    there is no such promise (the count near or below the limit, or not finite).
    """
    if not (lam > 0.0 and limit > 0.0 and bool((np.asarray(weights) >= 0.0).all())):
        msg = "evict_horizon needs lam > 0, limit > 0 and weights >= 0"
        raise ValueError(msg)
    slots = column("slots", slots, np.int64, None, "")
    check_range("slots", slots, 0, acc.shape[0])
    out = np.empty(slots.shape[0], np.int64)
    _evict_horizon(
        acc, slots, float(lam), float(dt_s), int(half_life), np.ascontiguousarray(weights, np.float64),
        float(limit), int(now_ms), out,
    )  # fmt: skip
    return out


class TickBaseline:
    """The fixed arguments of the detector's baseline at ticks (the engine's ``_TickBaseline.params``).

    ``i_hour``/``lam_hour``: index and ``ln 2 / 3600`` of the 1-hour half-life (``i_hour`` -1:
    none, no daily-cycle factor); ``i_base``/``lam_base``: of the baseline half-life;
    ``prior_factor`` and ``floor_min`` (per second) of ``SequentialDetector.baseline_floor``;
    ``clip`` the daily-cycle factor's bounds.
    """

    def __init__(
        self, *, i_hour: int, lam_hour: float, i_base: int, lam_base: float, prior_factor: float,
        floor_min: float, clip: tuple[float, float],
    ) -> None:  # fmt: skip
        self.i_hour, self.lam_hour, self.i_base, self.lam_base = int(i_hour), lam_hour, int(i_base), lam_base
        self.prior_factor, self.floor_min, self.clip = float(prior_factor), float(floor_min), clip

    def norms(self, seen_s: float) -> tuple[float, float]:
        """``lam / -expm1(-lam * seen_s)`` of the 1-hour and the baseline half-life: rates from counts."""
        return (
            self.lam_hour / -math.expm1(-self.lam_hour * seen_s),
            self.lam_base / -math.expm1(-self.lam_base * seen_s),
        )


class Screen:
    """:func:`may_matter` with the arguments that never change prepared once (the engine's ticks).

    ``FeatureReader.screen`` rebuilt them (weights array, half-life indices, conversions) and
    checked them at every tick; the result is the same kernel on the same values.
    """

    def __init__(
        self,
        *,
        type_weights: NDArray[np.float64],
        i_trend: int,
        i_base: int,
        min_baseline_per_hour: float,
        global_baseline_factor: float,
        lift_midpoint: float,
        lift_steepness: float,
        z_midpoint: float,
        z_steepness: float,
        h: float,
        score_limit: float,
        evidence_limit: float,
    ) -> None:
        self._w = np.ascontiguousarray(type_weights, np.float64)
        self._fixed = (
            int(i_trend), int(i_base), float(min_baseline_per_hour), float(global_baseline_factor),
            float(lift_midpoint), float(lift_steepness), float(z_midpoint), float(z_steepness),
        )  # fmt: skip
        self._h = float(h)
        self._limits = (float(score_limit) - MARGIN, float(evidence_limit) - MARGIN)

    def __call__(
        self,
        acc: NDArray[np.float64],
        global_acc: NDArray[np.float64],
        lam: NDArray[np.float64],
        dt_s: float,
        slots: NDArray[np.int64],
        *,
        observed_s: float,
        n_products: int,
        stat: NDArray[np.float32],
    ) -> NDArray[np.int8]:
        """Int8[m] as :func:`may_matter` returns it for these arguments."""
        if slots.dtype != np.int64 or slots.ndim != 1:
            slots = column("slots", slots, np.int64, None, "")
        slots = np.ascontiguousarray(slots)
        check_range("slots", slots, 0, min(acc.shape[0], stat.shape[0]))
        out = np.empty(slots.shape[0], np.int8)
        _may_matter(
            acc, global_acc, lam, float(dt_s), slots, self._w, float(observed_s), int(n_products),
            *self._fixed, stat, self._h, *self._limits, out,
        )  # fmt: skip
        return out

    def touched(
        self,
        acc: NDArray[np.float64],
        global_acc: NDArray[np.float64],
        lam: NDArray[np.float64],
        dt_s: float,
        parts: list[NDArray[np.int64]],
        *,
        observed_s: float,
        n_products: int,
        stat: NDArray[np.float32],
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], bool]:
        """A tick's touched products screened, in one compiled call (the engine's ticks).

        ``parts`` holds the slots applied since the last tick (int64 arrays, repeats allowed).
        Returns ``touched`` (their distinct values, sorted: ``unique_counts(parts)[0]``), the
        touched products that may matter (``touched[why != 0]`` for ``why = self(..., touched,
        ...)``) and whether any may score (``(why & SCORE).any()``), exactly.
        """
        a = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, np.int64)
        a = column("values", a, np.int64, None, "")
        bound = min(acc.shape[0], stat.shape[0])
        n = a.shape[0]
        uniq, kept = np.empty(n, np.int64), np.empty(n, np.int64)
        ok, m, n_kept, may_score = _screen_touched_into(
            acc, global_acc, lam, float(dt_s), a, self._w, float(observed_s), int(n_products),
            *self._fixed, stat, self._h, *self._limits, bound, np.empty(n, np.int64),
            np.empty(SORT_STACK, np.int64), uniq, np.empty(n, np.int64), np.empty(n, np.int8), kept,
        )  # fmt: skip
        if not ok:  # a slot out of range: the checks of __call__ raise
            check_range("slots", uniq[:m], 0, bound)
        return uniq[:m].copy(), kept[:n_kept].copy(), bool(may_score)

    def tick(
        self,
        counters: DecayedCounters,
        trust: DecayedCounters,
        cusum: ChangeDetector,
        base: TickBaseline,
        now_ms: int,
        *,
        start_ms: int | None,
        n_live: int,
        new_users: NDArray[np.int64],
        parts: list[NDArray[np.int64]],
    ) -> tuple[tuple[float, float, float], NDArray[np.int64], NDArray[np.int64], bool]:
        """The numeric start of a tick (the engine's), in one compiled call.

        Exactly, in this order: the baseline's ``(norm, floor, cycle)`` (the engine's
        ``_TickBaseline.params``: ``global_figures`` of both counters at ``now_ms``, trust channel 0
        at half-life 1, then ``SequentialDetector.cycle_factor`` and ``baseline_floor``), then
        ``cusum.update_from_users(new_users, trust.acc, channel=0, half_life=1, ...)`` with them if
        ``new_users`` is not empty, then :meth:`touched` of ``parts`` (``counters`` at ``now_ms``,
        ``observed_s`` since ``start_ms``, ``n_live`` products).  Returns the baseline's
        figures and what :meth:`touched` returns.  Raises as the steps would (nothing changed).
        """
        new_users = column("new_users", new_users, np.int64, None, "")
        if now_ms % cusum.tick_ms:
            msg = f"now_ms must be a multiple of tick_ms={cusum.tick_ms}, got {now_ms}"
            raise ValueError(msg)
        if trust.n_types < 1 or trust.global_acc.shape[1] < 2:
            msg = "channel 0 or half_life 1 outside the trust counters"
            raise ValueError(msg)
        a = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, np.int64)
        a = column("values", a, np.int64, None, "")
        seen = max((now_ms - start_ms) / 1000.0 if start_ms is not None else 0.0, 1.0)
        norm_hour, norm_base = base.norms(seen)
        dt_s, t_dt_s = counters.dt_s(now_ms), trust.dt_s(now_ms)
        stat = cusum.stat
        bound = min(counters.acc.shape[0], stat.shape[0])
        code, floor, cycle, ok, uniq, kept, may_score = _tick_prelude(
            counters.global_acc, counters.lam, dt_s, trust.global_acc, trust.acc, trust.lam, t_dt_s, 0, 1,
            base.i_hour, base.i_base, norm_hour, norm_base, base.i_hour >= 0 and start_ms is not None,
            int(n_live), base.prior_factor, base.floor_min, base.clip[0], base.clip[1],
            new_users, stat, cusum.back, cusum.bins, cusum.coarse, cusum.ticks_per_coarse, cusum.last_tick,
            cusum._log_rho, cusum._rho_m1, int(now_ms) // cusum.tick_ms, cusum.tick_ms / 1000.0,  # noqa: SLF001
            counters.acc, a, self._w, (now_ms - start_ms) / 1000.0 if start_ms is not None else 0.0,
            *self._fixed, self._h, *self._limits, bound,
        )  # fmt: skip
        if code:  # nothing changed: the step raises its own error
            cusum.update_from_users(
                new_users, trust.acc, channel=0, half_life=1, lam=float(trust.lam[1]), dt_s=t_dt_s,
                norm=norm_base, floor=floor, cycle=cycle, now_ms=now_ms,
            )  # fmt: skip
        if not ok:
            check_range("slots", uniq, 0, bound)
        return (norm_base, floor, cycle), uniq, kept, bool(may_score)
