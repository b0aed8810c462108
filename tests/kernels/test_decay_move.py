"""The landmark move row by row (``_decay_live_rows_flat``) against the cell-by-cell kernels, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.kernels.decay import (
    _INT64_MIN,
    DecayedCounters,
    _decay_live_rows,
    _decay_live_rows_flat,
    _decay_rows,
    _f32_plain,
)

_ODD = [0.0, -0.0, 1e-310, -1e-310, 1e-45, 3.4e38, 1e300, -1e300, np.inf, -np.inf, np.nan, 1.0, 7.5]


def _cells(draw: st.DrawFn, n: int, dtype: type) -> np.ndarray:
    plain = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=n, max_size=n))
    odd = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(_ODD)), max_size=12))
    with np.errstate(over="ignore", under="ignore"):
        out = np.asarray(plain, np.float64)
        for i, v in odd:
            out[i] = v
        return out.astype(dtype)


@st.composite
def _case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rows, n_types, n_hl = draw(st.integers(1, 9)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    acc = _cells(draw, rows * n_types * n_hl, dtype).reshape(rows, n_types, n_hl)
    live = np.asarray(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
    last = np.where(live, 1, _INT64_MIN).astype(np.int64)
    half_lives = draw(
        st.lists(st.sampled_from([1e-3, 60.0, 600.0, 3600.0, 86400.0]), min_size=n_hl, max_size=n_hl)
    )
    lam = np.log(2.0) / np.asarray(half_lives, np.float64)
    dt_s = draw(st.sampled_from([0.0, 1e-9, 1.0, 2597.0, 1e5, 1e9, -1.0, -2597.0, -1e5, -1e9]))
    return acc, last, lam, dt_s


@settings(max_examples=300, deadline=None)
@given(_case())
def test_the_row_by_row_move_equals_the_cell_by_cell_one(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    acc, last, lam, dt_s = case
    want, got = acc.copy(), acc.copy()
    with np.errstate(all="ignore"):
        _decay_live_rows(want, last, _INT64_MIN, lam, dt_s)
        _decay_live_rows_flat(got, last, _INT64_MIN, lam, dt_s)
    assert got.tobytes() == want.tobytes()
    every_want, every_got = acc.copy(), acc.copy()  # no times: every row
    with np.errstate(all="ignore"):
        _decay_rows(every_want, np.arange(acc.shape[0], dtype=np.int64), lam, dt_s, every_want)
        _decay_live_rows_flat(every_got, np.zeros(0, np.int64), _INT64_MIN, lam, dt_s)
    assert every_got.tobytes() == every_want.tobytes()


@pytest.mark.parametrize("py", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_move_leaves_the_counters_as_the_cell_by_cell_kernels_do(py: bool, dtype: type) -> None:
    rng = np.random.default_rng(3)
    flat = _decay_live_rows_flat.py_func if py else _decay_live_rows_flat
    for times in (True, False):
        kw = {"renorm_exponent": 60} if dtype is np.float32 else {}
        c = DecayedCounters(half_lives_s=(60.0, 600.0, 3600.0, 21600.0), n_types=6, capacity=64, times=times,
                            dtype=dtype, **kw)  # fmt: skip
        n = 500
        ts = np.sort(rng.integers(0, 3_000_000, n)).astype(np.int64)
        c.add(
            rng.integers(0, 40, n).astype(np.int64),
            rng.integers(0, 6, n).astype(np.int8),
            ts,
            rng.random(n) + 0.1,
        )
        want = c.acc.copy()
        shift = 2_600.0
        if times:
            _decay_live_rows(want, c.last_ts_ms, _INT64_MIN, c.lam, shift)
        else:
            _decay_rows(want, np.arange(c.capacity, dtype=np.int64), c.lam, shift, want)
        got = c.acc.copy()
        flat(got, c.last_ts_ms if times else np.zeros(0, np.int64), _INT64_MIN, c.lam, shift)
        assert got.tobytes() == want.tobytes()
        assert c.landmark_ms is not None
        c._move_landmark(c.landmark_ms + 2_600_000)  # the counters' own move: the same cells
        assert c.acc.tobytes() == want.tobytes()


@st.composite
def _masked(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A move's rows with a mask from another counter: the rows it marks never-written hold +0.0."""
    acc, last, lam, dt_s = draw(_case())
    acc[last == _INT64_MIN] = 0.0  # +0.0: what a never-written or cleared row holds
    longer = draw(st.integers(0, 3))  # the mask may be longer than the counters (another capacity)
    last = np.concatenate([last, np.full(longer, _INT64_MIN, np.int64)])
    return acc, last, lam, dt_s


@settings(max_examples=300, deadline=None)
@given(_masked())
def test_a_move_that_skips_the_rows_another_counter_never_wrote_is_the_move_of_every_row(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    """The trust counters' move with the counters' ``last_ts_ms`` as its mask: the same bits as the
    move of every row (-0.0, subnormal, zero, inf and NaN cells in the live rows; +0.0 elsewhere)."""
    acc, last, lam, dt_s = case
    every, masked = acc.copy(), acc.copy()
    with np.errstate(all="ignore"):
        _decay_rows(every, np.arange(acc.shape[0], dtype=np.int64), lam, dt_s, every)
        _decay_live_rows_flat(masked, last, _INT64_MIN, lam, dt_s)
    assert masked.tobytes() == every.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rebase_skips_the_rows_the_mask_marks_never_written(dtype: type) -> None:
    """``rebase(now, live)`` leaves the rows ``live`` marks never written alone and moves the others as
    ``rebase(now)`` does; a mask shorter than the capacity is ignored (every row)."""
    kw = {"renorm_exponent": 60} if dtype is np.float32 else {}

    def counters() -> DecayedCounters:
        c = DecayedCounters(
            half_lives_s=(60.0, 3600.0), n_types=3, capacity=8, times=False, dtype=dtype, **kw
        )
        slots, types = np.array([1, 4, 6], np.int64), np.array([0, 1, 2], np.int8)
        c.add(slots, types, np.full(3, 5_000, np.int64), np.ones(3))
        c.acc[3] = 1.0  # a row the mask calls never written (never so in the engine): shows the skip
        return c

    live = np.full(8, _INT64_MIN, np.int64)
    live[[1, 4, 6]] = 5_000
    every, masked, short = counters(), counters(), counters()
    now = 5_000 + 100_000_000
    assert every.rebase(now) and masked.rebase(now, live) and short.rebase(now, live[:7])
    assert np.all(masked.acc[3] == 1.0) and np.all(every.acc[3] < 1.0)
    rows = [0, 1, 2, 4, 5, 6, 7]
    assert masked.acc[rows].tobytes() == every.acc[rows].tobytes()
    assert short.acc.tobytes() == every.acc.tobytes()
    assert masked.global_acc.tobytes() == every.global_acc.tobytes()


# perf26: float32 cells whose move factors are all "plain" take the product without a per-row flag


@st.composite
def _bits_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """float32 cells from any bit pattern (every NaN payload, subnormals, infs), some rows dead."""
    rows, n_types, n_hl = draw(st.integers(1, 7)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    n = rows * n_types * n_hl
    special = st.sampled_from([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 1])
    bits = draw(st.lists(st.one_of(st.integers(0, 2**32 - 1), special), min_size=n, max_size=n))
    acc = np.asarray(bits, np.uint32).view(np.float32).reshape(rows, n_types, n_hl)
    live = np.asarray(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
    last = np.where(live, 1, _INT64_MIN).astype(np.int64)
    if draw(st.booleans()):
        last = np.zeros(0, np.int64)  # every row
    half_lives = draw(st.lists(st.sampled_from([1e-3, 1.0, 60.0, 300.0, 3600.0, 86400.0]), min_size=n_hl,
                               max_size=n_hl))  # fmt: skip
    lam = np.log(2.0) / np.asarray(half_lives, np.float64)
    dt_s = draw(st.sampled_from([0.0, 1e-9, 1.0, 2597.0, 2598.0, 13000.0, 9e4, 1e6, -2597.0]))
    return acc, last, lam, dt_s


@settings(max_examples=400, deadline=None)
@given(_bits_case())
def test_the_move_equals_the_plain_reference_for_any_float32_bits(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    acc, last, lam, dt_s = case
    with np.errstate(all="ignore"):
        want = reference.landmark_move(acc, last, _INT64_MIN, lam, dt_s)
        for kernel in (_decay_live_rows_flat, _decay_live_rows_flat.py_func):
            got = acc.copy()
            kernel(got, last, _INT64_MIN, lam, dt_s)
            assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist()


def test_every_float32_inf_and_nan_moves_as_the_cell_by_cell_kernel_moves_it() -> None:
    """All 2**24 float32 bit patterns with the exponent all ones, in rows of the engine's 6 x 4 cells,
    moved by the engine's half-lives over one fast-half-life landmark step (the factors are plain)."""
    mantissa = np.arange(2**23, dtype=np.uint32)
    bits = np.concatenate([0x7F800000 | mantissa, 0xFF800000 | mantissa])
    bits = np.concatenate([bits, np.zeros(-bits.shape[0] % 24, np.uint32)])  # whole rows
    acc = bits.view(np.float32).reshape(-1, 6, 4)
    lam = np.log(2.0) / np.asarray([60.0, 300.0, 3600.0, 86400.0])
    last = np.ones(acc.shape[0], np.int64)
    last[::3] = _INT64_MIN  # some rows dead
    assert _f32_plain(np.exp(-lam * 2598.0))
    want, got = acc.copy(), acc.copy()
    _decay_live_rows(want, last, _INT64_MIN, lam, 2598.0)
    _decay_live_rows_flat(got, last, _INT64_MIN, lam, 2598.0)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(got.view(np.uint32)[::3], acc.view(np.uint32)[::3])  # dead rows untouched


def test_the_plain_factor_test_refuses_what_a_float32_product_could_leave_subnormal() -> None:
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    assert _f32_plain(np.array([1.0, 0.5, 1e-200]))
    assert not _f32_plain(np.array([1.0, 2.2250738585072014e-308 / tiny * 0.99]))
    assert not _f32_plain(np.array([1.0 + 1e-12]))  # a backwards move
    assert not _f32_plain(np.array([0.0])) and not _f32_plain(np.array([np.nan]))
