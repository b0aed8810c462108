"""The online model inside the engine: delayed labels without leakage, cold start, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import read_events, run_engine, truth
from tests.test_engine import SMALL, _burst, batch_of
from viraltrend.audience_guard import fresh_shortfall_evidence
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.errors import ConfigError
from viraltrend.stream.checkpoint import CheckpointStore

#: The model before ready labels: gain labels on every touched product, the rates alone, its score ranks.
GAIN = {
    "label": "gain",
    "rows": "touched",
    "features": "rates",
    "sample_every_s": 60.0,
    "min_change_s": 0.0,
    "min_growth_z": -2.0,
    "max_change_users": 1e9,
}
MODEL = {
    "model": {
        **GAIN,
        "enabled": True,
        "min_labels": 20,
        "horizon_s": 600.0,
        "sample_every_s": 60.0,
        "label_min_events": 50.0,
        "label_lift": 5.0,
    }
}


def cfg(**extra):
    return load_config(None, environ={}, overrides={**MODEL, **extra})


def recording(engine: Engine) -> list[tuple[list[dict], list[bool]]]:
    seen: list[tuple[list[dict], list[bool]]] = []
    learn = engine.model.learn_many

    def spy(rows, ys, ws=None):
        seen.append((rows, list(map(bool, ys))))
        return learn(rows, ys, ws)

    engine.model.learn_many = spy
    return seen


def _label_of_late_burst(burst_offset_ms: int, **model: float) -> bool:
    """Sample p-x at t, then send (in one batch) the tick t + horizon and a burst starting at t + offset."""
    t0 = 1_000_000_000_000
    engine = Engine(cfg(model={**MODEL["model"], **model}))
    seen = recording(engine)
    background = _burst("bg-only", "s", t0, 1)  # a quiet catalogue from t0 - 1 h
    start = sorted(r for r in background if r[0] <= t0) + [(t0, "view", "p-x", "s", None, "user1")]
    engine.process(batch_of(start))
    engine.process(batch_of([(t0 + 10_000, "view", "bg1", "s", None, "user2")]))  # fires tick t0 + 10 s
    t = t0 + 10_000
    slot = engine.products.lookup(["p-x"])
    counts = engine.counters.read(slot, t)
    feats = {n: np.zeros(1) for n in engine.model.features}
    engine.labels.add(
        t,
        slot,
        feats,
        np.array([True]),
        baseline_per_s=np.array([0.001]),
        count_at_t=engine._baseline_count(counts),
    )
    rest = [(t0 + 20_000 + k * 20_000, "view", f"bg{k % 300}", "s", None, f"user{k}") for k in range(60)]
    rest += [(t + burst_offset_ms + i * 100, "share", "p-x", "s", None, f"user{i}") for i in range(2000)]
    engine.process(batch_of(sorted(rest)))  # one batch: the tick t + horizon and the burst
    labels = [y for rows, ys in seen for row, y in zip(rows, ys, strict=True) if row == {**feats_row(feats)}]
    assert len(labels) == 1, labels
    return labels[0]


def feats_row(feats):
    return {n: float(v[0]) for n, v in feats.items()}


def test_a_burst_just_after_the_horizon_does_not_leak_into_the_label():
    assert _label_of_late_burst(600_000 + 5_000) is False


def test_a_burst_inside_the_horizon_is_labelled_positive():
    assert _label_of_late_burst(600_000 - 400_000) is True


def test_onset_phase_label_makes_a_burst_that_stopped_before_the_horizon_negative():
    # the same burst (t + 200 s to t + 400 s) is positive by its gain alone, negative once the label
    # also asks for the 5-minute rate at t + horizon to match the average rate over the horizon
    assert _label_of_late_burst(600_000 - 400_000, label_sustain=1.0) is False


def test_onset_phase_label_keeps_a_burst_still_running_at_the_horizon_positive():
    assert _label_of_late_burst(600_000 - 200_000, label_sustain=1.0) is True


def test_the_model_learns_on_the_detectors_growth_shape_columns(small_events):
    engine, _ = run_engine(small_events, [], cfg(model={**MODEL["model"], "features": "shape"}))
    assert {"evidence", "growth_z", "fade_z"} <= set(engine.model.features)
    assert engine.model.metrics()["warm"]


def test_cold_model_leaves_the_rule_deciding():
    t0 = 1_000_000_000_000
    _, messages = run_engine(
        batch_of(sorted(_burst("p-hot", "s", t0, 3000))),
        [],
        cfg(model={"enabled": True, "min_labels": 10_000}),
    )
    promote = next(m for m in messages if m["action"] == "promote")
    assert promote["reasons"][0] == "scored_by_rule"


@pytest.fixture(scope="module")
def small_events(scenario_factory):
    return read_events(scenario_factory(**SMALL) / "events.ndjson")


def test_model_learns_on_a_scenario_and_reports_progressive_metrics(small_events):
    engine, _ = run_engine(small_events, [], cfg())
    metrics = engine.model.metrics()
    assert metrics["labels_seen"] > 100 and metrics["warm"]
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["log_loss"] > 0


def test_model_state_round_trips_through_a_checkpoint(small_events, tmp_path):
    config = cfg()
    _, want = run_engine(small_events, [], config)
    first = Engine(config)
    cut = len(small_events) // 2
    got, _ = first.process(small_events.take(np.arange(cut)))
    store = CheckpointStore(tmp_path)
    store.save("x", *first.state(), {0: cut})
    arrays, meta, _ = store.load("x")
    second = Engine.restore(config, arrays, meta)
    more, _ = second.process(small_events.take(np.arange(cut, len(small_events))))
    assert got + more + second.finish() == want


def test_model_decisions_do_not_depend_on_batching(small_events):
    config = cfg()
    assert (
        run_engine(small_events, [1234, 9999, 25_000], config)[1] == run_engine(small_events, [], config)[1]
    )


# Half a day at about 1/8 of the detection benchmark's event rate: six organic viral products at staggered
# onsets, so the model has learned from the first ones (labels one horizon later) when later ones
# start; steady sellers and one-off spikes as distractors.
LEARNING = dict(
    n_events=60_000, n_products=5_000, n_viral=6, n_steady=3, n_spikes=4, duration_s=12 * 3600.0, seed=3
)
# The guard's absolute floor of distinct users, scaled down with the traffic (15 at the benchmark's
# rate): at this rate a viral product needs minutes to reach 15 users and every scorer would wait
# for that gate, so the scores' own timing could not show.
# The model's fast track shortens the confirm wait, a confirm-mode feature (detect.method = "confirm").
# With 3 users a fresh-account share or a conversion rate is a coin toss, and the refusal sticks
# (trust: a hard refusal holds for the episode), so this timing test leaves those rules out.
GATE = {
    "trust": {
        "min_unique_users": 3.0,
        "min_conversion_ratio": 0.0,
        "max_fresh_share_any": 1.0,
        "min_conversion_ratio_any": 0.0,
    },
    "detect": {"method": "confirm"},
}


def _first_promotes(messages: list[dict]) -> dict[str, tuple[int, str, tuple[str, ...]]]:
    """Product -> (event_ts, which scorer decided, all reasons) of its first promote."""
    out: dict[str, tuple[int, str, tuple[str, ...]]] = {}
    for m in messages:
        if m["action"] == "promote":
            out.setdefault(m["product_id"], (m["event_ts"], m["reasons"][0], tuple(m["reasons"])))
    return out


@pytest.fixture(scope="module")
def learning_runs(scenario_factory):
    where = scenario_factory(**LEARNING)
    events = read_events(where / "events.ndjson")
    rule = load_config(None, environ={}, overrides={**GATE, "model": {"enabled": False}})
    model = load_config(
        None, environ={}, overrides={**GATE, "model": {**GAIN, "enabled": True, "min_labels": 50}}
    )
    _, by_rule = run_engine(events, [], rule)
    engine, by_model = run_engine(events, [], model)
    return truth(where), _first_promotes(by_rule), _first_promotes(by_model), engine


def test_model_learns_to_promote_viral_products_earlier_than_the_rule(learning_runs):
    facts, rule, model, _ = learning_runs
    decided = [v for v in facts["viral"] if model.get(v["product_id"], (0, "", ()))[1] == "scored_by_model"]
    assert len(decided) >= 3  # warm in time for most onsets (the first ones teach it)
    for v in decided:
        pid = v["product_id"]
        assert pid in rule, f"the rule never promoted {pid}"
        assert v["onset_ts"] <= model[pid][0] < rule[pid][0], (pid, model[pid][:2], rule[pid][:2])


def test_model_decided_promotions_name_the_features_that_pushed_most(learning_runs):
    _, _, model, engine = learning_runs
    decided = [r for _, by, r in model.values() if by == "scored_by_model"]
    assert decided
    for reasons in decided:
        pushed = [r.removeprefix("model:") for r in reasons if r.startswith("model:")]
        assert 1 <= len(pushed) <= 3
        assert all(p.rstrip("+-.0123456789") in engine.model.features for p in pushed), pushed


def test_while_cold_the_model_run_promotes_exactly_when_the_rule_does(learning_runs):
    facts, rule, model, _ = learning_runs
    cold = [
        v["product_id"]
        for v in facts["viral"]
        if model.get(v["product_id"], (0, "", ()))[1] == "scored_by_rule"
    ]
    assert cold  # the first onset comes before any label is due
    assert all(model[pid] == rule[pid] for pid in cold)


def test_learning_model_promotes_only_viral_products(learning_runs):
    facts, _, model, engine = learning_runs
    viral = {v["product_id"] for v in facts["viral"]}
    assert set(model) == viral  # every viral product; no steady seller, spike or background product
    assert not set(model) & {s["product_id"] for s in facts["steady"]}
    assert engine.model.metrics()["warm"] and engine.model.metrics()["positives_seen"] >= 10


@pytest.fixture(scope="module")
def fast_track_run(scenario_factory):
    """The learning scenario with the default guard and the model's fast track on (60 s wait)."""
    events = read_events(scenario_factory(**LEARNING) / "events.ndjson")
    config = load_config(
        None, environ={}, overrides={"model": {**GAIN, "enabled": True, "min_labels": 50, "confirm_s": 60.0}}
    )
    _, messages = run_engine(events, [], config)
    return _first_promotes(messages)


def test_only_warm_model_promotions_take_the_fast_track(fast_track_run):
    decided = {pid: r for pid, (_, by, r) in fast_track_run.items()}
    assert any(r[0] == "scored_by_model" for r in decided.values())
    for reasons in decided.values():
        fast = "fast_track_confirm_60s" in reasons
        assert fast == (reasons[0] == "scored_by_model"), reasons  # the rule (model cold) waits confirm_s


def _ready_label_of(events_after, label: str = "ready", horizon_s: float = 1200.0) -> tuple[bool, bool]:
    """Sample p-x at t, replay ``events_after`` (ts > t) and the tick t + horizon over a quiet catalogue.

    Returns (its label, whether the rule found p-x ready at some tick in between).
    """
    t0 = 1_000_000_000_000
    engine = Engine(cfg(model={**MODEL["model"], "label": label, "horizon_s": horizon_s}))
    seen = recording(engine)
    background = [r for r in _burst("bg-only", "s", t0, 1) if r[2] != "bg-only" and r[0] <= t0]
    engine.process(batch_of(sorted([*background, (t0, "view", "p-x", "s", None, "user1")])))
    engine.process(batch_of([(t0 + 10_000, "view", "bg1", "s", None, "user2")]))  # fires tick t0 + 10 s
    t = t0 + 10_000
    slot = engine.products.lookup(["p-x"])
    feats = {n: np.zeros(1) for n in engine.model.features}
    engine.labels.add(
        t,
        slot,
        feats,
        np.array([True]),
        baseline_per_s=np.array([0.001]),
        count_at_t=engine._baseline_count(engine.counters.read(slot, t)),
    )
    ready_seen: list[int] = []
    note = engine._note_ready
    engine._note_ready = lambda now, slots: (ready_seen.extend(slots.tolist()), note(now, slots))[1]
    end = t + round(horizon_s * 1000) + 10_000
    quiet = [
        (ts, "view", f"bg{k % 300}", "s", None, f"user{k % 2000}")
        for k, ts in enumerate(range(t + 20_000, end, 20_000))
    ]
    engine.process(batch_of(sorted([*events_after, *quiet])))
    labels = [y for rows, ys in seen for row, y in zip(rows, ys, strict=True) if row == feats_row(feats)]
    assert len(labels) == 1, labels
    return labels[0], int(slot[0]) in ready_seen


T0 = 1_000_000_000_000
RAMP = [r for r in _burst("p-x", "s", T0 + 60_000, 3000) if r[2] == "p-x"]  # accelerating: a trend
# 3000 shares by distinct users evenly over 10 minutes, then nothing: a big gain, a flat step
STEP = [(T0 + 60_000 + i * 200, "share", "p-x", "s", None, f"step{i}") for i in range(3000)]


def test_ready_label_is_positive_when_the_rule_later_finds_the_product_ready():
    assert _ready_label_of(RAMP) == (True, True)


def test_ready_label_is_negative_for_a_flat_step_the_rule_never_finds_ready():
    assert _ready_label_of(STEP) == (False, False)


def test_gain_label_calls_the_same_flat_step_positive():
    assert _ready_label_of(STEP, label="gain")[0] is True


def test_evidence_rows_are_only_rows_where_the_change_evidence_and_user_floor_suffice(small_events):
    model = {"features": "shape", "label": "ready", "rows": "evidence", "sample_every_s": 10.0}
    engine = Engine(cfg(model={**MODEL["model"], **model}))
    added: list[dict[str, np.ndarray]] = []
    add = engine.labels.add

    def spy(t_ms, slots, features, hint=None, **kw):
        added.append({k: np.asarray(v).copy() for k, v in features.items()})
        return add(t_ms, slots, features, hint, **kw)

    engine.labels.add = spy
    engine.process(small_events)
    assert added, "no product reached the change evidence"
    evidence = np.concatenate([f["evidence"] for f in added])
    users = np.concatenate([f["unique_users"] for f in added])
    assert (evidence >= 1.0).all() and (users >= engine.cfg.trust.min_unique_users).all()


def test_touched_rows_include_products_without_change_evidence(small_events):
    engine = Engine(cfg(model={**MODEL["model"], "features": "shape", "sample_every_s": 10.0}))
    added: list[np.ndarray] = []
    add = engine.labels.add

    def spy(t_ms, slots, features, hint=None, **kw):
        added.append(np.asarray(features["evidence"]).copy())
        return add(t_ms, slots, features, hint, **kw)

    engine.labels.add = spy
    engine.process(small_events)
    assert (np.concatenate(added) < 1.0).any()


def _warm(engine: Engine) -> None:
    """Teach the engine's model 40 rows of both classes, so that it is warm."""
    rows = [{n: float(i % 2) for n in engine.model.features} for i in range(40)]
    engine.model.learn_many(rows, [bool(i % 2) for i in range(40)])
    assert engine.model.warm


def test_a_model_learnt_on_evidence_rows_vouches_but_the_rules_score_ranks(monkeypatch):
    from viraltrend.board import Board
    from viraltrend.scoring import RuleScorer

    model = {"features": "shape", "label": "ready", "rows": "evidence", "min_labels": 20}
    engine = Engine(cfg(model={**MODEL["model"], **model}))
    _warm(engine)
    seen = []
    step = Board.step

    def spy(board, now_ms, cand):
        seen.append((cand.score.copy(), {k: v.copy() for k, v in cand.features.items()}, cand.probability))
        return step(board, now_ms, cand)

    monkeypatch.setattr(Board, "step", spy)
    engine.process(batch_of(sorted(_burst("p-hot", "s", T0, 3000))))
    assert seen and all(p is not None for _, _, p in seen)  # warm: the model's probability is there
    rule = RuleScorer(engine.cfg.score)
    for score, feats, _ in seen:
        np.testing.assert_array_equal(score, rule.score_many(feats))


def _vouched(
    change_s: float,
    probability: float,
    min_change_s: float,
    growth_z: float = 0.0,
    min_growth_z: float = -2.0,
    change_users: float = 0.0,
    max_change_users: float = 1e9,
    max_change_s: float = 0.0,
    share_ratio: float | None = None,
) -> bool:
    """The detector's verdict on a candidate whose evidence suffices, with the model's probability."""
    from viraltrend.detect import SequentialDetector

    model = {
        "fast_track_probability": 0.9,
        "min_change_s": min_change_s,
        "min_growth_z": min_growth_z,
        "max_change_users": max_change_users,
        "max_change_s": max_change_s,
        "recruit_share_ratio": 0.0,  # the share gate has its own test (test_detect.py)
        "grown_change_users": 0.0,  # and so has the larger audience of a growing slow ring
    }
    config = cfg(model={"enabled": True, **model})
    cols = {
        "evidence": np.array([2.0]),
        "change_s": np.array([change_s]),
        "growth_z": np.array([growth_z]),  # below detect.growth_z: the rule alone waits detect.sustain_s
        "growth_z_slow": np.array([0.0]),
        "fade_z": np.array([0.0]),
        "recent_lift": np.array([20.0]),
        "change_users": np.array([change_users]),
    }
    if share_ratio is not None:  # a plateau nobody shares on: the rule's sustain path does not take it
        cols["share_ratio"] = np.array([share_ratio])
    users = np.array([50.0])
    assert not SequentialDetector(config, 16).ready(cols, users)[0]
    return bool(SequentialDetector(config, 16).ready(cols, users, np.array([probability]))[0])


def test_the_model_vouches_for_a_flat_candidate_only_at_high_probability():
    assert _vouched(200.0, 0.95, min_change_s=120.0)
    assert not _vouched(200.0, 0.85, min_change_s=120.0)


def test_the_model_does_not_vouch_for_a_change_younger_than_min_change_s():
    assert not _vouched(60.0, 0.999, min_change_s=120.0)
    assert _vouched(60.0, 0.999, min_change_s=0.0)


def test_the_model_vouches_only_for_a_growing_shape_when_min_growth_z_asks_for_it():
    assert not _vouched(200.0, 0.999, min_change_s=120.0, growth_z=-0.5, min_growth_z=1.0)
    assert _vouched(200.0, 0.999, min_change_s=120.0, growth_z=1.5, min_growth_z=1.0)
    assert _vouched(200.0, 0.999, min_change_s=120.0, growth_z=-0.5)  # the default adds nothing


def test_the_model_does_not_vouch_once_the_growth_test_has_the_users_to_see_a_ramp():
    """Past max_change_users users since the change point, a shape without significant growth is a step."""
    assert _vouched(200.0, 0.999, min_change_s=120.0, change_users=100.0, max_change_users=100.0)
    assert not _vouched(200.0, 0.999, min_change_s=120.0, change_users=101.0, max_change_users=100.0)
    assert _vouched(200.0, 0.999, min_change_s=120.0, change_users=5000.0)  # no cap


def test_the_model_does_not_vouch_for_a_change_older_than_max_change_s():
    """An old change has had the sustain path's chance (and its share test); the vouch is for young ones."""
    old = {"min_change_s": 180.0, "share_ratio": 0.0}
    assert _vouched(3600.0, 0.999, **old)  # 0: no bound
    assert not _vouched(3600.0, 0.999, max_change_s=1500.0, **old)
    assert _vouched(1500.0, 0.999, max_change_s=1500.0, **old)
    assert _vouched(600.0, 0.999, max_change_s=1500.0, **old)


def test_a_vouch_counts_only_once_it_has_held_at_every_tick_for_vouch_hold_s():
    """A streak starts at the first vouched tick, breaks at a tick without the vouch, and restarts."""
    engine = Engine(cfg(model={**MODEL["model"], "vouch_hold_s": 20.0}))
    slots = np.array([3, 7], np.int64)

    def tick(t_s: int, *vouched: bool) -> list[bool]:
        return engine.audience_guard.vouch_held(t_s * 1000, slots, np.array(vouched)).tolist()

    assert tick(100, True, True) == [False, False]
    assert tick(110, True, False) == [False, False]  # slot 7's streak broke
    assert tick(120, True, True) == [True, False]  # slot 3 vouched at 100, 110, 120: held 20 s
    assert tick(140, True, True) == [False, False]  # no tick at 130: both streaks start again
    assert tick(150, True, True) == [False, False]
    assert tick(160, True, True) == [True, True]
    assert tick(170, False, True) == [False, True]
    state = Engine.restore(engine.cfg, *engine.state())
    assert state.book.vouch_ms == engine.book.vouch_ms == {7: (140_000, 170_000)}
    engine = Engine(cfg(model={**MODEL["model"], "vouch_hold_s": 0.0}))  # no hold: every vouch counts at once
    assert tick(100, True, False) == [True, False]


#: The model as shipped: ready labels learnt on the rows where only the shape test waits.
READY = {"label": "ready", "rows": "evidence", "features": "shape", "sample_every_s": 10.0}


def test_screened_ticks_change_nothing_under_a_model_learning_on_evidence_rows(small_events, monkeypatch):
    """Quiet touched products screened out: the same messages and the same model as scoring all."""
    config = cfg(model={**MODEL["model"], **READY, "min_labels": 20})
    fast, fast_msgs = run_engine(small_events, [7_001], config)
    assert fast.screen and fast.model is not None and fast.model.labels_seen > 20
    monkeypatch.setattr(Engine, "screen", property(lambda self: False))
    slow, slow_msgs = run_engine(small_events, [7_001], config)
    assert fast_msgs == slow_msgs
    assert fast.model.to_dict() == slow.model.to_dict()


def test_a_vouch_asks_for_a_share_of_fresh_accounts_against_the_catalogues():
    """vouch_fresh_ratio: a ring reuses old accounts (fresh share 0-0.07), a cascade brings new ones."""
    feats = {"evidence": np.ones(4), "fresh_share": np.array([0.0, 0.05, 0.1, 0.3])}
    engine = Engine(cfg(model={**MODEL["model"], "vouch_fresh_ratio": 0.5, "vouch_fresh_evidence": 0.0}))
    engine.guard.catalogue_fresh_share = 0.2
    assert engine.audience_guard.vouch_fresh(feats).tolist() == [False, False, True, True]
    engine.guard.catalogue_fresh_share = 0.0  # a catalogue of no newcomers asks nothing
    assert engine.audience_guard.vouch_fresh(feats).all()
    assert engine.audience_guard.vouch_fresh({"evidence": np.ones(2)}).all()  # no fresh-share column: no test
    engine = Engine(cfg(model={**MODEL["model"], "vouch_fresh_ratio": 0.0}))  # off
    engine.guard.catalogue_fresh_share = 0.2
    assert engine.audience_guard.vouch_fresh(feats).all()


def test_a_vouch_is_refused_for_few_fresh_accounts_only_where_its_sample_can_tell():
    """vouch_fresh_evidence: a dozen events without a fresh account tell little, a ring's hundreds a lot."""
    feats = {
        "evidence": np.ones(4),
        "fresh_share": np.array([0.0, 0.0, 0.02, 0.3]),
        "unique_users": np.array([12.0, 150.0, 150.0, 12.0]),
        "events_per_user": np.array([1.0, 1.0, 1.0, 1.0]),
    }
    model = {**MODEL["model"], "vouch_fresh_ratio": 0.5}
    engine = Engine(cfg(model={**model, "vouch_fresh_evidence": 1.0}))
    engine.guard.catalogue_fresh_share = 0.2  # the bar: 0.1; 12 events expect 1.2 fresh, 150 expect 15
    assert engine.audience_guard.vouch_fresh(feats).tolist() == [True, False, False, True]
    engine = Engine(
        cfg(model={**model, "vouch_fresh_evidence": 0.0})
    )  # off: every share below the bar is refused
    engine.guard.catalogue_fresh_share = 0.2
    assert engine.audience_guard.vouch_fresh(feats).tolist() == [False, False, False, True]
    ev = fresh_shortfall_evidence(feats["fresh_share"], 0.1, feats["events_per_user"], feats["unique_users"])
    assert ev[0] == pytest.approx(1.2 / math.log(10.0)) and ev[3] == 0.0


def test_max_class_weight_reaches_the_engines_model_and_zero_keeps_the_built_in_bound():
    assert Engine(load_config(None, environ={})).model.max_class_weight == 10.0  # the default
    built_in = load_config(None, environ={}, overrides={"model": {"max_class_weight": 0.0}})
    assert Engine(built_in).model.max_class_weight == 100.0
    capped = Engine(load_config(None, environ={}, overrides={"model": {"max_class_weight": 10.0}}))
    assert capped.model.max_class_weight == 10.0
    capped.model.learn_many([{"lift": 1.0}] * 50, np.zeros(50, bool))
    capped.model.learn_one({"lift": 9.0}, True)
    assert capped.model._class_weight(True) / capped.model._class_weight(False) == pytest.approx(10.0)


def test_a_max_class_weight_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model.max_class_weight must be 0 \(the built-in 100\) or >= 1"):
        load_config(None, environ={}, overrides={"model": {"max_class_weight": 0.5}})
