from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from tests.kernels.reference import BASE_TS_MS, Events
from viraltrend.errors import CheckpointError
from viraltrend.kernels.decay import DecayedCounters, grown_capacity

HALF_LIVES_S = (60.0, 3600.0)
DAY_MS = 86_400_000
RTOL = 1e-9
ATOL = 1e-290  # below ~1e-300 both sides are underflow noise
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
PROPERTY = settings(max_examples=50, deadline=None)


def run_kernel(events: Events, half_lives_s=HALF_LIVES_S, **kwargs) -> DecayedCounters:
    counters = DecayedCounters(
        half_lives_s=half_lives_s, n_types=events.n_types, capacity=events.n_products, **kwargs
    )
    counters.add(*events.columns())
    return counters


def read_all(counters: DecayedCounters, now_ms: int, n_products: int) -> np.ndarray:
    return counters.read(np.arange(n_products, dtype=np.int64), now_ms)


def one_event(slot=0, type_code=0, ts_ms=BASE_TS_MS, weight=1.0):
    return (
        np.array([slot], np.int64),
        np.array([type_code], np.int8),
        np.array([ts_ms], np.int64),
        np.array([weight], np.float64),
    )


def assert_same_state(a: DecayedCounters, b: DecayedCounters) -> None:
    for key, value in a.to_arrays().items():
        np.testing.assert_array_equal(value, b.to_arrays()[key], err_msg=key)


# -- agreement with the reference ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_decayed_counters_match_reference(seed):
    events = reference.random_events(seed, n=500, n_products=7)
    got = read_all(run_kernel(events), events.max_ts_ms, events.n_products)
    want = reference.decayed_counts(events, HALF_LIVES_S, events.max_ts_ms)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", range(3))
def test_read_later_and_global_match_reference(seed):
    events = reference.random_events(seed, n=300, n_products=5)
    counters = run_kernel(events)
    now_ms = events.max_ts_ms + 1_234_567
    np.testing.assert_allclose(
        read_all(counters, now_ms, 5),
        reference.decayed_counts(events, HALF_LIVES_S, now_ms),
        rtol=RTOL,
        atol=ATOL,
    )
    np.testing.assert_allclose(
        counters.read_global(now_ms),
        reference.decayed_global(events, HALF_LIVES_S, now_ms),
        rtol=RTOL,
        atol=ATOL,
    )


@pytest.mark.parametrize("seed", range(3))
def test_thirty_days_with_frequent_landmark_moves_match_reference(seed):
    events = reference.random_events(seed, n=400, n_products=6, span_ms=30 * DAY_MS, jitter_ms=3_600_000)
    half_lives_s = (300.0, 86_400.0)
    counters = DecayedCounters(half_lives_s=half_lives_s, capacity=6)
    for lo in range(0, len(events), 40):
        counters.add(*events.take(slice(lo, lo + 40)).columns())
    assert counters.landmark_ms > events.ts_ms.min() + 20 * DAY_MS
    got = read_all(counters, events.max_ts_ms, 6)
    np.testing.assert_allclose(
        got, reference.decayed_counts(events, half_lives_s, events.max_ts_ms), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("seed", range(3))
def test_landmark_moving_at_almost_every_batch_matches_reference(seed):
    events = reference.random_events(seed, n=300, n_products=4)
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4, renorm_exponent=0.5)
    landmarks = set()
    for lo in range(0, len(events), 10):
        counters.add(*events.take(slice(lo, lo + 10)).columns())
        landmarks.add(counters.landmark_ms)
    assert len(landmarks) > 10
    got = read_all(counters, events.max_ts_ms, 4)
    want = reference.decayed_counts(events, HALF_LIVES_S, events.max_ts_ms)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# -- properties ----------------------------------------------------------------------------------


@st.composite
def events_and_cuts(draw, max_span_ms=2 * 3_600_000):
    n = draw(st.integers(1, 60))
    n_products = draw(st.integers(1, 5))
    ts = draw(st.lists(st.integers(0, max_span_ms), min_size=n, max_size=n))
    slots = draw(st.lists(st.integers(0, n_products - 1), min_size=n, max_size=n))
    types = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    weights = draw(st.lists(st.floats(0.0, 100.0), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    events = Events(
        np.array(slots, np.int64),
        np.array(types, np.int8),
        BASE_TS_MS + np.array(ts, np.int64),
        np.array(weights, np.float64),
        n_products,
    )
    return events, cuts


def add_in_pieces(events: Events, cuts: list[int], **kwargs) -> DecayedCounters:
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=events.n_products, **kwargs)
    for lo, hi in zip([0, *cuts], [*cuts, len(events)], strict=True):
        counters.add(*events.take(slice(lo, hi)).columns())
    return counters


@PROPERTY
@given(events_and_cuts())
def test_any_split_into_batches_gives_the_same_state(data):
    # spans of two hours never move the landmark (60 s half-life: ~7 h), so sums are bit-identical
    events, cuts = data
    assert_same_state(add_in_pieces(events, cuts), run_kernel(events))


@PROPERTY
@given(events_and_cuts(max_span_ms=20 * DAY_MS))
def test_any_split_gives_the_same_reads_when_the_landmark_moves(data):
    events, cuts = data
    split, whole = add_in_pieces(events, cuts), run_kernel(events)
    now_ms = events.max_ts_ms
    np.testing.assert_allclose(
        read_all(split, now_ms, events.n_products),
        read_all(whole, now_ms, events.n_products),
        rtol=1e-10,
        atol=ATOL,
    )
    np.testing.assert_array_equal(split.first_ts_ms, whole.first_ts_ms)
    np.testing.assert_array_equal(split.last_ts_ms, whole.last_ts_ms)


@PROPERTY
@given(events_and_cuts(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter(data, rnd):
    events, _ = data
    order = np.arange(len(events))
    rnd.shuffle(order)
    now_ms = events.max_ts_ms
    got = read_all(run_kernel(events.take(order)), now_ms, events.n_products)
    want = read_all(run_kernel(events), now_ms, events.n_products)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=ATOL)


@PROPERTY
@given(events_and_cuts())
def test_batch_add_equals_event_by_event_adds(data):
    events, _ = data
    one_by_one = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=events.n_products)
    for i in range(len(events)):
        one_by_one.add(*events.take(slice(i, i + 1)).columns())
    assert_same_state(one_by_one, run_kernel(events))


# -- edges ---------------------------------------------------------------------------------------


def test_empty_batch_changes_nothing():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4)
    before = counters.to_arrays()
    counters.add(np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int64), np.empty(0, np.float64))
    assert counters.landmark_ms is None
    for key, value in before.items():
        np.testing.assert_array_equal(value, counters.to_arrays()[key])
    assert not read_all(counters, BASE_TS_MS, 4).any()


def test_one_event_reads_its_weight_then_halves_per_half_life():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4)
    counters.add(*one_event(slot=2, type_code=3, ts_ms=BASE_TS_MS + 123, weight=2.5))
    assert counters.landmark_ms == BASE_TS_MS
    np.testing.assert_allclose(
        counters.read(np.array([2], np.int64), BASE_TS_MS + 123)[0, 3], [2.5, 2.5], rtol=1e-15
    )
    later = counters.read(np.array([2], np.int64), BASE_TS_MS + 123 + 60_000)[0, 3]
    np.testing.assert_allclose(later, [1.25, 2.5 * 0.5 ** (1 / 60)], rtol=1e-15)
    assert not np.delete(counters.acc, (2 * 6 + 3) * 2 + np.arange(2)).any()
    assert counters.first_ts_ms[2] == counters.last_ts_ms[2] == BASE_TS_MS + 123
    assert counters.first_ts_ms[0] == INT64_MAX and counters.last_ts_ms[0] == INT64_MIN


def test_product_repeated_in_a_batch_accumulates_every_event():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=2)
    ts = np.array([BASE_TS_MS, BASE_TS_MS, BASE_TS_MS + 60_000], np.int64)
    counters.add(np.array([1, 1, 1], np.int64), np.zeros(3, np.int8), ts, np.ones(3))
    np.testing.assert_allclose(
        counters.read(np.array([1], np.int64), BASE_TS_MS + 60_000)[0, 0, 0], 0.5 + 0.5 + 1.0
    )
    assert (counters.first_ts_ms[1], counters.last_ts_ms[1]) == (BASE_TS_MS, BASE_TS_MS + 60_000)


def test_late_event_is_added_with_its_own_decay():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=1)
    counters.add(*one_event(ts_ms=BASE_TS_MS + 600_000))
    counters.add(*one_event(ts_ms=BASE_TS_MS))  # ten minutes late, before the landmark
    got = counters.read(np.zeros(1, np.int64), BASE_TS_MS + 600_000)[0, 0]
    np.testing.assert_allclose(got, [1 + 0.5**10, 1 + 0.5 ** (600 / 3600)], rtol=1e-12)
    assert counters.first_ts_ms[0] == BASE_TS_MS


def test_landmark_shift_leaves_reads_unchanged():
    counters = DecayedCounters(half_lives_s=(300.0, 86_400.0), capacity=3)
    events = reference.random_events(7, n=200, n_products=3)
    counters.add(*events.columns())
    now_ms = events.max_ts_ms
    before, landmark = read_all(counters, now_ms, 3), counters.landmark_ms
    counters.add(*one_event(slot=0, ts_ms=now_ms + 40 * 3_600_000, weight=0.0))  # 40 h later: 480 half-lives
    assert counters.landmark_ms > landmark
    np.testing.assert_allclose(read_all(counters, now_ms, 3), before, rtol=1e-12)


def test_events_ten_years_apart_stay_finite():
    counters = DecayedCounters(half_lives_s=(1.0, 300.0, 86_400.0), capacity=2)
    ten_years_ms = 3650 * DAY_MS
    for ts in (BASE_TS_MS - ten_years_ms, BASE_TS_MS, BASE_TS_MS + ten_years_ms, BASE_TS_MS - ten_years_ms):
        counters.add(*one_event(slot=1, ts_ms=ts, weight=1e6))
    now_ms = BASE_TS_MS + ten_years_ms
    got = counters.read(np.array([0, 1], np.int64), now_ms)
    assert (
        np.isfinite(got).all() and np.isfinite(counters.acc).all() and np.isfinite(counters.global_acc).all()
    )
    np.testing.assert_allclose(got[1, 0], [1e6, 1e6, 1e6])
    assert np.isfinite(counters.read_global(now_ms)).all()


def test_extreme_timestamps_and_reads_far_before_the_landmark_never_give_nan():
    counters = DecayedCounters(half_lives_s=(1.0, 86_400.0), capacity=1)
    counters.add(*one_event(ts_ms=-(2**53)))
    counters.add(*one_event(ts_ms=2**53, weight=1e-300))
    for now_ms in (-(2**53), 0, 2**53):
        got = counters.read(np.zeros(1, np.int64), now_ms)
        assert not np.isnan(got).any()
    assert np.isfinite(counters.read(np.zeros(1, np.int64), 2**53)).all()


def test_read_before_the_landmark_combines_exponents_instead_of_overflowing():
    counters = DecayedCounters(half_lives_s=(1.0,), n_types=1, capacity=2)
    counters.add(*one_event(slot=1, ts_ms=BASE_TS_MS + 1_070_000))  # sets the landmark
    counters.add(*one_event(slot=0, ts_ms=BASE_TS_MS))  # 1070 half-lives earlier: acc = 2**-1070, subnormal
    assert counters.acc[0, 0, 0] == 2.0**-1070
    # exp(+lam * 1070 s) alone overflows to inf; the combined exponent gives the exact answer
    got = counters.read(np.zeros(1, np.int64), BASE_TS_MS)[0, 0, 0]
    np.testing.assert_allclose(got, 1.0, rtol=1e-12)
    got = counters.read(np.zeros(1, np.int64), BASE_TS_MS - 100_000)[0, 0, 0]
    np.testing.assert_allclose(got, 2.0**100, rtol=1e-12)


def test_capacity_growth_keeps_values_and_adds_empty_rows():
    events = reference.random_events(3, n=200, n_products=5)
    counters = run_kernel(events)
    before = read_all(counters, events.max_ts_ms, 5)
    counters.ensure_capacity(11)
    assert counters.capacity == 20
    np.testing.assert_array_equal(read_all(counters, events.max_ts_ms, 5), before)
    assert not counters.acc[5:].any()
    assert (counters.first_ts_ms[5:] == INT64_MAX).all() and (counters.last_ts_ms[5:] == INT64_MIN).all()
    counters.add(*one_event(slot=19, ts_ms=events.max_ts_ms))
    np.testing.assert_allclose(
        counters.read(np.array([19], np.int64), events.max_ts_ms)[0, 0, 0], 1.0, rtol=1e-15
    )


def test_ensure_capacity_does_not_copy_when_large_enough():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=8)
    acc = counters.acc
    counters.ensure_capacity(8)
    assert counters.acc is acc


def test_cleared_slot_reads_zero_and_can_be_reused():
    counters = run_kernel(reference.random_events(4, n=100, n_products=3))
    global_before = counters.global_acc.copy()
    counters.clear(np.array([1], np.int64))
    assert not counters.acc[1].any()
    assert (counters.first_ts_ms[1], counters.last_ts_ms[1]) == (INT64_MAX, INT64_MIN)
    np.testing.assert_array_equal(counters.global_acc, global_before)
    counters.add(*one_event(slot=1, type_code=2, ts_ms=BASE_TS_MS + 7_200_000, weight=3.0))
    got = counters.read(np.array([1], np.int64), BASE_TS_MS + 7_200_000)[0]
    want = np.zeros((6, 2))
    want[2] = 3.0
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("with_events", [False, True])
def test_to_arrays_from_arrays_round_trip_is_exact(with_events):
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4)
    if with_events:
        counters.add(*reference.random_events(5, n=100, n_products=4).columns())
    arrays = counters.to_arrays()
    restored = DecayedCounters.from_arrays(arrays, half_lives_s=HALF_LIVES_S)
    assert_same_state(restored, counters)
    assert restored.landmark_ms == counters.landmark_ms
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    more = reference.random_events(6, n=50, n_products=4)
    counters.add(*more.columns())
    restored.add(*more.columns())
    assert_same_state(restored, counters)


def test_from_arrays_refuses_other_half_lives_or_missing_arrays():
    arrays = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4).to_arrays()
    with pytest.raises(CheckpointError, match="half_lives_s"):
        DecayedCounters.from_arrays(arrays, half_lives_s=(60.0, 7200.0))
    del arrays["landmark_set"]
    with pytest.raises(CheckpointError, match="'landmark_set' must be bool"):
        DecayedCounters.from_arrays(arrays, half_lives_s=HALF_LIVES_S)


def test_nbytes_per_slot_counts_accumulators_and_timestamps():
    counters = DecayedCounters(half_lives_s=(300.0, 3600.0, 86_400.0), n_types=6, capacity=1000)
    assert counters.nbytes_per_slot == 6 * 3 * 8 + 2 * 8
    assert counters.nbytes == 1000 * 160 + 6 * 3 * 8


def test_wrong_dtype_error_says_how_to_convert():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4)
    slot, type_code, ts_ms, weight = one_event()
    with pytest.raises(
        TypeError, match=r"slot must be int64, got int32; convert with slot\.astype\(np\.int64\)"
    ):
        counters.add(slot.astype(np.int32), type_code, ts_ms, weight)
    with pytest.raises(TypeError, match=r"type_code must be int8, got int64; convert with type_code\.astype"):
        counters.add(slot, type_code.astype(np.int64), ts_ms, weight)
    with pytest.raises(TypeError, match="weight must be a numpy array of float64, got list"):
        counters.add(slot, type_code, ts_ms, [1.0])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (0, 4, r"slot must be in \[0, 4\), got 4; call ensure_capacity"),
        (0, -1, r"slot must be in \[0, 4\), got -1"),
        (1, 6, r"type_code must be in \[0, 6\), got 6"),
        (2, 2**60, "ts_ms must be in"),
        (3, float("nan"), "weight must be finite, got nan"),
    ],
)
def test_out_of_range_values_are_refused_and_nothing_is_added(column, value, message):
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=4)
    columns = list(one_event())
    columns[column] = np.array([value], columns[column].dtype)
    with pytest.raises(ValueError, match=message):
        counters.add(*columns)
    assert counters.landmark_ms is None and not counters.global_acc.any()


def test_length_mismatch_is_refused():
    slot, type_code, ts_ms, weight = one_event()
    with pytest.raises(ValueError, match="ts_ms must be 1-D of length 1, like slot"):
        DecayedCounters(half_lives_s=HALF_LIVES_S).add(slot, type_code, np.repeat(ts_ms, 2), weight)


@pytest.mark.parametrize("half_lives_s", [(), (0.0,), (-5.0, 60.0), (float("inf"),)])
def test_bad_half_lives_are_refused(half_lives_s):
    with pytest.raises(ValueError, match="half_lives_s must be"):
        DecayedCounters(half_lives_s=half_lives_s)


def test_rebase_moves_the_landmark_only_past_half_the_limit_and_keeps_reads():
    c = DecayedCounters(half_lives_s=[60.0, 3600.0], n_types=1, capacity=2, renorm_exponent=100.0)
    slot = np.array([0], np.int64)
    c.add(slot, np.array([0], np.int8), np.array([0], np.int64), np.array([1.0]))
    assert not c.rebase(1_000)  # far from half the limit
    assert not c.rebase(3_000_000)  # ln2/60 * 3000 s = 34.7 <= 100 / 2
    before = c.read(slot, now_ms=6_000_000)
    assert c.rebase(6_000_000)  # 69.3 > 50
    np.testing.assert_allclose(c.read(slot, now_ms=6_000_000), before, rtol=1e-12)
    assert c.landmark_ms == 6_000_000


def test_next_rebase_ms_is_the_first_time_rebase_moves_the_landmark():
    for half_lives, ts in (
        ((60.0, 300.0, 3600.0, 86400.0), 1_764_201_600_123),
        ((10.0,), 5_000),
        ((86400.0,), 0),
    ):
        c = DecayedCounters(half_lives_s=half_lives, n_types=1, capacity=4)
        assert c.next_rebase_ms() is None
        c.add(np.array([0], np.int64), np.array([0], np.int8), np.array([ts], np.int64), np.ones(1))
        t = c.next_rebase_ms()
        assert t is not None and t % 1000 == 0
        probe = DecayedCounters.from_arrays(c.to_arrays(), half_lives_s=half_lives)
        assert not probe.rebase(t - 1)  # one ms earlier: no move (rebase floors to whole seconds)
        assert probe.rebase(t)


def test_global_figures_are_the_read_global_sums_bit_for_bit():
    from viraltrend.kernels.decay import global_figures

    rng = np.random.default_rng(4)
    for trial in range(30):
        c = DecayedCounters(half_lives_s=(60.0, 300.0, 3600.0, 86400.0), n_types=6, capacity=32)
        t = DecayedCounters(half_lives_s=(300.0, 86400.0), n_types=3, capacity=32)
        n = int(rng.integers(1, 400))
        ts = 1_764_201_600_000 + np.sort(rng.integers(0, 7_200_000, n)).astype(np.int64)
        w = rng.random(n) * 10.0 ** rng.integers(-3, 4, n)
        c.add(rng.integers(0, 32, n).astype(np.int64), rng.integers(0, 6, n).astype(np.int8), ts, w)
        t.add(rng.integers(0, 32, n).astype(np.int64), rng.integers(0, 3, n).astype(np.int8), ts, np.ones(n))
        now = int(ts[-1]) + int(rng.integers(0, 600_000)) * (1 if trial % 3 else -1)
        sums, users = global_figures(c, t, now, channel=0, half_life=1)
        assert sums.tobytes() == c.read_global(now).sum(axis=0).tobytes()
        assert users == float(t.read_global(now)[0, 1])


def test_counters_without_times_hold_the_same_accumulators_and_no_times():
    events = reference.random_events(7, n=300, n_products=6)
    with_times = run_kernel(events)
    without = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=6, times=False)
    without.add(*events.columns())
    np.testing.assert_array_equal(without.acc, with_times.acc)
    np.testing.assert_array_equal(without.global_acc, with_times.global_acc)
    assert without.first_ts_ms.shape == without.last_ts_ms.shape == (0,)
    assert without.nbytes_per_slot == with_times.nbytes_per_slot - 16
    without.ensure_capacity(13)
    without.clear(np.array([1, 12], np.int64))
    assert without.first_ts_ms.shape == (0,) and not without.acc[1].any()
    # its checkpoint has empty times; one written with times (an older checkpoint) drops them
    restored = DecayedCounters.from_arrays(without.to_arrays(), half_lives_s=HALF_LIVES_S, times=False)
    np.testing.assert_array_equal(restored.acc, without.acc)
    older = DecayedCounters.from_arrays(with_times.to_arrays(), half_lives_s=HALF_LIVES_S, times=False)
    np.testing.assert_array_equal(older.acc, with_times.acc)
    assert older.first_ts_ms.shape == (0,)
    with pytest.raises(CheckpointError, match="first_ts_ms"):
        DecayedCounters.from_arrays(without.to_arrays(), half_lives_s=HALF_LIVES_S)


@pytest.mark.parametrize(
    ("capacity", "n", "limit", "want"),
    [
        (4096, 4097, None, 8192),
        (4096, 3000, None, 4096),
        (8_388_608, 9_000_000, 10_000_000, 10_000_000),  # doubling would pass the cap: stop at it
        (8_388_608, 9_000_000, 20_000_000, 16_777_216),  # the cap is far: double
        (10_000_000, 10_000_001, 10_000_000, 11_250_000),  # past the cap: an eighth at a time
        (10_000_000, 13_000_000, 10_000_000, 13_000_000),
        (1024, 100_000, 50_000, 131_072),  # more than the cap at once: doubling
    ],
)
def test_grown_capacity_stops_at_the_limit(capacity, n, limit, want):
    assert grown_capacity(capacity, n, limit) == want


def test_ensure_capacity_with_a_limit_grows_to_the_limit_exactly():
    counters = DecayedCounters(half_lives_s=HALF_LIVES_S, capacity=16)
    counters.ensure_capacity(17, limit=20)
    assert counters.capacity == 20 and counters.first_ts_ms.shape == (20,)
    assert (counters.last_ts_ms[16:] == INT64_MIN).all()


_EXTREME = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e300, -1e-300]),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_EXTREME, min_size=1, max_size=24),
    dt_s=st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -3e4, 3e4, 1e7, -1e7])),
)
def test_decay_rows_takes_one_exp_per_half_life_and_keeps_scaled_bits(values, dt_s):
    """``_decay_rows`` (one ``exp`` per half-life) equals ``_scaled`` per value, bit for bit."""
    from viraltrend.kernels.decay import _decay_rows, _scaled

    n_hl = 4
    acc = np.resize(np.asarray(values, np.float64), (len(values) + n_hl - 1) // n_hl * n_hl).reshape(
        -1, 1, n_hl
    )
    lam = np.log(2.0) / np.array([60.0, 300.0, 3600.0, 86400.0])
    slots = np.arange(acc.shape[0], dtype=np.int64)[::-1].copy()
    out = np.empty_like(acc)
    _decay_rows(acc, slots, lam, float(dt_s), out)
    with np.errstate(over="ignore"):  # numpy scalars warn where _scaled's plain product overflows: its case
        want = np.array(
            [[[_scaled.py_func(acc[s, 0, h], -lam[h] * dt_s) for h in range(n_hl)]] for s in slots.tolist()]
        )
    assert out.view(np.int64).tolist() == want.view(np.int64).tolist()
    # the plain product whatever the factor fails this test (tried); the plain-Python run agrees too
    with np.errstate(over="ignore"):
        _decay_rows.py_func(acc, slots, lam, float(dt_s), out)
    assert out.view(np.int64).tolist() == want.view(np.int64).tolist()


@settings(max_examples=50, deadline=None)
@given(
    ts=st.lists(st.integers(0, 30 * 86_400_000), min_size=1, max_size=60),
    cleared=st.lists(st.integers(0, 15), max_size=5),
    shift_s=st.integers(1, 40 * 86_400),
)
def test_a_landmark_move_decays_only_rows_with_events_and_gives_the_same_bits(ts, cleared, shift_s):
    """Rows no event reached (or cleared since) are zero: skipping them changes no bit of ``acc``."""
    from viraltrend.kernels.decay import _decay_rows

    c = DecayedCounters(half_lives_s=(60.0, 3600.0), n_types=2, capacity=16)
    n = len(ts)
    t = np.asarray(ts, np.int64) + BASE_TS_MS
    c.add(np.arange(n, dtype=np.int64) % 11, (np.arange(n) % 2).astype(np.int8), t, np.linspace(0.5, 3, n))
    c.clear(np.asarray(cleared, np.int64))
    assert c.landmark_ms is not None
    want = c.acc.copy()
    _decay_rows(want, np.arange(16, dtype=np.int64), c.lam, float(shift_s), want)
    c._move_landmark(c.landmark_ms + shift_s * 1000)
    assert c.acc.view(np.int64).tolist() == want.view(np.int64).tolist()


def _twins(n_events: int, hours: float, seed: int) -> tuple[DecayedCounters, DecayedCounters, int]:
    """Float64 and float32 counters fed the same events, ticked (rebase) every minute; the last time."""
    from viraltrend.kernels.decay import F32_RENORM_EXPONENT

    rng = np.random.default_rng(seed)
    hl = (60.0, 300.0, 3600.0, 86400.0)
    wide = DecayedCounters(half_lives_s=hl, n_types=3, capacity=8)
    narrow = DecayedCounters(
        half_lives_s=hl, n_types=3, capacity=8, dtype=np.float32, renorm_exponent=F32_RENORM_EXPONENT
    )
    ts = np.sort(BASE_TS_MS + rng.integers(0, int(hours * 3.6e6), n_events)).astype(np.int64)
    slot = rng.integers(0, 8, n_events).astype(np.int64)
    kind = rng.integers(0, 3, n_events).astype(np.int8)
    weight = rng.choice([0.0, 1.0, 2.5], n_events)
    for a in range(0, n_events, 97):
        for c in (wide, narrow):
            c.add(slot[a : a + 97], kind[a : a + 97], ts[a : a + 97], weight[a : a + 97])
            c.rebase(int(ts[min(a + 96, n_events - 1)]) // 60_000 * 60_000)
    return wide, narrow, int(ts[-1])


def test_float32_accumulators_read_within_their_rounding_of_float64_ones_across_landmark_moves():
    wide, narrow, end = _twins(20_000, 30.0, 1)
    assert narrow.acc.dtype == np.float32 and narrow.global_acc.dtype == np.float64
    assert narrow.landmark_ms != wide.landmark_ms  # float32 moved its landmark (every ~43 min here)
    assert np.isfinite(narrow.acc).all() and narrow.acc.max() < 3e38
    for now in (end, end + 600_000, end + 7_200_000):
        a, b = wide.read(np.arange(8), now), narrow.read(np.arange(8), now)
        big = a > 1e-3 * a.max(axis=0, keepdims=True)  # cells not decayed to nothing
        assert np.allclose(b[big], a[big], rtol=2e-5, atol=0.0)
        assert np.allclose(narrow.read_global(now), wide.read_global(now), rtol=1e-9, atol=0.0)


def test_float32_accumulators_need_a_renormalisation_limit_float32_holds():
    with pytest.raises(ValueError, match="renorm_exponent must be <= 60"):
        DecayedCounters(half_lives_s=HALF_LIVES_S, dtype=np.float32)  # 300: exp(300) overflows float32
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        DecayedCounters(half_lives_s=HALF_LIVES_S, dtype=np.float16)


def test_float32_checkpoints_restore_exactly_and_the_other_width_is_refused_by_name():
    from viraltrend.kernels.decay import F32_RENORM_EXPONENT

    wide, narrow, end = _twins(2_000, 3.0, 2)
    f32 = {"dtype": np.float32, "renorm_exponent": F32_RENORM_EXPONENT}
    back = DecayedCounters.from_arrays(narrow.to_arrays(), half_lives_s=narrow.half_lives_s, **f32)
    assert back.acc.dtype == np.float32 and np.array_equal(back.acc, narrow.acc)
    assert np.array_equal(back.read(np.arange(8), end), narrow.read(np.arange(8), end))
    with pytest.raises(CheckpointError, match="with float64 accumulators and this version keeps float32"):
        DecayedCounters.from_arrays(wide.to_arrays(), half_lives_s=wide.half_lives_s, **f32)
    with pytest.raises(CheckpointError, match="with float32 accumulators and this version keeps float64"):
        DecayedCounters.from_arrays(narrow.to_arrays(), half_lives_s=narrow.half_lives_s)


def test_a_float64_checkpoint_narrowed_at_its_latest_event_reads_as_before():
    from viraltrend.kernels.decay import F32_RENORM_EXPONENT

    wide, _, end = _twins(5_000, 20.0, 3)
    f32 = {"dtype": np.float32, "renorm_exponent": F32_RENORM_EXPONENT}
    narrow = DecayedCounters.from_arrays(
        wide.to_arrays(), half_lives_s=wide.half_lives_s, narrow_at_ms=end, **f32
    )
    assert narrow.acc.dtype == np.float32 and narrow.landmark_ms == end // 1000 * 1000
    for now in (end, end + 3_600_000):
        a, b = wide.read(np.arange(8), now), narrow.read(np.arange(8), now)
        assert np.allclose(b, a, rtol=1e-6, atol=0.0)
