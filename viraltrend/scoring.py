"""Features of candidate products, and the rule-based trending score.

Features are read from the decayed counters for candidates only (products whose signal
moved, plus the board and pending products), as numpy columns: rates per half-life, lift
over the product's own long baseline (floored by a global per-product prior, so a brand-new
product is judged against the catalogue), velocity (trend rate against the next longer
one), momentum (the shortest rate against the trend rate: below 1 when a burst is fading),
acceleration, and a Poisson significance ``z`` of the trend-window count against the
baseline, so a niche product jumping from 2 to 200 views and a big one going from 20k to
200k both stand out.

:class:`RuleScorer` turns them into a score in [0, 1]; the online model replaces it
through the same ``score_many(features) -> float64[m]`` interface.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.config import Config, ScoreConfig
from viraltrend.events import EVENT_TYPE_CODE
from viraltrend.kernels.prefilter import may_matter

__all__ = ["FeatureReader", "RuleScorer", "half_life_label", "share_ratio"]

Columns = dict[str, NDArray[np.float64]]
#: ``share_ratio`` of every product while the catalogue has no shares at all: no evidence either way.
NO_SHARES = 1e9


def half_life_label(half_life_s: float) -> str:
    """Short label for a half-life: ``300 -> '5m'``, ``86400 -> '24h'``, ``45 -> '45s'``.

    >>> [half_life_label(s) for s in (45, 60, 300, 3600, 86400, 5400)]
    ['45s', '1m', '5m', '1h', '24h', '90m']
    """
    s = float(half_life_s)
    if s >= 3600 and s % 3600 == 0:
        return f"{int(s // 3600)}h"
    if s >= 60 and s % 60 == 0:
        return f"{int(s // 60)}m"
    return f"{s:g}s"


@dataclass(frozen=True, slots=True)
class FeatureReader:
    """Turns decayed counts of candidates into named feature columns.

    Parameters
    ----------
    half_lives_s
        The counters' half-lives, increasing.
    type_weights
        Weight of each event type in the engagement signal (``EVENT_TYPES`` order).
    score
        Which half-lives play the momentum, trend and baseline roles, and the baseline floor.
    """

    half_lives_s: tuple[float, ...]
    type_weights: tuple[float, ...]
    score: ScoreConfig

    @classmethod
    def from_config(cls, cfg: Config) -> FeatureReader:
        """Build from the full config."""
        return cls(cfg.decay.half_lives_s, cfg.signals.weights(), cfg.score)

    def _index(self, half_life_s: float) -> int:
        return self.half_lives_s.index(half_life_s)

    def read(
        self,
        counts: NDArray[np.float64],
        global_counts: NDArray[np.float64],
        n_products: int,
        age_s: NDArray[np.float64],
        observed_s: float = math.inf,
        trust: NDArray[np.float64] | None = None,
        fast: bool = False,
    ) -> Columns:
        """Return feature columns for ``m`` candidates.

        Parameters
        ----------
        counts : float64[m, n_types, n_half_lives]
            Decayed event counts of the candidates at the evaluation time.
        global_counts : float64[n_types, n_half_lives]
            Decayed event counts of all products together.
        n_products : int
            Products tracked, for the global per-product prior.
        age_s : float64[m]
            Seconds since each candidate's first event.
        observed_s : float
            Seconds of event time the stream has been observed.  A decayed count over a
            window shorter than its half-life underestimates the rate; rates are divided by
            ``(1 - exp(-lam * observed_s)) / lam`` instead of ``1 / lam`` (bias correction), so
            the first minutes of a stream do not make every product look like it is trending.
        trust : float64[m, 3], optional
            Decayed counts at the trend half-life of new (user, product) pairs, events from
            fresh accounts, and raw (uncapped) events; adds the trust features.
        fast : bool
            Also add ``lift_<m>`` and ``z_<m>`` for the momentum half-life ``m`` (e.g. ``lift_1m``):
            the same lift and Poisson significance on the freshest window, which react to an
            onset before the trend window's do (features of the online model).
        """
        lam = math.log(2.0) / np.asarray(self.half_lives_s)
        w = np.asarray(self.type_weights)
        eng = np.einsum("mkh,k->mh", counts, w)  # weighted engagement, decayed count
        events = counts.sum(axis=1)  # unweighted event counts
        seen = max(observed_s, 1.0)
        norm = lam / -np.expm1(-lam * seen)  # -> lam once seen >> half-life
        cfg = self.score
        i_mom, i_trend, i_base = (
            self._index(cfg.momentum_half_life_s),
            self._index(cfg.trend_half_life_s),
            self._index(cfg.baseline_half_life_s),
        )
        i_mid = min(i_trend + 1, i_base)
        floor_h = cfg.min_baseline_per_hour
        prior_h = cfg.global_baseline_factor * float(global_counts[:, i_base] @ w) * norm[i_base] * 3600.0
        prior_h /= max(n_products, 1)
        g = global_counts[:, i_base]
        view, share, cart, buy = (EVENT_TYPE_CODE[n] for n in ("view", "share", "add_to_cart", "purchase"))
        global_conv = (g[cart] + g[buy]) / max(float(g[view]), 1.0)
        global_share = float(g[share]) / max(float(g[view]), 1.0)  # share_ratio's catalogue
        n_h = len(self.half_lives_s)
        out = np.empty((n_h + 9 + 2 * fast + 5 * (trust is not None), counts.shape[0]))
        _read_columns(  # every column below from eng, events and counts, one compiled pass (numpy's bits)
            np.ascontiguousarray(eng, np.float64), np.ascontiguousarray(events, np.float64),
            np.ascontiguousarray(counts, np.float64),
            np.zeros((0, 3)) if trust is None else np.ascontiguousarray(trust, np.float64),
            np.ascontiguousarray(norm, np.float64), i_trend, i_base, i_mid, i_mom, float(floor_h),
            float(max(floor_h, prior_h)), bool(fast), trust is not None, float(global_conv),
            float(max(global_conv, 1e-9)), global_share, view, share, cart, buy, out,
        )  # fmt: skip
        cols: Columns = {}
        for h, hl in enumerate(self.half_lives_s):
            cols[f"rate_{half_life_label(hl)}_per_h"] = out[h]
        trend = half_life_label(self.half_lives_s[i_trend])
        for name in ("view", "like", "share", "add_to_cart", "purchase"):
            cols[f"{name}s_{trend}"] = counts[:, EVENT_TYPE_CODE[name], i_trend]
        names = [
            "baseline_per_h",
            "lift",
            "velocity",
            "momentum",
            "acceleration",
            "z",
            "share_rate",
            "cart_rate",
        ]
        for k, name in enumerate((*names, "purchase_rate"), start=n_h):
            cols[name] = out[k]
        cols["age_s"] = np.asarray(age_s, np.float64)
        k = n_h + 9
        if fast:
            mom = half_life_label(self.half_lives_s[i_mom])
            cols[f"lift_{mom}"], cols[f"z_{mom}"] = out[k], out[k + 1]
            k += 2
        if trust is not None:
            cols["unique_users"] = trust[:, 0]
            trust_names = (
                "events_per_user",
                "fresh_share",
                "conversion_ratio",
                "expected_buys",
                "share_ratio",
            )
            for j, name in enumerate(trust_names):
                cols[name] = out[k + j]
        return cols

    def screen(
        self,
        acc: NDArray[np.float64],
        global_acc: NDArray[np.float64],
        lam: NDArray[np.float64],
        dt_s: float,
        slots: NDArray[np.int64],
        *,
        n_products: int,
        observed_s: float,
        stat: NDArray[np.float32],
        h: float,
        score_limit: float,
        evidence_limit: float,
    ) -> NDArray[np.int8]:
        """Int8[m]: may each slot reach ``score_limit`` (rule score, bit 1) or ``evidence_limit`` (bit 2).

        The rule score of :class:`RuleScorer` over :meth:`read`'s ``lift`` and ``z``, fused in one
        kernel (:mod:`viraltrend.kernels.prefilter`), and the CUSUM statistics ``stat``
        (float32[capacity, n_lifts]) over the alarm threshold ``h`` as the evidence's upper bound.
        ``acc`` (float64[capacity, n_types, n_hl]) and ``global_acc`` (float64[n_types, n_hl]) are
        the counters' accumulators, read at ``dt_s`` seconds past their landmark, ``lam`` their
        decay rates (those of ``half_lives_s``).  A slot with neither bit is quiet: the exact
        features would give it a lower score and evidence.
        """
        cfg = self.score
        return may_matter(
            acc, global_acc, lam, dt_s, slots, type_weights=self._weights, observed_s=observed_s,
            n_products=n_products, i_trend=self._index(cfg.trend_half_life_s),
            i_base=self._index(cfg.baseline_half_life_s), min_baseline_per_hour=cfg.min_baseline_per_hour,
            global_baseline_factor=cfg.global_baseline_factor, lift_midpoint=cfg.lift_midpoint,
            lift_steepness=cfg.lift_steepness, z_midpoint=cfg.z_midpoint, z_steepness=cfg.z_steepness,
            stat=stat, h=h, score_limit=score_limit, evidence_limit=evidence_limit,
        )  # fmt: skip

    @property
    def _weights(self) -> NDArray[np.float64]:
        return np.asarray(self.type_weights, np.float64)


@njit(cache=True)
def _max(a: float, b: float) -> float:
    """As numpy's ``maximum``: NaN if either is NaN."""
    if a != a or b != b:
        return a + b
    return a if a >= b else b


@njit(cache=True)
def _min(a: float, b: float) -> float:
    """As numpy's ``minimum``: NaN if either is NaN."""
    if a != a or b != b:
        return a + b
    return a if a <= b else b


@njit(cache=True, error_model="numpy")
def _read_columns(
    eng: NDArray[np.float64], events: NDArray[np.float64], counts: NDArray[np.float64],
    trust: NDArray[np.float64], norm: NDArray[np.float64], i_trend: int, i_base: int, i_mid: int, i_mom: int,
    floor_h: float, base_floor: float, fast: bool, has_trust: bool, global_conv: float, conv: float,
    global_share: float,
    view: int, share: int, cart: int, buy: int, out: NDArray[np.float64],
) -> None:  # fmt: skip
    """:meth:`FeatureReader.read`'s computed columns into ``out``'s rows (see there for the order).

    Each cell is the numpy form's operations on the same operands in the same order (numpy's
    ``maximum``/``minimum`` keep NaN; ``sqrt`` of a negative is NaN): the same bits.
    """
    m, n_h = eng.shape
    for i in range(m):
        for h in range(n_h):
            out[h, i] = eng[i, h] * norm[h] * 3600.0
        r_trend, r_base, r_mid, r_mom = out[i_trend, i], out[i_base, i], out[i_mid, i], out[i_mom, i]
        baseline = _max(r_base, base_floor)
        e = eng[i, i_base]
        per_weight = events[i, i_base] / _max(e, 1e-300) if e > 0 else 1.0
        base_events = baseline * per_weight
        expected = base_events / 3600.0 / norm[i_trend]
        views, carts = counts[i, view, i_trend], counts[i, cart, i_trend]
        k = n_h
        velocity = r_trend / _max(r_mid, floor_h)
        out[k, i] = baseline
        out[k + 1, i] = r_trend / baseline
        out[k + 2, i] = velocity
        out[k + 3, i] = r_mom / _max(r_trend, 1e-9)
        out[k + 4, i] = velocity - r_mid / _max(baseline, floor_h)
        out[k + 5, i] = (events[i, i_trend] - expected) / np.sqrt(expected + 1.0)
        out[k + 6, i] = counts[i, share, i_trend] / _max(views, 1.0)
        out[k + 7, i] = carts / _max(views, 1.0)
        out[k + 8, i] = counts[i, buy, i_trend] / _max(carts, 1.0)
        k += 9
        if fast:
            expected_mom = base_events / 3600.0 / norm[i_mom]
            out[k, i] = r_mom / baseline
            out[k + 1, i] = (events[i, i_mom] - expected_mom) / np.sqrt(expected_mom + 1.0)
            k += 2
        if has_trust:
            raw = _max(trust[i, 2], 1e-12)
            out[k, i] = trust[i, 2] / _max(trust[i, 0], 1.0)
            out[k + 1, i] = _min(trust[i, 1] / raw, 1.0)
            out[k + 2, i] = (counts[i, cart, i_trend] + counts[i, buy, i_trend]) / _max(views, 1.0) / conv
            out[k + 3, i] = views * global_conv  # the carts and purchases its views would have brought
            if global_share > 0.0:
                out[k + 4, i] = counts[i, share, i_trend] / _max(views, 1.0) / global_share
            else:  # a stream without shares tells nothing
                out[k + 4, i] = NO_SHARES


def events_per_weight(eng: NDArray[np.float64], events: NDArray[np.float64], h: int) -> NDArray[np.float64]:
    """Events per unit of weighted engagement at half-life ``h`` (1 where a product has none yet)."""
    return np.where(eng[:, h] > 0, events[:, h] / np.maximum(eng[:, h], 1e-300), 1.0)


@dataclass(frozen=True, slots=True)
class RuleScorer:
    """Score = sigmoid(lift) x sigmoid(z), high only when a product is far above its baseline.

    Both factors matter: a big relative jump (lift) that is also statistically significant (z).

    Examples
    --------
    >>> from viraltrend.config import ScoreConfig
    >>> s = RuleScorer(ScoreConfig())
    >>> s.score_many({"lift": np.array([1.0, 50.0]), "z": np.array([0.0, 40.0])}).round(2).tolist()
    [0.0, 1.0]
    """

    cfg: ScoreConfig
    name: str = "rule"

    def score_many(self, features: Mapping[str, NDArray[np.float64]]) -> NDArray[np.float64]:
        """Return a score in [0, 1] per candidate (``float64[m]``)."""
        c = self.cfg
        log_lift = np.log(np.maximum(features["lift"], 1e-12))
        a = c.lift_steepness * (log_lift - math.log(c.lift_midpoint))
        b = c.z_steepness * (features["z"] - c.z_midpoint)
        return _sigmoid(a) * _sigmoid(b)


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * np.clip(x, -60.0, 60.0)))


def share_ratio(
    counts: NDArray[np.float64], global_counts: NDArray[np.float64], i: int, i_base: int
) -> NDArray[np.float64] | None:
    """Shares per view at half-life index ``i`` over the catalogue's (at ``i_base``), float64[m].

    None while the catalogue has no shares (no evidence either way).

    >>> c = np.zeros((2, 6, 2)); c[:, 0, 1] = 40.0; c[1, 3, 1] = 2.0  # 40 views; the second 2 shares
    >>> g = np.zeros((6, 2)); g[0, 1], g[3, 1] = 100.0, 1.0  # the catalogue: 1 share per 100 views
    >>> share_ratio(c, g, 1, 1).tolist()
    [0.0, 5.0]
    """
    share, view = EVENT_TYPE_CODE["share"], EVENT_TYPE_CODE["view"]
    g = global_counts[:, i_base]
    global_share = float(g[share]) / max(float(g[view]), 1.0)
    if not global_share > 0.0:
        return None
    return np.asarray(counts[:, share, i] / np.maximum(counts[:, view, i], 1.0) / global_share, np.float64)
