"""The audience memory's span (trust10): overlaps remembered for a day, the dense block over hours."""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import signature as _signature
from viraltrend.config import TrustConfig
from viraltrend.trust import AudienceMemory

HOUR_MS = 3_600_000


def _memory(t: TrustConfig) -> AudienceMemory:
    return AudienceMemory(
        capacity=t.audience_memory_size, k=t.audience_sample, memory_ms=round(t.audience_memory_s * 1000)
    )


def test_a_crowd_reused_8_hours_later_is_still_remembered_by_default():
    # a paid crowd's products staggered 6.5-8 h apart (past a 6 h memory): the second product's users
    # are found in the first's remembered audience
    t = TrustConfig()
    mem = _memory(t)
    rng = np.random.default_rng(5)
    crowd = np.arange(10_000, 10_600)
    first = rng.choice(crowd, 240, replace=False)
    mem.remember(np.array([1], np.int64), np.array([3], np.int64), _signature(first), now_ms=0)
    second = rng.choice(crowd, 240, replace=False)
    m = mem.best_match(
        np.array([2], np.int64), np.array([4], np.int64), _signature(second), now_ms=8 * HOUR_MS,
        population=3000.0, co_lift=t.co_audience_lift,
    )  # fmt: skip
    assert m.co_other[0] == 1 and m.co_evidence[0] >= t.co_audience_evidence


def test_the_dense_block_counts_only_products_hot_within_its_own_window():
    # a block sums over every remembered product: a day of trends would add up for heavy users, so the
    # density looks only dense_block_memory_s back while pairwise overlaps look audience_memory_s back
    t = TrustConfig()
    assert t.dense_block_memory_s < t.audience_memory_s
    mem = _memory(t)
    rng = np.random.default_rng(3)
    ring = np.arange(100_000, 100_300)
    for j in range(7):  # a ring spread over 7 products, hot 10 h before the candidate
        mem.remember(np.array([j], np.int64), np.array([-1], np.int64),
                     _signature(rng.choice(ring, 100, replace=False)), now_ms=0)  # fmt: skip
    cand = _signature(rng.choice(ring, 100, replace=False))
    now = 10 * HOUR_MS
    old, n_old = mem.block_density(np.array([99], np.int64), cand, now_ms=now)
    assert old[0] >= t.dense_block_density and n_old[0] == 7  # the whole memory
    within = round(t.dense_block_memory_s * 1000)
    dense, n = mem.block_density(np.array([99], np.int64), cand, now_ms=now, within_ms=within)
    assert dense[0] == 0.0 and n[0] == 0
    recent, n_recent = mem.block_density(np.array([99], np.int64), cand, now_ms=HOUR_MS, within_ms=within)
    assert recent[0] >= t.dense_block_density and n_recent[0] == 7
    m = mem.best_match(np.array([99], np.int64), np.array([-1], np.int64), cand, now_ms=now)
    assert m.other[0] >= 0  # the pairwise overlap still sees them
