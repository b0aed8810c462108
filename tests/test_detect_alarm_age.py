"""detect.old_change_alarm_s: an onset blip's change point does not hold a later ramp off as "too old".

A blip's evidence that never reached the bar and never decayed to 0 keeps the CUSUM's change point at
the blip; hours later a ramp brings the evidence over the bar.  The change is then older than
detect.max_change_age_s, but the alarm (the evidence at or above the bar) is young: a ramp, not a
slow riser whose evidence has stood above the bar for hours.
"""

from __future__ import annotations

import numpy as np

from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector

TICK_MS = 10_000
MU = 1.0 / 3600.0  # the baseline: one distinct user an hour
RAMP0 = 4 * 360  # the ramp starts 4 hours after the blip (ticks)


def _columns(after_ramp_ticks: list[int], alarm_s: float = 3600.0) -> list[dict[str, float]]:
    """The detector's columns, read every 30 ticks, of a blip of 4 users at tick 1, one user every 40
    minutes for 4 hours, then 4.5 users an hour (a lift the smallest lift's statistic leads), at each
    of ``after_ramp_ticks`` (ticks after the ramp began)."""
    env = {"VIRALTREND_DETECT_OLD_CHANGE_ALARM_S": str(alarm_s)}
    det = SequentialDetector(load_config(None, environ=env), 4)
    slot = np.array([1], np.int64)
    counts = {1: 4} | dict.fromkeys(range(240, RAMP0, 240), 1)
    counts |= dict.fromkeys(range(RAMP0, RAMP0 + 5000, 80), 1)
    wanted = {RAMP0 + t for t in after_ramp_ticks}
    out = []
    for t in range(1, max(wanted) + 1):
        if t in counts:
            det.update(t * TICK_MS, np.repeat(slot, counts[t]), lambda s: np.full(s.shape, MU))
        if t % 30 == 0 or t in wanted:
            cols = det.read(t * TICK_MS, slot, np.array([MU]), np.array([20.0]))
            if t in wanted:
                row = {k: float(v[0]) for k, v in cols.items()}
                row["too_old_ok"] = float(_age_gate_passes(det, cols))
                out.append(row)
    return out


def _age_gate_passes(det: SequentialDetector, cols: dict[str, np.ndarray]) -> bool:
    """The verdict with every other gate open: an accelerating shape, enough users, a large lift."""
    c = dict(cols)
    c["growth_z"] = np.full(1, 9.0)
    c["fade_z"] = c["growth_z_slow"] = np.zeros(1)
    c["recent_lift"] = np.full(1, 10.0)
    return bool(det.ready(c, np.array([100.0]))[0])


def test_a_ramp_after_an_old_blip_passes_the_age_gate_while_its_alarm_is_young():
    first, later, late = _columns([2400, 2700, 2800])
    assert first["change_s"] > 10_800.0 and first["evidence"] >= 1.0  # the change is the blip's
    assert first["evidence_lift"] == 3.0
    assert first["alarm_s"] <= 300.0 and first["too_old_ok"]
    assert 2_700.0 <= later["alarm_s"] <= 3_600.0 and later["too_old_ok"]
    assert late["alarm_s"] > 3_600.0 and not late["too_old_ok"]  # the alarm has stood too long


def test_off_is_the_hard_cut():
    (row,) = _columns([2400], alarm_s=0.0)
    assert row["evidence"] >= 1.0 and row["change_s"] > 10_800.0 and not row["too_old_ok"]


def test_an_alarm_older_than_every_change_point_restarts():
    """An evicted slot reused (its statistics cleared in a compiled sweep, not its alarm) starts afresh."""
    det = SequentialDetector(load_config(None, environ={"VIRALTREND_DETECT_OLD_CHANGE_ALARM_S": "3600"}), 4)
    slot = np.array([1], np.int64)
    det.cusum.alarm[1] = 5  # left by an earlier product
    det.update(1000 * TICK_MS, np.repeat(slot, 12), lambda s: np.full(s.shape, MU))
    cols = det.read(1000 * TICK_MS, slot, np.array([MU]), np.array([20.0]))
    assert cols["evidence"][0] >= 1.0 and cols["alarm_s"][0] == 0.0
    assert det.cusum.alarm[1] == 1000
    cols = det.read(1001 * TICK_MS, slot, np.array([MU]), np.array([20.0]))
    assert cols["alarm_s"][0] == 10.0
