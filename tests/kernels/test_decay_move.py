"""The landmark move row by row (``_decay_live_rows_flat``) against the cell-by-cell kernels, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels.decay import (
    _INT64_MIN,
    DecayedCounters,
    _decay_live_rows,
    _decay_live_rows_flat,
    _decay_rows,
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
