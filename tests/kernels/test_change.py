"""The detector's read columns in one compiled loop, bit for bit the numpy form they replace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.kernels.change import COLUMNS, _columns, change_columns
from viraltrend.kernels.cusum import ChangeDetector

TICK_MS = 10_000
PROPERTY = settings(max_examples=120, deadline=None)


def _inputs(seed: int, m: int, n_lifts: int, k: int, n_slow: int) -> tuple[np.ndarray, ...]:
    """Candidates as ChangeDetector.read gives them: whole-number rings, ties and NaN statistics."""
    rng = np.random.default_rng(seed)
    stat = rng.choice([0.0, 0.5, 1.0, 3.25, 7.0, np.nan], size=(m, n_lifts))
    spread = rng.random((m, n_lifts)) < 0.5
    stat[spread] = rng.exponential(3.0, int(spread.sum()))  # the rest: ties (the first wins) and NaN
    zero = rng.integers(-4000, 1001, size=(m, n_lifts)) * TICK_MS  # change points: now to 11 h back
    fine = rng.integers(0, 256, size=(m, k)).astype(np.float64)
    fine[rng.random((m, k)) < 0.5] = 0.0  # empty ticks: -0.0 products in the growth test
    coarse = rng.integers(0, 3000, size=(m, n_slow)).astype(np.float64)
    coarse[rng.random((m, n_slow)) < 0.5] = 0.0
    mu = rng.choice([0.0, 1e-4, 0.0123, 0.5, 3.0], size=m)  # 0: inf/nan lifts, as numpy gives
    lifts = np.linspace(3.0, 100.0, n_lifts)
    return stat, zero, fine, coarse, mu, lifts


def _bits(cols: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(v, np.float64).view(np.uint64).tobytes() for k, v in cols.items()}


@PROPERTY
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 12), st.integers(1, 5), st.integers(2, 30), st.integers(2, 30),
    st.integers(1, 8), st.integers(0, 100), st.sampled_from([1, 3, 5]),
)  # fmt: skip
def test_columns_equal_the_numpy_form_bit_for_bit(seed, m, n_lifts, k, n_slow, per, now_tick, fade):
    stat, zero, fine, coarse, mu, lifts = _inputs(seed, m, n_lifts, k, n_slow)
    fade = min(fade, k)
    kw = dict(now_ms=now_tick * TICK_MS, tick_ms=TICK_MS, ticks_per_coarse=per, h=4.7, fade_ticks=fade)
    with np.errstate(all="ignore"):
        want = reference.change_columns(stat, zero, fine, coarse, mu, lifts, **kw)
    got = change_columns(stat, zero, fine, coarse, mu, lifts, **kw)
    assert list(got) == list(COLUMNS) == list(want)
    assert _bits(got) == _bits(want)
    out = np.empty((len(COLUMNS), m))  # the plain-Python form of the kernel, too
    args = (kw["now_ms"], TICK_MS, per, 4.7, fade, out)
    with np.errstate(all="ignore"):
        getattr(_columns, "py_func", _columns)(stat, zero, fine, coarse, mu, lifts, *args)  # no JIT: itself
    assert _bits(dict(zip(COLUMNS, out, strict=True))) == _bits(want)


def test_a_detectors_read_equals_the_numpy_form():
    """A ChangeDetector fed a ramp, a spike and noise: the columns of its own read, as numpy gives them."""
    d = ChangeDetector(lifts=(3.0, 10.0, 30.0, 100.0), tick_ms=TICK_MS, n_bins=18, capacity=4, n_coarse=24)
    rng = np.random.default_rng(7)
    mu = np.array([0.002, 0.01, 0.05, 0.3])
    for t in range(1000, 1400):
        x = np.array([min(t - 1000, 250), 200 * (t == 1200), 0, rng.poisson(3)], np.float64)
        live = np.flatnonzero(x > 0)
        if live.size:
            d.update(live.astype(np.int64), x[live], mu[live], now_ms=t * TICK_MS)
        if t % 7 == 0:
            slots = np.arange(4, dtype=np.int64)
            stat, zero, fine, coarse = d.read(slots, mu, now_ms=t * TICK_MS)
            kw = dict(now_ms=t * TICK_MS, tick_ms=TICK_MS, ticks_per_coarse=6, h=5.0, fade_ticks=3)
            lifts = np.asarray(d.lifts)
            with np.errstate(all="ignore"):
                want = reference.change_columns(stat, zero, fine, coarse, mu, lifts, **kw)
            assert _bits(change_columns(stat, zero, fine, coarse, mu, lifts, **kw)) == _bits(want)


def test_shapes_that_do_not_fit_are_refused():
    stat, zero, fine, coarse, mu, lifts = _inputs(1, 3, 2, 6, 4)
    kw = dict(now_ms=0, tick_ms=TICK_MS, ticks_per_coarse=2, h=1.0, fade_ticks=3)
    with pytest.raises(ValueError, match="shapes"):
        change_columns(stat, zero, fine, coarse, mu[:2], lifts, **kw)
    with pytest.raises(ValueError, match="a lift per"):
        change_columns(stat, zero, fine, coarse, mu, lifts[:1], **kw)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 40), st.sampled_from([0.0, 2.0]), st.sampled_from([0.0, 2.0]),
    st.sampled_from([0.0, 4.0]), st.booleans(), st.booleans(), st.sampled_from([0.0, 4.0]),
)  # fmt: skip
def test_verdicts_equal_the_detectors_ready(
    seed, m, share_min, floor, long_ratio, has_share, has_long, joint_z
):
    """The compiled verdict (read's ``ready`` and ``ready_label``) against ``SequentialDetector.ready``."""
    from viraltrend.config import load_config
    from viraltrend.detect import SequentialDetector

    detect = {"sustain_min_share_ratio": share_min, "sustain_share_long_floor": floor}
    detect["sustain_share_long_ratio"] = long_ratio
    detect["joint_growth_z"] = joint_z
    det = SequentialDetector(load_config(None, environ={}, overrides={"detect": detect}), capacity=4)
    rng = np.random.default_rng(seed)
    pick = lambda *v: rng.choice(np.array(v, np.float64), size=m)  # noqa: E731
    cols = np.stack([
        pick(0.0, 0.99, 1.0, 1.5, 30.0, np.nan), np.full(m, 3.0), pick(0.0, 600.0, 1500.0, 3600.0, 9e3, 11e3),
        pick(-3.0, -2.0, 0.0, 3.9, 4.0, 9.0, np.nan), pick(-2.5, -2.0, 1.0, 4.0, 5.0), pick(-2.0, -1.0, 0.5),
        pick(0.0, 5.0), pick(0.0, 2.9, 3.0, 8.0, np.inf, np.nan), pick(0.0, 15.0, 16.0, 40.0),
    ])  # fmt: skip
    users = pick(0.0, 4.0, 5.0, 20.0, 100.0)
    share = pick(0.0, 1.0, 2.0, 3.0, np.inf, np.nan) if has_share else None
    long_share = pick(0.0, 1.9, 2.0, 4.0, 7.0, np.nan) if has_long else None
    from viraltrend.kernels.change import verdicts

    joint = pick(-1.0, 3.9, 4.0, 6.0, np.nan) if joint_z > 0.0 else None
    ready, label = verdicts(
        cols, users, share, long_share, det._limits(), share_test=share_min > 0.0, joint=joint
    )
    as_dict = dict(zip(COLUMNS, cols, strict=True))
    if joint is not None:
        as_dict["growth_z_joint"] = joint
    if share is not None:
        as_dict["share_ratio"] = share
    if long_share is not None:
        as_dict["sustain_share_ratio"] = long_share
    assert ready.tolist() == det.ready(as_dict, users).tolist()
    assert label.tolist() == det.ready(as_dict, users, long_floor=False, joint=False).tolist()


def _joint_numpy(stat, zero, fine, coarse, now_ms, tick_ms, per):
    """``SequentialDetector.read``'s joint growth column as main (6cf2e65) computed it, in numpy."""
    from tests.kernels.reference import _growth_joint

    m, k = fine.shape
    zero_ms = zero[np.arange(m), stat.argmax(axis=1)] if m else np.zeros(0, np.int64)
    ticks = np.clip(np.ceil((now_ms - zero_ms) / tick_ms).astype(np.int64), 1, k)
    c_zero = (zero_ms // tick_ms) // per
    return _growth_joint(fine, coarse, np.maximum(ticks - 1, 0), c_zero, now_ms // tick_ms, per)


@PROPERTY
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 40), st.integers(1, 5), st.integers(2, 30), st.integers(2, 40),
    st.integers(1, 8), st.integers(0, 5000), st.sampled_from([0, 1, 2]),
)  # fmt: skip
def test_joint_growth_equals_the_numpy_form_bit_for_bit(seed, m, n_lifts, k, n_slow, per, now_tick, scale):
    """Sums in numpy's pairwise order: rows of 2-70 units (and 130-170: the split halves), ties, NaN."""
    from viraltrend.kernels.change import _joint, growth_joint

    if scale == 2:  # past numpy's 128-term block: the recursive split
        k, n_slow = k + 100, n_slow + 30
    stat, zero, fine, coarse, _, _ = _inputs(seed, m, n_lifts, k, n_slow)
    zero = zero + now_tick * TICK_MS  # change points around now: every clip of the units
    if scale == 1:  # rates that make the offsets' sums round
        fine, coarse = fine * 37.0, coarse * 1013.0
    now_ms = now_tick * TICK_MS + (seed % 7) * 1000
    want = _joint_numpy(stat, zero, fine, coarse, now_ms, TICK_MS, per)
    got = growth_joint(stat, zero, fine, coarse, now_ms=now_ms, tick_ms=TICK_MS, ticks_per_coarse=per)
    assert got.view(np.uint64).tobytes() == want.view(np.uint64).tobytes()
    out = np.empty(m)  # the plain-Python form of the kernel, too
    getattr(_joint, "py_func", _joint)(stat, zero, fine, coarse, now_ms, TICK_MS, per, out)
    assert out.view(np.uint64).tobytes() == want.view(np.uint64).tobytes()


def test_pairwise_sums_as_numpy_does():
    """numpy's own ``sum`` of rows of 1-300 terms whose order shows (magnitudes from 1e-3 to 1e3)."""
    from viraltrend.kernels.change import _reduce

    rng = np.random.default_rng(3)
    for n in range(1, 301):
        a = rng.standard_normal((4, n)) * 10.0 ** rng.uniform(-3, 3, (4, n))
        a[0, :] = -0.0  # a sum of -0.0 terms is +0.0 (numpy's identity first)
        want = a.sum(axis=1)
        got = np.array([_reduce(np.ascontiguousarray(r)) for r in a])
        assert got.view(np.uint64).tolist() == want.view(np.uint64).tolist(), n
        plain = np.array([getattr(_reduce, "py_func", _reduce)(np.ascontiguousarray(r)) for r in a])
        assert plain.view(np.uint64).tolist() == want.view(np.uint64).tolist(), n


def test_a_detectors_joint_growth_equals_the_numpy_form():
    """A ChangeDetector fed a ramp, a spike and noise: the joint growth of its reads, as numpy gives it."""
    from viraltrend.kernels.change import growth_joint

    d = ChangeDetector(lifts=(3.0, 10.0, 30.0, 100.0), tick_ms=TICK_MS, n_bins=18, capacity=4, n_coarse=24)
    rng = np.random.default_rng(11)
    mu = np.array([0.002, 0.01, 0.05, 0.3])
    seen = 0
    for t in range(1000, 1500):
        x = np.array([min((t - 1000) // 3, 250), 200 * (t == 1200), 0, rng.poisson(3)], np.float64)
        live = np.flatnonzero(x > 0)
        if live.size:
            d.update(live.astype(np.int64), x[live], mu[live], now_ms=t * TICK_MS)
        slots = np.arange(4, dtype=np.int64)
        stat, zero, fine, coarse = d.read(slots, mu, now_ms=t * TICK_MS)
        want = _joint_numpy(stat, zero, fine, coarse, t * TICK_MS, TICK_MS, 6)
        got = growth_joint(stat, zero, fine, coarse, now_ms=t * TICK_MS, tick_ms=TICK_MS, ticks_per_coarse=6)
        assert got.view(np.uint64).tolist() == want.view(np.uint64).tolist()
        seen += int((want != 0.0).sum())
    assert seen > 500  # the test read real z-scores, not only the zeros of short changes


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 40), st.sampled_from([0.0, 2.0]), st.sampled_from([0.0, 2.0]),
    st.sampled_from([0.0, 4.0]), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from(["none", "p", "shape_free"]), st.booleans(), st.booleans(), st.integers(0, 3),
)  # fmt: skip
def test_ready_equals_the_numpy_form(
    seed,
    m,
    share_min,
    floor,
    joint_z,
    has_share,
    has_long,
    has_joint,
    has_engaged,
    mode,
    long_floor,
    joint,
    model,
):
    """The compiled ``SequentialDetector.ready`` against main's numpy form: ties at every bar, NaN, inf."""
    from viraltrend.config import load_config
    from viraltrend.detect import SequentialDetector

    detect = {
        "sustain_min_share_ratio": share_min,
        "sustain_share_long_floor": floor,
        "joint_growth_z": joint_z,
    }
    vouch = [  # the default vouch, everything off, and two others
        {},
        {"recruit_share_ratio": 0.0, "min_engaged_ratio": 0.0, "growth_z_users": 0.0, "step_share_ratio": 0.0,
         "max_change_s": 0.0, "grown_change_users": 0.0},
        {"min_growth_z": 0.0, "grown_change_users": 30.0, "recruit_share_ratio": 2.0},
        {"min_growth_z": -1.0, "growth_z_users": 20.0, "step_share_ratio": 1.0, "max_change_s": 600.0},
    ][model]  # fmt: skip
    cfg = load_config(None, environ={}, overrides={"detect": detect, "model": vouch})
    det = SequentialDetector(cfg, capacity=4)
    rng = np.random.default_rng(seed)
    pick = lambda *v: rng.choice(np.array(v, np.float64), size=m)  # noqa: E731
    cols = {
        "evidence": pick(0.0, 0.99, 1.0, 1.5, 30.0, np.nan),
        "change_s": pick(0.0, 179.0, 180.0, 600.0, 1500.0, 1501.0, 3600.0, 9e3, 11e3, np.nan),
        "growth_z": pick(-3.0, -2.0, 0.0, 1.0, 1.44, 3.9, 4.0, 9.0, np.nan, -np.inf),
        "growth_z_slow": pick(-2.5, -2.0, 0.999, 1.0, 4.0, 5.0, np.nan),
        "fade_z": pick(-2.0, -1.0, 0.5, np.nan),
        "recent_lift": pick(0.0, 2.9, 3.0, 8.0, np.inf, np.nan),
        "change_users": pick(0.0, 15.0, 16.0, 40.0, 50.0, 60.0, 61.0, 125.0, 200.0, 250.0, np.nan),
    }
    if has_joint:
        cols["growth_z_joint"] = pick(-1.0, 3.9, 4.0, 6.0, np.nan)
    if has_share:
        cols["share_ratio"] = pick(0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 9.0, 12.0, np.inf, np.nan)
    if has_long:
        cols["sustain_share_ratio"] = pick(0.0, 1.9, 2.0, 4.0, 7.0, np.nan)
    if has_engaged:
        cols["engaged_ratio"] = pick(0.0, 0.24, 0.25, 1.0, np.inf, np.nan)
    users = pick(0.0, 4.0, 5.0, 20.0, 100.0)
    p = pick(0.0, 0.49, 0.5, 0.9, np.nan) if mode == "p" else None
    kw = dict(shape_free=mode == "shape_free", long_floor=long_floor, joint=joint)
    want = reference.detector_ready(det, cols, users, p, **kw)
    assert det.ready(cols, users, p, **kw).tolist() == want.tolist()
    from viraltrend.kernels.change import _ready, ready

    got = ready(cols, users, p, det._limits(), det._model_limits(), **kw)
    assert got.tolist() == want.tolist()
    if m and mode == "p":  # the plain-Python form of the kernel, too (every optional column given)
        flags = (joint and joint_z > 0.0 and has_joint) | 2 * has_share | 4 * has_long | 8 * long_floor | 32
        flags |= 64 * has_engaged
        get = lambda n: cols.get(n, np.zeros(m))  # noqa: E731
        out = np.empty(m, np.bool_)
        getattr(_ready, "py_func", _ready)(
            *(cols[n] for n in ("evidence", "change_s", "growth_z", "growth_z_slow", "fade_z")),
            cols["recent_lift"], cols["change_users"], users, get("growth_z_joint"), get("share_ratio"),
            get("sustain_share_ratio"), get("engaged_ratio"), p, int(flags), *det._limit_arrays(), out,
        )  # fmt: skip
        assert out.tolist() == want.tolist()
