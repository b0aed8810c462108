from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.dedup import Deduplicator


def reference_keep(ids, ts, window_ms):
    """An event is a duplicate if a kept copy of its id has ts >= running max ts - window."""
    last_kept: dict[str, int] = {}
    running = None
    keep = []
    for eid, t in zip(ids, ts, strict=False):
        running = t if running is None else max(running, t)
        if eid is not None and eid in last_kept and last_kept[eid] >= running - window_ms:
            keep.append(False)
            continue
        keep.append(True)
        if eid is not None:
            last_kept[eid] = t
    return keep


def test_repeat_within_window_is_dropped():
    d = Deduplicator(window_ms=1000)
    assert d.filter(["a"], np.array([0])).tolist() == [True]
    assert d.filter(["a"], np.array([500])).tolist() == [False]


def test_repeat_after_window_is_kept():
    d = Deduplicator(window_ms=1000)
    d.filter(["a", "b"], np.array([0, 5000]))
    assert d.filter(["a"], np.array([5001])).tolist() == [True]


def test_events_without_id_are_never_duplicates():
    d = Deduplicator(window_ms=1000)
    assert d.filter([None, None], np.array([0, 0])).tolist() == [True, True]


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", None]), st.integers(0, 5000)), min_size=0, max_size=60
    ),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_any_batch_split_matches_the_reference(events, cuts):
    ids = [e for e, _ in events]
    ts = [t for _, t in events]
    d = Deduplicator(window_ms=1000)
    bounds = sorted({0, len(ids), *[min(c, len(ids)) for c in cuts]})
    got: list[bool] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        got += d.filter(ids[a:b], np.array(ts[a:b], np.int64)).tolist()
    assert got == reference_keep(ids, ts, 1000)


def test_checkpoint_round_trip_keeps_memory():
    d = Deduplicator(window_ms=1000)
    d.filter(["a"], np.array([10]))
    d2 = Deduplicator.from_dict(d.to_dict())
    assert d2.filter(["a"], np.array([20])).tolist() == [False]
