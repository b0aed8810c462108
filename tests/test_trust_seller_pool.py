"""The guard against rings it was not tuned on (issue 13, session 9).

* a seller's products pooled: a candidate sharing a few users with each of its seller's other rising
  products (none enough alone) shows as one count against its pooled expectation;
* the evidence hold (``trust.hold_evidence``): a candidate whose overlap is beyond chance, short of a
  refusal, is held while the evidence accumulates, and refused once it is there.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from tests.audience_helpers import signature as _sig
from viraltrend.config import load_config
from viraltrend.trust import AudienceMemory, pooled_evidence, soft_refusal

T = load_config(None, environ={}).trust


def test_a_seller_s_other_products_are_pooled():
    """3 shared users with each of two siblings: no pair has the 4 a co-audience needs; pooled, 6 of 0.9."""
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    a, b = np.arange(1_000, 1_030), np.arange(2_000, 2_030)
    mem.remember(np.array([1, 2], np.int64), np.array([5, 5], np.int64), np.concatenate([_sig(a), _sig(b)]),
                 now_ms=0)  # fmt: skip
    cand = _sig(np.concatenate([a[:3], b[:3], np.arange(9_000, 9_040)]))
    m = mem.best_match(np.array([9, 9], np.int64), np.array([5, 6], np.int64), np.concatenate([cand, cand]),
                       now_ms=1, z=T.lockstep_z, population=3_000.0, co_lift=T.co_audience_lift)  # fmt: skip
    assert m.co_evidence.tolist() == [0.0, 0.0]  # no pair alone
    assert m.seller_shared.tolist() == [6, 0]  # another seller's candidate pools nothing
    assert abs(m.seller_expected[0] - 2 * 46 * 30 / 3_000) < 1e-9
    ev = pooled_evidence(m.seller_shared, m.seller_expected)
    assert ev[0] >= T.hold_evidence and ev[1] == 0.0


def _engine(overrides: dict | None = None):
    return guard_engine(overrides, population=20_000)


def _tick(engine, now_ms: int, slots: list[int], ready: list[bool]) -> None:
    s = np.array(slots, np.int64)
    yes = np.ones(s.size, np.bool_)
    engine.audience_guard.track(now_ms, s, yes, yes, np.array(ready), {"evidence": np.ones(s.size)})


def _ring(overrides: dict | None = None):
    """A ring of 600 accounts boosts products 3, 4 and 9 of seller 5; 9 is ready first, 60 users in."""
    engine = _engine(overrides)
    engine.seller_of[[3, 4, 9]] = 5
    engine.sketches.watch(np.array([3, 4, 9], np.int64))
    ring = np.random.default_rng(7).permutation(np.arange(100_000, 100_600))
    # the siblings' first 55 users each; the candidate's 60 share 3 with each (chance: 0.33 in all)
    _add(engine, 3, ring[:55])
    _add(engine, 4, ring[55:110])
    _add(engine, 9, np.concatenate([ring[:3], ring[55:58], ring[200:254]]))
    _tick(engine, 60_000, [3, 4, 9], [False, False, True])
    return engine, ring


def test_a_ring_s_first_product_is_held_while_its_siblings_overlap_beyond_chance_then_refused():
    engine, ring = _ring()
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_co_audience_looking_seller_shared_6_expected_"), reason
    assert soft_refusal([reason]) and 9 not in engine.guard.lockstep
    # the held product keeps its verdict through the longer hold (trust.hold_evidence_s), not only hold_max_s
    feats = {"evidence": np.array([2.0]), "growth_z": np.ones(1), "growth_z_slow": np.zeros(1),
             "fade_z": np.zeros(1)}  # fmt: skip
    assert engine.audience_guard.still_held(60_000 + 900_000, np.array([9], np.int64), feats).tolist() == [
        1.0
    ]
    # ten minutes on, the siblings' audiences have grown: the same accounts, far beyond chance
    _add(engine, 3, ring[200:230])
    _add(engine, 4, ring[230:260])
    _tick(engine, 660_000, [3, 4, 9], [False, False, True])
    refusal = engine.guard.lockstep.get(9, "")
    assert refusal.startswith(("co_audience_with_", "seller_ring_with_", "lockstep_with_")), refusal
    assert 9 not in engine.guard.held


def test_the_evidence_hold_is_bounded_and_can_be_switched_off():
    engine, _ = _ring({"trust": {"hold_evidence": 0.0, "hold_sibling_s": 0.0}})
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    engine, _ = _ring({"trust": {"hold_sibling_s": 0.0}})
    assert 9 in engine.guard.held
    _tick(engine, 60_000 + round(T.hold_evidence_s * 1000), [3, 4, 9], [False, False, True])
    assert 9 in engine.guard.held
    _tick(engine, 60_000 + round(T.hold_evidence_s * 1000) + 1, [3, 4, 9], [False, False, True])
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep  # held, never refused for it


def test_strangers_to_the_seller_s_other_products_are_not_held():
    engine = _engine({"trust": {"hold_sibling_s": 0.0}})
    engine.seller_of[[3, 4, 9]] = 5
    engine.sketches.watch(np.array([3, 4, 9], np.int64))
    _add(engine, 3, np.arange(1_000, 1_055))
    _add(engine, 4, np.arange(2_000, 2_055))
    _add(engine, 9, np.concatenate([[1_000], np.arange(5_000, 5_059)]))  # one shared user: chance
    _tick(engine, 60_000, [3, 4, 9], [False, False, True])
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep


def test_a_suspect_hold_survives_a_checkpoint():
    from viraltrend.engine import Engine

    engine, _ = _ring()
    arrays, meta = engine.state()
    back = Engine.restore(engine.cfg, arrays, meta)
    assert back.book.suspected == engine.book.suspected == {9: 60_000}


def test_a_candidate_sharing_a_few_accounts_with_each_of_its_seller_s_products_is_refused_pooled():
    """4 shared users with each of two siblings: 4 powers of ten each, 7.7 pooled (8 against 0.33)."""
    engine = _engine()
    engine.seller_of[[3, 4, 9]] = 5
    engine.sketches.watch(np.array([3, 4, 9], np.int64))
    ring = np.arange(100_000, 100_600)
    _add(engine, 3, ring[:55])
    _add(engine, 4, ring[55:110])
    _add(engine, 9, np.concatenate([ring[:4], ring[55:59], ring[200:252]]))
    _tick(engine, 60_000, [3, 4, 9], [False, False, True])
    reason = engine.guard.lockstep.get(9, "")
    assert reason.startswith("co_audience_with_seller_s-5_shared_8_expected_0.3_evidence_"), reason
    assert float(reason.rsplit("_", 1)[1]) >= T.co_audience_evidence
    assert 9 not in engine.guard.held
