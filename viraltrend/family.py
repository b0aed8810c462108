"""A family of seeded, multi-day scenarios to tune and evaluate detection on (issues 10 and 13).

:func:`simulate_family` writes ``events.ndjson`` (the input contract, ``shared/contract/events.md``)
and ``truth.json`` for a :class:`FamilyScenario`.  Where :mod:`viraltrend.simulate` draws one
kind of day, a family scenario draws *what kind of world* it is from its seed, so a detector tuned
on some seeds can be judged on others.  The same scenario always gives byte-identical files.

Time: ``n_days`` days of event time from ``start_ts_ms``; day 1 is a warm-up (history for the
baselines) and nothing in it is scored: ``truth["score_from_ts"]`` is its end.  Every onset of a
viral product, distractor or attack lies on days 2..n.

Drawn per scenario (``truth["draws"]``)
---------------------------------------
* base traffic: Zipf popularity over ``n_products`` (exponent uniform in 0.9-1.3), sellers,
  categories and users heavy-tailed, a daily cycle ``1 + a cos(2 pi (hour - peak) / 24)`` with
  amplitude ``a`` in 0.3-0.8 and a random peak hour; users keep their ids across days; the top
  ranks (``steady``, 3-5 products) follow a gentle cycle (``a / 4``) and must not be promoted.
* 6-10 organic viral products (``truth["viral"]``), each with

  - a doubling time drawn log-uniformly in 60-3600 s, with ``bucket`` "fast" (<= 300 s),
    "medium" (300-1200 s) or "slow" (> 1200 s);
  - a final size log-uniform in 300-50,000 events, raised when needed so that the peak rate
    reaches about 2.5x the product's own peak-hour baseline (capped at 50,000), then scaled
    down together so that all viral products stay below 35 % of the traffic;
  - a shape: ``"hawkes"`` (self-exciting, audience-limited, branching ratio 1.1-1.6 and a kernel
    time constant that gives the drawn doubling time) or ``"logistic"`` (smooth logistic growth
    with that early doubling time), one or the other with equal odds;
  - a base popularity rank log-uniform over the whole catalogue (some already had a real
    baseline); the process starts at ``max(baseline, 1/120 s)``, so at the onset the product's
    rate leaves its baseline (at least doubles);
  - a type mix drawn from a Dirichlet around an organic viral mix (shares, carts and purchases);
  - users mostly new to the product (a repeat share of 10-30 %), recruited from the whole user
    population as the product grows;
  - an onset on days 2..n: a third near the daily peak, a third at night, a third anywhere
    (``phase``).  The onset is the start of the process (``onset_ts``).
* distractors, none of which may be promoted:

  - 4-8 flash spikes (``spikes``): 1-20 min long, 100-2,000 events, a flat or decaying rate,
    an organic type mix, nearly all events from distinct users;
  - 2-4 steady slow risers (``slow_risers``): a mid-ranked product whose rate grows with a
    doubling time of 6-24 h over one to two days (at most 16x), then holds, following the cycle;
  - 3-6 creator-video bursts (``bursts``): a jump then exponential decay (time constant 3-15 min,
    200-3,000 events), distinct users;
  - the steady head products above.
* delivery: 3-5 % of events arrive up to 60 s late, 0.2 % arrive 5.3-15 min late (beyond the
  default ``decay.allowed_lateness_s`` of 300 s, so the engine rejects them as ``late``); both
  put events out of order.  No duplicates, no malformed lines.
* 2-4 attacks (``truth["attacks"]``, one row per attacked product), of a kind drawn from
  ``bot_farm`` (5-50 accounts, many events each, 1-3 products), ``click_farm`` (300-2,000 fresh
  accounts sending 1-3 events per product), ``aged_ring`` (20-500 aged accounts, organic mix,
  2-10 products), ``camouflaged_ring`` (20-500 accounts that also engage with popular products,
  FRAUDAR-style camouflage, 1-10 products) and ``staggered_ring`` (20-1,000 accounts, 2-10
  products hit one after the other, minutes to hours apart).  Each attack also draws: account
  age (``fresh``: never seen before the attack; ``aged``: active organically from day 1 on, a few
  events a day on popular products), type mix (``fake``: views, likes, shares only; ``organic``:
  carts and purchases included), one fresh seller for all its products or the products' own
  sellers, a ramp ``shape`` (``fast_ramp``: doubling every 60-180 s, ``slow_ramp``: every
  600-1500 s, or ``step``) and 500-5,000 events per product.  Every drawn parameter is in its
  rows.  Attacks (with camouflage and aged accounts' history) stay below 20 % of the traffic.
* 0-1 really viral product of a banned seller (kind ``banned_viral``: the organic process and
  ordinary users; its seller in ``truth["banned_sellers"]``).

Counts in the truth are lines of the events file (the very late events included).

Examples
--------
>>> import json, pathlib, tempfile
>>> small = FamilyScenario(seed=3, n_days=2, n_products=3_000, events_per_day=20_000, n_users=10_000)
>>> with tempfile.TemporaryDirectory() as tmp:
...     result = simulate_family(small, pathlib.Path(tmp))
>>> result.n_lines
40000
>>> result.truth["score_from_ts"] - small.start_ts_ms
86400000
>>> {v["bucket"] for v in result.truth["viral"]} <= {"fast", "medium", "slow"}
True
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
from numpy.typing import NDArray

from viraltrend.events import EVENT_TYPES
from viraltrend.simulate import SimulationResult, _hawkes_counts

__all__ = ["ATTACK_KINDS", "BUCKETS", "FamilyScenario", "bucket_of", "simulate_family"]

#: Shares of view, like, comment, share, add_to_cart, purchase (the order of EVENT_TYPES).
_BASE_MIX: Final = (0.80, 0.08, 0.02, 0.03, 0.05, 0.02)
_VIRAL_MIX: Final = (0.58, 0.12, 0.04, 0.12, 0.09, 0.05)
_FAKE_MIX: Final = (0.62, 0.22, 0.0, 0.16, 0.0, 0.0)
_QUANTITY_TYPES: Final = ("add_to_cart", "purchase")
_DAY_S: Final = 86_400
_LN2: Final = math.log(2.0)
_FAST_S, _SLOW_S = 300.0, 1200.0
BUCKETS: Final = ("fast", "medium", "slow")
ATTACK_KINDS: Final = ("bot_farm", "click_farm", "aged_ring", "camouflaged_ring", "staggered_ring")
_VIRAL_SHARE: Final = 0.35  # all viral products (the banned one too) stay below this share of events
_DISTRACTOR_SHARE: Final = 0.15
_ATTACK_SHARE: Final = 0.20
_START_RATE_PER_S: Final = 1.0 / 120.0  # a viral process starts at max(baseline, this)
_MAX_VIRAL: Final = 50_000.0
_CHUNK_LINES: Final = 500_000
_TS_MIN_MS: Final = 946_684_800_000  # 2000-01-01
_TS_MAX_MS: Final = 4_102_444_800_000  # 2100-01-01


@dataclass(frozen=True, slots=True)
class FamilyScenario:
    """One member of the family: everything that determines its files.

    Attributes
    ----------
    seed : int
        Seeds every draw (the world, the events, their delivery).
    n_days : int
        Days of event time, at least 2; day 1 is the warm-up.
    n_products : int
        Catalogue size.
    events_per_day : int
        Events (lines) per day; the file holds ``n_days * events_per_day`` lines.
    start_ts_ms : int
        Event time of the start, epoch milliseconds (default 2025-11-27 00:00 UTC).
    n_sellers, n_categories, n_users : int
        Sizes of the other id spaces.
    n_viral, n_spikes, n_slow_risers, n_bursts, n_steady, n_attacks, n_banned_viral : tuple of int
        Inclusive ranges the scenario draws each count from.
    """

    seed: int = 0
    n_days: int = 3
    n_products: int = 40_000
    events_per_day: int = 300_000
    start_ts_ms: int = 1_764_201_600_000
    n_sellers: int = 2_000
    n_categories: int = 30
    n_users: int = 150_000
    n_viral: tuple[int, int] = (6, 10)
    n_spikes: tuple[int, int] = (4, 8)
    n_slow_risers: tuple[int, int] = (2, 4)
    n_bursts: tuple[int, int] = (3, 6)
    n_steady: tuple[int, int] = (3, 5)
    n_attacks: tuple[int, int] = (2, 4)
    n_banned_viral: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        lows = {"seed": 0, "n_days": 2, "n_products": 1_000, "events_per_day": 10_000, "n_sellers": 1}
        lows |= {"n_categories": 1, "n_users": 1_000, "start_ts_ms": _TS_MIN_MS}
        for name, low in lows.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                msg = f"{name} must be an integer >= {low}, got {value!r}"
                raise ValueError(msg)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and not (len(value) == 2 and 0 <= value[0] <= value[1] <= 100):
                msg = f"{f.name} must be a (low, high) range with 0 <= low <= high <= 100, got {value!r}"
                raise ValueError(msg)
        if self.start_ts_ms + self.n_days * _DAY_S * 1000 > _TS_MAX_MS:
            msg = f"start_ts_ms + n_days must end before 2100-01-01, got start_ts_ms={self.start_ts_ms}"
            raise ValueError(msg)


def bucket_of(doubling_s: float) -> str:
    """The ramp bucket of a doubling time: "fast" (<= 300 s), "medium" (<= 1200 s) or "slow"."""
    return "fast" if doubling_s <= _FAST_S else "medium" if doubling_s <= _SLOW_S else "slow"


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def _count(rng: np.random.Generator, span: tuple[int, int]) -> int:
    return int(rng.integers(span[0], span[1] + 1))


def _mix_around(rng: np.random.Generator, mix: tuple[float, ...], concentration: float) -> list[float]:
    """A type mix drawn from a Dirichlet centred on ``mix`` (zero shares stay zero), rounded."""
    m = np.asarray(mix, np.float64)
    out = np.zeros(m.shape[0])
    out[m > 0] = rng.dirichlet(concentration * m[m > 0])
    return [round(float(x), 4) for x in out]


def _draw_types(rng: np.random.Generator, n: int, mix: list[float] | tuple[float, ...]) -> NDArray[np.int8]:
    cdf = np.cumsum(mix) / sum(mix)
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(mix) - 1).astype(np.int8)


@dataclass(slots=True)
class _Events:
    """Events under construction: relative ts (ms), product, type, component (0: base), user (-1: drawn)."""

    ts: list[NDArray[np.int64]] = field(default_factory=list)
    product: list[NDArray[np.int64]] = field(default_factory=list)
    types: list[NDArray[np.int8]] = field(default_factory=list)
    comp: list[NDArray[np.int32]] = field(default_factory=list)
    user: list[NDArray[np.int64]] = field(default_factory=list)

    def add(
        self, ts: NDArray[np.int64], product: Any, types: NDArray[np.int8], comp: int,
        user: NDArray[np.int64] | None = None,
    ) -> None:  # fmt: skip
        """Add events; ``product`` is one product index or one per event."""
        n = ts.shape[0]
        self.ts.append(ts)
        self.product.append(np.broadcast_to(np.asarray(product, np.int64), (n,)))
        self.types.append(types)
        self.comp.append(np.full(n, comp, np.int32))
        self.user.append(np.full(n, -1, np.int64) if user is None else user.astype(np.int64))

    def total(self) -> int:
        """Events added so far."""
        return sum(t.shape[0] for t in self.ts)


@dataclass(slots=True)
class _Ctx:
    """The drawn world and the events being built."""

    s: FamilyScenario
    n_sec: int
    n_total: int
    zipf: float
    amplitude: float
    peak_hour: float
    p_rank: NDArray[np.float64]  # share of base traffic per popularity rank
    rank_to_product: NDArray[np.int64]
    seller: NDArray[np.int64]  # seller index per product (attacks and banned sellers reassign some)
    category: NDArray[np.int64]
    cents: NDArray[np.int64]
    cycle: NDArray[np.float64]  # relative intensity per second of event time
    taken: set[int] = field(default_factory=set)  # popularity ranks given a special role
    n_steady: int = 0  # the top ranks, steady (taken, but open to attack accounts' cover)
    events: _Events = field(default_factory=_Events)
    comps: list[dict[str, Any]] = field(default_factory=list)  # component k + 1

    def new_comp(self, record: dict[str, Any]) -> int:
        """Register a special component; returns its id (1, 2, ...)."""
        self.comps.append(record)
        return len(self.comps)

    def base_rate(self, rank: int) -> float:
        """Mean base events/s of the product at ``rank``."""
        return float(self.n_total * self.p_rank[rank] / self.n_sec)

    def pick_rank(self, rng: np.random.Generator, lo: int, hi: int) -> int:
        """A free popularity rank, log-uniform in ``[lo, hi)``, marked taken."""
        hi = min(hi, self.s.n_products)
        while True:
            rank = min(int(_loguniform(rng, lo + 1, hi + 1)) - 1, hi - 1)
            if rank not in self.taken:
                self.taken.add(rank)
                return rank

    def product(self, rank: int) -> int:
        """Product index of a popularity rank."""
        return int(self.rank_to_product[rank])

    def onset_s(self, rng: np.random.Generator, span_s: float, phase: str = "any") -> int:
        """An onset on days 2..n leaving ``span_s`` before the end; ``phase`` peak/night/any."""
        lo, hi = _DAY_S + 600, max(_DAY_S + 601, int(self.n_sec - span_s))
        if phase == "any":
            return int(rng.integers(lo, hi))
        hour = self.peak_hour + (rng.uniform(-1, 1) if phase == "peak" else 12 + rng.uniform(-2, 2))
        start_tod_s = (self.s.start_ts_ms // 1000) % _DAY_S
        offset = int((hour * 3600 - start_tod_s) % _DAY_S)
        days = [d for d in range(1, self.s.n_days) if lo <= d * _DAY_S + offset < hi]
        return d_ * _DAY_S + offset if (d_ := _pick(rng, days)) is not None else int(rng.integers(lo, hi))


def _pick(rng: np.random.Generator, items: list[int]) -> int | None:
    return items[int(rng.integers(len(items)))] if items else None


def _times(rng: np.random.Generator, counts: NDArray[np.int64], first_s: int) -> NDArray[np.int64]:
    """Relative ts (ms): ``counts[k]`` events uniform within second ``first_s + k``, in second order."""
    sec = np.repeat(np.arange(counts.shape[0], dtype=np.int64) + first_s, counts)
    out: NDArray[np.int64] = sec * 1000 + rng.integers(0, 1000, sec.shape[0])
    return out


def _profile_times(rng: np.random.Generator, weights: NDArray[np.float64], n: int, first_s: int) -> Any:
    """Relative ts (ms) of exactly ``n`` events spread over seconds with the given weights."""
    counts = rng.multinomial(n, weights / weights.sum()).astype(np.int64)
    return _times(rng, counts, first_s)


def _recruit(rng: np.random.Generator, n: int, n_users: int, repeat: float) -> NDArray[np.int64]:
    """Users of ``n`` events in time order: new to the product unless a repeat (share ``repeat``)."""
    is_new = rng.random(n) >= repeat
    if n:
        is_new[0] = True
    n_new = int(is_new.sum())
    pool = rng.choice(n_users, size=min(n_new, n_users), replace=False).astype(np.int64)
    latest = np.cumsum(is_new) - 1  # index of the latest new user at each event
    old = np.floor(rng.random(n) * (latest + 1)).astype(np.int64)
    idx = np.where(is_new, latest, old) % pool.shape[0] if n else latest
    out: NDArray[np.int64] = pool[idx]
    return out


def _make_ctx(s: FamilyScenario, rng: np.random.Generator) -> _Ctx:
    n, n_sec = s.n_products, s.n_days * _DAY_S
    zipf = round(float(rng.uniform(0.9, 1.3)), 4)
    amplitude = round(float(rng.uniform(0.3, 0.8)), 4)
    peak_hour = round(float(rng.uniform(0.0, 24.0)), 3)
    p = np.arange(1, n + 1, dtype=np.float64) ** -zipf
    hour = ((s.start_ts_ms / 1000.0 + np.arange(n_sec) + 0.5) % _DAY_S) / 3600.0
    cycle = 1.0 + amplitude * np.cos(2.0 * np.pi * (hour - peak_hour) / 24.0)
    return _Ctx(
        s=s, n_sec=n_sec, n_total=s.n_days * s.events_per_day, zipf=zipf, amplitude=amplitude,
        peak_hour=peak_hour, p_rank=p / p.sum(), rank_to_product=rng.permutation(n).astype(np.int64),
        seller=np.floor(s.n_sellers * rng.random(n) ** 3).astype(np.int64),
        category=np.floor(s.n_categories * rng.random(n) ** 2).astype(np.int64),
        cents=np.maximum(49, np.round(rng.lognormal(np.log(2500.0), 0.9, n))).astype(np.int64),
        cycle=cycle,
    )  # fmt: skip


# ------------------------------------------------------------------ organic viral products
def _viral_counts(
    rng: np.random.Generator, shape: str, doubling_s: float, size: float, start_rate: float, n_bins: int
) -> tuple[NDArray[np.int64], dict[str, Any]]:
    """Per-second counts int64[n_bins] of one viral process from its onset, and its parameters."""
    if shape == "logistic":
        r = _LN2 / doubling_s
        n0 = min(start_rate / r, size / 20.0)
        t_mid = math.log((size - n0) / n0) / r
        cum = size / (1.0 + np.exp(-r * (np.arange(n_bins + 1, dtype=np.float64) - t_mid)))
        counts = rng.poisson(np.diff(cum)).astype(np.int64)
        return counts, {"shape": "logistic", "midpoint_s": round(t_mid, 1)}
    branching = float(rng.uniform(1.1, 1.6))
    growth = 2.0 ** (1.0 / doubling_s)  # per 1 s bin: decay + branching * (1 - decay) = growth
    decay = (branching - growth) / (branching - 1.0)
    counts = _hawkes_counts(rng, n_bins, start_rate, branching, decay, 1e12, size)
    params = {"shape": "hawkes", "branching_ratio": round(branching, 4)}
    return counts, params | {"time_constant_s": round(-1.0 / math.log(decay), 2)}


def _plan_viral(ctx: _Ctx, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Ranks, doubling times, sizes, shapes and onsets of ``n`` viral products (sizes capped together)."""
    plans: list[dict[str, Any]] = []
    for _ in range(n):
        rank = ctx.pick_rank(rng, 0, ctx.s.n_products)
        doubling = round(_loguniform(rng, 60.0, 3600.0), 1)
        base = ctx.base_rate(rank)
        start = max(base, _START_RATE_PER_S)
        need = 10.0 * max(base * (1.0 + ctx.amplitude), start) * doubling / _LN2  # peak ~2.5x the baseline
        size = min(max(_loguniform(rng, 300.0, _MAX_VIRAL), need), _MAX_VIRAL)
        phase = ("peak", "night", "any")[int(rng.integers(3))]
        plans.append({
            "rank": rank, "doubling_s": doubling, "size": size, "start_rate": start, "phase": phase,
            "shape": ("hawkes", "logistic")[int(rng.integers(2))], "repeat": float(rng.uniform(0.1, 0.3)),
            "mix": _mix_around(rng, _VIRAL_MIX, 60.0), "onset_s": ctx.onset_s(rng, 7200.0, phase),
        })  # fmt: skip
    total = sum(p["size"] for p in plans)
    for p in plans:
        p["size"] = max(p["size"] * min(1.0, _VIRAL_SHARE * ctx.n_total / max(total, 1.0)), 20.0)
    return plans


def _add_viral(ctx: _Ctx, rng: np.random.Generator, plan: dict[str, Any], kind: str) -> dict[str, Any]:
    """Generate one planned viral process; returns its component record."""
    onset = plan["onset_s"]
    counts, params = _viral_counts(
        rng, plan["shape"], plan["doubling_s"], plan["size"], plan["start_rate"], ctx.n_sec - onset
    )
    ts = _times(rng, counts, onset)
    product = ctx.product(plan["rank"])
    per_min = np.add.reduceat(counts, np.arange(0, counts.shape[0], 60)) if counts.shape[0] else counts
    record = {
        "kind": kind, "product": product, "rank": plan["rank"], "onset_s": onset,
        "doubling_s": plan["doubling_s"], "bucket": bucket_of(plan["doubling_s"]), **params,
        "size_target": round(plan["size"], 1), "phase": plan["phase"], "mix": plan["mix"],
        "repeat_share": round(plan["repeat"], 4), "peak_per_min": int(per_min.max(initial=0)),
        "baseline_per_min": round(60.0 * ctx.base_rate(plan["rank"]), 4),
    }  # fmt: skip
    comp = ctx.new_comp(record)
    users = _recruit(rng, ts.shape[0], ctx.s.n_users, plan["repeat"])
    ctx.events.add(ts, product, _draw_types(rng, ts.shape[0], plan["mix"]), comp, users)
    return record


# ------------------------------------------------------------------ distractors
def _add_distractors(ctx: _Ctx, rng: np.random.Generator) -> None:
    """Flash spikes, slow risers and creator-video bursts, scaled to stay below 15 % of the traffic."""
    s = ctx.s
    spikes: list[dict[str, Any]] = [
        {"duration_s": round(_loguniform(rng, 60.0, 1200.0)),
         "size": round(_loguniform(rng, 100.0, 2000.0), 1),
         "shape": ("flat", "decaying")[int(rng.integers(2))]}
        for _ in range(_count(rng, s.n_spikes))
    ]  # fmt: skip
    bursts: list[dict[str, Any]] = [
        {"time_constant_s": round(float(rng.uniform(180.0, 900.0)), 1),
         "size": round(_loguniform(rng, 200.0, 3000.0), 1)}
        for _ in range(_count(rng, s.n_bursts))
    ]  # fmt: skip
    risers: list[dict[str, Any]] = []
    for _ in range(_count(rng, s.n_slow_risers)):
        doubling = float(rng.uniform(6.0, 24.0)) * 3600.0
        span = round(
            min(float(rng.uniform(1.0, 2.0)) * _DAY_S, 4.0 * doubling, ctx.n_sec - _DAY_S / 2 - 3600)
        )
        risers.append({"rank": ctx.pick_rank(rng, 10, 2_000), "doubling_s": round(doubling), "span_s": span})
    t = np.arange(ctx.n_sec, dtype=np.float64)
    for r in risers:
        onset = int(rng.integers(_DAY_S // 2, max(_DAY_S // 2 + 1, int(ctx.n_sec - r["span_s"]))))
        grow = np.clip(t - onset, 0.0, r["span_s"])
        r["onset_s"] = onset
        r["rate"] = ctx.base_rate(r["rank"]) * (2.0 ** (grow / r["doubling_s"]) - 1.0) * ctx.cycle
    total = sum(x["size"] for x in spikes + bursts) + sum(float(r["rate"].sum()) for r in risers)
    scale = min(1.0, _DISTRACTOR_SHARE * ctx.n_total / max(total, 1.0))
    for x in spikes:
        _add_spike(ctx, rng, x, max(round(x["size"] * scale), 10))
    for x in bursts:
        _add_burst(ctx, rng, x, max(round(x["size"] * scale), 10))
    for r in risers:
        counts = rng.poisson(r.pop("rate") * scale).astype(np.int64)
        product = ctx.product(r["rank"])
        mix = _mix_around(rng, _BASE_MIX, 80.0)
        comp = ctx.new_comp({"kind": "slow_riser", "product": product, "mix": mix, **r})
        ts = _times(rng, counts, 0)
        ctx.events.add(ts, product, _draw_types(rng, ts.shape[0], mix), comp)


def _add_spike(ctx: _Ctx, rng: np.random.Generator, x: dict[str, Any], n: int) -> None:
    rank = ctx.pick_rank(rng, 20, ctx.s.n_products)
    start = ctx.onset_s(rng, x["duration_s"] + 600)
    sec = np.arange(x["duration_s"], dtype=np.float64)
    weights = np.ones_like(sec) if x["shape"] == "flat" else np.exp(-3.0 * sec / x["duration_s"])
    ts = _profile_times(rng, weights, n, start)
    mix = _mix_around(rng, _BASE_MIX, 60.0)
    product = ctx.product(rank)
    comp = ctx.new_comp(
        {"kind": "spike", "product": product, "rank": rank, "onset_s": start, "mix": mix, **x}
    )
    ctx.events.add(ts, product, _draw_types(rng, n, mix), comp, _recruit(rng, n, ctx.s.n_users, 0.05))


def _add_burst(ctx: _Ctx, rng: np.random.Generator, x: dict[str, Any], n: int) -> None:
    rank = ctx.pick_rank(rng, 20, ctx.s.n_products)
    duration = round(5 * x["time_constant_s"])
    start = ctx.onset_s(rng, duration + 600)
    ts = _profile_times(rng, np.exp(-np.arange(duration) / x["time_constant_s"]), n, start)
    mix = _mix_around(rng, _VIRAL_MIX, 60.0)
    product = ctx.product(rank)
    record = {"kind": "burst", "product": product, "rank": rank, "onset_s": start, "duration_s": duration}
    comp = ctx.new_comp(record | {"mix": mix, **x})
    ctx.events.add(ts, product, _draw_types(rng, n, mix), comp, _recruit(rng, n, ctx.s.n_users, 0.1))


# ------------------------------------------------------------------ attacks
def _plan_attack(ctx: _Ctx, rng: np.random.Generator, kind: str, k: int) -> dict[str, Any]:
    """Draw one attack's parameters (see the module docstring)."""

    def either(a: str, b: str, p_a: float = 0.5) -> str:
        return a if rng.random() < p_a else b

    acc_range, n_prod, age, mix, camo = {
        "bot_farm": ((5, 50), (1, 3), either("fresh", "aged", 0.7), either("fake", "organic", 0.7), False),
        "click_farm": ((300, 2000), (1, 5), "fresh", either("fake", "organic", 0.85), False),
        "aged_ring": ((20, 500), (2, 10), "aged", "organic", False),
        "camouflaged_ring": ((20, 500), (1, 10), either("fresh", "aged"), either("fake", "organic"), True),
        "staggered_ring": ((20, 1000), (2, 10), either("fresh", "aged"), either("fake", "organic"), False),
    }[kind]
    n = int(rng.integers(n_prod[0], n_prod[1] + 1))
    shape = ("fast_ramp", "slow_ramp", "step")[int(rng.integers(3))]
    ramp = {"fast_ramp": (60.0, 180.0), "slow_ramp": (600.0, 1500.0), "step": (0.0, 0.0)}[shape]
    doubling = round(float(rng.uniform(*ramp)), 1)
    plateau = float(rng.uniform(15.0, 45.0) if shape != "step" else rng.uniform(20.0, 60.0)) * 60
    gaps = [
        _loguniform(rng, 120.0, 7200.0) if kind == "staggered_ring" else rng.uniform(0, 30) for _ in range(n)
    ]
    return {
        "kind": kind, "attack_id": f"a-{k}", "accounts_total": round(_loguniform(rng, *acc_range)),
        "account_age": age, "mix": mix, "camouflage": camo, "n_products": n, "shape": shape,
        "ramp_doubling_s": doubling, "duration_s": round(6 * doubling + plateau),
        "offsets_s": [0, *np.cumsum(gaps[1:]).round().astype(int).tolist()],
        "one_seller": bool(rng.random() < (0.8 if kind in ("bot_farm", "click_farm") else 0.5)),
        "volumes": [_loguniform(rng, 500.0, 5000.0) for _ in range(n)],
        "type_mix": _mix_around(rng, _FAKE_MIX if mix == "fake" else _VIRAL_MIX, 60.0),
        "camouflage_ratio": round(float(rng.uniform(0.5, 2.0)), 3) if camo else 0.0,
    }  # fmt: skip


_Cover = tuple[NDArray[np.int64], NDArray[np.int64], int, int]  # seconds, users, component, top ranks


def _add_attack(
    ctx: _Ctx, rng: np.random.Generator, a: dict[str, Any], scale: float, pool: Any
) -> list[_Cover]:
    """Generate one planned attack; ``pool`` int64[accounts] are its accounts' user ids.

    Returns the organic-looking cover of its accounts, to be generated once every product is taken.
    """
    n_acc = pool.shape[0]
    onset = ctx.onset_s(rng, a["offsets_s"][-1] + a["duration_s"] + 1800)
    sec = np.arange(a["duration_s"], dtype=np.float64)
    ramp_s = 6 * a["ramp_doubling_s"]
    weights = 2.0 ** (np.minimum(sec - ramp_s, 0.0) / max(a["ramp_doubling_s"], 1.0))
    share = 0.5 / n_acc + 0.5 * rng.dirichlet(np.full(n_acc, 2.0))  # bot farm: none below half the mean
    seller = ctx.s.n_sellers + int(a["attack_id"][2:]) if a["one_seller"] else None
    per_account = np.zeros(n_acc, np.int64)
    end_s = onset
    for j in range(a["n_products"]):
        start = min(onset + a["offsets_s"][j], ctx.n_sec - a["duration_s"])
        end_s = max(end_s, start + a["duration_s"])
        if a["kind"] == "click_farm":  # each account hits the product 1-3 times, accounts in sequence
            per = 1 + rng.choice(3, size=n_acc, p=(0.5, 0.3, 0.2))
            local = np.repeat(np.arange(n_acc, dtype=np.int64), per)
        else:
            n = max(round(a["volumes"][j] * scale), 20)
            if a["kind"] == "bot_farm":
                local = np.searchsorted(np.cumsum(share) / share.sum(), rng.random(n), side="right")
            else:  # rings: accounts join as the ramp grows (all at once for a step)
                joined = (
                    np.ceil(n_acc * (np.arange(n) + 1) / n) if a["shape"] != "step" else np.full(n, n_acc)
                )
                local = np.floor(rng.random(n) * np.maximum(joined, min(5, n_acc))).astype(np.int64)
            local = np.minimum(local, n_acc - 1).astype(np.int64)
        ts = _profile_times(rng, weights, local.shape[0], start)
        rank = ctx.pick_rank(rng, 200, ctx.s.n_products)
        product = ctx.product(rank)
        if seller is not None:
            ctx.seller[product] = seller
        record = {k: v for k, v in a.items() if k not in ("volumes", "offsets_s")}
        record |= {"product": product, "rank": rank, "onset_s": start, "stagger_s": start - onset}
        comp = ctx.new_comp(record)
        ctx.events.add(ts, product, _draw_types(rng, ts.shape[0], a["type_mix"]), comp, pool[local])
        per_account += np.bincount(local, minlength=n_acc)
    extra = ctx.new_comp({"kind": "attack_cover", "attack_id": a["attack_id"]})
    cover: list[_Cover] = []
    if a["account_age"] == "aged":  # a few organic events a day on popular products, from day 1 on
        per_day = 1 + rng.poisson(4.0, (n_acc, ctx.s.n_days))
        day = np.repeat(np.tile(np.arange(ctx.s.n_days), n_acc), per_day.ravel())
        who = np.repeat(np.arange(n_acc), per_day.sum(axis=1))
        cover.append((day * _DAY_S + rng.integers(0, _DAY_S, day.shape[0]), pool[who], extra, 5_000))
    if a["camouflage"]:  # FRAUDAR-style: the same accounts also engage with popular products
        n_cover = np.minimum(1 + rng.poisson(a["camouflage_ratio"] * per_account), 3 * per_account + 1)
        who = np.repeat(np.arange(n_acc), n_cover)
        lo = onset - (7200 if a["account_age"] == "aged" else 0)
        t = rng.integers(lo, min(end_s + 7200, ctx.n_sec), who.shape[0])
        cover.append((t, pool[who], extra, 500))
    return cover


def _add_cover(
    ctx: _Ctx, rng: np.random.Generator, t_s: NDArray[np.int64], users: NDArray[np.int64], comp: int, top: int
) -> None:
    """Organic-looking events of attack accounts at seconds ``t_s`` on the ``top`` most popular products.

    Only ordinary and steady products: none with a role in the truth (viral, distractor, attacked).
    """
    top = min(top, ctx.s.n_products)
    p = ctx.p_rank[:top].copy()
    p[[r for r in ctx.taken if ctx.n_steady <= r < top]] = 0.0
    ranks = np.asarray(rng.choice(top, size=t_s.shape[0], p=p / p.sum()))
    order = np.argsort(t_s, kind="stable")
    ts = t_s[order] * 1000 + rng.integers(0, 1000, t_s.shape[0])
    types = _draw_types(rng, t_s.shape[0], _BASE_MIX)
    ctx.events.add(ts, ctx.rank_to_product[ranks[order]], types, comp, users[order])


def _add_attacks(ctx: _Ctx, rng: np.random.Generator, banned: list[dict[str, Any]]) -> list[str]:
    """All attacks, then the banned sellers' really viral products; returns the banned sellers."""
    kinds = [ATTACK_KINDS[int(i)] for i in rng.permutation(len(ATTACK_KINDS))]
    n_attacks = _count(rng, ctx.s.n_attacks)
    plans = [_plan_attack(ctx, rng, kinds[k % len(kinds)], k) for k in range(n_attacks)]
    volume = 0.0
    for a in plans:
        per = 1.7 * a["accounts_total"] if a["kind"] == "click_farm" else sum(a["volumes"]) / a["n_products"]
        volume += a["n_products"] * per * (1.0 + a["camouflage_ratio"])
        volume += 5.0 * ctx.s.n_days * a["accounts_total"] * (a["account_age"] == "aged")
    scale = min(1.0, _ATTACK_SHARE * ctx.n_total / max(volume, 1.0))
    sizes = [
        max(round(a["accounts_total"] * (scale if a["kind"] == "click_farm" else 1.0)), 5) for a in plans
    ]
    ids = ctx.s.n_users + rng.choice(4 * max(sum(sizes), 1), size=sum(sizes), replace=False).astype(np.int64)
    at, cover = 0, []
    for a, n in zip(plans, sizes, strict=True):
        a["accounts_total"] = n
        cover += _add_attack(ctx, rng, a, scale, ids[at : at + n])
        at += n
    for job in cover:
        _add_cover(ctx, rng, *job)
    sellers = []
    for j, plan in enumerate(banned):
        record = _add_viral(ctx, rng, plan, "banned_viral")
        sellers.append(ctx.s.n_sellers + 100 + j)
        ctx.seller[record["product"]] = sellers[-1]
        record |= {"attack_id": f"a-{n_attacks + j}", "account_age": "organic"}
    return [f"s-{x}" for x in sellers]


def _add_base(ctx: _Ctx, rng: np.random.Generator, n_base: int, n_steady: int) -> None:
    """Zipf popularity over the whole span: the daily cycle, a gentle one for the steady top ranks."""
    counts = rng.multinomial(n_base, ctx.p_rank)
    gentle = 1.0 + (ctx.cycle - 1.0) / 4.0
    for lo, hi, w in ((0, n_steady, gentle), (n_steady, ctx.s.n_products, ctx.cycle)):
        product = np.repeat(ctx.rank_to_product[lo:hi], counts[lo:hi])
        rng.shuffle(product)
        ts = _times(rng, rng.multinomial(product.shape[0], w / w.sum()).astype(np.int64), 0)
        ctx.events.add(ts, product, _draw_types(rng, ts.shape[0], _BASE_MIX), 0)


# ------------------------------------------------------------------ the whole scenario
def simulate_family(
    scenario: FamilyScenario, out_dir: Path, *, progress: Callable[[int, int], None] | None = None
) -> SimulationResult:
    """Write ``out_dir/events.ndjson`` and ``out_dir/truth.json`` for one member of the family.

    Parameters
    ----------
    scenario : FamilyScenario
        Which member; the files are a pure function of it.
    out_dir : Path
        Created if missing; the two files in it are overwritten.
    progress : callable, optional
        Called as ``progress(lines_written, n_lines)`` at the start and after each chunk.

    Returns
    -------
    SimulationResult
        Paths, line counts (no duplicates or garbage: both 0) and the ground truth.
    """
    s = scenario
    rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(s.seed).spawn(6)]
    ctx = _make_ctx(s, rngs[0])
    n_steady = _count(rngs[0], s.n_steady)
    ctx.n_steady = n_steady
    ctx.taken.update(range(n_steady))
    n_viral, n_banned = _count(rngs[1], s.n_viral), _count(rngs[1], s.n_banned_viral)
    plans = _plan_viral(ctx, rngs[1], n_viral + n_banned)
    for plan in plans[:n_viral]:
        _add_viral(ctx, rngs[1], plan, "viral")
    _add_distractors(ctx, rngs[2])
    banned = _add_attacks(ctx, rngs[3], plans[n_viral:])
    n_special = ctx.events.total()
    if n_special > 0.8 * ctx.n_total:
        msg = f"special events ({n_special}) exceed 80 % of n_days * events_per_day; raise events_per_day"
        raise ValueError(msg)
    _add_base(ctx, rngs[4], ctx.n_total - n_special, n_steady)
    ts, product, types, comp, user, late = _deliver(ctx, rngs[5])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path, truth_path = out_dir / "events.ndjson", out_dir / "truth.json"
    _write(ctx, events_path, ts, product, types, user, progress)
    truth = _truth(ctx, n_steady, ts, product, comp, user, banned)
    truth["late"] = late
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    return SimulationResult(events_path, truth_path, int(ts.shape[0]), 0, 0, truth)


def _deliver(ctx: _Ctx, rng: np.random.Generator) -> tuple[Any, Any, Any, Any, Any, dict[str, Any]]:
    """Arrival order (late and very late deliveries), and base users drawn heavy-tailed."""
    e = ctx.events
    ts_rel = np.concatenate(e.ts)
    n = ts_rel.shape[0]
    late_fraction = round(float(rng.uniform(0.03, 0.05)), 4)
    u = np.asarray(rng.random(n))
    late, very_late = u < late_fraction, u > 1.0 - 0.002
    delay = np.where(late, rng.integers(1, 60_001, n), 0)
    delay = np.where(very_late, rng.integers(320_000, 900_001, n), delay)
    order = np.argsort(ts_rel + delay, kind="stable")
    user = np.concatenate(e.user)[order]
    drawn = np.floor(ctx.s.n_users * rng.random(n) ** 2).astype(np.int64)
    user = np.where(user >= 0, user, drawn)
    info = {
        "fraction": late_fraction, "max_s": 60, "n_late": int(late.sum()),
        "very_late_fraction": 0.002, "very_late_s": [320, 900], "n_very_late": int(very_late.sum()),
    }  # fmt: skip
    ts = ts_rel[order] + ctx.s.start_ts_ms
    parts = (np.concatenate(e.product)[order], np.concatenate(e.types)[order], np.concatenate(e.comp)[order])
    return ts, *parts, user, info


def _write(
    ctx: _Ctx, path: Path, ts: Any, product: Any, types: Any, user: Any,
    progress: Callable[[int, int], None] | None,
) -> None:  # fmt: skip
    """The NDJSON lines, in chunks: event_id, ts, type, product_id, user_id, seller_id, category, price."""
    n = ctx.s.n_products
    ids = pl.DataFrame({"p": np.arange(n), "s": ctx.seller, "c": ctx.category, "cents": ctx.cents}).select(
        head=pl.concat_str(
            pl.lit(',"product_id":"p-'),
            pl.col("p").cast(pl.String).str.zfill(max(6, len(str(n - 1)))),
            pl.lit('","user_id":"u-'),
        ),
        tail=pl.concat_str(
            pl.lit('","seller_id":"s-'), pl.col("s").cast(pl.String),
            pl.lit('","category":"c-'), pl.col("c").cast(pl.String),
            pl.lit('","price":'), (pl.col("cents") // 100).cast(pl.String),
            pl.lit("."), (pl.col("cents") % 100).cast(pl.String).str.zfill(2), pl.lit("}"),
        ),
    )  # fmt: skip
    type_frag = pl.Series([f',"type":"{t}"' + ',"quantity":1' * (t in _QUANTITY_TYPES) for t in EVENT_TYPES])
    n_lines = int(ts.shape[0])
    if progress is not None:
        progress(0, n_lines)
    with path.open("wb") as f:
        for lo in range(0, n_lines, _CHUNK_LINES):
            hi = min(lo + _CHUNK_LINES, n_lines)
            df = pl.DataFrame({
                "eid": np.arange(lo, hi), "ts": ts[lo:hi], "t": types[lo:hi], "p": product[lo:hi],
                "u": user[lo:hi],
            })  # fmt: skip
            text = df.select(
                pl.concat_str(
                    pl.lit('{"event_id":"e-'), pl.col("eid").cast(pl.String),
                    pl.lit('","ts":'), pl.col("ts").cast(pl.String),
                    pl.lit(type_frag).gather("t"), pl.lit(ids["head"]).gather("p"),
                    pl.col("u").cast(pl.String), pl.lit(ids["tail"]).gather("p"),
                )
            )  # fmt: skip
            text.write_csv(f, include_header=False, quote_style="never")
            if progress is not None:
                progress(hi, n_lines)


def _truth(
    ctx: _Ctx, n_steady: int, ts: Any, product: Any, comp: Any, user: Any, banned: list[str]
) -> dict[str, Any]:
    """The ``truth.json`` document (counts over the lines of the events file)."""
    s = ctx.s
    width = max(6, len(str(s.n_products - 1)))
    by_comp = np.bincount(comp, minlength=len(ctx.comps) + 1)
    span = int(user.max(initial=0)) + 1
    users_of = np.bincount(
        np.unique(comp.astype(np.int64) * span + user) // span, minlength=len(ctx.comps) + 1
    )
    per_product = np.bincount(product, minlength=s.n_products)

    def ids(p: int) -> dict[str, Any]:
        return {
            "product_id": f"p-{p:0{width}d}", "seller_id": f"s-{ctx.seller[p]}",
            "category": f"c-{ctx.category[p]}", "price": int(ctx.cents[p]) / 100,
        }  # fmt: skip

    def at(c: dict[str, Any]) -> int:
        return int(s.start_ts_ms + 1000 * c["onset_s"])

    out: dict[str, Any] = {"family": dataclasses.asdict(s), "score_from_ts": s.start_ts_ms + _DAY_S * 1000}
    out["draws"] = {
        "zipf_exponent": ctx.zipf,
        "cycle_amplitude": ctx.amplitude,
        "peak_hour_utc": ctx.peak_hour,
    }
    out |= {
        "n_lines": int(ts.shape[0]),
        "viral": [],
        "spikes": [],
        "bursts": [],
        "slow_risers": [],
        "attacks": [],
    }
    cover = {
        c["attack_id"]: int(by_comp[k + 1]) for k, c in enumerate(ctx.comps) if c["kind"] == "attack_cover"
    }
    skip = ("kind", "product", "rank", "onset_s", "mix", "type_mix", "accounts_total")
    for k, c in enumerate(ctx.comps):
        kind, p, n = c["kind"], c.get("product", -1), int(by_comp[k + 1])
        if kind == "attack_cover":
            continue
        row = {**ids(p), "rank": c["rank"]} if "rank" in c else ids(p)
        extra = {key: v for key, v in c.items() if key not in skip}
        if kind in ("viral", "banned_viral"):
            mine = ts[product == p]
            after = int(np.count_nonzero(mine >= at(c)))
            first = int(np.count_nonzero((mine >= at(c)) & (mine < at(c) + 600_000)))
            row |= {"base_rank": c["rank"], "onset_ts": at(c), "events": n, "events_after_onset": after}
            row |= {"events_first_10min": first, "distinct_users": int(users_of[k + 1]), "type_mix": c["mix"]}
            if kind == "viral":
                out["viral"].append(row | extra)
                continue
            row |= {"kind": kind, "accounts": int(users_of[k + 1]), "camouflage": False, "n_products": 1}
            out["attacks"].append(row | {"stagger_s": 0, "mix": "organic"} | extra)
        elif kind == "spike":
            out["spikes"].append(
                row | {"ts": at(c), "events": n, "distinct_users": int(users_of[k + 1])} | extra
            )
        elif kind == "burst":
            out["bursts"].append(row | {"ts": at(c), "onset_ts": at(c), "events": n} | extra)
        elif kind == "slow_riser":
            out["slow_risers"].append(row | {"onset_ts": at(c), "events": n} | extra)
        else:
            row |= {"kind": kind, "onset_ts": at(c), "events": n, "accounts": int(users_of[k + 1])}
            row |= {"accounts_total": c["accounts_total"], "cover_events": cover[c["attack_id"]]}
            out["attacks"].append(row | {"mix": c["mix"], "type_mix": c["type_mix"]} | extra)
    steady = [int(ctx.rank_to_product[r]) for r in range(n_steady)]
    out["steady"] = [{**ids(p), "rank": r, "events": int(per_product[p])} for r, p in enumerate(steady)]
    out["banned_sellers"] = banned
    return out
