"""Lockstep's evidence bar counts the audiences it looked in, and holds in between (trust19, after trust18c).

A candidate is compared with every remembered audience (250-300 live on market) and refused against the
best: 6 of 7 sampled users in an audience holding 12 % of the active users is 4.3 powers of ten against that
one audience, past ``trust.lockstep_evidence`` (4), but the best of 300 audiences is 300 times likelier
(1.8 powers).  With ``trust.lockstep_look_elsewhere`` the refusal asks for the raised bar, and a candidate
between the two bars is held (``held_lockstep_looking_...``), re-judged as its sample grows: trust18c's
plain pass let a flash spike refused at 4.4 powers through (fresh market 241).
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from tests.audience_helpers import signature as _signature
from viraltrend.trust import AudienceMemory, chance_evidence, soft_refusal

_OTHERS = 299  # small unrelated audiences remembered beside the big one


def _memory() -> AudienceMemory:
    mem = AudienceMemory(capacity=512, k=256, memory_ms=10**9)
    big = np.arange(200)  # a flash sale's audience: 200 of the 1,667 users active now (12 %)
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(big), now_ms=0)
    for i in range(_OTHERS):
        users = np.arange(100_000 + 10 * i, 100_000 + 10 * i + 10)
        mem.remember(np.array([10 + i], np.int64), np.array([-1], np.int64), _signature(users), now_ms=0)
    return mem


def _match(mem: AudienceMemory, users, look: bool):
    return mem.best_match(np.array([7], np.int64), np.array([-1], np.int64), _signature(users), now_ms=1,
                          z=1.0, population=1667.0, co_lift=5.0, min_evidence=4.0,
                          look_elsewhere=look)  # fmt: skip


def test_six_of_seven_in_one_of_300_audiences_is_lockstep_only_at_the_plain_bar():
    users = [*range(6), 10_000]
    plain = _match(_memory(), users, False)
    assert (plain.shared[0], plain.sampled[0]) == (6, 7) and plain.other[0] == 1 and plain.sim[0] >= 0.5
    assert 4.0 <= chance_evidence(plain.shared, plain.sampled, plain.chance)[0] < 4.0 + np.log10(300)
    assert plain.plain_sim is not None and plain.plain_sim[0] == 0.0  # not asked
    look = _match(_memory(), users, True)
    assert look.sim[0] < 0.5
    assert look.plain_sim is not None and look.plain_sim[0] >= 0.5 and look.plain_other is not None
    assert look.plain_other[0] == 1


def test_a_ring_inside_a_small_audience_is_still_lockstep():
    mem = _memory()
    ring = np.arange(50_000, 50_080)  # 80 accounts: 5 % of the active users
    mem.remember(np.array([2], np.int64), np.array([-1], np.int64), _signature(ring), now_ms=0)
    m = _match(mem, [*ring[:12], *range(60_000, 60_004)], True)
    assert m.other[0] == 2 and m.sim[0] >= 0.5 and (m.shared[0], m.sampled[0]) == (12, 16)


def _engine(look: bool):
    """Product 3's audience: 200 of the 1,667 users active now, with 120 small ones remembered beside it;
    candidate 9: 6 of its 7 users in it (4.3 powers of ten against one audience, 2.2 against the best of 121).
    """
    engine = guard_engine({"trust": {"lockstep_look_elsewhere": look}}, population=1_667)
    engine.products.intern([f"q-{i}" for i in range(120)])
    engine._grow(136)
    engine.seller_of[:] = -1
    engine.sketches.watch(np.array([3, 9], np.int64))
    _add(engine, 3, np.arange(200))
    for i in range(120):
        engine.audiences.remember(
            np.array([16 + i], np.int64), np.array([-1], np.int64),
            _signature(np.arange(100_000 + 10 * i, 100_010 + 10 * i)), now_ms=0,
        )  # fmt: skip
    _add(engine, 9, np.array([*range(6), 10_000]))
    s = np.array([3, 9], np.int64)
    yes = np.ones(2, np.bool_)
    engine._track_audiences(60_000, s, yes, yes, np.array([False, True]), {"evidence": np.ones(2)})
    return engine


def test_between_the_bars_the_engine_holds_instead_of_refusing():
    off = _engine(False)
    assert off.guard.lockstep.get(9, "").startswith("lockstep_with_p-3_shared_86%_of_7_sampled")
    on = _engine(True)
    assert 9 not in on.guard.lockstep
    reason = on.guard.held.get(9, "")
    assert reason.startswith("held_lockstep_looking_p-3_shared_86%_of_7_sampled"), reason
    assert soft_refusal([reason])
