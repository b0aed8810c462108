"""The trust guard's audience work at each tick, as one part of the engine with the state it keeps.

The engine runs a pipeline per tick (intern -> apply -> tick -> evaluate -> guard -> board); this is
its guard step's audience side (DESIGN.md, "The trust guard").  It owns the guard's parts:

- the audience samples of hot products (:class:`~viraltrend.kernels.audience.AudienceSketches`) and
  the per-user activity counts they weigh users by (:class:`~viraltrend.kernels.audience.ActivityCounts`);
- the remembered audiences of products hot lately (:class:`~viraltrend.trust.AudienceMemory`);
- the catalogue's blind-buyer share (:class:`~viraltrend.trust.FunnelShare`);
- the guard itself (:class:`~viraltrend.trust.TrustGuard`: blocklists, per-candidate checks, this
  tick's holds and sticky refusals) and its bookkeeping from tick to tick
  (:class:`~viraltrend.trust.GuardBook`: ring refusals, holds, vouches, the sketched products).

Per tick the engine calls :meth:`AudienceGuard.track` (sketch the hot products' audiences, remember
them, and judge the ready ones, :meth:`AudienceGuard._judge`: the refusal ladder, one method per
signal the README names, lockstep, seller ring, co-audience (light, light low, the seller pool),
dense block, blind buyers and uniform accounts, each with its verdict and numbers on every candidate,
then the holds while the evidence accumulates; board members exposed by their seller's other
audiences), or :meth:`~AudienceGuard.sketch_only` / :meth:`~AudienceGuard.quiet`
at ticks where nothing may score; the board calls :meth:`AudienceGuard.check` per candidate.  The
compiled tick loop takes the ticks with nothing ready itself (:meth:`AudienceGuard.step`).  The
engine checkpoints each part under its own name (``Engine._parts``); this class adds no state of its
own beyond the time it spent (:attr:`AudienceGuard.guard_s`) and the tick it last judged at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from viraltrend.board import Candidates
from viraltrend.config import Config
from viraltrend.detect import Columns
from viraltrend.errors import ConfigError
from viraltrend.kernels.audience import (
    ActivityCounts,
    AudienceSketches,
    activity_dispersion,
    blind_buyers,
    pooled_overdispersion,
)
from viraltrend.kernels.columns import in_sorted, keep_hot
from viraltrend.kernels.segment import AudienceStep
from viraltrend.products import ProductTable
from viraltrend.trust import (
    HELD,
    AudienceMemory,
    FunnelShare,
    GuardBook,
    Match,
    TrustGuard,
    activity_reference,
    activity_weights,
    blind_buyers_refused,
    blind_reason,
    chance_evidence,
    co_numbers,
    hold_reason,
    light_numbers,
    low_numbers,
    match_numbers,
    pooled_evidence,
    pooled_numbers,
    soft_refusal,
    uniform_reason,
)

__all__ = ["SKETCH_EVIDENCE", "AudienceGuard", "fresh_shortfall_evidence"]

#: Change evidence (fraction of the alarm threshold) from which a product is sketched (the engine's
#: screen and the model's samples use the same limit).
SKETCH_EVIDENCE = 0.3
#: A sketched product stays sketched while it has events at least this often (ms of event time), so its
#: audience sample spans its whole trend, not the events of one tick (a product with events every few
#: minutes used to be unwatched, and its sample emptied, at every tick without one of its events).
_SKETCH_IDLE_MS = 1_800_000
#: Refusals that do not stick (blocklists change live; too few users is soft)
#: A hard refusal sticks only when this many times ``trust.min_unique_users`` distinct users are behind
#: it: from fewer, a fresh-account share or a conversion rate is a coin toss (an organic product whose
#: first users are new accounts must not be refused for hours).  Eval seeds 1-20: the same decisions
#: as sticking from any count; with the floor lowered to 3, viral products were refused for good.
_STICKY_USERS = 2.0
_NOT_STICKY = ("product_blocked", "seller_blocked", "blocklist_reason", "low_unique_users", HELD)
_NEVER = np.iinfo(np.int64).min  # last_ts_ms of a slot that holds no events
_FAR = int(np.iinfo(np.int64).max)  # no time due
#: Sampled users of the other hot audiences below which the catalogue's activity spread is not judged
#: (and no audience is refused as uniform accounts).
_UNIFORM_POOL_USERS = 200
#: Sampled users from which a few users acting alike hold a candidate back (``held_uniform_looking``):
#: below it a variance says nothing.
_HOLD_UNIFORM_USERS = 10
#: A candidate with fewer than trust.blind_min_buyers sampled buyers, at least 2 and this share of them
#: blind (and above the blind-buyers bar), is held back until the test has its buyers
#: (``held_blind_looking``).
_HOLD_BLIND_SHARE = 0.5
#: The evidence hold (trust.hold_evidence) waits only for overlaps this many times trust.co_audience_lift
#: beyond chance: on market tuning seeds 101-110 organic trends' co-audiences with flash sales hours
#: earlier (deal hunters and regulars) ran at 5-8 times chance and, held, reached a refusal.
_HOLD_LIFT = 2.0
#: A product held back by the guard keeps the detector's verdict this long (ms of event time) after its
#: hold ends (trust.hold_max_s after it was first held): a slow product may have no events at the tick
#: its hold ends.
_HOLD_CARRY_MS = 300_000
#: The catalogue's activity spread (the uniform test's reference) is looked at this often (ms of event
#: time) besides whenever a candidate needs it, so a quiet tick can use a recent figure.
_CATALOGUE_EVERY_MS = 600_000
_EMPTY = np.zeros(0, np.int64)


class Verdict(NamedTuple):
    """One signal's verdict on the candidates judged at a tick (arrays over them), with the numbers behind it.

    ``hit[j]``: the signal refuses candidate ``j`` (in the refusal ladder) or holds it (a hold);
    ``reason(j)``: why, with the numbers (asked only where it is hit); ``value[j]``: the figure the
    test reads (a share, powers of ten against chance, a density, a dispersion...).  ``partner[j]``: the
    remembered product whose audience holds the candidate's users (-1: none), ``shared[j]`` the share
    of its sampled users found there: a board member so found is exposed (:meth:`AudienceGuard._expose`).
    """

    hit: NDArray[np.bool_]
    reason: Callable[[int], str]
    value: NDArray[np.float64]
    partner: NDArray[np.int64] | None = None
    shared: NDArray[np.float64] | None = None


class _Overlap(NamedTuple):
    """A co-audience among the light users (:class:`~viraltrend.trust.Match`'s ``light_*`` / ``low_*``)."""

    evidence: NDArray[np.float64]  # powers of ten against chance (0: not beyond the lift)
    other: NDArray[np.int64]  # the remembered product, -1: none
    shared: NDArray[np.int64]  # light users shared / sampled
    sampled: NDArray[np.int64]


class _Audiences(NamedTuple):
    """The candidates judged at a tick and their audiences as several signals read them (arrays over them)."""

    slots: NDArray[np.int64]  # the candidates' product slots (sorted)
    sellers: NDArray[np.int64]  # their sellers (-1: none)
    sig: NDArray[np.uint64]  # their audience samples, uint64[m, k]
    match: Match  # their best matches in the audience memory (one pass: AudienceMemory.best_match)
    light: _Overlap  # the co-audience among their light users
    low: _Overlap  # the same at a crowd's weaker lift (trust.hold_light_low_lift)
    pool_shared: NDArray[np.int64]  # their users in their seller's other remembered audiences, pooled
    pool_expected: NDArray[np.float64]  # ... and the number chance expects there
    sampled: NDArray[np.int64]  # sampled users (activity_dispersion)
    mean: NDArray[np.float64]  # their mean earlier events
    dispersion: NDArray[np.float64]  # its index of dispersion (variance / mean)


class AudienceGuard:
    """The trust guard's parts and its per-tick audience steps (see the module's docstring).

    Parameters
    ----------
    cfg
        The full configuration (``trust`` mostly; ``model`` for the vouch gates).
    catalog
        The engine's product table: product and seller names, each product's seller.
    members
        The board's members now (a ring's earlier product on the board is exposed by its sibling).
    population
        The co-audience test's population: users holding a slot at the last user sweep.
    """

    def __init__(
        self,
        cfg: Config,
        catalog: ProductTable,
        *,
        members: Callable[[], Collection[int]],
        population: Callable[[], int],
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self._members = members
        self._population = population
        t = cfg.trust
        self.sketches = AudienceSketches(k=t.audience_sample, seed=0)
        self.activity = ActivityCounts(width=_pow2(t.activity_cells))  # events per user, for uniform_accounts
        self.audiences = AudienceMemory(
            capacity=t.audience_memory_size, k=t.audience_sample, memory_ms=round(t.audience_memory_s * 1000)
        )
        self.guard_s = 0.0  # seconds spent in the trust guard (sketches, audience memory, checks)
        self.now_ms = 0  # the last tick that sketched: a sticky refusal's time (check)
        self.guard = TrustGuard(t, min_change_users=cfg.detect.min_change_users)
        for pid in _load_ids(t.blocked_products, t.blocked_products_file, "blocked_products_file"):
            self.guard.set_blocked("product", pid, "config")
        for sid in _load_ids(t.blocked_sellers, t.blocked_sellers_file, "blocked_sellers_file"):
            self.guard.set_blocked("seller", sid, "config")
        self.book = GuardBook()  # the guard's bookkeeping per slot, tick to tick (held, sketched...)
        # the catalogue's share of carts and purchases with no view lately (the blind-buyers reference)
        self.funnel_share = FunnelShare(half_lives_ms=_funnel_half_lives(cfg))

    def check(self, cand: Candidates, i: int) -> list[str] | None:
        """The board's guard: candidate ``i``'s refusal reasons (None: it passes); hard ones stick.

        *Sticky refusals*: a hard refusal behind at least ``_STICKY_USERS`` x ``trust.min_unique_users``
        users sticks for the episode (``book.ring_refusals``): the ring does not wait out a window.
        """
        t0 = time.perf_counter()
        slot = int(cand.slot[i])
        reasons = self.guard.check(cand.product_id[i], cand.seller_id[i], slot, cand.features, i)
        users = float(cand.features["unique_users"][i]) if "unique_users" in cand.features else math.inf
        enough = users >= _STICKY_USERS * self.cfg.trust.min_unique_users  # a handful of users is no verdict
        if (
            reasons is not None
            and slot not in self.book.ring_refusals
            and not soft_refusal(reasons)
            and enough
        ):
            hard = [r for r in reasons if not r.startswith(_NOT_STICKY)]
            if hard:  # a hard refusal sticks for the episode: the ring does not wait out a window
                self.book.ring_refusals[slot] = (hard[0], self.now_ms)
                self.guard.lockstep[slot] = hard[0]
        self.guard_s += time.perf_counter() - t0
        return reasons

    def _name(self, slot: int) -> str:
        """The product id in ``slot`` (the reasons name the partner products)."""
        return self.catalog.products.name(slot)

    def release(self, cold: NDArray[np.int64]) -> None:
        """Forget the released product slots ``cold`` (sorted): remembered audiences, book, samples."""
        self.audiences.forget(cold)
        gone = self.book.release(cold)
        if gone.size:  # a released slot's sample must not carry over to the next product in it
            self.sketches.unwatch(gone)

    def catalogue_trust(self, g: NDArray[np.float64]) -> None:
        """*Catalogue references*: the catalogue's fresh-account share and events per (user, product).

        The smaller of the trend and the baseline half-life: an attack running now inflates the
        trend-window figures of the whole catalogue (its own events are in them), and would raise the
        bar it is measured against; the baseline window moves slowly.  ``g``: the trust counters'
        catalogue figures at the tick (``read_global``: new pairs, fresh, raw x trend, baseline half-life).
        """
        pairs, fresh, raw = g[0], g[1], g[2]
        ok = raw > 0
        self.guard.catalogue_fresh_share = float((fresh[ok] / raw[ok]).min()) if ok.any() else 1.0
        ok = pairs > 0
        self.guard.catalogue_events_per_user = float((raw[ok] / pairs[ok]).min()) if ok.any() else 1.0

    def vouch_fresh(self, feats: Columns) -> NDArray[np.bool_]:
        """Which candidates bring fresh accounts enough for a vouch, bool[m] (``model.vouch_fresh_ratio``).

        A vouch needs a share of events from accounts first seen within ``trust.fresh_window_s``
        (``fresh_share``) of at least ``model.vouch_fresh_ratio`` x the catalogue's (the guard's
        ``catalogue_fresh_share``, read as this tick's ``_catalogue_trust`` left it): a cascade
        keeps bringing newcomers to the stream, a ring or a crowd-turfing pool reuses accounts it
        has had for long.  Below that bar it is refused only where the shortfall reaches
        ``model.vouch_fresh_evidence`` powers of ten against chance (:func:`fresh_shortfall_evidence`;
        0: always): a young cascade's dozen events without a fresh account tell little.  0 (or no
        ``fresh_share`` column): every candidate passes.
        """
        ratio = self.cfg.model.vouch_fresh_ratio
        fresh = feats.get("fresh_share")
        if ratio <= 0.0 or fresh is None:
            return np.ones(len(feats["evidence"]), np.bool_)
        bar = ratio * self.guard.catalogue_fresh_share
        ok = fresh >= bar
        need = self.cfg.model.vouch_fresh_evidence
        if need > 0.0 and "events_per_user" in feats:  # refused only where the sample can tell
            ok |= fresh_shortfall_evidence(fresh, bar, feats["events_per_user"], feats["unique_users"]) < need
        return np.asarray(ok, np.bool_)

    def vouch_held(
        self, now_ms: int, slots: NDArray[np.int64], vouched: NDArray[np.bool_]
    ) -> NDArray[np.bool_]:
        """Which of this tick's vouches have held at every tick for ``model.vouch_hold_s``, bool[m].

        A streak starts at a product's first vouched tick and breaks at the first tick it is not
        vouched (or not evaluated); only the vouched products of a tick are kept.
        """
        hold_ms = round(self.cfg.model.vouch_hold_s * 1000)
        if hold_ms <= 0:
            return vouched
        tick_ms = round(self.cfg.decay.tick_s * 1000)
        streaks: dict[int, tuple[int, int]] = {}
        held = np.zeros_like(vouched)
        for i in np.flatnonzero(vouched).tolist():
            s = int(slots[i])
            start, last = self.book.vouch_ms.get(s, (now_ms, now_ms))
            if now_ms - last > tick_ms:  # a tick without the vouch broke the streak
                start = now_ms
            streaks[s] = (start, now_ms)
            held[i] = now_ms - start >= hold_ms
        self.book.vouch_ms = streaks
        return held

    def still_held(
        self, now_ms: int, slots: NDArray[np.int64], feats: dict[str, NDArray[np.float64]]
    ) -> NDArray[np.float64]:
        """1.0 for the products held back lately whose change still holds up, else 0.0.

        The detector's verdict comes and goes from tick to tick (a growth z crosses its threshold and
        falls back), and a slow product has no events at many ticks; a product the guard held keeps
        its verdict for ``trust.hold_max_s`` after it was first held plus ``_HOLD_CARRY_MS`` (its
        next ticks with events after the hold), while its change evidence stands and it is not
        fading, so the hold delays it by about that much at most.
        """
        d = self.cfg.detect
        limit = round(self.cfg.trust.hold_max_s * 1000) + _HOLD_CARRY_MS
        longer = (
            round(self.cfg.trust.hold_evidence_s * 1000) + _HOLD_CARRY_MS
        )  # held for co-audience evidence
        held = np.array(
            [
                s
                for s, t in self.book.held_since.items()
                if now_ms - t <= (longer if s in self.book.suspected else limit)
            ],
            np.int64,
        )
        keep = np.isin(slots, held) & (feats["evidence"] >= 1.0)
        keep &= (
            (feats["growth_z"] > -d.fade_z)
            & (feats["growth_z_slow"] > -d.fade_z)
            & (feats["fade_z"] > -d.fade_z)
        )
        return keep.astype(np.float64)

    def track(
        self,
        now_ms: int,
        slots: NDArray[np.int64],
        hot: NDArray[np.bool_],
        touched: NDArray[np.bool_],
        ready: NDArray[np.bool_],
        feats: dict[str, NDArray[np.float64]],
    ) -> None:
        """:meth:`_track`, its time counted in :attr:`guard_s`."""
        t0 = time.perf_counter()
        self._track(now_ms, slots, hot, touched, ready, feats)
        self.guard_s += time.perf_counter() - t0

    def _track(
        self,
        now_ms: int,
        slots: NDArray[np.int64],
        hot: NDArray[np.bool_],
        touched: NDArray[np.bool_],
        ready: NDArray[np.bool_],
        feats: dict[str, NDArray[np.float64]],
    ) -> None:
        """Sketch the audiences of hot products, remember them, and judge the ready ones against memory.

        Hot: on or near the board, or with change evidence building (at most ``trust.max_sketched``,
        most evidence first); the hot products with events this tick (``touched``) refresh their
        remembered audience.  The ready ones with a sampled audience are judged (:meth:`_judge`), then
        the board's members against their sellers (:meth:`_board_seller_union`).  Per tick
        ``O(hot * k)`` plus ``O(capacity * k)`` per ready product.
        """
        t = self.cfg.trust
        self.now_ms = now_ms
        idx = np.flatnonzero(hot & touched)
        now_hot = self._sketch(now_ms, slots[idx], feats["evidence"][idx])
        self._age(now_ms)
        if now_hot.size == 0:
            return
        self._remember(now_ms, slots[idx], now_hot)
        if now_ms - self.book.catalogue_checked_ms >= _CATALOGUE_EVERY_MS:  # the uniform test's reference
            self.catalogue_overdispersion(now_ms, _EMPTY)
        sketches = self.sketches
        cand = slots[ready]
        cand = cand[sketches.is_watched(cand)]
        cand = cand[sketches.nonempty[sketches.row_of[cand]]]
        if cand.size:
            self._judge(now_ms, self._read(now_ms, cand), slots, feats)
        if t.board_seller_union_evidence > 0 and self._members():
            self._board_seller_union(now_ms)

    def _sketch(
        self, now_ms: int, hot: NDArray[np.int64], evidence: NDArray[np.float64]
    ) -> NDArray[np.int64]:
        """Watch the audiences of the products to sketch after this tick (:meth:`keep_sketched`), only them.

        ``hot``: the hot products with events now, ``evidence`` their change evidence.  Returns the
        sketched set (sorted), also kept in ``book.sketched``.
        """
        now_hot = self.keep_sketched(now_ms, hot, evidence, self.cfg.trust.max_sketched)
        book = self.book
        if not np.array_equal(now_hot, book.sketched):
            gone = book.sketched[~in_sorted(book.sketched, now_hot)]
            if gone.size:
                self.sketches.unwatch(gone)
            self.sketches.watch(now_hot)
        book.sketched = now_hot
        return now_hot

    def _age(self, now_ms: int) -> None:
        """Forget refusals, holds and vouches older than ``trust.audience_memory_s``; drop this tick's holds.

        The refusals left stick (``guard.lockstep``); holds are decided afresh at every tick (:meth:`_hold`).
        """
        memory_ms = round(self.cfg.trust.audience_memory_s * 1000)
        book = self.book
        book.ring_refusals = {s: v for s, v in book.ring_refusals.items() if now_ms - v[1] <= memory_ms}
        self.guard.lockstep = {s: v[0] for s, v in book.ring_refusals.items()}  # a refusal sticks
        self.guard.held = {}
        if book.held_since:
            book.held_since = {s: v for s, v in book.held_since.items() if now_ms - v <= memory_ms}
            book.suspected = {s: v for s, v in book.suspected.items() if s in book.held_since}
        if book.low_held:
            book.low_held = {s: v for s, v in book.low_held.items() if s in book.suspected}
        if book.vouch_since:
            book.vouch_since = {s: v for s, v in book.vouch_since.items() if now_ms - v <= memory_ms}

    def _remember(self, now_ms: int, hot: NDArray[np.int64], now_hot: NDArray[np.int64]) -> None:
        """Remember the audiences of the sketched products with events now (``hot``, sorted), if sampled.

        Before any candidate is judged: ring products hot at the same tick see each other.
        """
        sketches = self.sketches
        changed = hot[in_sorted(hot, now_hot)]
        changed = changed[sketches.nonempty[sketches.row_of[changed]]]
        if changed.size:
            sig = sketches.signatures(changed)
            self.audiences.remember(
                changed, self.catalog.seller_of[changed].astype(np.int64), sig, now_ms=now_ms
            )

    def _read(self, now_ms: int, cand: NDArray[np.int64]) -> _Audiences:
        """The audiences of the candidates ``cand`` (sorted, watched, sampled), as several signals read them.

        Their samples and their sampled users' earlier events; one pass over the audience memory for
        each (:meth:`AudienceMemory.best_match`: lockstep, seller ring, the co-audiences, the seller
        pool), chance weighed by each user's activity (``trust.chance_heavy_users``: heavy users are in
        many audiences by chance); the activity's spread (:func:`activity_dispersion`).
        """
        t = self.cfg.trust
        sketches = self.sketches
        sig = sketches.signatures(cand)
        values = sketches.values(cand)
        sellers = self.catalog.seller_of[cand].astype(np.int64)
        weight = None
        if t.chance_heavy_users > 0:
            pool = (sketches.product_of_row >= 0) & sketches.nonempty
            pool[sketches.row_of[cand]] = False  # the reference: the other hot audiences' users
            ref = activity_reference(sketches.sig[pool], sketches._fit_val()[pool])
            weight = activity_weights(sig, values, ref, t.chance_heavy_users)
        match = self.audiences.best_match(
            cand,
            sellers,
            sig,
            now_ms=now_ms,
            z=t.lockstep_z,
            population=float(self._population()),
            co_lift=t.co_audience_lift,
            weight=weight,
            min_evidence=t.lockstep_evidence,
            light=t.co_audience_light_evidence > 0,
            light_lift=t.co_audience_light_lift,
            light_low_lift=t.hold_light_low_lift,
        )
        sampled, mean, dispersion = activity_dispersion(sig, values)
        m, n = match, cand.size
        light = _overlap(n, m.light_evidence, m.light_other, m.light_shared, m.light_sampled)
        low = _overlap(n, m.low_evidence, m.low_other, m.low_shared, m.low_sampled)
        pool_shared = np.zeros(n, np.int64) if m.seller_shared is None else m.seller_shared
        pool_expected = np.zeros(n) if m.seller_expected is None else m.seller_expected
        return _Audiences(
            cand, sellers, sig, match, light, low, pool_shared, pool_expected, sampled, mean, dispersion
        )

    def _judge(
        self, now_ms: int, a: _Audiences, slots: NDArray[np.int64], feats: dict[str, NDArray[np.float64]]
    ) -> None:
        """The refusal ladder: each ready candidate's first refusal, else its hold (README, "Trust guard").

        Every signal gives its verdict on all the candidates at once, with the numbers behind it; a
        candidate is refused by the first signal in this order that refuses it (a sticky refusal,
        ``book.ring_refusals``, that may expose a board member it shares its users with:
        :meth:`_expose`), else held by the first whose evidence is still accumulating (:meth:`_hold`),
        else held for a vouch with a short sample (:meth:`_hold_vouch`).  A candidate refused earlier
        (or exposed by a candidate judged before it) is not judged again.
        """
        t = self.cfg.trust
        seller_ring, seller_ring_looking = self._seller_ring(a)
        co_audience, co_audience_looking = self._co_audience(a)
        light, light_looking = self._co_audience_light(a)
        light_low, light_low_looking = self._co_audience_light_low(a)
        seller_pool, seller_pool_looking = self._seller_pool(a)
        blind, blind_looking = self._blind_buyers(a)
        uniform, uniform_looking = self._uniform_accounts(now_ms, a)
        lockstep, dense_block = self._lockstep(a), self._dense_block(now_ms, a)
        refusals = (
            lockstep,
            seller_ring,
            co_audience,
            light,
            light_low,
            seller_pool,
            dense_block,
            blind,
            uniform,
        )
        # held up to trust.hold_evidence_s while the overlap's evidence grows, else up to trust.hold_max_s
        suspects = (
            seller_pool_looking,
            co_audience_looking,
            seller_ring_looking,
            light_looking,
            light_low_looking,
        )
        holds = (uniform_looking, self._seller_sibling(now_ms, a), blind_looking)
        vouched = np.zeros(a.slots.size, np.bool_)  # ready only because the model vouched, this tick
        if "model_vouched" in feats:
            vouched = feats["model_vouched"][np.searchsorted(slots, a.slots)] > 0.0
        for j, slot in enumerate(a.slots.tolist()):
            if slot in self.book.ring_refusals:
                continue
            refusal = next((v for v in refusals if v.hit[j]), None)
            if refusal is not None:
                reason = refusal.reason(j)
                self.book.ring_refusals[slot] = (reason, now_ms)
                self.guard.lockstep[slot] = reason
                if refusal.partner is not None and refusal.shared is not None:
                    partner, shared = int(refusal.partner[j]), float(refusal.shared[j])
                    self._expose(now_ms, slot, partner, shared, int(a.sellers[j]), slots, feats)
                continue
            suspect = next((v for v in suspects if v.hit[j]), None)
            hold = next((v for v in holds if v.hit[j]), None)
            self._hold(
                now_ms,
                slot,
                None if suspect is None else suspect.reason(j),
                None if hold is None else hold.reason(j),
            )
            if suspect is light_low_looking and slot in self.guard.held and slot in self.book.suspected:
                self.book.low_held.setdefault(slot, self.book.suspected[slot])  # of suspected only
            looked = max(float(co_audience.value[j]), float(seller_pool.value[j]))  # beyond co_lift
            if slot not in self.guard.held and vouched[j] and looked >= t.vouch_confirm_evidence:
                self._hold_vouch(now_ms, slot, int(a.sampled[j]))

    def _with(
        self, kind: str, partner: NDArray[np.int64], numbers: Callable[[int], str]
    ) -> Callable[[int], str]:
        """Candidate ``j``'s reason ``<kind>_<partner j's id>_<numbers(j)>``: an overlap's refusal or hold."""
        return lambda j: f"{kind}_{self._name(int(partner[j]))}_{numbers(j)}"

    def _lockstep(self, a: _Audiences) -> Verdict:
        """*Lockstep* (README, "audience memory"): its users largely in a remembered audience.

        ``trust.lockstep_similarity`` of its sampled users, at their lower confidence bound, beyond chance
        and ``trust.lockstep_evidence`` powers of ten against it (:meth:`AudienceMemory.best_match`).
        """
        m = a.match
        hit = m.sim >= self.cfg.trust.lockstep_similarity
        reason = self._with("lockstep_with", m.other, partial(match_numbers, m))
        return Verdict(hit, reason, m.sim, m.other, m.shared / np.maximum(m.sampled, 1))

    def _seller_ring(self, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Seller ring* (README, "audience memory"): its users in a remembered audience of its own seller.

        Refused from ``trust.seller_overlap_similarity`` of its sampled users; held
        (``seller_ring_looking``) while that overlap is ``trust.hold_evidence`` powers of ten against
        chance at ``trust.hold_seller_lift`` times chance or more, short of it.
        """
        t, m = self.cfg.trust, a.match
        numbers = partial(match_numbers, m, same=True)
        reason = self._with("seller_ring_with", m.other_same, numbers)
        looking = self._with("seller_ring_looking", m.other_same, numbers)
        hit = (m.other_same >= 0) & (m.sim_same >= t.seller_overlap_similarity)
        evidence = chance_evidence(m.shared_same, m.sampled_same, m.chance_same)
        evidence[m.shared_same < t.hold_seller_lift * m.sampled_same * m.chance_same] = 0.0
        held = (
            (m.other_same >= 0)
            & (evidence >= t.hold_evidence)
            & (t.hold_evidence > 0 and t.hold_seller_lift > 0)
        )
        shared = m.shared_same / np.maximum(m.sampled_same, 1)
        return Verdict(hit, reason, m.sim_same, m.other_same, shared), Verdict(held, looking, evidence)

    def _co_audience(self, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Co-audience*: its users in a remembered audience far beyond chance (CopyCatch's question).

        ``trust.co_audience_lift`` times chance and ``trust.co_audience_evidence`` powers of ten against
        it; held (``co_audience_looking``) from ``trust.hold_evidence`` powers of ten at ``_HOLD_LIFT``
        times that lift, short of a refusal.
        """
        t, m = self.cfg.trust, a.match
        numbers = partial(co_numbers, m)
        reason = self._with("co_audience_with", m.co_other, numbers)
        looking = self._with("co_audience_looking", m.co_other, numbers)
        hit = m.co_evidence >= t.co_audience_evidence
        lift = _HOLD_LIFT * t.co_audience_lift  # a concentrated overlap: organic ones are 5-8x chance
        held = (
            (m.co_evidence >= t.hold_evidence) & (m.co_shared >= lift * m.co_expected) & (t.hold_evidence > 0)
        )
        shared = m.co_shared / np.maximum(m.co_sampled, 1)
        return Verdict(hit, reason, m.co_evidence, m.co_other, shared), Verdict(held, looking, m.co_evidence)

    def _co_audience_light(self, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Co-audience among the light users* (those the heavy-user rule leaves at weight 1).

        Refused from ``trust.co_audience_light_evidence`` powers of ten (0: off), held
        (``co_audience_light_looking``) from ``trust.hold_light_evidence`` (0: off).
        """
        t, light, numbers = self.cfg.trust, a.light, partial(light_numbers, a.match)
        reason = self._with("co_audience_light_with", light.other, numbers)
        looking = self._with("co_audience_light_looking", light.other, numbers)
        hit = (light.evidence >= t.co_audience_light_evidence) & (t.co_audience_light_evidence > 0)
        held = (light.evidence >= t.hold_light_evidence) & (t.hold_light_evidence > 0)
        shared = light.shared / np.maximum(light.sampled, 1)
        refuse = Verdict(hit, reason, light.evidence, light.other, shared)
        return refuse, Verdict(held, looking, light.evidence)

    def _co_audience_light_low(self, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Co-audience among the light users at a crowd's weaker lift* (a crowd's later product).

        From ``trust.hold_light_low_lift`` times chance (0: off) and ``trust.hold_light_low_evidence``
        powers of ten, held (``co_audience_light_low_looking``, ``book.low_held``) while fewer than
        ``trust.hold_light_low_users`` light users are sampled (or since held so); a product so held is
        refused once its overlap reaches ``trust.hold_light_low_refuse`` powers of ten (0: never).
        """
        t, low, numbers = self.cfg.trust, a.low, partial(low_numbers, a.match)
        reason = self._with("co_audience_light_low_with", low.other, numbers)
        looking = self._with("co_audience_light_low_looking", low.other, numbers)
        low_held = np.array([s in self.book.low_held for s in a.slots.tolist()], np.bool_)
        hit = low_held & (low.evidence >= t.hold_light_low_refuse) & (t.hold_light_low_refuse > 0)
        held = (low.evidence >= t.hold_light_low_evidence) & (
            low_held | (low.sampled < t.hold_light_low_users)
        )
        held &= t.hold_light_low_lift > 0
        shared = low.shared / np.maximum(low.sampled, 1)
        return Verdict(hit, reason, low.evidence, low.other, shared), Verdict(held, looking, low.evidence)

    def _seller_pool(self, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Co-audience with the seller*: its users pooled over its seller's other remembered audiences.

        One count against the summed expectation (:func:`pooled_evidence`) at ``trust.co_audience_lift``
        times chance: refused from ``trust.co_audience_evidence`` powers of ten, held
        (``co_audience_looking_seller``) from ``trust.hold_evidence`` at ``_HOLD_LIFT`` times that lift
        where it is the candidate's strongest overlap.
        """
        t, m = self.cfg.trust, a.match
        shared, expected = a.pool_shared, a.pool_expected
        evidence = pooled_evidence(shared, expected)
        evidence[shared < t.co_audience_lift * expected] = 0.0

        def numbers(j: int) -> str:
            return pooled_numbers(int(shared[j]), float(expected[j]), float(evidence[j]))

        def reason(j: int) -> str:
            return f"co_audience_with_seller_{self.catalog.sellers.name(int(a.sellers[j]))}_" + numbers(j)

        def looking(j: int) -> str:
            return f"co_audience_looking_seller_{numbers(j)}"

        hit = evidence >= t.co_audience_evidence
        lift = _HOLD_LIFT * t.co_audience_lift
        held = (evidence >= t.hold_evidence) & (evidence >= m.co_evidence) & (shared >= lift * expected)
        held &= t.hold_evidence > 0
        share = shared / np.maximum(m.sampled_same, 1)
        return Verdict(hit, reason, evidence, m.other_same, share), Verdict(held, looking, evidence)

    def _dense_block(self, now_ms: int, a: _Audiences) -> Verdict:
        """*Dense block* (FRAUDAR): its users' weighted number of other recently hot products they acted on.

        Each product hot within ``trust.dense_block_memory_s`` weighs ``1 / log(its users + 5)``
        (:meth:`AudienceMemory.block_density`); refused from ``trust.dense_block_density``.
        """
        t = self.cfg.trust
        within_ms = round(t.dense_block_memory_s * 1000)
        dense, n = self.audiences.block_density(a.slots, a.sig, now_ms=now_ms, within_ms=within_ms)

        def reason(j: int) -> str:
            return f"dense_block_{dense[j]:.2f}_over_{n[j]}_products"

        return Verdict(dense >= t.dense_block_density, reason, dense)

    def _blind_buyers(self, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Blind buyers* (the funnel): its sampled buyers who bought with no view of theirs seen.

        Refused by :func:`blind_buyers_refused` (against the catalogue's share, ``funnel_share``; nan:
        not judged, then nothing is refused or held); held (``blind_looking``) with fewer than
        ``trust.blind_min_buyers`` buyers, at least 2 and ``_HOLD_BLIND_SHARE`` of them blind (and above
        the refusal's bar), until the test has its buyers.
        """
        t = self.cfg.trust
        buyers, blind = blind_buyers(a.sig, self.sketches.funnel(a.slots))
        catalogue = self.funnel_share.share()

        def reason(j: int) -> str:
            return blind_reason(int(buyers[j]), int(blind[j]), catalogue)

        def looking(j: int) -> str:
            return hold_reason(f"blind_looking_{int(blind[j])}_blind", int(buyers[j]), t.blind_min_buyers)

        hit = blind_buyers_refused(buyers, blind, catalogue, t)
        held = (buyers < t.blind_min_buyers) & (blind >= 2) & (blind >= buyers * _HOLD_BLIND_SHARE)
        held &= (t.blind_buyer_share > 0) & (catalogue < 1.0)  # nan: not judged
        held &= blind >= buyers * max(t.blind_buyer_share, t.blind_buyer_contrast * catalogue)
        share = blind / np.maximum(buyers, 1)
        return Verdict(hit, reason, share), Verdict(held, looking, share)

    def _uniform_accounts(self, now_ms: int, a: _Audiences) -> tuple[Verdict, Verdict]:
        """*Uniform accounts*: its sampled users acted alike before (variance about their mean).

        From ``trust.uniform_min_users`` sampled users averaging ``trust.uniform_min_events`` earlier
        events with a variance below ``trust.uniform_max_dispersion`` times that mean, only where the
        catalogue's users spread their rates (:meth:`catalogue_overdispersion`, from
        ``trust.uniform_catalogue_overdispersion``; nan: not judged).  Held (``uniform_looking``) from
        ``_HOLD_UNIFORM_USERS`` sampled users short of the test's, and, for up to ``trust.hold_max_s``,
        short of ``trust.uniform_confirm_users``.
        """
        t = self.cfg.trust
        n, mean, disp = a.sampled, a.mean, a.dispersion
        alike = (mean >= t.uniform_min_events) & (disp < t.uniform_max_dispersion)  # 0: off
        uniform = alike & (n >= t.uniform_min_users)
        looks = alike & (n >= _HOLD_UNIFORM_USERS) & (n < t.uniform_min_users) & (t.hold_max_s > 0)
        confirm = t.uniform_confirm_users  # a larger sample while the hold lasts (0: off)
        if confirm > t.uniform_min_users and t.hold_max_s > 0 and uniform.any():
            since = np.array([self.book.held_since.get(s, now_ms) for s in a.slots.tolist()], np.int64)
            short = uniform & (n < confirm) & (now_ms - since <= t.hold_max_s * 1000)
            uniform &= ~short
            looks |= short
        phi = math.nan
        if uniform.any() or looks.any():  # only where the catalogue's users are heterogeneous
            phi = self.catalogue_overdispersion(now_ms, a.slots)
            if not phi >= t.uniform_catalogue_overdispersion:  # nan: not judged
                uniform[:] = False
                looks[:] = False

        def reason(j: int) -> str:
            return uniform_reason(int(n[j]), float(mean[j]), float(disp[j]), phi)

        def looking(j: int) -> str:
            sampled = int(n[j])
            needed = t.uniform_min_users if sampled < t.uniform_min_users else t.uniform_confirm_users
            numbers = f"_dispersion_{float(disp[j]):.2f}_mean_{float(mean[j]):.1f}"
            return hold_reason("uniform_looking", sampled, needed, numbers)

        return Verdict(uniform, reason, disp), Verdict(looks, looking, disp)

    def _seller_sibling(self, now_ms: int, a: _Audiences) -> Verdict:
        """*The sibling hold*: another product of its seller hot within ``trust.hold_sibling_s`` (0: off).

        Held (``seller_sibling_<id>``) while both audience samples hold fewer than
        ``trust.hold_sampled_users`` users: two young audiences of one seller cannot yet show whether
        they are one group of accounts.
        """
        t = self.cfg.trust
        within_ms = round(t.hold_sibling_s * 1000)
        sibling, sibling_n = self.audiences.recent_sibling(
            a.slots, a.sellers, now_ms=now_ms, within_ms=within_ms
        )

        def looking(j: int) -> str:
            return hold_reason(
                f"seller_sibling_{self._name(int(sibling[j]))}", int(a.sampled[j]), t.hold_sampled_users
            )

        held = (sibling >= 0) & (sibling_n < t.hold_sampled_users) & (a.sampled < t.hold_sampled_users)
        held &= t.hold_sibling_s > 0  # off (a sibling remembered at this very tick would still be "within 0")
        return Verdict(held, looking, sibling_n.astype(np.float64))

    def _expose(
        self,
        now_ms: int,
        slot: int,
        partner: int,
        shared: float,
        seller: int,
        slots: NDArray[np.int64],
        feats: dict[str, NDArray[np.float64]],
    ) -> None:
        """*A ring exposed later*: the board member ``partner`` whose audience holds refused ``slot``'s users.

        The ring's earlier product, promoted before its sibling exposed it, leaves the board
        (``ring_member_of_<slot>_shared_<n>%``, a sticky, evicting refusal; a sticky refusal it got on the
        board, e.g. a recycled audience, did not evict it), unless it was exposed so already, or the
        refused candidate fails its own figures (``TrustGuard.own_reasons``: a flash sale that never
        converts shares deal hunters with real trends, and its overlap is no ring's proof).
        """
        earlier = self.book.ring_refusals.get(partner, ("", 0))[0]
        if partner not in self._members() or earlier.startswith("ring_member_of_"):
            return
        seller_id = self.catalog.sellers.name(seller) if seller >= 0 else None
        own = self.guard.own_reasons(self._name(slot), seller_id, feats, int(np.searchsorted(slots, slot)))
        if own and not soft_refusal(own):
            return
        exposed = f"ring_member_of_{self._name(slot)}_shared_{shared:.0%}"
        self.book.ring_refusals[partner] = (exposed, now_ms)
        self.guard.lockstep[partner] = exposed

    def _board_seller_union(self, now_ms: int) -> None:
        """*A board member re-judged against its seller*: off the board once its seller's audiences hold it.

        ``trust.board_seller_union_*``.

        Each member's sampled users are compared with the union of the remembered audiences of its
        seller's other products hot within ``trust.board_seller_union_s``
        (:meth:`AudienceMemory.seller_union`, chance by the users' activity weights as for candidates);
        from ``trust.board_seller_union_evidence`` powers of ten (:func:`pooled_evidence`) at
        ``trust.co_audience_lift`` x chance on, the member is exposed (``ring_member_of_seller_union_...``,
        an evicting refusal).  ``O(members * siblings * k log k)`` per tick.
        """
        t = self.cfg.trust
        sketches = self.sketches
        members = np.array(sorted(self._members()), np.int64)
        refused = self.book.ring_refusals
        done = [refused.get(s, ("", 0))[0].startswith("ring_member_of_") for s in members.tolist()]
        members = members[~np.array(done, np.bool_)]
        members = members[sketches.is_watched(members)]
        members = members[sketches.nonempty[sketches.row_of[members]]]
        if members.size == 0:
            return
        within_ms = round(t.board_seller_union_s * 1000)
        sellers = self.catalog.seller_of[members].astype(np.int64)
        mem = self.audiences  # only the members with a sibling remembered in the window are compared
        live = (mem.slot >= 0) & (mem.seen_ms >= now_ms - min(within_ms, mem.memory_ms))
        sib = (mem.seller[live][None, :] == sellers[:, None]) & (mem.slot[live][None, :] != members[:, None])
        has = sib.any(axis=1) & (sellers >= 0)
        if not has.any():
            return
        every = members  # the reference pool leaves out every member's row, compared or not
        members, sellers = members[has], sellers[has]
        sig = sketches.signatures(members)
        weight = None
        if t.chance_heavy_users > 0:
            pool = (sketches.product_of_row >= 0) & sketches.nonempty
            pool[sketches.row_of[every]] = False
            ref = activity_reference(sketches.sig[pool], sketches._fit_val()[pool])
            weight = activity_weights(sig, sketches.values(members), ref, t.chance_heavy_users)
        shared, expected, sibling = self.audiences.seller_union(
            members,
            sellers,
            sig,
            now_ms=now_ms,
            within_ms=within_ms,
            population=float(self._population()),
            weight=weight,
        )
        evidence = pooled_evidence(shared, expected)
        evidence[shared < t.co_audience_lift * expected] = 0.0
        for j in np.flatnonzero(evidence >= t.board_seller_union_evidence).tolist():
            slot = int(members[j])
            numbers = pooled_numbers(int(shared[j]), float(expected[j]), float(evidence[j]))
            exposed = f"ring_member_of_seller_union_{self._name(int(sibling[j]))}_{numbers}"
            self.book.ring_refusals[slot] = (exposed, now_ms)
            self.guard.lockstep[slot] = exposed

    def catalogue_overdispersion(self, now_ms: int, cand: NDArray[np.int64]) -> float:
        """The spread of the catalogue's users' activity rates, the uniform-accounts test's reference.

        Pooled over the other hot audiences' samples (:func:`pooled_overdispersion`, every sketched
        row but the candidates'), when they hold ``_UNIFORM_POOL_USERS`` sampled users; else the
        last such figure of the last ``trust.audience_memory_s`` (a quiet hour has few hot audiences,
        but the population's spread does not change with them); nan when there is none.
        ``O(max_sketched * k)``.
        """
        sketches = self.sketches
        self.book.catalogue_checked_ms = now_ms
        others = sketches.product_of_row >= 0
        others[sketches.row_of[cand]] = False
        others &= sketches.nonempty
        phi, pool = pooled_overdispersion(sketches.sig[others], sketches._fit_val()[others])
        if pool >= _UNIFORM_POOL_USERS:
            self.book.catalogue_phi = (phi, now_ms)
            return phi
        last, when = self.book.catalogue_phi
        return last if now_ms - when <= self.cfg.trust.audience_memory_s * 1000 else math.nan

    def _hold(self, now_ms: int, slot: int, suspect: str | None, hold: str | None) -> None:
        """*The hold*: a ready candidate held back while the guard's audience evidence is still accumulating.

        Held (a soft refusal, ``held_...``: never a block by itself) with ``suspect``, the first hold of an
        overlap beyond chance short of a refusal (:meth:`_judge`'s ``suspects``), for up to
        ``trust.hold_evidence_s`` since it was first held (re-judged at every tick, so it ends in a
        refusal once the evidence is there); else with ``hold`` (its few sampled users act alike, a
        sibling of its seller is hot, its few buyers so far are blind: :meth:`_judge`'s ``holds``), for
        up to ``trust.hold_max_s``.  None: no such hold.  Nothing else is held.  ``O(1)``.
        """
        t = self.cfg.trust
        if suspect is not None and t.hold_evidence_s > 0:
            since = self.book.held_since.setdefault(slot, now_ms)
            if now_ms - since <= t.hold_evidence_s * 1000:
                self.book.suspected[slot] = since
                self.guard.held[slot] = f"{HELD}{suspect}"
                return
        if hold is None or t.hold_max_s <= 0:
            return
        since = self.book.held_since.setdefault(slot, now_ms)
        if now_ms - since <= t.hold_max_s * 1000:
            self.guard.held[slot] = hold

    def _hold_vouch(self, now_ms: int, slot: int, sampled: int) -> None:
        """Hold a candidate the model vouched for until the guard has sampled its audience.

        The model vouches for an early shape, often while the guard's audience sample holds a dozen
        users, and a promoted product is not judged again; so a candidate ready only because the
        model vouched, whose audience sample holds fewer than ``trust.vouch_confirm_users`` users, is
        held (``held_vouch_sample_<n>_of_<K>_sampled``, a soft refusal: never a block by itself) for
        at most ``trust.vouch_confirm_s`` since it was first held so, and re-judged at every tick it
        is ready: it is judged by every test once it has the users (a refusal then), and passes when
        the hold has run out.  Nothing is carried: a tick it is not ready it is simply not judged.
        ``O(1)``.
        """
        t = self.cfg.trust
        if t.vouch_confirm_users <= 0 or t.vouch_confirm_s <= 0 or sampled >= t.vouch_confirm_users:
            return
        since = self.book.vouch_since.setdefault(slot, now_ms)
        if now_ms - since <= t.vouch_confirm_s * 1000:
            self.guard.held[slot] = hold_reason("vouch_sample", sampled, t.vouch_confirm_users)

    def keep_sketched(
        self,
        now_ms: int,
        hot: NDArray[np.int64],
        evidence: NDArray[np.float64],
        cap: int,
    ) -> NDArray[np.int64]:
        """The products to sketch after this tick (sorted), at most ``cap``, most evidence first.

        The ``hot`` ones with events now, and those sketched before that were last hot with events
        at most ``_SKETCH_IDLE_MS`` ago.  Only hot products with events count, so screened ticks
        (quiet products not read) keep the same set.  ``O(sketched + hot)`` per tick.
        """
        old, old_ms, old_ev = self.book.sketched, self.book.sketched_ms, self.book.sketched_ev
        if old_ms.shape != old.shape:  # restored from a checkpoint without the times: hot as of now
            old_ms, old_ev = np.full(old.size, now_ms, np.int64), np.full(old.size, np.inf)
        # old ones hot within _SKETCH_IDLE_MS and not hot now, then the hot ones; at most cap (most
        # evidence first, stable), sorted by slot: one compiled pass (kernels/columns.py keep_hot)
        slots, self.book.sketched_ms, self.book.sketched_ev = keep_hot(
            old, old_ms, old_ev, hot, evidence, now_ms=now_ms, idle_ms=_SKETCH_IDLE_MS, cap=cap
        )
        return slots

    def sketch_only(self, now_ms: int, slots: NDArray[np.int64], evidence: NDArray[np.float64]) -> None:
        """What ``Engine._evaluate`` does when no candidate's score can reach a board limit.

        Nothing is watched or traced and every candidate (touched, may be sketched) has a rule score
        below ``_may_matter``'s limit: none is kept, ready or judged, so the only effect is on the
        audiences, where products whose change evidence reaches ``SKETCH_EVIDENCE`` are hot.  The
        evidence is the detector's own column, exactly (``evidence``: of ``slots``, ``Engine._sketch_only``).
        """
        hot = evidence >= SKETCH_EVIDENCE
        none = np.zeros(slots.size, np.bool_)
        self.track(now_ms, slots, hot, ~none, none, {"evidence": evidence})  # all touched

    def quiet(self, now_ms: int) -> None:
        """What ``Engine._evaluate`` does to the audiences at a tick whose candidates are all quiet.

        None is hot: sketched products are unwatched and old lockstep refusals expire, exactly as
        :meth:`track` does with no hot row (called so, with empty columns).
        """
        empty = np.zeros(0, np.bool_)
        self.track(now_ms, _EMPTY, empty, empty, empty, {"evidence": np.zeros(0)})

    def quiet_from_ms(self) -> int | None:
        """The first tick at which :meth:`quiet` may change anything; None: it is not called.

        A tick whose touched products are all quiet calls it while products are sketched or ring
        refusals remembered.  With nothing hot it only ages what the guard remembers (sketched
        products idle past ``_SKETCH_IDLE_MS``; refusals, holds and vouches past
        ``trust.audience_memory_s``), reads the catalogue's reference every ``_CATALOGUE_EVERY_MS``
        while anything is sketched, and resets the guard's holds and refusals from
        ``book.ring_refusals``.  Before the first of those times, with the guard's fields already as it
        sets them, a call leaves every field with the same values: skipping it gives the same
        decisions, and the compiled tick loop need not stop for it.  ``_NEVER``: at once.
        """
        sk = self.book.sketched
        if not (sk.size or self.book.ring_refusals):
            return None
        forgets = self.forgets_ms()
        if forgets is None:
            return _NEVER
        due = [forgets]
        if sk.size:
            ms = self.book.sketched_ms
            if ms.shape != sk.shape or sk.size > self.cfg.trust.max_sketched or not (sk[1:] > sk[:-1]).all():
                return _NEVER  # restored without the times, or a set keep_hot would reorder or trim
            due.append(int(ms.min()) + _SKETCH_IDLE_MS + 1)
            due.append(self.book.catalogue_checked_ms + _CATALOGUE_EVERY_MS)
        return min(due)

    def forgets_ms(self) -> int | None:
        """The first tick at which the guard forgets a ring refusal, hold or vouch, or ``_FAR``.

        Forgotten past ``trust.audience_memory_s`` (:meth:`track` ages them at every
        call).  None where the guard's fields are not as such a call with nothing ready leaves them:
        products held, lockstep refusals other than ``book.ring_refusals``', suspects no hold keeps.
        """
        refusals, g = self.book.ring_refusals, self.guard
        if g.held or list(g.lockstep.items()) != [(s, v[0]) for s, v in refusals.items()]:
            return None
        if not (
            self.book.suspected.keys() <= self.book.held_since.keys()
            and self.book.low_held.keys() <= self.book.suspected.keys()
        ):
            return None
        memory_ms = round(self.cfg.trust.audience_memory_s * 1000)
        due = [min(v[1] for v in refusals.values()) + memory_ms + 1] if refusals else []
        for since in (self.book.held_since, self.book.vouch_since):
            if since:
                due.append(min(since.values()) + memory_ms + 1)
        return min(due, default=_FAR)

    def step(self) -> AudienceStep | None:
        """The audiences for the compiled tick loop's own audience steps; None: it stops for them.

        The loop then takes :meth:`sketch_only` (a tick whose screened-in products may not score) and
        :meth:`quiet` (a tick whose touched products are all screened out) itself, as
        :meth:`track` runs them with nothing ready, and stops for Python before any such
        tick at which a ring refusal, hold or vouch is to be forgotten (``py_due``): up to then those
        steps only change the sketched set, the audience samples watched and the audience memory.
        Where the catalogue's reference is due (``catalogue_due``, while anything is sketched) it
        stops after the step, and Python takes that reference and the tick's end (``CATALOGUE``).
        None where :meth:`forgets_ms` finds the guard's fields not already as a call sets them.
        """
        if (forgets := self.forgets_ms()) is None:
            return None
        book, cap = self.book, self.cfg.trust.max_sketched
        sk, ms, ev = book.sketched, book.sketched_ms, book.sketched_ev
        if ms.shape != sk.shape or ev.shape != sk.shape or sk.size > cap or not (sk[1:] > sk[:-1]).all():
            return None  # restored without the times, or a set keep_hot would reorder or trim
        mem = self.audiences
        return AudienceStep(
            sk, ms, ev, _SKETCH_IDLE_MS, cap, SKETCH_EVIDENCE, bool(self.book.ring_refusals), forgets,
            self.book.catalogue_checked_ms + _CATALOGUE_EVERY_MS, mem.slot, mem.seller, mem.seen_ms, mem.sig,
            self.catalog.seller_of,
        )  # fmt: skip

    def index_memory_rows(self, before: NDArray[np.int64]) -> None:
        """The audience memory's index of its rows (slot -> row) after the compiled loop gave rows away.

        ``before``: its slots before the call.  A row that changed hands drops its old slot from the
        index (unless the slot holds another row by now) and indexes its new one: the index then
        maps every held slot to its row, as :meth:`AudienceMemory.remember` keeps it.
        """
        mem = self.audiences
        index = mem._row  # noqa: SLF001
        now = mem.slot
        for r in np.flatnonzero(now != before).tolist():
            old, new = int(before[r]), int(now[r])
            if old >= 0 and index.get(old) == r:
                del index[old]
            if new >= 0:
                index[new] = r


def _overlap(
    n: int,
    evidence: NDArray[np.float64] | None,
    other: NDArray[np.int64] | None,
    shared: NDArray[np.int64] | None,
    sampled: NDArray[np.int64] | None,
) -> _Overlap:
    """A light-user co-audience of :meth:`AudienceMemory.best_match` (None: nothing remembered, none)."""
    if evidence is None or other is None or shared is None or sampled is None:
        zero = np.zeros(n, np.int64)
        return _Overlap(np.zeros(n), zero - 1, zero, zero)
    return _Overlap(evidence, other, shared, sampled)


def _load_ids(inline: tuple[str, ...], path: str, key: str) -> frozenset[str]:
    ids = set(inline)
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            msg = f"trust.{key}: cannot read {path}: {exc.strerror}; give a file with one id per line"
            raise ConfigError(msg) from exc
        ids.update(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#"))
    return frozenset(ids)


def _pow2(n: int) -> int:
    """The power of two at or above ``n`` (``trust.activity_cells``)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def _funnel_half_lives(cfg: Config) -> tuple[int, int]:
    """Half-lives (ms) of the catalogue's blind-cart share: the caps window, and the baseline's."""
    return (round(cfg.trust.cap_window_s * 1000), round(cfg.score.baseline_half_life_s * 1000))


def fresh_shortfall_evidence(
    fresh_share: NDArray[np.float64],
    bar: float,
    events_per_user: NDArray[np.float64],
    users: NDArray[np.float64],
) -> NDArray[np.float64]:
    """How far below ``bar`` a product's fresh share is, in powers of ten against chance, float64[m].

    Its events (decayed, trend window: ``events_per_user`` x ``unique_users``, as the reader divides
    them) hold ``f`` from fresh accounts where a share of ``bar`` would give ``lam``; the chance of so
    few fresh events or fewer is at most ``exp(-(lam - f + f ln(f / lam)))`` (the Poisson lower
    tail's Chernoff bound), its minus log10 is returned (0 where the share reaches the bar).  A young
    product's dozen events without a fresh account tell little against a catalogue share of a few
    percent; a ring's hundred events without one tell a lot.
    """
    raw = events_per_user * np.maximum(users, 1.0)
    lam = bar * raw
    f = np.minimum(fresh_share * raw, lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lam - f + np.where(f > 0.0, f * np.log(np.where(f > 0.0, f, 1.0) / np.maximum(lam, 1e-300)), 0.0)
    return np.asarray(np.maximum(kl, 0.0) / math.log(10.0), np.float64)
