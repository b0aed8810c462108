"""The sparse encoding of checkpoint arrays: bit-exact round trips, and refusal of masks that do not fit."""

from __future__ import annotations

import numpy as np
import pytest

from viraltrend.kernels import sparse


def round_trip(arr: np.ndarray, fill: int | None = None) -> np.ndarray:
    raw = sparse.raw_view(arr)
    assert raw is not None
    fill = sparse.choose_fill(raw) if fill is None else fill
    mask, values = sparse.encode(raw, fill)
    assert values.shape[0] == sparse.count_values(raw, fill)
    out = np.empty_like(arr)
    sparse.decode(mask, values, fill, out.reshape(-1).view(raw.dtype))
    return out


def reference_encode(raw: np.ndarray, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """The layout of the module's docstring, with numpy: little-endian bits, values in order."""
    differs = raw != raw.dtype.type(fill)
    return np.packbits(differs, bitorder="little"), raw[differs]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.int64, np.float64, np.bool_])
def test_round_trip_is_bit_exact_and_matches_the_numpy_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    arr = np.zeros(n, dtype)
    hit = rng.random(n) < rng.random()
    arr[hit] = rng.integers(1, 100, int(hit.sum())).astype(dtype)
    got = round_trip(arr)
    assert got.tobytes() == arr.tobytes()
    raw = sparse.raw_view(arr)
    fill = sparse.choose_fill(raw)
    mask, values = sparse.encode(raw, fill)
    want_mask, want_values = reference_encode(raw, fill)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(values, want_values)


def test_floats_keep_their_bits_negative_zero_and_nan_payloads_included():
    arr = np.zeros(1000)
    arr[3] = -0.0
    arr[10] = np.nan
    arr.view(np.uint64)[11] = 0x7FF8_0000_DEAD_BEEF  # a NaN with a payload
    arr[12] = np.inf
    arr[13] = 5e-324
    got = round_trip(arr, fill=0)
    assert got.tobytes() == arr.tobytes()


def test_a_table_of_empty_rows_uses_its_empty_value_as_fill():
    rows = np.full((4096, 2), -1, np.int64)
    rows[[5, 700, 4000]] = [[1, 2], [3, 4], [5, 6]]
    raw = sparse.raw_view(rows)
    assert sparse.choose_fill(raw) == 2**64 - 1  # -1 as uint64
    mask, values = sparse.encode(raw, sparse.choose_fill(raw))
    assert values.shape[0] == 6
    assert sparse.encoded_nbytes(raw.shape[0], 6, 8) == mask.nbytes + values.nbytes
    assert round_trip(rows).tobytes() == rows.tobytes()


@pytest.mark.parametrize("n", [1, 7, 8, 9, 63, 64, 65])
def test_lengths_around_a_byte_of_mask(n):
    arr = np.arange(n, dtype=np.int32) % 3
    assert round_trip(arr, fill=0).tobytes() == arr.tobytes()
    assert round_trip(arr, fill=2).tobytes() == arr.tobytes()


def test_an_empty_mask_writes_only_the_fill():
    arr = np.full(100, 7, np.uint16)
    raw = sparse.raw_view(arr)
    mask, values = sparse.encode(raw, 7)
    assert values.shape[0] == 0 and not mask.any()
    assert round_trip(arr).tobytes() == arr.tobytes()


def test_a_mask_that_selects_more_values_than_there_are_is_refused():
    raw = np.arange(100, dtype=np.uint64)
    mask, values = sparse.encode(raw, 0)
    out = np.empty(100, np.uint64)
    with pytest.raises(ValueError, match="selects more elements"):
        sparse.decode(mask, values[:-1], 0, out)
    with pytest.raises(ValueError, match="selects 0 elements, the values are 99"):
        sparse.decode(np.zeros_like(mask), values, 0, out)


def test_a_mask_of_the_wrong_size_or_with_bits_past_the_end_is_refused():
    raw = np.arange(10, dtype=np.uint64)
    mask, values = sparse.encode(raw, 0)
    out = np.empty(10, np.uint64)
    with pytest.raises(ValueError, match="do not fit"):
        sparse.decode(mask[:1], values, 0, out)
    bad = mask.copy()
    bad[-1] |= 0x80
    with pytest.raises(ValueError, match="past the array's end"):
        sparse.decode(bad, values, 0, out)


def test_arrays_without_an_integer_of_their_size_have_no_raw_view():
    assert sparse.raw_view(np.array(["a", "bcd"])) is None  # 12 bytes an element
    assert sparse.raw_view(np.zeros(3, np.complex128)) is None
    assert sparse.raw_view(np.zeros(0)) is None
