"""A vouched promotion waits for the guard's audience sample (issue 13, session 13).

The online model makes a product ready minutes before the rule would, while the guard has sampled a
dozen or two of its users, and a promoted product is not judged again (``AudienceGuard.track`` judges
only ready products off the board).  On the market generator's tuning seeds attacked products were
promoted that way and blocked under ``rule only`` once the rule made them ready, on 27-68 sampled
users (RESULTS detect12).  ``trust.vouch_confirm_users``: a candidate ready only because the model
vouched, with fewer sampled users, is held (soft, never a block by itself) up to
``trust.vouch_confirm_s`` since first held so, and judged by every test at each tick it is ready.
"""

from __future__ import annotations

import numpy as np

from viraltrend.config import load_config
from viraltrend.trust import soft_refusal

CROWD = np.arange(100_000, 100_200)  # an earlier product's audience: 200 users, all held by the sample
ON = {"trust": {"vouch_confirm_users": 30, "vouch_confirm_s": 600.0, "vouch_confirm_evidence": 0.0}}


def _engine(overrides: dict | None = None):
    from viraltrend.engine import Engine

    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    # the light users' holds (trust16, trust19's weaker lift) would hold this 6-of-18 sample at 4.8 x
    # chance on their own: off here, so each test looks at the vouch hold alone
    overrides.setdefault("trust", {}).setdefault("hold_light_evidence", 0.0)
    overrides["trust"].setdefault("hold_light_low_lift", 0.0)
    engine = Engine(load_config(None, environ={}, overrides=overrides))
    engine.products.intern([f"p-{i}" for i in range(16)])
    engine.sellers.intern([f"s-{i}" for i in range(8)])
    engine._grow(16)
    engine._population = round(200 / 0.069)
    engine.seller_of[[3, 9]] = [1, 2]  # two sellers: no sibling hold, no seller pool
    engine.sketches.watch(np.array([3, 9], np.int64))
    _add(engine, 3, CROWD)
    _add(engine, 9, np.concatenate([CROWD[:6], np.arange(9_000, 9_012)]))  # 18 sampled, 6 of the crowd
    return engine


def _add(engine, slot: int, users) -> None:
    users = np.asarray(users, np.int64)
    engine.sketches.update(np.full(users.size, slot, np.int64), users, np.zeros(users.size, np.uint16))


def _tick(engine, now_ms: int, vouched: bool) -> None:
    s = np.array([3, 9], np.int64)
    yes = np.ones(2, np.bool_)
    feats = {"evidence": np.ones(2), "model_vouched": np.array([0.0, float(vouched)])}
    engine.audience_guard.track(now_ms, s, yes, yes, np.array([False, True]), feats)


def test_a_vouch_on_a_short_sample_is_held_then_refused_once_the_sample_shows_the_crowd():
    engine = _engine(ON)
    _tick(engine, 60_000, vouched=True)
    reason = engine.guard.held.get(9, "")
    assert reason == "held_vouch_sample_18_of_30_sampled", reason
    assert soft_refusal([reason]) and 9 not in engine.guard.lockstep
    _tick(engine, 120_000, vouched=True)  # still short: still held
    assert engine.guard.held.get(9) == "held_vouch_sample_18_of_30_sampled"
    # its audience grows with the same crowd: every test judges it on the larger sample, and refuses it
    _add(engine, 9, np.concatenate([CROWD[6:30], np.arange(9_100, 9_110)]))
    _tick(engine, 300_000, vouched=True)
    assert engine.guard.lockstep.get(9, "").startswith("co_audience_with_p-3_"), engine.guard.lockstep
    assert 9 not in engine.guard.held


def test_an_organic_sample_passes_once_it_has_the_users():
    engine = _engine(ON)
    _tick(engine, 60_000, vouched=True)
    assert 9 in engine.guard.held
    _add(engine, 9, np.arange(20_000, 20_020))  # new users of its own: 38 sampled, the same 6 shared
    _tick(engine, 120_000, vouched=True)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep


def test_the_rule_s_own_ready_and_the_switch_are_not_held():
    engine = _engine(ON)
    _tick(engine, 60_000, vouched=False)  # ready by the rule: judged on what it has, as before
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    for off in (
        {"trust": {"vouch_confirm_users": 0, "vouch_confirm_s": 600.0}},
        {"trust": {"vouch_confirm_s": 0.0}},
    ):
        engine = _engine(off)
        _tick(engine, 60_000, vouched=True)
        assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep


def test_the_hold_is_bounded_and_survives_a_checkpoint():
    engine = _engine(ON)
    _tick(engine, 60_000, vouched=True)
    _tick(engine, 90_000, vouched=False)  # a tick without the vouch keeps the first-held time
    assert engine.book.vouch_since == {9: 60_000}
    _tick(engine, 60_000 + 600_000, vouched=True)
    assert 9 in engine.guard.held
    _tick(engine, 60_000 + 600_001, vouched=True)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep  # held, never refused for it
    _, meta = engine.state()
    assert meta["vouch_since"] == [(9, 60_000)] or meta["vouch_since"] == [[9, 60_000]]


def test_the_default_holds_only_a_vouch_whose_users_already_overlap_beyond_chance():
    """6 of 18 shared at 4.8 x chance (under co_audience_lift): not held; 9 of 24 shared: held."""
    engine = _engine()
    _tick(engine, 60_000, vouched=True)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    _add(
        engine, 9, np.concatenate([CROWD[6:9], np.arange(9_200, 9_203)])
    )  # 9 of 24: beyond chance, no refusal
    _tick(engine, 120_000, vouched=True)
    assert engine.guard.held.get(9, "").startswith("held_"), (engine.guard.held, engine.guard.lockstep)
