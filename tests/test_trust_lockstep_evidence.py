"""Lockstep needs its shared users to be unlikely by chance, not only a share past half (trust14).

A handful of sampled users found in a large remembered audience clears the share's lower bound (5 of 6
where a quarter of the active users are in that audience: 0.64 at one standard error, 0.51 beyond
chance) while chance gives it once in 75 (1.9 powers of ten): organic products were refused so on 6
and 9 sampled users.  ``trust.lockstep_evidence`` asks the same Chernoff bound as the co-audience test.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import signature as _signature
from viraltrend.config import load_config
from viraltrend.trust import AudienceMemory, chance_evidence


def _memory() -> AudienceMemory:
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    big = np.arange(200)  # a flash sale's audience: 200 of the 770 users active now (26 %)
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(big), now_ms=0)
    return mem


def _match(mem: AudienceMemory, users, evidence: float):
    return mem.best_match(np.array([7], np.int64), np.array([-1], np.int64), _signature(users), now_ms=1,
                          z=1.0, population=770.0, co_lift=5.0, min_evidence=evidence)  # fmt: skip


def test_five_of_six_in_a_big_audience_is_a_share_but_not_evidence():
    users = [*range(5), 10_000]
    ungated = _match(_memory(), users, 0.0)
    assert ungated.sim[0] >= 0.5 and (ungated.shared[0], ungated.sampled[0]) == (5, 6)
    assert chance_evidence(ungated.shared, ungated.sampled, ungated.chance)[0] < 2.0
    gated = _match(_memory(), users, load_config(None, environ={}).trust.lockstep_evidence)
    assert gated.sim[0] < 0.5


def test_a_ring_inside_a_small_audience_is_still_lockstep():
    mem = _memory()
    ring = np.arange(50_000, 50_040)  # 40 accounts: 5 % of the active users
    mem.remember(np.array([2], np.int64), np.array([-1], np.int64), _signature(ring), now_ms=0)
    evidence = load_config(None, environ={}).trust.lockstep_evidence
    gated = _match(mem, [*ring[:12], *range(60_000, 60_004)], evidence)
    assert gated.other[0] == 2 and gated.sim[0] >= 0.5 and (gated.shared[0], gated.sampled[0]) == (12, 16)


def test_the_same_seller_answer_is_not_gated():
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    mem.remember(np.array([1], np.int64), np.array([5], np.int64), _signature(np.arange(200)), now_ms=0)
    m = mem.best_match(np.array([7], np.int64), np.array([5], np.int64), _signature([*range(5), 10_000]),
                       now_ms=1, z=1.0, population=770.0, min_evidence=4.0)  # fmt: skip
    assert m.sim[0] == 0.0 and m.other_same[0] == 1 and m.sim_same[0] >= 0.5
