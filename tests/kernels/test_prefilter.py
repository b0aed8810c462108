"""The tick screen (viraltrend.kernels.prefilter) against the exact features and rule score it bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.config import load_config
from viraltrend.kernels.decay import DecayedCounters, _exp, _scaled
from viraltrend.kernels.prefilter import EVIDENCE, MARGIN, SCORE, _scaled_by
from viraltrend.scoring import FeatureReader, RuleScorer

PROPERTY = settings(max_examples=60, deadline=None)
H = 21.96


def _setup(seed: int, n_products: int, weight_scale: float):
    cfg = load_config(None, environ={})
    events = reference.random_events(seed, n=300, n_products=n_products, span_ms=4 * 3_600_000)
    events.weight[:] = np.round(events.weight * weight_scale)  # whole events, as the engine adds them
    counters = DecayedCounters(half_lives_s=cfg.decay.half_lives_s, n_types=6, capacity=n_products)
    counters.add(*events.columns())
    rng = np.random.default_rng(seed)
    stat = (rng.exponential(3.0, (n_products, 4)) * (rng.random((n_products, 4)) < 0.5)).astype(np.float32)
    return cfg, counters, stat, events.max_ts_ms + int(rng.integers(0, 600_000))


def _exact(cfg, counters, stat, slots, now_ms, observed_s, n_live):
    """Rule score and evidence bound of ``slots`` by the engine's exact (numpy) path."""
    feats = FeatureReader.from_config(cfg).read(
        counters.read(slots, now_ms), counters.read_global(now_ms), n_live, np.zeros(slots.size), observed_s
    )
    return RuleScorer(cfg.score).score_many(feats), stat[slots].astype(np.float64).max(axis=1) / H


def _screen(cfg, counters, stat, slots, now_ms, observed_s, n_live, score_limit, evidence_limit):
    return FeatureReader.from_config(cfg).screen(
        counters.acc, counters.global_acc, counters.lam, counters.dt_s(now_ms), slots,
        n_products=n_live, observed_s=observed_s,
        stat=stat, h=H, score_limit=score_limit, evidence_limit=evidence_limit,
    )  # fmt: skip


@PROPERTY
@given(
    seed=st.integers(0, 10_000),
    n_products=st.integers(1, 40),
    weight_scale=st.sampled_from([1.0, 3.0, 20.0]),
    observed_s=st.sampled_from([0.0, 30.0, 4000.0, 1e6]),
    score_limit=st.floats(1e-6, 1.0),
    evidence_limit=st.floats(0.01, 1.0),
)
def test_screen_keeps_every_product_at_or_above_a_limit_and_drops_those_clearly_below(
    seed, n_products, weight_scale, observed_s, score_limit, evidence_limit
):
    cfg, counters, stat, now_ms = _setup(seed, n_products, weight_scale)
    slots = np.arange(n_products, dtype=np.int64)
    score, evidence = _exact(cfg, counters, stat, slots, now_ms, observed_s, n_products)
    got = _screen(cfg, counters, stat, slots, now_ms, observed_s, n_products, score_limit, evidence_limit)
    # sound: never calls quiet a score or evidence that reaches its limit
    assert (got[score >= score_limit] & SCORE).all()
    assert (got[evidence >= evidence_limit] & EVIDENCE).all()
    # tight: agrees with the exact score to within the margin
    assert not (got[score < score_limit - 2 * MARGIN] & SCORE).any()
    assert not (got[evidence < evidence_limit - 2 * MARGIN] & EVIDENCE).any()


@PROPERTY
@given(seed=st.integers(0, 10_000), n_products=st.integers(1, 40))
def test_screen_at_each_products_exact_score_keeps_it(seed, n_products):
    """The limit placed exactly at a product's score (the worst case for rounding) keeps that product."""
    cfg, counters, stat, now_ms = _setup(seed, n_products, 3.0)
    slots = np.arange(n_products, dtype=np.int64)
    score, _ = _exact(cfg, counters, stat, slots, now_ms, 3600.0, n_products)
    for j in range(n_products):
        got = _screen(cfg, counters, stat, slots[j : j + 1], now_ms, 3600.0, n_products, score[j], 2.0)
        assert got[0] & SCORE


def test_screen_of_no_slots_is_empty():
    cfg, counters, stat, now_ms = _setup(1, 5, 1.0)
    got = _screen(cfg, counters, stat, np.zeros(0, np.int64), now_ms, 60.0, 5, 0.4, 0.3)
    assert got.dtype == np.int8 and got.shape == (0,)


def test_screen_keeps_a_product_with_nan_counts():
    """A NaN never makes a product quiet: the exact path decides."""
    cfg, counters, stat, now_ms = _setup(2, 3, 1.0)
    counters.acc[1] = np.nan
    got = _screen(cfg, counters, stat, np.arange(3, dtype=np.int64), now_ms, 60.0, 3, 0.4, 10.0)
    assert got[1] & SCORE


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_products=st.integers(1, 40), observed_s=st.sampled_from([0.0, 4000.0]))
def test_prepared_screen_is_the_readers_screen(seed, n_products, observed_s):
    """The engine's :class:`Screen` (arguments prepared once) gives what ``FeatureReader.screen`` gives."""
    from viraltrend.kernels.prefilter import Screen

    cfg, counters, stat, now_ms = _setup(seed, n_products, 3.0)
    hl, sc = cfg.decay.half_lives_s, cfg.score
    screen = Screen(
        type_weights=np.asarray(cfg.signals.weights()), i_trend=hl.index(sc.trend_half_life_s),
        i_base=hl.index(sc.baseline_half_life_s), min_baseline_per_hour=sc.min_baseline_per_hour,
        global_baseline_factor=sc.global_baseline_factor, lift_midpoint=sc.lift_midpoint,
        lift_steepness=sc.lift_steepness, z_midpoint=sc.z_midpoint, z_steepness=sc.z_steepness, h=H,
        score_limit=0.3, evidence_limit=0.2,
    )  # fmt: skip
    slots = np.arange(n_products, dtype=np.int64)[::-1].copy()
    want = _screen(cfg, counters, stat, slots, now_ms, observed_s, n_products, 0.3, 0.2)
    got = screen(
        counters.acc, counters.global_acc, counters.lam, counters.dt_s(now_ms), slots,
        observed_s=observed_s, n_products=n_products, stat=stat,
    )  # fmt: skip
    assert got.tolist() == want.tolist()


def _prepared(cfg, score_limit=0.3, evidence_limit=0.2):
    from viraltrend.kernels.prefilter import Screen

    hl, sc = cfg.decay.half_lives_s, cfg.score
    return Screen(
        type_weights=np.asarray(cfg.signals.weights()), i_trend=hl.index(sc.trend_half_life_s),
        i_base=hl.index(sc.baseline_half_life_s), min_baseline_per_hour=sc.min_baseline_per_hour,
        global_baseline_factor=sc.global_baseline_factor, lift_midpoint=sc.lift_midpoint,
        lift_steepness=sc.lift_steepness, z_midpoint=sc.z_midpoint, z_steepness=sc.z_steepness, h=H,
        score_limit=score_limit, evidence_limit=evidence_limit,
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_products=st.integers(1, 40),
    parts=st.lists(st.lists(st.integers(0, 39), min_size=0, max_size=12), min_size=0, max_size=4),
    score_limit=st.sampled_from([1e-6, 0.05, 0.3, 0.9]),
    evidence_limit=st.sampled_from([0.01, 0.2, 1.0]),
)
def test_screen_of_touched_parts_is_unique_then_screen_then_filter(
    seed, n_products, parts, score_limit, evidence_limit
):
    """``Screen.touched`` (one compiled call) against its plain steps: unique, screen, keep, any SCORE."""
    from viraltrend.kernels.columns import unique_counts

    cfg, counters, stat, now_ms = _setup(seed, 40, 3.0)
    screen = _prepared(cfg, score_limit, evidence_limit)
    arrays = [np.asarray(p, np.int64) for p in parts]
    args = (counters.acc, counters.global_acc, counters.lam, counters.dt_s(now_ms))
    kw = {"observed_s": 4000.0, "n_products": n_products, "stat": stat}
    touched, kept, may_score = screen.touched(*args, arrays, **kw)
    want = unique_counts(arrays)[0]
    why = screen(*args, want, **kw)
    assert touched.dtype == kept.dtype == np.int64
    assert touched.tolist() == want.tolist()
    assert kept.tolist() == want[why != 0].tolist()
    assert may_score is bool((why & SCORE).any())


def test_screen_of_touched_parts_refuses_a_slot_out_of_range():
    cfg, counters, stat, now_ms = _setup(3, 5, 1.0)
    args = (counters.acc, counters.global_acc, counters.lam, counters.dt_s(now_ms))
    for bad in (5, -1):
        with pytest.raises(ValueError, match="slots"):
            _prepared(cfg).touched(*args, [np.array([1, bad])], observed_s=60.0, n_products=5, stat=stat)


def _tick_setup(seed: int, n_products: int, prior_factor: float, later_ms: int = 0):
    """Counters, trust counters and a change detector after random events, as at an engine tick."""
    import dataclasses
    import math

    from viraltrend.detect import _CYCLE_CLIP, SequentialDetector
    from viraltrend.kernels.prefilter import TickBaseline

    cfg, counters, _, now_ms = _setup(seed, n_products, 3.0)
    now_ms += later_ms  # hours after the events: the 1-hour rate falls below the baseline's
    cfg = dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, prior_factor=prior_factor))
    rng = np.random.default_rng(seed)
    trust_hl = (cfg.score.trend_half_life_s, cfg.score.baseline_half_life_s)
    trust = DecayedCounters(half_lives_s=trust_hl, n_types=3, capacity=n_products)
    ev = reference.random_events(seed + 1, n=200, n_products=n_products, n_types=3, span_ms=4 * 3_600_000)
    trust.add(*ev.columns())
    detector = SequentialDetector(cfg, n_products)
    now_ms -= now_ms % detector.tick_ms
    for k in range(3):  # some history in the CUSUMs
        slots = np.unique(rng.integers(0, n_products, 5))
        detector.cusum.update(
            slots, rng.integers(1, 4, slots.size).astype(np.float64), np.full(slots.size, 0.01),
            now_ms=now_ms - (3 - k) * detector.tick_ms,
        )  # fmt: skip
    hl, d = cfg.decay.half_lives_s, cfg.detect
    base_s = cfg.score.baseline_half_life_s
    base = TickBaseline(
        i_hour=hl.index(3600.0), lam_hour=math.log(2.0) / 3600.0, i_base=hl.index(base_s),
        lam_base=math.log(2.0) / base_s, prior_factor=d.prior_factor,
        floor_min=d.baseline_floor_users_per_h / 3600.0, clip=_CYCLE_CLIP,
    )  # fmt: skip
    return cfg, counters, trust, detector, base, now_ms


def _plain_tick(cfg, counters, trust, detector, now_ms, start_ms, n_live, new_users):
    """The engine's steps before the fused call: _TickBaseline.params, then update_from_users."""
    import math

    from viraltrend.kernels.decay import global_figures

    hl, base_s = cfg.decay.half_lives_s, cfg.score.baseline_half_life_s
    seen = max((now_ms - start_ms) / 1000.0 if start_ms is not None else 0.0, 1.0)

    def norm(half_life_s):
        lam = math.log(2.0) / half_life_s
        return lam / -math.expm1(-lam * seen)

    cycle = 1.0
    g, users = global_figures(counters, trust, now_ms, channel=0, half_life=1)
    if start_ms is not None:
        cycle = detector.cycle_factor(
            float(g[hl.index(3600.0)]) * norm(3600.0), float(g[hl.index(base_s)]) * norm(base_s)
        )
    nb = norm(base_s)
    memo = (nb, detector.baseline_floor(users, n_live, nb), cycle)
    if new_users.size:
        detector.cusum.update_from_users(
            new_users, trust.acc, channel=0, half_life=1, lam=float(trust.lam[1]), dt_s=trust.dt_s(now_ms),
            norm=memo[0], floor=memo[1], cycle=memo[2], now_ms=now_ms,
        )  # fmt: skip
    return memo


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_products=st.integers(1, 30),
    new_users=st.lists(st.integers(0, 29), max_size=15),
    parts=st.lists(st.lists(st.integers(0, 29), min_size=1, max_size=10), min_size=1, max_size=3),
    started=st.sampled_from([None, 0, 60_000, 7_200_000, 90_000_000, 30 * 86_400_000]),
    later_h=st.sampled_from([0, 12]),
    n_live=st.integers(0, 40),
    prior_factor=st.sampled_from([0.0, 1.0, 50.0]),
)
def test_tick_call_is_params_then_cusum_update_then_screen(
    seed, n_products, new_users, parts, started, later_h, n_live, prior_factor
):
    """``Screen.tick`` (one compiled call) against the engine's plain steps, bit for bit."""
    import copy

    from viraltrend.kernels.columns import unique_counts

    cfg, counters, trust, detector, base, now_ms = _tick_setup(
        seed, n_products, prior_factor, later_h * 3_600_000
    )
    new = np.asarray([u % n_products for u in new_users], np.int64)
    arrays = [np.asarray([p % n_products for p in part], np.int64) for part in parts]
    start_ms = None if started is None else now_ms - started
    screen = _prepared(cfg, 0.3, 0.2)
    want_cusum = copy.deepcopy(detector.cusum)
    got_cusum = detector.cusum
    detector.cusum = want_cusum
    memo = _plain_tick(cfg, counters, trust, detector, now_ms, start_ms, n_live, new)
    observed = (now_ms - start_ms) / 1000.0 if start_ms is not None else 0.0
    touched_want = unique_counts(arrays)[0]
    why = screen(
        counters.acc, counters.global_acc, counters.lam, counters.dt_s(now_ms), touched_want,
        observed_s=observed, n_products=n_live, stat=want_cusum.stat,
    )  # fmt: skip
    got_memo, touched, kept, may_score = screen.tick(
        counters,
        trust,
        got_cusum,
        base,
        now_ms,
        start_ms=start_ms,
        n_live=n_live,
        new_users=new,
        parts=arrays,
    )
    assert got_memo == memo  # exactly: floats compared bit for bit
    for name in ("stat", "back", "bins", "coarse", "last_tick"):
        assert np.array_equal(getattr(got_cusum, name), getattr(want_cusum, name)), name
    assert touched.tolist() == touched_want.tolist()
    assert kept.tolist() == touched_want[why != 0].tolist()
    assert may_score is bool((why & SCORE).any())


def test_tick_call_raises_as_the_update_does_and_changes_nothing():
    import copy

    cfg, counters, trust, detector, base, now_ms = _tick_setup(4, 6, 1.0)
    screen = _prepared(cfg)
    before = copy.deepcopy(detector.cusum)
    args = (counters, trust, detector.cusum, base)
    with pytest.raises(ValueError, match="new_users|slots"):
        screen.tick(*args, now_ms, start_ms=0, n_live=6, new_users=np.array([2, 6]), parts=[np.array([2])])
    with pytest.raises(ValueError, match="multiple of tick_ms"):
        screen.tick(*args, now_ms + 1, start_ms=0, n_live=6, new_users=np.array([2]), parts=[np.array([2])])
    for name in ("stat", "back", "bins", "coarse", "last_tick"):
        assert np.array_equal(getattr(detector.cusum, name), getattr(before, name)), name
    # as in the engine's steps, the update comes first: a touched slot out of range raises after it
    with pytest.raises(ValueError, match="slots"):
        screen.tick(*args, now_ms, start_ms=0, n_live=6, new_users=np.array([2]), parts=[np.array([9])])
    assert detector.cusum.last_tick[2] == now_ms // detector.tick_ms


@pytest.mark.parametrize(("later_h", "clipped"), [(0, 5.0), (12, 0.2), (2, None)])
def test_tick_call_daily_cycle_factor_at_and_inside_its_clip(later_h, clipped):
    """A month-old stream read just after a burst (1-hour rate far above the day's), half a day later
    (far below), and in between: the fused call's factor is the detector's, clipped or not."""
    cfg, counters, trust, detector, base, now_ms = _tick_setup(7, 20, 1.0, later_h * 3_600_000)
    start_ms = now_ms - 30 * 86_400_000
    screen = _prepared(cfg)
    import copy

    plain = copy.deepcopy(detector)
    memo = _plain_tick(cfg, counters, trust, plain, now_ms, start_ms, 20, np.zeros(0, np.int64))
    got, *_ = screen.tick(
        counters, trust, detector.cusum, base, now_ms, start_ms=start_ms, n_live=20,
        new_users=np.zeros(0, np.int64), parts=[np.array([1, 2])],
    )  # fmt: skip
    assert got == memo
    if clipped is None:
        assert 0.2 < got[2] < 5.0
    else:
        assert got[2] == clipped


_EXTREME = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e300, -1e-310]),
)


@settings(max_examples=500, deadline=None)
@given(_EXTREME, st.one_of(st.floats(-800, 800), st.sampled_from([0.0, -745.2, 709.0, 708.9, -1e-9, 1e-9])))
def test_scaled_by_a_factor_read_once_is_decays_scaled_bit_for_bit(value: float, exponent: float) -> None:
    want = _scaled(value, exponent)
    got = _scaled_by(value, _exp(exponent), exponent)
    assert np.float64(got).tobytes() == np.float64(want).tobytes()


# ---------------------------------------------------------------------- the eviction sweep's horizon
@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.floats(0.0, 1e3), min_size=12, max_size=12),
    weights=st.lists(st.floats(0.0, 3.0), min_size=6, max_size=6),
    limit=st.floats(1e-3, 10.0),
    half_life_s=st.sampled_from([300.0, 3600.0, 86_400.0]),
    dt_s=st.floats(0.0, 2e5),
    later=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
)
def test_evict_horizon_promises_only_what_holds(counts, weights, limit, half_life_s, dt_s, later):
    # before the horizon, the count (no event since: it only decays) is above the limit as the
    # sweep reads it (columns.below says "not below", sure); the compiled kernel equals its plain run
    from viraltrend.kernels.columns import below
    from viraltrend.kernels.prefilter import _evict_horizon, evict_horizon

    lam = math.log(2.0) / half_life_s
    acc = np.asarray(counts, np.float64).reshape(2, 6, 1) * np.exp(lam * dt_s)  # forward-decayed
    w = np.asarray(weights, np.float64)
    slots = np.array([0, 1], np.int64)
    now_ms = 1_000_000
    got = evict_horizon(acc, slots, lam=lam, dt_s=dt_s, half_life=0, weights=w, limit=limit, now_ms=now_ms)
    plain = np.empty(2, np.int64)
    _evict_horizon.py_func(acc, slots, lam, dt_s, 0, w, limit, now_ms, plain)
    assert got.tolist() == plain.tolist()
    values = np.einsum("mk,k->m", np.asarray(counts).reshape(2, 6), w)
    for j in range(2):
        if values[j] <= limit:
            assert got[j] == now_ms  # no promise near or below the limit
        for f in later:
            t_ms = now_ms + int(f * (got[j] - now_ms))
            if t_ms >= got[j]:
                continue
            flags = below(acc, slots[j : j + 1], lam=lam, dt_s=dt_s + (t_ms - now_ms) / 1000.0, half_life=0,
                          weights=w, limit=limit)  # fmt: skip
            assert flags is not None and flags.tolist() == [0]
    big = values > limit * 2
    assert (got[big] > now_ms).all()  # a count well above the limit gets a promise


def test_evict_horizon_refuses_negative_weights():
    from viraltrend.kernels.prefilter import evict_horizon

    with pytest.raises(ValueError, match="weights >= 0"):
        evict_horizon(np.ones((1, 2, 1)), np.array([0]), lam=1.0, dt_s=0.0, half_life=0,
                      weights=np.array([1.0, -1.0]), limit=0.1, now_ms=0)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([-5, 0, 3, 2**31 - 1]) | st.integers(-(2**31), 2**31 - 1)),
        max_size=60,
    ),
    st.integers(0, 60),
    st.sampled_from([-(2**40), -5, 0, 3, 2**31 - 1, 2**31, 2**40]),
)
def test_evict_looked_is_the_sweeps_live_products_and_those_past_their_promise(rows, n, elapsed_s):
    from viraltrend.kernels.prefilter import _evict_looked, evict_looked

    never = np.iinfo(np.int64).min
    last = np.array([7 if live else never for live, _ in rows] + [never] * 3, np.int64)
    after = np.array([a for _, a in rows] + [0] * 3, np.int32)
    n = min(n, len(rows))
    live = np.flatnonzero(last[:n] != never).astype(np.int64)
    want = live[after[live].astype(np.int64) <= elapsed_s]
    for fn in (evict_looked, lambda *a: _evict_looked.py_func(*a)):
        n_live, looked = fn(last, never, n, after, elapsed_s)
        assert int(n_live) == live.size
        assert looked.dtype == np.int64 and looked.tolist() == want.tolist()
    with pytest.raises(ValueError, match="n must be"):
        evict_looked(last, never, last.shape[0] + 1, np.zeros(last.shape[0] + 1, np.int32), 0)


def _prelude_args(cfg, counters, trust, cusum, base, screen, now_ms, start_ms, n_live, new_users, touched):
    """``Screen.tick``'s arguments of ``_tick_prelude`` (the compiled tick loop passes the same)."""
    seen = max((now_ms - start_ms) / 1000.0 if start_ms is not None else 0.0, 1.0)
    norm_hour, norm_base = base.norms(seen)
    bound = min(counters.acc.shape[0], cusum.stat.shape[0])
    return (
        counters.global_acc, counters.lam, counters.dt_s(now_ms), trust.global_acc, trust.acc, trust.lam,
        trust.dt_s(now_ms), 0, 1, base.i_hour, base.i_base, norm_hour, norm_base,
        base.i_hour >= 0 and start_ms is not None, int(n_live), base.prior_factor, base.floor_min,
        base.clip[0], base.clip[1], new_users, cusum.stat, cusum.back, cusum.bins, cusum.coarse,
        cusum.ticks_per_coarse, cusum.last_tick, cusum._log_rho, cusum._rho_m1,
        int(now_ms) // cusum.tick_ms, cusum.tick_ms / 1000.0, counters.acc, touched, screen._w,
        (now_ms - start_ms) / 1000.0 if start_ms is not None else 0.0, *screen._fixed, screen._h,
        *screen._limits, bound,
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_products=st.integers(1, 30),
    new_users=st.lists(st.integers(-2, 33), max_size=40),
    touched=st.lists(st.integers(-1, 31), max_size=60),
    started=st.sampled_from([None, 0, 60_000, 7_200_000, 30 * 86_400_000]),
    later_h=st.sampled_from([0, 12]),
    n_live=st.integers(0, 40),
    prior_factor=st.sampled_from([0.0, 1.0, 50.0]),
    plain=st.booleans(),
)
def test_the_prelude_into_scratch_equals_its_steps_chained(
    seed, n_products, new_users, touched, started, later_h, n_live, prior_factor, plain
):
    """``_tick_prelude_into`` (no reference counts, the compiled tick loop's) against its steps chained.

    The same code, floor, cycle, screen, touched and kept products and the same change-detector
    state bit for bit, on slots in and out of range (the codes that change nothing), compiled and as
    plain Python, with scratch longer than needed and full of garbage.
    """
    import copy

    from tests.kernels.reference import tick_prelude
    from viraltrend.kernels.columns import SORT_STACK
    from viraltrend.kernels.prefilter import _tick_prelude, _tick_prelude_into

    cfg, counters, trust, detector, base, now_ms = _tick_setup(
        seed, n_products, prior_factor, later_h * 3_600_000
    )
    start_ms = None if started is None else now_ms - started
    screen = _prepared(cfg, 0.3, 0.2)
    new = np.asarray(new_users, np.int64)
    parts = np.asarray(touched, np.int64)
    want_cusum = detector.cusum
    got_cusum, again_cusum = copy.deepcopy(want_cusum), copy.deepcopy(want_cusum)
    want = tick_prelude(
        *_prelude_args(cfg, counters, trust, want_cusum, base, screen, now_ms, start_ms, n_live, new, parts)
    )
    again = _tick_prelude(  # Screen.tick's call: the same prelude into scratch of its own
        *_prelude_args(cfg, counters, trust, again_cusum, base, screen, now_ms, start_ms, n_live, new, parts)
    )
    rng = np.random.default_rng(seed)
    n = max(new.size, parts.size) + int(rng.integers(0, 5))
    scratch = (
        rng.normal(size=counters.global_acc.shape[1]), *(rng.integers(-9, 99, n) for _ in range(2)),
        np.full(SORT_STACK, -7, np.int64), *(rng.integers(-9, 99, n) for _ in range(2)), rng.normal(size=n),
        rng.normal(size=n), rng.integers(-3, 3, n).astype(np.int8), rng.integers(-9, 99, n),
    )  # fmt: skip
    g, buf, _, stack, uniq, counts, x, mu, out, kept = scratch
    fn = _tick_prelude_into.py_func if plain else _tick_prelude_into
    code, floor, cycle, ok, m, n_kept, may_score = fn(
        *_prelude_args(cfg, counters, trust, got_cusum, base, screen, now_ms, start_ms, n_live, new, parts),
        g, buf, stack, uniq, counts, x, mu, out, kept,
    )  # fmt: skip
    assert (code, floor, cycle) == want[:3]  # floats bit for bit (== on the same doubles)
    if code == 0:
        assert (ok, may_score) == (want[3], want[6])
        assert uniq[:m].tolist() == want[4].tolist()
        assert kept[:n_kept].tolist() == want[5].tolist()
    for name in ("stat", "back", "bins", "coarse", "last_tick"):
        assert np.array_equal(getattr(got_cusum, name), getattr(want_cusum, name)), name
        assert np.array_equal(getattr(again_cusum, name), getattr(want_cusum, name)), name
    assert again[:4] + (again[6],) == want[:4] + (want[6],)
    assert again[4].tolist() == want[4].tolist() and again[5].tolist() == want[5].tolist()


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300)
    | st.lists(st.integers(-3, 3), max_size=300)
    | st.integers(0, 3000).map(lambda n: list(range(n, 0, -1))),
    plain=st.booleans(),
)
def test_the_scratch_unique_counts_is_numpys_unique(values, plain):
    """``_unique_counts_into`` (its own in-place sort, no allocation) equals ``np.unique`` with counts."""
    from viraltrend.kernels.columns import SORT_STACK, _sort_in_place, _unique_counts_into

    a = np.asarray(values, np.int64)
    buf, vals, counts = (np.full(a.size + 2, 5, np.int64) for _ in range(3))
    stack = np.zeros(SORT_STACK, np.int64)
    fn = _unique_counts_into.py_func if plain else _unique_counts_into
    m = fn(a, buf, stack, vals, counts)
    want_v, want_c = np.unique(a, return_counts=True)
    assert vals[:m].tolist() == want_v.tolist()
    assert counts[:m].tolist() == want_c.tolist()
    b = a.copy()
    (_sort_in_place.py_func if plain else _sort_in_place)(b, b.size, stack)
    assert b.tolist() == sorted(values)
