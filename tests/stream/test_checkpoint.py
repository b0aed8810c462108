from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import read_events, run_engine
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.errors import CheckpointError
from viraltrend.stream.checkpoint import CheckpointStore


@pytest.fixture(scope="module")
def events(scenario_factory):
    return read_events(scenario_factory(**SMALL) / "events.ndjson")


def test_restored_engine_continues_exactly_like_an_uninterrupted_one(events, tmp_path):
    cfg = load_config(None, environ={})
    _, want = run_engine(events, [])
    first = Engine(cfg)
    cut = len(events) // 2
    got, _ = first.process(events.take(np.arange(cut)))
    store = CheckpointStore(tmp_path)
    arrays, meta = first.state()
    store.save("events-0", arrays, meta, {0: cut})
    arrays2, meta2, offsets = store.load("events-0")
    assert offsets == {0: cut}
    second = Engine.restore(cfg, arrays2, meta2)
    more, _ = second.process(events.take(np.arange(cut, len(events))))
    assert got + more + second.finish() == want


def test_checkpoint_is_plain_json_and_npz(events, tmp_path):
    engine, _ = run_engine(events.take(np.arange(1000)), [])
    CheckpointStore(tmp_path).save("x", *engine.state(), {0: 1000})
    meta = json.loads((tmp_path / "x" / "meta.json").read_text())
    assert meta["offsets"] == {"0": 1000}
    with np.load(tmp_path / "x" / "arrays.npz", allow_pickle=False) as z:
        assert "counters.acc" in z.files


def test_corrupted_checkpoint_is_refused(events, tmp_path):
    engine, _ = run_engine(events.take(np.arange(1000)), [])
    store = CheckpointStore(tmp_path)
    store.save("x", *engine.state(), {0: 1000})
    path = tmp_path / "x" / "arrays.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        store.load("x")


def test_checkpoint_from_other_half_lives_is_refused(events, tmp_path):
    engine, _ = run_engine(events.take(np.arange(1000)), [])
    arrays, meta = engine.state()
    other = load_config(
        None,
        environ={},
        overrides={
            "decay": {"half_lives_s": [60.0, 300.0, 86400.0]},
            "score": {"baseline_half_life_s": 86400.0},
        },
    )
    with pytest.raises(CheckpointError, match="delete the checkpoint directory"):
        Engine.restore(other, arrays, meta)


def test_missing_checkpoint_is_none(tmp_path):
    assert CheckpointStore(tmp_path).load("nothing") is None
