from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels import reference
from tests.kernels.reference import BASE_TS_MS
from viraltrend.errors import CheckpointError
from viraltrend.kernels.clock import ACCEPTED, FUTURE, LATE, ClockStep, EventClock

PROPERTY = settings(max_examples=50, deadline=None)
HUGE_MS = 2**52  # a future limit no test timestamp reaches: the median rule plays no part
TICK_MS = 1_000
LATENESS_MS = 5_000


def make_clock(max_future_ms=HUGE_MS, max_ticks_per_gap=360, **kwargs) -> EventClock:
    kwargs = {"tick_ms": TICK_MS, "allowed_lateness_ms": LATENESS_MS, **kwargs}
    return EventClock(max_future_ms=max_future_ms, max_ticks_per_gap=max_ticks_per_gap, **kwargs)


def ts(*values: int) -> np.ndarray:
    return BASE_TS_MS + np.array(values, np.int64)


def as_lists(step: ClockStep) -> tuple[list[int], list[tuple[int, int]]]:
    return step.status.tolist(), list(
        zip(step.tick_before.tolist(), step.tick_ms_values.tolist(), strict=True)
    )


def random_ts(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    out, t = [], BASE_TS_MS
    for _ in range(n):
        t += rng.choice([0, 10, 300, 900, 2_500, 40_000])
        out.append(t - rng.choice([0, 0, 0, 200, 4_000, 6_000, 60_000]))  # some late, some very late
    return out


@pytest.mark.parametrize("seed", range(6))
def test_clock_matches_reference(seed):
    ts_list = random_ts(seed, 400)
    clock = make_clock(max_future_ms=30_000, max_ticks_per_gap=5)
    step = clock.advance(np.array(ts_list, np.int64))
    want_status, want_ticks, want_watermark = reference.clock_reference(
        ts_list, TICK_MS, LATENESS_MS, 30_000, max_ticks_per_gap=5, first_limit_ms=step.future_limit_ms
    )
    assert as_lists(step) == (want_status, want_ticks)
    assert clock.watermark_ms == step.watermark_ms == want_watermark


def test_first_event_sets_the_watermark_and_fires_no_tick():
    clock = make_clock()
    assert clock.watermark_ms is None
    step = clock.advance(ts(12_345))
    assert as_lists(step) == ([ACCEPTED], [])
    assert clock.watermark_ms == BASE_TS_MS + 12_345


def test_event_older_than_watermark_minus_lateness_is_late_and_does_not_move_it():
    clock = make_clock()
    step = clock.advance(ts(10_000, 5_000, 4_999, 20_000, 14_999, 15_000))
    assert step.status.tolist() == [ACCEPTED, ACCEPTED, LATE, ACCEPTED, LATE, ACCEPTED]
    assert clock.watermark_ms == BASE_TS_MS + 20_000


def test_lateness_is_judged_against_the_watermark_at_that_event():
    clock = make_clock()
    clock.advance(ts(0))
    step = clock.advance(ts(-4_000, 30_000, -4_000))  # fine before the jump, late after it
    assert step.status.tolist() == [ACCEPTED, ACCEPTED, LATE]


def test_event_beyond_the_future_limit_is_future_and_does_not_move_the_watermark():
    clock = make_clock(max_future_ms=60_000)
    clock.advance(ts(0))
    step = clock.advance(ts(1_000, 2_000, 10 * 86_400_000, 3_000, 61_000, 63_000))
    assert step.future_limit_ms == BASE_TS_MS + 60_000  # the watermark before the batch, plus max_future
    assert step.status.tolist() == [ACCEPTED, ACCEPTED, FUTURE, ACCEPTED, ACCEPTED, ACCEPTED]
    assert clock.watermark_ms == BASE_TS_MS + 63_000


def test_a_jump_is_accepted_once_a_quorum_of_following_events_confirms_it():
    clock = make_clock(max_future_ms=60_000, jump_quorum=3)
    clock.advance(ts(0))
    day = 86_400_000
    step = clock.advance(ts(day, day + 1_000, day + 2_000, day + 3_000))
    assert step.status.tolist() == [FUTURE, FUTURE, ACCEPTED, ACCEPTED]
    assert clock.watermark_ms == BASE_TS_MS + day + 3_000


def test_two_absurd_events_among_normal_ones_never_move_the_watermark():
    clock = make_clock(max_future_ms=60_000)
    clock.advance(ts(0))
    year_2099 = 4_070_908_800_000 - BASE_TS_MS
    normal = list(range(1_000, 41_000, 1_000))
    step = clock.advance(ts(*normal[:20], year_2099, year_2099 + 5, *normal[20:]))
    assert np.flatnonzero(step.status != ACCEPTED).tolist() == [20, 21]
    assert step.status[20:22].tolist() == [FUTURE, FUTURE]
    assert clock.watermark_ms == BASE_TS_MS + normal[-1]


def test_a_jump_with_a_minority_of_stragglers_is_confirmed():
    clock = make_clock(max_future_ms=60_000, jump_quorum=4)
    clock.advance(ts(0))
    day = 86_400_000
    # after the first far event: far, far, old, far -> 4 votes for, 1 against (4 > 2 * 1)
    step = clock.advance(ts(day, day + 10, day + 20, 500, day + 30, day + 40))
    assert step.status.tolist() == [FUTURE, FUTURE, FUTURE, ACCEPTED, ACCEPTED, ACCEPTED]
    assert clock.watermark_ms == BASE_TS_MS + day + 40


def test_a_candidate_is_dropped_once_the_votes_against_catch_up():
    clock = make_clock(max_future_ms=60_000, jump_quorum=3)
    clock.advance(ts(0))
    day = 86_400_000
    step = clock.advance(ts(day, day + 1, 10, 20, day + 2, day + 3, 30, 40))
    # the candidate (2 votes for) is gone after 2 normal events; the next far pair starts over
    assert step.status.tolist() == [FUTURE, FUTURE, ACCEPTED, ACCEPTED, FUTURE, FUTURE, ACCEPTED, ACCEPTED]
    assert clock.watermark_ms == BASE_TS_MS + 40
    assert clock.to_dict()["jump_ms"] is None


def test_a_far_event_elsewhere_votes_against_the_candidate():
    clock = make_clock(max_future_ms=60_000, jump_quorum=4)
    clock.advance(ts(0))
    day = 86_400_000
    step = clock.advance(ts(day, day + 1, 9 * day, day + 2))
    # 9 days is no vote for the 1-day candidate but one against; it does not replace it (1 < 2)
    assert step.status.tolist() == [FUTURE, FUTURE, FUTURE, FUTURE]
    assert clock.to_dict()["jump_ms"] == BASE_TS_MS + day
    assert clock.to_dict()["jump_votes"] == [3, 1]
    step = clock.advance(ts(9 * day + 1, 9 * day + 2))  # against catches up: the 9-day one takes over
    assert clock.to_dict()["jump_ms"] == BASE_TS_MS + 9 * day + 2
    assert clock.to_dict()["jump_votes"] == [1, 0]


def test_jump_quorum_one_accepts_any_jump_at_once():
    clock = make_clock(max_future_ms=60_000, jump_quorum=1)
    clock.advance(ts(0))
    step = clock.advance(ts(86_400_000, 86_400_500))
    assert step.status.tolist() == [ACCEPTED, ACCEPTED]


def test_watermarks_after_each_event_are_returned_on_request():
    clock = make_clock(max_future_ms=60_000)
    step = clock.advance(ts(100, 50, 300, 10**9, 200), watermarks=True)
    assert step.status.tolist() == [ACCEPTED, ACCEPTED, ACCEPTED, FUTURE, ACCEPTED]
    assert step.watermarks is not None
    assert (step.watermarks - BASE_TS_MS).tolist() == [100, 100, 300, 300, 300]
    assert clock.advance(ts(400)).watermarks is None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quorum", [1, 2, 3, 16])
def test_clock_with_far_future_events_matches_reference(seed, quorum):
    rng = random.Random(seed)
    ts_list = []
    for t in random_ts(seed, 600):  # about one in ten events jumps ahead, some by the same amount
        ts_list.append(t + rng.choice([0] * 9 + [rng.choice([200_000, 200_500, 9_000_000])]))
    clock = make_clock(max_future_ms=30_000, max_ticks_per_gap=5, jump_quorum=quorum)
    step = clock.advance(np.array(ts_list, np.int64))
    want_status, want_ticks, want_watermark = reference.clock_reference(
        ts_list, TICK_MS, LATENESS_MS, 30_000, 5, first_limit_ms=step.future_limit_ms, jump_quorum=quorum
    )
    assert as_lists(step) == (want_status, want_ticks)
    assert clock.watermark_ms == want_watermark


def test_a_normal_event_between_two_absurd_ones_keeps_them_out():
    clock = make_clock(max_future_ms=60_000)
    clock.advance(ts(0))
    day = 86_400_000
    step = clock.advance(ts(day, 1_000, day + 1_000))
    assert step.status.tolist() == [FUTURE, ACCEPTED, FUTURE]
    assert clock.watermark_ms == BASE_TS_MS + 1_000


def test_absurd_first_event_is_future_by_the_median_rule():
    clock = make_clock(max_future_ms=60_000)
    step = clock.advance(ts(50 * 365 * 86_400_000, 0, 1_000))
    assert step.status.tolist() == [FUTURE, ACCEPTED, ACCEPTED]
    assert clock.watermark_ms == BASE_TS_MS + 1_000


def test_event_within_max_future_of_the_watermark_is_never_future():
    clock = make_clock(max_future_ms=60_000)
    clock.advance(ts(0))
    step = clock.advance(ts(60_000, -1_000_000, -1_000_000, -1_000_000))
    assert step.status.tolist() == [ACCEPTED, LATE, LATE, LATE]


def test_ticks_fire_before_the_event_that_crosses_them():
    clock = make_clock()
    step = clock.advance(ts(100, 900, 3_500, 3_600, 2_000, 4_000))
    assert as_lists(step)[1] == [
        (2, BASE_TS_MS + 1_000),
        (2, BASE_TS_MS + 2_000),
        (2, BASE_TS_MS + 3_000),
        (5, BASE_TS_MS + 4_000),  # a tick exactly at the event's time fires before it
    ]


def test_late_and_future_events_fire_no_ticks():
    clock = make_clock(max_future_ms=10_000)
    clock.advance(ts(20_000))
    step = clock.advance(ts(20_500, 1_000, 500_000, 20_900))
    assert as_lists(step) == ([ACCEPTED, LATE, FUTURE, ACCEPTED], [])


def test_big_gap_fires_only_the_first_ticks_and_the_last():
    clock = make_clock(max_ticks_per_gap=4)
    clock.advance(ts(500))
    step = clock.advance(ts(10 * 86_400_000 + 500))  # ten days: 864,000 ticks crossed
    assert step.tick_ms_values.tolist() == [BASE_TS_MS + t for t in (1_000, 2_000, 3_000, 10 * 86_400_000)]
    assert step.tick_before.tolist() == [0, 0, 0, 0]


def test_gap_of_exactly_max_ticks_fires_them_all():
    clock = make_clock(max_ticks_per_gap=4)
    clock.advance(ts(0))
    assert clock.advance(ts(4_000)).tick_ms_values.tolist() == [
        BASE_TS_MS + t for t in (1_000, 2_000, 3_000, 4_000)
    ]


def test_empty_batch_changes_nothing():
    clock = make_clock()
    step = clock.advance(np.empty(0, np.int64))
    assert as_lists(step) == ([], []) and clock.watermark_ms is None
    clock.advance(ts(5))
    step = clock.advance(np.empty(0, np.int64))
    assert step.watermark_ms == clock.watermark_ms == BASE_TS_MS + 5
    assert step.future_limit_ms == BASE_TS_MS + 5 + HUGE_MS


def test_negative_times_tick_on_floor_multiples():
    clock = make_clock()
    step = clock.advance(np.array([-2_500, -500, 1_500], np.int64))
    assert as_lists(step)[1] == [(1, -2_000), (1, -1_000), (2, 0), (2, 1_000)]


@st.composite
def ts_and_cuts(draw):
    n = draw(st.integers(0, 80))
    steps = draw(st.lists(st.integers(-20_000, 60_000), min_size=n, max_size=n))
    jumps = draw(st.lists(st.sampled_from([0, 0, 0, 1, 3_000_000]), min_size=n, max_size=n))
    ts_list, t = [], BASE_TS_MS
    for step, jump in zip(steps, jumps, strict=True):
        t += max(step, 0) + jump
        ts_list.append(t + min(step, 0))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    return ts_list, cuts


@PROPERTY
@given(ts_and_cuts(), st.integers(1, 6))
def test_any_split_into_batches_gives_the_same_statuses_ticks_and_watermark(data, max_ticks):
    ts_list, cuts = data
    whole_clock = make_clock(max_ticks_per_gap=max_ticks)
    whole = whole_clock.advance(np.array(ts_list, np.int64))
    split_clock = make_clock(max_ticks_per_gap=max_ticks)
    status, before, values = [], [], []
    for lo, hi in zip([0, *cuts], [*cuts, len(ts_list)], strict=True):
        step = split_clock.advance(np.array(ts_list[lo:hi], np.int64))
        status.append(step.status)
        before.append(step.tick_before + lo)
        values.append(step.tick_ms_values)
    np.testing.assert_array_equal(np.concatenate([np.empty(0, np.int8), *status]), whole.status)
    np.testing.assert_array_equal(np.concatenate([np.empty(0, np.int64), *before]), whole.tick_before)
    np.testing.assert_array_equal(np.concatenate([np.empty(0, np.int64), *values]), whole.tick_ms_values)
    assert split_clock.watermark_ms == whole_clock.watermark_ms
    want = reference.clock_reference(
        ts_list, TICK_MS, LATENESS_MS, HUGE_MS, max_ticks, first_limit_ms=whole.future_limit_ms
    )
    assert as_lists(whole) == want[:2] and whole_clock.watermark_ms == want[2]


@PROPERTY
@given(ts_and_cuts(), st.integers(0, 200_000))
def test_events_near_the_watermark_are_never_future(data, max_future_ms):
    ts_list, cuts = data
    clock = make_clock(max_future_ms=max_future_ms)
    for lo, hi in zip([0, *cuts], [*cuts, len(ts_list)], strict=True):
        watermark = clock.watermark_ms
        step = clock.advance(np.array(ts_list[lo:hi], np.int64))
        if watermark is not None:
            near = np.array(ts_list[lo:hi], np.int64) <= watermark + max_future_ms
            assert not (step.status[near] == FUTURE).any()


def test_to_dict_round_trip_through_json():
    clock = make_clock(max_future_ms=60_000, max_ticks_per_gap=7)
    assert EventClock.from_dict(json.loads(json.dumps(clock.to_dict()))).to_dict() == clock.to_dict()
    clock.advance(ts(0, 2_500, 1_000))
    restored = EventClock.from_dict(json.loads(json.dumps(clock.to_dict())))
    assert restored.to_dict() == clock.to_dict() and restored.watermark_ms == BASE_TS_MS + 2_500
    more = ts(3_000, 9_000, 2_000)
    assert as_lists(restored.advance(more)) == as_lists(clock.advance(more))


def test_from_dict_refuses_bad_state():
    state = make_clock().to_dict()
    with pytest.raises(CheckpointError, match="must have keys"):
        EventClock.from_dict({**state, "extra": 1})
    with pytest.raises(CheckpointError, match="tick_ms must be in"):
        EventClock.from_dict({**state, "tick_ms": 0})
    with pytest.raises(CheckpointError, match="watermark_ms must be an int"):
        EventClock.from_dict({**state, "watermark_ms": "soon"})


def test_wrong_dtype_error_says_how_to_convert():
    with pytest.raises(TypeError, match=r"ts_ms must be a 1-D numpy array of int64, got int32\[3\]; convert"):
        make_clock().advance(np.zeros(3, np.int32))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="tick_ms must be in"):
        EventClock(tick_ms=0, allowed_lateness_ms=0, max_future_ms=0)
    with pytest.raises(TypeError, match="allowed_lateness_ms must be an int"):
        EventClock(tick_ms=1, allowed_lateness_ms=1.5, max_future_ms=0)


@PROPERTY
@given(ts_and_cuts(), st.integers(0, 100_000), st.integers(1, 4))
def test_future_rule_is_split_invariant_once_the_watermark_is_set(data, max_future_ms, quorum):
    ts_list, cuts = data
    whole_clock = make_clock(max_future_ms=max_future_ms, jump_quorum=quorum)
    split_clock = make_clock(max_future_ms=max_future_ms, jump_quorum=quorum)
    start = np.array([min(ts_list, default=BASE_TS_MS)], np.int64)
    whole_clock.advance(start)
    split_clock.advance(start)
    whole = whole_clock.advance(np.array(ts_list, np.int64))
    status = [
        split_clock.advance(np.array(ts_list[lo:hi], np.int64)).status
        for lo, hi in zip([0, *cuts], [*cuts, len(ts_list)], strict=True)
    ]
    np.testing.assert_array_equal(np.concatenate([np.empty(0, np.int8), *status]), whole.status)
    assert split_clock.to_dict() == whole_clock.to_dict()
    want = reference.clock_reference(
        ts_list, TICK_MS, LATENESS_MS, max_future_ms, 360, watermark_ms=int(start[0]), jump_quorum=quorum
    )
    assert whole.status.tolist() == want[0]


def test_a_checkpoint_from_before_the_quorum_loads_with_the_default():
    old = {"tick_ms": 1000, "allowed_lateness_ms": 5000, "max_future_ms": 60_000, "max_ticks_per_gap": 360,
           "watermark_ms": BASE_TS_MS, "jump_ms": BASE_TS_MS + 86_400_000}  # fmt: skip
    clock = EventClock.from_dict(old)
    assert clock.jump_quorum == 16 and clock.to_dict()["jump_votes"] == [1, 0]
