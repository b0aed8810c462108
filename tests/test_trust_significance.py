"""Lockstep shares that are significant: a lower confidence bound, beyond what chance explains."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audience_helpers import signature as _signature
from viraltrend.config import load_config
from viraltrend.trust import AudienceMemory, match_numbers, significant_share


@pytest.mark.parametrize(
    ("shared", "sampled", "chance", "refused"),
    [
        (4, 8, 0.0, False),  # exactly half of a handful: the share of the seed-9 organic block
        (120, 240, 0.0, False),  # exactly half of many: still not more than half
        (4, 4, 0.0, True),  # 4 of 4 (the bound: 0.8)
        (30, 32, 0.0, True),
        (4, 4, 1.0, False),  # the other audience holds everyone: no evidence at all
        (60, 64, 0.6, True),  # 94 % where 60 % is chance: (0.89 - 0.6) / 0.4 = 0.73
        (50, 64, 0.6, False),  # 78 % where 60 % is chance: (0.72 - 0.6) / 0.4 = 0.3
        (3, 3, 0.0, False),  # below the minimum of shared users
    ],
)
def test_a_share_counts_at_its_lower_bound_and_beyond_chance(shared, sampled, chance, refused):
    got = significant_share(np.array([shared]), np.array([sampled]), np.array([chance]), 1.0)
    assert (float(got[0]) >= 0.5) is refused, float(got[0])


def test_the_plain_share_without_a_bound_or_chance():
    got = significant_share(np.array([4, 120]), np.array([8, 240]), np.zeros(2), 0.0)
    assert got.tolist() == [0.5, 0.5]


def test_a_ring_inside_a_small_audience_is_found_and_a_trend_inside_a_giant_one_is_not():
    rng = np.random.default_rng(3)
    mem = AudienceMemory(capacity=8, k=256, memory_ms=10**9)
    ring = rng.choice(60_000, 300, replace=False)
    giant = np.arange(40_000)  # a head product's audience, remembered over hours: everyone active
    mem.remember(np.array([1, 2], np.int64), np.array([-1, -1], np.int64),
                 np.concatenate([_signature(ring), _signature(giant)]), now_ms=0)  # fmt: skip
    population = 3_000.0  # users active within the trust windows
    z = load_config(None, environ={}).trust.lockstep_z
    sibling = _signature(rng.choice(ring, 60, replace=False))
    m = mem.best_match(np.array([7], np.int64), np.array([-1], np.int64), sibling, now_ms=1, z=z,
                       population=population)  # fmt: skip
    assert m.other[0] == 1 and m.sim[0] >= 0.5
    assert m.shared[0] == m.sampled[0] and m.chance[0] == pytest.approx(300 / population, rel=0.1)
    organic = _signature(rng.choice(40_000, 500, replace=False))  # all of it inside the giant audience
    plain = mem.best_match(np.array([8], np.int64), np.array([-1], np.int64), organic, now_ms=1)
    assert plain.sim[0] == 1.0  # the bare share: "all of its users in a remembered audience"
    m = mem.best_match(np.array([8], np.int64), np.array([-1], np.int64), organic, now_ms=1, z=z,
                       population=population)  # fmt: skip
    assert m.sim[0] == 0.0
    assert match_numbers(m, 0).startswith("shared_")


def test_a_same_seller_match_carries_its_own_numbers():
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    mem.remember(np.array([1, 2], np.int64), np.array([5, 6], np.int64),
                 np.concatenate([_signature(range(70, 170)), _signature(range(50, 150))]),
                 now_ms=0)  # fmt: skip
    m = mem.best_match(np.array([9], np.int64), np.array([5], np.int64), _signature(range(40, 80)),
                       now_ms=1, z=1.0, population=10_000.0)  # fmt: skip
    assert m.other_same[0] == 1 and (m.shared_same[0], m.sampled_same[0]) == (10, 40)
    assert m.other[0] == 2 and (m.shared[0], m.sampled[0]) == (30, 40)
    assert match_numbers(m, 0, same=True) == "shared_25%_of_40_sampled_chance_1%"


def test_chance_evidence_grows_with_the_overlap_beyond_chance():
    from viraltrend.trust import chance_evidence

    n = np.array([30, 30, 30, 300, 30])
    got = chance_evidence(np.array([1, 5, 10, 50, 10]), n, np.array([0.003, 0.003, 0.003, 0.003, 0.5]))
    assert got[0] == 0.0  # below the minimum of shared users
    assert 6.0 < got[1] < got[2] < got[3]  # more shared, or as many among more sampled: less likely
    assert got[4] == 0.0  # 10 of 30 where half is chance: below chance


def test_a_group_acting_together_on_part_of_two_audiences_is_found_and_strangers_are_not():
    # 200 ring accounts: a sibling's first minute holds 30 of them, the candidate 60 others and 10 of those
    # 30; neither holds half of the other, but 10 shared where 60 * 30 / 3,000 = 0.6 are expected is a group
    rng = np.random.default_rng(5)
    ring = rng.choice(np.arange(100_000, 200_000), 200, replace=False)
    mem = AudienceMemory(capacity=8, k=256, memory_ms=10**9)
    organic = rng.choice(60_000, 800, replace=False)
    mem.remember(np.array([1, 2], np.int64), np.array([-1, -1], np.int64),
                 np.concatenate([_signature(ring[:30]), _signature(organic)]), now_ms=0)  # fmt: skip
    cand = _signature(np.concatenate([ring[20:30], ring[30:80]]))
    m = mem.best_match(np.array([7], np.int64), np.array([-1], np.int64), cand, now_ms=1, z=1.0,
                       population=3_000.0, co_lift=5.0)  # fmt: skip
    assert m.sim[0] < 0.5  # no lockstep
    assert m.co_other[0] == 1 and (m.co_shared[0], m.co_sampled[0]) == (10, 60) and m.co_evidence[0] > 6
    # an organic trend's users, strangers to both but for chance (800 of 60,000 users)
    stranger = _signature(rng.choice(60_000, 300, replace=False))
    m = mem.best_match(np.array([8], np.int64), np.array([-1], np.int64), stranger, now_ms=1, z=1.0,
                       population=60_000.0, co_lift=5.0)  # fmt: skip
    assert m.co_evidence[0] < 2 and m.sim[0] == 0.0
    # off without a population or with an infinite lift
    m = mem.best_match(np.array([7], np.int64), np.array([-1], np.int64), cand, now_ms=1)
    assert m.co_evidence[0] == 0.0 and m.co_other[0] == -1
