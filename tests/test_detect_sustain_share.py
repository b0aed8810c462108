"""detect.sustain_share_half_life_s: the sustain path's recruitment read over a longer window as well.

A slow ramp's few shares come and go from its 5-minute window (market 142 `p7c9dc92ddb7e35c9`: shares
per view 12.3, 1.1, 0.1, 3.3 x the catalogue's at 30, 45, 60, 90 minutes after onset), so a flat,
sustained ramp that is passed on waits for a share in the last minutes.  The sustain path takes the
larger of that ratio and the one over the longer half-life.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_detect import _recruit_cols
from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector
from viraltrend.errors import ConfigError
from viraltrend.scoring import share_ratio


def _sustained(share_5m: float, share_long: float | None) -> dict[str, np.ndarray]:
    cols = _recruit_cols(3000.0, share_5m)  # a change 50 minutes old: the sustain path's
    cols["growth_z"] = cols["growth_z_slow"] = np.zeros(1)  # flat: neither accelerating nor fading
    if share_long is not None:
        cols["sustain_share_ratio"] = np.array([share_long])
    return cols


def test_a_sustained_ramp_shared_over_the_hour_is_ready():
    """With the longer window's bar at the trend window's (sustain_share_long_ratio 0: 2)."""
    det = SequentialDetector(
        load_config(None, environ={"VIRALTREND_DETECT_SUSTAIN_SHARE_LONG_RATIO": "0"}), 2
    )
    users = np.array([30.0])
    assert not det.ready(_sustained(0.1, None), users)[0]  # the 5-minute window alone: no share lately
    assert det.ready(_sustained(0.1, 3.0), users)[0]  # shared over the hour
    assert not det.ready(_sustained(0.1, 1.0), users)[0]  # not even over the hour: a level change
    assert det.ready(_sustained(3.0, 0.1), users)[0]  # the larger of the two


def test_shares_per_view_over_a_half_life_against_the_catalogue():
    on = load_config(None, environ={"VIRALTREND_DETECT_SUSTAIN_SHARE_HALF_LIFE_S": "3600"})
    assert on.detect.sustain_share_half_life_s == 3600.0
    c = np.zeros((1, 6, 4))
    c[0, 0, 2], c[0, 3, 2] = 50.0, 1.0  # 50 views, 1 share over the hour
    g = np.zeros((6, 4))
    g[0, 3], g[3, 3] = 1000.0, 5.0  # the catalogue: 1 share per 200 views (24 hours)
    np.testing.assert_allclose(share_ratio(c, g, 2, 3), [4.0])
    assert share_ratio(c, np.zeros((6, 4)), 2, 3) is None  # no shares in the catalogue: no evidence


def test_the_longer_window_can_ask_a_higher_bar():
    """detect.sustain_share_long_ratio: the longer window's ratio must reach its own bar (4: the default)."""
    env = {"VIRALTREND_DETECT_SUSTAIN_SHARE_LONG_RATIO": "4"}
    det = SequentialDetector(load_config(None, environ=env), 2)
    users = np.array([30.0])
    assert not det.ready(_sustained(0.1, 3.0), users)[0]
    assert det.ready(_sustained(0.1, 4.5), users)[0]
    assert det.ready(_sustained(2.5, 0.1), users)[0]  # the trend window keeps its own bar


def test_off_is_the_trend_window_alone():
    det = SequentialDetector(
        load_config(None, environ={"VIRALTREND_DETECT_SUSTAIN_SHARE_HALF_LIFE_S": "0"}), 2
    )
    assert det.cfg.detect.sustain_share_half_life_s == 0.0  # the engine then passes no longer-window column


def test_the_half_life_must_be_one_the_counters_keep():
    with pytest.raises(ConfigError, match="sustain_share_half_life_s"):
        load_config(None, environ={"VIRALTREND_DETECT_SUSTAIN_SHARE_HALF_LIFE_S": "1800"})
