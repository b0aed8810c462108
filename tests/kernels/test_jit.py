"""``no_refcounts``: leaf kernels compiled without numba's reference counts give the plain-Python results."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.errors import NumbaError

from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.users import _probe


def _total(values: np.ndarray, out: np.ndarray) -> float:
    s = 0.0
    for i in range(values.shape[0]):
        out[i] = values[i] * 2.0
        s += values[i]
    return s


def _allocates(n: int) -> float:
    return float(np.zeros(n).sum())


def test_a_leaf_without_reference_counts_gives_the_plain_python_result_many_times() -> None:
    compiled = no_refcounts(_total)
    values = np.linspace(-3.0, 7.0, 101)
    out, ref = np.empty_like(values), np.empty_like(values)
    for _ in range(2000):  # a reference dropped that was never taken would free the arrays on the way
        got = compiled(values, out)
    assert got == _total(values, ref) and out.tobytes() == ref.tobytes()
    assert values.sum() == pytest.approx(got)


def test_a_function_that_allocates_is_refused() -> None:
    with pytest.raises(NumbaError):
        no_refcounts(_allocates)(3)


def test_the_user_table_probe_runs_compiled_and_as_plain_python_alike() -> None:
    rng = np.random.default_rng(3)
    rows = np.full((64, 2), -1, np.int64)
    rows[rng.choice(64, 20, replace=False)] = rng.integers(0, 10**6, (20, 2))
    for key in rng.integers(0, 10**6, 50).tolist():
        for kind in (0, 1):
            assert _probe(rows, key, kind, 63, 0) == _probe.py_func(rows, key, kind, 63, 0)
