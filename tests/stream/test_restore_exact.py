"""An engine restored from its checkpoint continues exactly like one never stopped, wherever the cut.

Found by the kill -9 fault suite (tests/stream/test_faults.py): a restore after line 25,900 of the
small scenario (with bad records) changes later decisions' detector features (``evidence``,
``growth_z_slow``), so a live run killed there republishes decisions that differ from the
uninterrupted run's.  The sequential detector's state does not round-trip through
``Engine.state()`` / ``Engine.restore()`` exactly.
"""

from __future__ import annotations

import numpy as np

from tests.conftest import read_events
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.engine import Engine


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
