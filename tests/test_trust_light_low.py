"""A crowd's later product against its large first one, held at a weaker light lift (trust19).

A crowd that worked a product holding a fifth of the active users overlaps its later products' light
users at a lift near 2: under ``trust.co_audience_light_lift`` (2.5), and on the 14-38 light users of
the one judgment most candidates get, at 1-2 powers of ten beyond chance.  ``trust.hold_light_low_lift``
holds such a short sample (soft) so it is judged again as its sample grows, and
``trust.hold_light_low_refuse`` refuses it once the overlap at that lift is that far beyond chance.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from viraltrend.config import load_config
from viraltrend.trust import soft_refusal

LOW = {"hold_light_low_lift": 1.5, "hold_light_low_evidence": 1.0, "hold_light_low_users": 40}
OFF = {"trust": {"hold_light_low_lift": 0.0, "hold_seller_lift": 0.0}}
HOLD = {"trust": {**LOW, "hold_light_low_refuse": 0.0, "hold_seller_lift": 0.0}}
REFUSE = {"trust": {**LOW, "hold_light_low_refuse": 3.0, "hold_seller_lift": 0.0}}


def _tick(engine, now_ms: int, slots: list[int], ready: list[bool]) -> None:
    s = np.array(slots, np.int64)
    yes = np.ones(s.size, np.bool_)
    engine.audience_guard.track(now_ms, s, yes, yes, np.array(ready), {"evidence": np.ones(s.size)})


def _crowd(overrides: dict):
    """Product 3 (seller 1): 200 of the 1,000 users active now; product 9 (seller 5): 9 of its 20 in it."""
    engine = guard_engine(overrides, population=1_000)
    engine.seller_of[3], engine.seller_of[9] = 1, 5
    engine.sketches.watch(np.array([3, 9], np.int64))
    crowd = np.random.default_rng(7).permutation(np.arange(100_000, 100_200))
    _add(engine, 3, crowd)  # chance 20 %
    _add(engine, 9, np.concatenate([crowd[:9], np.arange(300_000, 300_011)]))  # 45 %: lift 2.25, 1.4 powers
    _tick(engine, 60_000, [3, 9], [False, True])
    return engine, crowd


def _grow(engine, crowd) -> None:
    """Ten minutes on: 120 users, the same share of them from the crowd (8 powers of ten, lift 2.25)."""
    _add(engine, 9, np.concatenate([crowd[9:54], np.arange(400_000, 400_055)]))
    _tick(engine, 660_000, [3, 9], [False, True])


def test_a_short_sample_at_a_crowds_lift_is_held_then_refused():
    engine, crowd = _crowd(REFUSE)
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_co_audience_light_low_looking_p-3_shared_9_of_20_light_sampled"), reason
    assert soft_refusal([reason]) and 9 not in engine.guard.lockstep
    _grow(engine, crowd)  # past hold_light_low_users: a held one is still judged at the weaker lift
    refusal = engine.guard.lockstep.get(9, "")
    assert refusal.startswith("co_audience_light_low_with_p-3_shared_54_of_120_light_sampled"), refusal


def test_the_hold_alone_delays_and_never_refuses():
    engine, crowd = _crowd(HOLD)
    assert 9 in engine.guard.held
    _grow(engine, crowd)
    assert engine.guard.held.get(9, "").startswith("held_co_audience_light_low_looking_p-3_")
    assert 9 not in engine.guard.lockstep


def test_off_nothing_is_held():
    engine, crowd = _crowd(OFF)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    _grow(engine, crowd)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep  # lift 2.25 < co_audience_light_lift


def test_on_by_default():
    cfg = load_config(None, environ={})
    assert (cfg.trust.hold_light_low_lift, cfg.trust.hold_light_low_refuse) == (1.5, 3.0)
    assert cfg.trust.hold_light_low_users == 80


def test_a_long_sample_is_not_held_at_the_weaker_lift():
    engine = guard_engine(HOLD, population=1_000)
    engine.seller_of[3], engine.seller_of[9] = 1, 5
    engine.sketches.watch(np.array([3, 9], np.int64))
    crowd = np.arange(100_000, 100_200)
    _add(engine, 3, crowd)
    _add(engine, 9, np.concatenate([crowd[:27], np.arange(300_000, 300_033)]))  # 60 light users, 45 %
    _tick(engine, 60_000, [3, 9], [False, True])
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep


def test_with_the_evidence_hold_off_a_crowds_lift_held_by_a_sibling_is_no_low_hold():
    """``trust.hold_evidence_s = 0`` (the evidence hold off): the weaker-lift look is no hold of its own.

    Product 9 is held by its seller's young sibling instead (``trust.hold_max_s``); it was recorded as
    held at the weaker lift (``book.low_held``) from the evidence hold's start, which it never had:
    a KeyError before ladder26.
    """
    engine = guard_engine(
        {"trust": {**LOW, "hold_seller_lift": 0.0, "hold_evidence_s": 0.0}}, population=1_000
    )
    engine.seller_of[3], engine.seller_of[9], engine.seller_of[10] = 1, 5, 5
    engine.sketches.watch(np.array([3, 9, 10], np.int64))
    crowd = np.random.default_rng(7).permutation(np.arange(100_000, 100_200))
    _add(engine, 3, crowd)
    _add(engine, 9, np.concatenate([crowd[:9], np.arange(300_000, 300_011)]))
    _add(engine, 10, np.arange(500_000, 500_012))  # its sibling: 12 users, none shared
    _tick(engine, 60_000, [3, 9, 10], [False, True, False])
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_seller_sibling_p-10_20_of_50_sampled"), reason
    assert not engine.book.low_held and not engine.book.suspected
