"""Tests of the online model (river pipeline, numpy scoring, checkpoints) and of the label buffer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.config import ScoreConfig
from viraltrend.model import DueRows, LabelBuffer, OnlineModel, label_rows
from viraltrend.scoring import RuleScorer

FEATURES = ("lift", "z", "velocity", "share_rate", "age_s")


def synthetic(seed: int, n: int, *, pos_rate: float = 0.15) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Heavy-tailed features; positives have high lift and z (separable up to some overlap)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < pos_rate
    cols = {
        "lift": np.where(y, rng.lognormal(2.5, 0.5, n), rng.lognormal(0.0, 0.5, n)),
        "z": np.where(y, rng.normal(20.0, 5.0, n), rng.normal(0.0, 2.0, n)),
        "velocity": rng.lognormal(0.0, 1.0, n),
        "share_rate": rng.random(n) * 0.1,
        "age_s": rng.exponential(86_400.0, n),
    }
    return cols, y


def rows_of(cols: dict[str, np.ndarray]) -> list[dict[str, float]]:
    names = list(cols)
    return [dict(zip(names, r, strict=False)) for r in np.column_stack([cols[n] for n in names]).tolist()]


def make_model(**kwargs) -> OnlineModel:
    kwargs.setdefault("features", FEATURES)
    kwargs.setdefault("fallback", RuleScorer(ScoreConfig()))
    return OnlineModel(**kwargs)


def trained(seed: int = 0, n: int = 300, **kwargs) -> OnlineModel:
    model = make_model(**kwargs)
    cols, y = synthetic(seed, n)
    model.learn_many(rows_of(cols), y)
    return model


# ---------------------------------------------------------------- vectorised scoring


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_probability_equals_river_predict_proba_one(seed):
    model = trained(seed, n=400, min_labels=50)
    cols, _ = synthetic(seed + 100, 300)
    cols["z"][:5] = [-1e6, 0.0, -0.0, 1e-300, 3e9]  # signs, zeros, extremes
    got = model.predict_proba_many(cols)
    want = np.array([model.predict_proba_one(r) for r in rows_of(cols)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(model.score_many(cols), got)


def test_vectorised_probability_matches_river_for_a_constant_feature():
    model = make_model(features=("lift", "const"), min_labels=10)
    cols, y = synthetic(1, 200)
    cols = {"lift": cols["lift"], "const": np.full(200, 7.0)}  # zero variance: river scales it to 0
    model.learn_many(rows_of(cols), y)
    got = model.predict_proba_many(cols)
    want = np.array([model.predict_proba_one(r) for r in rows_of(cols)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_scoring_an_empty_candidate_set_returns_an_empty_array():
    model = trained(min_labels=10)
    empty = {n: np.zeros(0) for n in FEATURES}
    assert model.score_many(empty).shape == (0,)


def test_missing_feature_column_is_named_in_the_error():
    model = trained(min_labels=10)
    cols, _ = synthetic(0, 3)
    del cols["velocity"]
    with pytest.raises(KeyError, match="velocity"):
        model.score_many(cols)


# ---------------------------------------------------------------- cold start


def test_cold_model_returns_the_fallback_scores_and_its_name():
    rule = RuleScorer(ScoreConfig())
    model = trained(n=100, min_labels=200, fallback=rule)
    cols, _ = synthetic(5, 50)
    np.testing.assert_array_equal(model.score_many(cols), rule.score_many(cols))
    assert model.name == "rule"
    assert model.metrics()["warm"] is False
    assert model.explain(cols, 0) == []


def test_model_stays_cold_without_positives_even_past_min_labels():
    model = make_model(min_labels=20, min_per_class=5)
    cols, _ = synthetic(0, 50)
    model.learn_many(rows_of(cols), np.zeros(50, bool))
    assert model.metrics()["labels_seen"] == 50
    assert model.name == "rule"


def test_model_warms_up_and_is_named_model():
    model = trained(n=300, min_labels=200)
    assert model.name == "model"
    assert model.metrics()["warm"] is True


# ---------------------------------------------------------------- learning


def test_warm_model_separates_a_synthetic_problem_progressively():
    model = trained(seed=3, n=3000, min_labels=200)
    m = model.metrics()
    assert m["roc_auc"] > 0.9
    assert m["precision"] > 0.8
    assert m["log_loss"] < 0.4
    assert m["labels_seen"] == 3000
    assert 300 < m["positives_seen"] < 600


def test_learn_many_equals_a_loop_of_learn_one():
    cols, y = synthetic(2, 200)
    w = np.where(y, 1.0, 20.0)
    a, b = make_model(), make_model()
    a.learn_many(rows_of(cols), y, w)
    for x, yi, wi in zip(rows_of(cols), y, w, strict=False):
        b.learn_one(x, bool(yi), float(wi))
    assert a.to_dict() == b.to_dict()


def test_sampled_negative_weights_do_not_blow_up_the_step():
    cols, y = synthetic(4, 2000)
    model = make_model(min_labels=100)
    model.learn_many(rows_of(cols), y, np.where(y, 1.0, 20.0))  # as from a LabelBuffer at 5%
    assert model.metrics()["roc_auc"] > 0.9
    assert np.all(np.abs(list(model._logreg.weights.values())) < 50)


def test_max_class_weight_bounds_the_first_positives_weight():
    # 80 negatives, then one positive: balanced online, the positive weighs 80 negatives; bounded at 4, 4
    neg = {"lift": 1.0, "z": 0.0, "velocity": 1.0, "share_rate": 0.0, "age_s": 10.0}
    steps = {}
    for cap in (None, 4.0):
        model = make_model() if cap is None else make_model(max_class_weight=cap)
        model.learn_many([neg] * 80, np.zeros(80, bool))
        w_before = dict(model._logreg.weights)
        model.learn_one({"lift": 30.0, "z": 20.0, "velocity": 5.0, "share_rate": 0.05, "age_s": 10.0}, True)
        steps[cap] = float(
            np.linalg.norm([model._logreg.weights[k] - w_before.get(k, 0.0) for k in FEATURES])
        )
        assert model._class_weight(True) / model._class_weight(False) == pytest.approx(
            80.0 if cap is None else 4.0
        )
    assert steps[4.0] < steps[None] / 5  # the capped positive moves the weights far less
    capped = make_model(max_class_weight=4.0)
    restored = OnlineModel.from_dict(json.loads(json.dumps(capped.to_dict())), fallback=capped.fallback)
    assert restored.max_class_weight == 4.0
    assert "max_class_weight" not in make_model().to_dict()["params"]  # the default writes main's checkpoint
    with pytest.raises(ValueError, match="max_class_weight"):
        make_model(max_class_weight=0.5)


def test_explain_names_the_dominant_feature_first():
    model = trained(seed=6, n=2000, min_labels=100)
    cols = {
        "lift": np.array([1.0, 60.0]),
        "z": np.array([0.0, 0.0]),
        "velocity": np.array([1.0, 1.0]),
        "share_rate": np.array([0.05, 0.05]),
        "age_s": np.array([86_400.0, 86_400.0]),
    }
    top = model.explain(cols, 1, top=3)
    assert top[0][0] == "lift"
    assert top[0][1] > 0
    assert len(top) == 3
    assert abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])


# ---------------------------------------------------------------- non-finite inputs


def test_non_finite_inputs_neither_crash_nor_give_nan_scores():
    model = make_model(min_labels=20, min_per_class=2)
    cols, y = synthetic(7, 100)
    cols["lift"][::7] = np.nan
    cols["z"][::11] = np.inf
    cols["velocity"][::13] = -np.inf
    cols["age_s"][::5] = 1e308
    rows = rows_of(cols)
    del rows[3]["share_rate"]  # a missing key counts as NaN, i.e. 0
    model.learn_many(rows, y)
    scores = model.score_many(cols)
    assert model.name == "model"
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, [model.predict_proba_one(r) for r in rows_of(cols)], atol=1e-9)
    assert all(np.isfinite(v) for v in model._logreg.weights.values())
    json.dumps(model.to_dict(), allow_nan=False)


# ---------------------------------------------------------------- calibration to the board


def test_score_puts_promote_probability_exactly_on_the_promote_score():
    model = trained(seed=4, n=400, min_labels=50, promote_probability=0.2, promote_score=0.8)
    cols, _ = synthetic(11, 300)
    p, score = model.predict_proba_many(cols), model.score_many(cols)
    logit = np.log(p / (1 - p))
    want = 1 / (1 + np.exp(-(logit - np.log(0.2 / 0.8) + np.log(0.8 / 0.2))))
    inside = (p > 1e-9) & (p < 1 - 1e-9)
    np.testing.assert_allclose(score[inside], want[inside], rtol=1e-9)
    assert np.array_equal(np.argsort(score, kind="stable"), np.argsort(p, kind="stable"))
    assert ((p >= 0.2) == (score >= 0.8 - 1e-12))[inside].all()


def test_promote_probability_sets_the_progressive_precision_cut():
    loose = trained(seed=6, n=1500, min_labels=50, promote_probability=0.05)
    strict = trained(seed=6, n=1500, min_labels=50, promote_probability=0.95)
    assert loose.metrics()["roc_auc"] == strict.metrics()["roc_auc"]  # same learning, another cut
    assert strict.metrics()["precision"] > loose.metrics()["precision"]


@pytest.mark.parametrize("key", ["promote_probability", "promote_score"])
@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5])
def test_calibration_outside_the_open_unit_interval_is_refused(key, bad):
    with pytest.raises(ValueError, match=key):
        make_model(**{key: bad})


# ---------------------------------------------------------------- checkpoints


def test_round_trip_through_json_scores_and_keeps_learning_identically():
    model = trained(seed=8, n=300, min_labels=100, promote_probability=0.3, promote_score=0.8)
    checkpoint = json.loads(json.dumps(model.to_dict()))
    restored = OnlineModel.from_dict(checkpoint, fallback=RuleScorer(ScoreConfig()))
    probe, _ = synthetic(9, 500)
    np.testing.assert_allclose(restored.score_many(probe), model.score_many(probe), rtol=0, atol=1e-12)
    cols, y = synthetic(10, 100)
    model.learn_many(rows_of(cols), y, np.where(y, 1.0, 20.0))
    restored.learn_many(rows_of(cols), y, np.where(y, 1.0, 20.0))
    np.testing.assert_allclose(restored.score_many(probe), model.score_many(probe), rtol=0, atol=1e-12)
    assert restored.metrics() == model.metrics()
    assert restored.to_dict() == model.to_dict()


def test_round_trip_of_an_untrained_model():
    model = make_model()
    restored = OnlineModel.from_dict(json.loads(json.dumps(model.to_dict())), fallback=model.fallback)
    assert restored.to_dict() == model.to_dict()
    assert restored.name == "rule"


def test_checkpoint_holds_no_pickle_only_plain_json():
    text = json.dumps(trained(n=50).to_dict(), allow_nan=False)
    assert json.loads(text)["params"]["features"] == list(FEATURES)


# ---------------------------------------------------------------- label buffer

H = 60_000


def add_tick(buf: LabelBuffer, t_ms: int, slots: np.ndarray, hint: np.ndarray | None = None) -> None:
    m = len(slots)
    feats = {"lift": slots.astype(float) + t_ms / 1e6, "z": np.full(m, t_ms / 1e3)}
    buf.add(t_ms, slots, feats, hint, baseline_per_s=np.full(m, 0.5), count_at_t=slots.astype(float) * 2)


def test_due_releases_a_row_exactly_at_t_plus_horizon_and_not_a_millisecond_before():
    buf = LabelBuffer(horizon_ms=H, negative_rate=1.0)
    add_tick(buf, 1_000, np.array([1, 2], np.int64))
    add_tick(buf, 2_000, np.array([3], np.int64))
    assert len(buf.due(1_000 + H - 1)) == 0
    first = buf.due(1_000 + H)
    assert first.slot.tolist() == [1, 2] and first.t_ms.tolist() == [1_000, 1_000]
    assert len(buf.due(2_000 + H - 1)) == 0
    assert buf.due(2_000 + H).slot.tolist() == [3]
    assert len(buf) == 0


STEP_MS = st.one_of(
    st.sampled_from([0, 1, 4_999, 5_000, 5_001, 9_999, 10_000, 10_001]), st.integers(0, 30_000)
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(STEP_MS, st.integers(0, 5), st.booleans()), min_size=1, max_size=40))
def test_due_never_releases_early_and_never_holds_a_row_past_its_time(ops):
    buf = LabelBuffer(horizon_ms=10_000, negative_rate=1.0)
    t, pending, next_slot = 0, [], 0
    for dt, m, call_due in ops:
        t += dt
        slots = np.arange(next_slot, next_slot + m, dtype=np.int64)
        next_slot += m
        add_tick(buf, t, slots)
        pending += [(t, int(s)) for s in slots]
        if call_due:
            got = buf.due(t)
            want = [p for p in pending if p[0] + 10_000 <= t]
            assert list(zip(got.t_ms.tolist(), got.slot.tolist(), strict=True)) == want
            assert np.all(got.t_ms + 10_000 <= t)
            pending = [p for p in pending if p[0] + 10_000 > t]
    assert len(buf) == len(pending)


def test_due_rows_carry_features_weights_and_counts_of_their_tick():
    buf = LabelBuffer(horizon_ms=H, negative_rate=1.0)
    add_tick(buf, 5_000, np.array([4, 9], np.int64))
    rows = buf.due(5_000 + H)
    assert isinstance(rows, DueRows) and rows.feature_names == ("lift", "z")
    np.testing.assert_array_equal(rows.features, [[4.005, 5.0], [9.005, 5.0]])
    np.testing.assert_array_equal(rows.count_at_t, [8.0, 18.0])
    assert rows.rows()[1] == {"lift": 9.005, "z": 5.0}
    assert rows.weight.tolist() == [1.0, 1.0]


def test_negative_sampling_keeps_hinted_rows_and_about_the_rate_of_the_others():
    buf = LabelBuffer(horizon_ms=H, negative_rate=0.05, seed=3)
    slots = np.arange(40_000, dtype=np.int64)
    hint = slots % 100 == 0
    add_tick(buf, 0, slots, hint)
    rows = buf.due(H)
    kept_hinted = rows.slot[rows.slot % 100 == 0]
    assert kept_hinted.size == hint.sum()
    assert np.all(rows.weight[rows.slot % 100 == 0] == 1.0)
    others = rows.slot[rows.slot % 100 != 0]
    assert abs(others.size / (~hint).sum() - 0.05) < 0.006
    assert np.all(rows.weight[rows.slot % 100 != 0] == 20.0)


def test_negative_sampling_does_not_depend_on_how_adds_are_grouped():
    slots = np.arange(5_000, dtype=np.int64)
    whole = LabelBuffer(horizon_ms=H, seed=11)
    add_tick(whole, 7_000, slots)
    split = LabelBuffer(horizon_ms=H, seed=11)
    for part in np.array_split(slots[::-1], 7):  # other groups, other order
        add_tick(split, 7_000, part)
    a, b = whole.due(7_000 + H), split.due(7_000 + H)
    assert a.slot.size > 0
    assert sorted(a.slot.tolist()) == sorted(b.slot.tolist())
    other_seed = LabelBuffer(horizon_ms=H, seed=12)
    add_tick(other_seed, 7_000, slots)
    assert sorted(other_seed.due(7_000 + H).slot.tolist()) != sorted(a.slot.tolist())


def test_capacity_drops_the_oldest_rows_and_counts_them():
    buf = LabelBuffer(horizon_ms=H, capacity=100, negative_rate=1.0)
    for i in range(3):
        add_tick(buf, i * 1_000, np.arange(i * 50, i * 50 + 50, dtype=np.int64))
    assert len(buf) == 100 and buf.dropped == 50
    rows = buf.due(10 * H)
    assert rows.slot.tolist() == list(range(50, 150))
    add_tick(buf, 10 * H, np.arange(250, dtype=np.int64))  # more than the capacity at once
    assert len(buf) == 100 and buf.dropped == 200
    assert buf.due(20 * H).slot.tolist() == list(range(150, 250))


def test_checkpoint_round_trip_through_npz(tmp_path):
    buf = LabelBuffer(horizon_ms=H, capacity=1_000, negative_rate=0.3, seed=5)
    for i in range(8):
        add_tick(buf, i * 10_000, np.arange(i, i + 40, dtype=np.int64), np.arange(40) < 3)
    buf.due(H + 15_000)
    np.savez(tmp_path / "labels.npz", **buf.to_arrays())
    with np.load(tmp_path / "labels.npz", allow_pickle=False) as z:
        restored = LabelBuffer.from_arrays(dict(z))
    assert len(restored) == len(buf) and restored.dropped == buf.dropped
    for b in (buf, restored):
        add_tick(b, 80_000, np.arange(100, 140, dtype=np.int64))
    for now in (H + 30_000, H + 55_000, 10 * H):  # the restored buffer splits its single chunk
        a, b = buf.due(now), restored.due(now)
        for name in ("t_ms", "slot", "features", "weight", "baseline_per_s", "count_at_t"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.feature_names == b.feature_names


def test_checkpoint_of_an_empty_buffer():
    restored = LabelBuffer.from_arrays(LabelBuffer(horizon_ms=H).to_arrays())
    assert len(restored) == 0 and restored.feature_names is None and restored.last_t_ms is None
    assert len(restored.due(10 * H)) == 0


def test_add_rejects_time_going_backwards_and_non_int64_slots():
    buf = LabelBuffer(horizon_ms=H)
    add_tick(buf, 5_000, np.array([1], np.int64))
    with pytest.raises(ValueError, match="must not decrease"):
        add_tick(buf, 4_999, np.array([1], np.int64))
    with pytest.raises(TypeError, match="int64"):
        add_tick(buf, 6_000, np.array([1], np.int32))


def test_label_rows_needs_both_min_events_and_lift_over_baseline():
    buf = LabelBuffer(horizon_ms=H, negative_rate=1.0)
    buf.add(
        0,
        np.arange(4, dtype=np.int64),
        {"lift": np.ones(4)},
        baseline_per_s=np.array([0.0, 0.0, 1.0, 1.0]),
        count_at_t=np.array([10.0, 10.0, 10.0, 10.0]),
    )
    rows = buf.due(H)
    # need max(5, 3 * baseline * 60): 5 for the first two, 180 for the last two
    got = label_rows(rows, np.array([14.0, 15.0, 189.0, 190.0]), min_events=5, lift=3.0, horizon_s=60.0)
    assert got.tolist() == [False, True, False, True]
    assert LabelBuffer.label_rows is label_rows
    with pytest.raises(ValueError, match="one value per due row"):
        label_rows(rows, np.zeros(3), min_events=5, lift=3.0, horizon_s=60.0)


def test_buffer_feeds_the_model_end_to_end():
    buf = LabelBuffer(horizon_ms=H, negative_rate=0.5, seed=1)
    model = make_model(features=("lift", "z"), min_labels=20, min_per_class=3)
    rng = np.random.default_rng(0)
    for i in range(30):
        slots = np.arange(50, dtype=np.int64)
        lift = rng.lognormal(0.0, 1.0, 50)
        buf.add(
            i * 10_000,
            slots,
            {"lift": lift, "z": np.log(lift) * 5},
            lift > 3,
            baseline_per_s=np.full(50, 0.1),
            count_at_t=np.zeros(50),
        )
        rows = buf.due(i * 10_000)
        if len(rows):
            gained = rows.features[:, 0] * 10  # the future follows the lift, for the test
            y = label_rows(rows, rows.count_at_t + gained, min_events=20, lift=1.0, horizon_s=60.0)
            model.learn_many(rows.rows(), y, rows.weight)
    assert model.name == "model"
    assert model.metrics()["roc_auc"] > 0.8


def test_a_model_that_never_learns_does_not_build_river_and_reports_rivers_fresh_metrics() -> None:
    """perf27: river (and scipy.stats under it) is built at the first use; a fresh model's metrics
    and checkpoint are the ones a model that built river at once gives."""
    from river import metrics

    lazy, built = make_model(), make_model()
    built._parts()  # noqa: SLF001 - the river objects built at once, as before perf27
    assert lazy._river is None  # noqa: SLF001
    cols, _ = synthetic(3, 20)
    np.testing.assert_array_equal(lazy.score_many(cols), built.score_many(cols))  # cold: the fallback
    assert lazy.name == built.name == "rule"
    fresh = {
        "roc_auc": metrics.ROCAUC().get(),
        "log_loss": metrics.LogLoss().get(),
        "precision": metrics.Precision().get(),
    }
    got = lazy.metrics()
    assert lazy._river is None  # noqa: SLF001 - reporting the metrics does not build it
    assert (
        json.dumps(got)
        == json.dumps(built.metrics())
        == json.dumps({**fresh, **{k: got[k] for k in got if k not in fresh}})
    )
    assert {k: np.copysign(1.0, got[k]) for k in fresh} == {
        k: np.copysign(1.0, float(v)) for k, v in fresh.items()
    }
    assert json.dumps(lazy.to_dict()) == json.dumps(built.to_dict())  # a checkpoint builds it
    assert lazy._river is not None  # noqa: SLF001


def test_a_lazily_built_model_learns_and_scores_as_one_built_at_once() -> None:
    cols, y = synthetic(4, 400)
    lazy, built = make_model(min_labels=50), make_model(min_labels=50)
    built._parts()  # noqa: SLF001
    assert json.dumps(lazy.metrics()) == json.dumps(built.metrics())  # read while fresh, then learn
    lazy.learn_many(rows_of(cols), y)
    built.learn_many(rows_of(cols), y)
    np.testing.assert_array_equal(lazy.score_many(cols), built.score_many(cols))
    assert json.dumps(lazy.metrics()) == json.dumps(built.metrics())
    assert json.dumps(lazy.to_dict()) == json.dumps(built.to_dict())
