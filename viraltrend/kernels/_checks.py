"""Input checks shared by the kernel classes: validate in Python, then loop in numba."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

_Scalar = TypeVar("_Scalar", bound=np.generic)


def column(name: str, values: object, dtype: type[_Scalar], n: int | None, like: str) -> NDArray[_Scalar]:
    """Check that ``values`` is a 1-D numpy array of ``dtype`` (and length ``n``, like column ``like``)."""
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


def check_range(name: str, values: NDArray[Any], low: int, high: int, fix: str = "") -> None:
    """Raise ValueError unless every value lies in ``[low, high)``."""
    if values.shape[0] and (int(values.min()) < low or int(values.max()) >= high):
        bad = values[(values < low) | (values >= high)][0]
        msg = f"{name} must be in [{low}, {high}), got {bad}{fix}"
        raise ValueError(msg)
