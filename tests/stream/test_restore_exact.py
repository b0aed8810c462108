"""An engine restored from its checkpoint continues exactly like one never stopped, wherever the cut.

Found by the kill -9 fault suite (tests/stream/test_faults.py): a restore after line 25,900 of the
small scenario (with bad records) changes later decisions' detector features (``evidence``,
``growth_z_slow``), so a live run killed there republishes decisions that differ from the
uninterrupted run's.  The sequential detector's state does not round-trip through
``Engine.state()`` / ``Engine.restore()`` exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import read_events
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.stream.changelog import ChangelogStore, create_changelog_topic
from viraltrend.stream.checkpoint import ChainPolicy, LocalStore


def _messages(engine: Engine, events, lo: int, hi: int, step: int = 700) -> list[dict]:
    out: list[dict] = []
    for a in range(lo, hi, step):
        messages, _ = engine.process(events.take(np.arange(a, min(a + step, hi))))
        out += [{k: v for k, v in m.items() if k != "emitted_at"} for m in messages]
    return out


def test_a_restore_at_any_cut_changes_no_decision(scenario_factory):
    """One pass: the engine is replaced by its own restored checkpoint at every cut.

    Each segment's decisions must equal the uninterrupted run's, so the first cut whose restore
    is not exact is named (two passes over the scenario instead of one per cut).
    """
    events = read_events(scenario_factory(**SMALL) / "events.ndjson")
    cfg = load_config(None, environ={})
    cuts = [*range(2_100, len(events), 2_100), len(events)]
    reference = Engine(cfg)
    engine = Engine(cfg)
    lo = 0
    for cut in cuts:
        want = _messages(reference, events, lo, cut)
        got = _messages(engine, events, lo, cut)
        assert got == want, f"decisions differ after a restore at event {lo}"
        engine = Engine.restore(cfg, *engine.state())
        lo = cut


def _assert_same_state(got: tuple, want: tuple) -> None:
    (g_arrays, g_meta), (w_arrays, w_meta) = got, want
    assert sorted(g_arrays) == sorted(w_arrays)
    for name, arr in w_arrays.items():
        assert g_arrays[name].dtype == arr.dtype and g_arrays[name].shape == arr.shape, name
        assert np.array_equal(g_arrays[name], arr, equal_nan=arr.dtype.kind == "f"), name
    assert g_meta == json.loads(json.dumps(w_meta))


@pytest.mark.parametrize("store_kind", ["local", pytest.param("changelog", marks=pytest.mark.integration)])
def test_a_restore_from_a_base_and_its_deltas_is_the_full_state_and_changes_no_decision(
    scenario_factory, tmp_path, store_kind, request
):
    """One engine runs uninterrupted and checkpoints at every cut: a base, then deltas on it.

    At each cut a fresh store instance loads the chain (base + every delta so far), which must
    equal the state the engine had, and an engine restored from it must make the same decisions
    over the next segment as the uninterrupted one.
    """
    events = read_events(scenario_factory(**SMALL) / "events.ndjson")
    cfg = load_config(None, environ={})
    policy = ChainPolicy(max_deltas=100, max_chain_ratio=100.0)
    if store_kind == "local":
        store = LocalStore(tmp_path, "in", policy=policy)

        def fresh() -> LocalStore:
            return LocalStore(tmp_path, "in")
    else:
        broker = request.getfixturevalue("broker")
        topic = f"exact-chain-{tmp_path.name}"
        create_changelog_topic(broker.bootstrap_servers, topic, 1)
        store = ChangelogStore(broker.bootstrap_servers, topic, "in", partitions=1, policy=policy)

        def fresh() -> ChangelogStore:
            return ChangelogStore(broker.bootstrap_servers, topic, "in", partitions=1)

    cuts = [*range(3_000, len(events), 3_000), len(events)]
    reference = Engine(cfg)
    restored: Engine | None = None
    lo = 0
    seqs = []
    for cut in cuts:
        want = _messages(reference, events, lo, cut)
        if restored is not None:
            assert _messages(restored, events, lo, cut) == want, f"decisions differ after a restore at {lo}"
        state = reference.state()
        store.save(0, *state, {0: cut})
        seqs.append(store.last_save[0])
        reader = fresh()
        arrays, meta, offsets = reader.load(0)
        assert offsets == {0: cut}
        assert reader.last_load_deltas == seqs[-1]
        _assert_same_state((arrays, meta), state)
        restored = Engine.restore(cfg, arrays, meta)
        reader.close()
        lo = cut
    store.close()
    assert seqs == list(range(len(cuts)))  # one base, then only deltas
