"""Uniformly active accounts: the activity counts, the audience samples' activity, and the refusal."""

from __future__ import annotations

import numpy as np
import pytest

from viraltrend.config import load_config
from viraltrend.errors import CheckpointError
from viraltrend.kernels.audience import ActivityCounts, AudienceSketches, activity_dispersion


def test_activity_counts_each_user_s_earlier_events_whatever_the_batches():
    users = np.random.default_rng(0).integers(0, 500, 5_000).astype(np.int64)
    whole = ActivityCounts(width=1 << 16).observe(users)
    split = ActivityCounts(width=1 << 16)
    parts = [split.observe(users[a:b]) for a, b in ((0, 1), (1, 1_700), (1_700, 1_700), (1_700, 5_000))]
    assert np.array_equal(np.concatenate(parts), whole)
    exact = np.array([np.sum(users[:i] == u) for i, u in enumerate(users.tolist())])
    assert np.array_equal(whole.astype(np.int64), exact)  # 500 users in 2 x 65,536 cells: no collision


def test_activity_counts_only_over_count_in_a_small_sketch_and_saturate():
    users = np.random.default_rng(1).integers(0, 5_000, 20_000).astype(np.int64)
    got = ActivityCounts(width=256).observe(users).astype(np.int64)
    exact = np.array([np.sum(users[:i] == u) for i, u in enumerate(users.tolist())])
    assert (got >= exact).all() and (got > exact).any()  # count-min: collisions add, never remove
    many = ActivityCounts(width=8, depth=1).observe(np.zeros(70_000, np.int64))
    assert int(many[-1]) == 65_535


def test_activity_counts_checkpoint_round_trip_and_an_older_checkpoint():
    act = ActivityCounts(width=1024)
    act.observe(np.array([3, 3, 4], np.int64))
    again = ActivityCounts(width=1024)
    again.load_arrays(act.to_arrays())
    assert again.observe(np.array([3], np.int64)).tolist() == [2]
    again.load_arrays({})  # written before the counts existed: they restart
    assert again.observe(np.array([3], np.int64)).tolist() == [0]
    with pytest.raises(ValueError, match="activity counts"):
        ActivityCounts(width=2048).load_arrays(act.to_arrays())


def test_a_sampled_user_keeps_the_activity_it_had_when_it_joined_the_sample():
    sk = AudienceSketches(k=4)
    sk.watch(np.array([0, 1], np.int64))
    users = np.arange(10, 20, dtype=np.int64)
    sk.update(np.zeros(10, np.int64), users, np.arange(100, 110, dtype=np.uint16))
    sk.update(np.ones(2, np.int64), users[:2], np.array([7, 8], np.uint16))
    sig, val = sk.signatures(np.array([0, 1])), sk.values(np.array([0, 1]))
    from viraltrend.kernels.users import _mix64_py

    value_of = {_mix64_py(int(u) ^ int(sk._seeds[0])): 100 + i for i, u in enumerate(users.tolist())}
    assert [value_of[int(h)] for h in sig[0]] == val[0].tolist()  # values moved with their users
    assert sorted(val[1, :2].tolist()) == [7, 8]
    back = AudienceSketches.from_arrays(sk.to_arrays(), k=4)
    assert np.array_equal(back.values(np.array([0, 1])), val)
    old = {k: v for k, v in sk.to_arrays().items() if k != "val"}  # an older checkpoint
    assert AudienceSketches.from_arrays(old, k=4).values(np.array([0])).tolist() == [[0, 0, 0, 0]]
    bad = sk.to_arrays() | {"val": np.zeros((1, 4), np.uint16)}
    with pytest.raises(CheckpointError):
        AudienceSketches.from_arrays(bad, k=4)


def test_dispersion_is_about_one_for_accounts_at_one_rate_and_large_for_a_heavy_tailed_audience():
    rng = np.random.default_rng(2)
    pad = np.uint64(2**64 - 1)
    sig = np.full((2, 64), pad, np.uint64)
    sig[:, :40] = np.arange(1, 41, dtype=np.uint64)
    val = np.zeros((2, 64), np.uint16)
    val[0, :40] = rng.poisson(9.0, 40)  # a ring: every account acts at one rate
    val[1, :40] = np.minimum(rng.pareto(1.2, 40) * 3, 60_000).astype(np.uint16)  # an audience of real users
    n, mean, disp = activity_dispersion(sig, val)
    assert n.tolist() == [40, 40]
    assert 0.5 < disp[0] < 1.6 < 4.0 < disp[1]


def _engine_with_a_candidate(activity: np.ndarray, overrides: dict | None = None, catalogue: str = "heavy"):
    """The refusal of candidate slot 9 whose sampled users had ``activity`` events before, among 4 other
    hot audiences of 80 users each whose activity is heavy-tailed (``catalogue="heavy"``), alike
    (``"alike"``: Poisson at one rate) or absent (``"none"``)."""
    from viraltrend.engine import Engine

    rng = np.random.default_rng(11)
    engine = Engine(load_config(None, environ={}, overrides=overrides or {}))
    engine._grow(16)
    others = np.arange(1, 5, dtype=np.int64) if catalogue != "none" else np.empty(0, np.int64)
    engine.sketches.watch(np.concatenate([others, [9]]).astype(np.int64))
    for slot in others.tolist():
        users = np.arange(slot * 10_000, slot * 10_000 + 80, dtype=np.int64)
        if catalogue == "heavy":
            act = np.minimum(rng.pareto(1.2, 80) * 4, 60_000)
        else:
            act = rng.poisson(9.0, 80)
        engine.sketches.update(np.full(80, slot, np.int64), users, act.astype(np.uint16))
    users = np.arange(500_000, 500_000 + activity.size, dtype=np.int64)
    engine.sketches.update(np.full(users.size, 9, np.int64), users, activity.astype(np.uint16))
    yes = np.array([True])
    engine.audience_guard.track(60_000, np.array([9], np.int64), yes, yes, yes, {"evidence": np.array([1.0])})
    return engine.guard.lockstep.get(9, "")


def test_the_engine_refuses_an_audience_of_uniformly_active_accounts_with_its_numbers():
    # 40 aged accounts that each acted about 9 times before (Poisson), among heavy-tailed audiences:
    # refused, with the numbers
    rng = np.random.default_rng(4)
    ring = rng.poisson(9.0, 40)
    reason = _engine_with_a_candidate(ring)
    assert reason.startswith("uniform_accounts_dispersion_") and "_of_40_sampled_catalogue_cv2_" in reason, (
        reason
    )
    parts = reason.split("_")
    assert float(parts[3]) < 1.6 and float(parts[5]) >= 5.0 and float(parts[-1]) >= 0.5
    # switched off, or too few users, or light users: not refused
    assert _engine_with_a_candidate(ring, {"trust": {"uniform_max_dispersion": 0.0}}) == ""
    assert _engine_with_a_candidate(ring[:12]) == ""
    assert _engine_with_a_candidate(rng.poisson(2.0, 40)) == ""


def test_nothing_is_refused_as_uniform_where_the_catalogue_s_users_all_act_alike_or_none_is_hot():
    ring = np.random.default_rng(4).poisson(9.0, 40)
    assert _engine_with_a_candidate(ring, catalogue="alike") == ""
    assert _engine_with_a_candidate(ring, catalogue="none") == ""


def test_the_engine_leaves_a_heavy_tailed_audience_alone():
    rng = np.random.default_rng(6)
    organic = np.minimum(rng.pareto(1.2, 200) * 4, 60_000)
    assert _engine_with_a_candidate(organic) == ""


def test_pooled_overdispersion_tells_alike_users_from_heavy_tailed_ones():
    from viraltrend.kernels.audience import pooled_overdispersion

    rng = np.random.default_rng(8)
    sig = np.tile(np.arange(1, 101, dtype=np.uint64), (5, 1))
    alike, _ = pooled_overdispersion(sig, rng.poisson(9.0, (5, 100)).astype(np.uint16))
    heavy, n = pooled_overdispersion(sig, np.minimum(rng.pareto(1.2, (5, 100)) * 4, 60_000).astype(np.uint16))
    assert n == 500 and abs(alike) < 0.1 and heavy > 1.0


def _judge_uniform(activity: np.ndarray, overrides: dict, held_for_s: float | None = None):
    """(refusal, hold) of candidate slot 9 (``activity`` as in :func:`_engine_with_a_candidate`), first
    held ``held_for_s`` before this tick (None: never held)."""
    from viraltrend.engine import Engine

    rng = np.random.default_rng(11)
    engine = Engine(load_config(None, environ={}, overrides=overrides))
    engine._grow(16)
    others = np.arange(1, 5, dtype=np.int64)
    engine.sketches.watch(np.concatenate([others, [9]]).astype(np.int64))
    for slot in others.tolist():
        users = np.arange(slot * 10_000, slot * 10_000 + 80, dtype=np.int64)
        act = np.minimum(rng.pareto(1.2, 80) * 4, 60_000)
        engine.sketches.update(np.full(80, slot, np.int64), users, act.astype(np.uint16))
    users = np.arange(500_000, 500_000 + activity.size, dtype=np.int64)
    engine.sketches.update(np.full(users.size, 9, np.int64), users, activity.astype(np.uint16))
    now_ms = 4_000_000
    if held_for_s is not None:
        engine.book.held_since[9] = now_ms - round(held_for_s * 1000)
    yes = np.array([True])
    engine.audience_guard.track(now_ms, np.array([9], np.int64), yes, yes, yes, {"evidence": np.array([1.0])})
    return engine.guard.lockstep.get(9, ""), engine.guard.held.get(9, "")


def test_a_uniform_look_short_of_the_confirm_sample_is_held_while_the_hold_lasts_then_refused():
    ring = np.random.default_rng(4).poisson(9.0, 60)
    confirm = {"trust": {"uniform_confirm_users": 45}}
    # 40 sampled users acting alike, short of 45: held with the numbers, not refused
    refused, held = _judge_uniform(ring[:40], confirm)
    assert (
        refused == ""
        and held.startswith("held_uniform_looking_dispersion_")
        and held.endswith("_40_of_45_sampled")
    )
    refused, held = _judge_uniform(ring[:40], confirm, held_for_s=200.0)
    assert refused == "" and held.endswith("_40_of_45_sampled")
    # the hold has run out (hold_max_s 300): judged on the users it has
    refused, held = _judge_uniform(ring[:40], confirm, held_for_s=301.0)
    assert refused.startswith("uniform_accounts_dispersion_") and "_of_40_sampled_" in refused and held == ""
    # the confirm sample reached: refused at once
    refused, _ = _judge_uniform(ring[:50], confirm)
    assert refused.startswith("uniform_accounts_dispersion_") and "_of_50_sampled_" in refused
    # the default (36): 32 users are held, 40 refused
    assert _judge_uniform(ring[:32], {})[1].endswith("_32_of_36_sampled")
    assert _judge_uniform(ring[:40], {})[0].startswith("uniform_accounts_")
    # off (0) or no hold (hold_max_s 0): refused from uniform_min_users (30) on
    assert _judge_uniform(ring[:32], {"trust": {"uniform_confirm_users": 0}})[0].startswith(
        "uniform_accounts_"
    )
    no_hold = {"trust": {"uniform_confirm_users": 45, "hold_max_s": 0.0}}
    assert _judge_uniform(ring[:32], no_hold)[0].startswith("uniform_accounts_")
