"""The change detector's lazy Poisson CUSUMs against a reference that updates every tick."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.errors import CheckpointError
from viraltrend.kernels.cusum import ChangeDetector, alarm_threshold

TICK_MS = 10_000
LIFTS = [3.0, 10.0, 100.0]
PROPERTY = settings(max_examples=60, deadline=None)

# per tick: a few (product, new users) pairs; products 0..4, constant baselines per product
ticks = st.lists(st.dictionaries(st.integers(0, 4), st.integers(0, 40), max_size=3), min_size=1, max_size=40)
MU = {0: 0.001, 1: 0.0123, 2: 0.05, 3: 0.2, 4: 0.0007}


def run(history: list[dict[int, int]], n_bins: int = 6, first_tick: int = 1000) -> ChangeDetector:
    d = ChangeDetector(lifts=LIFTS, tick_ms=TICK_MS, n_bins=n_bins, capacity=2)
    for k, per_tick in enumerate(history):
        touched = sorted(p for p, x in per_tick.items() if x > 0)
        if touched:
            slots = np.array(touched, np.int64)
            d.ensure_capacity(int(slots.max()) + 1)
            x = np.array([per_tick[p] for p in touched], np.float64)
            mu = np.array([MU[p] for p in touched])
            d.update(slots, x, mu, now_ms=(first_tick + k) * TICK_MS)
    return d


@PROPERTY
@given(ticks, st.integers(0, 30))
def test_lazy_cusum_equals_updating_every_tick(history, idle_after):
    first = 1000
    counts = {first + k: {p: x for p, x in t.items() if x > 0} for k, t in enumerate(history)}
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    d = run(history, first_tick=first)
    now_tick = first + len(history) - 1 + idle_after
    want = reference.cusum(counts, MU, LIFTS, TICK_MS / 1000, now_tick)
    slots = np.array(sorted(want), np.int64)
    stat, zero_ms, _, _ = d.read(slots, np.array([MU[int(p)] for p in slots]), now_ms=now_tick * TICK_MS)
    for i, p in enumerate(slots.tolist()):
        w_stat, w_zero = want[p]
        np.testing.assert_allclose(stat[i], w_stat, rtol=1e-5, atol=1e-3)
        got_zero = (zero_ms[i] // TICK_MS).tolist()
        for g in range(len(LIFTS)):
            if w_stat[g] > 1e-3:  # a statistic at 0 within rounding has its change point "now"
                assert got_zero[g] == w_zero[g], (p, g, got_zero, w_zero, stat[i], w_stat)


@PROPERTY
@given(ticks, st.integers(0, 10))
def test_ring_holds_the_last_ticks_counts(history, idle_after):
    n_bins = 6
    d = run(history, n_bins=n_bins)
    now_tick = 1000 + len(history) - 1 + idle_after
    slots = np.arange(5, dtype=np.int64)
    d.ensure_capacity(5)
    _, _, bins, _ = d.read(slots, np.full(5, 0.01), now_ms=now_tick * TICK_MS)
    for p in range(5):
        want = [
            min(history[t - 1000].get(p, 0), 255) if 0 <= t - 1000 < len(history) else 0
            for t in range(now_tick - n_bins + 1, now_tick + 1)
        ]
        assert bins[p].tolist() == want


def test_a_steep_onset_alarms_within_ticks_and_a_quiet_product_never_does():
    h = alarm_threshold(1.0, TICK_MS / 1000, len(LIFTS))
    d = ChangeDetector(lifts=LIFTS, tick_ms=TICK_MS, n_bins=6, capacity=4)
    rng = np.random.default_rng(0)
    mu = np.array([0.01, 0.01])
    alarm_tick = None
    for k in range(1, 2000):
        rate = np.array([0.01, 0.01 if k < 1000 else 1.0])  # product 1 jumps 100x at tick 1000
        x = rng.poisson(rate * TICK_MS / 1000).astype(np.float64)
        d.update(np.array([0, 1], np.int64), x, mu, now_ms=k * TICK_MS)
        stat, _, _, _ = d.read(np.array([0, 1], np.int64), mu, now_ms=k * TICK_MS)
        assert stat[0].max() < h
        if alarm_tick is None and stat[1].max() >= h:
            alarm_tick = k
    assert alarm_tick is not None and 1000 <= alarm_tick <= 1004


def test_counts_saturate_at_255_and_state_round_trips():
    d = ChangeDetector(lifts=LIFTS, tick_ms=TICK_MS, n_bins=4, capacity=2)
    d.update(np.array([1], np.int64), np.array([1000.0]), np.array([0.01]), now_ms=TICK_MS)
    back = ChangeDetector.from_arrays(d.to_arrays(), lifts=LIFTS, tick_ms=TICK_MS, n_bins=4)
    one, mu = np.array([1], np.int64), np.array([0.01])
    for a, b in zip(d.read(one, mu, now_ms=TICK_MS), back.read(one, mu, now_ms=TICK_MS), strict=True):
        np.testing.assert_array_equal(a, b)
    fine = d.read(np.array([1], np.int64), np.array([0.01]), now_ms=TICK_MS)[2]
    assert fine[0, -1] == 255
    with pytest.raises(CheckpointError):
        ChangeDetector.from_arrays(d.to_arrays(), lifts=LIFTS, tick_ms=TICK_MS, n_bins=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lifts": [1.0]}, "lifts"),
        ({"lifts": []}, "lifts"),
        ({"n_bins": 1}, "n_bins"),
    ],
)
def test_bad_parameters_are_refused_with_the_name(kwargs, match):
    args = {"lifts": LIFTS, "tick_ms": TICK_MS, "n_bins": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        ChangeDetector(**args)


def test_bad_inputs_say_how_to_fix_them():
    d = ChangeDetector(lifts=LIFTS, tick_ms=TICK_MS, n_bins=4, capacity=4)
    one = np.array([1], np.int64)
    with pytest.raises(ValueError, match="unique"):
        d.update(np.array([1, 1], np.int64), np.ones(2), np.ones(2), now_ms=TICK_MS)
    with pytest.raises(ValueError, match="multiple of tick_ms"):
        d.update(one, np.ones(1), np.ones(1), now_ms=TICK_MS + 1)
    with pytest.raises(ValueError, match="mu must be finite and > 0"):
        d.update(one, np.ones(1), np.zeros(1), now_ms=TICK_MS)
    with pytest.raises(TypeError, match="astype"):
        d.update(one.astype(np.int32), np.ones(1), np.ones(1), now_ms=TICK_MS)


def _first_bad_reference(slots, mu, x, capacity):
    """The checks of ChangeDetector._check in numpy, in their order (see cusum._first_bad)."""
    if slots.size and (slots.min() < 0 or slots.max() >= capacity):
        return 1
    if mu.size and not np.all(np.isfinite(mu) & (mu > 0.0)):
        return 2
    if x.size and float(x.min()) < 0.0:
        return 3
    return 0 if np.all(np.diff(slots) > 0) else 4


@settings(max_examples=200, deadline=None)
@given(
    slots=st.lists(st.integers(-2, 9), max_size=6),
    values=st.lists(st.sampled_from([0.0, -1.0, 1.5, np.inf, np.nan, 1e-300]), min_size=12, max_size=12),
)
def test_the_one_pass_check_matches_numpy(slots, values):
    from viraltrend.kernels.cusum import _first_bad

    s = np.array(slots, np.int64)
    mu, x = np.array(values[: s.size]), np.array(values[6 : 6 + s.size])
    mu = np.abs(mu) if s.size % 2 else mu  # both all-valid and invalid mu columns occur
    assert _first_bad(s, mu, x, 8) == _first_bad_reference(s, mu, x, 8)
    assert _first_bad(s, mu, np.zeros(0), 8) == _first_bad_reference(s, mu, np.zeros(0), 8)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ticks=st.integers(1, 40))
def test_update_from_users_is_update_of_the_counted_users_bit_for_bit(seed, ticks):
    from viraltrend.kernels.columns import baseline_rates, unique_counts
    from viraltrend.kernels.decay import DecayedCounters

    rng = np.random.default_rng(seed)
    trust = DecayedCounters(half_lives_s=(300.0, 86400.0), n_types=3, capacity=16)
    n = 300
    ts = 1_700_000_000_000 + np.sort(rng.integers(0, 3_600_000, n)).astype(np.int64)
    trust.add(rng.integers(0, 16, n).astype(np.int64), rng.integers(0, 3, n).astype(np.int8), ts, np.ones(n))
    a = ChangeDetector(lifts=LIFTS, tick_ms=TICK_MS, n_bins=6, capacity=16)
    b = ChangeDetector(lifts=LIFTS, tick_ms=TICK_MS, n_bins=6, capacity=16)
    now = (int(ts[-1]) // TICK_MS + 1) * TICK_MS
    t = now
    for _ in range(ticks):
        t += TICK_MS * int(rng.integers(1, 4))
        users = rng.integers(0, 16, int(rng.integers(1, 30))).astype(np.int64)
        kw = dict(channel=0, half_life=1, lam=float(trust.lam[1]), dt_s=trust.dt_s(t), norm=1e-3, floor=2e-4)
        slots, counts = unique_counts([users])
        a.update(
            slots, counts.astype(np.float64), baseline_rates(trust.acc, slots, cycle=0.9, **kw), now_ms=t
        )
        b.update_from_users(users, trust.acc, cycle=0.9, now_ms=t, **kw)
    for name, want in a.to_arrays().items():
        assert b.to_arrays()[name].tobytes() == want.tobytes(), name
    with pytest.raises(ValueError, match="mu must be finite"):
        b.update_from_users(np.array([1], np.int64), trust.acc, floor=0.0, norm=0.0, cycle=1.0, channel=0,
                            half_life=1, lam=1.0, dt_s=0.0, now_ms=now)  # fmt: skip


def test_ensure_capacity_with_a_limit_grows_to_the_limit_exactly():
    d = ChangeDetector(lifts=(4.0,), tick_ms=10_000, n_bins=6, capacity=16)
    d.ensure_capacity(17, limit=20)  # doubling would give 32 slots; it stops at the limit
    assert d.capacity == 20 and {a.shape[0] for a in (d.stat, d.back, d.bins, d.coarse, d.last_tick)} == {20}
    assert (d.last_tick[16:] == np.iinfo(np.int64).min).all() and not d.coarse[16:].any()
    d.ensure_capacity(21, limit=20)  # past the limit: by an eighth
    assert d.capacity == 22
    d.ensure_capacity(40)  # no limit: doubling as before
    assert d.capacity == 44
