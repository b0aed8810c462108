"""The engine's hot path (issue 11): hashed user ids released after the trust windows, idle ticks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import read_events, run_engine
from tests.test_engine import batch_of
from tests.test_pinned_decisions import SCENARIO
from viraltrend.audience_guard import AudienceGuard
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.kernels.hashtable import hash_ids
from viraltrend.kernels.segment import CATALOGUE
from viraltrend.trust import AudienceMemory


@pytest.fixture(scope="module")
def pinned_events(scenario_factory):
    return read_events(scenario_factory(**SCENARIO) / "events.ndjson")


def _sparse_rows(n=400, gap_ms=7 * 60_000):
    """A sparse stream (one event every few minutes, hundreds of idle ticks between), users repeating."""
    t0 = 1_000_000_000_000
    return [(t0 + i * gap_ms, "view", f"p{i % 23}", "s", None, f"u{(i * 7) % 150}") for i in range(n)]


def test_idle_ticks_take_the_fast_path_and_change_nothing(monkeypatch):
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)  # the Python ticks' own fast path
    events = batch_of(_sparse_rows())
    fast, fast_msgs = run_engine(events, [57, 200])
    monkeypatch.setattr(Engine, "_idle", lambda self, now_ms: False)
    slow, slow_msgs = run_engine(events, [57, 200])
    assert fast_msgs == slow_msgs and fast.stats.ticks == slow.stats.ticks > 10 * len(events)
    fa, fm = fast.state()
    sa, sm = slow.state()
    assert fa.keys() == sa.keys() and all(np.array_equal(fa[k], sa[k]) for k in fa)
    assert fm == sm


#: The online model buffering every touched product's row: its labels come due on idle ticks.
LABELLED = {"model": {"rows": "touched", "label": "gain", "negative_rate": 1.0, "horizon_s": 600.0}}


@pytest.mark.parametrize("overrides", [{}, LABELLED], ids=["default", "labels-due-on-idle-ticks"])
def test_quiet_ticks_skip_every_step_and_change_nothing(monkeypatch, overrides):
    """Hours between events: sweeps, landmark moves, snapshots, evictions and labels fall on idle ticks."""
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)  # the Python ticks' quiet path
    config = load_config(None, environ={}, overrides=overrides)
    events = batch_of(_sparse_rows(n=150, gap_ms=53 * 60_000))
    calls = {"n": 0}
    sweep = Engine._sweep_users

    def counted(self, now_ms):
        calls["n"] += 1
        return sweep(self, now_ms)

    monkeypatch.setattr(Engine, "_sweep_users", counted)
    fast, fast_msgs = run_engine(events, [40, 41, 99], config)
    fast_calls, calls["n"] = calls["n"], 0
    monkeypatch.setattr(Engine, "_quiet_until", lambda self, now_ms: None)
    slow, slow_msgs = run_engine(events, [40, 41, 99], config)
    if overrides:  # every touched product's row was labelled, each at an idle tick one horizon later
        assert fast.model is not None and fast.model.labels_seen == slow.model.labels_seen > 100
    # most idle ticks took the quiet path (a snapshot every board.snapshot_interval_s is real work)
    assert fast_calls < calls["n"] // 2 and calls["n"] == slow.stats.ticks
    assert fast_msgs == slow_msgs and fast.stats.ticks == slow.stats.ticks
    assert fast.counters.to_arrays()["landmark_ms"][0] > events.ts_ms[0] + 3_600_000  # the landmark moved
    fa, fm = fast.state()
    sa, sm = slow.state()
    assert fa.keys() == sa.keys() and all(np.array_equal(fa[k], sa[k]) for k in fa)
    assert fm == sm


def test_idle_users_are_released_and_their_slots_reused(pinned_events):
    engine, _ = run_engine(pinned_events, [])
    seen = len(set(pinned_events.user_id))
    assert engine.users.n_veterans > 0 and len(engine.users) < seen / 2
    assert engine.users.high_water < seen / 2  # slots reused: user arrays bounded by the active users
    assert engine.user_signals.capacity_users < seen


def test_restore_between_batches_continues_with_the_same_decisions(pinned_events):
    cfg = load_config(None, environ={})
    _, whole = run_engine(pinned_events, [])
    half = len(pinned_events) // 2
    first = Engine(cfg)
    msgs, _ = first.process(pinned_events.take(np.arange(half)))
    second = Engine.restore(cfg, *first.state())
    rest, _ = second.process(pinned_events.take(np.arange(half, len(pinned_events))))
    assert msgs + rest + second.finish() == whole


def test_a_checkpoint_with_user_names_restores(pinned_events):
    """Checkpoints written before user ids were hashed keep every user in its slot."""
    cfg = load_config(None, environ={})
    engine = Engine(cfg)
    engine.process(pinned_events.take(np.arange(5_000)))
    arrays, meta = engine.state()
    names: list[str | None] = [None] * engine.users.high_water
    slot_of = dict(
        zip(engine.users.hash_of[: engine.users.high_water].tolist(), range(len(names)), strict=True)
    )
    for u in set(pinned_events.user_id[:5_000]):
        names[slot_of[int(hash_ids([u])[0])]] = u
    arrays = {k: v for k, v in arrays.items() if not k.startswith("usertable.")}
    restored = Engine.restore(cfg, arrays, {**meta, "users": names})
    assert restored.users.hash_of.tolist()[: len(names)] == engine.users.hash_of.tolist()[: len(names)]


def _evaluated_rows(monkeypatch):
    rows: list[int] = []
    evaluate = Engine._evaluate

    def counting(self, now_ms, slots, *args):
        rows.append(int(slots.size))
        return evaluate(self, now_ms, slots, *args)

    monkeypatch.setattr(Engine, "_evaluate", counting)
    return rows


@pytest.mark.parametrize("cuts", [[], [7_001, 30_000]])
def test_screened_ticks_give_the_same_decisions_and_state(pinned_events, monkeypatch, cuts):
    """Quiet touched products screened out at ticks: the same messages and checkpoint as scoring all."""
    rows = _evaluated_rows(monkeypatch)
    fast, fast_msgs = run_engine(pinned_events, cuts)
    screened = sum(rows)
    rows.clear()
    monkeypatch.setattr(Engine, "screen", property(lambda self: False))
    slow, slow_msgs = run_engine(pinned_events, cuts)
    assert fast_msgs == slow_msgs
    assert screened < sum(rows) / 5  # most touched products are quiet at most ticks
    fa, fm = fast.state()
    sa, sm = slow.state()
    assert fa.keys() == sa.keys() and all(np.array_equal(fa[k], sa[k]) for k in fa)
    assert fm == sm


def test_screened_sparse_stream_gives_the_same_decisions_and_state(monkeypatch):
    events = batch_of(_sparse_rows())
    fast, fast_msgs = run_engine(events, [57, 200])
    monkeypatch.setattr(Engine, "screen", property(lambda self: False))
    slow, slow_msgs = run_engine(events, [57, 200])
    assert fast_msgs == slow_msgs
    fa, fm = fast.state()
    sa, sm = slow.state()
    assert all(np.array_equal(fa[k], sa[k]) for k in fa) and fm == sm


def test_detector_evidence_is_the_evidence_column_of_read(pinned_events):
    engine, _ = run_engine(pinned_events, [])
    now_ms = int(engine.clock.watermark_ms) // 10_000 * 10_000
    slots = np.flatnonzero(engine.detector.cusum.last_tick != np.iinfo(np.int64).min).astype(np.int64)
    mu = np.full(slots.size, 0.01)
    got = engine.detector.evidence(now_ms, slots, mu)
    want = engine.detector.read(now_ms, slots, mu, np.full(slots.size, 10.0))["evidence"]
    assert slots.size > 100 and (want >= 0.3).any()
    np.testing.assert_array_equal(got, want)


def _same_state(a: Engine, b: Engine) -> bool:
    aa, am = a.state()
    ba, bm = b.state()
    return aa.keys() == ba.keys() and all(np.array_equal(aa[k], ba[k]) for k in aa) and am == bm


def _kinds(monkeypatch) -> list[int]:
    """Record how each compiled run of ticks stopped (segment.DONE ... AFTER)."""
    import viraltrend.engine as engine_module

    kinds: list[int] = []
    run = engine_module.run_ticks

    def recorded(**kwargs):
        out = run(**kwargs)
        if out is not None:
            kinds.append(out.kind)
        return out

    monkeypatch.setattr(engine_module, "run_ticks", recorded)
    return kinds


def _gappy_rows():
    """Sparse events with a two-day gap (ticks skipped past max_ticks_per_gap) and a busy minute."""
    rows = _sparse_rows(n=300, gap_ms=3 * 60_000)
    t = rows[-1][0] + 2 * 86_400_000
    rows += [(t + i * 50, "view", f"p{i % 5}", "s", None, f"u{i % 40}") for i in range(400)]
    rows += [(t + 60_000 + i * 90_000, "like", f"p{i % 7}", "s", None, f"u{i % 9}") for i in range(200)]
    return rows


@pytest.mark.parametrize("cuts", [[], [7_001, 30_000], [1, 2, 3, 9_999, 10_000, 25_000]])
def test_ticks_in_one_compiled_call_give_the_same_decisions_and_state(pinned_events, monkeypatch, cuts):
    """The compiled loop over a batch's ticks against the engine's Python ticks: messages and checkpoint."""
    kinds = _kinds(monkeypatch)
    fast, fast_msgs = run_engine(pinned_events, cuts)
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    slow, slow_msgs = run_engine(pinned_events, cuts)
    assert fast_msgs == slow_msgs and fast.stats == slow.stats
    assert _same_state(fast, slow)
    assert len(kinds) > 100 and {2, 3} <= set(kinds)  # it ran, and stopped for Python in both ways


@pytest.mark.parametrize("fast_ticks", [True, False])
def test_quiet_audiences_run_only_when_they_would_change_something(pinned_events, monkeypatch, fast_ticks):
    """Ticks whose touched products are all quiet age the audiences only from ``quiet_from_ms`` on.

    Against calling ``AudienceGuard.quiet`` at every such tick while anything is sketched or refused
    (the compiled loop stopping for Python there): the same messages and checkpoint, fewer calls.
    """
    from viraltrend.engine import _NEVER

    calls: list[int] = []
    quiet = AudienceGuard.quiet

    def counting(self, now_ms):
        calls.append(now_ms)
        return quiet(self, now_ms)

    monkeypatch.setattr(AudienceGuard, "quiet", counting)
    monkeypatch.setattr(Engine, "_fast_sketch", False)  # the compiled loop stops for the audiences
    if not fast_ticks:
        monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    cuts = [7_001, 30_000]
    lazy, lazy_msgs = run_engine(pinned_events, cuts)
    n_lazy = len(calls)
    calls.clear()
    every = lambda self: _NEVER if (self.book.sketched.size or self.book.ring_refusals) else None  # noqa: E731
    monkeypatch.setattr(AudienceGuard, "quiet_from_ms", every)
    eager, eager_msgs = run_engine(pinned_events, cuts)
    assert lazy_msgs == eager_msgs and lazy.stats == eager.stats
    assert _same_state(lazy, eager)
    assert len(calls) > 20 and n_lazy < len(calls) / 2


@pytest.mark.parametrize("cuts", [[], [7_001, 30_000], [1, 2, 3, 9_999, 10_000, 25_000]])
def test_ticks_that_only_sketch_run_inside_the_compiled_tick_loop(pinned_events, monkeypatch, cuts):
    """The compiled loop's own audience steps against stopping for Python at every tick that sketches.

    The same messages, stats and checkpoint (sketched set, audience samples and memory), the
    memory's index of its rows as its slots give it, and most ``_sketch_only`` calls gone.  Some
    steps stop after the step for the catalogue's reference (Python's), then the tick's end.
    """
    calls: list[int] = []
    sketch_only = Engine._sketch_only

    def counting(self, now_ms, slots, mu_of):
        calls.append(now_ms)
        return sketch_only(self, now_ms, slots, mu_of)

    monkeypatch.setattr(Engine, "_sketch_only", counting)
    kinds = _kinds(monkeypatch)
    fast, fast_msgs = run_engine(pinned_events, cuts)
    n_fast = len(calls)
    assert CATALOGUE in kinds  # a step that left the catalogue's reference to Python
    calls.clear()
    monkeypatch.setattr(Engine, "_fast_sketch", False)
    slow, slow_msgs = run_engine(pinned_events, cuts)
    assert fast_msgs == slow_msgs and fast.stats == slow.stats
    assert _same_state(fast, slow)
    for e in (fast, slow):
        assert e.audiences._row == {s: r for r, s in enumerate(e.audiences.slot.tolist()) if s >= 0}
    assert len(calls) > 20 and n_fast < len(calls) / 2


@pytest.mark.parametrize("cuts", [[], [57, 200, 201], list(range(0, 900, 37))])
def test_compiled_ticks_of_a_sparse_stream_with_a_gap_match_the_python_ticks(monkeypatch, cuts):
    events = batch_of(_gappy_rows())
    kinds = _kinds(monkeypatch)
    fast, fast_msgs = run_engine(events, cuts)
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    slow, slow_msgs = run_engine(events, cuts)
    assert fast_msgs == slow_msgs and fast.stats == slow.stats and fast.stats.ticks > 5 * len(events)
    assert _same_state(fast, slow)
    assert kinds and 2 in kinds


def test_the_compiled_tick_loop_agrees_with_its_plain_python_run(monkeypatch):
    """``_run_ticks`` against its own source run by the interpreter (``py_func``)."""
    from viraltrend.kernels import segment

    events = batch_of(_gappy_rows()[:350])
    compiled, compiled_msgs = run_engine(events, [57, 200])
    monkeypatch.setattr(segment, "_run_ticks", segment._run_ticks.py_func)
    plain, plain_msgs = run_engine(events, [57, 200])
    assert compiled_msgs == plain_msgs and _same_state(compiled, plain)


def test_the_co_audience_population_does_not_depend_on_batching(pinned_events, monkeypatch):
    """The co-audience test's population is the users of the events before the tick, however batched.

    Users are interned ahead of the tick (up to the next user sweep, within a batch), so the user
    table's current size depends on where batches end; it once made a block come 40 s earlier or
    later with the batch size (agents generator, seed 103).
    """
    seen: list[float] = []
    best_match = AudienceMemory.best_match

    def recording(self, *args, **kwargs):
        seen.append(kwargs["population"])
        return best_match(self, *args, **kwargs)

    monkeypatch.setattr(AudienceMemory, "best_match", recording)
    run_engine(pinned_events, [])
    whole = seen.copy()
    seen.clear()
    run_engine(pinned_events, list(range(997, len(pinned_events), 997)))
    assert whole and seen == whole


def _days_of_sparse_rows():
    """Nine days of a sparse catalogue: products seen once, hourly, or in bursts, some revived later."""
    t0, rows = 1_000_000_000_000, []
    for i in range(1500):
        t = t0 + i * 517_000  # one event every ~8.6 minutes
        p = f"p{i % 40}" if i % 3 else f"q{i}"  # 40 regulars, and one-off products
        rows.append((t, "view" if i % 5 else "add_to_cart", p, "s", None, f"u{(i * 7) % 90}"))
    return rows


@pytest.mark.parametrize("cuts", [[], [333, 334, 1_000]])
def test_the_eviction_sweep_that_skips_products_above_the_limit_evicts_the_same(monkeypatch, cuts):
    import viraltrend.engine as engine_module

    looked: list[int] = []
    below = engine_module.below

    def counted(acc, slots, **kwargs):
        looked.append(int(slots.size))
        return below(acc, slots, **kwargs)

    monkeypatch.setattr(engine_module, "below", counted)
    events = batch_of(_days_of_sparse_rows())
    fast, fast_msgs = run_engine(events, cuts)
    n_fast = sum(looked)
    looked.clear()
    monkeypatch.setattr(Engine, "_evict_skip", False)
    slow, slow_msgs = run_engine(events, cuts)
    assert fast_msgs == slow_msgs and fast.stats == slow.stats and _same_state(fast, slow)
    assert fast.stats.evicted > 200  # one-off products forgotten along the days
    assert n_fast * 3 < sum(looked)  # most sweeps looked at few products
    assert fast._evict_after_s.dtype == np.int32  # whole seconds: 4 bytes per product


def _python_sweeps(monkeypatch) -> dict[str, int]:
    """Count the eviction sweeps and landmark moves Python runs (``_maybe_evict``, ``_move_landmark``)."""
    from viraltrend.kernels.decay import DecayedCounters

    n = {"evict": 0, "move": 0}
    evict, move = Engine._maybe_evict, DecayedCounters._move_landmark

    def evicting(self, now_ms):
        n["evict"] += self._next_evict_ms is None or now_ms >= self._next_evict_ms
        return evict(self, now_ms)

    def moving(self, new_landmark_ms, live=None):
        n["move"] += 1
        return move(self, new_landmark_ms, live)

    monkeypatch.setattr(Engine, "_maybe_evict", evicting)
    monkeypatch.setattr(DecayedCounters, "_move_landmark", moving)
    return n


@pytest.mark.parametrize("cuts", [[], [333, 334, 1_000], list(range(0, 1_500, 97))])
def test_landmark_moves_and_eviction_sweeps_run_inside_the_compiled_tick_loop(monkeypatch, cuts):
    """Nine sparse days: the compiled loop moves the landmarks and sweeps cold products itself, bit for
    bit as the Python ticks do (messages, stats, checkpoint), instead of stopping for Python at each."""
    events = batch_of(_days_of_sparse_rows())
    n = _python_sweeps(monkeypatch)
    fast, fast_msgs = run_engine(events, cuts)
    in_python = dict(n)
    n.update(evict=0, move=0)
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    slow, slow_msgs = run_engine(events, cuts)
    assert fast_msgs == slow_msgs and fast.stats == slow.stats and _same_state(fast, slow)
    assert slow.stats.evicted > 200 and n["evict"] > 150 and n["move"] > 300  # nine days of both
    # Python runs only those due where the loop stopped for Python anyway (the first sweep, a tick
    # that scores or ages audiences, a batch's last ticks)
    assert in_python["evict"] * 4 < n["evict"] and in_python["move"] * 4 < n["move"]


def _dead_trust_cells(engine: Engine) -> np.ndarray:
    """The trust counters' cells (as bytes) in the rows the counters hold no event in."""
    t, last = engine.trust_counters, engine.counters.last_ts_ms
    return t.acc.reshape(t.capacity, -1)[last[: t.capacity] == np.iinfo(np.int64).min].view(np.uint8)


@pytest.mark.parametrize("cuts", [[], [333, 334, 1_000]])
def test_the_trust_counters_move_only_the_rows_the_counters_hold(monkeypatch, cuts):
    """The trust counters keep no times: their moves take the counters' live rows as their mask, which
    is exact because every row the counters hold no event in is +0.0 in the trust counters too (fed by
    the same events, cleared together) -- checked here after nine days of evictions and moves."""
    from viraltrend.kernels.decay import DecayedCounters

    masks: list[bool] = []
    move = DecayedCounters._move_landmark

    def moving(self, new_landmark_ms, live=None):
        masks.append(live is not None)
        return move(self, new_landmark_ms, live)

    monkeypatch.setattr(DecayedCounters, "_move_landmark", moving)
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)  # Python moves, counted above
    events = batch_of(_days_of_sparse_rows())
    engine, msgs = run_engine(events, cuts)
    assert engine.stats.evicted > 200 and not _dead_trust_cells(engine).any()
    assert engine._trust_live() is engine.counters.last_ts_ms
    assert sum(masks) > 50  # the trust counters' moves, with the mask (the counters' own: their times)
    # a restored engine checks the rule once before it relies on it; a checkpoint that breaks it
    # (a -0.0 cell in a row the counters never wrote) moves every row, as before
    half = len(events) // 2
    first = Engine(load_config(None, environ={}))
    first.process(events.take(np.arange(half)))
    arrays, meta = first.state()
    good = Engine.restore(load_config(None, environ={}), arrays, meta)
    assert good._trust_live() is good.counters.last_ts_ms
    dead = int(np.flatnonzero(arrays["counters.last_ts_ms"] == np.iinfo(np.int64).min)[0])
    arrays = dict(arrays)
    arrays["trust.acc"] = arrays["trust.acc"].copy()
    arrays["trust.acc"][dead, 0, 0] = -0.0
    bad = Engine.restore(load_config(None, environ={}), arrays, meta)
    assert bad._trust_live() is None


def test_the_tick_loop_sweeps_agree_with_their_plain_python_run(monkeypatch):
    """``_run_ticks`` with its landmark moves and eviction sweeps, compiled and run by the interpreter."""
    from viraltrend.kernels import segment

    config = load_config(None, environ={}, overrides={"state": {"evict_below": 0.5}})  # evictions soon
    events = batch_of(_days_of_sparse_rows()[:400])
    compiled, compiled_msgs = run_engine(events, [57, 200], config)
    for name in ("_run_ticks", "_rebase", "_next_rebase", "_moves", "_evict_sweep"):
        monkeypatch.setattr(segment, name, getattr(segment, name).py_func)
    plain, plain_msgs = run_engine(events, [57, 200], config)
    assert compiled_msgs == plain_msgs and _same_state(compiled, plain)
    assert compiled.stats == plain.stats and plain.stats.evicted > 20


@pytest.mark.parametrize("cuts", [[], [1, 2, 3, 9_999, 10_000, 25_000]])
@pytest.mark.parametrize("fast_ticks", [False, True], ids=["python-ticks", "compiled-ticks"])
def test_a_segment_applied_in_one_compiled_call_matches_the_steps(
    pinned_events, monkeypatch, cuts, fast_ticks
):
    """``_apply``'s fused call (segment.apply_segment_all) against its steps taken one by one."""
    import viraltrend.engine as engine_module

    calls: list[int] = []
    fused = engine_module.apply_segment_all

    def counted(*args):
        out = fused(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(engine_module, "apply_segment_all", counted)
    if not fast_ticks:
        monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    one, one_msgs = run_engine(pinned_events, cuts)
    monkeypatch.setattr(Engine, "_fused_apply", False)
    steps, steps_msgs = run_engine(pinned_events, cuts)
    assert one_msgs == steps_msgs and one.stats == steps.stats and _same_state(one, steps)
    assert sum(calls) > 100  # the fused call took the segments


def test_the_fused_segment_agrees_with_its_plain_python_run(monkeypatch):
    """``_segment_all`` against its own source run by the interpreter (``py_func``)."""
    from viraltrend.kernels import segment

    events = batch_of(_gappy_rows()[:350])
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    compiled, compiled_msgs = run_engine(events, [57, 200])
    monkeypatch.setattr(segment, "_segment_all", segment._segment_all.py_func)
    plain, plain_msgs = run_engine(events, [57, 200])
    assert compiled_msgs == plain_msgs and _same_state(compiled, plain)


def _days_with_a_busy_hour():
    """Nine sparse days (users leave and come back) and a busy hour that grows the caps table."""
    rows = _days_of_sparse_rows()
    t = rows[500][0] + 1_000
    busy = [(t + i * 360, "view" if i % 4 else "like", f"b{i % 100}", "s", None, f"v{(i * 13) % 1_999}")
            for i in range(10_000)]  # fmt: skip
    return sorted(rows + busy, key=lambda r: r[0])


def _python_user_sweeps(monkeypatch) -> dict[str, int]:
    """Count the user sweeps Python runs (``Engine._sweep_users`` when due) and the caps tables rebuilt."""
    from viraltrend.kernels.users import UserSignals

    n = {"sweep": 0, "rebuilt": 0}
    sweep, compact = Engine._sweep_users, UserSignals.compact

    def sweeping(self, now_ms):
        n["sweep"] += self._next_user_sweep_ms is None or now_ms >= self._next_user_sweep_ms
        return sweep(self, now_ms)

    def compacting(self):
        out = compact(self)
        n["rebuilt"] += out
        return out

    monkeypatch.setattr(Engine, "_sweep_users", sweeping)
    monkeypatch.setattr(UserSignals, "compact", compacting)
    return n


@pytest.mark.parametrize("cuts", [[], [333, 334, 2_000, 8_100], list(range(0, 11_500, 97)), [5, 2_777]])
def test_user_sweeps_run_inside_the_compiled_tick_loop(monkeypatch, cuts):
    """Nine days of users released and coming back, a busy hour whose caps table shrinks later: the
    compiled loop runs the planned user sweeps itself, bit for bit as the Python ticks do (messages,
    stats, checkpoint: first-seen times, caps table, user table, population), in any batching."""
    events = batch_of(_days_with_a_busy_hour())
    n = _python_user_sweeps(monkeypatch)
    fast, fast_msgs = run_engine(events, cuts)
    in_python = dict(n)
    n.update(sweep=0, rebuilt=0)
    monkeypatch.setattr(Engine, "_fast_ticks_on", lambda self: False)
    slow, slow_msgs = run_engine(events, cuts)
    assert fast_msgs == slow_msgs and fast.stats == slow.stats and _same_state(fast, slow)
    assert fast._population == slow._population and fast._sweeps is None
    released = slow.users.to_arrays()["veterans"].size + slow.users.to_arrays()["veterans_old"].size
    assert n["sweep"] > 1_000 and n["rebuilt"] >= 1 and released > 500  # sweeps that release and compact
    # Python runs only those due where the loop stopped for Python anyway (a tick that scores or
    # ages audiences, a batch's first sweep when the loop had not started)
    assert in_python["sweep"] * 4 < n["sweep"]


@settings(max_examples=6, deadline=None)
@given(cuts=st.lists(st.integers(1, 11_499), max_size=5))
def test_the_loops_compaction_skips_decide_as_counting_at_every_sweep(cuts):
    """perf25b: the compiled loop's compaction, which skips its count while the last count's live
    entries plus those inserted since still need the table, against Python ticks whose compaction
    counts at every sweep (no memory of a count): the same messages, stats and checkpoint."""
    from viraltrend.kernels.users import UserSignals

    events = batch_of(_days_with_a_busy_hour())
    fast, fast_msgs = run_engine(events, cuts)
    compact, fast_ticks = UserSignals.compact, Engine._fast_ticks_on

    def counting(self):
        self._live_at_scan = None
        return compact(self)

    try:
        UserSignals.compact = counting  # type: ignore[method-assign]
        Engine._fast_ticks_on = lambda self: False  # type: ignore[method-assign]
        slow, slow_msgs = run_engine(events, cuts)
    finally:
        UserSignals.compact, Engine._fast_ticks_on = compact, fast_ticks  # type: ignore[method-assign]
    assert fast_msgs == slow_msgs and fast.stats == slow.stats and _same_state(fast, slow)


@pytest.mark.parametrize("cuts", [[], [333, 334, 2_000, 8_100]])
def test_planned_user_sweeps_give_the_slots_of_sweeping_at_each_tick(monkeypatch, cuts):
    """The plan (users interned for the whole batch, each sweep's table steps taken ahead) against
    interning up to each sweep: the same slots, so the same state and messages, compiled or not."""
    events = batch_of(_days_with_a_busy_hour())
    fast, fast_msgs = run_engine(events, cuts)
    monkeypatch.setattr(Engine, "_plan_ahead", False)
    unplanned, unplanned_msgs = run_engine(events, cuts)
    assert fast_msgs == unplanned_msgs and fast.stats == unplanned.stats and _same_state(fast, unplanned)


def test_the_tick_loop_user_sweeps_agree_with_their_plain_python_run(monkeypatch):
    """``_run_ticks`` with its planned user sweeps (and ``_compact_step``), compiled and interpreted."""
    from viraltrend.kernels import segment

    events = batch_of(_days_with_a_busy_hour()[:1_500])
    compiled, compiled_msgs = run_engine(events, [57, 700])
    monkeypatch.setattr(segment, "_run_ticks", segment._run_ticks.py_func)
    monkeypatch.setattr(segment, "_compact_step", segment._compact_step.py_func)
    plain, plain_msgs = run_engine(events, [57, 700])
    assert compiled_msgs == plain_msgs and _same_state(compiled, plain) and compiled.stats == plain.stats


def test_the_segment_scratch_carries_nothing_from_one_segment_to_the_next(monkeypatch):
    """perf27: ``_segment_all``'s columns live in scratch allocated once per tick-loop call.  Filled with
    garbage before the loop (its source run by the interpreter, so that it calls the garbage maker),
    the run equals the compiled one: every column is written before it is read."""
    from viraltrend.kernels import segment

    events = batch_of(_gappy_rows()[:350])
    compiled, compiled_msgs = run_engine(events, [57, 200])
    made: list[int] = []
    make = segment.segment_scratch

    def garbage(n):
        s = make(n)
        for name, a in zip(s._fields, s, strict=True):
            if name != "ones":  # the trust counters' weights: ones by contract
                a[...] = 1 if a.dtype == np.bool_ else 77
        made.append(n)
        return s

    monkeypatch.setattr(segment, "_run_ticks", segment._run_ticks.py_func)
    monkeypatch.setattr(segment, "segment_scratch", garbage)
    dirty, dirty_msgs = run_engine(events, [57, 200])
    assert made and max(made) > 1
    assert compiled_msgs == dirty_msgs and _same_state(compiled, dirty)
