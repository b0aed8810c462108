"""The shared input checks: the compiled range check against the numpy one it replaced."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels._checks import check_range


def _reference(values: np.ndarray, low: int, high: int) -> str | None:
    """The message of the numpy check (two reductions, then the first value outside), or None."""
    if values.shape[0] and (int(values.min()) < low or int(values.max()) >= high):
        return f"x must be in [{low}, {high}), got {values[(values < low) | (values >= high)][0]}"
    return None


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from([np.int8, np.int32, np.int64, np.uint64, np.float64]),
    data=st.lists(st.integers(-100, 100), max_size=20),
    low=st.integers(-50, 50),
    width=st.integers(0, 120),
)
def test_check_range_raises_exactly_when_the_numpy_check_does(dtype, data, low, width):
    values = np.array([abs(v) for v in data] if dtype == np.uint64 else data, dtype)
    want = _reference(values, low, low + width)
    if want is None:
        check_range("x", values, low, low + width)
    else:
        with pytest.raises(ValueError) as err:
            check_range("x", values, low, low + width)
        assert str(err.value) == want


def test_check_range_at_the_int64_limits():
    values = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], np.int64)
    check_range("x", values, int(values[0]), int(values[1]) + 1)  # high beyond int64: numpy path
    with pytest.raises(ValueError, match="got 9223372036854775807"):
        check_range("x", values, int(values[0]), int(values[1]))
