"""detect.joint_growth_z: the growth test over both rings as one series, the newest minutes by tick.

A fast ramp's newest minutes hold most of its users, but the slow ring reads whole minute bins only
(the current one, partial, is left out until it completes) and the fine ring reaches back 3 minutes
only: each alone sees a fast ramp's growth later than the two read together.  A flat step (a flash
spike) stays flat however it is binned.
"""

from __future__ import annotations

import math

import numpy as np

from tests.kernels.reference import _growth_joint
from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector

T0 = 1_000_000_000_000 // 10_000 * 10_000  # a tick boundary
MU = 1.0 / 3600.0  # baseline: one distinct user an hour


def _run(env: dict[str, str], per_tick: list[float]) -> list[tuple[dict[str, float], bool]]:
    """Feed one product ``per_tick`` new users a tick (rounded); read it at every tick."""
    det = SequentialDetector(load_config(None, environ=env), 4)
    out = []
    for i, n in enumerate(per_tick):
        now = T0 + (i + 1) * det.tick_ms
        k = round(n)
        det.update(now, np.zeros(k, np.int64), lambda s: np.full(s.size, MU))
        cols = det.read(now, np.array([0]), np.array([MU]), np.array([30.0]))
        out.append(({c: float(v[0]) for c, v in cols.items()}, bool(cols["ready"][0])))
    return out


def _ramp(doubling_s: float, ticks: int) -> list[float]:
    """Users a tick of a ramp doubling every ``doubling_s`` from 0.4 a tick, after 20 quiet ticks."""
    return [0.0] * 20 + [0.4 * 2 ** (i * 10.0 / doubling_s) for i in range(ticks)]


def test_flat_counts_read_no_trend_and_growth_reads_one():
    fine = np.full((2, 18), 2.0)
    coarse = np.full((2, 24), 12.0)
    coarse[:, -1] = 10.0  # the current bin, 5 ticks in: as flat as the rest
    fine[1] = 2.0 * 2 ** (np.arange(18) / 12.0)
    coarse[1, :-3] = 2.0
    z = _growth_joint(fine, coarse, np.array([17, 17]), np.array([0, 0]), 6 * 100 + 4, 6)
    assert abs(z[0]) < 1e-9
    assert z[1] > 4.0


def test_a_fast_ramp_is_ready_sooner_read_as_one_series():
    per_tick = _ramp(150.0, 60)
    off = _run({"VIRALTREND_DETECT_JOINT_GROWTH_Z": "0"}, per_tick)
    on = _run({"VIRALTREND_DETECT_JOINT_GROWTH_Z": "4"}, per_tick)
    first_off = next(i for i, (_, r) in enumerate(off) if r)
    first_on = next(i for i, (_, r) in enumerate(on) if r)
    assert first_on < first_off  # the key makes it ready earlier
    cols = on[first_on][0]
    assert cols["growth_z_joint"] >= 4.0 > max(cols["growth_z"], cols["growth_z_slow"])
    assert "growth_z_joint" not in off[first_on][0]  # off: not even read
    assert cols["ready_label"] == 0.0  # the online model's labels: as without the key


def test_a_flat_step_is_not_made_ready():
    per_tick = [0.0] * 20 + [3.0] * 60  # a flash spike's plateau: 18 users a minute from nothing
    on = _run({"VIRALTREND_DETECT_JOINT_GROWTH_Z": "4"}, per_tick)
    assert max(c["growth_z_joint"] for c, _ in on) < 4.0
    assert not any(r for _, r in on)
    assert math.isfinite(on[-1][0]["growth_z_joint"])
