"""The engine's small column kernels against the numpy expressions they replace."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.kernels.columns import below, in_sorted, trust_rows
from viraltrend.kernels.decay import DecayedCounters

PROPERTY = settings(max_examples=200, deadline=None)
_SLOTS = st.lists(st.integers(0, 60), max_size=40)


@PROPERTY
@given(a=_SLOTS, b=_SLOTS)
def test_in_sorted_is_isin_for_sorted_columns(a, b):
    a_, b_ = np.sort(np.array(a, np.int64)), np.sort(np.array(b, np.int64))
    np.testing.assert_array_equal(in_sorted(a_, b_), np.isin(a_, b_))


@PROPERTY
@given(rows=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10**13), st.booleans(), st.booleans())))
def test_trust_rows_are_the_three_concatenated_selections(rows):
    slots = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] for r in rows], np.int64)
    new_pair = np.array([r[2] for r in rows], np.bool_)
    fresh = np.array([r[3] for r in rows], np.bool_)
    got_slots, channel, got_ts = trust_rows(slots, ts, new_pair, fresh)
    want_channel = np.concatenate(
        [
            np.zeros(int(new_pair.sum()), np.int8),
            np.ones(int(fresh.sum()), np.int8),
            np.full(len(rows), 2, np.int8),
        ]
    )
    np.testing.assert_array_equal(got_slots, np.concatenate([slots[new_pair], slots[fresh], slots]))
    np.testing.assert_array_equal(got_ts, np.concatenate([ts[new_pair], ts[fresh], ts]))
    np.testing.assert_array_equal(channel, want_channel)
    assert channel.dtype == np.int8 and got_slots.dtype == got_ts.dtype == np.int64


@PROPERTY
@given(seed=st.integers(0, 10_000), n_products=st.integers(1, 30), limit=st.floats(1e-3, 50.0))
def test_below_is_the_exact_comparison_or_declines(seed, n_products, limit):
    events = reference.random_events(seed, n=200, n_products=n_products)
    counters = DecayedCounters(half_lives_s=(60.0, 3600.0), n_types=6, capacity=n_products)
    counters.add(*events.columns())
    now_ms, w = events.max_ts_ms + 60_000, np.array([1.0, 2.0, 3.0, 5.0, 4.0, 8.0])
    slots = np.arange(n_products, dtype=np.int64)
    want = counters.read(slots, now_ms)[:, :, 1] @ w < limit
    got = below(counters.acc, slots, lam=float(counters.lam[1]), dt_s=counters.dt_s(now_ms), half_life=1,
                weights=w, limit=limit)  # fmt: skip
    if got is not None:
        np.testing.assert_array_equal(got != 0, want)


def test_below_declines_at_the_limit():
    acc = np.zeros((2, 2, 1))
    acc[1, 0, 0] = 0.05
    got = below(
        acc, np.arange(2, dtype=np.int64), lam=0.0, dt_s=0.0, half_life=0, weights=np.ones(2), limit=0.05
    )
    assert got is None
    got = below(
        acc, np.arange(2, dtype=np.int64), lam=0.0, dt_s=0.0, half_life=0, weights=np.ones(2), limit=0.06
    )
    assert got is not None and got.tolist() == [1, 1]


def test_unique_counts_is_np_unique_with_counts():
    from viraltrend.kernels.columns import unique_counts

    rng = np.random.default_rng(3)
    for n in (0, 1, 5, 1000):
        parts = [rng.integers(0, 50, n), rng.integers(0, 50, n // 2)]
        v, c = unique_counts(parts)
        ev, ec = np.unique(np.concatenate(parts), return_counts=True)
        assert v.tolist() == ev.tolist() and c.tolist() == ec.tolist()
    assert unique_counts([])[0].size == 0


def test_coldest_orders_by_weighted_count_then_id_hash():
    from viraltrend.kernels.columns import coldest

    acc = np.zeros((6, 2, 2))
    acc[:, 0, 1] = [3.0, 1.0, 1.0, 0.0, 9.0, 2.0]
    last = np.array([5, 5, 5, np.iinfo(np.int64).min, 5, 5], np.int64)  # slot 3 holds nothing
    keep = np.array([False, False, False, False, True, False])  # slot 4 is on the board
    h = np.array([1, 9, 4, 0, 2, 3], np.uint64)
    got = coldest(acc, last, never=int(np.iinfo(np.int64).min), half_life=1, weights=np.array([1.0, 0.0]),
                  name_hash=h, keep=keep, n=6)  # fmt: skip
    assert got.tolist() == [2, 1, 5, 0]  # 1.0 (hash 4), 1.0 (hash 9), 2.0, 3.0


def test_baseline_rates_are_the_detectors_baseline_of_the_read_counts_bit_for_bit():
    from viraltrend.config import load_config
    from viraltrend.detect import SequentialDetector
    from viraltrend.kernels.columns import baseline_rates

    rng = np.random.default_rng(11)
    c = DecayedCounters(half_lives_s=(300.0, 86400.0), n_types=3, capacity=64)
    n = 500
    c.add(
        rng.integers(0, 64, n).astype(np.int64), rng.integers(0, 3, n).astype(np.int8),
        1_700_000_000_000 + np.sort(rng.integers(0, 3_600_000, n)).astype(np.int64), np.ones(n),
    )  # fmt: skip
    det = SequentialDetector(load_config(None, environ={}), 64)
    now = 1_700_000_000_000 + 4_000_000
    slots = rng.integers(0, 64, 30).astype(np.int64)
    for g_users, n_products, cycle, norm in ((5.0, 64, 1.0, 1e-5), (0.0, 1, 0.7, 3e-3), (1e6, 3, 1.3, 1e-2)):
        want = det.baseline(c.read(slots, now)[:, 0, 1], g_users, n_products, cycle, norm)
        floor = det.baseline_floor(g_users, n_products, norm)
        got = baseline_rates(
            c.acc, slots, channel=0, half_life=1, lam=float(c.lam[1]), dt_s=c.dt_s(now), norm=norm,
            floor=floor, cycle=cycle,
        )  # fmt: skip
        assert got.tobytes() == want.tobytes()
    with np.testing.assert_raises(ValueError):
        baseline_rates(
            c.acc, np.array([64]), channel=0, half_life=1, lam=1.0, dt_s=0.0, norm=1, floor=0, cycle=1
        )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_old=st.integers(0, 30),
    n_hot=st.integers(0, 30),
    cap=st.integers(1, 40),
    ties=st.booleans(),
)
def test_keep_hot_is_the_numpy_expression(seed, n_old, n_hot, cap, ties):
    from viraltrend.kernels.columns import keep_hot, keep_hot_numpy

    rng = np.random.default_rng(seed)
    old = np.sort(rng.choice(60, n_old, replace=False)).astype(np.int64)
    hot = np.sort(rng.choice(60, n_hot, replace=False)).astype(np.int64)
    now = 10_000_000
    old_ms = now - rng.integers(0, 3_000_000, n_old).astype(np.int64)
    draw = (lambda n: rng.integers(0, 3, n).astype(np.float64)) if ties else (lambda n: rng.random(n) * 5)
    old_ev, ev = draw(n_old), draw(n_hot)
    if n_old:
        old_ev[0] = np.inf  # restored without times: hot as of now
    got = keep_hot(old, old_ms, old_ev, hot, ev, now_ms=now, idle_ms=1_800_000, cap=cap)
    want = keep_hot_numpy(old, old_ms, old_ev, hot, ev, now_ms=now, idle_ms=1_800_000, cap=cap)
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()
