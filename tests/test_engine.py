from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import read_events, run_engine, truth
from tests.stream.contract import DECISION_FIELDS
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.events import EVENT_TYPE_CODE, EventBatch

SMALL = dict(
    n_events=40_000, n_products=5_000, n_viral=2, n_steady=3, n_spikes=4, duration_s=6 * 3600.0, seed=3
)
DAY = dict(n_events=400_000, n_products=50_000, n_viral=4, seed=11)


def batch_of(rows, *, partition=0):
    """rows: (ts_ms, type, product, seller[, event_id[, user]])."""
    n = len(rows)
    return EventBatch(
        ts_ms=np.array([r[0] for r in rows], np.int64),
        type_code=np.array([EVENT_TYPE_CODE[r[1]] for r in rows], np.int8),
        product_id=[r[2] for r in rows],
        user_id=[r[5] if len(r) > 5 else f"u{i}" for i, r in enumerate(rows)],
        event_id=[r[4] if len(r) > 4 else None for r in rows],
        seller_id=[r[3] for r in rows],
        category=["c"] * n,
        price=np.full(n, np.nan),
        quantity=np.ones(n, np.int64),
        partition=np.full(n, partition, np.int32),
        offset=np.arange(n, dtype=np.int64),
    )


@pytest.fixture(scope="module")
def small_events(scenario_factory):
    return read_events(scenario_factory(**SMALL) / "events.ndjson")


@pytest.fixture(scope="module")
def small_reference(small_events):
    return run_engine(small_events, [])[1]


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(1, 39_999), min_size=1, max_size=12))
def test_any_batch_split_gives_the_same_decisions(small_events, small_reference, cuts):
    assert run_engine(small_events, cuts)[1] == small_reference


def test_small_scenario_reaches_a_board(small_reference):
    actions = {m["action"] for m in small_reference}
    assert "promote" in actions and "board" in actions


def test_decision_messages_follow_the_contract(small_reference):
    per_product = [m for m in small_reference if m["action"] != "board"]
    assert per_product
    for m in per_product:
        assert m["schema"] == 1
        assert set(m) == set(DECISION_FIELDS)
        assert 0.0 <= m["score"] <= 1.0 and m["reasons"]
        assert (m["rank"] is None) == (m["action"] in ("demote", "block"))
    snapshots = [m for m in small_reference if m["action"] == "board"]
    assert snapshots[-1]["items"] == sorted(snapshots[-1]["items"], key=lambda it: it["rank"])


def test_promotions_carry_the_numbers_behind_the_score(small_reference):
    promote = next(m for m in small_reference if m["action"] == "promote")
    assert {"lift", "z", "velocity", "momentum", "rate_5m_per_h", "baseline_per_h"} <= set(
        promote["features"]
    )
    assert any(r.startswith("lift_x") for r in promote["reasons"])


def test_day_scenario_promotes_viral_products_fast_and_nothing_else(scenario_factory):
    directory = scenario_factory(**DAY)
    _, messages = run_engine(read_events(directory / "events.ndjson"), [])
    t = truth(directory)
    onset = {v["product_id"]: v["onset_ts"] for v in t["viral"]}
    first = {}
    for m in messages:
        if m["action"] == "promote":
            first.setdefault(m["product_id"], m["event_ts"])
    assert set(first) == set(onset), "exactly the viral products are promoted"
    delays_min = [(first[p] - onset[p]) / 60_000 for p in onset]
    assert max(delays_min) < 10.0, delays_min
    distractors = {s["product_id"] for s in t["steady"]} | {s["product_id"] for s in t["spikes"]}
    assert not distractors & set(first)


def test_late_event_beyond_lateness_is_counted_and_rejected():
    engine = Engine(load_config(None, environ={}))
    engine.process(batch_of([(1_000_000_000_000, "view", "p", "s")]))
    _, rejects = engine.process(batch_of([(1_000_000_000_000 - 301_000, "view", "p", "s")]))
    assert [r.reason for r in rejects] == ["late"]
    assert engine.stats.rejected["late"] == 1 and engine.stats.events_applied == 1


def test_late_event_within_lateness_is_applied():
    engine = Engine(load_config(None, environ={}))
    engine.process(batch_of([(1_000_000_000_000, "view", "p", "s")]))
    _, rejects = engine.process(batch_of([(1_000_000_000_000 - 299_000, "view", "p", "s")]))
    assert rejects == [] and engine.stats.events_applied == 2


def test_far_future_event_is_rejected_without_moving_event_time():
    engine = Engine(load_config(None, environ={}))
    t0 = 1_000_000_000_000
    _, rejects = engine.process(
        batch_of(
            [(t0, "view", "p", "s"), (t0 + 1000, "view", "p", "s"), (t0 + 10 * 86_400_000, "view", "p", "s")]
        )
    )
    assert [r.reason for r in rejects] == ["future_ts"]
    assert engine.clock.watermark_ms == t0 + 1000


def test_repeated_event_id_is_counted_once():
    engine = Engine(load_config(None, environ={}))
    engine.process(
        batch_of([(1_000_000_000_000, "view", "p", "s", "e1"), (1_000_000_000_001, "view", "p", "s", "e1")])
    )
    assert engine.stats.duplicates == 1 and engine.stats.events_applied == 1


def _burst(product, seller, start_ms, n, spacing_ms=200, users=2000):
    """A growing burst over a quiet catalogue of 300 products with a view a minute each.

    ``n`` events over ``n * spacing_ms``, the rate rising linearly from 0 (a trend accelerates;
    a flat step is a spike), by distinct accounts of the catalogue's existing audience (``users``
    accounts, active for an hour before, plus new ones past that), one event in ten an
    add-to-cart: organic, converting engagement.
    """
    span_ms = n * spacing_ms
    background = [
        (
            start_ms - 3_600_000 + k * 60_000 + p * 100,
            "view",
            f"bg{p}",
            f"s{p % 50}",
            None,
            f"user{(p * 61 + k) % users}",
        )
        for p in range(300)
        for k in range(60 + n * spacing_ms // 60_000 + 2)
    ]
    burst = [
        (
            start_ms + int(span_ms * math.sqrt(i / n)),
            "add_to_cart" if i % 10 == 0 else "share",
            product,
            seller,
            None,
            f"user{(i * 7919) % users if i < users else i}",
        )
        for i in range(n)
    ]
    return background + burst


def test_blocked_seller_trending_product_gets_block_not_promote():
    cfg = load_config(None, environ={}, overrides={"trust": {"blocked_sellers": ["bad-seller"]}})
    t0 = 1_000_000_000_000
    rows = _burst("p-bad", "bad-seller", t0, 3000) + [(t0 + 700_000, "view", "other", "s")]
    _, messages = run_engine(batch_of(sorted(rows)), [], cfg)
    actions = [(m["action"], m.get("product_id")) for m in messages if m["action"] != "board"]
    assert ("block", "p-bad") in actions and ("promote", "p-bad") not in actions
    block = next(m for m in messages if m["action"] == "block")
    assert block["reasons"][0] == "seller_blocked" and block["rank"] is None


def test_sustained_burst_is_promoted():
    t0 = 1_000_000_000_000
    rows = _burst("p-hot", "s", t0, 3000) + [(t0 + 700_000, "view", "other", "s")]
    _, messages = run_engine(batch_of(sorted(rows)), [])
    assert ("promote", "p-hot") in [(m["action"], m.get("product_id")) for m in messages]


def test_cold_products_are_evicted_and_come_back_fresh():
    cfg = load_config(
        None,
        environ={},
        overrides={
            "state": {"evict_every_s": 600.0, "evict_below": 0.5},
            "decay": {"half_lives_s": [60.0, 300.0, 3600.0, 7200.0]},
            "score": {"baseline_half_life_s": 7200.0},
        },
    )
    engine = Engine(cfg)
    t0 = 1_000_000_000_000
    engine.process(batch_of([(t0, "view", "gone", "s")]))
    engine.process(batch_of([(t0 + i * 60_000, "view", "busy", "s") for i in range(1, 400)]))
    assert engine.stats.evicted >= 1
    assert engine.products.lookup(["gone"]).tolist() == [-1]
    engine.process(batch_of([(t0 + 400 * 60_000, "view", "gone", "s")]))
    slot = int(engine.products.lookup(["gone"])[0])
    assert engine.counters.first_ts_ms[slot] == t0 + 400 * 60_000


def test_trace_records_a_product_at_every_tick():
    t0 = 1_000_000_000_000
    rows = _burst("p-hot", "s", t0, 600)
    engine, _ = run_engine(batch_of(sorted(rows)), [], trace_products=("p-hot",))
    ticks = [r["event_ts"] for r in engine.trace_rows]
    assert ticks == sorted(ticks) and ticks[0] == t0 + 10_000 and len(ticks) >= 12
    assert {"event_ts", "product_id", "score", "lift", "z"} <= set(engine.trace_rows[0])


def test_tracing_does_not_change_decisions(small_events, small_reference):
    traced = small_reference[0].get("product_id") or "p-000001"
    assert run_engine(small_events, [], trace_products=(traced, "p-000002"))[1] == small_reference


def test_tracing_reads_quiet_products_without_evaluating_them(monkeypatch):
    """A traced product is read at every tick, also at ticks without its events.  Those reads must
    not reach the evaluation: it remembers from tick to tick (the rule's ready ticks for the model's
    labels, the model's vouch streaks, holds), so extra rows there would let a traced replay decide
    differently from an untraced one (``viraltrend explain`` would tell another story)."""
    t0 = 1_000_000_000_000
    rows = _burst("p-hot", "s", t0, 400)
    end = t0 + 400 * 200
    # then a sparse tail: an event every 25 s, so most ticks have none of its events
    rows += [(end + k * 25_000, "share", "p-hot", "s", None, f"tail{k}") for k in range(1, 40)]
    events = batch_of(sorted(rows))
    real = Engine._evaluate

    def run(trace):
        seen = []

        def spy(self, now_ms, slots, *args):
            seen.append((now_ms, slots.tolist()))
            return real(self, now_ms, slots, *args)

        monkeypatch.setattr(Engine, "_evaluate", spy)
        engine, messages = run_engine(events, [len(events) // 3], trace_products=trace)
        return engine, seen, messages

    _, plain, plain_messages = run(())
    traced, seen, messages = run(("p-hot",))
    assert seen == plain
    decisions = [m for m in messages if m["action"] != "board"]
    assert decisions == [m for m in plain_messages if m["action"] != "board"]
    quiet = [r for r in traced.trace_rows if r["evaluated"] == 0.0]
    assert quiet and {r["event_ts"] for r in quiet}.isdisjoint({t for t, _ in plain})
    ticks = [r["event_ts"] for r in traced.trace_rows]
    assert ticks == sorted(set(ticks))  # one row per tick, evaluated or not


def test_state_stays_under_390_bytes_per_product(small_events):
    # 256 (counters, trust counters at the trend half-life, seller, category) + 24 (trust counters at
    # the baseline half-life: the detector's own baseline) + 106 (the change detector and its rings)
    engine, _ = run_engine(small_events, [])
    assert engine.bytes_per_product <= 390
    assert engine.state_bytes <= engine.bytes_per_product * engine.counters.capacity + 64 * 1024


def test_config_change_changes_behaviour(small_events, small_reference):
    cfg = load_config(None, environ={})
    cfg = dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, min_recent_lift=1e6))
    _, messages = run_engine(small_events, [], cfg)
    assert sum(m["action"] == "promote" for m in messages) < sum(
        m["action"] == "promote" for m in small_reference
    )


def test_a_full_day_with_landmark_moves_is_identical_for_any_batching(scenario_factory):
    events = read_events(scenario_factory(**DAY) / "events.ndjson")
    engine, whole = run_engine(events, [])
    assert engine.counters.landmark_ms > int(events.ts_ms.min()) + 3 * 3600 * 1000, "the landmark moved"
    cuts = list(range(1, len(events), 7919))
    assert run_engine(events, cuts)[1] == whole
