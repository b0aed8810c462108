"""detect.age_gate_recent: the age gate reads the most recent change whose evidence suffices.

A product's smallest lift can carry evidence from hours ago (an onset blip that never decayed to 0, a
slow creep) and stay the strongest; when a steep rise comes, a larger lift's statistic passes the bar
from a change point minutes old.  detect.max_change_age_s then judges that change, not the old one.
"""

from __future__ import annotations

import numpy as np

from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector

TICK_MS = 10_000
CREEP_H = 10
MU = 1.0 / 3600.0  # the baseline: one distinct user an hour


def _read(age_gate_recent: bool, rise: int) -> tuple[dict[str, float], bool]:
    """A creep of 4.5 users an hour for 10 hours (a slow riser: its evidence past the bar for hours),
    then ``rise`` users over 10 minutes; the columns read at the rise's end, and the verdict with every
    gate but the age gate open."""
    env = {"VIRALTREND_DETECT_AGE_GATE_RECENT": str(age_gate_recent).lower()}
    det = SequentialDetector(load_config(None, environ=env), 4)
    slot = np.array([1], np.int64)
    creep_end = CREEP_H * 360
    counts = dict.fromkeys(range(1, creep_end, 80), 1)
    for k in range(rise):
        t = creep_end + 1 + k * 60 // max(rise, 1)
        counts[t] = counts.get(t, 0) + 1
    for t in sorted(counts):
        det.update(t * TICK_MS, np.repeat(slot, counts[t]), lambda s: np.full(s.shape, MU))
    now = (creep_end + 60) * TICK_MS
    cols = det.read(now, slot, np.array([MU]), np.array([100.0]))
    c = dict(cols)
    c["growth_z"] = np.full(1, 9.0)
    c["fade_z"] = c["growth_z_slow"] = np.zeros(1)
    c["recent_lift"] = np.full(1, 10.0)
    return {k: float(v[0]) for k, v in cols.items()}, bool(det.ready(c, np.array([100.0]))[0])


def test_a_steep_rise_on_an_old_creep_is_judged_by_its_own_change():
    off, ready_off = _read(False, 12)
    on, ready_on = _read(True, 12)
    assert off["evidence_lift"] == 3.0 and off["change_s"] > 10_800.0 and not ready_off  # the creep's
    assert on["change_s"] == off["change_s"] and on["evidence"] == off["evidence"]  # the columns stand
    assert on["recent_change_s"] <= 700.0 and ready_on


def test_without_a_rise_the_old_change_is_still_too_old():
    on, ready_on = _read(True, 0)
    assert on["change_s"] > 10_800.0 and on["recent_change_s"] == on["change_s"] and not ready_on
