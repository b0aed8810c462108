"""User sweeps planned ahead of a batch's ticks (issue 11): the user table's and user signals' steps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels.hashtable import UserTable, hash_ids
from viraltrend.kernels.users import UserSignals, _compact_step


def _sweeps_one_by_one(table, hashes, ts, cuts, ticks, next_sweep, every):
    """The engine's steps without a plan: intern up to each sweep's tick, sweep, and on."""
    slots, pre, at, nxt, pops, rel, ret = [], None, [], [], [], [], []
    j, done, sweep = 0, 0, next_sweep
    while True:
        if sweep is not None:
            while j < len(ticks) and ticks[j] < sweep:
                j += 1
        end = cuts[j] if j < len(ticks) else len(hashes)
        got, back = table.intern(hashes[done:end], ts[done:end])
        slots += got.tolist()
        if at:
            ret.append(got[back].tolist())
        else:
            pre = got[back].tolist()
        done = max(done, end)
        if j >= len(ticks):
            return slots, pre, at, nxt, pops, rel, ret
        now = int(ticks[j])
        sweep = (now // every + 1) * every
        rel.append(table.release_and_recycle().tolist())
        at.append(now), nxt.append(sweep), pops.append(len(table))


def _split(values, off):
    return [values[off[i] : off[i + 1]].tolist() for i in range(len(off) - 1)]


@settings(max_examples=120, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40)), max_size=120),
    tick_gaps=st.lists(st.integers(1, 60), max_size=40),
    first=st.sampled_from([None, 0, 70, 400]),
    max_veterans=st.sampled_from([None, 2, 6]),
    every=st.sampled_from([1, 25, 90]),
    warm=st.integers(0, 20),
)
def test_plan_sweeps_is_intern_and_release_and_recycle_at_each_tick(
    events, tick_gaps, first, max_veterans, every, warm
):
    """``UserTable.plan_sweeps`` in one compiled call against its steps one by one: the same slots,
    sweeps, releases, returning users, populations and table (every checkpoint array) after."""
    kw = {"idle_ms": 50, "allowed_lateness_ms": 20, "capacity": 2, "max_veterans": max_veterans}
    one, two = UserTable(**kw, track_held=False), UserTable(**kw, track_held=False)
    early = hash_ids([f"u{i % 7}" for i in range(warm)])  # a table that has seen users before
    for t in (one, two):
        t.intern(early, np.arange(warm, dtype=np.int64))
    ts = np.cumsum([dt for _, dt in events], dtype=np.int64) + warm
    hashes = hash_ids([f"u{u}" for u, _ in events]) if events else np.zeros(0, np.uint64)
    ticks = np.cumsum(tick_gaps, dtype=np.int64) + warm
    cuts = np.searchsorted(ts, ticks, side="left").astype(np.int64)  # tick k before the events after it
    want = _sweeps_one_by_one(one, hashes, ts, cuts.tolist(), ticks.tolist(), first, every)
    slots, pre, plan = two.plan_sweeps(hashes, ts, cuts, ticks, first, every)
    at, nxt, pops, rel, rel_off, ret, ret_off = plan
    got = (slots.tolist(), pre.tolist(), at.tolist(), nxt.tolist(), pops.tolist(), _split(rel, rel_off),
           _split(ret, ret_off))  # fmt: skip
    assert got == want
    x, y = one.to_arrays(), two.to_arrays()
    assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert len(one) == len(two) and one.n_veterans == two.n_veterans and one.high_water == two.high_water
    if ticks.size and first is None:
        assert got[2] and got[2][0] == ticks[0]  # no sweep yet: one is due at the first tick


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    pieces=st.lists(st.integers(0, 400), min_size=1, max_size=10),
    gaps_min=st.lists(st.integers(0, 90), min_size=10, max_size=10),
)
def test_compact_step_is_compact(seed, pieces, gaps_min):
    """The tick loop's compaction (``_compact_step``, its last count passed in and out) against
    ``UserSignals.compact``: the same answers, tables and memory of the last count."""
    rng = np.random.default_rng(seed)
    a, b = (UserSignals(cap_window_ms=10 * 60_000, fresh_window_ms=60_000, capacity_users=300,
                        table_capacity=16) for _ in range(2))  # fmt: skip
    t = 1_700_000_000_000
    scan = (False, 0, 1, np.zeros(64, np.int64), 0, 0)
    for i, n in enumerate(pieces):
        t += gaps_min[i] * 60_000
        ts = np.sort(t + rng.integers(0, 20 * 60_000, n)).astype(np.int64)
        hot = rng.integers(1, 400)  # busy pieces and trickles
        cols = (rng.integers(0, hot, n).astype(np.int64), rng.integers(0, 300, n).astype(np.int64),
                rng.integers(0, 3, n).astype(np.int8), ts)  # fmt: skip
        a.process(*cols), b.process(*cols)
        t = int(ts[-1]) if n else t
        rebuilt = a.compact()
        rows, used, did, counted, lo, step, hist = _compact_step(
            b.rows, np.int64(b.n_entries), np.int64(b._max_ts_ms), np.int64(b.min_table_capacity),
            np.int64(b.allowed_lateness_ms), np.int64(b.cap_window_ms), scan[0], np.int64(scan[1]),
            np.int64(scan[2]), scan[3], np.int64(scan[4]), np.int64(scan[5]),
        )  # fmt: skip
        b.rows, b._used = rows, int(used)
        if counted:
            scan = (True, int(lo), int(step), hist, int(used), b._max_ts_ms)
        assert bool(did) == rebuilt and np.array_equal(a.rows, b.rows) and a.n_entries == b.n_entries
        mem = a._live_at_scan
        assert (mem is None) == (not scan[0])
        if mem is not None:
            lo, step, hist, used0, max0 = mem
            assert (lo, step, hist.tolist(), used0, max0) == (scan[1], scan[2], scan[3].tolist(), *scan[4:])
