"""When is a product trending?  The sequential change test and the shape of its growth.

Each product's *distinct users* (new (user, product) pairs: a user counts once per
``trust.cap_window_s``, so repeats and bot hammering add nothing) arrive as a Poisson stream.
:class:`SequentialDetector` runs Poisson CUSUMs against the product's own baseline
(:mod:`viraltrend.kernels.cusum`) and reads, for the candidates of a tick:

* ``evidence``: the largest CUSUM statistic over the lift grid divided by the alarm threshold
  ``h`` (``h`` follows from ``detect.false_alarms_per_day``: expected false alarms per day per
  100k products, by Lorden's bound).  ``evidence >= 1`` means the rate has changed;
* ``change_s``: seconds since the change point (the last time that statistic was 0);
* ``growth_z``: since the change point, new users in the newer half of the recent ticks
  against the older half (a conditional binomial z): > 0 accelerating, < 0 fading;
* ``fade_z``: new users of the last 30 s against what the rate since the change predicts;
* ``change_users``: distinct users since the change point (the fine ring while it reaches back to
  it, else the coarse bins from the change point's on: at most the coarse ring's 24 minutes).

A product is **ready** for the board when the evidence suffices (``evidence >= 1``), it has at
least ``trust.min_unique_users`` distinct users in the trend window or ``detect.min_change_users``
since its change point (a slow ramp gathers the second long before the first), it is not fading (neither z
at or below ``-detect.fade_z``), and its growth is either significantly accelerating
(``growth_z >= detect.growth_z``) or has been sustained ``detect.sustain_s`` since the change
point.  A steep ramp is ready within seconds of enough users; a one-off spike jumps and stays
flat or fades, so it must last ``sustain_s`` without fading first; a burst that fades never is.
The sustain path also asks for recruitment: shares per view (the trend window's) at least
``detect.sustain_min_share_ratio`` x the catalogue's (the feature reader's ``share_ratio``).  A
plateau nobody passes on (a livestream, a price drop: a level change) is not a trend however long
it holds, while a cascade's plateau after its creator's seed burst is shared on.  A slow ramp's few
shares come and go from the trend window, so the ratio over ``detect.sustain_share_half_life_s`` (the
1-hour counters) passes the test too when it reaches ``detect.sustain_share_long_ratio``.

The baseline rate ``mu`` (distinct users per second) is the product's own 24-hour rate, floored
by the catalogue's average per product (``detect.prior_factor``) and by
``detect.baseline_floor_users_per_h``, times the daily-cycle factor learned from the stream: the
catalogue's 1-hour rate over its 24-hour rate, so night traffic is not judged as day traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from viraltrend.config import Config
from viraltrend.errors import CheckpointError
from viraltrend.events import EVENT_TYPE_CODE
from viraltrend.kernels.change import COLUMNS, change_array, growth_joint, verdicts
from viraltrend.kernels.change import ready as change_ready
from viraltrend.kernels.cusum import ChangeDetector, alarm_threshold

__all__ = ["SequentialDetector", "engaged_ratio"]

Columns = dict[str, NDArray[np.float64]]
_MuFn = Callable[[NDArray[np.int64]], NDArray[np.float64]]
_FADE_TICKS = 3  # the "last 30 s" of fade_z, in ticks
_CYCLE_CLIP = (0.2, 5.0)


class SequentialDetector:
    """Poisson CUSUMs of distinct-user arrivals per product, and the readiness verdict.

    Parameters
    ----------
    cfg
        The full configuration (``[detect]``, ``decay.tick_s``, ``trust.min_unique_users``).
    capacity
        Initial product slots.
    """

    def __init__(self, cfg: Config, capacity: int) -> None:
        d = cfg.detect
        self.cfg = cfg
        self.tick_ms = round(cfg.decay.tick_s * 1000)
        self.h = alarm_threshold(d.false_alarms_per_day, cfg.decay.tick_s, len(d.lifts))
        self.cusum = ChangeDetector(
            lifts=d.lifts, tick_ms=self.tick_ms, n_bins=d.window_ticks, capacity=capacity,
            ticks_per_coarse=d.ticks_per_slow_bin, n_coarse=d.slow_bins,
        )  # fmt: skip
        self._limits_of: tuple[Config, NDArray[np.float64], NDArray[np.float64]] | None = None

    # ------------------------------------------------------------------ baseline
    def baseline(
        self,
        users_24h: NDArray[np.float64],
        global_users_24h: float,
        n_products: int,
        cycle: float,
        norm_24h: float,
    ) -> NDArray[np.float64]:
        """Baseline distinct users per second, float64[m].

        ``users_24h`` are the candidates' decayed distinct-user counts at the 24-hour half-life,
        ``norm_24h`` the factor that turns a decayed count into a rate per second (bias-corrected
        for the stream's age), ``cycle`` the daily-cycle factor.
        """
        return (
            np.maximum(users_24h * norm_24h, self.baseline_floor(global_users_24h, n_products, norm_24h))
            * cycle
        )

    def baseline_floor(self, global_users_24h: float, n_products: int, norm_24h: float) -> float:
        """The floor of :meth:`baseline` (before the cycle factor): a share of the catalogue's rate."""
        d = self.cfg.detect
        prior = d.prior_factor * global_users_24h * norm_24h / max(n_products, 1)
        return max(prior, d.baseline_floor_users_per_h / 3600.0)

    @staticmethod
    def cycle_factor(rate_1h: float, rate_24h: float) -> float:
        """Daily-cycle factor: the catalogue's rate now (1-hour half-life) over its 24-hour rate.

        >>> SequentialDetector.cycle_factor(50.0, 100.0), SequentialDetector.cycle_factor(0.0, 0.0)
        (0.5, 1.0)
        """
        if rate_24h <= 0.0 or not math.isfinite(rate_1h / rate_24h):
            return 1.0
        return float(min(max(rate_1h / rate_24h, _CYCLE_CLIP[0]), _CYCLE_CLIP[1]))

    # ------------------------------------------------------------------ ticks
    def update(self, now_ms: int, new_user_slots: NDArray[np.int64], mu_of: _MuFn) -> None:
        """Apply the tick ending at ``now_ms``: ``new_user_slots`` holds one slot per new user."""
        if new_user_slots.size == 0:
            return
        slots, counts = np.unique(new_user_slots, return_counts=True)
        self.cusum.update(slots, counts.astype(np.float64), mu_of(slots), now_ms=now_ms)

    def read(
        self,
        now_ms: int,
        slots: NDArray[np.int64],
        mu: NDArray[np.float64],
        users: NDArray[np.float64],
        share_ratio: NDArray[np.float64] | None = None,
        sustain_share: NDArray[np.float64] | None = None,
    ) -> Columns:
        """Feature columns of the detector for ``slots``, plus ``ready`` (1.0 / 0.0).

        ``share_ratio`` (the candidates' shares per view over the catalogue's, float64[m]) is the
        recruitment the sustain path asks for (``detect.sustain_min_share_ratio``); without it the
        sustain path does not ask.
        """
        stat, zero, fine, coarse = self.cusum.read(slots, mu, now_ms=now_ms)
        lifts = np.asarray(self.cusum.lifts, np.float64)
        array = change_array(
            stat, zero, fine, coarse, np.asarray(mu, np.float64), lifts, now_ms=now_ms, tick_ms=self.tick_ms,
            ticks_per_coarse=self.cusum.ticks_per_coarse, h=self.h, fade_ticks=_FADE_TICKS,
        )  # fmt: skip
        cols: Columns = dict(zip(COLUMNS, array, strict=True))
        joint = None
        if self.cfg.detect.joint_growth_z > 0.0:  # both rings as one series, the newest minutes by tick
            joint = growth_joint(  # the score test over both rings (kernels.change.growth_joint)
                stat, zero, fine, coarse, now_ms=now_ms, tick_ms=self.tick_ms,
                ticks_per_coarse=self.cusum.ticks_per_coarse,
            )  # fmt: skip
            cols["growth_z_joint"] = joint
        if share_ratio is not None:
            cols["share_ratio"] = share_ratio
        if sustain_share is not None:  # the sustain path's recruitment over a longer window as well
            cols["sustain_share_ratio"] = sustain_share
        # ready(cols, users) and, for the online model's labels, as without the long floor (a refusal of
        # the board's, not a lesson) and without the joint growth test (the model learns what it learnt
        # without the key): one compiled pass for both
        ready, label = verdicts(
            array, np.asarray(users, np.float64), share_ratio, sustain_share, self._limits(),
            share_test=self.cfg.detect.sustain_min_share_ratio > 0.0, joint=joint,
        )  # fmt: skip
        cols["ready"] = ready.astype(np.float64)
        if (
            self.cfg.detect.sustain_share_long_floor > 0.0 and sustain_share is not None
        ) or joint is not None:
            cols["ready_label"] = label.astype(np.float64)
        return cols

    def _limits(self) -> tuple[float, ...]:
        """:meth:`ready`'s limits without the model, in :func:`~viraltrend.kernels.change.verdicts`' order."""
        d = self.cfg.detect
        return (
            d.fade_z, d.growth_z, d.sustain_s, d.sustain_min_share_ratio, d.sustain_share_long_floor,
            d.sustain_share_long_floor_age_s, d.sustain_share_long_ratio or d.sustain_min_share_ratio,
            d.max_change_age_s, self.cfg.trust.min_unique_users, d.min_change_users, d.min_recent_lift,
            d.joint_growth_z,
        )  # fmt: skip

    def evidence(self, now_ms: int, slots: NDArray[np.int64], mu: NDArray[np.float64]) -> NDArray[np.float64]:
        """:meth:`read`'s ``evidence`` column alone, float64[m] (the engine's ticks that only sketch)."""
        stat = self.cusum.read(slots, mu, now_ms=now_ms)[0]
        return stat.max(axis=1) / self.h if stat.shape[0] else np.zeros(0)

    def ready(
        self,
        cols: Columns,
        users: NDArray[np.float64],
        probability: NDArray[np.float64] | None = None,
        *,
        shape_free: bool = False,
        long_floor: bool = True,
        joint: bool = True,
    ) -> NDArray[np.bool_]:
        """The verdict from :meth:`read`'s columns (see the module docstring).

        With ``probability`` (the warm online model's, float64[m]), a candidate the model gives at
        least ``model.fast_track_probability`` needs no growth or sustain evidence of its shape
        once its change is ``model.min_change_s`` old, its growth z (either ring) is at least
        ``model.min_growth_z`` and at most ``model.max_change_users`` distinct users came since
        the change point (beyond that the growth test has the power to see a ramp: a flat step
        there is a spike; up to ``model.grown_change_users`` while the slow ring's growth z is at
        least ``model.min_growth_z``; past ``model.growth_z_users`` users the growth z asked grows as
        the root of the users: as much growth per user), and its shares per view (x the
        catalogue's) are at least ``model.recruit_share_ratio`` times the change's age over
        ``detect.sustain_s`` (capped at 1): the longer a change has run, the more it must have been
        passed on.  The model has learnt from the stream which early shapes go on to grow.
        With the warm model the vouch also takes a flat step whose shares per view are at least
        ``model.step_share_ratio`` x the catalogue's once its change is ``model.min_change_s`` old,
        whatever its probability: a cascade that saturates within minutes has no growth to see, but
        its viewers pass it on far more than a burst's or a flash spike's do.
        The change evidence, the distinct-user floor, the recent lift and the fading check still
        apply.  ``shape_free=True`` drops the shape test altogether (growth, sustain or vouch): where
        only the shape still waits, the rows the online model learns from.  ``joint=False`` leaves
        out the joint growth test (``detect.joint_growth_z``): the model's labels as without it.
        One compiled pass (:func:`~viraltrend.kernels.change.ready`); the numpy form it replaced is
        ``tests/kernels/reference.py``'s ``detector_ready``.
        """
        limits, model = self._limit_arrays()
        return change_ready(
            cols, users, probability, limits, model, shape_free=shape_free, long_floor=long_floor, joint=joint
        )

    def _limit_arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """:meth:`_limits` and :meth:`_model_limits` as arrays, read once per config object."""
        cached = self._limits_of
        if cached is None or cached[0] is not self.cfg:
            limits = np.asarray(self._limits(), np.float64)
            cached = self._limits_of = (self.cfg, limits, np.asarray(self._model_limits(), np.float64))
        return cached[1], cached[2]

    def _model_limits(self) -> tuple[float, ...]:
        """:meth:`ready`'s vouch limits, in :func:`~viraltrend.kernels.change.ready`'s order."""
        m = self.cfg.model
        return (
            m.fast_track_probability, m.min_change_s, m.max_change_users, m.grown_change_users,
            m.min_growth_z,
            m.max_change_s, m.recruit_share_ratio, m.min_engaged_ratio, m.growth_z_users, m.step_share_ratio,
        )  # fmt: skip

    # ------------------------------------------------------------------ state
    def ensure_capacity(self, n: int) -> None:
        """Grow with the product table."""
        self.cusum.ensure_capacity(n)

    def clear(self, slots: NDArray[np.int64]) -> None:
        """Forget evicted products."""
        self.cusum.clear(slots)

    @property
    def nbytes_per_slot(self) -> int:
        """Bytes of detector state per product slot."""
        return self.cusum.nbytes_per_slot

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Plain arrays for a checkpoint."""
        return self.cusum.to_arrays()

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The CUSUM's arrays as a part of the engine's checkpoint (``copy=False``: views of the largest)."""
        return dict(self.to_arrays() if copy else self.cusum.to_arrays(copy=False)), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> SequentialDetector:
        """:meth:`load_arrays`, in place."""
        self.load_arrays(dict(arrays))
        return self

    def load_arrays(self, arrays: dict[str, NDArray[np.generic]]) -> None:
        """Restore from :meth:`to_arrays` output."""
        d = self.cfg.detect
        try:
            self.cusum = ChangeDetector.from_arrays(
                arrays, lifts=d.lifts, tick_ms=self.tick_ms, n_bins=d.window_ticks,
                ticks_per_coarse=d.ticks_per_slow_bin, n_coarse=d.slow_bins,
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            msg = f"detector state does not fit the config ({exc})"
            raise CheckpointError(msg) from exc


def engaged_ratio(
    counts: NDArray[np.float64], global_counts: NDArray[np.float64], i_trend: int, i_base: int
) -> NDArray[np.float64]:
    """Engagement beyond views per view in the trend window, over the catalogue's (24-hour), float64[m].

    ``counts`` (float64[m, n_types, n_hl]) are the candidates' decayed counts, ``global_counts``
    (float64[n_types, n_hl]) the catalogue's; ``i_trend`` and ``i_base`` index the trend and the
    baseline half-lives.  Likes, comments, shares, carts and purchases all count: whatever a viewer
    does besides looking.  0 for a product seen and nothing more; a catalogue with no engagement
    beyond views tells nothing (``inf`` for every product).

    >>> c = np.zeros((2, 6, 2)); c[:, 0, 0] = 40.0; c[1, 1, 0] = 4.0  # 40 views; the second 4 likes
    >>> g = np.zeros((6, 2)); g[0, 1], g[1, 1] = 100.0, 20.0  # the catalogue: 1 like per 5 views
    >>> engaged_ratio(c, g, 0, 1).tolist()
    [0.0, 0.5]
    """
    views = counts[:, EVENT_TYPE_CODE["view"], i_trend]
    other = counts[:, :, i_trend].sum(axis=1) - views
    g = global_counts[:, i_base]
    g_views = float(g[EVENT_TYPE_CODE["view"]])
    g_rate = (float(g.sum()) - g_views) / max(g_views, 1.0)
    if not g_rate > 0.0:
        return np.full(views.shape, np.inf)
    return np.asarray(other / np.maximum(views, 1.0) / g_rate, np.float64)
