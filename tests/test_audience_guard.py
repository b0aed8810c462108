"""The trust guard's audience work as one part of the engine (issue 11, item 3: a thin engine).

:class:`~viraltrend.audience_guard.AudienceGuard` owns the guard's parts (audience samples, activity
counts, audience memory, funnel share, the guard and its book); the engine reads and restores them
through it, and the component judges on its own, given a product table.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.audience_helpers import signature
from tests.conftest import read_events
from tests.test_pinned_decisions import SCENARIO
from viraltrend.audience_guard import AudienceGuard
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.products import ProductTable

_PARTS = ("sketches", "activity", "audiences", "funnel_share", "guard", "book")


@pytest.fixture(scope="module")
def pinned_events(scenario_factory):
    return read_events(scenario_factory(**SCENARIO) / "events.ndjson")


def test_the_engine_keeps_the_guard_s_parts_in_its_audience_guard_across_a_restore(pinned_events):
    cfg = load_config(None, environ={})
    engine = Engine(cfg)
    engine.process(pinned_events.take(np.arange(len(pinned_events) // 2)))
    arrays, meta = engine.state()
    restored = Engine.restore(cfg, {k: v.copy() for k, v in arrays.items()}, json.loads(json.dumps(meta)))
    for e in (engine, restored):
        ag = e.audience_guard
        for name in _PARTS:  # one object each: what the engine restores is what the guard judges with
            assert getattr(e, name) is getattr(ag, name), name
        assert ag.catalog is e.catalog and ag._members() is e.board.members
        assert ag._population() == e._population > 0
    assert restored.book is not engine.book  # a new book, read from the checkpoint
    assert restored.book.ring_refusals == engine.book.ring_refusals
    assert np.array_equal(restored.book.sketched, engine.book.sketched) and engine.book.sketched.size


def test_the_audience_guard_refuses_a_recycled_audience_and_forgets_it_on_its_own():
    cfg = load_config(None, environ={})
    catalog = ProductTable(16, limit=cfg.state.max_products)
    catalog.products.intern(["p-0", "p-1"])
    catalog.grow(16)
    members: dict[int, object] = {}
    ag = AudienceGuard(cfg, catalog, members=lambda: members, population=lambda: 1_000_000)
    users = np.arange(300_000, 300_120, dtype=np.int64)
    ag.audiences.remember(np.array([0], np.int64), np.array([-1], np.int64), signature(users), now_ms=0)
    ag.sketches.watch(np.array([1], np.int64))
    ag.sketches.update(np.full(users.size, 1, np.int64), users)
    one = np.array([True])
    ag.track(60_000, np.array([1], np.int64), one, one, one, {"evidence": np.ones(1)})
    reason = ag.guard.lockstep.get(1, "")
    assert reason.startswith("lockstep_with_p-0_"), reason
    assert ag.book.ring_refusals[1] == (reason, 60_000) and ag.book.sketched.tolist() == [1]
    assert ag.guard_s > 0.0
    memory_ms = round(cfg.trust.audience_memory_s * 1000)
    assert ag.quiet_from_ms() is not None
    ag.quiet(60_000 + memory_ms)  # still remembered...
    assert 1 in ag.guard.lockstep
    ag.quiet(60_000 + memory_ms + 1)  # ...and forgotten past trust.audience_memory_s
    assert not ag.guard.lockstep and not ag.book.ring_refusals and ag.book.sketched.size == 0


def test_each_signal_gives_its_verdict_on_every_candidate_and_the_ladder_records_the_first_refusal():
    """A recycled audience is lockstep and co-audience at once: the ladder records lockstep, with numbers."""
    cfg = load_config(None, environ={})
    catalog = ProductTable(16, limit=cfg.state.max_products)
    catalog.products.intern(["p-0", "p-1", "p-2"])
    catalog.grow(16)
    ag = AudienceGuard(cfg, catalog, members=lambda: {}, population=lambda: 1_000_000)
    ring, strangers = np.arange(300_000, 300_120, dtype=np.int64), np.arange(500_000, 500_120, dtype=np.int64)
    ag.audiences.remember(np.array([0], np.int64), np.array([-1], np.int64), signature(ring), now_ms=0)
    cand = np.array([1, 2], np.int64)  # p-1 recycles p-0's audience, p-2's users are strangers
    ag.sketches.watch(cand)
    ag.sketches.update(np.repeat(cand, ring.size), np.concatenate([ring, strangers]))
    a = ag._read(60_000, cand)
    lockstep, (co_audience, _) = ag._lockstep(a), ag._co_audience(a)
    assert lockstep.hit.tolist() == [True, False] and co_audience.hit.tolist() == [True, False]
    assert lockstep.value[0] >= cfg.trust.lockstep_similarity and co_audience.value[0] >= 6.0
    assert lockstep.partner is not None and lockstep.partner[0] == 0
    assert lockstep.shared is not None and lockstep.shared[0] == 1.0
    assert co_audience.reason(0).startswith("co_audience_with_p-0_shared_")
    assert not ag._dense_block(60_000, a).hit.any() and not ag._uniform_accounts(60_000, a)[0].hit.any()
    both = np.array([True, True])
    ag.track(60_000, cand, both, both, both, {"evidence": np.ones(2)})
    assert ag.guard.lockstep == {1: lockstep.reason(0)}, (
        ag.guard.lockstep
    )  # the first refusal, not the second
    assert lockstep.reason(0).startswith("lockstep_with_p-0_shared_100%_of_"), lockstep.reason(0)
    assert not ag.guard.held  # the strangers' product: nothing refuses or holds it
