"""Per-product and per-user state layout (issue 11): what the engine keeps, and checkpoints of the
earlier layout (trust counters with first/last times, the user table with ``prev_of``) restore."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import read_events, run_engine
from tests.test_engine_hot_path import SCENARIO
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.events import EventBatch


@pytest.fixture(scope="module")
def pinned_events(scenario_factory):
    return read_events(scenario_factory(**SCENARIO) / "events.ndjson")


def test_a_checkpoint_of_the_earlier_layout_restores_and_continues_identically(pinned_events):
    cfg = load_config(None, environ={})
    _, whole = run_engine(pinned_events, [])
    half = len(pinned_events) // 2
    first = Engine(cfg)
    msgs, _ = first.process(pinned_events.take(np.arange(half)))
    arrays, meta = first.state()
    # the layout now: no times in the trust counters, no prev_of in the user table
    assert arrays["trust.first_ts_ms"].shape == arrays["trust.last_ts_ms"].shape == (0,)
    assert arrays["usertable.prev_of"].shape == (0,)
    older, _ = first.state()  # its own copies: a restored engine may work on the arrays it was given
    older["trust.first_ts_ms"] = first.counters.first_ts_ms.copy()  # int64[capacity], as written before
    older["trust.last_ts_ms"] = first.counters.last_ts_ms.copy()
    older["usertable.prev_of"] = first.users.hash_of[: first.users.high_water].copy()
    for state in (arrays, older):
        second = Engine.restore(cfg, state, meta)
        assert second.trust_counters.first_ts_ms.shape == (0,) and second.users.prev_of.shape == (0,)
        rest, _ = second.process(pinned_events.take(np.arange(half, len(pinned_events))))
        assert msgs + rest + second.finish() == whole


def _new_products(engine: Engine, start: int, n: int, t_ms: int) -> None:
    ids = [f"p{i}" for i in range(start, start + n)]
    engine.process(
        EventBatch(
            ts_ms=np.full(n, t_ms, np.int64),
            type_code=np.zeros(n, np.int8),
            product_id=ids,
            user_id=[f"u{i % 97}" for i in range(n)],
            event_id=[None] * n,
            seller_id=["s"] * n,
            category=["c"] * n,
            price=np.full(n, np.nan),
            quantity=np.ones(n, np.int64),
            partition=np.zeros(n, np.int32),
            offset=np.arange(n, dtype=np.int64),
        )  # fmt: skip
    )


def test_product_arrays_grow_to_the_cap_not_past_it():
    cfg = load_config(
        None, environ={}, overrides={"state": {"max_products": 5_000, "initial_capacity": 1024}}
    )
    engine = Engine(cfg)
    _new_products(engine, 0, 4_500, 1_000_000_000_000)
    # doubling from 1024 would give 8192 slots; it stops at the cap
    assert engine.counters.capacity == engine.trust_counters.capacity == engine.seller_of.shape[0] == 5_000
    assert engine.counters.first_ts_ms.shape == (5_000,) and engine.trust_counters.first_ts_ms.shape == (0,)
    assert engine.products._start.shape == (5_000,)
    assert engine.detector.cusum.capacity == engine.detector.cusum.stat.shape[0] == 5_000  # the CUSUM too
    assert engine.counters.acc.dtype == engine.trust_counters.acc.dtype == np.float32  # 4 bytes a cell
    _new_products(engine, 4_500, 1_000, 1_000_000_001_000)  # over the cap until the next tick: +1/8
    assert engine.counters.capacity == engine.seller_of.shape[0] == engine.detector.cusum.capacity == 5_625
    restored = Engine.restore(cfg, *engine.state())
    assert restored.counters.capacity == restored.detector.cusum.capacity == 5_625


def test_two_engines_restored_from_one_state_do_not_share_arrays(pinned_events):
    cfg = load_config(None, environ={})
    _, whole = run_engine(pinned_events, [])
    half = len(pinned_events) // 2
    first = Engine(cfg)
    msgs, _ = first.process(pinned_events.take(np.arange(half)))
    state = first.state()
    a, b = Engine.restore(cfg, *state), Engine.restore(cfg, *state)
    rest = pinned_events.take(np.arange(half, len(pinned_events)))
    out_a = a.process(rest)[0] + a.finish()
    out_b = b.process(rest)[0] + b.finish()  # b must not see what a wrote into its arrays
    assert msgs + out_a == whole
    assert msgs + out_b == whole


def test_name_table_checkpoint_arrays_do_not_depend_on_its_history():
    """Two tables holding the same ids in the same slots checkpoint alike (arena layout aside)."""
    from viraltrend.kernels.names import NameTable

    ids = [f"p-{i:05d}" for i in range(3_000)]
    one, two = NameTable(capacity=4), NameTable(capacity=2_048)
    one.intern(ids)
    for a in range(0, len(ids), 7):  # other batches: other arena growth
        two.intern(ids[a : a + 7])
    for t in (one, two):
        t.release(list(range(10, 2_000, 3)))
        t.intern(["p-new-1", "p-new-2"])  # take the lowest free slots
    got = one.to_arrays()
    want = two.to_arrays()
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    back = NameTable.from_arrays(got)
    assert back.to_list() == one.to_list()
    assert (
        back.lookup(["p-new-2", "p-00011", "p-00010", "nope"]).tolist()
        == one.lookup(["p-new-2", "p-00011", "p-00010", "nope"]).tolist()
    )
    assert back.intern(["p-x"]).tolist() == one.intern(["p-x"]).tolist()  # the same next free slot
    for k, v in back.to_arrays().items():
        np.testing.assert_array_equal(v, one.to_arrays()[k], err_msg=k)


def test_eviction_promises_of_float32_cells_end_before_their_landmark_roundings_pass_the_slack():
    from viraltrend.engine import _evict_promise_ms
    from viraltrend.kernels.prefilter import EVICT_SLACK

    cfg = load_config(None, environ={})
    engine = Engine(cfg)
    promise = _evict_promise_ms(cfg, engine.counters)
    half_ms = engine.counters.renorm_exponent / 2 / float(engine.counters.lam.max()) * 1000
    moves = (promise + cfg.decay.max_future_s * 1000 + half_ms) / half_ms + 1  # at most, in a promise
    assert 7 * 3_600_000 < promise and moves * 2.0**-24 < EVICT_SLACK
    far = load_config(None, environ={}, overrides={"decay": {"max_future_s": 86_400.0}})
    assert _evict_promise_ms(far, Engine(far).counters) == 0  # no promise then: every sweep looks at all


def test_a_checkpoint_of_float64_cells_restores_narrowed_and_continues_with_the_same_actions(
    pinned_events, monkeypatch
):
    """A checkpoint written before the float32 layout (float64 cells) loads: its landmark moved to its
    latest event, the cells rounded; the run continues with the actions, products and times of an
    engine that kept float64 cells (the pinned scenario, cut in half)."""
    import viraltrend.engine as engine_module

    def core(msgs):
        return [(m["action"], m["event_ts"], m.get("product_id")) for m in msgs]

    cfg = load_config(None, environ={})
    half = len(pinned_events) // 2
    with monkeypatch.context() as m:
        m.setattr(engine_module, "_ACC_LAYOUT", {})  # the engine before: float64 cells, exponent 300
        old = Engine(cfg)
        msgs, _ = old.process(pinned_events.take(np.arange(half)))
        arrays, meta = old.state()
        _, wide = run_engine(pinned_events, [], cfg)
    assert arrays["counters.acc"].dtype == arrays["trust.acc"].dtype == np.float64
    new = Engine.restore(cfg, arrays, meta)
    assert new.counters.acc.dtype == new.trust_counters.acc.dtype == np.float32
    live = np.flatnonzero(old.counters.last_ts_ms != np.iinfo(np.int64).min)
    now = int(old.counters.last_ts_ms.max())
    for a, b in ((old.counters, new.counters), (old.trust_counters, new.trust_counters)):
        x, y = a.read(live, now), b.read(live, now)
        assert np.allclose(y, x, rtol=1e-6, atol=1e-30)
    rest, _ = new.process(pinned_events.take(np.arange(half, len(pinned_events))))
    assert core(msgs + rest + new.finish()) == core(wide)
