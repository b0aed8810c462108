"""The fast-window features the online model reads (``FeatureReader.read(..., fast=True)``)."""

from __future__ import annotations

import numpy as np

from viraltrend.config import load_config
from viraltrend.engine import model_features
from viraltrend.events import EVENT_TYPE_CODE, EVENT_TYPES
from viraltrend.scoring import FeatureReader


def _read(fast: bool) -> dict[str, np.ndarray]:
    cfg = load_config(None, environ={})
    reader = FeatureReader.from_config(cfg)
    n_h = len(cfg.decay.half_lives_s)
    counts = np.zeros((3, len(EVENT_TYPES), n_h))
    counts[:, EVENT_TYPE_CODE["view"], :] = [[1.0] * n_h, [50.0, 30.0, 20.0, 10.0], [2.0, 20.0, 40.0, 200.0]]
    glob = counts.sum(axis=0)
    trust = np.ones((3, 3))
    return reader.read(counts, glob, 3, np.zeros(3), observed_s=1e9, trust=trust, fast=fast)


def test_fast_columns_are_the_lift_and_significance_of_the_momentum_window():
    cols = _read(fast=True)
    np.testing.assert_allclose(cols["lift_1m"], cols["rate_1m_per_h"] / cols["baseline_per_h"])
    # a product whose last minute is busier than its last 5 minutes stands out more in the fast
    # window; one that is fading, less
    assert cols["lift_1m"][1] > cols["lift"][1] and cols["z_1m"][1] > 0
    assert cols["lift_1m"][2] < cols["lift"][2]


def test_without_fast_the_rule_sees_the_same_columns_and_values_as_before():
    slow, fast = _read(fast=False), _read(fast=True)
    assert set(fast) - set(slow) == {"lift_1m", "z_1m"}
    for k, v in slow.items():
        np.testing.assert_array_equal(fast[k], v)


def test_every_model_feature_is_a_column_the_engine_reads():
    rates = load_config(None, environ={}, overrides={"model": {"features": "rates"}})
    assert set(model_features(rates)) <= set(_read(fast=True))
    shape = load_config(None, environ={})  # the default: the rates and the detector's shape columns
    extra = set(model_features(shape)) - set(model_features(rates))
    assert extra == {"evidence", "change_s", "growth_z", "growth_z_slow", "fade_z", "recent_lift"}
