"""The engine's small column kernels against the numpy expressions they replace."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels.columns import in_sorted, trust_rows

PROPERTY = settings(max_examples=200, deadline=None)
_SLOTS = st.lists(st.integers(0, 60), max_size=40)


@PROPERTY
@given(a=_SLOTS, b=_SLOTS)
def test_in_sorted_is_isin_for_sorted_columns(a, b):
    a_, b_ = np.sort(np.array(a, np.int64)), np.sort(np.array(b, np.int64))
    np.testing.assert_array_equal(in_sorted(a_, b_), np.isin(a_, b_))


@PROPERTY
@given(rows=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10**13), st.booleans(), st.booleans())))
def test_trust_rows_are_the_three_concatenated_selections(rows):
    slots = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] for r in rows], np.int64)
    new_pair = np.array([r[2] for r in rows], np.bool_)
    fresh = np.array([r[3] for r in rows], np.bool_)
    got_slots, channel, got_ts = trust_rows(slots, ts, new_pair, fresh)
    want_channel = np.concatenate(
        [
            np.zeros(int(new_pair.sum()), np.int8),
            np.ones(int(fresh.sum()), np.int8),
            np.full(len(rows), 2, np.int8),
        ]
    )
    np.testing.assert_array_equal(got_slots, np.concatenate([slots[new_pair], slots[fresh], slots]))
    np.testing.assert_array_equal(got_ts, np.concatenate([ts[new_pair], ts[fresh], ts]))
    np.testing.assert_array_equal(channel, want_channel)
    assert channel.dtype == np.int8 and got_slots.dtype == got_ts.dtype == np.int64
