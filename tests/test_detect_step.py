"""detect.sustain_share_long_floor (detect17): a level change held for hours is no trend on one share.

A price drop's plateau (agents 112 `p0a3a8db2`, its change 6,550 s old) passed the sustain path's
recruitment test on one share in the trend window (6.5 x the catalogue's shares per view in the 5-minute
window, 1.5 x over the hour).  With the floor, the trend window's ratio counts only where the hour's is at
least the floor; the online model's "ready" labels are read as without it (``long_floor=False``).
"""

from __future__ import annotations

import numpy as np

from tests.test_detect import _recruit_cols
from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector


def _det(**env: str) -> SequentialDetector:
    return SequentialDetector(
        load_config(None, environ={f"VIRALTREND_DETECT_{k.upper()}": v for k, v in env.items()}), 2
    )


def test_the_trend_windows_few_shares_must_be_backed_by_the_hours():
    users = np.array([30.0])
    cols = _recruit_cols(6550.0, 6.5)  # a price drop's plateau, one share in the trend window
    cols["growth_z"] = cols["growth_z_slow"] = np.zeros(1)
    cols["sustain_share_ratio"] = np.array([1.5])
    env = {"max_change_age_s": "10800"}
    assert _det(sustain_share_long_floor="0", **env).ready(cols, users)[0]
    assert not _det(sustain_share_long_floor="2", **env).ready(cols, users)[0]
    cols["sustain_share_ratio"] = np.array([2.5])
    assert _det(sustain_share_long_floor="2", **env).ready(cols, users)[0]


def test_the_labels_read_as_without_the_floor():
    users = np.array([30.0])
    cols = _recruit_cols(6550.0, 6.5)
    cols["growth_z"] = cols["growth_z_slow"] = np.zeros(1)
    cols["sustain_share_ratio"] = np.array([1.5])
    det = _det(sustain_share_long_floor="2", max_change_age_s="10800")
    assert not det.ready(cols, users)[0]
    assert det.ready(cols, users, long_floor=False)[0]


def test_the_floor_can_spare_younger_changes():
    """detect.sustain_share_long_floor_age_s: a slow Bass ramp on its few shares (market 120
    `p2ed0b3c7fdfef554`: change 2,280 s old, 3.4 x in the trend window, 1.7 x over the hour) is spared."""
    users = np.array([30.0])
    cols = _recruit_cols(2280.0, 3.4)
    cols["growth_z"] = cols["growth_z_slow"] = np.zeros(1)
    cols["sustain_share_ratio"] = np.array([1.7])
    env = {"sustain_share_long_floor": "2", "max_change_age_s": "10800"}
    assert not _det(sustain_share_long_floor_age_s="0", **env).ready(cols, users)[0]
    assert _det(sustain_share_long_floor_age_s="3600", **env).ready(cols, users)[0]
    cols["change_s"] = np.array([6550.0])  # the price drop's hours-old change
    cols["share_ratio"] = np.array([6.5])
    cols["sustain_share_ratio"] = np.array([1.5])
    assert not _det(sustain_share_long_floor_age_s="3600", **env).ready(cols, users)[0]
