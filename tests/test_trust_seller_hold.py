"""A seller's sibling overlapping beyond chance at a ring's lift is held for (trust15).

A ring's products share a sizable part of the users active now, so the lift of their overlap stays near
active users / ring accounts (2-4 on the market generator), under ``trust.co_audience_lift``, while the share
grows with the sibling's audience to the seller-ring refusal.  ``trust.hold_seller_lift``: a candidate whose
best same-seller overlap is ``trust.hold_evidence`` powers of ten against chance at that lift is held (soft)
and re-judged while the evidence accumulates.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from viraltrend.trust import soft_refusal


def _tick(engine, now_ms: int, slots: list[int], ready: list[bool]) -> None:
    s = np.array(slots, np.int64)
    yes = np.ones(s.size, np.bool_)
    engine.audience_guard.track(now_ms, s, yes, yes, np.array(ready), {"evidence": np.ones(s.size)})


def _ring(overrides: dict | None = None):
    """Seller 5's products 3 and 9, boosted by a ring of 600 of the 2,000 users active now."""
    engine = guard_engine(overrides, population=2_000)
    engine.seller_of[[3, 9]] = 5
    engine.sketches.watch(np.array([3, 9], np.int64))
    ring = np.random.default_rng(3).permutation(np.arange(100_000, 100_600))
    _add(engine, 3, ring[:200])  # the sibling: 200 accounts so far (chance 10 %)
    # the candidate's 60: 18 in the sibling's audience (30 %, 3 x chance, 4 powers of ten), the rest not yet
    _add(engine, 9, np.concatenate([ring[:18], ring[200:218], ring[400:424]]))
    _tick(engine, 60_000, [3, 9], [False, True])
    return engine, ring


def test_a_sibling_overlap_at_a_ring_s_lift_is_held_then_refused():
    engine, ring = _ring()
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_seller_ring_looking_p-3_shared_30%_of_60_sampled_chance_10%"), reason
    assert soft_refusal([reason]) and 9 not in engine.guard.lockstep
    _add(engine, 3, ring[200:400])  # ten minutes on, the sibling's audience has grown from the same accounts
    _tick(engine, 660_000, [3, 9], [False, True])
    refusal = engine.guard.lockstep.get(9, "")
    assert refusal.startswith("seller_ring_with_p-3_shared_"), refusal


def test_the_seller_hold_can_be_switched_off():
    engine, _ = _ring(
        {"trust": {"hold_seller_lift": 0.0, "hold_light_evidence": 0.0, "hold_light_low_lift": 0.0}}
    )
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
