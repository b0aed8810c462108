"""A recycled crowd's light users, at the crowd's own lift (trust16).

A crowd drawn from the users active now overlaps every earlier product it worked on at a lift near
active users / crowd members (2-5 on the market generator), whatever the sample: under
``trust.co_audience_lift``, so the light users' co-audience never fired on it.
``trust.co_audience_light_lift`` is the light users' own lift bar, and ``trust.hold_light_evidence`` holds
(soft) a candidate whose light users already overlap beyond chance by that many powers of ten, re-judged
while its sample grows, so the evidence reaches ``trust.co_audience_light_evidence`` or the hold runs out.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from viraltrend.trust import soft_refusal

ON = {"trust": {"co_audience_light_lift": 2.5, "hold_light_evidence": 2.0, "hold_seller_lift": 0.0}}


def _tick(engine, now_ms: int, slots: list[int], ready: list[bool]) -> None:
    s = np.array(slots, np.int64)
    yes = np.ones(s.size, np.bool_)
    engine.audience_guard.track(now_ms, s, yes, yes, np.array(ready), {"evidence": np.ones(s.size)})


def _crowd(overrides: dict | None):
    """Products 3 (seller 1) and 9 (seller 5) worked by one crowd of 600 of the 2,000 users active now."""
    engine = guard_engine(overrides, population=2_000)
    engine.seller_of[3], engine.seller_of[9] = 1, 5
    engine.sketches.watch(np.array([3, 9], np.int64))
    crowd = np.random.default_rng(5).permutation(np.arange(100_000, 100_600))
    _add(engine, 3, crowd[:200])  # the crowd's earlier product: 200 users (chance 10 %)
    # the candidate's 60: 18 of them in the earlier audience (30 %, 3 x chance, 4 powers of ten)
    other = np.arange(300_000, 300_042)
    _add(engine, 9, np.concatenate([crowd[:18], other]))
    _tick(engine, 60_000, [3, 9], [False, True])
    return engine, crowd, other


def test_a_crowd_at_its_own_lift_is_held_then_refused():
    engine, crowd, other = _crowd(ON)
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_co_audience_light_looking_p-3_shared_18_of_60_light_sampled"), reason
    assert soft_refusal([reason]) and 9 not in engine.guard.lockstep
    # ten minutes on, the candidate has 150 users, the same share of them from the crowd
    _add(engine, 9, np.concatenate([crowd[18:45], np.arange(400_000, 400_063)]))
    _tick(engine, 660_000, [3, 9], [False, True])
    refusal = engine.guard.lockstep.get(9, "")
    assert refusal.startswith("co_audience_light_with_p-3_shared_45_of_150_light_sampled"), refusal


def test_the_light_lift_defaults_to_the_co_audience_lift():
    engine, crowd, _ = _crowd(
        {"trust": {"co_audience_light_lift": 0.0, "hold_light_evidence": 2.0, "hold_light_low_lift": 0.0}}
    )
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    _add(engine, 9, np.concatenate([crowd[18:45], np.arange(400_000, 400_063)]))
    _tick(engine, 660_000, [3, 9], [False, True])
    assert 9 not in engine.guard.lockstep  # 3 x chance is under co_audience_lift's 5


def test_light_users_at_chance_are_not_held():
    engine = guard_engine(ON, population=2_000)
    engine.seller_of[3], engine.seller_of[9] = 1, 5
    engine.sketches.watch(np.array([3, 9], np.int64))
    _add(engine, 3, np.arange(100_000, 100_200))
    _add(engine, 9, np.concatenate([np.arange(100_000, 100_006), np.arange(300_000, 300_054)]))  # 10 %
    _tick(engine, 60_000, [3, 9], [False, True])
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
