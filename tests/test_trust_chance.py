"""A heterogeneous chance null for lockstep and co-audience (``trust.chance_heavy_users``).

Heavy users (deal hunters: tens of visits a day, early in many trends and in most flash sales) are
in many audiences by chance; the uniform null (``chance = audience users / population``) treats
their overlap between a small trend and a sale as a ring.  The activity-weighted null expects them
there (from ``heavy`` times the active users' mean activity on), while accounts that act little but
always together, even with a few earlier events of the ring's own work, still stand out.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.config import load_config
from viraltrend.kernels.audience import AudienceSketches
from viraltrend.trust import AudienceMemory, activity_chance, activity_reference, activity_weights

POPULATION = 3_000.0
CASUAL, HEAVY = 5, 300  # earlier events of a casual user and of a deal hunter
#: the active users' plain mean of (events + 1): 1 % deal hunters
MEAN = 0.99 * (CASUAL + 1) + 0.01 * (HEAVY + 1)


def _sample(users, activity, k=256):
    """Bottom-k sample (and the sampled users' activity) of one audience."""
    sk = AudienceSketches(k=k)
    sk.watch(np.array([0], np.int64))
    users = np.asarray(users, np.int64)
    sk.update(np.zeros(users.size, np.int64), users, np.asarray(activity, np.uint16))
    rows = np.array([0], np.int64)
    return sk.signatures(rows), sk.values(rows)


def _match(mem, users, activity, heavy):
    sig, val = _sample(users, activity)
    t = load_config(None, environ={}).trust
    weight = activity_weights(sig, val, MEAN, heavy)
    return mem.best_match(np.array([9], np.int64), np.array([-1], np.int64), sig, now_ms=1, z=t.lockstep_z,
                          population=POPULATION, co_lift=t.co_audience_lift, weight=weight)  # fmt: skip


@pytest.fixture
def memory():
    """A flash sale's audience (135 casual buyers and 15 deal hunters) and a ring's (150 light accounts)."""
    mem = AudienceMemory(capacity=8, k=256, memory_ms=10**9)
    sale_users = np.concatenate([np.arange(1000, 1135), np.arange(1, 16)])  # 1-15: deal hunters
    ring_users = np.arange(5000, 5150)
    sale, _ = _sample(sale_users, np.full(150, CASUAL))
    ring, _ = _sample(ring_users, np.full(150, CASUAL))
    mem.remember(
        np.array([1, 2], np.int64), np.array([-1, -1], np.int64), np.concatenate([sale, ring]), now_ms=0
    )
    return mem


def test_deal_hunters_early_in_a_small_trend_are_a_ring_under_the_uniform_null_and_chance_under_the_weighted(
    memory,
):
    """14 of a trend's first 40 users are deal hunters who were in the sale: 35 % where chance is 5 %."""
    t = load_config(None, environ={}).trust
    users = np.concatenate([np.arange(1, 15), np.arange(20_000, 20_026)])
    activity = np.concatenate([np.full(14, HEAVY), np.full(26, CASUAL)])
    uniform = _match(memory, users, activity, 0.0)
    assert uniform.co_other[0] == 1 and uniform.co_shared[0] == 14 and uniform.co_sampled[0] == 40
    assert uniform.co_evidence[0] >= t.co_audience_evidence  # the old null: a co-audience block
    weighted = _match(memory, users, activity, 4.0)
    assert weighted.co_evidence[0] < t.co_audience_evidence  # heavy users explain it
    assert weighted.co_evidence[0] == 0.0 and weighted.sim[0] < t.lockstep_similarity
    assert weighted.chance[0] > uniform.chance[0]


def test_light_accounts_acting_together_still_stand_out_under_the_weighted_null(memory):
    """14 of 40 sampled users from the ring: evidence under both nulls, more when weighted."""
    t = load_config(None, environ={}).trust
    users = np.concatenate([np.arange(5000, 5014), np.arange(30_000, 30_026)])
    activity = np.concatenate([np.full(14, 3 * CASUAL), np.full(26, CASUAL)])  # the ring's own earlier events
    uniform = _match(memory, users, activity, 0.0)
    weighted = _match(memory, users, activity, 4.0)
    assert uniform.co_other[0] == weighted.co_other[0] == 2
    assert weighted.co_evidence[0] == pytest.approx(uniform.co_evidence[0])
    assert uniform.co_evidence[0] >= t.co_audience_evidence
    ring = _match(memory, np.arange(5000, 5040), np.full(40, 3 * CASUAL), 4.0)  # all 40 from the ring
    assert ring.other[0] == 2 and ring.sim[0] >= t.lockstep_similarity


def test_share_zero_is_the_uniform_null_exactly(memory):
    users = np.concatenate([np.arange(1, 15), np.arange(20_000, 20_026)])
    activity = np.concatenate([np.full(14, HEAVY), np.full(26, CASUAL)])
    sig, val = _sample(users, activity)
    assert activity_weights(sig, val, MEAN, 0.0) is None
    assert activity_weights(sig, val, float("nan"), 4.0) is None  # no reference yet: uniform
    plain = memory.best_match(np.array([9], np.int64), np.array([-1], np.int64), sig, now_ms=1, z=1.0,
                              population=POPULATION, co_lift=5.0)  # fmt: skip
    ones = activity_weights(sig, np.full_like(val, 3), 1.0, 4.0)  # every user up to heavy x the mean
    same = memory.best_match(np.array([9], np.int64), np.array([-1], np.int64), sig, now_ms=1, z=1.0,
                             population=POPULATION, co_lift=5.0, weight=ones)  # fmt: skip
    for a, b in zip(plain, same, strict=True):
        np.testing.assert_allclose(a, b)


def test_the_reference_from_audiences_is_the_populations_plain_mean():
    """Audiences hold users in proportion to their activity; their harmonic mean undoes that bias."""
    rng = np.random.default_rng(5)
    act = np.minimum(rng.pareto(1.5, 60_000) * 4, 3000).astype(np.int64)
    p = (act + 1) / (act + 1).sum()
    rows = []
    for _ in range(200):
        users = np.unique(rng.choice(act.size, 300, p=p))
        rows.append(_sample(users, act[users]))
    sig = np.concatenate([r[0] for r in rows])
    val = np.concatenate([r[1] for r in rows])
    ref = activity_reference(sig, val)
    assert ref == pytest.approx((act + 1).mean(), rel=0.1)
    assert np.average(act + 1, weights=p) > 2 * ref  # the plain mean of the samples is far off


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
    st.lists(st.floats(0.0, 50.0), min_size=1, max_size=12),
    st.data(),
)
def test_activity_chance_properties(chances, weights, data):
    """In [0, 1]; uniform weights give the uniform chance; never down when a user's weight goes up;
    with the sampled users' mean weight 1 never above the uniform chance (min(1, c w) is concave)."""
    chance, w = np.array(chances), np.array([weights])
    k = w.shape[1]
    sampled = np.array([data.draw(st.lists(st.integers(0, k), min_size=chance.size, max_size=chance.size))])
    got = activity_chance(chance, w, sampled)
    assert ((got >= 0) & (got <= 1 + 1e-12)).all()
    flat = activity_chance(chance, np.ones_like(w), sampled)
    np.testing.assert_allclose(flat, np.broadcast_to(chance, flat.shape), atol=1e-12)
    j = data.draw(st.integers(0, k - 1))
    up = w.copy()
    up[0, j] += data.draw(st.floats(0.0, 10.0))
    assert (activity_chance(chance, up, sampled) >= got - 1e-12).all()
    n = data.draw(st.integers(1, k))
    norm = w[:, :n] / max(w[:, :n].mean(), 1e-9)
    if w[:, :n].mean() > 1e-9:
        mean1 = activity_chance(chance, norm, np.full((1, chance.size), n))
        assert (mean1 <= chance + 1e-9).all()
