"""The co-audience among light users (trust15): heavy users in a crowd must not dilute its overlap.

A crowd of real users paid per task holds heavy users (deal hunters), each expected in many audiences;
their chance, averaged with the light users', lifts the mean chance so far that the crowd's overlap with
an earlier product it worked on stays below ``trust.co_audience_lift`` times it.  Among the light users
alone (weight 1, their activity explains no overlap) the overlap is as far beyond chance as a ring's.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import signature as _signature
from viraltrend.config import load_config
from viraltrend.trust import AudienceMemory, light_numbers

HEAVY_WEIGHT = 6.0  # a deal hunter's chance, relative to an average user's


def _case():
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    earlier = np.arange(250)  # the crowd's earlier product: 250 of the 2,500 users active now (10 %)
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(earlier), now_ms=0)
    light = [*range(15), *range(10_000, 10_015)]  # 15 of its 30 light users worked on the earlier product
    heavy = [*range(100, 108), *range(20_000, 20_012)]  # 8 of its 20 heavy users did too
    sig = _signature([*light, *heavy])
    weight = np.where(np.isin(sig, _signature(heavy)), HEAVY_WEIGHT, 1.0)
    return mem, sig, weight


def _match(mem, sig, weight, light: bool):
    return mem.best_match(np.array([7], np.int64), np.array([-1], np.int64), sig, now_ms=1, z=1.0,
                          population=2500.0, co_lift=5.0, weight=weight, light=light)  # fmt: skip


def test_heavy_users_dilute_the_overlap_of_the_whole_sample():
    mem, sig, weight = _case()
    m = _match(mem, sig, weight, light=False)
    assert m.co_evidence[0] == 0.0  # 23 of 50 against a mean chance of 30 %: 1.5 x chance, below the lift
    assert m.light_evidence is not None and m.light_evidence[0] == 0.0  # not asked


def test_the_light_users_show_the_crowd():
    mem, sig, weight = _case()
    m = _match(mem, sig, weight, light=True)
    assert m.light_evidence is not None and m.light_other is not None
    assert (m.light_shared[0], m.light_sampled[0]) == (15, 30) and m.light_other[0] == 1
    assert m.light_evidence[0] >= load_config(None, environ={}).trust.co_audience_light_evidence
    assert light_numbers(m, 0).startswith("shared_15_of_30_light_sampled_expected_3.0_evidence_6.")


def test_light_users_at_chance_are_not_refused():
    mem = AudienceMemory(capacity=4, k=256, memory_ms=10**9)
    mem.remember(np.array([1], np.int64), np.array([-1], np.int64), _signature(np.arange(250)), now_ms=0)
    users = [*range(3), *range(10_000, 10_027)]  # 3 of 30 light users: chance's 10 %
    sig = _signature(users)
    m = _match(mem, sig, np.ones(sig.shape), light=True)
    assert m.light_evidence is not None and m.light_evidence[0] == 0.0
