"""The engine as components (issue 11, item 3): each stateful part checkpoints through one protocol.

The checkpoint layout is the one main wrote before the parts owned their state (session 23, 2cb997c:
``Engine.state()`` listed every array and meta entry by hand): :func:`_v23_state` is that writer,
kept here field by field.  The engine's own ``state()`` must equal it, and a checkpoint it wrote must
restore and continue exactly, so checkpoints written by main restore under the components (and the
changelog store's deltas, keyed on array names, still apply).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import read_events, run_engine
from tests.test_pinned_decisions import SCENARIO
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.errors import CheckpointError
from viraltrend.events import EventBatch
from viraltrend.stateful import Stateful
from viraltrend.trust import GuardBook


@pytest.fixture(scope="module")
def pinned_events(scenario_factory):
    return read_events(scenario_factory(**SCENARIO) / "events.ndjson")


@pytest.fixture(scope="module")
def whole(pinned_events):
    """The uninterrupted run's messages (one batch, then the final snapshot)."""
    return run_engine(pinned_events, [])[1]


def _v23_state(e: Engine) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``Engine.state()`` as main (2cb997c) wrote it, every array and meta entry by hand."""
    b = e.book
    arrays = {f"counters.{k}": v for k, v in e.counters.to_arrays().items()}
    arrays["seller_of"] = e.seller_of.copy()
    arrays["category_of"] = e.category_of.copy()
    arrays["touched"] = np.concatenate([np.empty(0, np.int64), *e._touched])
    arrays["new_users"] = np.concatenate([np.empty(0, np.int64), *e._new_users])
    arrays.update({f"trust.{k}": v for k, v in e.trust_counters.to_arrays().items()})
    arrays.update({f"users.{k}": v for k, v in e.user_signals.to_arrays().items()})
    arrays.update({f"usertable.{k}": v for k, v in e.users.to_arrays().items()})
    arrays.update({f"sketches.{k}": v for k, v in e.sketches.to_arrays().items()})
    arrays.update({f"detect.{k}": v for k, v in e.detector.to_arrays().items()})
    arrays["sketched"] = b.sketched.copy()
    arrays["sketched_ms"] = b.sketched_ms.copy()
    arrays["sketched_ev"] = b.sketched_ev.copy()
    arrays.update({f"audiences.{k}": v for k, v in e.audiences.to_arrays().items()})
    arrays.update({f"activity.{k}": v for k, v in e.activity.to_arrays().items()})
    if e.labels is not None:
        arrays.update({f"labels.{k}": v for k, v in e.labels.to_arrays().items()})
    arrays.update({f"products.{k}": v for k, v in e.products.to_arrays().items()})
    dedup = None
    if e.dedup is not None:
        tables, entries = e.dedup.to_state()
        dedup = entries["dedup"]
        arrays.update({f"dedup.{k}": v for k, v in tables.items()})
    s = e.stats
    meta = {
        "config": e._fingerprint(),
        "sellers": e.sellers.to_list(),
        "categories": e.categories.to_list(),
        "users_next_sweep_ms": e._next_user_sweep_ms,
        "blocked_products": e.guard.blocked_products,
        "blocked_sellers": e.guard.blocked_sellers,
        "clock": e.clock.to_dict(),
        "dedup": dedup,
        "board": e.board.to_dict(),
        "model": e.model.to_dict() if e.model is not None else None,
        "start_ms": e._start_ms,
        "ring_refusals": [[s_, r, t] for s_, (r, t) in sorted(b.ring_refusals.items())],
        "held_since": sorted(b.held_since.items()),
        "suspected": sorted(b.suspected.items()),
        "low_held": sorted(b.low_held.items()),
        "vouch_since": sorted(b.vouch_since.items()),
        "catalogue_phi": [
            None if math.isnan(b.catalogue_phi[0]) else b.catalogue_phi[0],
            b.catalogue_phi[1],
            b.catalogue_checked_ms,
        ],
        "funnel_share": e.funnel_share.to_list(),
        "ready_ms": sorted(b.ready_ms.items()),
        "vouch_ms": [[s_, a, c] for s_, (a, c) in sorted(b.vouch_ms.items())],
        "n_live": e._n_live,
        "population": e._population,
        "last_snapshot_ms": e._last_snapshot_ms,
        "next_evict_ms": e._next_evict_ms,
        "stats": {
            "events_in": s.events_in,
            "events_applied": s.events_applied,
            "duplicates": s.duplicates,
            "rejected": dict(s.rejected),
            "ticks": s.ticks,
            "decisions": dict(s.decisions),
            "evicted": s.evicted,
            "evicted_over_cap": s.evicted_over_cap,
        },
    }
    return arrays, meta


def _assert_same(got: tuple[dict, dict], want: tuple[dict, dict]) -> None:
    (g_arrays, g_meta), (w_arrays, w_meta) = got, want
    assert sorted(g_arrays) == sorted(w_arrays)
    for name, arr in w_arrays.items():
        assert g_arrays[name].dtype == arr.dtype and g_arrays[name].shape == arr.shape, name
        assert np.array_equal(g_arrays[name], arr, equal_nan=arr.dtype.kind == "f"), name
    assert json.loads(json.dumps(g_meta)) == json.loads(json.dumps(w_meta))


def test_the_checkpoint_layout_is_main_s(pinned_events):
    """state() writes the arrays and meta main wrote, name for name and bit for bit (copy or not)."""
    engine = Engine(load_config(None, environ={}))
    engine.process(pinned_events.take(np.arange(len(pinned_events) * 2 // 3)))
    assert engine.book.held_since or engine.book.ring_refusals or engine.book.sketched.size  # a guard at work
    assert engine.model is not None and engine.labels is not None and engine.dedup is not None
    want = _v23_state(engine)
    _assert_same(engine.state(), want)
    _assert_same(engine.state(copy=False), want)
    # each array and meta entry comes from one part (none overwritten by a later one); the product
    # table's share is exactly main's names, columns and shared ids
    shares = {attr: part.to_state() for _, attr, part in engine._parts() if part is not None}
    names = [
        prefix + k for prefix, attr, part in engine._parts() if part is not None for k in shares[attr][0]
    ]
    keys = [k for arrays_meta in shares.values() for k in arrays_meta[1]]
    assert len(names) == len(set(names)) == len(want[0]) and len(keys) == len(set(keys))
    arrays, meta = shares["catalog"]
    assert sorted(arrays) == sorted(
        k for k in want[0] if k.startswith("products.") or k in ("seller_of", "category_of")
    )
    assert sorted(meta) == ["categories", "sellers"]


def _evicting_cfg(**state: Any):
    return load_config(
        None,
        environ={},
        overrides={
            "state": {"evict_every_s": 600.0, "evict_below": 0.5, **state},
            "decay": {"half_lives_s": [60.0, 300.0, 3600.0, 7200.0]},
            "score": {"baseline_half_life_s": 7200.0},
        },
    )


def _round(r: int, n: int = 40) -> EventBatch:
    """Round ``r``: ``n`` products, new but every third of every eighth round: round ``r - 7``'s, evicted
    and released a round before, back in a reused slot with another seller.

    Sellers shared by four products, categories by ten, some not given; 20 minutes of event time a round.
    """
    products = [f"p{r - 7}-{i}" if i % 3 == 0 and r % 8 == 7 else f"p{r}-{i}" for i in range(n)]
    return EventBatch(
        ts_ms=np.asarray([1_000_000_000_000 + r * 1_200_000 + i for i in range(n)], np.int64),
        type_code=np.zeros(n, np.int8),
        product_id=products,
        user_id=[f"u{r}-{i % 7}" for i in range(n)],
        event_id=[None] * n,
        seller_id=[None if i % 5 == 4 else f"s{r}-{i // 4}" for i in range(n)],
        category=[None if i % 9 == 8 else f"c{(r + i) // 10}" for i in range(n)],
        price=np.full(n, np.nan),
        quantity=np.ones(n, np.int64),
        partition=np.zeros(n, np.int32),
        offset=np.arange(n, dtype=np.int64),
    )


def test_the_product_table_after_evictions_is_main_s_layout_and_restores_exactly():
    """Slots released and reused, products back after release, shared ids released, columns grown."""
    cfg = _evicting_cfg(initial_capacity=64)
    engine = Engine(cfg)
    for r in range(14):
        engine.process(_round(r))
    assert engine.stats.evicted > 0 and engine.catalog.capacity > 64 and engine.sellers.released > 0
    assert len(engine.products) < engine.products.high_water  # free slots in the names
    assert (engine.seller_of[: engine.products.high_water] < 0).any()  # and in the columns
    want = _v23_state(engine)
    _assert_same(engine.state(), want)
    _assert_same(engine.state(copy=False), want)
    arrays, meta = want
    restored = Engine.restore(cfg, {k: v.copy() for k, v in arrays.items()}, json.loads(json.dumps(meta)))
    for r in range(14, 24):
        got, want_messages = restored.process(_round(r)), engine.process(_round(r))
        assert got == want_messages, r
    _assert_same(restored.state(), _v23_state(engine))


def test_a_checkpoint_main_wrote_restores_and_continues_exactly(pinned_events, whole):
    """A checkpoint in main's layout (JSON meta, as the stores keep it) restores; the decisions go on."""
    cfg = load_config(None, environ={})
    cut = len(pinned_events) // 3
    first = Engine(cfg)
    before, _ = first.process(pinned_events.take(np.arange(cut)))
    arrays, meta = _v23_state(first)
    second = Engine.restore(cfg, arrays, json.loads(json.dumps(meta)))
    after, _ = second.process(pinned_events.take(np.arange(cut, len(pinned_events))))
    assert before + after + second.finish() == whole
    _assert_same(second.state(), _v23_state(second))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_restore_at_any_batch_boundary_changes_no_message(pinned_events, whole, data):
    """Replay in batches of any size; checkpoint and restore at any boundary: the same messages."""
    n = len(pinned_events)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=6), label="batch ends"))
    at = data.draw(st.sampled_from(cuts), label="restore after")
    cfg = load_config(None, environ={})
    engine = Engine(cfg)
    out: list[Any] = []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        messages, _ = engine.process(pinned_events.take(np.arange(a, b)))
        out += messages
        if b == at:
            arrays, meta = engine.state()
            arrays = {k: v.copy() for k, v in arrays.items()}
            engine = Engine.restore(cfg, arrays, json.loads(json.dumps(meta)))
    assert out + engine.finish() == whole


def test_every_part_speaks_the_protocol_and_a_lost_entry_is_refused_by_name():
    engine = Engine(load_config(None, environ={}))
    parts = engine._parts()
    assert len({prefix for prefix, _, _ in parts if prefix}) == len([p for p, _, _ in parts if p])  # no clash
    for _, attr, part in parts:  # the defaults keep every part (the model and dedup are on)
        assert isinstance(part, Stateful), attr
    arrays, meta = engine.state()
    for key in ("ring_refusals", "board", "clock", "stats", "n_live", "sellers"):
        with pytest.raises(CheckpointError, match=key):
            Engine.restore(engine.cfg, arrays, {k: v for k, v in meta.items() if k != key})
    with pytest.raises(CheckpointError, match="disagree in size"):
        Engine.restore(engine.cfg, {**arrays, "seller_of": arrays["seller_of"][:-1]}, meta)


def test_the_guard_book_forgets_released_slots_and_round_trips():
    book = GuardBook()
    book.ring_refusals = {3: ("lockstep", 10), 8: ("lockstep", 11)}
    book.held_since, book.suspected, book.low_held = {3: 1, 5: 2}, {5: 3}, {5: 3}
    book.vouch_since, book.ready_ms, book.vouch_ms = {8: 4}, {3: 5}, {3: (6, 7)}
    book.catalogue_phi, book.catalogue_checked_ms = (1.5, 60_000), 70_000
    book.sketched = np.array([2, 3, 8], np.int64)
    book.sketched_ms = np.array([20, 30, 80], np.int64)
    book.sketched_ev = np.array([0.2, 0.3, 0.8])
    arrays, meta = book.to_state()
    back = GuardBook().load_state(arrays, json.loads(json.dumps(meta)))
    assert back.ring_refusals == book.ring_refusals and back.vouch_ms == book.vouch_ms
    for name in ("held_since", "suspected", "low_held", "vouch_since", "ready_ms"):
        assert getattr(back, name) == getattr(book, name), name
    assert back.catalogue_phi == (1.5, 60_000) and back.catalogue_checked_ms == 70_000
    assert np.array_equal(back.sketched_ev, book.sketched_ev)
    gone = back.release(np.array([3, 5], np.int64))
    assert gone.tolist() == [3] and back.sketched.tolist() == [2, 8] and back.sketched_ms.tolist() == [20, 80]
    assert back.ring_refusals == {8: ("lockstep", 11)} and back.held_since == {} and back.suspected == {}
    assert back.low_held == {} and back.vouch_since == {8: 4}
    assert back.ready_ms == {3: 5}  # the model's label times are dropped by the labels' horizon, not here
    older = GuardBook().load_state({"sketched": arrays["sketched"]}, {"ring_refusals": []})
    assert older.sketched_ms.shape == (0,) and math.isnan(older.catalogue_phi[0])  # an older checkpoint's
