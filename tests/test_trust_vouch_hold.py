"""The model's vouch waits for the guard's audience evidence (issue 13, session 11).

The online model makes a product ready minutes before the rule would, on an audience of a dozen or two
sampled users: an overlap with a remembered audience of four or five times chance is then only 2-3
powers of ten, short of both a refusal and the evidence hold's bar (twice ``trust.co_audience_lift``).
On the market generator's tuning seeds five crowdturf and rotating-ring products were promoted that way,
each refused by the rule alone minutes later.  ``trust.hold_vouch_lift``: a vouched candidate whose
overlap is ``trust.hold_evidence`` powers of ten beyond chance at that lower lift is held (soft, never a
block by itself) up to ``trust.hold_evidence_s``, and so is a product already held for its overlap, so
its hold does not lapse while its evidence comes in; both only while the candidate's audience sample
holds fewer than ``trust.hold_sampled_users`` users (an organic medium ramp held past that reached a
co-audience refusal with a flash sale's deal hunters at 84 sampled users).
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from tests.audience_helpers import signature as _sig
from viraltrend.config import load_config
from viraltrend.trust import AudienceMemory, soft_refusal

T = load_config(None, environ={}).trust
CROWD = np.arange(100_000, 100_200)  # an earlier product's audience: 200 users, all held by the sample


def test_best_match_reports_the_overlap_at_the_lower_lift():
    """6 of 18 sampled users in an audience chance puts 1.24 of them in: lift 4.8, 2.4 powers of ten."""
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    mem.remember(np.array([3], np.int64), np.array([1], np.int64), _sig(CROWD), now_ms=0)
    cand = _sig(np.concatenate([CROWD[:6], np.arange(9_000, 9_012)]))
    kw = {"now_ms": 1, "z": T.lockstep_z, "population": 200 / 0.069, "co_lift": 5.0}
    m = mem.best_match(np.array([9], np.int64), np.array([2], np.int64), cand, **kw)
    assert m.co_evidence.tolist() == [0.0] and m.look_evidence is None  # under co_lift; no lower bar asked
    m = mem.best_match(np.array([9], np.int64), np.array([2], np.int64), cand, look_lift=4.0, **kw)
    assert m.co_evidence.tolist() == [0.0]
    assert m.look_other.tolist() == [3] and m.look_shared.tolist() == [6] and m.look_sampled.tolist() == [18]
    assert 2.0 <= m.look_evidence[0] <= 3.0 and abs(m.look_expected[0] - 1.24) < 0.01
    m = mem.best_match(np.array([9], np.int64), np.array([2], np.int64), cand, look_lift=5.0, **kw)
    assert m.look_evidence.tolist() == [0.0] and m.look_other.tolist() == [-1]


def _engine(overrides: dict | None = None):
    engine = guard_engine(overrides, population=round(200 / 0.069))
    engine.seller_of[[3, 9]] = [1, 2]  # two sellers: no sibling hold, no seller pool
    engine.sketches.watch(np.array([3, 9], np.int64))
    _add(engine, 3, CROWD)
    _add(engine, 9, np.concatenate([CROWD[:6], np.arange(9_000, 9_012)]))
    return engine


def _tick(engine, now_ms: int, vouched: bool) -> None:
    s = np.array([3, 9], np.int64)
    yes = np.ones(2, np.bool_)
    feats = {"evidence": np.ones(2), "model_vouched": np.array([0.0, float(vouched)])}
    engine._track_audiences(now_ms, s, yes, yes, np.array([False, True]), feats)


def test_a_vouched_candidate_with_a_modest_overlap_is_held_then_refused_as_it_grows():
    engine = _engine({"trust": {"hold_vouch_lift": 4.0}})
    _tick(engine, 60_000, vouched=True)
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_co_audience_looking_p-3_shared_6_of_18_sampled_expected_1.2_"), reason
    assert soft_refusal([reason]) and 9 not in engine.guard.lockstep
    # the next tick the rule holds the verdict (_still_held), not the model: still held, at the lower bar
    _tick(engine, 120_000, vouched=False)
    assert engine.guard.held.get(9, "").startswith("held_co_audience_looking_p-3_")
    # its audience grows with the same crowd: refused
    _add(engine, 9, np.concatenate([CROWD[6:30], np.arange(9_100, 9_120)]))
    _tick(engine, 600_000, vouched=False)
    assert engine.guard.lockstep.get(9, "").startswith("co_audience_with_p-3_"), engine.guard.lockstep
    assert 9 not in engine.guard.held


def test_the_rule_s_own_ready_and_the_switch_keep_the_old_bar():
    engine = _engine({"trust": {"hold_vouch_lift": 4.0}})
    _tick(engine, 60_000, vouched=False)  # ready by the rule: the evidence hold's bar (2 x co_audience_lift)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    engine = _engine({"trust": {"hold_vouch_lift": 0.0}})
    _tick(engine, 60_000, vouched=True)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep


def test_the_vouch_hold_is_bounded():
    engine = _engine({"trust": {"hold_vouch_lift": 4.0}})
    _tick(engine, 60_000, vouched=True)
    _tick(engine, 60_000 + round(T.hold_evidence_s * 1000), vouched=True)
    assert 9 in engine.guard.held
    _tick(engine, 60_000 + round(T.hold_evidence_s * 1000) + 1, vouched=True)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep  # held, never refused for it


def test_an_audience_that_can_tell_is_judged_at_the_usual_bar():
    """The same lift in an audience of hold_sampled_users sampled users: not held at the lower bar."""
    engine = _engine({"trust": {"hold_vouch_lift": 4.0}})
    n = T.hold_sampled_users
    _add(engine, 9, np.arange(9_012, 9_000 + n - 6))  # 6 crowd users of n sampled
    engine._population = round(200 / 0.069 * n / 18)  # chance scaled: 1.24 expected, lift 4.8, 2.2 powers
    _tick(engine, 60_000, vouched=True)
    assert 9 not in engine.guard.held and 9 not in engine.guard.lockstep
    # the same candidate while the audience is still young (a bar one user higher): held at the lower bar
    engine = _engine({"trust": {"hold_vouch_lift": 4.0, "hold_sampled_users": n + 1}})
    _add(engine, 9, np.arange(9_012, 9_000 + n - 6))
    engine._population = round(200 / 0.069 * n / 18)
    _tick(engine, 60_000, vouched=True)
    reason = engine.guard.held.get(9, "")
    assert reason.startswith("held_co_audience_looking_p-3_shared_6_of_50_"), reason
