"""Input checks shared by the kernel classes: validate in Python, then loop in numba."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
from numba import njit
from numpy.typing import NDArray

_Scalar = TypeVar("_Scalar", bound=np.generic)
_ADOPT: ContextVar[bool] = ContextVar("viraltrend_adopt_checkpoint_arrays", default=False)


@contextmanager
def adopting() -> Iterator[None]:
    """Within it, :func:`owned` takes checkpoint arrays as they are instead of copying them.

    For a restore from arrays nobody else holds (a store's freshly loaded checkpoint): the
    engine then works in them, and a restore costs no copy of the state.
    """
    token = _ADOPT.set(True)
    try:
        yield
    finally:
        _ADOPT.reset(token)


def owned(values: Any, dtype: Any) -> NDArray[Any]:
    """A C-contiguous copy of ``values`` as ``dtype`` (in :func:`adopting`: ``values`` itself if it fits)."""
    if _ADOPT.get():
        out = np.asarray(values, dtype, order="C")
        if out.flags.writeable:
            return out
    return np.array(values, dtype, order="C")


def column(name: str, values: object, dtype: type[_Scalar], n: int | None, like: str) -> NDArray[_Scalar]:
    """Check that ``values`` is a 1-D numpy array of ``dtype`` (and length ``n``, like column ``like``)."""
    if (  # the common case, called at every tick and segment: as below, without building a dtype or a view
        type(values) is np.ndarray
        and values.dtype == dtype
        and values.ndim == 1
        and (n is None or values.shape[0] == n)
        and values.flags.c_contiguous
    ):
        return values
    want = np.dtype(dtype)
    if not isinstance(values, np.ndarray):
        msg = f"{name} must be a numpy array of {want}, got {type(values).__name__}"
        raise TypeError(msg)
    if values.dtype != want:
        msg = f"{name} must be {want}, got {values.dtype}; convert with {name}.astype(np.{want})"
        raise TypeError(msg)
    if values.ndim != 1 or (n is not None and values.shape[0] != n):
        length = "" if n is None else f" of length {n}, like {like}"
        msg = f"{name} must be 1-D{length}, got shape {values.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(values)


_SIGNED = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


@njit(cache=True)
def _first_outside(values: NDArray[Any], low: int, high: int) -> int:
    """Index of the first value outside ``[low, high)``, or -1 (one pass; ``values`` signed ints)."""
    for i in range(values.shape[0]):
        if values[i] < low or values[i] >= high:
            return i
    return -1


def check_range(name: str, values: NDArray[Any], low: int, high: int, fix: str = "") -> None:
    """Raise ValueError unless every value lies in ``[low, high)``."""
    if not values.shape[0]:
        return
    if values.dtype in _SIGNED and values.ndim == 1 and _INT64_MIN <= low <= high <= _INT64_MAX:
        i = _first_outside(values, low, high)  # one compiled pass instead of two reductions
        if i >= 0:
            msg = f"{name} must be in [{low}, {high}), got {values[i]}{fix}"
            raise ValueError(msg)
        return
    if int(values.min()) < low or int(values.max()) >= high:
        bad = values[(values < low) | (values >= high)][0]
        msg = f"{name} must be in [{low}, {high}), got {bad}{fix}"
        raise ValueError(msg)
