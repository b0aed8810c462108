"""The guard's hold: a ready product held back while its audience evidence is still accumulating."""

from __future__ import annotations

import numpy as np

from viraltrend.config import load_config
from viraltrend.trust import TrustGuard, hold_reason, soft_refusal


def _engine(overrides: dict | None = None):
    from viraltrend.engine import Engine

    engine = Engine(load_config(None, environ={}, overrides=overrides or {}))
    assert engine.products.intern([f"p-{i}" for i in range(16)]).tolist() == list(range(16))
    assert engine.sellers.intern([f"s-{i}" for i in range(8)]).tolist() == list(range(8))
    engine._grow(16)
    return engine


def _heavy_catalogue(engine, rng: np.random.Generator) -> None:
    """Four other hot audiences of 80 users with heavy-tailed activity (the uniform test's reference)."""
    others = np.arange(1, 5, dtype=np.int64)
    engine.sketches.watch(others)
    for slot in others.tolist():
        users = np.arange(slot * 10_000, slot * 10_000 + 80, dtype=np.int64)
        act = np.minimum(rng.pareto(1.2, 80) * 4, 60_000).astype(np.uint16)
        engine.sketches.update(np.full(80, slot, np.int64), users, act)


def _tick(engine, now_ms: int, slots: list[int], ready: list[bool]) -> None:
    s = np.array(slots, np.int64)
    yes = np.ones(s.size, np.bool_)
    engine.audience_guard.track(now_ms, s, yes, yes, np.array(ready), {"evidence": np.ones(s.size)})


def _uniform_candidate(activity: np.ndarray, overrides: dict | None = None):
    engine = _engine(overrides)
    _heavy_catalogue(engine, np.random.default_rng(11))
    engine.sketches.watch(np.array([9], np.int64))
    users = np.arange(500_000, 500_000 + activity.size, dtype=np.int64)
    engine.sketches.update(np.full(users.size, 9, np.int64), users, activity.astype(np.uint16))
    _tick(engine, 60_000, [9], [True])
    return engine


def test_a_few_accounts_acting_alike_are_held_until_the_uniform_test_has_its_users():
    rng = np.random.default_rng(4)
    ring = rng.poisson(9.0, 20)  # 20 sampled accounts that each acted about 9 times before
    engine = _uniform_candidate(ring)
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_uniform_looking_dispersion_") and reason.endswith("_20_of_30_sampled"), (
        reason
    )
    assert 9 not in engine.guard.lockstep  # held, not refused
    assert soft_refusal([reason])
    # the hold lasts at most trust.hold_max_s since the product was first held
    hold_ms = round(engine.cfg.trust.hold_max_s * 1000)
    _tick(engine, 60_000 + hold_ms, [9], [True])
    assert 9 in engine.guard.held
    _tick(engine, 60_000 + hold_ms + 1_000, [9], [True])
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    # switched off, too few users to judge, or a heavy-tailed audience: not held
    assert 9 not in _uniform_candidate(ring, {"trust": {"hold_max_s": 0.0}}).guard.held
    assert 9 not in _uniform_candidate(ring[:8]).guard.held
    organic = np.minimum(rng.pareto(1.2, 20) * 4, 60_000)
    assert 9 not in _uniform_candidate(organic).guard.held
    # from uniform_confirm_users (36) on the uniform test itself decides: a refusal, no hold
    full = _uniform_candidate(rng.poisson(9.0, 40))
    assert 9 not in full.guard.held and full.guard.lockstep[9].startswith("uniform_accounts_")


def _sibling_engine(
    seller_of_candidate: int, candidate_users: int, overrides: dict | None = None, sibling_users: int = 30
):
    engine = _engine(overrides)
    engine.seller_of[3] = 5
    engine.seller_of[9] = seller_of_candidate
    engine.sketches.watch(np.array([3, 9], np.int64))
    rng = np.random.default_rng(3)
    n = sibling_users
    engine.sketches.update(
        np.full(n, 3, np.int64), np.arange(1_000, 1_000 + n, dtype=np.int64), np.zeros(n, np.uint16)
    )
    users = np.arange(2_000, 2_000 + candidate_users, dtype=np.int64)  # strangers to product 3 so far
    act = np.minimum(rng.pareto(1.2, users.size) * 4, 60_000).astype(np.uint16)
    engine.sketches.update(np.full(users.size, 9, np.int64), users, act)
    _tick(engine, 60_000, [3, 9], [False, True])
    return engine


def test_a_product_is_held_while_another_product_of_its_seller_trends_and_both_audiences_are_young():
    engine = _sibling_engine(5, 12)
    assert engine.guard.held.get(9) == "held_seller_sibling_p-3_12_of_50_sampled"
    assert 3 not in engine.guard.held  # not ready: nothing to hold
    # another seller's product, an audience sample already large enough, or switched off: not held
    assert 9 not in _sibling_engine(6, 12).guard.held
    assert 9 not in _sibling_engine(5, 50).guard.held
    assert 9 not in _sibling_engine(5, 12, sibling_users=50).guard.held  # the sibling's audience can tell
    assert 9 not in _sibling_engine(5, 12, {"trust": {"hold_max_s": 0.0}}).guard.held
    assert 9 not in _sibling_engine(5, 12, {"trust": {"hold_sibling_s": 0.0}}).guard.held  # hot this tick
    # a sibling hot longer ago than trust.hold_sibling_s does not hold
    late = _sibling_engine(5, 12, {"trust": {"hold_sibling_s": 10.0}})
    _tick(late, 60_000 + 11_000, [9], [True])
    assert 9 not in late.guard.held


def test_a_hold_is_a_soft_refusal_that_never_sticks_and_survives_a_checkpoint():
    guard = TrustGuard(load_config(None, environ={}).trust)
    guard.held[7] = hold_reason("seller_sibling_p-3", 12, 50)
    feats = {
        "unique_users": np.array([40.0]),
        "fresh_share": np.array([0.0]),
        "conversion_ratio": np.array([1.0]),
        "events_per_user": np.array([1.0]),
    }
    reasons = guard.check("p-7", "s-1", 7, feats, 0)
    assert reasons == ["held_seller_sibling_p-3_12_of_50_sampled"] and soft_refusal(reasons)
    assert guard.check("p-8", "s-1", 8, feats, 0) is None
    feats["conversion_ratio"] = np.array([0.0])  # a hard refusal: the hold is moot, the refusal stays hard
    hard = guard.check("p-7", "s-1", 7, feats, 0) or []
    assert hard and not soft_refusal(hard) and not any(r.startswith("held_") for r in hard)

    from viraltrend.engine import Engine

    engine = _sibling_engine(5, 12)
    arrays, meta = engine.state()
    back = Engine.restore(engine.cfg, arrays, meta)
    assert back.book.held_since == engine.book.held_since == {9: 60_000}


def test_a_quiet_catalogue_judges_uniform_accounts_by_its_last_activity_spread():
    from viraltrend.engine import Engine

    ring = np.random.default_rng(4).poisson(9.0, 40)
    engine = _uniform_candidate(ring)  # heavy-tailed hot audiences: judged, and remembered
    phi, when = engine.book.catalogue_phi
    assert phi > 0.5 and when == 60_000
    # later, no other audience is hot: the figure of the last audience_memory_s stands in
    later = Engine(engine.cfg)
    later.products.intern([f"p-{i}" for i in range(16)])
    later._grow(16)
    later.book.catalogue_phi = (phi, 60_000)
    later.sketches.watch(np.array([9], np.int64))
    users = np.arange(500_000, 500_040, dtype=np.int64)
    later.sketches.update(np.full(40, 9, np.int64), users, ring.astype(np.uint16))
    _tick(later, 60_000 + 3_600_000, [9], [True])
    assert later.guard.lockstep.get(9, "").startswith("uniform_accounts_"), later.guard.lockstep
    stale = Engine(engine.cfg)
    stale.products.intern([f"p-{i}" for i in range(16)])
    stale._grow(16)
    stale.book.catalogue_phi = (phi, 60_000)
    stale.sketches.watch(np.array([9], np.int64))
    stale.sketches.update(np.full(40, 9, np.int64), users, ring.astype(np.uint16))
    memory_ms = round(engine.cfg.trust.audience_memory_s * 1000)
    _tick(stale, 60_000 + memory_ms + 1, [9], [True])  # older than trust.audience_memory_s: not judged
    assert 9 not in stale.guard.lockstep


def test_a_held_product_stays_ready_through_its_hold_while_its_change_holds_up():
    engine = _sibling_engine(5, 12)
    assert 9 in engine.guard.held
    slots = np.array([8, 9, 9, 9], np.int64)
    feats = {
        "evidence": np.array([2.0, 2.0, 0.5, 2.0]),
        "growth_z": np.array([1.0, 1.0, 1.0, -9.0]),  # the last row is fading
        "growth_z_slow": np.zeros(4),
        "fade_z": np.zeros(4),
    }
    assert engine.audience_guard.still_held(70_000, slots, feats).tolist() == [0.0, 1.0, 0.0, 0.0]
    # no longer than trust.hold_max_s (300 s) since it was first held, plus 300 s (its next ticks with
    # events after the hold: a slow product has none at many ticks)
    limit = round(engine.cfg.trust.hold_max_s * 1000) + 300_000
    assert engine.audience_guard.still_held(60_000 + limit, slots, feats).tolist() == [0.0, 1.0, 0.0, 0.0]
    assert engine.audience_guard.still_held(60_000 + limit + 1, slots, feats).tolist() == [0.0] * 4
