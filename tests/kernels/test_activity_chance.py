"""The guard's chance of an overlap among heterogeneous users, compiled: the numpy form's bits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.kernels.audience import _activity_chance
from viraltrend.trust import activity_chance


def _bits(a: np.ndarray) -> list[int]:
    return np.ascontiguousarray(a, np.float64).view(np.uint64).ravel().tolist()


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 12), st.integers(1, 70), st.integers(0, 40), st.booleans())
def test_activity_chance_equals_the_numpy_form_bit_for_bit(seed, m, k, r, odd):
    """Weights from 1 to 1e4 (terms capped at 1), counts past k (the index clipped), none sampled, NaN."""
    rng = np.random.default_rng(seed)
    chance = rng.random(r) ** 3 * rng.choice([1e-4, 1e-2, 1.0], size=r)
    weight = np.maximum(1.0, rng.lognormal(0.0, 2.0, size=(m, k)))
    sampled = rng.integers(-1, k + 6, size=(m, r))
    if odd and r:
        chance[0] = np.nan
        weight[:, -1] = np.inf
    want = reference.activity_chance(chance, weight, sampled)
    assert _bits(activity_chance(chance, weight, sampled)) == _bits(want)
    out = np.empty(sampled.shape)
    getattr(_activity_chance, "py_func", _activity_chance)(chance, weight, sampled, out)
    assert _bits(out) == _bits(want)


def test_the_running_sum_is_in_order():
    """Terms whose sum rounds differently in any other order: the kernel adds first to last, as cumsum."""
    chance = np.array([1.0])
    weight = np.array([[0.5] + [5e-17] * 31])  # the small terms vanish one by one after the large one
    sampled = np.array([[32]])
    want = reference.activity_chance(chance, weight, sampled)
    assert _bits(activity_chance(chance, weight, sampled)) == _bits(want)
    backwards = sum(reversed((chance[0] * weight[0]).tolist())) / 32
    assert _bits(want) != _bits(np.array([backwards]))  # the test can tell an order apart
