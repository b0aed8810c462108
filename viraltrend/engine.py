"""The engine: one batch of decoded events in, decision messages out.  Same code in replay and live.

Per batch (DESIGN.md, "The way data flows"):

1. drop repeated ``event_id`` values (:mod:`viraltrend.dedup`);
2. run the event-time clock (:mod:`viraltrend.kernels.clock`): late and far-future events
   become rejects; the ticks the watermark crosses split the batch into segments;
3. per segment: intern ids to slots and add the events to the decayed counters (numba);
4. at each tick: read features of the candidates (products that got events since the last
   tick, plus the board's members and pending products), score them, let the trust guard's
   audience steps judge them (:class:`~viraltrend.audience_guard.AudienceGuard`: audience
   samples and memory, refusals and holds), run the board policy (the guard checks each
   candidate), emit decision messages, a board snapshot when due, and evict cold products when due.

Decisions depend only on the sequence of events, never on how it was cut into batches:
ticks are multiples of ``decay.tick_s`` of event time, and evaluation at tick ``T`` sees
exactly the events that arrived before the watermark passed ``T``.
"""

from __future__ import annotations

import bisect
import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import msgspec
import numpy as np
from numpy.typing import NDArray

from viraltrend.audience_guard import SKETCH_EVIDENCE, AudienceGuard
from viraltrend.board import Board, Candidates
from viraltrend.config import Config
from viraltrend.dedup import Deduplicator, duplicate_rejects
from viraltrend.detect import _CYCLE_CLIP, Columns, SequentialDetector, engaged_ratio
from viraltrend.errors import CheckpointError
from viraltrend.events import EVENT_TYPE_CODE, EVENT_TYPES, EventBatch, Reject
from viraltrend.kernels._checks import adopting
from viraltrend.kernels.audience import ActivityCounts, AudienceSketches
from viraltrend.kernels.clock import EventClock
from viraltrend.kernels.columns import (
    baseline_rates,
    below,
    coldest,
    in_sorted,
    trust_rows,
    unique_counts,
)
from viraltrend.kernels.decay import F32_RENORM_EXPONENT, DecayedCounters, global_figures
from viraltrend.kernels.hashtable import UserTable
from viraltrend.kernels.names import CountedNames, NameTable
from viraltrend.kernels.prefilter import EVICT_SLACK, Screen, TickBaseline, evict_horizon, evict_looked
from viraltrend.kernels.segment import (
    BEFORE,
    CATALOGUE,
    DONE,
    SEGMENT,
    TAIL,
    EvictSweep,
    SweepPlan,
    apply_segment_all,
    run_ticks,
)
from viraltrend.kernels.users import UserSignals
from viraltrend.messages import Message
from viraltrend.model import MAX_CLASS_WEIGHT, LabelBuffer, OnlineModel, load_model
from viraltrend.products import ProductTable
from viraltrend.scoring import FeatureReader, RuleScorer, half_life_label, share_ratio
from viraltrend.stateful import Stateful, under
from viraltrend.trust import AudienceMemory, FunnelShare, GuardBook, TrustGuard

__all__ = ["Engine", "EngineStats", "Scorer", "model_features"]

_STATUS_REASON = {1: "late", 2: "future_ts"}
_NEVER = np.iinfo(np.int64).min  # last_ts_ms of a slot that holds no events
_I32_MIN, _I32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)
_VETERAN_MS = -(2**53)  # first_seen_ms of a released user who came back: long ago, never fresh
_USER_SWEEPS = 8  # idle users are released this many times per idle window (at ticks)
#: At most this many ticks go the Python way before the compiled loop is tried again (Engine.process)
_FAST_BACKOFF = 8


def model_features(cfg: Config) -> tuple[str, ...]:
    """The online model's input columns under ``cfg``'s half-lives and ``model.features``.

    ``rates``: lift and Poisson significance of the trend window (``lift``, ``z``) and of the
    momentum window (``lift_1m``, ``z_1m`` by default: they move first at an onset),
    ``velocity``, the product's own baseline rate, and the organic-audience signals
    ``unique_users`` and ``conversion_ratio`` (the default).  ``shape`` adds the sequential
    detector's growth-shape columns: change ``evidence``, seconds since the change point
    (``change_s``), growth over the fine and the slow ring (``growth_z``, ``growth_z_slow``),
    ``fade_z`` and ``recent_lift``: the model decides where the detector waits for the shape.
    """
    mom = half_life_label(cfg.score.momentum_half_life_s)
    rates = (
        "lift",
        "z",
        f"lift_{mom}",
        f"z_{mom}",
        "velocity",
        "baseline_per_h",
        "unique_users",
        "conversion_ratio",
    )
    if cfg.model.features == "rates":
        return rates
    return (*rates, "evidence", "change_s", "growth_z", "growth_z_slow", "fade_z", "recent_lift")


class Scorer(Protocol):
    """Anything with ``score_many(features) -> float64[m]`` in [0, 1] and a ``name``."""

    @property
    def name(self) -> str:
        """Which scorer decided (``rule``, ``model``, ...), for decision reasons."""
        ...

    def score_many(self, features: dict[str, NDArray[np.float64]]) -> NDArray[np.float64]:
        """Score candidates."""
        ...


@dataclass(slots=True)
class EngineStats:
    """Running totals, for the replay summary and the metrics."""

    events_in: int = 0
    events_applied: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    ticks: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    evicted: int = 0
    evicted_over_cap: int = 0  # of ``evicted``: those evicted because over state.max_products

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The totals as a part of a checkpoint (:mod:`viraltrend.stateful`)."""
        return {}, {"stats": {f.name: _plain(getattr(self, f.name)) for f in fields(self)}}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> EngineStats:
        """Totals from :meth:`to_state` output (older checkpoints counted none evicted over the cap)."""
        st = meta["stats"]
        kept = {f.name: st[f.name] for f in fields(self) if f.name in st or f.name != "evicted_over_cap"}
        counts = {"rejected": Counter(st["rejected"]), "decisions": Counter(st["decisions"])}
        return EngineStats(**kept | counts)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Counter) else value


class Engine:
    """Holds all per-product state and turns event batches into decisions.

    Parameters
    ----------
    cfg
        The full configuration.
    scorer
        Replaces the rule-based score (the online model plugs in here).
    trace_products
        Product ids whose features and score are recorded at every tick (``trace_rows``).
    """

    _evict_skip = True  # False: every eviction sweep looks at every live product (the tests compare)
    _fused_apply = True  # False: _apply takes the segment's steps one by one (the tests compare)
    _plan_ahead = True  # False: users interned up to the next sweep only, sweeps in Python (tests compare)
    _fast_sketch = True  # False: the compiled tick loop stops for every tick that sketches (tests compare)

    def __init__(
        self, cfg: Config, *, scorer: Scorer | None = None, trace_products: tuple[str, ...] = ()
    ) -> None:
        self.cfg = cfg
        d = cfg.decay
        # product ids -> slots, with each product's seller and category
        self.catalog = ProductTable(cfg.state.initial_capacity, limit=cfg.state.max_products)
        self.counters = DecayedCounters(
            half_lives_s=d.half_lives_s,
            n_types=len(EVENT_TYPES),
            capacity=cfg.state.initial_capacity,
            **_ACC_LAYOUT,
        )
        self.clock = EventClock(
            tick_ms=round(d.tick_s * 1000),
            allowed_lateness_ms=round(d.allowed_lateness_s * 1000),
            max_future_ms=round(d.max_future_s * 1000),
        )
        self.dedup = Deduplicator(window_ms=round(cfg.dedup.window_s * 1000)) if cfg.dedup.enabled else None
        self.reader = FeatureReader.from_config(cfg)
        self.model: OnlineModel | None = None
        self.labels: LabelBuffer | None = None
        if scorer is None and cfg.model.enabled:
            m = cfg.model
            self.model = OnlineModel(
                features=model_features(cfg),
                fallback=RuleScorer(cfg.score),
                min_labels=m.min_labels,
                learning_rate=m.learning_rate,
                l2=m.l2,
                positive_weight=m.positive_weight if m.positive_weight > 0 else None,
                max_class_weight=m.max_class_weight if m.max_class_weight > 0 else MAX_CLASS_WEIGHT,
                promote_probability=m.promote_probability,
                promote_score=cfg.board.promote_threshold,
            )
            if m.checkpoint:  # start warm from `viraltrend train --out` (CheckpointError names the fix)
                self.model = load_model(
                    m.checkpoint,
                    features=model_features(cfg),
                    fallback=RuleScorer(cfg.score),
                    promote_probability=m.promote_probability,
                    promote_score=cfg.board.promote_threshold,
                )
            self.labels = LabelBuffer(
                horizon_ms=round(m.horizon_s * 1000),
                capacity=m.buffer_capacity,
                negative_rate=m.negative_rate,
            )
        self.scorer: Scorer = scorer if scorer is not None else (self.model or RuleScorer(cfg.score))
        t = cfg.trust
        self.users = UserTable(
            idle_ms=_user_idle_ms(cfg),
            allowed_lateness_ms=round(d.allowed_lateness_s * 1000),
            max_veterans=cfg.state.max_veterans,
            track_held=False,  # every released slot is recycled at once (_sweep_users): none is held
        )
        self._next_user_sweep_ms: int | None = None
        # the user sweeps of this batch's ticks, their table steps taken ahead (_plan_sweeps), and
        # how many ran; None outside a batch or without a plan
        self._sweeps: SweepPlan | None = None
        self._sweep_pos = 0
        # users holding a slot at the last sweep: the co-audience test's population.  Between sweeps the
        # table also holds users interned ahead of the tick (up to the next sweep, within the batch),
        # so its current size would depend on where batches end
        self._population = 0
        self.user_signals = UserSignals(
            cap_window_ms=round(t.cap_window_s * 1000),
            fresh_window_ms=round(t.fresh_window_s * 1000),
            allowed_lateness_ms=round(d.allowed_lateness_s * 1000),
        )
        # distinct-user, fresh-account and raw event counts at the trend and baseline half-lives
        self.trust_counters = DecayedCounters(  # no first/last times: the counters' own are the product's
            half_lives_s=_trust_half_lives(cfg),
            n_types=3,
            capacity=cfg.state.initial_capacity,
            times=False,
            **_ACC_LAYOUT,
        )
        # (counters, trust counters, whether the counters' live rows cover the trust counters' nonzero
        # ones): _trust_live; both new here, all zeros
        self._trust_follows: tuple[DecayedCounters, DecayedCounters, bool] | None = (
            self.counters,
            self.trust_counters,
            self.counters.times,
        )
        self.detector = SequentialDetector(cfg, cfg.state.initial_capacity)
        self._new_users: list[NDArray[np.int64]] = []  # one slot per new (user, product) pair this tick
        # the trust guard: audience samples and memory, the funnel share, the checks and their bookkeeping
        self.audience_guard = AudienceGuard(
            cfg, self.catalog, members=lambda: self.board.members, population=lambda: self._population
        )
        self.board = Board(
            cfg.board,
            trend_label=half_life_label(cfg.score.trend_half_life_s),
            guard=self.audience_guard.check,
            model_confirm_s=cfg.model.confirm_s if self.model is not None else None,
            fast_track_probability=cfg.model.fast_track_probability,
            sequential=cfg.detect.method == "sequential",
        )
        self.stats = EngineStats()
        self.trace_products = tuple(trace_products)
        self.trace_rows: list[dict[str, Any]] = []
        self._touched: list[NDArray[np.int64]] = []
        self._last_snapshot_ms: int | None = None
        self._next_evict_ms: int | None = None
        self._start_ms: int | None = None  # ts of the first accepted event: the stream's start
        self._n_live = 0  # products with state (at least one event since created or evicted)
        # per product slot: the eviction sweep need not look at it before this time (evict_horizon), in
        # whole seconds after _evict_base_ms, rounded down (int32: 4 bytes; a look earlier than the
        # promise only costs the look); not checkpointed (empty: look at every product), reset where a
        # slot is cleared
        self._evict_after_s = np.empty(0, np.int32)
        self._evict_base_ms: int | None = None
        self._evict_figures: tuple[int, float, NDArray[np.float64], float, int, int] | None = None
        self._evicted: list[NDArray[np.int64]] = []
        self._screen_off = False  # True: no screening of quiet products at ticks (see `screen`)
        self._screen: Screen | None = None  # the screen's fixed arguments (built at its first use)
        self._quiet_until_ms: int | None = None  # idle ticks before it do nothing (see _quiet_until)
        self._quiet_pending = False  # True: _quiet_until_ms is to be read at the next idle tick
        self._fast_ticks = True  # False: every tick the step-by-step way (the tests compare both)
        self._fast_backoff = 0  # ticks taken the usual way after a compiled call that ran none (process)

    # ------------------------------------------------------------------ batches
    def process(self, batch: EventBatch) -> tuple[list[Message], list[Reject]]:
        """Apply one batch; return the decision messages and the refused events (duplicate, late, future)."""
        self.stats.events_in += len(batch)
        self._duplicates: list[Reject] = []
        if self.dedup is not None and len(batch):
            ids = batch.ids
            keep = self.dedup.filter_hashed(ids.event_h1, ids.event_h2, batch.ts_ms, future_rule=self.clock)
            if not keep.all():
                self.stats.duplicates += int((~keep).sum())
                self.stats.rejected["duplicate"] += int((~keep).sum())
                self._duplicates = duplicate_rejects(batch, ~keep, self.dedup.window_ms)  # -> _time_rejects
                batch = batch.take(keep)
        if not len(batch):
            return [], self._duplicates
        step = self.clock.advance(batch.ts_ms)
        rejects = self._time_rejects(batch, step.status, step.future_limit_ms)
        accepted = np.flatnonzero(step.status == 0)
        if self._start_ms is None and accepted.size:
            self._start_ms = int(batch.ts_ms[accepted[0]])
        slots = self._intern(batch, accepted)
        whole = accepted.size == len(batch)
        user_hash = batch.ids.user_hash if whole else batch.ids.user_hash[accepted]
        users = np.empty(accepted.size, np.int64)
        interned = 0  # users[:interned] hold slots; slots are handed out up to the next user sweep only
        messages: list[Message] = []
        start = 0
        # ticks fire "before event i": cut the accepted events at those positions
        cut_array = np.searchsorted(accepted, step.tick_before)
        cuts, ticks = cut_array.tolist(), step.tick_ms_values.tolist()
        fast = None
        ts_acc = batch.ts_ms[accepted]
        if ticks and self._fast_ticks_on():
            user_hash = np.ascontiguousarray(user_hash)
            fast = (
                slots,
                users,
                cut_array,
                batch,
                accepted,
                batch.type_code[accepted],
                ts_acc,
                user_hash,
            )
            if self._plan_ahead:  # every user now, each user sweep's table steps planned at its tick
                self._plan_sweeps(user_hash, ts_acc, cut_array, step.tick_ms_values, users)
                interned = accepted.size
        k = skip_until = 0
        backoff = self._fast_backoff
        while k < len(ticks):
            cut, tick_ms = cuts[k], ticks[k]
            # the users of the events up to the next user sweep's tick (those of tick k's segment at
            # least); right after a sweep at tick k, those up to the following one, so the compiled
            # loop runs on past tick k in the same call
            if interned < cut or (interned == cut < accepted.size and fast is not None):
                sweep = self._next_user_sweep_ms
                j = k if sweep is None else bisect.bisect_left(ticks, sweep, lo=k)
                end = cuts[j] if j < len(ticks) else accepted.size
                if end > interned:
                    users[interned:end] = self._intern_users(user_hash[interned:end], ts_acc[interned:end])
                    interned = end
            if fast is not None and k >= skip_until and not self.board.watched_slots():  # one compiled call
                k_end = bisect.bisect_right(cuts, interned, lo=k)
                done = self._run_ticks(fast, step.tick_ms_values, k, k_end, start, messages)
                if done is not None:
                    # a call that ran no tick of its own costs more than the tick it handed back: after
                    # one, the next few ticks go the usual way (either way gives the same decisions)
                    k, start, ran = done
                    backoff = 0 if ran else min(2 * backoff + 1, _FAST_BACKOFF)
                    skip_until = k + backoff
                    continue
            self._apply(batch, accepted[start:cut], slots[start:cut], users[start:cut], user_hash[start:cut])
            start = cut
            messages.extend(self._on_tick(int(tick_ms)))
            k += 1
        if interned < accepted.size:
            users[interned:] = self._intern_users(user_hash[interned:], ts_acc[interned:])
        self._apply(batch, accepted[start:], slots[start:], users[start:], user_hash[start:])
        if self._sweeps is not None:  # every planned sweep ran at its tick
            if self._sweep_pos != len(self._sweeps.populations):
                msg = "a planned user sweep did not run"
                raise AssertionError(msg)
            self._sweeps = None
        self._release_evicted()
        if fast is not None:
            self._fast_backoff = backoff
        return messages, rejects

    def _fast_ticks_on(self) -> bool:
        """Whether ticks may run in one compiled call per batch (:meth:`_run_ticks`)."""
        return self._fast_ticks and self.screen and not self.trace_products

    def _run_ticks(
        self,
        fast: tuple[
            NDArray[np.int64],
            NDArray[np.int64],
            NDArray[np.intp],
            EventBatch,
            NDArray[np.intp],
            NDArray[np.int8],
            NDArray[np.int64],
            NDArray[np.uint64],
        ],  # fmt: skip
        ticks: NDArray[np.int64],
        k: int,
        k_end: int,
        start: int,
        messages: list[Message],
    ) -> tuple[int, int, bool] | None:
        """Ticks ``k .. k_end - 1`` as ``_apply`` and ``_on_tick`` run them, in one compiled call.

        While the board watches nothing (:func:`~viraltrend.kernels.segment.run_ticks`): an idle
        tick or a tick whose touched products are all screened out costs no Python.  At the first
        tick that needs Python the call stops and this method takes that tick the usual way (all of
        it, or its rest after the screen); at a user sweep not planned (:meth:`_plan_sweeps`) it
        takes only the start of ``_tick`` and hands the tick back to the compiled loop.  Returns the
        next tick, the accepted events applied and whether the call ran a tick of its own, or None
        (nothing done: take tick ``k`` the usual way).
        """
        slots, users, cuts, batch, accepted, types, ts, user_hash = fast
        b = self.board
        parts, news = self._touched, self._new_users
        touched = _EMPTY if not parts else parts[0] if len(parts) == 1 else np.concatenate(parts)
        new_users = _EMPTY if not news else news[0] if len(news) == 1 else np.concatenate(news)
        ag = self.audience_guard
        aud = ag.step() if self._fast_sketch else None
        mem_slots = ag.audiences.slot.copy() if aud is not None else None
        run = run_ticks(
            signals=self.user_signals, counters=self.counters, trust=self.trust_counters,
            sketches=ag.sketches, activity=ag.activity, user_hash=user_hash,
            cusum=self.detector.cusum, screen=self._screen_of(), base=_tick_base(self.cfg),
            slots=slots, users=users, types=types, ts_ms=ts, cuts=cuts, ticks=ticks, k0=k, k_end=k_end,
            seg0=start, touched=touched, new_users=new_users,
            start_ms=self._start_ms, next_sweep_ms=self._next_user_sweep_ms,
            label_due_ms=self.labels.next_due_ms() if self.labels is not None else None,
            last_snapshot_ms=self._last_snapshot_ms,
            snapshot_interval_ms=self.cfg.board.snapshot_interval_s * 1000,
            next_evict_ms=self._next_evict_ms, max_products=self.cfg.state.max_products, n_live=self._n_live,
            quiet_from_ms=ag.quiet_from_ms(), evict=self._evict_sweep(),
            trust_live=self._trust_live(), sweeps=self._sweeps, sweep_pos=self._sweep_pos,
            audiences=aud,
        )  # fmt: skip
        if run is None:
            return None
        if run.sketched is not None:  # the audience steps it took (_sketch_only, AudienceGuard.quiet)
            ag.book.sketched, ag.book.sketched_ms, ag.book.sketched_ev = run.sketched
            if run.sketched_at_ms is not None:
                ag.now_ms = run.sketched_at_ms
            if run.memory_taken and mem_slots is not None:  # rows given to new products: re-indexed
                ag.index_memory_rows(mem_slots)
        if self._sweeps is not None and run.sweep_pos > self._sweep_pos:  # the planned sweeps it ran
            self._sweep_pos = run.sweep_pos
            self._next_user_sweep_ms = run.next_sweep_ms
            self._population = self._sweeps.populations[run.sweep_pos - 1]
        self._n_live = run.n_live
        self._next_evict_ms = run.next_evict_ms  # the eviction sweeps it ran, as _maybe_evict's
        if run.evicted.size:
            self._evicted.append(run.evicted)
            self.stats.evicted += int(run.evicted.size)
        ag.funnel_share.add_rows(run.funnel)  # as _apply counts each segment's
        self.stats.events_applied += run.applied
        self.stats.ticks += run.k - k
        messages.extend(b.snapshots(run.snapshots))  # the board did not change at those ticks
        self._last_snapshot_ms = run.last_snapshot_ms
        self._touched = [run.touched] if run.touched.size else []
        self._new_users = [run.new_users] if run.new_users.size else []
        if run.k > k:  # as _on_tick leaves them after a tick of an idle board
            self._quiet_until_ms, self._quiet_pending = None, True
        ran = run.k > k
        if run.kind == DONE:
            return run.k, run.seg, ran
        tick_ms = int(ticks[run.k])
        if run.kind == SEGMENT:  # the fused step refused it: the steps one by one
            cut = int(cuts[run.k])
            seg = slice(run.seg, cut)
            self._apply(batch, accepted[seg], slots[seg], users[seg], user_hash[seg])
            messages.extend(self._on_tick(tick_ms))
            return run.k + 1, cut, ran
        if run.kind == BEFORE:
            label = self.labels.next_due_ms() if self.labels is not None else None
            if self._tick_start(tick_ms) and (label is None or tick_ms < label):
                return run.k, run.seg, True  # swept or rebased: the rest of the tick in the compiled loop
            messages.extend(self._on_tick(tick_ms))
            return run.k + 1, run.seg, ran
        if run.kind in (TAIL, CATALOGUE):  # its audience step ran in the loop: the rest of the tick
            self.stats.ticks += 1
            if run.kind == CATALOGUE:  # AudienceGuard.track's last step with nothing ready
                ag.catalogue_overdispersion(tick_ms, _EMPTY)
            messages.extend(self._tick_end(tick_ms, []))
            self._quiet_until_ms = None
            self._quiet_pending = not (b.members or b.pending or b.held)
            return run.k + 1, run.seg, True
        self.stats.ticks += 1  # AFTER: the rest of the tick, as _on_tick runs it
        messages.extend(self._tick(tick_ms, pre=run.prelude))
        self._quiet_until_ms = None
        self._quiet_pending = not (b.members or b.pending or b.held)
        return run.k + 1, run.seg, ran

    def _evict_sweep(self) -> EvictSweep | None:
        """:meth:`_maybe_evict`'s figures for the compiled tick loop (None: it stops for Python at a sweep).

        Given where the sweep takes the path that skips the products above the limit and has swept once.
        """
        figures = self._evict_figures
        if figures is None:
            c = self.counters
            base = self.cfg.decay.half_lives_s.index(self.cfg.score.baseline_half_life_s)
            weights = np.asarray(self.cfg.signals.weights(), np.float64)
            figures = self._evict_figures = (
                base, float(c.lam[base]), weights, self.cfg.state.evict_below, _evict_promise_ms(self.cfg, c),
                round(self.cfg.state.evict_every_s * 1000),
            )  # fmt: skip
        base, lam, weights, limit, promise_ms, every_ms = figures
        hw = self.products.high_water
        skip = self._evict_skip and limit > 0.0 and lam > 0.0 and bool((weights >= 0.0).all())
        if not skip or self._evict_base_ms is None or self._evict_after_s.shape[0] < hw:
            return None
        return EvictSweep(
            every_ms, self._evict_base_ms, self._evict_after_s, hw, base, lam, weights, limit, promise_ms
        )  # fmt: skip

    def finish(self) -> list[Message]:
        """The final board snapshot at the watermark, for the end of a replay."""
        wm = self.clock.watermark_ms
        if self.stats.events_applied == 0:
            return []
        return [self.board.snapshot(int(wm or 0))]

    def _time_rejects(
        self, batch: EventBatch, status: NDArray[np.int8], future_limit_ms: int
    ) -> list[Reject]:
        """Late and far-future events, after this batch's duplicates, with their original bytes."""
        bad = np.flatnonzero(status != 0)
        out, self._duplicates = self._duplicates, []
        for i in bad.tolist():
            reason = _STATUS_REASON[int(status[i])]
            self.stats.rejected[reason] += 1
            if reason == "late":
                detail = (
                    f"ts {batch.ts_ms[i]} is more than {self.cfg.decay.allowed_lateness_s:g} s behind the "
                    f"event-time watermark {self.clock.watermark_ms}"
                )
            else:
                detail = (
                    f"ts {batch.ts_ms[i]} is more than {self.cfg.decay.max_future_s:g} s ahead of the "
                    f"event-time watermark (limit {future_limit_ms} at the start of the batch)"
                )
            out.append(
                Reject(
                    raw=_reencode(batch, i),
                    reason=reason,
                    detail=detail,
                    source=batch.source,
                    partition=int(batch.partition[i]),
                    offset=int(batch.offset[i]),
                )
            )
        return sorted(out, key=lambda r: (r.partition, r.offset)) if len(out) > len(bad) else out

    def _intern(self, batch: EventBatch, idx: NDArray[np.intp]) -> NDArray[np.int64]:
        """Slots of the events at ``idx``; new products get their seller and category attached."""
        catalog, ids = self.catalog, batch.ids  # the ids' bytes and hashes: no str per event
        slots = catalog.intern(ids, idx)
        self._grow(catalog.high_water)
        catalog.attach(ids, idx, slots, self.counters.last_ts_ms[slots] == _NEVER)  # fresh: no state yet
        return slots

    def _intern_users(self, hashes: NDArray[np.uint64], ts_ms: NDArray[np.int64]) -> NDArray[np.int64]:
        """User slots of events up to the next user sweep (so slot reuse does not depend on batching).

        A released user who comes back gets a slot whose first-seen time is long ago: it is not
        fresh, exactly as if it had never been released (:mod:`viraltrend.kernels.hashtable`).
        """
        users, returning = self.users.intern(hashes, ts_ms)
        self.user_signals.ensure_users(self.users.high_water)
        if returning.any():
            self.user_signals.first_seen_ms[users[returning]] = _VETERAN_MS
        return users

    def _plan_sweeps(
        self, user_hash: NDArray[np.uint64], ts_ms: NDArray[np.int64], cuts: NDArray[np.intp],
        ticks: NDArray[np.int64], users: NDArray[np.int64],
    ) -> None:  # fmt: skip
        """Intern every accepted event's user now, taking each user sweep's table steps at its tick.

        The user table's part of a sweep (``UserTable.release_and_recycle``, the population) depends
        only on the users of the events before its tick, so it can run ahead of the ticks: in event
        order, intern up to a sweep's tick, release, intern up to the next one... in one compiled
        call (``UserTable.plan_sweeps``).  The user signals' part (first-seen resets, ``compact``,
        the returning users of the window after) runs at the tick itself (:meth:`_sweep_users`, or
        the compiled loop): ``self._sweeps``.  The slots are those of interning up to each sweep
        then sweeping (``process`` without a plan).  A slot released at a sweep may hold a later
        user by the time an earlier event is applied, so segments take each event's own hash,
        never ``users.hash_of`` by slot.
        """
        every_ms = max(_user_idle_ms(self.cfg) // _USER_SWEEPS, 1)
        slots, back, plan = self.users.plan_sweeps(
            user_hash, ts_ms, cuts, ticks, self._next_user_sweep_ms, every_ms
        )
        users[:] = slots
        self.user_signals.ensure_users(self.users.high_water)  # doubling: the capacity of any batching
        if back.size:  # returning before the first sweep: now, as _intern_users
            self.user_signals.first_seen_ms[back] = _VETERAN_MS
        at, next_ms, pops, released, released_off, returning, returning_off = plan
        self._sweeps = None
        if at.size:
            self._sweeps = SweepPlan(
                at, next_ms, released, released_off, returning, returning_off, pops.tolist()
            )  # fmt: skip
        self._sweep_pos = 0

    def _sweep_users(self, now_ms: int) -> None:
        """At ``_USER_SWEEPS`` points per idle window of event time, release the idle users' slots."""
        if self._next_user_sweep_ms is not None and now_ms < self._next_user_sweep_ms:
            return
        plan, p = self._sweeps, self._sweep_pos
        if plan is not None and p < len(plan.populations):  # planned (_plan_sweeps): the signals' steps
            if int(plan.ticks[p]) != now_ms:
                msg = f"the user sweep planned at {int(plan.ticks[p])} runs at {now_ms}"
                raise AssertionError(msg)
            self._next_user_sweep_ms = int(plan.next_ms[p])
            gone = plan.released[plan.released_off[p] : plan.released_off[p + 1]]
            if gone.size:
                self.user_signals.first_seen_ms[gone] = _NEVER
            self.user_signals.compact()
            self._population = plan.populations[p]
            back = plan.returning[plan.returning_off[p] : plan.returning_off[p + 1]]
            if back.size:
                self.user_signals.first_seen_ms[back] = _VETERAN_MS
            self._sweep_pos = p + 1
            return
        every_ms = max(_user_idle_ms(self.cfg) // _USER_SWEEPS, 1)
        self._next_user_sweep_ms = (now_ms // every_ms + 1) * every_ms
        # audience samples hold user id hashes, never slots: all released slots free at once (recycled)
        released = self.users.release_and_recycle()
        if released.size:
            self.user_signals.first_seen_ms[released] = _NEVER  # a reused slot starts unseen
        self.user_signals.compact()  # expired caps entries out: a table grown for a busy hour shrinks
        self._population = len(self.users)  # the users of the events before this tick, however batched

    def _apply(
        self, batch: EventBatch, idx: NDArray[np.intp], slots: NDArray[np.int64], users: NDArray[np.int64],
        user_hash: NDArray[np.uint64],
    ) -> None:  # fmt: skip
        """Add the events at ``idx`` (slots, users and their ``user_hash`` interned) to the counters."""
        if idx.size == 0:
            return
        types, ts = batch.type_code[idx], batch.ts_ms[idx]
        if self._fused_apply:  # every step below in one compiled call (bit-identical)
            done = apply_segment_all(
                self.user_signals, self.counters, self.trust_counters, self.sketches, self.activity,
                user_hash, slots, users, types, ts,
            )  # fmt: skip
            if done is not None:
                pair_slots, first_seen, n_buys, n_blind = done
                self._n_live += first_seen
                self.funnel_share.add(n_buys, n_blind, now_ms=int(ts.max()))
                self._touched.append(slots)
                self._new_users.append(pair_slots)
                self.stats.events_applied += idx.size
                return
        # one by one (apply_segment_all refused the segment: see kernels/segment.py, or the tests compare)
        first = slots[self.counters.last_ts_ms[slots] == _NEVER]
        if first.size:
            self._n_live += int(np.unique(first).size)
        weight, new_pair, fresh = self.user_signals.process(slots, users, types, ts)
        self.counters.add(slots, types, ts, weight)  # per-user caps: repeats within the window weigh 0
        rows, channel, rows_ts = trust_rows(slots, ts, new_pair, fresh)  # new pairs, fresh, all
        self.trust_counters.add(rows, channel, rows_ts, np.ones(channel.size))
        t0 = time.perf_counter()
        hashes = user_hash.view(np.int64)  # ids: slots get reused
        buys = types >= EVENT_TYPES.index("add_to_cart")  # carts and purchases: was there a view lately?
        viewed = buys.copy()
        viewed[buys] = self.user_signals.counted_lately(slots[buys], users[buys], EVENT_TYPES.index("view"))
        self.funnel_share.add(int(buys.sum()), int((buys & ~viewed).sum()), now_ms=int(ts.max()))
        self.sketches.update(slots, hashes, self.activity.observe(hashes), types, viewed)
        self.audience_guard.guard_s += time.perf_counter() - t0
        self._touched.append(slots)
        self._new_users.append(slots[new_pair])
        self.stats.events_applied += idx.size

    def _grow(self, n: int) -> None:
        """Room for ``n`` product slots: the product table's columns, and the counters to its capacity."""
        cap = self.catalog.grow(n)
        if cap is None:
            return
        self.counters.ensure_capacity(cap, limit=cap)
        self.trust_counters.ensure_capacity(cap, limit=cap)
        self.detector.cusum.ensure_capacity(cap, limit=cap)  # the CUSUM too: no doubling past the cap

    # the product table's fields, read where they were the engine's own (tests, trust, messages)
    @property
    def products(self) -> NameTable:
        """Product ids -> slots (the product table's names)."""
        return self.catalog.products

    @property
    def sellers(self) -> CountedNames:
        """The seller ids live products refer to."""
        return self.catalog.sellers

    @property
    def categories(self) -> CountedNames:
        """The categories live products refer to."""
        return self.catalog.categories

    @property
    def seller_of(self) -> NDArray[np.int32]:
        """Each product slot's seller (a slot of :attr:`sellers`, -1: none), as long as the counters."""
        return self.catalog.seller_of

    @property
    def category_of(self) -> NDArray[np.int32]:
        """Each product slot's category (a slot of :attr:`categories`, -1: none)."""
        return self.catalog.category_of

    # the trust guard's parts, kept by the audience guard (read and restored here: tests, checkpoints)
    @property
    def sketches(self) -> AudienceSketches:
        """The audience samples of hot products."""
        return self.audience_guard.sketches

    @sketches.setter
    def sketches(self, part: AudienceSketches) -> None:
        self.audience_guard.sketches = part

    @property
    def activity(self) -> ActivityCounts:
        """Events per user (the uniform-accounts test's activity)."""
        return self.audience_guard.activity

    @activity.setter
    def activity(self, part: ActivityCounts) -> None:
        self.audience_guard.activity = part

    @property
    def audiences(self) -> AudienceMemory:
        """The remembered audiences of products hot lately."""
        return self.audience_guard.audiences

    @audiences.setter
    def audiences(self, part: AudienceMemory) -> None:
        self.audience_guard.audiences = part

    @property
    def funnel_share(self) -> FunnelShare:
        """The catalogue's blind-buyer share."""
        return self.audience_guard.funnel_share

    @funnel_share.setter
    def funnel_share(self, part: FunnelShare) -> None:
        self.audience_guard.funnel_share = part

    @property
    def guard(self) -> TrustGuard:
        """The trust guard: blocklists, per-candidate checks, this tick's holds and sticky refusals."""
        return self.audience_guard.guard

    @guard.setter
    def guard(self, part: TrustGuard) -> None:
        self.audience_guard.guard = part

    @property
    def book(self) -> GuardBook:
        """The guard's bookkeeping per product slot, tick to tick."""
        return self.audience_guard.book

    @book.setter
    def book(self, part: GuardBook) -> None:
        self.audience_guard.book = part

    @property
    def guard_s(self) -> float:
        """Seconds spent in the trust guard (audience sampling, audience memory, checks)."""
        return self.audience_guard.guard_s

    # ------------------------------------------------------------------ ticks
    def _on_tick(self, now_ms: int) -> list[Message]:
        self.stats.ticks += 1
        b = self.board
        if not self._touched and not (b.members or b.pending or b.held):
            if self._quiet_pending:  # nothing changed since the last full tick: its horizon, read now
                self._quiet_until_ms, self._quiet_pending = self._quiet_until(now_ms), False
            if self._quiet_until_ms is not None and now_ms < self._quiet_until_ms:
                return []  # idle, and no sweep, landmark move, snapshot or eviction due: _tick does nothing
        messages = self._tick(now_ms)
        self._quiet_until_ms = None
        self._quiet_pending = not (b.members or b.pending or b.held)
        return messages

    def _tick(self, now_ms: int, pre: _Prelude | None = None) -> list[Message]:
        """A tick; ``pre``: its start up to the screen already run (``Screen.tick``'s result, _run_ticks)."""
        if pre is None:
            self._tick_start(now_ms)
            if self._idle(now_ms):
                return []
        mu_of = self._baseline_users(now_ms)
        parts, self._touched = self._touched, []
        new_users = _EMPTY
        if self._new_users:
            new_users = self._new_users[0] if len(self._new_users) == 1 else np.concatenate(self._new_users)
            self._new_users = []
        fused = bool(self.screen and parts) or pre is not None
        if pre is not None:
            mu_of._memo, touched, slots, may_score = pre
            sketch_only = touched.size > 0 and not may_score
        elif fused:  # the baseline's figures, the CUSUM update and the screen below, in one compiled call
            mu_of._memo, touched, slots, may_score = self._screen_of().tick(
                self.counters, self.trust_counters, self.detector.cusum, _tick_base(self.cfg), now_ms,
                start_ms=self._start_ms, n_live=mu_of._n_live, new_users=new_users, parts=parts,
            )  # fmt: skip
            sketch_only = touched.size > 0 and not may_score  # evidence building at most: nothing to score
        elif new_users.size:  # counted, their baselines read and the CUSUMs updated in one compiled call
            norm, floor, cycle = mu_of.params()
            t = self.trust_counters
            self.detector.cusum.update_from_users(
                new_users, t.acc, channel=0, half_life=1, lam=float(t.lam[1]), dt_s=t.dt_s(now_ms),
                norm=norm, floor=floor, cycle=cycle, now_ms=now_ms,
            )  # fmt: skip
        if self.labels is not None:
            self._learn(now_ms)  # labels of rows sampled at t <= now - horizon, from counts up to now
        if not fused:
            touched = _unique(parts)
            slots, sketch_only = touched, False
        b = self.board
        busy = b.members or b.pending or b.held or b.blocked_until
        watched = np.asarray(b.watched_slots(), np.int64) if busy else _EMPTY
        if watched.size:
            slots = np.union1d(slots, watched).astype(np.int64)
            sketch_only = False
        traced = quiet = _EMPTY
        if self.trace_products:  # traced products outside this tick's rows are read, never evaluated:
            traced = np.unique(self.products.lookup(self.trace_products))  # the decisions and what the
            traced = traced[traced >= 0]  # engine remembers between ticks stay those of an untraced run
            traced = traced[self.counters.last_ts_ms[traced] != _NEVER]  # from its first applied event on
            inside = in_sorted(traced, slots) & (not sketch_only)  # a tick that only sketches evaluates none
            traced, quiet = traced[inside], traced[~inside]
        if quiet.size:
            self._trace_quiet(now_ms, quiet, mu_of)
        messages: list[Message] = []
        if slots.size and sketch_only:
            self._sketch_only(now_ms, slots, mu_of)
        elif slots.size:
            self.audience_guard.catalogue_trust(self.trust_counters.read_global(now_ms))
            messages = self._evaluate(now_ms, slots, touched, watched, traced, mu_of)
        elif (
            touched.size
            and (quiet_from := self.audience_guard.quiet_from_ms()) is not None
            and now_ms >= quiet_from
        ):
            self.audience_guard.quiet(now_ms)
        return self._tick_end(now_ms, messages)

    def _tick_end(self, now_ms: int, messages: list[Message]) -> list[Message]:
        """A tick's last steps: the board's snapshot (on change or when due), eviction, the product cap."""
        interval_ms = self.cfg.board.snapshot_interval_s * 1000
        due = self._last_snapshot_ms is None or now_ms - self._last_snapshot_ms >= interval_ms
        if messages or due:  # on change, and periodically (empty boards too: subscribers see time move)
            messages.append(self.board.snapshot(now_ms))
            self._last_snapshot_ms = now_ms
        self._maybe_evict(now_ms)
        self._cap_products()
        return messages

    def _tick_start(self, now_ms: int) -> bool:
        """A tick's first steps: the user sweep and the landmark moves due; whether any was due."""
        due = self._next_user_sweep_ms is None or now_ms >= self._next_user_sweep_ms
        self._sweep_users(now_ms)
        for c in (self.counters, self.trust_counters):  # landmarks move at ticks only: any batching
            at = c.next_rebase_ms()  # rebase before it changes nothing: skip the call
            if at is not None and now_ms >= at:
                c.rebase(now_ms, self._trust_live() if c is self.trust_counters else None)
                due = True
        return due

    def _trust_live(self) -> NDArray[np.int64] | None:
        """The counters' ``last_ts_ms`` as the trust counters' live rows for a move, or None (every row).

        The trust counters keep no per-slot times.  Their rows are fed by the counters' events (the
        same slots, ``trust_rows``) and cleared with them (eviction, the product cap), so a row the
        counters never wrote since its last clear holds ``+0.0`` in every trust cell, and a move
        leaves it so: skipping it gives the same bits.  Checked once per pair of counter objects (a
        restored engine's first move reads every row); a pair that fails it moves every row.
        """
        c, t = self.counters, self.trust_counters
        known = self._trust_follows
        if known is None or known[0] is not c or known[1] is not t:
            ok = c.times and not t.times and c.last_ts_ms.shape[0] >= t.capacity
            if ok:
                cells = t.acc.reshape(t.capacity, -1)[c.last_ts_ms[: t.capacity] == _NEVER]
                ok = not cells.view(np.uint8).any()  # +0.0 only: -0.0 has its sign bit set
            known = self._trust_follows = (c, t, ok)
        return c.last_ts_ms if known[2] else None

    def _may_matter(self, now_ms: int, touched: NDArray[np.int64]) -> NDArray[np.int8]:
        """Per product of ``touched``: may its score (bit ``SCORE``) or evidence (``EVIDENCE``) matter.

        The others are quiet: rule score below ``min(board.demote_threshold, detect.min_score,
        board.promote_threshold)`` and change evidence below ``SKETCH_EVIDENCE``, so
        :meth:`_evaluate` would neither keep nor sketch them, and its result for the other rows does
        not depend on them (every column is row-wise).  Only used under the rule scorer without
        labels (:attr:`screen`).
        """
        return self._screen_of()(
            self.counters.acc,
            self.counters.global_acc,
            self.counters.lam,
            self.counters.dt_s(now_ms),
            touched,
            n_products=self._n_live,
            observed_s=(now_ms - self._start_ms) / 1000.0 if self._start_ms is not None else 0.0,
            stat=self.detector.cusum.stat,
        )

    def _screen_of(self) -> Screen:
        """The screen's fixed arguments (FeatureReader.screen's), prepared at the first use."""
        if self._screen is None:
            c, hl = self.cfg, self.cfg.decay.half_lives_s
            self._screen = Screen(
                type_weights=np.asarray(c.signals.weights(), np.float64),
                i_trend=hl.index(c.score.trend_half_life_s), i_base=hl.index(c.score.baseline_half_life_s),
                min_baseline_per_hour=c.score.min_baseline_per_hour,
                global_baseline_factor=c.score.global_baseline_factor, lift_midpoint=c.score.lift_midpoint,
                lift_steepness=c.score.lift_steepness, z_midpoint=c.score.z_midpoint,
                z_steepness=c.score.z_steepness, h=self.detector.h,
                score_limit=min(c.board.demote_threshold, c.detect.min_score, c.board.promote_threshold),
                evidence_limit=SKETCH_EVIDENCE,
            )  # fmt: skip
        return self._screen

    @property
    def screen(self) -> bool:
        """Whether ticks screen out quiet touched products first (:meth:`_may_matter`).

        Under the rule scorer with no labels to sample (the model's score is not bounded by the
        screen, and its samples take every touched product), or under the online model with
        ``model.rows = "evidence"``: then the rule's score ranks, and the model samples, learns and
        vouches only where that score reaches ``detect.min_score``, which a screened-out product
        cannot.  ``_screen_off`` forces the exact path for every touched product (the tests compare
        both).
        """
        if self._screen_off:
            return False
        if self.model is not None and self.scorer is self.model:
            return self.cfg.model.rows == "evidence"
        return self.labels is None and self.model is None and type(self.scorer) is RuleScorer

    def _sketch_only(
        self, now_ms: int, slots: NDArray[np.int64], mu_of: Callable[[NDArray[np.int64]], NDArray[np.float64]]
    ) -> None:
        """A tick whose candidates may not score: the audiences only, by the detector's evidence."""
        self.audience_guard.sketch_only(now_ms, slots, self.detector.evidence(now_ms, slots, mu_of(slots)))

    def _idle(self, now_ms: int) -> bool:
        """Whether this tick would change nothing (the fast path of idle ticks).

        True when no events came since the last tick, nothing is watched or traced, and neither
        a snapshot, an eviction nor a label of the online model is due.
        """
        b = self.board
        return (
            not self._touched
            and not (b.members or b.pending or b.held)
            and (self.labels is None or now_ms < (self.labels.next_due_ms() or now_ms + 1))
            and not self.trace_products
            and self._last_snapshot_ms is not None
            and now_ms - self._last_snapshot_ms < self.cfg.board.snapshot_interval_s * 1000
            and self._next_evict_ms is not None
            and now_ms < self._next_evict_ms
        )

    def _quiet_until(self, now_ms: int) -> int | None:
        """After the last full tick (read at ``now_ms``, nothing applied since): when an idle tick could work.

        Before it, with no event applied since and nothing watched, a tick only counts itself: no
        user sweep (``_next_user_sweep_ms``), landmark move (``next_rebase_ms``), snapshot,
        eviction or label of the online model is due (:meth:`_idle` holds).  None: no such promise.
        """
        due = [
            self._next_user_sweep_ms,
            self.counters.next_rebase_ms(),
            self.trust_counters.next_rebase_ms(),
            self._next_evict_ms,
        ]
        if self._last_snapshot_ms is not None:
            # _idle's test now - last < interval * 1000, for whole ms: now < last + ceil(interval * 1000)
            due.append(self._last_snapshot_ms + math.ceil(self.cfg.board.snapshot_interval_s * 1000))
        if self.labels is not None and (label_due := self.labels.next_due_ms()) is not None:
            due.append(label_due)  # the online model learns the rows whose horizon has passed
        if any(t is None for t in due) or self.trace_products:
            return None
        return int(min(t for t in due if t is not None))

    def _features(
        self, now_ms: int, slots: NDArray[np.int64], mu_of: Callable[[NDArray[np.int64]], NDArray[np.float64]]
    ) -> tuple[NDArray[np.float64], Columns, NDArray[np.float64], NDArray[np.float64], Any, _Proba]:
        """The feature columns of ``slots`` at ``now_ms`` and their scores; changes nothing.

        Returns the decayed counts, the columns (the reader's and the detector's), the score, the
        rule's own score (the same array unless a model scores), the warm model (or None) and its
        probabilities (or None).
        """
        counts = self.counters.read(slots, now_ms)
        trust = self.trust_counters.read(slots, now_ms)
        first = self.counters.first_ts_ms[slots]
        age_s = np.maximum(now_ms - first, 0) / 1000.0
        observed_s = (now_ms - self._start_ms) / 1000.0 if self._start_ms is not None else 0.0
        global_counts = self.counters.read_global(now_ms)
        feats = self.reader.read(
            counts,
            global_counts,
            self._n_live,
            age_s,
            observed_s,
            trust=trust[:, :, 0],
            fast=self.model is not None,
        )
        sustain_share = None  # the sustain path's recruitment over a longer window (detect.sustain_share_...)
        hl_s = self.cfg.detect.sustain_share_half_life_s
        if hl_s > 0.0 and "share_ratio" in feats:
            hl = self.cfg.decay.half_lives_s
            i_base = hl.index(self.cfg.score.baseline_half_life_s)
            sustain_share = share_ratio(counts, global_counts, hl.index(hl_s), i_base)
            feats["sustain_shares"] = counts[:, EVENT_TYPE_CODE["share"], hl.index(hl_s)]
        feats.update(
            self.detector.read(
                now_ms, slots, mu_of(slots), feats["unique_users"], feats.get("share_ratio"), sustain_share
            )
        )
        if self.cfg.model.min_engaged_ratio > 0.0:  # the vouch's gate: more than views (detect.engaged_ratio)
            hl = self.cfg.decay.half_lives_s
            feats["engaged_ratio"] = engaged_ratio(
                counts,
                global_counts,
                hl.index(self.cfg.score.trend_half_life_s),
                hl.index(self.cfg.score.baseline_half_life_s),
            )
        model = self.model if self.model is not None and self.model.warm else None
        if model is not None and self.cfg.model.rows == "evidence":  # learnt only where the evidence
            score = rule = model.fallback.score_many(feats)  # suffices: it vouches; the rule's score ranks
        else:
            score = rule = self.scorer.score_many(feats)
            if model is not None:  # the rule's own verdict, for the "ready" labels
                rule = model.fallback.score_many(feats)
        probability = model.predict_proba_many(feats) if model is not None else None  # once per tick
        return counts, feats, score, rule, model, probability

    def _trace_quiet(
        self, now_ms: int, slots: NDArray[np.int64], mu_of: Callable[[NDArray[np.int64]], NDArray[np.float64]]
    ) -> None:
        """Trace rows of traced products this tick does not evaluate (no events, not watched).

        Read only: the board, the guard and the model's labels never see them, so a traced replay
        decides exactly as an untraced one.  ``evaluated`` is 0.0 in these rows.
        """
        _, feats, score, _, _, probability = self._features(now_ms, slots, mu_of)
        if probability is not None and self.board.sequential:
            feats["model_p"] = probability
            feats["model_vouched"] = np.zeros(slots.size)
        feats["evaluated"] = np.zeros(slots.size)
        self._trace(now_ms, slots, slots, score, feats)

    def _evaluate(
        self,
        now_ms: int,
        slots: NDArray[np.int64],
        touched: NDArray[np.int64],
        watched: NDArray[np.int64],
        traced: NDArray[np.int64],
        mu_of: Callable[[NDArray[np.int64]], NDArray[np.float64]],
    ) -> list[Message]:
        counts, feats, score, rule, model, probability = self._features(now_ms, slots, mu_of)
        # the model's "ready" labels as without detect.sustain_share_long_floor: a refusal, not a lesson
        label_ready = feats.pop("ready_label", feats["ready"])
        if self.labels is not None:
            self._note_ready(now_ms, slots[(label_ready > 0.0) & (rule >= self.cfg.detect.min_score)])
        if probability is not None and self.board.sequential:  # the model vouches for the shape
            rule_ready = feats["ready"] > 0.0
            vouched = self.detector.ready(feats, feats["unique_users"], probability) & ~rule_ready
            vouched &= self.audience_guard.vouch_fresh(feats)
            vouched &= self.audience_guard.vouch_held(now_ms, slots, vouched)
            feats["ready"] = (rule_ready | vouched).astype(np.float64)
            feats["model_p"] = probability  # the evidence of a vouch, in the messages' features
            feats["model_vouched"] = vouched.astype(np.float64)  # ready only because the model vouched
        if self.book.held_since:  # a product held back keeps its verdict while its change holds up
            feats["ready"] = np.maximum(feats["ready"], self.audience_guard.still_held(now_ms, slots, feats))
        feats["ready"] = np.where(score >= self.cfg.detect.min_score, feats["ready"], 0.0)
        if traced.size:
            feats["evaluated"] = np.ones(slots.size)
            self._trace(now_ms, slots, traced, score, feats)
            del feats["evaluated"]
        if self.labels is not None:
            self._sample(now_ms, slots, touched, feats, counts, rule)
        is_watched = in_sorted(slots, watched)
        ready = feats["ready"] > 0.0
        keep = (score >= self.cfg.board.demote_threshold) | is_watched | ready
        is_touched = in_sorted(slots, touched)
        hot = (keep | (feats["evidence"] >= SKETCH_EVIDENCE)) & (is_touched | is_watched)
        judged = ready if self.board.sequential else score >= self.cfg.board.promote_threshold
        members = np.sort(np.fromiter(self.board.members, np.int64, len(self.board.members)))
        self.audience_guard.track(now_ms, slots, hot, is_touched, judged & ~in_sorted(slots, members), feats)
        sel = np.flatnonzero(keep)
        if sel.size == 0 and not self.board.members:
            return []
        s = slots[sel]
        scored_by = self.scorer.name
        if score is rule and self.model is not None:  # evidence rows: the model vouches, the rule ranks
            scored_by = str(self.model.fallback.name)
        cand = Candidates(
            slot=s,
            product_id=self.products.names(s.tolist()),
            seller_id=[self.sellers.name(int(x)) if x >= 0 else None for x in self.seller_of[s].tolist()],
            category=[self.categories.name(int(x)) if x >= 0 else None for x in self.category_of[s].tolist()],
            score=score[sel],
            features={k: v[sel] for k, v in feats.items()},
            scored_by=scored_by,
            ready=ready[sel],
        )
        if model is not None and probability is not None:
            sel_feats = cand.features
            cand.explain = lambda i: [f"model:{n}{v:+.2f}" for n, v in model.explain(sel_feats, i)]
            cand.probability = probability[sel]  # the board's fast track
        messages: list[Message] = [*self.board.step(now_ms, cand)]
        for m in messages:
            self.stats.decisions[m.action] += 1
        return messages

    def _baseline_users(self, now_ms: int) -> _TickBaseline:
        """The detector's baseline: distinct users per second of given slots at ``now_ms``."""
        return _TickBaseline(self, now_ms)

    # ------------------------------------------------------------------ the online model
    def _baseline_count(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        base = self.cfg.decay.half_lives_s.index(self.cfg.score.baseline_half_life_s)
        return np.asarray(counts[:, :, base] @ np.asarray(self.cfg.signals.weights()), np.float64)

    def _sample(
        self,
        now_ms: int,
        slots: NDArray[np.int64],
        touched: NDArray[np.int64],
        feats: dict[str, NDArray[np.float64]],
        counts: NDArray[np.float64],
        rule_score: NDArray[np.float64],
    ) -> None:
        """Every ``model.sample_every_s``: keep touched products' features for labelling one horizon later.

        Every product with events since the last tick is a row, not only the board's candidates,
        so the model sees spikes, bursts and onsets: those with ``lift >= model.hint_lift`` or
        change evidence building are all kept (weight 1), ``model.negative_rate`` of the others
        (weight ``1 / negative_rate``).
        """
        assert self.labels is not None and self.model is not None
        every_ms = round(self.cfg.model.sample_every_s * 1000)
        if now_ms % every_ms:
            return
        rows = np.flatnonzero(in_sorted(slots, touched))  # both ascending: np.isin's sort-based pass, merged
        hint = feats["lift"][rows] >= self.cfg.model.hint_lift
        hint |= feats["evidence"][rows] >= SKETCH_EVIDENCE
        if self.cfg.model.rows == "evidence":  # only where the fast track decides: all but the shape test
            gate = self.detector.ready(feats, feats["unique_users"], shape_free=True)[rows]
            rows = rows[gate & (rule_score[rows] >= self.cfg.detect.min_score)]
            hint = np.ones(rows.size, np.bool_)
        if rows.size == 0:
            return
        self.labels.add(
            now_ms,
            slots[rows],
            {n: feats[n][rows] for n in self.model.features},
            hint,
            baseline_per_s=feats["baseline_per_h"][rows] / 3600.0,
            count_at_t=self._baseline_count(counts[rows]),
        )

    def _learn(self, now_ms: int) -> None:
        """Label the rows whose horizon has passed and learn from them (predict first, then learn).

        The label uses only events up to ``now_ms`` (this tick fires before any later event is
        applied): weighted engagement gained since ``t``, read off the baseline counter as
        ``C(now) - C(t) * exp(-lam * (now - t))``, against ``model.label_min_events`` and
        ``model.label_lift`` times what the baseline rate predicts.
        """
        assert self.labels is not None and self.model is not None
        next_due = self.labels.next_due_ms()  # due() is empty before it (the oldest row's t + horizon)
        if next_due is None or now_ms < next_due:
            return
        due = self.labels.due(now_ms)
        if len(due) == 0:
            return
        m = self.cfg.model
        lam = math.log(2.0) / self.cfg.score.baseline_half_life_s
        elapsed_s = (now_ms - due.t_ms) / 1000.0
        gained = self._baseline_count(self.counters.read(due.slot, now_ms)) - due.count_at_t * np.exp(
            -lam * elapsed_s
        )
        labels = gained >= np.maximum(m.label_min_events, m.label_lift * due.baseline_per_s * elapsed_s)
        if m.label == "ready":  # did the rule itself find it ready at some tick in [t, now]?
            seen = self.book.ready_ms
            ready_ms = np.array([seen.get(s, _NEVER) for s in due.slot.tolist()], np.int64)
            labels = ready_ms >= due.t_ms
            oldest = now_ms - 2 * round(m.horizon_s * 1000)
            self.book.ready_ms = {s: t for s, t in seen.items() if t >= oldest}
        elif m.label_sustain > 0:  # onset phase: still running at the horizon, not a spike that stopped
            trend_s = self.cfg.score.trend_half_life_s
            trend = self.cfg.decay.half_lives_s.index(trend_s)
            w = np.asarray(self.cfg.signals.weights())
            rate_now = (self.counters.read(due.slot, now_ms)[:, :, trend] @ w) * math.log(2.0) / trend_s
            labels &= rate_now >= m.label_sustain * gained / np.maximum(elapsed_s, 1.0)
        self.model.learn_many(due.rows(), labels, due.weight)

    def _note_ready(self, now_ms: int, ready_slots: NDArray[np.int64]) -> None:
        """Remember the last tick at which the rule found each product ready (the "ready" labels)."""
        for s in ready_slots.tolist():
            self.book.ready_ms[int(s)] = now_ms

    def _trace(
        self,
        now_ms: int,
        slots: NDArray[np.int64],
        traced: NDArray[np.int64],
        score: NDArray[np.float64],
        feats: dict[str, NDArray[np.float64]],
    ) -> None:
        pos = np.searchsorted(slots, traced)
        for p in pos.tolist():
            row: dict[str, Any] = {
                "event_ts": now_ms,
                "product_id": self.products.name(int(slots[p])),
                "score": float(score[p]),
                "on_board": int(slots[p]) in self.board.members,
            }
            row.update({k: float(v[p]) for k, v in feats.items()})
            self.trace_rows.append(row)

    def _maybe_evict(self, now_ms: int) -> None:
        """At every ``state.evict_every_s`` of event time, clear the state of cold products.

        Their ids are released at the end of the batch (unless events of theirs came later in
        it): a cleared slot is exactly a fresh product, so decisions do not depend on batching.
        """
        if self._next_evict_ms is not None and now_ms < self._next_evict_ms:
            return
        every_ms = round(self.cfg.state.evict_every_s * 1000)
        if self._next_evict_ms is None:
            self._next_evict_ms = (now_ms // every_ms + 1) * every_ms
        if now_ms < self._next_evict_ms:
            return
        self._next_evict_ms = (now_ms // every_ms + 1) * every_ms
        hw = self.products.high_water
        base = self.cfg.decay.half_lives_s.index(self.cfg.score.baseline_half_life_s)
        weights = np.asarray(self.cfg.signals.weights(), np.float64)
        c = self.counters
        limit, lam, dt_s = self.cfg.state.evict_below, float(c.lam[base]), c.dt_s(now_ms)
        # only the products whose count may have fallen below the limit since they were last looked
        # at (evict_horizon): the others are above it, as the full sweep would find them
        skip = self._evict_skip and limit > 0.0 and lam > 0.0 and bool((weights >= 0.0).all())
        live: NDArray[np.int64] | None = None  # every live product: read only where the exact test runs
        if skip:
            if self._evict_base_ms is None or self._evict_after_s.shape[0] < hw:  # first sweep, or grown
                if not (c.last_ts_ms[:hw] != _NEVER).any():
                    return
                after = self._evict_after_s
                if after.shape[0] < hw:
                    grown = np.full(self.catalog.capacity, _I32_MIN, np.int32)  # product capacity
                    grown[: after.shape[0]] = after
                    self._evict_after_s = grown
                if self._evict_base_ms is None:
                    self._evict_base_ms = now_ms
            # the live products and those past their promise, in one compiled pass
            n_live, looked = evict_looked(
                c.last_ts_ms, _NEVER, hw, self._evict_after_s, (now_ms - self._evict_base_ms) // 1000
            )
            if n_live == 0:
                return
        else:
            live = looked = np.flatnonzero(c.last_ts_ms[:hw] != _NEVER).astype(np.int64)
            if live.size == 0:
                return
        fast = below(c.acc, looked, lam=lam, dt_s=dt_s, half_life=base, weights=weights, limit=limit)
        if fast is not None:
            low, rows = fast != 0, looked
        else:  # some product within rounding of the limit: the exact expression decides, over all as before
            if live is None:
                live = np.flatnonzero(c.last_ts_ms[:hw] != _NEVER).astype(np.int64)
            low, rows = c.read(live, now_ms)[:, :, base] @ weights < limit, live
        cold = rows[low & ~np.isin(rows, self.board.watched_slots())]
        if skip:
            horizon = np.minimum(evict_horizon(
                c.acc, looked, lam=lam, dt_s=dt_s, half_life=base, weights=weights, limit=limit, now_ms=now_ms
            ), now_ms + _evict_promise_ms(self.cfg, c))  # fmt: skip
            assert self._evict_base_ms is not None
            # floor: the stored second is never later than the promise (nor past int32, clipped down)
            self._evict_after_s[looked] = np.clip((horizon - self._evict_base_ms) // 1000, _I32_MIN, _I32_MAX)
            self._evict_after_s[cold] = _I32_MIN  # a cleared slot is a fresh product's
        if cold.size:
            self.counters.clear(cold)
            self.trust_counters.clear(cold)
            self.detector.clear(cold)
            self._n_live -= int(cold.size)
            self._evicted.append(cold)
            self.stats.evicted += int(cold.size)

    def _cap_products(self) -> None:
        """Past ``state.max_products`` live products, evict the coldest down to 90 % of it.

        At ticks only (the count at a tick does not depend on batching), never the board's watched
        products; coldest by weighted engagement at the baseline half-life, ties by the id's hash.
        """
        cap = self.cfg.state.max_products
        if self._n_live <= cap:
            return
        hw = self.products.high_water
        keep = np.zeros(hw, np.bool_)
        watched = np.asarray(self.board.watched_slots(), np.int64)
        keep[watched[watched < hw]] = True
        base = self.cfg.decay.half_lives_s.index(self.cfg.score.baseline_half_life_s)
        order = coldest(
            self.counters.acc, self.counters.last_ts_ms, never=_NEVER, half_life=base,
            weights=np.asarray(self.cfg.signals.weights(), np.float64),
            name_hash=self.products.hash_of, keep=keep, n=hw,
        )  # fmt: skip
        cold = np.sort(order[: max(self._n_live - (cap * 9) // 10, 0)])
        if cold.size:
            self.counters.clear(cold)
            self.trust_counters.clear(cold)
            self.detector.clear(cold)
            self._evict_after_s[cold[cold < self._evict_after_s.shape[0]]] = _I32_MIN  # fresh products next
            self._n_live -= int(cold.size)
            self._evicted.append(cold)
            self.stats.evicted += int(cold.size)
            self.stats.evicted_over_cap += int(cold.size)

    def _release_evicted(self) -> None:
        if not self._evicted:
            return
        cold = np.unique(np.concatenate(self._evicted))
        self._evicted = []
        cold = cold[self.counters.last_ts_ms[cold] == _NEVER]  # no event since it was cleared
        self.catalog.release(cold)  # names, sellers and categories
        self.user_signals.forget_products(cold)
        self.audience_guard.release(cold)

    # ------------------------------------------------------------------ checkpoints
    def _parts(self) -> tuple[tuple[str, str, Stateful | None], ...]:
        """The engine's stateful parts: (array-name prefix, attribute, part), restored in this order.

        A checkpoint is their :meth:`~viraltrend.stateful.Stateful.to_state` output, arrays under
        their prefix and meta entries in one flat dict; None: a part this engine does not keep.
        """
        return (
            ("", "catalog", self.catalog),  # the product table: names (products.*), sellers and categories
            ("counters.", "counters", self.counters),
            ("trust.", "trust_counters", self.trust_counters),  # the trust signals...
            ("users.", "user_signals", self.user_signals),
            ("usertable.", "users", self.users),  # after the user signals (an older one's names)
            ("sketches.", "sketches", self.sketches),
            ("audiences.", "audiences", self.audiences),
            ("activity.", "activity", self.activity),
            ("", "funnel_share", self.funnel_share),
            ("detect.", "detector", self.detector),
            ("dedup.", "dedup", self.dedup),
            ("", "clock", self.clock),
            ("", "guard", self.guard),  # the blocklists
            ("", "book", self.book),  # the guard's bookkeeping
            ("", "model", self.model),
            ("labels.", "labels", self.labels),
            ("", "board", self.board),
            ("", "stats", self.stats),
            ("", "", _Loose(self)),  # this tick's slots, the schedule; after the user table
        )

    def state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """All state as plain data: numpy arrays and a JSON-able dict (never pickled).

        Call between batches.  :meth:`restore` rebuilds an engine that continues exactly as
        this one would (the same decisions for the same following events).  ``copy=False``: the
        largest arrays (counters, detector, user signals, seller and category) are views of the
        engine's own, to be copied before the engine goes on (into buffers kept from the last
        checkpoint, say); the others are copies either way.
        """
        arrays: dict[str, NDArray[Any]] = {}
        meta: dict[str, Any] = {"config": self._fingerprint(), "dedup": None, "model": None}  # None: not kept
        for prefix, _, part in self._parts():
            if part is not None:
                got, entries = part.to_state(copy=copy)
                arrays.update({prefix + k: v for k, v in got.items()})
                meta.update(entries)
        return arrays, meta

    def _fingerprint(self) -> dict[str, Any]:
        """The config that shapes the state: restoring under another one is refused."""
        d = self.cfg.decay
        t = self.cfg.trust
        return {
            "half_lives_s": list(d.half_lives_s),
            "tick_s": d.tick_s,
            "n_types": len(EVENT_TYPES),
            "model": self.cfg.model.enabled,
            "trend_half_life_s": self.cfg.score.trend_half_life_s,
            "cap_window_s": t.cap_window_s,
            "fresh_window_s": t.fresh_window_s,
            "trust_half_lives_s": list(_trust_half_lives(self.cfg)),
            "detect_lifts": list(self.cfg.detect.lifts),
            "detect_window_ticks": self.cfg.detect.window_ticks,
        }

    @classmethod
    def restore(
        cls,
        cfg: Config,
        arrays: dict[str, NDArray[Any]],
        meta: dict[str, Any],
        *,
        scorer: Scorer | None = None,
        copy: bool = True,
    ) -> Engine:
        """Rebuild an engine from :meth:`state` output; CheckpointError if it does not fit ``cfg``.

        ``copy=False``: the caller hands ``arrays`` over (a store's freshly loaded checkpoint that
        nothing else holds); the engine then works in the largest of them instead of copies.
        """
        engine = cls(cfg, scorer=scorer)
        if meta.get("config") != engine._fingerprint():
            msg = (
                f"checkpoint was written with {meta.get('config')} but the config now says "
                f"{engine._fingerprint()}; delete the checkpoint directory or restore the old config"
            )
            raise CheckpointError(msg)
        # what a part restores from that another one holds: the latest event (a checkpoint of float64
        # cells, before the float32 layout, is narrowed there) and the user signals' (an older
        # checkpoint's user names are taken as last seen then)
        last = np.asarray(arrays.get("counters.last_ts_ms", np.empty(0, np.int64)), np.int64)
        users_ts = np.asarray(arrays.get("users.max_ts_ms", [_NEVER]), np.int64)
        meta = {
            **meta,
            "narrow_at_ms": int(last.max()) if last.size and int(last.max()) != _NEVER else None,
            "users_max_ts_ms": int(users_ts[0]) if users_ts.size and int(users_ts[0]) != _NEVER else None,
        }
        try:
            with nullcontext() if copy else adopting():
                for prefix, attr, part in engine._parts():
                    if part is not None:
                        got = part.load_state(under(arrays, prefix), meta)
                        if attr:
                            setattr(engine, attr, got)
        except (KeyError, TypeError, ValueError) as exc:
            msg = (
                f"checkpoint is incomplete or malformed ({type(exc).__name__}: {exc}); it cannot be restored"
            )
            raise CheckpointError(msg) from exc
        if engine.model is not None:  # built with no scorer of its own: the model scores
            engine.scorer = engine.model
        if (
            engine.catalog.capacity != engine.counters.capacity
            or engine.catalog.high_water > engine.counters.capacity
        ):
            msg = "checkpoint arrays disagree in size; it is corrupt"
            raise CheckpointError(msg)
        return engine

    # ------------------------------------------------------------------ introspection
    @property
    def tracked_products(self) -> int:
        """Products currently holding state."""
        return self._n_live

    @property
    def bytes_per_product(self) -> int:
        """Bytes of numeric state per product slot (counters, trust counters, seller and category)."""
        return int(
            self.counters.nbytes_per_slot
            + self.trust_counters.nbytes_per_slot
            + self.detector.nbytes_per_slot
            + self.catalog.itemsize
        )

    @property
    def state_bytes(self) -> int:
        """Bytes of per-product numeric state allocated (counters plus seller/category columns)."""
        return int(
            self.counters.nbytes
            + self.trust_counters.nbytes
            + self.detector.cusum.nbytes
            + self.catalog.nbytes
        )


class _Loose:
    """The engine's own loose state as a part (:mod:`viraltrend.stateful`), kept as the engine's fields.

    The hot path reads them as they are: this tick's touched products and new (user, product) pairs
    so far, the stream's start, the next snapshot, eviction and user sweep, the live products and the
    co-audience population.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The tick's touched slots and new pairs as arrays (copies either way), the rest as meta."""
        e = self.engine
        arrays = {"touched": np.concatenate([_EMPTY, *e._touched]),
                  "new_users": np.concatenate([_EMPTY, *e._new_users])}  # fmt: skip
        meta = {"users_next_sweep_ms": e._next_user_sweep_ms, "start_ms": e._start_ms, "n_live": e._n_live,
                "population": e._population, "last_snapshot_ms": e._last_snapshot_ms,
                "next_evict_ms": e._next_evict_ms}  # fmt: skip
        return arrays, meta

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> _Loose:
        """Into the engine's fields; after its user table (an older checkpoint's population)."""
        e = self.engine
        touched, new_users = (np.asarray(arrays[k], np.int64) for k in ("touched", "new_users"))
        e._touched, e._new_users = [touched] if touched.size else [], [new_users] if new_users.size else []
        e._next_user_sweep_ms, e._start_ms = meta.get("users_next_sweep_ms"), meta["start_ms"]
        e._n_live, e._population = int(meta["n_live"]), int(meta.get("population", len(e.users)))
        e._last_snapshot_ms, e._next_evict_ms = meta["last_snapshot_ms"], meta["next_evict_ms"]
        return self


_Proba = NDArray[np.float64] | None  # the warm model's probabilities, if any


class _TickBaseline:
    """The detector's baseline at one tick: ``mu_of(slots)``, distinct users per second of ``slots``.

    :meth:`params` reads the catalogue's figures (norm, floor, daily-cycle factor) at the first call
    only: they do not change within a tick.
    """

    def __init__(self, engine: Engine, now_ms: int) -> None:
        self._engine, self._now_ms = engine, now_ms
        self._n_live = engine._n_live  # products with state at the start of the tick
        self._memo: tuple[float, float, float] | None = None

    def params(self) -> tuple[float, float, float]:
        """The 24-hour norm, the floor and the daily-cycle factor of the baseline at this tick."""
        if self._memo is not None:
            return self._memo
        e, now_ms = self._engine, self._now_ms
        base = _tick_base(e.cfg)
        seen = max((now_ms - e._start_ms) / 1000.0 if e._start_ms is not None else 0.0, 1.0)
        norm_hour, nb = base.norms(seen)  # rates per second of decayed counts at those half-lives
        cycle = 1.0
        # counters.read_global(now).sum(axis=0) and trust.read_global(now)[0, 1] in one call, bit for bit
        g, users = global_figures(e.counters, e.trust_counters, now_ms, channel=0, half_life=1)
        if base.i_hour >= 0 and e._start_ms is not None:
            cycle = SequentialDetector.cycle_factor(
                float(g[base.i_hour]) * norm_hour, float(g[base.i_base]) * nb
            )
        self._memo = (nb, e.detector.baseline_floor(users, self._n_live, nb), cycle)
        return self._memo

    def __call__(self, slots: NDArray[np.int64]) -> NDArray[np.float64]:
        """``detector.baseline(trust.read(slots, now)[:, 0, 1], ...)`` in one compiled pass, bit for bit."""
        nb, floor, cycle = self.params()
        trust = self._engine.trust_counters
        return baseline_rates(
            trust.acc, slots, channel=0, half_life=1, lam=float(trust.lam[1]), dt_s=trust.dt_s(self._now_ms),
            norm=nb, floor=floor, cycle=cycle,
        )  # fmt: skip


def _tick_base(cfg: Config) -> TickBaseline:
    """The fixed arguments of :meth:`_TickBaseline.params` (and of the screen's tick call) for ``cfg``."""
    d = cfg.detect
    return _tick_base_of(
        cfg.decay.half_lives_s, cfg.score.baseline_half_life_s, d.prior_factor, d.baseline_floor_users_per_h
    )


@functools.cache
def _tick_base_of(
    half_lives_s: tuple[float, ...], base_s: float, prior: float, floor_h: float
) -> TickBaseline:
    return TickBaseline(
        i_hour=half_lives_s.index(3600.0) if 3600.0 in half_lives_s else -1,
        lam_hour=math.log(2.0) / 3600.0,
        i_base=half_lives_s.index(base_s),
        lam_base=math.log(2.0) / base_s,
        prior_factor=prior,
        floor_min=floor_h / 3600.0,  # SequentialDetector.baseline_floor's floor per second
        clip=_CYCLE_CLIP,
    )


_EMPTY = np.zeros(0, np.int64)
#: Screen.tick's result for a tick: the baseline's (norm, floor, cycle), touched, screened in, may score
_Prelude = tuple[tuple[float, float, float], NDArray[np.int64], NDArray[np.int64], bool]


def _unique(parts: list[NDArray[np.int64]]) -> NDArray[np.int64]:
    """Sorted distinct values of the arrays in ``parts`` (int64)."""
    if not parts:
        return _EMPTY
    return unique_counts(parts)[0]


def _user_idle_ms(cfg: Config) -> int:
    """Inactivity after which a user is released: both trust windows have passed (caps and freshness)."""
    return round(max(cfg.trust.cap_window_s, cfg.trust.fresh_window_s) * 1000)


#: The per-product accumulators of both counters: float32 (4 bytes a cell, 120 of the 240 per product
#: saved), landmark moves at exponent 30 (renormalisation limit 60; float32 ends at exp(88.7)).
_ACC_LAYOUT: dict[str, Any] = {"dtype": np.float32, "renorm_exponent": F32_RENORM_EXPONENT}


def _evict_promise_ms(cfg: Config, counters: DecayedCounters) -> int:
    """Longest eviction promise (ms) float32 cells keep: their landmark roundings stay inside EVICT_SLACK.

    A landmark move rounds each float32 cell by up to 2**-24 (relative), so a promise of
    :func:`~viraltrend.kernels.prefilter.evict_horizon` (slack 1e-6) survives at most
    ``floor(EVICT_SLACK * 2**24) - 1`` = 15 of them.  Every move advances the landmark by at least
    ``half`` (the ticks move it once it is ``renorm_exponent / 2 / lam_max`` behind, ``add`` once an
    event is twice that ahead), and the landmark stays within ``[now - half, now + max_future]``; so
    a promise of ``P`` ms sees at most ``(P + max_future + half) / half + 1`` moves: ``P = 12 half -
    max_future`` (one move of margin; 7.7 h with the defaults: half 2,597 s, max_future 1 h; 0 when
    max_future is larger: every sweep then looks at every product).  Float64 cells: no limit.
    """
    if counters.acc.dtype != np.float32:
        return 2**62
    n_moves = math.floor(EVICT_SLACK * 2**24) - 1
    half_ms = counters.renorm_exponent / 2.0 / float(counters.lam.max()) * 1000.0
    return max(0, math.floor((n_moves - 3) * half_ms - cfg.decay.max_future_s * 1000.0))


def _trust_half_lives(cfg: Config) -> tuple[float, ...]:
    """Half-lives of the trust counters: the trend window, and the baseline (the detector's ``mu``)."""
    return (cfg.score.trend_half_life_s, cfg.score.baseline_half_life_s)


_ENCODE = msgspec.json.Encoder()


def _reencode(batch: EventBatch, i: int) -> bytes:
    """The event at ``i`` as received (re-encoded as contract JSON only if the source kept no bytes)."""
    return batch.record_bytes(i)
