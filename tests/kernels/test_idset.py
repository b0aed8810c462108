from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from viraltrend.kernels.hashtable import hash_ids
from viraltrend.kernels.idset import SeenIds, filter_seen, hash_pairs

IDS = st.text(min_size=0, max_size=12)
NEVER = -(2**62)


@settings(max_examples=50, deadline=None)
@given(ids=st.lists(IDS, max_size=30))
def test_hash_pairs_match_reference(ids):
    h1, h2 = hash_pairs(ids)
    assert list(zip(h1.tolist(), h2.tolist(), strict=True)) == [reference.id_hash_pair(s) for s in ids]
    assert h1.tolist() == hash_ids(ids).tolist()


def test_ids_with_nul_hash_like_the_reference():
    ids = ["a\x00b", "é", "", "\x00", "e1"]
    h1, h2 = hash_pairs(ids)
    assert list(zip(h1.tolist(), h2.tolist(), strict=True)) == [reference.id_hash_pair(s) for s in ids]


def test_the_second_hash_separates_what_the_first_does_not():
    h1, h2 = hash_pairs([f"event-{i}" for i in range(200_000)])
    pairs = np.stack([h1, h2], axis=1)
    assert np.unique(pairs, axis=0).shape[0] == h1.shape[0]
    assert np.unique(h2).shape[0] == h2.shape[0]


KEYS = st.one_of(st.none(), st.integers(0, 6))


@settings(max_examples=80, deadline=None)
@given(
    batches=st.lists(st.lists(st.tuples(KEYS, st.integers(0, 3000)), max_size=40), min_size=1, max_size=6),
    window=st.integers(1, 2000),
    rotate=st.booleans(),
)
def test_filter_matches_the_reference_across_batches_and_generations(batches, window, rotate):
    cur, prev = SeenIds(capacity=2), SeenIds(capacity=2)
    rcur: dict[tuple[int, int], int] = {}
    rprev: dict[tuple[int, int], int] = {}
    running = NEVER
    for n, batch in enumerate(batches):
        ids = [None if k is None else f"id-{k}" for k, _ in batch]
        ts = np.array([t for _, t in batch], np.int64)
        horizon = []
        for t in ts.tolist():
            running = max(running, t)
            horizon.append(running - window)
        has = np.array([i is not None for i in ids], np.bool_)
        h1, h2 = np.zeros(len(ids), np.uint64), np.zeros(len(ids), np.uint64)
        if has.any():
            h1[has], h2[has] = hash_pairs([i for i in ids if i is not None])
        got = filter_seen(cur, prev, h1, h2, has, ts, np.array(horizon, np.int64), NEVER)
        keys = [None if i is None else reference.id_hash_pair(i) for i in ids]
        want = reference.seen_filter(rcur, rprev, keys, ts.tolist(), horizon, NEVER)
        assert got.tolist() == want
        assert len(cur) == len(rcur)
        # grown only where an insert would fill it past 3/4, by doubling (dedupe26: the shell only grows)
        assert cur.rows.shape[0] == max(2, 1 << max(-(-4 * len(rcur) // 3) - 1, 0).bit_length())
        if rotate and n % 2:
            prev, cur = cur, SeenIds(capacity=2)
            rprev, rcur = rcur, {}
    h1s, h2s, tss = cur.to_lists()
    assert dict(zip(zip(h1s, h2s, strict=True), tss, strict=True)) == rcur


def test_a_table_round_trips_through_lists_and_grows():
    t = SeenIds(capacity=2)
    ids = [f"e{i}" for i in range(5000)]
    h1, h2 = hash_pairs(ids)
    ts = np.arange(5000, dtype=np.int64)
    keep = filter_seen(t, SeenIds(), h1, h2, np.ones(5000, np.bool_), ts, np.full(5000, -1, np.int64), NEVER)
    assert keep.all() and len(t) == 5000 and t.rows.shape[0] >= 5000 * 4 // 3
    a, b, c = t.to_lists()
    back = SeenIds.from_arrays(np.array(a, np.uint64), np.array(b, np.uint64), np.array(c, np.int64))
    assert sorted(map(tuple, back.rows[back.rows[:, 0] != 0].tolist())) == sorted(
        map(tuple, t.rows[t.rows[:, 0] != 0].tolist())
    )


def test_bad_table_arrays_are_refused():
    with pytest.raises(ValueError, match="no 0"):
        SeenIds.from_arrays(np.zeros(1, np.uint64), np.ones(1, np.uint64), np.ones(1, np.int64))
    with pytest.raises(ValueError, match="length of ts_ms"):
        filter_seen(SeenIds(), SeenIds(), np.ones(2, np.uint64), np.ones(1, np.uint64),
                    np.ones(2, np.bool_), np.ones(2, np.int64), np.ones(2, np.int64), NEVER)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), fill=st.integers(0, 12))
def test_the_filter_run_stops_before_the_first_entry_that_needs_the_table_grown(n, fill):
    """perf25: ``_filter_run`` (no reference counts) takes events until a new entry needs the table
    grown and stops there with nothing of that event done; ``_filter`` (the shell) then equals the
    plain reference.  A 16-row table with ``fill`` entries: the growth comes at the 12th entry."""
    from viraltrend.kernels import idset

    ids = [f"e{k}" for k in range(n)]
    h1, h2 = hash_pairs(ids)
    h1, h2 = h1.view(np.int64), h2.view(np.int64)
    table = SeenIds(capacity=16)
    if fill:
        zeros = np.zeros(fill, np.int64)
        old = hash_pairs([f"old{k}" for k in range(fill)])
        filter_seen(table, SeenIds(capacity=2), *old, np.ones(fill, np.bool_), zeros, zeros, NEVER)
    rows, used = table.rows.copy(), table.used
    keep = np.ones(n, np.bool_)
    ts = np.arange(n, dtype=np.int64) + 10
    no_prev, has_id, horizon = np.zeros((2, 3), np.int64), np.ones(n, np.bool_), np.full(n, NEVER + 1)
    i, used_after = idset._filter_run(
        rows, np.int64(used), no_prev, np.int64(0), h1, h2, has_id, ts, horizon, np.int64(NEVER), 0, keep
    )
    room = 12 - used  # entries that fit before 4 * (used + 1) > 3 * 16
    assert int(i) == min(n, max(room, 0)) and int(used_after) == used + int(i)
    assert keep.all() and (rows[:, 0] != 0).sum() == used + int(i)  # nothing of event i written
