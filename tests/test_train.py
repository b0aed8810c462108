"""`viraltrend train` (a replay that only learns) and starting warm from its model file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_engine import SMALL
from viraltrend.board import Board, Candidates
from viraltrend.cli import main
from viraltrend.config import load_config
from viraltrend.engine import Engine, model_features
from viraltrend.errors import CheckpointError
from viraltrend.model import MODEL_FORMAT
from viraltrend.replay import replay
from viraltrend.train import train

MODEL = {
    "min_labels": 20,
    "horizon_s": 600.0,
    "label_min_events": 50.0,
    "label_lift": 5.0,
    # gain labels on every touched product (the default learns ready labels on evidence rows only)
    "label": "gain",
    "rows": "touched",
    "features": "rates",
    "sample_every_s": 60.0,
    "min_change_s": 0.0,
}


def cfg(**model):
    return load_config(None, environ={}, overrides={"model": {**MODEL, **model}})


@pytest.fixture(scope="module")
def small_file(scenario_factory):
    return scenario_factory(**SMALL) / "events.ndjson"


@pytest.fixture(scope="module")
def trained(small_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.json"
    summary = train([small_file], cfg(), out=out)
    return out, summary


def test_train_writes_a_warm_model_as_plain_json(trained):
    out, summary = trained
    d = json.loads(out.read_text())
    assert d["format"] == MODEL_FORMAT and d["params"]["features"] == list(model_features(cfg()))
    assert summary.model["warm"] and summary.model["labels_seen"] == d["labels"][0] > 100
    assert 0.0 <= summary.model["roc_auc"] <= 1.0 and summary.streams == 1


def test_a_file_that_starts_over_in_event_time_is_a_second_stream_for_the_same_model(small_file, tmp_path):
    one = train([small_file], cfg(), out=tmp_path / "one.json")
    two = train([small_file, small_file], cfg(), out=tmp_path / "two.json")
    assert two.streams == 2 and two.events_valid == 2 * one.events_valid
    assert two.model["labels_seen"] == 2 * one.model["labels_seen"]  # nothing of the second file late


def test_replay_with_the_model_starts_warm_from_the_first_promotion(trained, small_file, tmp_path):
    model_file, _ = trained
    out = tmp_path / "decisions.ndjson"
    replay([small_file], cfg(enabled=True, checkpoint=str(model_file)), out=out)
    promotes = [m for m in map(json.loads, out.read_text().splitlines()) if m["action"] == "promote"]
    assert promotes
    assert all(m["reasons"][0] == "scored_by_model" for m in promotes)


def test_cli_train_then_replay_with_model(small_file, tmp_path, capsys):
    model_file = tmp_path / "m.json"
    config = tmp_path / "c.toml"
    config.write_text("[model]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in MODEL.items()))
    args = ["--config", str(config), "--no-progress"]
    assert main(["train", str(small_file), "--out", str(model_file), *args]) == 0
    printed = capsys.readouterr().out
    assert "progressive ROC AUC" in printed and "labels seen" in printed and model_file.exists()
    out = tmp_path / "d.ndjson"
    assert main(["replay", str(small_file), "--out", str(out), "--model", str(model_file), *args]) == 0
    first = next(m for m in map(json.loads, out.read_text().splitlines()) if m["action"] == "promote")
    assert first["reasons"][0] == "scored_by_model"


def test_a_corrupted_model_file_is_refused_naming_the_file_and_the_fix(tmp_path, trained):
    bad = tmp_path / "model.json"
    bad.write_text(trained[0].read_text()[:200])
    with pytest.raises(CheckpointError, match=r"model\.json.*viraltrend train") as err:
        Engine(cfg(enabled=True, checkpoint=str(bad)))
    assert str(bad) in str(err.value)


def test_a_model_trained_on_other_features_is_refused(tmp_path, trained):
    with pytest.raises(CheckpointError, match=r"trained on the features .*viraltrend train"):
        Engine(cfg(enabled=True, checkpoint=str(trained[0]), features="shape"))


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "no such file"), ('{"version": 1}', "not a viraltrend model"), ("[1, 2]", "not a viraltrend")],
)
def test_missing_or_foreign_model_files_are_refused(tmp_path, content, says):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CheckpointError, match=says):
        Engine(cfg(enabled=True, checkpoint=str(path)))


def test_cli_reports_a_bad_model_file_as_an_error(tmp_path, small_file, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text("not json")
    code = main(["replay", str(small_file), "--out", str(tmp_path / "d.ndjson"), "--model", str(bad)])
    assert code == 2
    assert "broken.json" in capsys.readouterr().err


def _candidate(p: float, vouched: bool, scored_by: str = "rule") -> Candidates:
    one = np.ones(1)
    return Candidates(
        slot=np.array([0], np.int64),
        product_id=["p"],
        seller_id=[None],
        category=[None],
        score=one,
        features={
            "evidence": one,
            "evidence_lift": one,
            "change_s": one,
            "growth_z": one,
            "model_p": np.array([p]),
            "model_vouched": np.array([float(vouched)]),
        },
        scored_by=scored_by,
        probability=np.array([p]),
    )


@pytest.mark.parametrize(("p", "vouched"), [(0.93, True), (0.93, False)])
def test_a_promotion_the_model_vouched_for_says_so(p, vouched):
    """Only a promotion made ready by the model's vouch says so; a high probability alone does not."""
    board = Board(load_config(None, environ={}).board, sequential=True, fast_track_probability=0.5)
    reasons = board._why_trending(_candidate(p, vouched), 0)
    assert ("model_vouched_p0.93" in reasons) == vouched
    assert reasons[0] == "scored_by_rule"


READY = {"label": "ready", "rows": "evidence", "features": "shape", "sample_every_s": 10.0}


def test_train_with_ready_labels_learns_only_at_the_change_evidence_and_starts_replay_warm(
    small_file, tmp_path
):
    out = tmp_path / "ready.json"
    summary = train([small_file], cfg(**READY), out=out)
    assert summary.model["warm"] and 0 < summary.model["positives_seen"] < summary.model["labels_seen"]
    engine = Engine(cfg(enabled=True, checkpoint=str(out), **READY))
    assert engine.model is not None and engine.model.warm  # decides from the first tick
