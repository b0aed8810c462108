"""Detection quality: the rule and the online model against three trending baselines, guard on and off.

Issues "Trust guard" and "Online model": do the rule and the online model find organic viral
products sooner and more precisely than simple trending methods, and does the trust guard keep
faked popularity off the board without costing organic recall?

1. **Scenarios.**  ``--seeds`` simulated days (default 3: seeds 1, 2, 3; 1M events, 100k
   products, 5 viral products, plus one bot farm, one click farm, one lockstep ring of 3-5
   products and one really viral product of a banned seller per seed), cached in
   ``benchmarks/out/sim-attacks-*``.  Each file is decoded once; every method then runs a fresh
   :class:`~viraltrend.engine.Engine` over the same batches (50k events), so the board policy
   (confirm hold, momentum check, hysteresis, dwell, caps, trust guard) is identical and only the
   score differs.
2. **Methods** (each a scorer with ``name`` and ``score_many``, fed the engine's feature columns):

   * ``rule``: the default :class:`~viraltrend.scoring.RuleScorer`
     (sigmoid(lift of the 5-min rate over the 24-h baseline) x sigmoid(Poisson z));
   * ``count_1h``: score = 1 if ``rate_1h_per_h >= T`` else 0.  ``T`` is the 99.9th percentile
     of ``rate_1h_per_h`` over every (candidate, tick) of one calibration hour of the first seed,
     20:00-21:00 UTC of event time (the daily traffic peak, so the steady products' evening peak
     is inside it; 20 h of history behind the 24-h baseline; the simulator puts no viral or
     attack onset there), computed once and kept fixed for every seed.  The same percentile
     over the second hour is reported as a sensitivity check;
   * ``movers``: Amazon "Movers & Shakers" ranks products by their sales-rank gain over 24 h.
     Approximated by the gain ratio ``g = rate_1h_per_h / baseline_per_h``, where
     ``baseline_per_h`` is the engine's 24-h rate floored at 2/h and the catalogue prior (the
     floor stands in for M&S only ranking products that already sell; without it one stray
     event on a cold product is an infinite gain).  ``score = sigmoid(3 ln(g / G) + logit(0.8))``:
     it crosses the promote threshold (0.8) exactly at ``g = G`` and the demote threshold (0.4)
     at ``g ~ 0.55 G``; ``G`` is the 99.9th percentile of ``g`` over the same calibration hour
     (the same "top 0.1 % of a normal hour" rule as ``T``);
   * ``poisson_z``: Twitter-trends style, the Poisson z-score of the 5-min count against the
     decayed 24-h baseline (feature ``z``) alone: ``score = clip(z / 10, 0, 1)`` (1 at z >= 10,
     promote threshold crossed at z = 8, demote below z = 4);
   * ``model``: the online model (``[model] enabled = true``, every other knob at its default),
     built by the engine itself: it starts cold (the rule decides and the reasons say so), learns
     from the labels the stream provides one horizon later, and scores once warm.  Its knobs
     (features, class balancing, ``model.promote_probability``, ``model.confirm_s``,
     ``model.fast_track_probability``) were chosen on seeds 4 and 5 (``--first-seed 4 --seeds 2``),
     never on the reported seeds 1-3.  Once warm, a candidate it scores with probability
     >= ``model.fast_track_probability`` waits only ``model.confirm_s`` on the board instead of
     ``board.confirm_s``;
   * ``model, confirm_s 60``: the model with ``model.confirm_s = 60`` (its fast track on; the
     default keeps ``model.confirm_s`` at ``board.confirm_s``, see ``FAST_CONFIRM_S``), and
     ``rule, confirm_s 60``: the rule with ``board.confirm_s = 60``, the fairness row: if the rule
     with the same shortcut is as early and as precise, the model has earned nothing of its own;
   * ``model, guard off`` is a diagnostic row: against ``rule, guard off`` it shows how much
     earlier the model would promote if the guard's distinct-user gate did not hold every scorer
     back (it also has the model's shorter confirm wait).

3. **Trust guard.**  ``on``: the default thresholds, and the seed's banned sellers
   (``truth["banned_sellers"]``) in ``trust.blocked_sellers``.  ``off`` (rule only):
   ``min_unique_users = 0``, ``max_fresh_share = 1``, ``min_conversion_ratio = 0``,
   ``lockstep_similarity = 1.01`` (the config accepts at most 1.0, but products hit by exactly the
   same accounts have MinHash similarity exactly 1.0 and are still flagged at 1.0), no blocked
   sellers.  The per-user caps in the kernels (``trust.cap_window_s``) stay on in ``off``; the
   diagnostic row ``rule, guard off, caps off`` also sets ``cap_window_s = 0``.
4. **Measures** against ``truth.json``, per method and seed and pooled: organic viral recall,
   median and max minutes from onset to first promotion (and, from a trace of the viral products,
   to the first tick at which the score alone reached the promote threshold), precision
   (promoted products that are organic viral / promoted), attack success (attacked products
   promoted / attacked products), steady and spike products promoted, other products promoted,
   organic viral products blocked; per organic viral product the earliest promotion any guarded
   method can make (first tick with ``unique_users >= trust.min_unique_users`` plus
   ``board.confirm_s``, and plus ``model.confirm_s`` for the rows with the shorter wait), the
   model against each method product by product, and the model's progressive-validation metrics.
5. **Output**: rich tables, ``benchmarks/out/detection.md`` (overwritten, with the machine,
   load average and UTC date) and ``benchmarks/out/onset_to_promotion_by_method.png``.

Run: ``.venv/bin/python benchmarks/bench_detection.py [--quick] [--events N] [--seeds K] [--first-seed S]``
(about 4 min for the default 3 seeds on 2 cores; simulating a missing seed adds about 10 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common  # first: sets the numba cache dir before numba is imported  # noqa: I001
import numpy as np
from _common import OUT_DIR, Report, loadavg, machine, verdict
from numpy.typing import NDArray

from viraltrend.config import Config, load_config
from viraltrend.engine import Engine
from viraltrend.events import EventBatch
from viraltrend.scoring import RuleScorer

MD_PATH = OUT_DIR / "detection.md"
PLOT_PATH = OUT_DIR / "onset_to_promotion_by_method.png"
BATCH = 50_000
#: Hours after the stream's start: 20:00-21:00 UTC of the first seed, the daily traffic peak, with 20 h
#: of history behind the 24-h baseline; the simulator draws viral and attack onsets within 10-75 % of
#: the day, so none falls in it.  The second hour is reported too, to show the sensitivity.
CALIB_HOURS = (20, 21)
ALT_CALIB_HOURS = (1, 2)
CALIB_PERCENTILE = 99.9
PROMOTE_AT = 0.8  # board.promote_threshold of the default config (checked at start)
FEW_MINUTES = 5.0  # "within a few minutes of onset", read as <= 5 min (as in bench_replay)
MAX_ATTACK_SUCCESS = 0.01
MAX_GUARD_RECALL_COST = 0.02
MIN_PRECISION = 0.9
#: The model's shorter confirm wait evaluated here (``model.confirm_s``), in the 30-90 s the issue asks
#: about.  On the tuning seeds 4 and 5 every value from 30 s to 210 s let one-off spikes onto the board
#: for the model and the rule alike, so the default ``model.confirm_s`` stays at ``board.confirm_s``.
FAST_CONFIRM_S = 60.0
SHORT = f"rule, confirm_s {FAST_CONFIRM_S:g}"  # the fairness row: the rule with the same shorter wait
MODEL_FAST = f"model, confirm_s {FAST_CONFIRM_S:g}"  # the model with its fast track at FAST_CONFIRM_S
LOCKSTEP_OFF = 1.01  # see main(): 1.0, the largest value the config accepts, still flags identical audiences

Columns = dict[str, NDArray[np.float64]]


# ------------------------------------------------------------------ scorers (baselines)
def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * np.clip(x, -60.0, 60.0)))


@dataclass(frozen=True, slots=True)
class CountThreshold:
    """Score 1 when the 1-hour engagement rate reaches a fixed threshold ``T``, else 0."""

    threshold: float
    name: str = "count_1h"

    def score_many(self, features: Columns) -> NDArray[np.float64]:
        return (features["rate_1h_per_h"] >= self.threshold).astype(np.float64)


@dataclass(frozen=True, slots=True)
class MoversShakers:
    """Gain of the 1-hour rate over the (floored) 24-hour rate; crosses 0.8 at ``gain == G``."""

    gain_at_promote: float
    steepness: float = 3.0
    name: str = "movers"

    def score_many(self, features: Columns) -> NDArray[np.float64]:
        gain = features["rate_1h_per_h"] / np.maximum(features["baseline_per_h"], 1e-12)
        x = self.steepness * np.log(np.maximum(gain, 1e-12) / self.gain_at_promote)
        return _sigmoid(x + math.log(PROMOTE_AT / (1.0 - PROMOTE_AT)))


def movers_gain(features: Columns) -> NDArray[np.float64]:
    """The gain ``MoversShakers`` scores (for the calibration)."""
    return features["rate_1h_per_h"] / np.maximum(features["baseline_per_h"], 1e-12)


@dataclass(frozen=True, slots=True)
class PoissonZ:
    """Poisson z-score of the 5-minute count against the decayed baseline: ``clip(z / z_full, 0, 1)``."""

    z_full: float = 10.0
    name: str = "poisson_z"

    def score_many(self, features: Columns) -> NDArray[np.float64]:
        return np.clip(features["z"] / self.z_full, 0.0, 1.0)


class _Recorder:
    """Scores like the rule and keeps the feature columns of the ticks inside given time windows."""

    name = "rule"

    def __init__(self, cfg: Config, windows: list[tuple[int, int]]) -> None:
        self.rule = RuleScorer(cfg.score)
        self.windows = windows
        self.now_ms = 0
        self.rows: dict[tuple[int, int], list[Columns]] = {w: [] for w in windows}

    def score_many(self, features: Columns) -> NDArray[np.float64]:
        for lo, hi in self.windows:
            if lo <= self.now_ms < hi:
                self.rows[lo, hi].append(
                    {k: features[k].copy() for k in ("rate_1h_per_h", "baseline_per_h", "z")}
                )
        return self.rule.score_many(features)


# ------------------------------------------------------------------ data
def simulated(n_events: int, n_products: int, n_viral: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """Events and truth of one attacked scenario, simulated once and cached under out/."""
    from viraltrend.simulate import Scenario, simulate

    scenario = Scenario(
        n_events=n_events,
        n_products=n_products,
        n_viral=n_viral,
        seed=seed,
        n_bot_farms=1,
        n_click_farms=1,
        n_lockstep_rings=1,
        n_banned_viral=1,
    )
    where = OUT_DIR / f"sim-attacks-{n_events}-{n_products}-{n_viral}-s{seed}"
    truth_path, events_path = where / "truth.json", where / "events.ndjson"
    if truth_path.exists() and events_path.exists():
        truth = json.loads(truth_path.read_text())
        if truth.get("scenario") == dataclasses.asdict(scenario):
            return events_path, truth
    _common.console.print(f"[bold]simulating[/bold] {scenario} -> {where}")
    t0 = time.perf_counter()
    result = simulate(scenario, where)
    _common.console.print(f"  simulated in {time.perf_counter() - t0:.1f} s")
    return result.events_path, result.truth


def load_batches(path: Path, batch_size: int) -> list[EventBatch]:
    """Decode the whole file once, in the batches every method will see."""
    from viraltrend.stream.files import FileSource

    out, rejected = [], 0
    with FileSource([path], batch_size=batch_size) as src:
        while not src.exhausted:
            batch, rejects = src.next_batch(batch_size)
            rejected += len(rejects)
            if len(batch):
                out.append(batch)
    if rejected:
        msg = f"{path}: {rejected} lines rejected by the decoder; the simulation should be clean"
        raise RuntimeError(msg)
    return out


# ------------------------------------------------------------------ configs
def guard_on(base: Config, truth: dict[str, Any]) -> Config:
    return dataclasses.replace(
        base, trust=dataclasses.replace(base.trust, blocked_sellers=tuple(truth["banned_sellers"]))
    )


def model_on(base: Config) -> Config:
    """``base`` with the online model switched on (``[model] enabled = true``, the other knobs as given)."""
    return dataclasses.replace(base, model=dataclasses.replace(base.model, enabled=True))


def short_confirm(base: Config) -> Config:
    """``base`` with ``board.confirm_s = FAST_CONFIRM_S`` (the rule with the model's shorter wait)."""
    return dataclasses.replace(base, board=dataclasses.replace(base.board, confirm_s=FAST_CONFIRM_S))


def model_fast(base: Config) -> Config:
    """``base`` with the model on and ``model.confirm_s = FAST_CONFIRM_S`` (its fast track)."""
    on = model_on(base)
    return dataclasses.replace(on, model=dataclasses.replace(on.model, confirm_s=FAST_CONFIRM_S))


def guard_off(base: Config, lockstep: float, caps: bool = True) -> Config:
    t = dataclasses.replace(
        base.trust,
        min_unique_users=0.0,
        max_fresh_share=1.0,
        min_conversion_ratio=0.0,
        lockstep_similarity=lockstep,
        co_audience_evidence=1e9,
        dense_block_density=1e9,
        uniform_max_dispersion=0.0,
        hold_max_s=0.0,
        blocked_sellers=(),
        blocked_products=(),
        blocked_sellers_file="",
        blocked_products_file="",
    )
    if not caps:
        t = dataclasses.replace(t, cap_window_s=0.0)
    return dataclasses.replace(base, trust=t)


# ------------------------------------------------------------------ runs
@dataclass(slots=True)
class Run:
    """One method over one seed: first promotion and first block per product, counts, wall time."""

    method: str
    seed: int
    promoted: dict[str, int] = field(default_factory=dict)  # product -> first promote event_ts
    blocked: dict[str, list[str]] = field(default_factory=dict)  # product -> reasons of its first block
    n_promotes: int = 0
    wall_s: float = 0.0
    refused: dict[str, int] = field(default_factory=dict)
    crossed: dict[str, int] = field(
        default_factory=dict
    )  # traced product -> first tick >= onset with score >= 0.8
    gate: dict[str, int] = field(default_factory=dict)  # traced -> first tick >= onset with enough users
    scored_by: dict[str, str] = field(default_factory=dict)  # product -> scorer of its first promote
    fast: set[str] = field(default_factory=set)  # products whose first promote was fast-tracked
    model_metrics: dict[str, Any] | None = None


def run_engine(
    batches: list[EventBatch], cfg: Config, scorer: Any, method: str, seed: int, onsets: dict[str, int]
) -> Run:
    """Run a fresh engine; the products in ``onsets`` are traced (tracing changes no decision)."""
    engine = Engine(cfg, scorer=scorer, trace_products=tuple(onsets))
    run = Run(method, seed)
    t0 = time.perf_counter()

    def take(messages: list[dict[str, Any]]) -> None:
        for m in messages:
            action = m.get("action")
            if action == "promote":
                run.n_promotes += 1
                if m["product_id"] not in run.promoted:
                    run.scored_by[m["product_id"]] = str(m["reasons"][0]).removeprefix("scored_by_")
                    if any(str(r).startswith("fast_track") for r in m["reasons"]):
                        run.fast.add(m["product_id"])
                run.promoted.setdefault(m["product_id"], int(m["event_ts"]))
            elif action == "block":
                run.blocked.setdefault(m["product_id"], list(m["reasons"]))

    for batch in batches:
        messages, _ = engine.process(batch)
        take(messages)
    take(engine.finish())
    run.wall_s = time.perf_counter() - t0
    for reason, n in engine.guard.refused.items():
        key = _reason_kind(reason)
        run.refused[key] = run.refused.get(key, 0) + n
    if engine.model is not None:
        run.model_metrics = engine.model.metrics()
    min_users = cfg.trust.min_unique_users
    for r in engine.trace_rows:
        pid = r["product_id"]
        if r["event_ts"] >= onsets[pid] and r["score"] >= PROMOTE_AT:
            run.crossed.setdefault(pid, int(r["event_ts"]))
        if r["event_ts"] >= onsets[pid] and r.get("unique_users", math.inf) >= min_users:
            run.gate.setdefault(pid, int(r["event_ts"]))
    return run


def _reason_kind(reason: str) -> str:
    """Reason kind: ``fresh_accounts_97%_no_conversion`` -> ``fresh_accounts_no_conversion``.

    ``lockstep_with_p-000001`` -> ``lockstep``.
    """
    if reason.startswith("lockstep_with"):
        return "lockstep"
    return re.sub(r"_\d+(\.\d+)?%?", "", reason)


def calibrate(
    batches: list[EventBatch], cfg: Config, start_ms: int, hours: list[tuple[int, int]]
) -> list[dict[str, Any]]:
    """Per window of hours after the start: 99.9th percentiles of ``rate_1h_per_h``, the movers gain and z."""
    windows = [(start_ms + a * 3_600_000, start_ms + b * 3_600_000) for a, b in hours]
    rec = _Recorder(cfg, windows)
    engine = Engine(cfg, scorer=rec)
    original = engine._on_tick  # noqa: SLF001 - tell the recorder which tick it is scoring

    def on_tick(now_ms: int) -> list[dict[str, Any]]:
        rec.now_ms = now_ms
        return original(now_ms)

    engine._on_tick = on_tick  # type: ignore[method-assign]  # noqa: SLF001
    end = max(hi for _, hi in windows)
    for batch in batches:
        engine.process(batch)
        if int(batch.ts_ms.min()) > end + 600_000:
            break
    out = []
    for (a, b), w in zip(hours, windows, strict=True):
        rows = rec.rows[w]
        if not rows:
            msg = f"no ticks in the calibration window +{a} h..+{b} h: the stream is too short"
            raise RuntimeError(msg)
        cols = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        out.append({
            "hours": (a, b), "lo_ms": w[0], "hi_ms": w[1],
            "T": float(np.percentile(cols["rate_1h_per_h"], CALIB_PERCENTILE)),
            "G": float(np.percentile(movers_gain(cols), CALIB_PERCENTILE)),
            "z_p999": float(np.percentile(cols["z"], CALIB_PERCENTILE)),
            "rows": int(cols["z"].shape[0]), "ticks": len(rows),
        })  # fmt: skip
    return out


# ------------------------------------------------------------------ measures
@dataclass(slots=True)
class Measures:
    n_viral: int = 0
    viral_hit: int = 0
    delays: list[float] = field(default_factory=list)
    cross: list[float] = field(default_factory=list)  # onset -> score >= 0.8, organic viral that crossed
    n_promoted: int = 0
    promoted_true: int = 0
    n_attacked: int = 0
    attacked_promoted: int = 0
    steady: int = 0
    spikes: int = 0
    other: int = 0
    viral_blocked: int = 0
    viral_blocked_missed: int = 0
    early: int = 0  # organic viral products promoted before their onset (counted as misses)
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [promoted, attacked]

    def add(self, other: Measures) -> None:
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                for k, (p, n) in b.items():
                    cur = a.setdefault(k, [0, 0])
                    cur[0] += p
                    cur[1] += n
            else:
                setattr(self, f.name, a + b)

    @property
    def recall(self) -> float | None:
        return self.viral_hit / self.n_viral if self.n_viral else None

    @property
    def precision(self) -> float | None:
        return self.promoted_true / self.n_promoted if self.n_promoted else None

    @property
    def attack_success(self) -> float | None:
        return self.attacked_promoted / self.n_attacked if self.n_attacked else None


def measure(
    run: Run, truth: dict[str, Any]
) -> tuple[Measures, dict[str, float | None], dict[str, float | None]]:
    """Measures of one run; minutes from onset to promotion and to score crossing per organic viral item."""
    m = Measures()
    viral = {v["product_id"]: v["onset_ts"] for v in truth["viral"]}
    steady = {s["product_id"] for s in truth["steady"]}
    spikes = {s["product_id"] for s in truth["spikes"]}
    attacked: dict[str, str] = {a["product_id"]: a["kind"] for a in truth["attacks"]}
    delays: dict[str, float | None] = {}
    m.n_viral = len(viral)
    for pid, onset in viral.items():
        at = run.promoted.get(pid)
        if at is not None and at < onset:
            m.early += 1
            at = None
        delays[pid] = None
        if at is not None:
            delays[pid] = minutes = (at - onset) / 60_000
            m.viral_hit += 1
            m.delays.append(minutes)
        if pid in run.blocked:
            m.viral_blocked += 1
            if at is None:
                m.viral_blocked_missed += 1
        if pid in run.crossed:
            m.cross.append((run.crossed[pid] - onset) / 60_000)
    m.n_promoted = len(run.promoted)
    m.promoted_true = sum(1 for p, at in run.promoted.items() if p in viral and at >= viral[p])
    m.n_attacked = len(attacked)
    for pid, kind in attacked.items():
        hit = int(pid in run.promoted)
        m.attacked_promoted += hit
        cur = m.by_kind.setdefault(kind, [0, 0])
        cur[0] += hit
        cur[1] += 1
    m.steady = len(set(run.promoted) & steady)
    m.spikes = len(set(run.promoted) & spikes)
    m.other = len(set(run.promoted) - set(viral) - steady - spikes - set(attacked))
    cross = {
        pid: (run.crossed[pid] - onset) / 60_000 if pid in run.crossed else None
        for pid, onset in viral.items()
    }
    return m, delays, cross


MODEL_KEYS = ("roc_auc", "log_loss", "precision", "labels_seen", "positives_seen", "warm")


def _num(d: dict[str, Any] | None, k: str) -> str:
    v = None if d is None else d.get(k)
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def onsets_of(truth: dict[str, Any]) -> dict[str, int]:
    return {v["product_id"]: int(v["onset_ts"]) for v in truth["viral"]}


def compare_rows(
    runs: dict[tuple[str, int], Run],
    seeds: list[int],
    sims: dict[int, tuple[Path, dict[str, Any]]],
    pairs: list[tuple[str, str]],
) -> list[list[str]]:
    """Paired onset-to-promote differences, first method minus second, per organic viral product."""
    out = []
    for model, name in pairs:
        diffs = []
        for sd in seeds:
            for pid, onset in onsets_of(sims[sd][1]).items():
                a, b = runs[model, sd].promoted.get(pid), runs[name, sd].promoted.get(pid)
                if a is not None and b is not None and a >= onset and b >= onset:
                    diffs.append((a - b) / 60_000)
        if not diffs:
            out.append([model, name, "0", "-", "-", "-", "n/a", "n/a", "n/a"])
            continue
        out.append([
            model, name, str(len(diffs)), str(sum(d < 0 for d in diffs)), str(sum(d == 0 for d in diffs)),
            str(sum(d > 0 for d in diffs)), f"{statistics.median(diffs):+.2f}", f"{min(diffs):+.2f}",
            f"{max(diffs):+.2f}",
        ])  # fmt: skip
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _frac(num: int, den: int) -> str:
    return f"{num}/{den}" if den else "0/0"


def _mins(values: list[float], how: Callable[[list[float]], float]) -> str:
    return f"{how(values):.1f}" if values else "n/a"


def row(label: str, seed: str, m: Measures) -> list[str]:
    return [
        label, seed,
        f"{_frac(m.viral_hit, m.n_viral)} ({_pct(m.recall)})",
        _mins(m.delays, statistics.median), _mins(m.delays, max), _mins(m.cross, statistics.median),
        f"{_frac(m.promoted_true, m.n_promoted)} ({_pct(m.precision)})",
        f"{_frac(m.attacked_promoted, m.n_attacked)} ({_pct(m.attack_success)})",
        str(m.steady), str(m.spikes), str(m.other), f"{m.viral_blocked} ({m.viral_blocked_missed})",
    ]  # fmt: skip


COLUMNS = ["method", "seed", "organic viral recall", "median min onset->promote", "max min",
           "median min onset->score>=0.8", "precision", "attack success", "steady promoted",
           "spikes promoted", "other promoted", "organic viral blocked (never promoted)"]  # fmt: skip


# ------------------------------------------------------------------ plot
def plot(
    delays: dict[str, list[tuple[int, float | None]]], crossings: dict[str, list[float]], path: Path
) -> None:
    """Strip plot: onset-to-promotion minutes per organic viral product, one column per method.

    Hollow grey markers: onset to the first tick with score >= 0.8 (the score alone, before the
    board's confirm hold and the trust guard).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(delays)
    seeds = sorted({s for vals in delays.values() for s, _ in vals})
    finite = [d for vals in delays.values() for _, d in vals if d is not None]
    finite += [c for vals in crossings.values() for c in vals]
    top = max([*finite, FEW_MINUTES, 1.0])
    never_y = top * 1.18
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 * len(methods) + 2), 4.8))
    rng = np.random.default_rng(0)
    colors = plt.get_cmap("tab10")
    for x, name in enumerate(methods):
        for k, seed in enumerate(seeds):
            ys = [never_y if d is None else d for s, d in delays[name] if s == seed]
            if not ys:
                continue
            jitter = rng.uniform(-0.22, 0.22, len(ys))
            ax.scatter(
                x + jitter,
                ys,
                s=30,
                color=colors(k % 10),
                alpha=0.85,
                edgecolor="black",
                lw=0.4,
                label=f"seed {seed}" if x == 0 else None,
                zorder=3,
            )
        cross = crossings.get(name, [])
        if cross:
            ax.scatter(
                x + 0.36 + rng.uniform(-0.04, 0.04, len(cross)),
                cross,
                s=18,
                facecolor="none",
                edgecolor="gray",
                lw=0.8,
                zorder=2,
                label="score >= 0.8 (before the board)" if x == 0 else None,
            )
        hits = [d for _, d in delays[name] if d is not None]
        if hits:
            med = statistics.median(hits)
            ax.hlines(med, x - 0.32, x + 0.32, color="black", lw=1.5, zorder=4)
        n_never = sum(d is None for _, d in delays[name])
        ax.annotate(
            f"{n_never} never" if n_never else "",
            (x, never_y),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.axhline(FEW_MINUTES, color="tab:red", ls="--", lw=1, label=f"{FEW_MINUTES:g} min")
    ax.axhline(top * 1.09, color="gray", lw=0.8)
    ax.set_ylim(0, top * 1.3)
    ticks = [t for t in ax.get_yticks() if 0 <= t <= top * 1.05]
    ax.set_yticks([*ticks, never_y], [*(f"{t:g}" for t in ticks), "never"])
    ax.set_xticks(range(len(methods)), methods, rotation=15, ha="right")
    ax.set_xlim(-0.6, len(methods) - 0.3)
    ax.set_ylabel("minutes from onset (truth) to first promote")
    ax.set_title("Organic viral products: onset to first promotion, by method (bar: median)")
    ax.legend(loc="upper left", fontsize=8, ncol=len(seeds) + 2, bbox_to_anchor=(0, -0.22))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--events", type=int, default=None, help="events per simulated day (default 1M; quick 300k)"
    )
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--viral", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; quick 1)")
    ap.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="seeds run from this one on (default 1: seeds 1..K; the model was tuned on 4 and 5)",
    )
    ap.add_argument("--quick", action="store_true", help="300k events, 1 seed")
    args = ap.parse_args(argv)
    n_events = args.events if args.events is not None else (300_000 if args.quick else 1_000_000)
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))
    argv_list = sys.argv[1:] if argv is None else argv
    report = Report("bench_detection", ["benchmarks/bench_detection.py", *argv_list])
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    default = load_config(None, environ={})
    # This benchmark compares scorers through the board's confirm wait (detect.method = "confirm"); the
    # default sequential detector (where the score only ranks) is its own row, "sequential (default)".
    base = dataclasses.replace(default, detect=dataclasses.replace(default.detect, method="confirm"))
    if base.board.promote_threshold != PROMOTE_AT:
        msg = (
            f"board.promote_threshold is {base.board.promote_threshold}, this benchmark assumes {PROMOTE_AT}"
        )
        raise RuntimeError(msg)

    sims = {s: simulated(n_events, args.products, args.viral, s) for s in seeds}
    console = _common.console

    # ---- calibration on the first seed
    first = seeds[0]
    console.print(f"decoding seed {first} ...")
    batches = load_batches(sims[first][0], BATCH)
    start_ms = int(sims[first][1]["scenario"]["start_ts_ms"])
    cal, alt = calibrate(batches, guard_on(base, sims[first][1]), start_ms, [CALIB_HOURS, ALT_CALIB_HOURS])
    t1 = sims[first][1]
    lo_ms, hi_ms = cal["lo_ms"], cal["hi_ms"]
    in_window = [
        v["product_id"] for v in t1["viral"] + t1["attacks"] if lo_ms - 7_200_000 <= v["onset_ts"] < hi_ms
    ]
    in_window += [s["product_id"] for s in t1["spikes"] if lo_ms - 3_600_000 <= s["ts"] < hi_ms]
    console.print(
        f"calibration: T = {cal['T']:.1f}/h, G = {cal['G']:.2f} over {cal['rows']:,} candidate-ticks"
    )

    # Config validation caps trust.lockstep_similarity at 1.0, but two products hit by exactly the same
    # accounts have identical MinHash sketches (similarity exactly 1.0 >= 1.0), so 1.0 does not switch the
    # lockstep check off; dataclasses.replace skips validation, and nothing reaches 1.01.
    lockstep_off = LOCKSTEP_OFF

    methods: list[tuple[str, Callable[[dict[str, Any]], Config], Callable[[], Any]]] = [
        ("sequential (default)", lambda t: guard_on(default, t), lambda: None),
        ("rule", lambda t: guard_on(base, t), lambda: RuleScorer(base.score)),
        ("count_1h", lambda t: guard_on(base, t), lambda: CountThreshold(cal["T"])),
        ("movers", lambda t: guard_on(base, t), lambda: MoversShakers(cal["G"])),
        ("poisson_z", lambda t: guard_on(base, t), lambda: PoissonZ()),
        ("model", lambda t: guard_on(model_on(base), t), lambda: None),  # the engine builds its model
        (MODEL_FAST, lambda t: guard_on(model_fast(base), t), lambda: None),
        (SHORT, lambda t: guard_on(short_confirm(base), t), lambda: RuleScorer(base.score)),
        ("rule, guard off", lambda t: guard_off(base, lockstep_off), lambda: RuleScorer(base.score)),
        (
            "model, guard off",
            lambda t: guard_off(model_on(base), lockstep_off),
            lambda: None,
        ),
        (
            "rule, guard off, caps off",
            lambda t: guard_off(base, lockstep_off, caps=False),
            lambda: RuleScorer(base.score),
        ),
    ]
    names = [m[0] for m in methods]
    per_seed: dict[tuple[str, int], Measures] = {}
    runs: dict[tuple[str, int], Run] = {}
    delays_by_method: dict[str, list[tuple[int, float | None]]] = {n: [] for n in names}
    viral_rows: list[list[str]] = []
    floors: list[tuple[int, str, float | None]] = []  # earliest promotion the guard and confirm_s allow
    fast_floors: list[tuple[int, str, float | None]] = []  # the same with model.confirm_s
    blocked_rows: list[list[str]] = []
    for seed in seeds:
        events_path, truth = sims[seed]
        if seed != first:
            console.print(f"decoding seed {seed} ...")
            batches = load_batches(events_path, BATCH)
        per_viral: dict[str, dict[str, float | None]] = {}
        per_cross: dict[str, dict[str, float | None]] = {}
        onsets = {v["product_id"]: int(v["onset_ts"]) for v in truth["viral"]}
        for name, make_cfg, make_scorer in methods:
            run = run_engine(batches, make_cfg(truth), make_scorer(), name, seed, onsets)
            m, d, c = measure(run, truth)
            per_seed[name, seed], runs[name, seed] = m, run
            delays_by_method[name] += [(seed, x) for x in d.values()]
            per_viral[name], per_cross[name] = d, c
            console.print(
                f"  seed {seed} {name:<26} {run.wall_s:6.1f} s  promotes {run.n_promotes}  "
                f"recall {_pct(m.recall)}  precision {_pct(m.precision)}  "
                f"attacks {m.attacked_promoted}/{m.n_attacked}"
            )
        for v in truth["viral"]:
            onset = datetime.fromtimestamp(v["onset_ts"] / 1000, UTC).strftime("%H:%M:%S")
            pid = v["product_id"]
            cells = [
                ("never" if per_viral[n][pid] is None else f"{per_viral[n][pid]:.1f}")
                + (" (-)" if per_cross[n][pid] is None else f" ({per_cross[n][pid]:.1f})")
                + (
                    f" [{runs[n, seed].scored_by[pid]}{'+' if pid in runs[n, seed].fast else ''}]"
                    if n.startswith("model") and pid in runs[n, seed].scored_by
                    else ""
                )
                for n in names
            ]
            gate = runs["rule", seed].gate.get(pid)
            floor = None if gate is None else (gate - v["onset_ts"]) / 60_000 + base.board.confirm_s / 60
            fast = None if gate is None else (gate - v["onset_ts"]) / 60_000 + FAST_CONFIRM_S / 60
            floors.append((seed, pid, floor))
            fast_floors.append((seed, pid, fast))
            viral_rows.append(
                [
                    str(seed),
                    pid,
                    str(v["rank"]),
                    onset,
                    f"{v['events_first_10min']:,}",
                    "-" if floor is None else f"{floor:.1f}",
                    "-" if fast is None else f"{fast:.1f}",
                    *cells,
                ]
            )
        for name in names:
            for pid, reasons in runs[name, seed].blocked.items():
                if pid in onsets:
                    later = runs[name, seed].promoted.get(pid)
                    blocked_rows.append(
                        [
                            name,
                            str(seed),
                            pid,
                            ", ".join(reasons[:2]),
                            "never" if later is None else f"+{(later - onsets[pid]) / 60_000:.1f} min",
                        ]
                    )
        del batches
    pooled: dict[str, Measures] = {}
    for name in names:
        acc = Measures()
        for seed in seeds:
            acc.add(per_seed[name, seed])
        pooled[name] = acc

    # ---- report
    m0 = machine()
    scen = sims[first][1]["scenario"]
    report.note(
        f"Scenarios: seeds {', '.join(map(str, seeds))}; each {n_events:,} events over {args.products:,} "
        "products "
        f"in {scen['duration_s'] / 3600:g} h of event time, {args.viral} organic viral products, steady "
        f"{scen['n_steady']}, spikes {scen['n_spikes']}, attacks: 1 bot farm, 1 click farm, 1 lockstep ring "
        f"(3-5 products), 1 banned viral per seed. Every method runs a fresh engine over the same decoded "
        f"batches of {BATCH:,} events with the default board policy; only the scorer (and, for the guard-off "
        f"rows, the trust thresholds) differ."
    )
    rows = []
    for name in names:
        for seed in seeds:
            rows.append(row(name, str(seed), per_seed[name, seed]))
    report.table("Detection quality per method and seed (trust guard on unless stated)", COLUMNS, rows)
    prow = [row(name, "all", pooled[name]) for name in names]
    report.table(
        f"Pooled over {len(seeds)} seed(s)",
        COLUMNS,
        prow,
        notes=[
            "organic viral recall: organic viral products (truth['viral']) promoted at or after their "
            "onset / "
            "organic viral products",
            "median / max minutes: from the truth onset to the first promote (the 10 s tick of the "
            "decision), "
            "promoted organic viral products only",
            "precision: promoted products that are organic viral / products promoted (the banned seller's "
            "really viral product counts as an attack, not as organic viral)",
            "attack success: attacked products (bot farm, click farm, each ring product, banned viral) "
            "promoted at any time / attacked products",
            "other promoted: products promoted that are none of viral, steady, spike or attacked (background "
            "Zipf traffic)",
            "median min onset->score>=0.8: first 10 s tick at or after the onset at which the method's score "
            "reached the promote threshold (traced products; before the board's confirm_s hold, momentum "
            "check and trust guard)",
            "organic viral blocked: organic viral products that got a `block` decision from the trust "
            "guard at "
            "least once (in brackets: of those, never promoted)",
        ],
    )
    kinds = sorted({k for m in pooled.values() for k in m.by_kind})
    krows = [[name, *(_frac(*pooled[name].by_kind.get(k, [0, 0])) for k in kinds)] for name in names]
    report.table("Attacked products promoted / attacked, by attack kind (pooled)", ["method", *kinds], krows)
    report.table(
        "Organic viral products: minutes from onset to first promotion (in brackets: to the first tick with "
        "score >= 0.8, '-' if never), per method",
        [
            "seed",
            "product",
            "popularity rank",
            "onset UTC",
            "events in first 10 min",
            "earliest possible",
            f"earliest possible, confirm_s {FAST_CONFIRM_S:g}",
            *names,
        ],
        viral_rows,
        notes=[
            "earliest possible: the first 10 s tick at or after the onset at which the product had "
            f"unique_users >= trust.min_unique_users ({base.trust.min_unique_users:g}, the guard's soft "
            f"refusal clears), plus board.confirm_s ({base.board.confirm_s:g} s): no guarded method "
            "can promote before it, whatever its score (the board holds a soft-refused product back and "
            "starts the confirm wait only once it passes the guard)",
            f"earliest possible, confirm_s {FAST_CONFIRM_S:g}: the same with a {FAST_CONFIRM_S:g} s wait "
            f"instead of board.confirm_s: the floor of the rows {MODEL_FAST!r} and {SHORT!r}",
            "model column, in square brackets: which scorer decided the first promote ('rule' while the "
            "model was still cold); a '+' after it: fast-tracked (waited model.confirm_s)",
        ],
    )
    report.table(
        "The model against each method, per organic viral product promoted by both (minutes, model "
        "minus method; negative = the model was earlier)",
        [
            "model",
            "method",
            "products",
            "model earlier",
            "same tick",
            "model later",
            "median diff",
            "min diff",
            "max diff",
        ],
        compare_rows(
            runs,
            seeds,
            sims,
            [("model", n) for n in names if "guard off" not in n and not n.startswith("model")]
            + [(MODEL_FAST, n) for n in names if "guard off" not in n and not n.startswith("model")]
            + [("model, guard off", "rule, guard off")],
        ),
        notes=[
            "model, guard off vs rule, guard off (a diagnostic: attacks get promoted): how much earlier "
            "the model would promote if the guard's distinct-user gate did not hold every scorer back",
            f"{MODEL_FAST} vs {SHORT}: the model's earliness beyond what the shorter wait alone gives the "
            "rule",
        ],
    )
    at_floor = []
    for name in names:
        hit = sum(
            1
            for sd, pid, fl in (fast_floors if name in (SHORT, MODEL_FAST) else floors)
            if fl is not None
            and pid in runs[name, sd].promoted
            and abs((runs[name, sd].promoted[pid] - onsets_of(sims[sd][1])[pid]) / 60_000 - fl) < 1e-6
        )
        at_floor.append(f"{name} {hit}/{len(floors)}")
    report.note(
        "Organic viral products promoted exactly at the earliest possible tick (guard gate + confirm_s; "
        f"for {MODEL_FAST} and {SHORT}: + {FAST_CONFIRM_S:g} s): " + ", ".join(at_floor) + "."
    )
    mrows = [
        [str(sd), *(_num(runs["model", sd].model_metrics, k) for k in MODEL_KEYS)]
        for sd in seeds
        if runs["model", sd].model_metrics is not None
    ]
    report.table(
        "Online model, progressive validation at the end of each day (predict, then learn)",
        ["seed", *MODEL_KEYS],
        mrows,
        notes=[
            "precision: of the labelled rows the model predicted at p >= model.promote_probability "
            "(row level: one product contributes a row per sampled tick; not the board's precision)",
        ],
    )
    if blocked_rows:
        report.table(
            "Organic viral products the trust guard blocked (first block)",
            ["method", "seed", "product", "first reasons", "promoted after onset"],
            blocked_rows,
        )
    refused_rows = []
    for name in names:
        tot: dict[str, int] = {}
        for seed in seeds:
            for r, n in runs[name, seed].refused.items():
                tot[r] = tot.get(r, 0) + n
        refused_rows.append([name, ", ".join(f"{r} {n:,}" for r, n in sorted(tot.items())) or "-"])
    report.table(
        "Trust guard refusals (candidate-ticks, pooled; a refused candidate is re-checked every tick)",
        ["method", "refusals by reason"],
        refused_rows,
    )

    # ---- targets
    rule_on, rule_off = pooled["rule"], pooled["rule, guard off"]
    cost = (rule_off.recall or 0.0) - (rule_on.recall or 0.0)
    trows = []
    for name in names:
        p = pooled[name]
        guarded = "guard off" not in name
        trows.append([
            name,
            f"{_pct(p.attack_success)}: {verdict((p.attack_success or 0.0) <= MAX_ATTACK_SUCCESS)}"
            + ("" if guarded else " (guard off)"),
            f"{_mins(p.delays, max)} min: "
            f"{verdict(bool(p.delays) and max(p.delays) <= FEW_MINUTES and p.viral_hit == p.n_viral)}",
            f"{_pct(p.precision)}: {verdict(p.precision is not None and p.precision >= MIN_PRECISION)}",
        ])  # fmt: skip
    report.table(
        "Targets (pooled)",
        [
            "method",
            "attack success <= 1%",
            f"every viral promoted, max delay <= {FEW_MINUTES:g} min",
            "precision >= 0.9",
        ],
        trows,
        notes=[
            f"guard cost in organic recall (rule): {_pct(rule_off.recall)} without the guard, "
            f"{_pct(rule_on.recall)} "
            f"with it: {100 * cost:+.0f} points lost; target <= {100 * MAX_GUARD_RECALL_COST:.0f} points: "
            f"{verdict(cost <= MAX_GUARD_RECALL_COST)}",
            f"'a few minutes' read as <= {FEW_MINUTES:g} min (as in bench_replay); a product never promoted "
            "fails it",
        ],
    )
    eligible = [
        n
        for n in names
        if "guard off" not in n and (pooled[n].precision or 0.0) >= MIN_PRECISION and pooled[n].delays
    ]
    if eligible:
        best = min(eligible, key=lambda n: (-pooled[n].viral_hit, statistics.median(pooled[n].delays)))
        report.note(
            f"Fastest method at precision >= {MIN_PRECISION} (guard on; most organic viral found, then "
            "lowest "
            f"median delay): **{best}** (recall {_pct(pooled[best].recall)}, median "
            f"{_mins(pooled[best].delays, statistics.median)} min, max {_mins(pooled[best].delays, max)} "
            "min). "
            f"Methods meeting precision >= {MIN_PRECISION}: {', '.join(eligible)}."
        )
    else:
        report.note(f"No guarded method reached precision >= {MIN_PRECISION}.")
    report.note(
        f"Calibration (seed {first}, the ticks from +{CALIB_HOURS[0]} h to +{CALIB_HOURS[1]} h of event "
        "time, "
        f"{cal['ticks']} ticks, {cal['rows']:,} candidate-ticks scored): count_1h threshold T = "
        f"{cal['T']:.1f} "
        f"weighted engagements/h ({CALIB_PERCENTILE}th percentile of rate_1h_per_h); movers gain at "
        "promotion "
        f"G = {cal['G']:.2f} ({CALIB_PERCENTILE}th percentile of rate_1h_per_h / baseline_per_h); for "
        "reference "
        f"the {CALIB_PERCENTILE}th percentile of z was {cal['z_p999']:.1f} (poisson_z promotes at z >= 8). "
        "T and G are kept fixed for every seed. Truth products with an onset in the 2 h before the end of "
        "the "
        "window, or a spike in the hour before it or in it: "
        f"{', '.join(in_window) if in_window else 'none'}. "
        f"Sensitivity: the same percentiles over +{ALT_CALIB_HOURS[0]} h..+{ALT_CALIB_HOURS[1]} h (cold 24-h "
        f"baseline, night traffic) give T = {alt['T']:.1f}, G = {alt['G']:.2f}, z {alt['z_p999']:.1f} "
        f"({alt['rows']:,} candidate-ticks)."
    )
    report.note(
        "Cold start (movers): the engine bias-corrects the 24-h rate for the hours observed, so early in "
        "the "
        f"replayed day rate_1h_per_h / rate_24h_per_h cannot exceed about ln 2 x (hours observed); with "
        f"G = {cal['G']:.2f} the movers score cannot reach the promote threshold before about "
        f"{cal['G'] / math.log(2):.1f} h of event time. An organic viral onset before then is "
        "missed by construction of the replay (a service with a day of history would not have this "
        "ceiling). "
        f"Organic viral onsets before {cal['G'] / math.log(2):.1f} h: "
        + (
            ", ".join(
                f"seed {sd} {v['product_id']} at "
                f"+{(v['onset_ts'] - int(sims[sd][1]['scenario']['start_ts_ms'])) / 3.6e6:.1f} h"
                for sd in seeds
                for v in sims[sd][1]["viral"]
                if v["onset_ts"] - int(sims[sd][1]["scenario"]["start_ts_ms"])
                < cal["G"] / math.log(2) * 3.6e6
            )
            or "none"
        )
        + "."
    )
    report.note(
        "Guard off = trust.min_unique_users 0, max_fresh_share 1.0, min_conversion_ratio 0, "
        f"lockstep_similarity {lockstep_off:g} (1.0, the largest value load_config accepts, still flags "
        "products "
        "hit by identical accounts: their MinHash similarity is exactly 1.0; set with dataclasses.replace), "
        "no blocked sellers; the per-user caps (trust.cap_window_s = "
        f"{base.trust.cap_window_s:g} s) stay on, 'caps off' also sets cap_window_s = 0. Guard on = the "
        "default "
        "trust config plus the seed's truth['banned_sellers'] in trust.blocked_sellers."
    )
    total_s = time.perf_counter() - t_start
    wall = {n: sum(runs[n, s].wall_s for s in seeds) for n in names}
    report.note(
        "Engine wall time per method, summed over seeds (s): "
        + ", ".join(f"{n} {w:.1f}" for n, w in wall.items())
        + f"; whole benchmark {total_s:.0f} s."
    )
    plot(delays_by_method, {n: pooled[n].cross for n in names}, PLOT_PATH)
    report.note(f"Plot: `{PLOT_PATH.relative_to(OUT_DIR.parent.parent)}`")

    head = [
        "# Detection quality: rule and online model vs. trending baselines, trust guard on and off",
        "",
        f"- date: {report.started_utc}",
        f"- command: `{' '.join(['.venv/bin/python', *report.argv])}`",
        f"- machine: {m0['cpu']}, {m0['cores']}, {m0['ram']} RAM, {m0['os']}",
        f"- versions: Python {m0['python']}, numpy {m0['numpy']}, numba {m0['numba']}, polars {m0['polars']}",
        f"- load average (1/5/15 min): {report.load_start} at start, {loadavg()} at end",
        "",
    ]
    MD_PATH.write_text("\n".join(head) + "\n" + "\n\n".join(report.parts) + "\n", encoding="utf-8")
    console.print(f"[green]wrote {MD_PATH} and {PLOT_PATH}[/green]")


if __name__ == "__main__":
    main()
