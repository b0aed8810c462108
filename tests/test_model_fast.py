"""The online model's vectorised scoring, compiled, against the numpy form it replaces (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_model import make_model, rows_of, synthetic
from viraltrend.model import LabelBuffer, OnlineModel, _bound_and_scale, _squash


def _squash_numpy(x: np.ndarray) -> np.ndarray:
    """``model._squash`` as main (6cf2e65) computed it."""
    with np.errstate(invalid="ignore"):
        t = np.sign(x) * np.log1p(np.abs(x))
    return np.clip(np.nan_to_num(t, nan=0.0, posinf=50.0, neginf=-50.0), -50.0, 50.0)


def _scaled_numpy(model: OnlineModel, features, rows=slice(None)):
    """``OnlineModel._scaled`` as main (6cf2e65) computed it: numpy, river's dicts read at every call."""
    cols = [np.atleast_1d(np.asarray(features[n], dtype=np.float64)[rows]) for n in model.features]
    x = _squash_numpy(np.stack(cols, axis=1))
    means, variances, weights = model._scaler.means, model._scaler.vars, model._logreg.weights
    mean = np.array([means.get(n, 0.0) for n in model.features], dtype=np.float64)
    std = np.sqrt(np.array([variances.get(n, 0.0) for n in model.features], dtype=np.float64))
    w = np.array([weights.get(n, 0.0) for n in model.features], dtype=np.float64)
    scaled = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0)
    return scaled, w, np.array(float(model._logreg.intercept))


def _proba_numpy(model: OnlineModel, features):
    scaled, w, b = _scaled_numpy(model, features)
    return model._sigmoid(scaled @ w + b)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, np.float64).view(np.uint64).tobytes()


ODD = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, 5e21, -5e21, 1e308, -3.5, 7e22])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 60), st.integers(0, 400), st.booleans())
def test_probabilities_equal_the_numpy_form_bit_for_bit(seed, m, n_learn, const):
    """Heavy tails, NaN, infinities, signed zeros and a zero-variance feature; after every few learns."""
    rng = np.random.default_rng(seed)
    model = make_model(min_labels=10)
    train, y = synthetic(seed, n_learn)
    if const:  # a feature river scales to 0 (zero variance)
        train["share_rate"] = np.full(n_learn, 0.25)
    rows, step = rows_of(train), max(n_learn // 4, 1)
    for start in range(0, max(n_learn, 1), step):  # score between learns: the copy of river's state follows
        cols, _ = synthetic(seed + 1 + start, m)
        for v in cols.values():
            odd = rng.random(m) < 0.2
            v[odd] = rng.choice(ODD, int(odd.sum()))
        got, want = model.predict_proba_many(cols), _proba_numpy(model, cols)
        assert _bits(got) == _bits(want)
        assert _bits(model._scaled(cols)[0]) == _bits(_scaled_numpy(model, cols)[0])
        if m:
            assert _bits(model._scaled(cols, m - 1)[0]) == _bits(_scaled_numpy(model, cols, m - 1)[0])
        model.learn_many(rows[start : start + step], y[start : start + step])


def test_the_copy_of_rivers_state_is_dropped_by_a_learn_and_a_restore():
    model = make_model(min_labels=10)
    train, y = synthetic(5, 120)
    model.learn_many(rows_of(train)[:60], y[:60])
    cols, _ = synthetic(6, 30)
    before = model.predict_proba_many(cols)
    model.learn_many(rows_of(train)[60:], y[60:])
    after = model.predict_proba_many(cols)
    assert _bits(after) == _bits(_proba_numpy(model, cols)) and _bits(after) != _bits(before)
    restored = OnlineModel.from_dict(model.to_dict(), fallback=model.fallback)
    assert _bits(restored.predict_proba_many(cols)) == _bits(after)


def test_the_compiled_bound_and_scale_equals_its_plain_python_form():
    rng = np.random.default_rng(2)
    t = rng.choice(np.concatenate([ODD, rng.normal(0.0, 30.0, 20)]), size=(40, 6))
    mean, std = rng.normal(0.0, 2.0, 6), np.array([0.0, np.nan, 1.5, 3.0, 1e-3, 0.7])
    got = _bound_and_scale(t, mean, std)
    plain = getattr(_bound_and_scale, "py_func", _bound_and_scale)(t, mean, std)
    want = np.where(std > 0, (np.clip(np.nan_to_num(t, nan=0.0, posinf=50.0, neginf=-50.0), -50, 50) - mean)
                    / np.where(std > 0, std, 1.0), 0.0)  # fmt: skip
    assert _bits(got) == _bits(want) == _bits(plain)


def test_the_label_buffer_counts_its_rows_through_adds_drops_dues_and_a_restore():
    buf = LabelBuffer(horizon_ms=10_000, capacity=7, negative_rate=1.0)
    for t in range(0, 60_000, 5_000):
        slots = np.arange(3, dtype=np.int64) + t
        buf.add(t, slots, {"lift": np.ones(3)}, baseline_per_s=np.ones(3), count_at_t=np.ones(3))
        assert len(buf) == sum(len(c) for c in buf._chunks) <= 7
        if t % 15_000 == 0:
            buf.due(t)
            assert len(buf) == sum(len(c) for c in buf._chunks)
    assert buf.dropped > 0
    again = LabelBuffer.from_arrays(buf.to_arrays())
    assert len(again) == len(buf) == sum(len(c) for c in again._chunks)


def test_a_rows_squash_equals_the_numpy_form_bit_for_bit():
    """The learnt rows' squash (``_row``): NaN, infinities, signed zeros, extremes, ordinary values."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        x = rng.choice(np.concatenate([ODD, rng.normal(0.0, 1e3, 12)]), size=11)
        assert _bits(_squash(x)) == _bits(_squash_numpy(x))


def test_columns_of_other_dtypes_and_shapes_score_as_numpy_did():
    """Integer and float32 columns, a list, unequal lengths: as numpy did (the general path too)."""
    model = make_model(min_labels=10)
    train, y = synthetic(8, 80)
    model.learn_many(rows_of(train), y)
    cols, _ = synthetic(9, 25)
    cols["lift"] = np.round(cols["lift"]).astype(np.int64)
    cols["z"] = cols["z"].astype(np.float32)
    assert _bits(model.predict_proba_many(cols)) == _bits(_proba_numpy(model, cols))
    cols["velocity"] = cols["velocity"].tolist()  # not an array: the general path
    assert _bits(model.predict_proba_many(cols)) == _bits(_proba_numpy(model, cols))
    short = dict(cols, z=cols["z"][:5])  # columns of unequal lengths: refused as before
    with pytest.raises(ValueError):
        model.predict_proba_many(short)
