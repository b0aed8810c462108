"""FeatureReader.read's columns, compiled, against the numpy form they replaced: bit for bit, in order."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.config import load_config
from viraltrend.scoring import FeatureReader


def _bits(cols: dict[str, np.ndarray]) -> list[tuple[str, bytes]]:
    return [(k, np.ascontiguousarray(v, np.float64).view(np.uint64).tobytes()) for k, v in cols.items()]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 40), st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from([0.0, 0.5, 30.0, 5000.0, 4e5, math.inf]), st.integers(0, 3),
)  # fmt: skip
def test_read_equals_the_numpy_form_bit_for_bit(seed, m, fast, has_trust, shares, observed_s, n_products):
    """Empty, tiny, huge and fractional decayed counts; no shares in the catalogue; young and old streams."""
    reader = FeatureReader.from_config(load_config(None, environ={}))
    rng = np.random.default_rng(seed)
    n_hl = len(reader.half_lives_s)
    counts = rng.choice([0.0, 1e-310, 1e-5, 0.37, 1.0, 3.0, 250.5, 1e7], size=(m, 6, n_hl))
    counts *= rng.random((m, 6, n_hl)) < 0.7  # many empty cells
    glob = rng.choice([0.0, 2.0, 1e4, 3.3e6], size=(6, n_hl))
    if not shares:
        glob[3] = 0.0
    trust = rng.choice([0.0, 0.5, 1.0, 7.0, 40.0, 1e-13], size=(m, 3)) if has_trust else None
    age = rng.choice([0.0, 10.0, 9e4], size=m)
    args = (counts, glob, n_products * 5000, age, observed_s)
    want = reference.feature_columns(reader, *args, trust=trust, fast=fast)
    got = reader.read(*args, trust=trust, fast=fast)
    assert _bits(got) == _bits(want)  # the same names, in the same order, with the same bits
