from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels.columns import trust_rows
from viraltrend.kernels.decay import DecayedCounters
from viraltrend.kernels.segment import apply_segment
from viraltrend.kernels.users import UserSignals

NEVER = int(np.iinfo(np.int64).min)
START = 1_764_201_600_000


def parts():
    signals = UserSignals(cap_window_ms=3_600_000, fresh_window_ms=600_000, allowed_lateness_ms=30_000)
    counters = DecayedCounters(half_lives_s=(60.0, 3600.0), n_types=6, capacity=8)
    trust = DecayedCounters(half_lives_s=(300.0, 86400.0), n_types=3, capacity=8)
    return signals, counters, trust


def steps(signals, counters, trust, slots, users, types, ts):
    """The step-by-step path (each step checks its inputs): the reference."""
    first = int(np.unique(slots[counters.last_ts_ms[slots] == NEVER]).size)
    weight, new_pair, fresh = signals.process(slots, users, types, ts)
    counters.add(slots, types, ts, weight)
    rows, channel, rows_ts = trust_rows(slots, ts, new_pair, fresh)
    trust.add(rows, channel, rows_ts, np.ones(channel.size))
    return new_pair, first


SEGMENTS = st.lists(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 5), st.integers(0, 5), st.integers(-40_000, 900_000)),
        min_size=0,
        max_size=25,
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=80, deadline=None)
@given(segments=SEGMENTS, gap_s=st.sampled_from([0, 60, 4000, 200_000]))
def test_one_call_equals_the_steps_bit_for_bit(segments, gap_s):
    a, b = parts(), parts()
    for signals in (a[0], b[0]):
        signals.ensure_users(6)
    fused_calls = 0
    for k, seg in enumerate(segments):
        slots = np.array([s for s, _, _, _ in seg], np.int64)
        users = np.array([u for _, u, _, _ in seg], np.int64)
        types = np.array([t for _, _, t, _ in seg], np.int8)
        ts = np.array([START + k * gap_s * 1000 + d for _, _, _, d in seg], np.int64)
        want = steps(*a, slots, users, types, ts)
        got = apply_segment(*b, slots, users, types, ts)
        if got is None:  # first segment (no landmark yet), a landmark move, an empty segment
            got = steps(*b, slots, users, types, ts)
        else:
            fused_calls += 1
        assert got[0].tolist() == want[0].tolist() and got[1] == want[1]
        for x, y in zip(a, b, strict=True):
            for name, arr in x.to_arrays().items():
                np.testing.assert_array_equal(arr, y.to_arrays()[name], err_msg=name, strict=True)
    if gap_s == 0 and len(segments) > 2 and sum(map(len, segments[1:])) and len(segments[0]):
        assert fused_calls > 0


def test_out_of_range_inputs_leave_it_to_the_steps():
    signals, counters, trust = parts()
    signals.ensure_users(4)
    one = np.ones(1, np.int64)
    steps(signals, counters, trust, one, one, np.ones(1, np.int8), np.full(1, START, np.int64))
    assert apply_segment(signals, counters, trust, one * 8, one, np.ones(1, np.int8), one * START) is None
    big = one * signals.capacity_users
    assert apply_segment(signals, counters, trust, one, big, np.ones(1, np.int8), one * START) is None
    assert apply_segment(signals, counters, trust, one, one, np.full(1, 6, np.int8), one * START) is None
    assert apply_segment(signals, counters, trust, one, one, np.ones(1, np.int8), one * START) is not None


def test_fold_funnel_is_funnel_share_add_bit_for_bit() -> None:
    """``FunnelShare.add_rows`` (``fold_funnel``, one compiled call) against ``add`` row by row."""
    from viraltrend.trust import FunnelShare

    rng = np.random.default_rng(11)
    for half_lives in ((60_000, 3_600_000), (1, 1), (0, 7), (1000, 100_000)):
        ref = FunnelShare(half_lives_ms=half_lives)
        got = FunnelShare(half_lives_ms=half_lives)
        at = 1_764_000_000_000
        for _ in range(30):  # runs of rows as the compiled tick loop hands them over
            m = int(rng.integers(0, 40))
            steps = rng.choice([0, 1, 7, 999, 10_000, 3_600_001, -5_000], size=m)  # late rows too
            ts = at + np.cumsum(steps)
            rows = np.stack([rng.integers(0, 50, m), rng.integers(0, 5, m), ts], axis=1).astype(np.int64)
            for buys, blind, t in rows.tolist():
                ref.add(buys, blind, now_ms=t)
            got.add_rows(rows)  # as Engine._run_ticks hands them over
            assert (got.buys, got.blind, got.at_ms) == (ref.buys, ref.blind, ref.at_ms)  # exact floats
            at = int(ts[-1]) if m else at
        assert ref.buys[0] > 0


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([(60.0, 3600.0), (300.0, 86400.0), (1.0,), (7.0, 900.0, 86400.0)]),
    st.sampled_from([np.float32, np.float64]),
    st.integers(-5_000_000, 5_000_000),
    st.lists(st.integers(0, 400_000_000), min_size=1, max_size=6),
    st.booleans(),
)
def test_rebase_in_the_tick_loop_is_the_counters_rebase(half_lives, dtype, first_ms, steps_ms, times):
    """``_rebase``/``_next_rebase`` (the compiled tick loop's landmark moves) against ``DecayedCounters``.

    The same landmarks, the same next-move times and the same bits of every accumulator after each
    tick, with and without per-slot times (the trust counters keep none) and both cell types.
    """
    from viraltrend.kernels.segment import _EVERY_ROW, _next_rebase, _rebase

    def counters():
        renorm = {} if dtype == np.float64 else {"renorm_exponent": 30.0}  # the engine's float32 layout
        c = DecayedCounters(
            half_lives_s=half_lives, n_types=3, capacity=6, dtype=dtype, times=times, **renorm
        )
        slots = np.array([0, 2, 2, 5], np.int64)
        c.add(slots, np.array([0, 1, 2, 0], np.int8), np.full(4, START + first_ms, np.int64), np.ones(4))
        if times:
            c.clear(np.array([5], np.int64))  # a cleared row: never written again, stays zero
        return c

    ref, got = counters(), counters()
    now = START + first_ms
    for step in steps_ms:
        now += step
        assert _next_rebase(got._landmark_ms, got._lam_max, got.renorm_exponent) == ref.next_rebase_ms()
        ref.rebase(now)
        live = got.last_ts_ms if times else _EVERY_ROW
        got._landmark_ms = int(
            _rebase(
                got.acc,
                got.global_acc,
                live,
                got.lam,
                got._lam_max,
                got.renorm_exponent,
                got._landmark_ms,
                now,
            )
        )
        assert got._landmark_ms == ref._landmark_ms
        assert got.acc.tobytes() == ref.acc.tobytes() and got.global_acc.tobytes() == ref.global_acc.tobytes()


def test_the_tick_loop_helpers_agree_with_their_plain_python_runs():
    """``_moves``, ``_next_rebase`` and ``_rebase`` compiled, and their source run by the interpreter."""
    from viraltrend.kernels.segment import _moves, _next_rebase, _rebase

    rng = np.random.default_rng(7)
    for landmark in (0, 1_000, 1_764_201_600_123, -3_000):
        for lam_max, renorm in ((np.log(2) / 60, 30.0), (np.log(2) / 1.0, 700.0), (1e-5, 30.0)):
            assert _next_rebase(landmark, lam_max, renorm) == _next_rebase.py_func(landmark, lam_max, renorm)
            for new in (landmark + 999, landmark + 10**6, landmark + 10**9):
                assert _moves(landmark, new, lam_max, renorm) == _moves.py_func(
                    landmark, new, lam_max, renorm
                )
    acc = rng.random((5, 3, 2)).astype(np.float32)
    g = rng.random((3, 2))
    lam = np.array([np.log(2) / 60, np.log(2) / 3600])
    live = np.array([1, NEVER, 3, NEVER, 9], np.int64)
    a2, g2 = acc.copy(), g.copy()
    n1 = _rebase(acc, g, live, lam, float(lam.max()), 30.0, 0, 4_000_123)
    n2 = _rebase.py_func(a2, g2, live, lam, float(lam.max()), 30.0, 0, 4_000_123)
    assert n1 == n2 == 4_000_000 and acc.tobytes() == a2.tobytes() and g.tobytes() == g2.tobytes()


def test_the_idle_ticks_without_reference_counts_stop_where_the_loop_must_act():
    """``_idle_ticks`` (perf23): idle ticks snapshot only; it stops at a segment, sweep, label, eviction."""
    from viraltrend.kernels.segment import _NONE, _idle_ticks

    ticks = np.arange(0, 20_000, 1_000, dtype=np.int64)  # 20 ticks, 1 s apart
    cuts = np.zeros(20, np.int64)
    cuts[12:] = 5  # a segment before tick 12
    far = 10**12

    def run(
        fn, k, seg=0, sweep=far, label=far, rebase=far, t_rebase=far, evict=far, last=_NONE, every=3000.0
    ):
        snaps = np.full(20, -1, np.int64)
        k2, n, last2 = fn(
            cuts, ticks, k, 20, seg, sweep, label, rebase, t_rebase, evict, last, every, snaps, 0
        )
        return k2, last2, snaps[:n].tolist()

    for fn in (_idle_ticks, _idle_ticks.py_func):
        assert run(fn, 0) == (12, 9_000, [0, 3_000, 6_000, 9_000])  # the segment before tick 12
        assert run(fn, 0, seg=5) == (20, 18_000, [0, 3_000, 6_000, 9_000, 12_000, 15_000, 18_000])
        assert run(fn, 0, last=-500) == (12, 9_000, [3_000, 6_000, 9_000])
        assert run(fn, 0, sweep=4_000) == (4, 3_000, [0, 3_000])
        assert run(fn, 2, label=2_000) == (2, _NONE, [])
        assert run(fn, 0, rebase=5_500)[0] == 6 and run(fn, 0, t_rebase=7_000)[0] == 7
        assert run(fn, 0, evict=1_000)[0] == 1 and run(fn, 0, evict=_NONE)[0] == 0
    rng = np.random.default_rng(23)
    for _ in range(300):  # compiled and plain Python alike, many calls on the same arrays
        args = dict(
            seg=int(rng.integers(0, 6)),
            sweep=int(rng.integers(0, 25_000)),
            label=int(rng.integers(0, 25_000)),
            rebase=int(rng.integers(0, 25_000)),
            t_rebase=int(rng.integers(0, 25_000)),
            evict=int(rng.choice([_NONE, int(rng.integers(0, 25_000))])),
            last=int(rng.choice([_NONE, int(rng.integers(-5_000, 5_000))])),
            every=float(rng.integers(1, 5_000)),
        )
        k = int(rng.integers(0, 20))
        assert run(_idle_ticks, k, **args) == run(_idle_ticks.py_func, k, **args)


def test_the_segment_checks_and_first_marks_run_compiled_and_as_plain_python_alike():
    """``_segment_ok`` and ``_mark_first`` (perf23, no reference counts) against their plain-Python runs."""
    from viraltrend.kernels.segment import _mark_first, _segment_ok

    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        slots, users = rng.integers(-1, 9, n).astype(np.int64), rng.integers(0, 7, n).astype(np.int64)
        types, ts = rng.integers(0, 7, n).astype(np.int8), rng.integers(0, 10**7, n).astype(np.int64)
        args = (
            slots,
            users,
            types,
            ts,
            8,
            6,
            6,
            10**12,
            np.int64(0),
            np.int64(10**6),
            0.0116,
            30.0,
            0.001,
            30.0,
        )
        assert _segment_ok(*args) == _segment_ok.py_func(*args)
        ok = slots[(slots >= 0)]
        last, last2 = np.full(9, NEVER, np.int64), np.full(9, NEVER, np.int64)
        last[::3] = last2[::3] = 5
        assert _mark_first(ok, last, NEVER) == _mark_first.py_func(ok, last2, NEVER)
        assert last.tobytes() == last2.tobytes()
        assert _mark_first(ok, last, NEVER) == 0


# perf27: the per-event columns written into the caller's (scratch) arrays ----------------------------
INT64_MIN = int(np.iinfo(np.int64).min)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 30), st.integers(0, 5), st.integers(0, 7_200_000)),
        max_size=120,
    ),
    capacity=st.sampled_from([4, 8, 64]),
)
def test_the_user_signals_into_scratch_equal_their_allocating_call(events, capacity):
    """``_process_into`` over arrays holding anything, longer than the batch, and with rebuilds of a small
    table, gives ``_process``'s outputs and table; the entries past the batch stay untouched."""
    from viraltrend.kernels.users import _process, _process_into

    product = np.array([e[0] for e in events], np.int64)
    user = np.array([e[1] for e in events], np.int64)
    kind = np.array([e[2] for e in events], np.int8)
    ts = np.array([START + e[3] for e in events], np.int64)
    n = len(events)

    def state():
        return np.full((capacity, 2), -1, np.int64), np.full(31, INT64_MIN, np.int64)

    rows, seen = state()
    r1, u1, m1, weight, new_pair, fresh = _process(
        rows, 0, INT64_MIN, seen, product, user, kind, ts, 600_000, 300_000, 30_000, capacity, 2
    )
    rows2, seen2 = state()
    w2, p2, f2 = np.full(n + 5, np.nan), np.ones(n + 5, np.bool_), np.ones(n + 5, np.bool_)
    r2, u2, m2 = _process_into(
        rows2, 0, INT64_MIN, seen2, product, user, kind, ts, 600_000, 300_000, 30_000, capacity, 2, w2, p2, f2
    )
    np.testing.assert_array_equal(r1, r2, strict=True)
    np.testing.assert_array_equal(seen, seen2, strict=True)
    assert (u1, m1) == (u2, m2)
    np.testing.assert_array_equal(weight, w2[:n], strict=True)
    np.testing.assert_array_equal(new_pair, p2[:n], strict=True)
    np.testing.assert_array_equal(fresh, f2[:n], strict=True)
    assert np.isnan(w2[n:]).all() and p2[n:].all() and f2[n:].all()


@settings(max_examples=60, deadline=None)
@given(flags=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40))
def test_the_trust_rows_into_scratch_equal_their_allocating_call(flags):
    from viraltrend.kernels.columns import _trust_rows, _trust_rows_into

    n = len(flags)
    slots, ts = np.arange(n, dtype=np.int64) * 3, START + np.arange(n, dtype=np.int64)
    new_pair = np.array([a for a, _ in flags], np.bool_)
    fresh = np.array([b for _, b in flags], np.bool_)
    want = _trust_rows(slots, ts, new_pair, fresh)
    got = np.full(3 * n + 2, -7, np.int64), np.full(3 * n + 2, 9, np.int8), np.full(3 * n + 2, -7, np.int64)
    m = _trust_rows_into(slots, ts, new_pair, fresh, *got)
    assert m == want[0].shape[0]
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g[:m], strict=True)
        assert (g[m:] == g[-1]).all()
