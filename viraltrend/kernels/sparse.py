"""A sparse encoding of an array's elements for checkpoints: a bitmap and the values that differ.

An array is written as a bitmap of the elements that differ from one fill value, and those
elements' values.  Most of a checkpoint's bytes are capacity nobody used yet: empty rows of
open-addressing tables (all bits set), counter cells of event types a product never saw
(zero).  :func:`encode` keeps an element's raw bits (an unsigned integer of its item size, so
``-0.0`` and every NaN pattern survive) when they differ from ``fill``, and one bit per element
saying which did; :func:`decode` rebuilds the array bit for bit.  Both are one compiled pass,
which releases the GIL (several arrays decode at once on threads).

Layout of an encoded array of ``n`` elements of ``k`` bytes: ``mask`` uint8[ceil(n / 8)] (bit
``i % 8`` of byte ``i // 8``: element ``i`` differs from ``fill``; the bits past ``n`` are zero),
then ``values`` of the unsigned type of ``k`` bytes, one per bit set, in element order.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = [
    "RAW_TYPES",
    "choose_fill",
    "count_values",
    "decode",
    "encode",
    "encoded_nbytes",
    "raw_view",
    "sample",
]

#: The unsigned type that carries an element's raw bits, by item size (bytes).
RAW_TYPES: Final = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SAMPLE: Final = 4096  # elements sampled to choose the fill value


@njit(cache=True, nogil=True)
def _count(raw: NDArray[Any], fill: Any) -> int:
    n = 0
    for i in range(raw.shape[0]):
        n += raw[i] != fill
    return n


@njit(cache=True, nogil=True)
def _encode(raw: NDArray[Any], fill: Any, mask: NDArray[np.uint8], values: NDArray[Any]) -> int:
    """Fill ``mask`` (zeroed, uint8[ceil(n / 8)]) and ``values``; the number of values written."""
    j = 0
    for i in range(raw.shape[0]):
        v = raw[i]
        if v != fill:
            mask[i >> 3] |= np.uint8(1 << (i & 7))
            values[j] = v
            j += 1
    return j


@njit(cache=True, nogil=True)
def _decode(mask: NDArray[np.uint8], values: NDArray[Any], fill: Any, out: NDArray[Any]) -> int:
    """Write every element of ``out``; the values used, or -1 if ``mask`` asks for more than there are.

    Bytes of ``mask`` that are zero write eight fills at once (the common case of a sparse array).
    """
    n = out.shape[0]
    j = 0
    for b in range(mask.shape[0]):
        m = mask[b]
        start = b << 3
        stop = min(n, start + 8)
        if m == 0:
            for i in range(start, stop):
                out[i] = fill
            continue
        for i in range(start, stop):
            if m & (1 << (i - start)):
                if j >= values.shape[0]:
                    return -1
                out[i] = values[j]
                j += 1
            else:
                out[i] = fill
    return j


def raw_view(arr: NDArray[Any]) -> NDArray[Any] | None:
    """The elements of ``arr`` (C order) as unsigned integers of their size, or None if it has none."""
    raw_type = RAW_TYPES.get(arr.dtype.itemsize)
    if raw_type is None or arr.dtype.hasobject or arr.size == 0:
        return None
    return np.ascontiguousarray(arr).reshape(-1).view(raw_type)


def sample(raw: NDArray[Any]) -> NDArray[Any]:
    """Up to 4096 elements of ``raw`` at positions drawn with a fixed seed (the same every call).

    Drawn, not evenly spaced: a stride would fall on the same column of a table in every row.
    """
    if raw.shape[0] <= _SAMPLE:
        return raw
    return raw[np.random.default_rng(0).integers(0, raw.shape[0], _SAMPLE)]


def choose_fill(raw: NDArray[Any]) -> int:
    """The most frequent element of :func:`sample` of ``raw`` (ties: the smallest)."""
    values, counts = np.unique(sample(raw), return_counts=True)
    return int(values[int(np.argmax(counts))])


def encoded_nbytes(n_elements: int, n_values: int, itemsize: int) -> int:
    """Bytes of the mask and the values of an encoded array."""
    return (n_elements + 7) // 8 + n_values * itemsize


def encode(
    raw: NDArray[Any], fill: int, n_values: int | None = None
) -> tuple[NDArray[np.uint8], NDArray[Any]]:
    """``(mask, values)`` of ``raw`` (uint8/16/32/64[n], from :func:`raw_view`) around ``fill``.

    ``n_values``: the count of elements that differ from ``fill`` when the caller has it.

    >>> mask, values = encode(np.array([0, 7, 0, 0, 9], np.uint64), 0)
    >>> mask.tolist(), values.tolist()
    ([18], [7, 9])
    """
    fill_raw = raw.dtype.type(fill)
    count = _count(raw, fill_raw) if n_values is None else n_values
    mask = np.zeros((raw.shape[0] + 7) // 8, np.uint8)
    values = np.empty(count, raw.dtype)
    if _encode(raw, fill_raw, mask, values) != count:
        msg = f"encode: {count} values announced, not the count that differs from the fill"
        raise ValueError(msg)
    return mask, values


def count_values(raw: NDArray[Any], fill: int) -> int:
    """How many elements of ``raw`` differ from ``fill``."""
    return int(_count(raw, raw.dtype.type(fill)))


def decode(mask: NDArray[np.uint8], values: NDArray[Any], fill: int, out: NDArray[Any]) -> None:
    """Write the elements encoded as ``(mask, values)`` around ``fill`` into ``out`` (the raw view).

    Raises
    ------
    ValueError
        If ``mask`` does not cover ``out`` exactly, or its bits do not match the values' count.
    """
    if mask.shape[0] != (out.shape[0] + 7) // 8 or values.dtype != out.dtype:
        msg = (
            f"a mask of {mask.shape[0]} bytes and {values.dtype} values do not fit {out.shape[0]} {out.dtype}"
        )
        raise ValueError(msg)
    tail = out.shape[0] % 8
    if tail and int(mask[-1]) >> tail:
        msg = "the mask has bits set past the array's end"
        raise ValueError(msg)
    used = _decode(mask, values, out.dtype.type(fill), out)
    if used != values.shape[0]:
        msg = f"the mask selects {'more' if used < 0 else used} elements, the values are {values.shape[0]}"
        raise ValueError(msg)
