from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import viraltrend.kernels.users as U
from tests.kernels import reference
from tests.kernels.reference import BASE_TS_MS, UserEvents
from viraltrend.errors import CheckpointError
from viraltrend.kernels.users import (
    BYTES_PER_ENTRY,
    UserSignals,
    UserSketches,
    _bucket,
    _count_live,
    _mix64,
    _probe,
)

MIN_MS = 60_000
HOUR_MS = 3_600_000
CAP_MS = 10 * MIN_MS
FRESH_MS = 30 * MIN_MS
LATE_MS = 2 * MIN_MS
EVERYTHING_ON_TIME_MS = 2**53  # lateness so large that every event follows the rule with its own ts
PROPERTY = settings(max_examples=50, deadline=None)


def make_signals(n_users=16, lateness_ms=LATE_MS, **kwargs) -> UserSignals:
    return UserSignals(
        cap_window_ms=CAP_MS, fresh_window_ms=FRESH_MS, capacity_users=n_users,
        allowed_lateness_ms=lateness_ms, **kwargs,
    )  # fmt: skip


def run_in_pieces(signals: UserSignals, events: UserEvents, cuts) -> tuple[np.ndarray, ...]:
    parts = []
    for lo, hi in zip([0, *cuts], [*cuts, len(events)], strict=True):
        parts.append(signals.process(*events.take(slice(lo, hi)).columns()))
    return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))


def want(events: UserEvents, lateness_ms=LATE_MS) -> tuple[np.ndarray, ...]:
    return reference.user_signals_reference(events, CAP_MS, FRESH_MS, lateness_ms)


def assert_outputs_equal(got, expected) -> None:
    for name, g, w in zip(("weight", "new_pair", "fresh"), got, expected, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=name)


def assert_same_state(a, b) -> None:
    arrays_a, arrays_b = a.to_arrays(), b.to_arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for key, value in arrays_a.items():
        np.testing.assert_array_equal(value, arrays_b[key], err_msg=key)


def same_key_events(ts_ms, product=1, user=2, type_code=4) -> UserEvents:
    ts = np.asarray(ts_ms, np.int64)
    n = ts.shape[0]
    return UserEvents(
        np.full(n, product, np.int64), np.full(n, user, np.int64), np.full(n, type_code, np.int8), ts, 16
    )


# -- agreement with the reference ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_signals_match_reference_with_out_of_order_events(seed):
    events = reference.random_user_events(seed, n=600, n_products=5, n_users=8)
    assert (np.diff(events.ts_ms) < -LATE_MS).any()  # some events are later than the allowed lateness
    got = make_signals().process(*events.columns())
    assert_outputs_equal(got, want(events))


@pytest.mark.parametrize("seed", range(3))
def test_with_unbounded_lateness_every_event_is_compared_with_its_own_ts(seed):
    events = reference.random_user_events(seed, n=400, n_products=4, n_users=6)
    got = run_in_pieces(make_signals(lateness_ms=EVERYTHING_ON_TIME_MS), events, [50, 51, 300])
    assert_outputs_equal(got, want(events, EVERYTHING_ON_TIME_MS))


@pytest.mark.parametrize("seed", range(3))
def test_tiny_table_rebuilds_often_and_matches_reference(seed):
    events = reference.random_user_events(seed, n=800, n_products=20, n_users=30, span_ms=12 * HOUR_MS)
    signals = make_signals(n_users=30, table_capacity=1)
    capacities = set()
    parts = []
    for lo in range(0, len(events), 7):
        parts.append(signals.process(*events.take(slice(lo, lo + 7)).columns()))
        capacities.add(signals.table_capacity)
    got = tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))
    assert_outputs_equal(got, want(events))
    assert len(capacities) > 2  # grew, and shrank or grew again
    n_keys = len({(p, u) for p, u, _, _ in events.rows()} | set(events.rows()))
    assert signals.n_entries < n_keys  # expired entries were dropped


def test_table_stays_bounded_by_the_live_entries_on_a_long_stream():
    # 24 h of users drifting through 3000 slots: each window sees a few hundred pairs, the day ~20 000
    rng = np.random.default_rng(0)
    n = 20_000
    ts = BASE_TS_MS + np.sort(rng.integers(0, 24 * HOUR_MS, n))
    user = (np.arange(n) // 40 * 7 + rng.integers(0, 40, n)) % 3000
    product = rng.integers(0, 500, n)
    events = UserEvents(product, user.astype(np.int64), rng.integers(0, 3, n).astype(np.int8), ts, 3000)
    signals = make_signals(n_users=3000, table_capacity=64)
    peak = 0
    for lo in range(0, n, 500):
        signals.process(*events.take(slice(lo, lo + 500)).columns())
        peak = max(peak, signals.table_capacity)
    n_keys = len({(p, u) for p, u, _, _ in events.rows()})
    assert n_keys > 15_000
    assert peak <= 4096
    assert signals.nbytes == signals.table_capacity * BYTES_PER_ENTRY + 8 * signals.capacity_users


@pytest.mark.parametrize("seed", range(3))
def test_compact_after_a_busy_hour_shrinks_the_table_and_changes_no_output(seed):
    # a busy hour (many pairs), then a trickle: compacting between batches must match never compacting
    rng = np.random.default_rng(seed)
    busy, quiet = 3000, 400
    ts = np.concatenate(
        [np.sort(rng.integers(0, HOUR_MS, busy)), HOUR_MS + np.sort(rng.integers(0, 3 * HOUR_MS, quiet))]
    )
    n = busy + quiet
    product = np.where(np.arange(n) < busy, rng.integers(0, 400, n), rng.integers(0, 3, n)).astype(np.int64)
    user = np.where(np.arange(n) < busy, rng.integers(0, 500, n), rng.integers(0, 4, n)).astype(np.int64)
    events = UserEvents(product, user, rng.integers(0, 3, n).astype(np.int8), BASE_TS_MS + ts, 500)
    plain, compacted = (
        make_signals(n_users=500, table_capacity=16),
        make_signals(n_users=500, table_capacity=16),
    )
    got_plain, got_compacted, shrunk = [], [], []
    for lo in range(0, n, 100):
        piece = events.take(slice(lo, lo + 100)).columns()
        got_plain.append(plain.process(*piece))
        got_compacted.append(compacted.process(*piece))
        before = compacted.table_capacity
        if compacted.compact():
            shrunk.append((before, compacted.table_capacity))
    for a, b in zip(got_plain, got_compacted, strict=True):
        assert_outputs_equal(b, a)
    assert_outputs_equal(tuple(np.concatenate(c) for c in zip(*got_compacted, strict=True)), want(events))
    assert shrunk and all(after * 4 <= before for before, after in shrunk)
    assert compacted.table_capacity * 4 <= plain.table_capacity  # the plain table kept its busy-hour size
    assert compacted.compact() is False  # nothing more to shrink


def test_a_new_key_takes_the_first_expired_row_of_its_probe_run():
    mask = 7
    old, new = [k for k in range(1, 1000) if _bucket(np.int64(k), np.int64(mask)) == 3][:2]  # same home row
    rows = np.full((8, 2), -1, np.int64)
    rows[3] = [old, (128 << 55) | (1000 + 2**53)]  # the pair entry of `old`, stored at t = 1000
    assert _probe(rows, np.int64(new), np.int64(128), np.int64(mask), np.int64(1001)) == (3, False)  # expired
    assert _probe(rows, np.int64(new), np.int64(128), np.int64(mask), np.int64(1000)) == (4, False)  # live
    assert _probe(rows, np.int64(old), np.int64(128), np.int64(mask), np.int64(5000)) == (3, True)


# -- properties ----------------------------------------------------------------------------------


@st.composite
def user_events_and_cuts(draw):
    n = draw(st.integers(1, 60))
    ts = draw(st.lists(st.integers(0, 3 * CAP_MS), min_size=n, max_size=n))
    products = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    users = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    types = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    events = UserEvents(
        np.array(products, np.int64) * 1_000_003,  # far-apart product slots
        np.array(users, np.int64),
        np.array(types, np.int8),
        BASE_TS_MS + np.array(ts, np.int64),
        5,
    )
    return events, cuts


@PROPERTY
@given(user_events_and_cuts(), user_events_and_cuts())
def test_any_split_gives_the_same_outputs_state_and_later_behaviour(data, later):
    events, cuts = data
    split, whole = make_signals(table_capacity=2), make_signals(table_capacity=2)
    assert_outputs_equal(run_in_pieces(split, events, cuts), whole.process(*events.columns()))
    assert_same_state(split, whole)
    tail = later[0]
    assert_outputs_equal(split.process(*tail.columns()), whole.process(*tail.columns()))


@PROPERTY
@given(user_events_and_cuts())
def test_random_streams_match_reference(data):
    events, cuts = data
    assert_outputs_equal(run_in_pieces(make_signals(table_capacity=1), events, cuts), want(events))


def test_batch_equals_event_by_event():
    events = reference.random_user_events(7, n=200, n_products=3, n_users=4)
    one_by_one = make_signals(table_capacity=4)
    got = run_in_pieces(one_by_one, events, list(range(1, len(events))))
    whole = make_signals(table_capacity=4)
    assert_outputs_equal(got, whole.process(*events.columns()))
    assert_same_state(one_by_one, whole)


# -- edges ---------------------------------------------------------------------------------------


def test_empty_batch_changes_nothing_and_returns_typed_empty_arrays():
    signals = make_signals()
    before = signals.to_arrays()
    weight, new_pair, fresh = signals.process(*same_key_events([]).columns())
    assert (weight.dtype, new_pair.dtype, fresh.dtype) == (np.float64, np.bool_, np.bool_)
    assert weight.shape == new_pair.shape == fresh.shape == (0,)
    assert_same_state(
        signals,
        UserSignals.from_arrays(
            before, cap_window_ms=CAP_MS, fresh_window_ms=FRESH_MS, allowed_lateness_ms=LATE_MS
        ),
    )
    assert signals.max_ts_ms is None


def test_one_event_counts_is_a_new_pair_and_is_fresh():
    signals = make_signals()
    got = signals.process(*same_key_events([BASE_TS_MS]).columns())
    assert [a.tolist() for a in got] == [[1.0], [True], [True]]
    assert signals.n_entries == 2
    assert signals.first_seen_ms[2] == BASE_TS_MS
    assert signals.max_ts_ms == BASE_TS_MS


def test_a_users_hundred_likes_within_the_window_count_once():
    ts = BASE_TS_MS + np.arange(100) * (CAP_MS // 100)
    weight, new_pair, _ = make_signals().process(*same_key_events(ts).columns())
    assert weight.sum() == 1.0 and weight[0] == 1.0
    assert new_pair.sum() == 1


def test_the_same_likes_after_the_window_count_again():
    signals = make_signals()
    first = BASE_TS_MS + np.arange(100) * (CAP_MS // 100)
    signals.process(*same_key_events(first).columns())
    again = BASE_TS_MS + CAP_MS + 1 + np.arange(100) * 1000
    weight, new_pair, _ = signals.process(*same_key_events(again).columns())
    assert weight.tolist() == [1.0] + [0.0] * 99
    assert new_pair.tolist() == [True] + [False] * 99


def test_the_window_boundary_blocks_at_exactly_cap_window_ms():
    ts = [BASE_TS_MS, BASE_TS_MS + CAP_MS, BASE_TS_MS + CAP_MS + 1]
    weight, _, _ = make_signals().process(*same_key_events(ts).columns())
    assert weight.tolist() == [1.0, 0.0, 1.0]


def test_a_steady_visitor_is_a_new_pair_once_per_window_not_at_every_event():
    ts = BASE_TS_MS + np.arange(0, 3 * CAP_MS, CAP_MS // 2)  # every half window, alternating types
    events = same_key_events(ts)
    events = UserEvents(events.product, events.user, (np.arange(ts.shape[0]) % 2).astype(np.int8), ts, 16)
    weight, new_pair, _ = make_signals().process(*events.columns())
    # events at 0, 5, .. 25 min; a key stays blocked while its stored time is >= ts - 10 min
    assert new_pair.tolist() == [True, False, False, True, False, False]  # 0 and 15 min
    assert weight.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]  # type 0 at 0 and 20, type 1 at 5 and 25


def test_other_types_and_other_users_are_capped_separately():
    ts = np.full(4, BASE_TS_MS, np.int64)
    events = UserEvents(
        np.array([1, 1, 1, 2]), np.array([3, 3, 4, 3]), np.array([0, 1, 0, 0], np.int8), ts, 8
    )
    weight, new_pair, _ = make_signals().process(*events.columns())
    assert weight.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert new_pair.tolist() == [True, False, True, True]


def test_fresh_flag_expires_after_fresh_window_ms():
    ts = [BASE_TS_MS, BASE_TS_MS + FRESH_MS - 1, BASE_TS_MS + FRESH_MS, BASE_TS_MS + 5 * FRESH_MS]
    _, _, fresh = make_signals().process(*same_key_events(ts).columns())
    assert fresh.tolist() == [True, True, False, False]


def test_late_event_is_blocked_by_a_later_counted_event_of_its_key():
    ts = [BASE_TS_MS + CAP_MS, BASE_TS_MS]  # the second is late (within the lateness) and older
    weight, new_pair, _ = make_signals(lateness_ms=CAP_MS).process(*same_key_events(ts).columns())
    assert weight.tolist() == [1.0, 0.0]
    assert new_pair.tolist() == [True, False]


def test_an_event_later_than_the_lateness_counts_as_if_at_the_lateness_horizon():
    newest = BASE_TS_MS + 5 * HOUR_MS
    ts = [newest, BASE_TS_MS, BASE_TS_MS, BASE_TS_MS + 1000]  # three backdated likes of another key
    events = UserEvents(np.array([9, 1, 1, 1]), np.array([0, 2, 2, 2]), np.zeros(4, np.int8),
                        np.array(ts, np.int64), 4)  # fmt: skip
    signals = make_signals()
    weight, _, fresh = signals.process(*events.columns())
    assert weight.tolist() == [1.0, 1.0, 0.0, 0.0]  # backdating does not escape the cap
    assert signals.first_seen_ms[2] == newest - LATE_MS  # nor age a new account
    assert fresh.tolist() == [True, True, True, True]


def test_checkpoint_round_trip_mid_stream_continues_identically():
    events = reference.random_user_events(3, n=900, n_products=12, n_users=20, span_ms=8 * HOUR_MS)
    straight = make_signals(n_users=20, table_capacity=8)
    first = run_in_pieces(straight, events.take(slice(0, 450)), [100, 200])
    rest = straight.process(*events.take(slice(450, None)).columns())
    resumed = make_signals(n_users=20, table_capacity=8)
    run_in_pieces(resumed, events.take(slice(0, 450)), [100, 200])
    arrays = {k: v.copy() for k, v in resumed.to_arrays().items()}
    restored = UserSignals.from_arrays(arrays, cap_window_ms=CAP_MS, fresh_window_ms=FRESH_MS,
                                       table_capacity=8, allowed_lateness_ms=LATE_MS)  # fmt: skip
    assert restored.n_entries == resumed.n_entries
    assert_outputs_equal(restored.process(*events.take(slice(450, None)).columns()), rest)
    assert_same_state(restored, straight)
    assert_outputs_equal(tuple(np.concatenate(p) for p in zip(first, rest, strict=True)), want(events))


def restore(arrays, **kwargs):
    options = {"cap_window_ms": CAP_MS, "fresh_window_ms": FRESH_MS, "allowed_lateness_ms": LATE_MS}
    return UserSignals.from_arrays(arrays, **(options | kwargs))


def test_checkpoint_from_other_windows_is_refused():
    arrays = make_signals().to_arrays()
    with pytest.raises(CheckpointError, match=r"cap_window_ms.*\(600000, 1800000, 120000\).*\(60000, "):
        restore(arrays, cap_window_ms=60_000)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("rows", None, "'rows' must be int64 with 2 axes, got missing"),
        ("rows", np.full((8, 2), -1, np.int32), "'rows' must be int64 with 2 axes, got int32"),
        ("rows", np.full((6, 2), -1, np.int64), "power of two"),
        ("first_seen_ms", np.zeros((2, 2), np.int64), "'first_seen_ms' must be int64 with 1 axes"),
        ("max_ts_ms", np.array([2**60], np.int64), "corrupt"),
        ("first_seen_ms", np.full(16, -(2**60), np.int64), "corrupt"),
    ],
)
def test_bad_checkpoint_arrays_are_refused(key, value, match):
    arrays = make_signals().to_arrays()
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    with pytest.raises(CheckpointError, match=match):
        restore(arrays)


def test_checkpoint_with_a_duplicated_or_misplaced_entry_is_refused():
    signals = make_signals(table_capacity=64)
    signals.process(*same_key_events([BASE_TS_MS]).columns())
    arrays = signals.to_arrays()
    rows = arrays["rows"]
    full = np.flatnonzero(rows[:, 0] >= 0)
    empty = np.flatnonzero(rows[:, 0] < 0)
    target = next(int(e) for e in empty if int(e) not in {(int(f) + 1) % 64 for f in full})
    rows[target] = rows[full[0]]  # a copy where no look-up would find it
    with pytest.raises(CheckpointError, match="corrupt"):
        restore(arrays)


def test_wrong_dtypes_name_the_column_and_the_fix():
    signals = make_signals()
    product, user, type_code, ts = same_key_events([BASE_TS_MS]).columns()
    with pytest.raises(
        TypeError, match=r"product must be int64, got int32; convert with product\.astype\(np\.int64\)"
    ):
        signals.process(product.astype(np.int32), user, type_code, ts)
    with pytest.raises(TypeError, match=r"type_code must be int8, got int64"):
        signals.process(product, user, type_code.astype(np.int64), ts)
    with pytest.raises(ValueError, match="ts_ms must be 1-D of length 1, like product"):
        signals.process(product, user, type_code, np.array([1, 2], np.int64))
    assert signals.max_ts_ms is None  # nothing changed


def test_values_out_of_range_are_refused_before_anything_changes():
    signals = make_signals(n_users=4)
    product, user, type_code, ts = same_key_events([BASE_TS_MS]).columns()
    with pytest.raises(ValueError, match=r"user must be in \[0, 4\), got 9; call ensure_users"):
        signals.process(product, np.array([9]), type_code, ts)
    with pytest.raises(ValueError, match="type_code must be in"):
        signals.process(product, user, np.array([-1], np.int8), ts)
    with pytest.raises(ValueError, match="product must be in"):
        signals.process(np.array([2**31]), user, type_code, ts)
    with pytest.raises(ValueError, match="cap_window_ms must be in"):
        UserSignals(cap_window_ms=-1, fresh_window_ms=1)
    assert signals.n_entries == 0


def test_ensure_users_grows_geometrically_and_keeps_first_seen():
    signals = make_signals(n_users=3)
    signals.process(*same_key_events([BASE_TS_MS]).columns())
    signals.ensure_users(7)
    assert signals.capacity_users == 12
    assert signals.first_seen_ms[2] == BASE_TS_MS
    assert (signals.first_seen_ms[3:] == np.iinfo(np.int64).min).all()


def test_forgotten_user_slot_comes_back_fresh_and_uncapped():
    signals = make_signals(table_capacity=8)
    signals.process(*same_key_events([BASE_TS_MS, BASE_TS_MS + 1]).columns())
    signals.process(*same_key_events([BASE_TS_MS + 2], user=3).columns())
    signals.forget_users(np.array([2], np.int64))
    later = BASE_TS_MS + FRESH_MS + 5
    weight, new_pair, fresh = signals.process(*same_key_events([later, later]).columns())
    assert (weight.tolist(), new_pair.tolist(), fresh.tolist()) == ([1.0, 0.0], [True, False], [True, True])
    _, _, fresh3 = signals.process(*same_key_events([later], user=3).columns())
    assert fresh3.tolist() == [False]  # another user is untouched


def test_forgotten_product_slot_is_uncapped():
    signals = make_signals()
    signals.process(*same_key_events([BASE_TS_MS]).columns())
    signals.forget_products(np.array([1], np.int64))
    weight, new_pair, _ = signals.process(*same_key_events([BASE_TS_MS + 1]).columns())
    assert (weight.tolist(), new_pair.tolist()) == ([1.0], [True])


# -- MinHash sketches ----------------------------------------------------------------------------


def users(values) -> np.ndarray:
    return np.asarray(values, np.int64)


def test_mix64_is_splitmix64():
    for x in [0, 1, 12345, -1, -(2**63), 2**63 - 1]:
        assert int(_mix64(np.int64(x))) == reference.splitmix64(x & (2**64 - 1))
    assert int(_mix64(np.int64(0))) == 0xE220A8397B1DCDAF  # splitmix64's first output from seed 0


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_signatures_match_reference(seed):
    rng = np.random.default_rng(seed % 1000)
    sk = UserSketches(k=8, seed=seed)
    sk.watch(users([3, 40]))
    product = rng.choice(users([3, 40, 41]), 300)
    user = rng.integers(-(2**40), 2**40, 300)
    sk.update(product, user)
    for p in (3, 40):
        expected = reference.minhash_signature(user[product == p].tolist(), 8, seed)
        assert sk.signatures(users([p]))[0].tolist() == expected


def test_identical_user_sets_have_similarity_one_and_disjoint_zero():
    sk = UserSketches(k=64, seed=1)
    sk.watch(users([0, 1, 2]))
    crowd = np.arange(500, dtype=np.int64)
    sk.update(np.zeros(500, np.int64), crowd)
    sk.update(np.ones(500, np.int64), crowd[::-1].copy())
    sk.update(np.full(500, 2, np.int64), crowd + 10_000)
    assert sk.similarity(users([0, 0, 1]), users([1, 2, 2])).tolist() == [1.0, 0.0, 0.0]


def test_half_overlapping_user_sets_estimate_jaccard_one_third():
    a, b = np.arange(0, 1000, dtype=np.int64), np.arange(500, 1500, dtype=np.int64)
    estimates = []
    for seed in range(10):
        sk = UserSketches(k=64, seed=seed)
        sk.watch(users([5, 6]))
        sk.update(np.concatenate([np.full(1000, 5), np.full(1000, 6)]), np.concatenate([a, b]))
        estimates.append(sk.similarity(users([5]), users([6]))[0])
    assert all(abs(e - 1 / 3) < 0.2 for e in estimates)  # sd of one estimate: sqrt(2/9 / 64) = 0.059
    assert abs(np.mean(estimates) - 1 / 3) < 0.05


def test_unwatched_products_are_not_tracked():
    sk = UserSketches(k=4)
    sk.watch(users([1]))
    sk.update(users([1, 2, 70_000]), users([10, 10, 10]))
    assert sk.is_watched(users([1, 2, 70_000])).tolist() == [True, False, False]
    assert sk.count_nonempty() == 1 and len(sk) == 1
    sk.watch(users([2]))
    assert sk.count_nonempty() == 1  # 2 starts empty: its earlier events were not kept
    assert np.isnan(sk.similarity(users([1, 1]), users([2, 70_000]))).all()
    with pytest.raises(KeyError, match="product 70000 is not watched"):
        sk.signatures(users([70_000]))


def test_reset_starts_a_new_window_and_watch_again_keeps_the_signature():
    sk = UserSketches(k=4)
    sk.watch(users([1, 2]))
    sk.update(users([1, 2]), users([10, 11]))
    before = sk.signatures(users([2]))
    sk.reset(users([1, 99]))
    sk.watch(users([2]))
    assert sk.count_nonempty() == 1
    assert (sk.signatures(users([1])) == np.iinfo(np.uint64).max).all()
    np.testing.assert_array_equal(sk.signatures(users([2])), before)


def test_unwatch_frees_the_row_for_the_next_product():
    sk = UserSketches(k=4)
    sk.watch(users([1, 2, 3]))
    sk.update(users([2]), users([10]))
    rows_before = sk.nbytes
    sk.unwatch(users([2, 50]))
    sk.watch(users([7]))
    assert sk.row_of[7] == 1 and sk.count_nonempty() == 0 and len(sk) == 3
    assert sk.nbytes == rows_before
    assert not sk.is_watched(users([2]))[0]


def test_many_watched_products_grow_the_rows():
    sk = UserSketches(k=2)
    sk.watch(np.arange(100, dtype=np.int64) * 3)
    sk.update(np.arange(300, dtype=np.int64), np.arange(300, dtype=np.int64))
    assert len(sk) == 100 and sk.count_nonempty() == 100
    assert sk.nbytes >= 100 * (2 * 8 + 9)


@PROPERTY
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-50, 50)), max_size=80),
    st.randoms(use_true_random=False),
)
def test_sketch_updates_in_any_order_and_split_give_the_same_state(events, rnd):
    product = users([p for p, _ in events])
    user = users([u for _, u in events])
    whole, shuffled = UserSketches(k=8, seed=3), UserSketches(k=8, seed=3)
    for sk in (whole, shuffled):
        sk.watch(users([0, 2, 4]))
    whole.update(product, user)
    order = list(range(len(events)))
    rnd.shuffle(order)
    for lo in range(0, len(order), 7):
        idx = np.array(order[lo : lo + 7], np.int64)
        shuffled.update(product[idx], user[idx])
    assert_same_state(whole, shuffled)


def test_sketch_checkpoint_round_trip_continues_identically():
    straight, resumed = UserSketches(k=8, seed=5), UserSketches(k=8, seed=5)
    for sk in (straight, resumed):
        sk.watch(users([1, 2, 3]))
        sk.update(users([1, 2, 2, 3]), users([5, 6, 7, 8]))
        sk.unwatch(users([2]))
    restored = UserSketches.from_arrays(resumed.to_arrays(), k=8, seed=5)
    assert_same_state(restored, straight)
    for sk in (restored, straight):
        sk.watch(users([4]))
        sk.update(users([1, 4, 3]), users([9, 9, 10]))
    assert_same_state(restored, straight)
    np.testing.assert_array_equal(restored.similarity(users([1, 3]), users([4, 4])),
                                  straight.similarity(users([1, 3]), users([4, 4])))  # fmt: skip


def test_sketch_checkpoint_with_other_seed_or_broken_map_is_refused():
    sk = UserSketches(k=8, seed=5)
    sk.watch(users([1, 2]))
    with pytest.raises(CheckpointError, match="another k or seed"):
        UserSketches.from_arrays(sk.to_arrays(), k=8, seed=6)
    arrays = sk.to_arrays()
    arrays["row_of"][1] = 1  # two products on one row
    with pytest.raises(CheckpointError, match="do not map to each other"):
        UserSketches.from_arrays(arrays, k=8, seed=5)
    arrays = sk.to_arrays()
    arrays["sig"] = arrays["sig"].astype(np.int64)
    with pytest.raises(CheckpointError, match="'sig' must be uint64"):
        UserSketches.from_arrays(arrays, k=8, seed=5)


def test_sketch_inputs_are_checked():
    sk = UserSketches(k=4)
    with pytest.raises(TypeError, match=r"products must be int64, got int32; convert with products\.astype"):
        sk.watch(np.array([1], np.int32))
    with pytest.raises(ValueError, match="product must be in"):
        sk.update(users([-1]), users([1]))
    with pytest.raises(ValueError, match="a and b must have the same length"):
        sk.similarity(users([1]), users([1, 2]))
    with pytest.raises(ValueError, match="k must be in"):
        UserSketches(k=0)


def _unwatch_numpy(sk: UserSketches, products: np.ndarray) -> None:
    """The numpy version of ``unwatch`` (the reference of the compiled pass)."""
    rows = sk._rows(products)
    rows = rows[rows >= 0]
    sk.row_of[sk.product_of_row[rows]] = -1
    sk.product_of_row[rows] = -1
    sk.sig[rows] = np.iinfo(np.uint64).max
    sk.nonempty[rows] = False


@settings(max_examples=80, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["watch", "unwatch", "update"]), st.lists(st.integers(0, 40), max_size=12)),
        max_size=25,
    )
)
def test_compiled_watch_and_unwatch_match_numpy(ops):
    import viraltrend.kernels.users as module

    fast, slow = UserSketches(k=4), UserSketches(k=4)
    real = module._watch
    for op, values in ops:
        products = users(values)
        if op == "watch":
            fast.watch(products)
            module._watch = lambda *args: -1  # the numpy path for `slow`
            try:
                slow.watch(products)
            finally:
                module._watch = real
        elif op == "unwatch":
            fast.unwatch(products)
            _unwatch_numpy(slow, products)
        else:
            fast.update(products, products * 7 + 1)
            slow.update(products, products * 7 + 1)
        a, b = fast.to_arrays(), slow.to_arrays()
        n = min(a["row_of"].shape[0], b["row_of"].shape[0])  # the fast path grows only when it must
        assert (a["row_of"][n:] == -1).all() and (b["row_of"][n:] == -1).all()
        np.testing.assert_array_equal(a["row_of"][:n], b["row_of"][:n])
        rows = min(a["product_of_row"].shape[0], b["product_of_row"].shape[0])
        for key in ("product_of_row", "sig", "nonempty"):
            np.testing.assert_array_equal(a[key][:rows], b[key][:rows], err_msg=key)


def _live_histogram_py(rows, cutoff_ms, step_ms, n_buckets):
    # plain Python: decode each row's stored time, bucket the live ones
    out = [0] * n_buckets
    for key, packed in rows.tolist():
        s = (packed & (2**55 - 1)) - 2**53
        if key != -1 and s >= cutoff_ms:
            out[min((s - cutoff_ms) // step_ms, n_buckets - 1)] += 1
    return out


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    pieces=st.lists(st.integers(1, 300), min_size=1, max_size=12),
    gaps_min=st.lists(st.integers(0, 90), min_size=12, max_size=12),
    forget=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_compact_without_a_scan_decides_as_the_exact_count(seed, pieces, gaps_min, forget):
    # compact() skips its O(table) count when the live entries found at the last count still need
    # more than a quarter of the table; the twin counts at every call (no memory of the last count):
    # same answers, same tables, same outputs; and the count agrees with a plain-Python count
    rng = np.random.default_rng(seed)
    fast, exact = (make_signals(n_users=300, table_capacity=16) for _ in range(2))
    t = BASE_TS_MS
    skipped = 0
    for i, n in enumerate(pieces):
        t += gaps_min[i] * MIN_MS
        ts = np.sort(t + rng.integers(0, 20 * MIN_MS, n)).astype(np.int64)
        hot = rng.integers(1, 400)  # busy pieces and trickles
        cols = (rng.integers(0, hot, n).astype(np.int64), rng.integers(0, 300, n).astype(np.int64),
                rng.integers(0, 3, n).astype(np.int8), ts)  # fmt: skip
        assert_outputs_equal(fast.process(*cols), exact.process(*cols))
        t = int(ts[-1])
        if forget[i]:
            for s in (fast, exact):
                s.forget_users(np.array([int(cols[1][0])], np.int64))
        scans = fast._live_at_scan
        exact._live_at_scan = None
        assert fast.compact() == exact.compact()
        skipped += scans is not None and fast._live_at_scan is scans
        np.testing.assert_array_equal(fast.rows, exact.rows)
        assert fast.n_entries == exact.n_entries
        if exact._live_at_scan is not None:
            lo, step, hist, _, _ = exact._live_at_scan
            assert hist.tolist() == _live_histogram_py(exact.rows, lo, step, hist.shape[0])
            assert int(hist.sum()) == int(_count_live(exact.rows, lo))


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    pieces=st.lists(st.integers(0, 200), min_size=1, max_size=16),
    gaps_s=st.lists(st.integers(0, 15 * 60), min_size=16, max_size=16),
    late_share=st.sampled_from([0.0, 0.1, 0.5]),
    forget=st.lists(st.booleans(), min_size=16, max_size=16),
)
def test_compact_bound_with_the_inserts_since_the_count_never_exceeds_the_live_entries(
    seed, pieces, gaps_s, late_share, forget
):
    # perf25b: compact()'s lower bound -- the last count's entries still live plus the entries
    # inserted since it, while at most cap_window of event time has passed -- is never above the live
    # entries a count finds now, before any call (small tables: rebuilds and expired rows taken between
    # counts; gaps around cap_window; late events); and the skipping and the always-counting twins give
    # the same answers, tables and outputs
    rng = np.random.default_rng(seed)
    fast, exact = (make_signals(n_users=300, table_capacity=16) for _ in range(2))
    t = BASE_TS_MS
    used_part = 0
    for i, n in enumerate(pieces):
        t += gaps_s[i] * 1000
        ts = t + rng.integers(0, 3 * MIN_MS, n)
        late = rng.random(n) < late_share
        ts[late] -= rng.integers(0, 3 * LATE_MS, int(late.sum()))  # some beyond the allowed lateness
        hot = rng.integers(1, 400)
        cols = (rng.integers(0, hot, n).astype(np.int64), rng.integers(0, 300, n).astype(np.int64),
                rng.integers(0, 3, n).astype(np.int8), ts.astype(np.int64))  # fmt: skip
        assert_outputs_equal(fast.process(*cols), exact.process(*cols))
        t = max(t, int(ts.max())) if n else t
        if forget[i] and n:
            for s in (fast, exact):
                s.forget_users(np.array([int(cols[1][0])], np.int64))
        if fast._live_at_scan is not None and fast.max_ts_ms is not None:
            lo, step, hist, used0, max0 = fast._live_at_scan
            cutoff = max(fast._max_ts_ms - LATE_MS - CAP_MS, U._UNSET)
            since = U._inserted_since(fast.n_entries, fast._max_ts_ms, used0, max0, CAP_MS)
            bound = U._still_live(hist, lo, step, cutoff) + since
            assert bound <= int(_count_live(fast.rows, cutoff))
            used_part += since > 0
        exact._live_at_scan = None
        assert fast.compact() == exact.compact()
        np.testing.assert_array_equal(fast.rows, exact.rows)
        assert fast.n_entries == exact.n_entries


def test_compact_skips_the_count_while_the_table_is_full_of_live_entries():
    # steady traffic: after one count, later sweeps within the window prove no rebuild without a scan
    rng = np.random.default_rng(7)
    s = make_signals(n_users=2000, table_capacity=16)
    scans = 0
    for minute in range(60):
        n = 200
        ts = np.sort(BASE_TS_MS + minute * MIN_MS + rng.integers(0, MIN_MS, n)).astype(np.int64)
        s.process(rng.integers(0, 300, n).astype(np.int64), rng.integers(0, 2000, n).astype(np.int64),
                  rng.integers(0, 3, n).astype(np.int8), ts)  # fmt: skip
        before = s._live_at_scan
        assert s.compact() is False
        scans += s._live_at_scan is not before
    assert 1 <= scans <= 20  # the old compact counted at all 60 calls


def test_compact_counts_the_inserts_since_its_last_count_towards_its_bound():
    # perf25b: a busy hour then a quiet one, a compaction a minute; the entries inserted since the
    # last count keep the bound up while the counted ones age out: 16 counts (the bound without
    # them: 26), the same one rebuild
    rng = np.random.default_rng(7)
    s = make_signals(n_users=2000, table_capacity=16)
    scans = rebuilt = 0
    for minute in range(120):
        n = 200 if minute < 60 else 20
        ts = np.sort(BASE_TS_MS + minute * MIN_MS + rng.integers(0, MIN_MS, n)).astype(np.int64)
        s.process(rng.integers(0, 300, n).astype(np.int64), rng.integers(0, 2000, n).astype(np.int64),
                  rng.integers(0, 3, n).astype(np.int8), ts)  # fmt: skip
        before = s._live_at_scan
        rebuilt += s.compact()
        scans += s._live_at_scan is not before
    assert rebuilt == 1 and scans <= 18


# perf25: users._process before its split into a no-reference-count run and a shell, kept as the
# reference the split must equal (the same loop, the table rebuilt in place where an insert needs it).
# dedupe26: the shell only rebuilds, where this loop did; every output and the table's bytes equal.
@njit(cache=False)
def _one_loop_process(
    rows, used, max_ts_ms, first_seen_ms, product, user, type_code, ts_ms, cap_window_ms, fresh_window_ms,
    lateness_ms, min_capacity,
):  # fmt: skip
    n = ts_ms.shape[0]
    weight = np.zeros(n, np.float64)
    new_pair = np.zeros(n, np.bool_)
    fresh = np.zeros(n, np.bool_)
    no_drop = np.empty(0, np.int64)
    mask = rows.shape[0] - 1
    for i in range(n):
        t = ts_ms[i]
        if t > max_ts_ms:
            max_ts_ms = t
        e = max(t, max_ts_ms - lateness_ms)
        u = user[i]
        if first_seen_ms[u] == U._UNSET:
            first_seen_ms[u] = e
        fresh[i] = e - first_seen_ms[u] < fresh_window_ms
        key = (product[i] << 32) | u
        cutoff = max_ts_ms - lateness_ms - cap_window_ms
        for step in range(2):
            kind = U._PAIR_KIND if step == 0 else np.int64(type_code[i])
            idx, found = U._probe(rows, key, kind, mask, cutoff)
            if found:
                counted = (rows[idx, 1] & U._TS_MASK) - U._TS_OFFSET < e - cap_window_ms
            else:
                if rows[idx, 0] == U._EMPTY:
                    if 4 * (used + 1) > 3 * rows.shape[0]:
                        rows, used = U._rebuild(rows, cutoff, min_capacity, 2, no_drop, no_drop)
                        mask = rows.shape[0] - 1
                        idx = U._find(rows, key, kind, mask)
                    used += 1
                rows[idx, 0] = key
                counted = True
            if counted:
                rows[idx, 1] = (kind << U._KIND_SHIFT) | (e + U._TS_OFFSET)
            if step == 0:
                new_pair[i] = counted
            else:
                weight[i] = 1.0 if counted else 0.0
    return rows, used, max_ts_ms, weight, new_pair, fresh


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 400),
    pieces=st.integers(1, 6),
    capacity=st.sampled_from([2, 4, 16]),
    n_users=st.sampled_from([3, 30, 300]),
    grain=st.sampled_from([1, 500]),
    window=st.sampled_from([CAP_MS, 5_000]),
)
def test_the_split_process_equals_the_one_loop_it_replaced(seed, n, pieces, capacity, n_users, grain, window):
    """``users._process`` (``_process_run`` without reference counts; the shell only rebuilds the
    table where the run stops, before an insert that would fill it past 3/4, and the run resumes at
    that insert) against the one loop it replaced, batch after batch from tiny tables (rebuilds
    inside a batch, at an event's first or second insert): every output, the table's bytes, its
    entry count, the latest time and the first-seen times equal.  Times on a 500-ms grid and a 5-s
    cap window (entries expiring all along, rebuilds past the first window) put entries exactly at a
    rebuild's cutoff."""
    rng = np.random.default_rng(seed)
    product = rng.integers(0, 40, n).astype(np.int64)
    user = rng.integers(0, n_users, n).astype(np.int64)
    types = rng.integers(0, 6, n).astype(np.int8)
    ts = np.sort(rng.integers(0, 4 * CAP_MS, n)).astype(np.int64) - rng.integers(0, 2000, n)
    ts = ts // grain * grain
    state = [
        [np.full((capacity, 2), U._EMPTY, np.int64), 0, U._UNSET, np.full(n_users, U._UNSET, np.int64)]
        for _ in range(2)
    ]
    cuts = np.sort(rng.integers(0, n + 1, pieces - 1)).tolist()
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        got = []
        for k, fn in enumerate((U._process, _one_loop_process)):
            rows, used, mx, first = state[k]
            args = (product[a:b], user[a:b], types[a:b], ts[a:b], window, FRESH_MS, 500, capacity)
            out = fn(rows, used, mx, first, *args, 8) if k == 0 else fn(rows, used, mx, first, *args)
            state[k][:3] = out[:3]
            got.append(out)
        for x, y in zip(got[0], got[1], strict=True):
            assert np.array_equal(np.asarray(x), np.asarray(y))
        assert np.array_equal(state[0][3], state[1][3])


def test_the_run_stops_at_the_insert_that_needs_the_rebuild_and_resumes_there():
    """The run returns the event and the insert (0: pair entry, 1: cap entry) that would fill the
    table past 3/4, with nothing of that insert done; resumed there after the shell's rebuild, it
    does not insert the event's pair entry twice (``new_pair`` stays True)."""
    cap = 16  # 3/4 full at 12 entries: the 13th insert into an empty row stops the run
    # five new pairs (2 entries each), pair 0 again with another type (its cap entry only: 11), then
    # a new pair: its pair entry is the 12th, its cap entry the 13th
    product = np.array([0, 1, 2, 3, 4, 0, 5, 6], np.int64)
    user = np.array([0, 1, 2, 3, 4, 0, 5, 6], np.int64)
    types = np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int8)
    ts = BASE_TS_MS + np.arange(8, dtype=np.int64) * 1000
    rows = np.full((cap, 2), U._EMPTY, np.int64)
    first = np.full(8, U._UNSET, np.int64)
    weight, new_pair, fresh = np.zeros(8), np.zeros(8, np.bool_), np.zeros(8, np.bool_)
    args = (product, user, types, ts, CAP_MS, FRESH_MS, LATE_MS, 0)
    i, step, used, mx = U._process_run(rows, 0, U._UNSET, first, *args, 0, 0, weight, new_pair, fresh)
    assert (i, step, used, mx) == (6, 1, 12, ts[6])
    assert new_pair[:7].tolist() == [True] * 5 + [False, True] and weight[6] == 0.0
    kept = rows.copy()
    grown, used = U._rebuild(
        rows, mx - LATE_MS - CAP_MS, cap, 2, np.empty(0, np.int64), np.empty(0, np.int64)
    )
    assert grown.shape[0] == 64 and used == 12
    i, step, used, mx = U._process_run(grown, used, mx, first, *args, 6, 1, weight, new_pair, fresh)
    assert (i, step, used) == (8, 0, 15) and weight.tolist() == [1.0] * 8
    assert new_pair.tolist() == [True] * 5 + [False, True, True]
    # a table with room for one entry only stops at an event's pair entry
    i, step, used, _ = U._process_run(kept, 12, mx, first, *args, 7, 0, weight, new_pair, fresh)
    assert (i, step, used) == (7, 0, 12)
    # the shell gives the one loop's outputs and table
    out = U._process(
        np.full((cap, 2), U._EMPTY, np.int64), 0, U._UNSET, np.full(8, U._UNSET, np.int64), *args[:-1], cap, 0
    )
    want = _one_loop_process(
        np.full((cap, 2), U._EMPTY, np.int64), 0, U._UNSET, np.full(8, U._UNSET, np.int64), *args[:-1], cap
    )
    for x, y in zip(out, want, strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
