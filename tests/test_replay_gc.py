"""Replay leaves the objects alive at its start out of the collector's walks, and hands them back."""

from __future__ import annotations

import gc
import json

import pytest

import viraltrend.replay as replay_module
from viraltrend.config import load_config
from viraltrend.replay import replay

T0 = 1_764_201_600_000


def _events(path, n=400):
    rows = [
        {
            "event_id": f"e{i}",
            "ts": T0 + i * 1_000,
            "type": "view",
            "product_id": f"p{i % 7}",
            "user_id": f"u{i}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def frozen_during(monkeypatch):
    seen: list[int] = []
    process = replay_module.Engine.process

    def spy(self, batch):
        seen.append(gc.get_freeze_count())
        return process(self, batch)

    monkeypatch.setattr(replay_module.Engine, "process", spy)
    return seen


def test_replay_freezes_the_objects_alive_at_its_start_and_unfreezes_them_after(tmp_path, frozen_during):
    gc.unfreeze()
    before = len(gc.get_objects())
    summary = replay(
        [_events(tmp_path / "e.ndjson")], load_config(None, environ={}), out=tmp_path / "d.ndjson"
    )
    assert summary.events_applied == 400
    assert frozen_during and min(frozen_during) >= before // 2  # the imports' objects, frozen
    assert gc.get_freeze_count() == 0  # handed back: garbage among them is collected as before


def test_replay_leaves_a_callers_own_freeze_alone(tmp_path, frozen_during):
    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        replay([_events(tmp_path / "e.ndjson")], load_config(None, environ={}), out=tmp_path / "d.ndjson")
        # no freeze of its own (a frozen object freed by its refcount leaves the count), none undone
        assert frozen_during and max(frozen_during) <= mine
        assert gc.get_freeze_count() > mine // 2
    finally:
        gc.unfreeze()
