"""Bounded id tables (issues 11 and 12): sellers and categories are held only by live products, and at
most ``state.max_products`` products hold state; both keep working across checkpoints."""

from __future__ import annotations

import numpy as np

from tests.conftest import read_events, run_engine
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.events import EventBatch

T0 = 1_000_000_000_000


def _batch(ts, products, sellers, cats):
    n = len(products)
    return EventBatch(
        ts_ms=np.asarray(ts, np.int64),
        type_code=np.zeros(n, np.int8),
        product_id=list(products),
        user_id=[f"u{i}" for i in range(n)],
        event_id=[None] * n,
        seller_id=list(sellers),
        category=list(cats),
        price=np.full(n, np.nan),
        quantity=np.ones(n, np.int64),
        partition=np.zeros(n, np.int32),
        offset=np.arange(n, dtype=np.int64),
    )


def _evicting_cfg(**state):
    return load_config(
        None,
        environ={},
        overrides={
            "state": {"evict_every_s": 600.0, "evict_below": 0.5, **state},
            "decay": {"half_lives_s": [60.0, 300.0, 3600.0, 7200.0]},
            "score": {"baseline_half_life_s": 7200.0},
        },
    )


def _hostile(engine: Engine, rounds: int, per_round: int = 50) -> None:
    """Every product, seller and category id new; event time moves 20 minutes a round."""
    for r in range(rounds):
        ts = [T0 + r * 1_200_000 + i for i in range(per_round)]
        ids = [f"{r}-{i}" for i in range(per_round)]
        engine.process(_batch(ts, [f"p{x}" for x in ids], [f"s{x}" for x in ids], [f"c{x}" for x in ids]))


def test_sellers_and_categories_are_released_with_their_products():
    engine = Engine(_evicting_cfg())
    _hostile(engine, 24)  # 8 h: a one-view product decays below evict_below in about 2 h
    assert engine.stats.evicted > 0
    # every seller and category held belongs to a live product; the released ones are gone
    live = np.flatnonzero(engine.seller_of >= 0)
    assert len(engine.sellers) == len(live) == engine.tracked_products
    assert len(engine.categories) == engine.tracked_products
    assert engine.sellers.released >= engine.stats.evicted - 50
    assert len(engine.sellers) < 24 * 50 // 2  # about 7 rounds' products stay live


def test_a_seller_shared_by_products_stays_while_one_holds_it():
    engine = Engine(_evicting_cfg())
    engine.process(_batch([T0, T0 + 1], ["gone", "stays"], ["shared", "shared"], ["c", "c"]))
    for k in range(1, 40):  # "stays" keeps busy, "gone" goes cold (below 0.5 after 2 h) and is evicted
        engine.process(_batch([T0 + k * 600_000], ["stays"], ["shared"], ["c"]))
    assert engine.products.lookup(["gone"]).tolist() == [-1]
    slot = int(engine.products.lookup(["stays"])[0])
    assert engine.sellers.name(int(engine.seller_of[slot])) == "shared"
    assert len(engine.sellers) == 1


def test_checkpoints_keep_the_counts_and_older_ones_release_unheld_ids():
    engine = Engine(_evicting_cfg())
    _hostile(engine, 6)
    arrays, meta = engine.state()
    again = Engine.restore(engine.cfg, arrays, meta)
    assert again.sellers.to_list() == engine.sellers.to_list()
    n = len(meta["sellers"])
    assert np.array_equal(again.sellers.refs[:n], engine.sellers.refs[:n])
    # an older checkpoint held every seller ever seen: those no product refers to are released
    old = dict(meta, sellers=[*meta["sellers"], "never-held", None, "also-not"])
    older = Engine.restore(engine.cfg, arrays, old)
    assert len(older.sellers) == len(engine.sellers)
    assert older.sellers.table.lookup(["never-held", "also-not"]).tolist() == [-1, -1]


def test_no_more_than_max_products_hold_state_after_a_tick():
    cfg = load_config(None, environ={}, overrides={"state": {"max_products": 100}})
    engine = Engine(cfg)
    for r in range(10):  # 60 new products every 10 s (one tick)
        ts = [T0 + r * 10_000 + i for i in range(60)]
        engine.process(_batch(ts, [f"p{r}-{i}" for i in range(60)], ["s"] * 60, ["c"] * 60))
        assert engine.tracked_products <= 100 + 60  # at most one tick's new products over the cap
    assert engine.stats.evicted_over_cap > 0
    assert engine.stats.evicted >= engine.stats.evicted_over_cap
    assert len(engine.products) <= 100 + 60


def test_the_product_cap_does_not_depend_on_batching(scenario_factory):
    events = read_events(
        scenario_factory(n_events=20_000, n_products=3_000, n_viral=1, duration_s=3 * 3600.0, seed=5)
        / "events.ndjson"
    )
    cfg = load_config(None, environ={}, overrides={"state": {"max_products": 500}})
    a, out_a = run_engine(events, [], cfg)
    b, out_b = run_engine(events, [777, 5_000, 5_001, 13_333], cfg)
    assert a.stats.evicted_over_cap > 0
    assert out_a == out_b
    assert a.stats.evicted_over_cap == b.stats.evicted_over_cap
    assert sorted(x for x in a.products.to_list() if x) == sorted(x for x in b.products.to_list() if x)


def test_released_products_leave_the_guards_slot_tables_and_only_they_do():
    # _release_evicted drops a released slot from each of the guard's slot -> value dicts (a recycled slot
    # must not inherit a refusal or a hold) and keeps every other entry, in its order
    engine = Engine(load_config(None, environ={}))
    assert engine.products.intern([f"p-{i}" for i in range(12)]).tolist() == list(range(12))
    engine._grow(16)
    e = engine
    tables = (e.book.ring_refusals, e.book.held_since, e.book.suspected, e.book.low_held, e.book.vouch_since)
    for n, d in enumerate(tables):
        for slot in (7, 2, 9, 5, 11)[n % 2 :]:
            d[slot] = slot * 10 + n
    engine._evicted = [np.array([9, 3], np.int64), np.array([2, 9], np.int64)]  # 3 holds no entry
    engine._release_evicted()
    assert engine.products.lookup(["p-2", "p-3", "p-9", "p-5"]).tolist() == [-1, -1, -1, 5]
    for n, d in enumerate(tables):
        left = [s for s in (7, 2, 9, 5, 11)[n % 2 :] if s not in (2, 3, 9)]
        assert list(d.items()) == [(s, s * 10 + n) for s in left]
