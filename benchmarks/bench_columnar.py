"""Columnar hot path (issue 11): replay against a polars micro-batch pipeline and the kernel limit.

In one run, on the simulated 2M-event day (100k products, 5 viral, seed 1; cached in ``out/``):

1. ``viraltrend.replay.replay`` with the default config, in a child process, for the sources now
   (*after*) and for those of ``--before`` (default HEAD) with ``engine.py`` of ``--before-engine``
   (default: ``--before``'s own; git revisions, extracted under ``out/``), each
   after a JIT warm-up: events/s, peak RSS, user-table bytes per user, and whether both gave
   the same decisions (``emitted_at`` aside);
2. a polars micro-batch pipeline written for this comparison (what a user could write in an
   afternoon): ``read_ndjson`` in blocks of 200k lines, ``group_by`` (10 s tick, product) of the
   forward-decayed weights at 3 half-lives (5 min, 1 h, 24 h), a join to a growing id table, and a
   top-20 board per 10 s tick (lift of the 5-minute rate over the 24-hour one, among the tick's
   products and the board);
3. the numba kernel over pre-decoded arrays (``DecayedCounters.add``, 4 half-lives x 6 types, in
   50k-event blocks), alone and with the same top-20 board per tick: the limit;
4. the Taobao sample (``../shared/data/taobao_userbehavior_sample.csv.gz``, ``--sort``),
   before and after;
5. cProfile's top 15 (by own time) of a replay of 1M events, before and after.

Ratios are replay over each yardstick, from the same run.  ``--record`` appends the tables to
RESULTS.md under "Columnar hot path (issue 11)".

Run: ``.venv/bin/python benchmarks/bench_columnar.py [--quick] [--before REV] [--record]``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import _common  # first: sets the numba cache dir before numba is imported  # noqa: I001
import numpy as np
import polars as pl
from _common import BENCH_DIR, OUT_DIR, Report, fmt_rate

TAOBAO = BENCH_DIR.parent.parent / "shared" / "data" / "taobao_userbehavior_sample.csv.gz"
BOARD_SIZE = 20
TICK_MS = 10_000
HALF_LIVES_S = (300.0, 3600.0, 86400.0)  # the polars pipeline's: trend, hour, baseline
BLOCK_LINES = 200_000

# Runs in a child process with PYTHONPATH at one source tree: warm up, replay once, print JSON.
_CHILD = r"""
import cProfile, io, json, pstats, sys, time
from viraltrend.config import load_config
import viraltrend.replay as R
path, fmt, warm, out, profile = sys.argv[1:6]
cfg = load_config(None, environ={})
R.replay([warm], cfg, out=out)
if fmt == "taobao":  # the Taobao path's own signatures too (a cold cache compiled them in the timed run)
    R.replay([warm.replace("events.ndjson", "taobao-head.csv.gz")], cfg, out=out, file_format=fmt, sort=True)
engines = []
_Engine = R.Engine
_on_tick = _Engine._on_tick
_tick = _Engine._tick
_process = _Engine.process
ticks = {"touched": [0, 0.0], "untouched": [0, 0.0]}  # count, seconds in Engine._on_tick
python_ticks = [0]  # ticks Python ran (_on_tick, or the rest of a tick the compiled loop handed over)
engine_s = [0.0]  # seconds in Engine.process
def _timed_tick(self, now_ms):
    kind = "touched" if self._touched else "untouched"
    t0 = time.perf_counter()
    out = _on_tick(self, now_ms)
    ticks[kind][0] += 1
    ticks[kind][1] += time.perf_counter() - t0
    python_ticks[0] += 1
    return out
def _counted_tick(self, now_ms, pre=None):
    python_ticks[0] += pre is not None
    return _tick(self, now_ms) if pre is None else _tick(self, now_ms, pre=pre)
def _timed_process(self, batch):
    t0 = time.perf_counter()
    out = _process(self, batch)
    engine_s[0] += time.perf_counter() - t0
    return out
_Engine._on_tick = _timed_tick
_Engine._tick = _counted_tick
_Engine.process = _timed_process
R.Engine = lambda *a, **k: engines.append(_Engine(*a, **k)) or engines[-1]
prof = cProfile.Profile() if profile == "1" else None
t, c = time.perf_counter(), time.process_time()
if prof: prof.enable()
s = R.replay([path], cfg, out=out, file_format=fmt, sort=fmt == "taobao")
if prof: prof.disable()
wall, cpu = time.perf_counter() - t, time.process_time() - c
e = engines[-1]
u = e.users
vet_bytes = 0
if hasattr(u, "hash_of"):  # hashed user table; veterans: hashes of released users
    vet_bytes = u._vet_keys.nbytes + u._vet_vals.nbytes
    live, slots = len(u), u.high_water
    user_bytes = u.nbytes - vet_bytes + e.user_signals.first_seen_ms.nbytes
else:  # str -> slot dict, names list, the strings, first-seen times
    live = slots = len(u)
    user_bytes = (sys.getsizeof(u._slot_of) + sys.getsizeof(u._names) + e.user_signals.first_seen_ms.nbytes
                  + sum(sys.getsizeof(n) for n in u._names if n is not None))
d = s.to_dict()
top = ""
if prof:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    top = buf.getvalue()
import viraltrend
print(json.dumps({"module": viraltrend.__file__, "wall_s": wall, "cpu_s": cpu, "events": d["events_read"],
                  "touched_ticks": ticks["touched"], "untouched_ticks": ticks["untouched"],
                  "python_ticks": python_ticks[0], "engine_s": engine_s[0],
                  "peak_rss_mb": d["peak_rss_mb"], "ticks": d["ticks"], "users_live": live,
                  "user_slots": slots, "user_bytes": user_bytes, "veteran_bytes": vet_bytes,
                  "profile": top}))
"""


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=BENCH_DIR.parent, check=True, capture_output=True).stdout


def before_tree(rev: str, engine_rev: str) -> Path:
    """The ``viraltrend/`` sources of ``rev`` with ``engine.py`` of ``engine_rev``, extracted under out/.

    Everything else equal, the engine before the change (git archive and git show: the working
    tree is not touched).
    """
    rev, engine_rev = (_git("rev-parse", "--short", r).decode().strip() for r in (rev, engine_rev))
    root = OUT_DIR / f"tree-{rev}-engine-{engine_rev}"
    if not (root / "viraltrend").exists():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(_git("archive", rev, "viraltrend"))) as tar:
            tar.extractall(root, filter="data")
        (root / "viraltrend" / "engine.py").write_bytes(_git("show", f"{engine_rev}:viraltrend/engine.py"))
    return root


def replay_child(tree: Path, path: Path, fmt: str, tag: str, *, profile: bool = False) -> dict[str, Any]:
    """Replay ``path`` with the sources under ``tree`` in a fresh process; its summary as a dict."""
    work = OUT_DIR / "columnar"
    work.mkdir(parents=True, exist_ok=True)
    warm = OUT_DIR / "sim-20000-2000-1-s12345" / "events.ndjson"
    head = warm.with_name("taobao-head.csv.gz")  # the Taobao format's warm-up: the sample's first lines
    if fmt == "taobao" and not head.exists():
        with gzip.open(path, "rb") as f, gzip.open(head, "wb") as g:
            g.write(b"".join(itertools.islice(f, 20_000)))
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "NUMBA_CACHE_DIR": str(OUT_DIR / f"numba-cache-{tree.name}"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    out = work / f"{tag}.ndjson"
    args = [sys.executable, "-c", _CHILD, str(path), fmt, str(warm), str(out), "1" if profile else "0"]
    # cwd=tree: ``python -c`` puts the working directory first on sys.path
    done = subprocess.run(args, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode:
        msg = (
            f"replay child {tag} failed (sources {tree}; with --before-engine, that engine.py may not fit "
            f"--before's other modules):\n{done.stderr[-3000:]}"
        )
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["decisions"] = out
    if not Path(result["module"]).is_relative_to(tree):
        msg = f"replay child {tag} imported viraltrend from {result['module']}, not from {tree}"
        raise RuntimeError(msg)
    return result


def user_row(name: str, r: dict[str, Any]) -> tuple[object, ...]:
    """A row of the users table from a child's summary."""
    per_user = r["user_bytes"] / max(r["users_live"], 1)
    rate, size = fmt_rate(r["events"] / r["wall_s"]), f"{r['user_bytes']:,}"
    return (name, rate, f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", r["ticks"], r["users_live"],
            r["user_slots"], size, f"{per_user:.0f}", f"{r['veteran_bytes']:,}")  # fmt: skip


def tick_row(name: str, r: dict[str, Any]) -> tuple[object, ...]:
    """A row of the tick-cost table from a child's summary."""
    (nt, st), (nu, su) = r["touched_ticks"], r["untouched_ticks"]
    n, py = r["ticks"], r.get("python_ticks", nt + nu)
    per_tick = r["engine_s"] / max(n, 1) * 1e6 if "engine_s" in r else float("nan")
    touched, untouched = f"{st / max(nt, 1) * 1e6:.0f}", f"{su / max(nu, 1) * 1e6:.1f}"
    return (name, f"{n:,}", f"{py:,}", f"{per_tick:.1f}", f"{nt:,}", touched, f"{nu:,}", untouched)


def same_decisions(a: Path, b: Path) -> bool:
    """Whether two decision files are equal apart from ``emitted_at``."""

    def load(p: Path) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in p.read_bytes().splitlines() if line.strip()]
        for r in rows:
            r.pop("emitted_at", None)
        return rows

    return load(a) == load(b)


# ------------------------------------------------------------------ the polars micro-batch pipeline
def polars_pipeline(path: Path, weights: dict[str, float]) -> tuple[float, int, list[str]]:
    """Replay ``path`` through the polars pipeline; (seconds, events, last board's product ids)."""
    lam = np.log(2.0) / np.asarray(HALF_LIVES_S)
    ids = pl.DataFrame(schema={"product_id": pl.String, "idx": pl.Int64})
    acc = np.zeros((1024, len(HALF_LIVES_S)))
    landmark_ms: int | None = None
    board: dict[int, float] = {}
    names: list[str] = []
    n_events = 0
    schema = {"ts": pl.Int64, "type": pl.String, "product_id": pl.String}
    t0 = time.perf_counter()
    with path.open("rb") as f:
        while True:
            lines = list(itertools.islice(f, BLOCK_LINES))
            if not lines:
                break
            df = pl.read_ndjson(io.BytesIO(b"".join(lines)), schema=schema)
            n_events += df.height
            if landmark_ms is None:
                landmark_ms = int(df["ts"].min())  # type: ignore[arg-type]
            new = df.select("product_id").unique(maintain_order=True).join(ids, on="product_id", how="anti")
            if new.height:
                new = new.with_columns(idx=pl.int_range(ids.height, ids.height + new.height, dtype=pl.Int64))
                ids = pl.concat([ids, new])
                names += new["product_id"].to_list()
                if ids.height > acc.shape[0]:
                    acc = np.vstack(
                        [acc, np.zeros((max(ids.height, 2 * acc.shape[0]) - acc.shape[0], acc.shape[1]))]
                    )
            dt_s = (pl.col("ts") - landmark_ms) / 1000.0
            w = pl.col("type").replace_strict(weights, return_dtype=pl.Float64)
            g = (
                df.join(ids, on="product_id", how="left")
                .with_columns(tick=pl.col("ts") // TICK_MS)
                .group_by("tick", "idx")
                .agg([(w * (dt_s * float(lam[h])).exp()).sum().alias(f"c{h}") for h in range(len(lam))])
                .sort("tick", "idx")
            )
            ticks = g["tick"].to_numpy()
            idx = g["idx"].to_numpy()
            vals = g.select([f"c{h}" for h in range(len(lam))]).to_numpy()
            bounds = np.concatenate([[0], np.flatnonzero(np.diff(ticks)) + 1, [ticks.shape[0]]])
            for a, b in itertools.pairwise(bounds.tolist()):
                acc[idx[a:b]] += vals[a:b]  # one row per product per tick: no repeats
                now_ms = (int(ticks[a]) + 1) * TICK_MS
                cand = np.union1d(idx[a:b], np.fromiter(board, np.int64, len(board)))
                rate = acc[cand] * np.exp(-lam * (now_ms - landmark_ms) / 1000.0) * lam
                lift = rate[:, 0] / np.maximum(rate[:, 2], 1e-9)
                keep = np.argsort(-lift, kind="stable")[:BOARD_SIZE]
                board = dict(zip(cand[keep].tolist(), lift[keep].tolist(), strict=True))
    return time.perf_counter() - t0, n_events, [names[i] for i in board]


# ------------------------------------------------------------------ the kernel over decoded arrays
def decoded(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slot int64, type_code int8, ts_ms int64) of every event, decoded and interned (not timed)."""
    from viraltrend.kernels.intern import Interner
    from viraltrend.stream.files import FileSource

    parts = []
    with FileSource([path], batch_size=500_000) as src:
        while not src.exhausted:
            batch, _ = src.next_batch(500_000)
            parts.append(batch)
    table = Interner()
    slots = np.concatenate([table.intern(b.product_id) for b in parts])
    return slots, np.concatenate([b.type_code for b in parts]), np.concatenate([b.ts_ms for b in parts])


def kernel_limit(slot: np.ndarray, type_code: np.ndarray, ts_ms: np.ndarray, *, board: bool) -> float:
    """Seconds for ``DecayedCounters.add`` over the events (and a top-20 board per 10 s tick)."""
    from viraltrend.config import load_config
    from viraltrend.kernels.decay import DecayedCounters

    cfg = load_config(None, environ={})
    half_lives = cfg.decay.half_lives_s
    w = np.asarray(cfg.signals.weights())
    trend, base = half_lives.index(300.0), half_lives.index(86400.0)
    capacity = int(slot.max()) + 1
    ones = np.ones(slot.shape[0])

    def run() -> float:
        c = DecayedCounters(half_lives_s=half_lives, n_types=6, capacity=capacity)
        members = np.empty(0, np.int64)
        t0 = time.perf_counter()
        if not board:
            for a in range(0, slot.shape[0], 50_000):
                b = a + 50_000
                c.add(slot[a:b], type_code[a:b], ts_ms[a:b], ones[a:b])
            return time.perf_counter() - t0
        tick = ts_ms // TICK_MS
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(tick)) + 1, [slot.shape[0]]])
        for a, b in itertools.pairwise(cuts.tolist()):
            now_ms = (int(tick[a]) + 1) * TICK_MS
            c.add(slot[a:b], type_code[a:b], ts_ms[a:b], ones[a:b])
            c.rebase(now_ms)
            cand = np.union1d(slot[a:b], members)
            r = np.einsum("mth,t->mh", c.read(cand, now_ms), w)
            lift = r[:, trend] / np.maximum(r[:, base] * half_lives[trend] / half_lives[base], 1e-9)
            members = cand[np.argsort(-lift, kind="stable")[:BOARD_SIZE]]
        return time.perf_counter() - t0

    run()  # warms the JIT and the caches; the second run is timed
    return run()


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print (and with ``--record`` append) the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200k events (profile 100k) instead of 2M (1M)")
    p.add_argument("--before", default="HEAD", help="git revision of the 'before' sources")
    p.add_argument(
        "--before-engine",
        default="",
        help="git revision of the 'before' engine.py (default: --before's own); an engine.py older than the "
        "other sources may not run with them (465de36, before issue 11, no longer does)",
    )
    p.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    from bench_replay import simulated

    from viraltrend.config import load_config

    n, n_prof = (200_000, 100_000) if args.quick else (2_000_000, 1_000_000)
    events, _ = simulated(n, 100_000, 5, 1)
    prof_events, _ = simulated(n_prof, 100_000, 5, 1)
    simulated(20_000, 2_000, 1, 12345)  # the children's warm-up file
    report = Report(
        title="Columnar hot path (issue 11)", argv=["benchmarks/bench_columnar.py", *(argv or sys.argv[1:])]
    )
    args.before_engine = args.before_engine or args.before
    old, new = before_tree(args.before, args.before_engine), BENCH_DIR.parent

    runs = {}
    for tag, tree in (("before", old), ("after", new)):
        _common.console.print(f"[bold]replay[/bold] {events.name} ({tag})")
        runs[tag] = replay_child(tree, events, "auto", f"day-{tag}")
    cfg = load_config(None, environ={})
    weights = dict(
        zip(
            ("view", "like", "comment", "share", "add_to_cart", "purchase"),
            cfg.signals.weights(),
            strict=True,
        )
    )
    _common.console.print("[bold]polars pipeline[/bold]")
    polars_pipeline(events, weights)  # warm (file cache, polars thread pool)
    pl_s, pl_n, _ = polars_pipeline(events, weights)
    _common.console.print("[bold]kernel over decoded arrays[/bold]")
    slot, type_code, ts_ms = decoded(events)
    k_s = kernel_limit(slot, type_code, ts_ms, board=False)
    kb_s = kernel_limit(slot, type_code, ts_ms, board=True)

    rate = {tag: r["events"] / r["wall_s"] for tag, r in runs.items()}
    pl_rate, k_rate, kb_rate = pl_n / pl_s, n / k_s, n / kb_s
    yardsticks = {"polars": pl_rate, "kernel+board": kb_rate, "kernel": k_rate}

    def row(name: str, r: float, rss: str = "", cpu: str = "") -> tuple[str, ...]:
        return (name, fmt_rate(r), *(f"{r / y:.3g}" for y in yardsticks.values()), rss, cpu)

    rows = [
        *(
            row(
                f"viraltrend replay, {t}",
                rate[t],
                f"{runs[t]['peak_rss_mb']:.0f}",
                f"{runs[t]['cpu_s']:.1f} s, {fmt_rate(runs[t]['events'] / runs[t]['cpu_s'])}/CPU-s",
            )
            for t in ("before", "after")
        ),
        row("polars micro-batch pipeline", pl_rate),
        row("numba kernel + top-20 board, decoded arrays", kb_rate),
        row("numba kernel alone, decoded arrays", k_rate),
    ]
    same = same_decisions(runs["before"]["decisions"], runs["after"]["decisions"])
    report.table(
        f"{n:,} simulated events, 100k products (same run)",
        ["pipeline", "events/s", "x polars", "x kernel+board", "x kernel", "peak RSS MB", "replay CPU"],
        rows,
        notes=[
            f"before = sources of {args.before} with engine.py of {args.before_engine} ({old.name}), after = "
            f"the working tree; decisions identical: {same}",
            "targets (issue 11): replay >= 1.5M events/s and >= 2.5x the polars pipeline",
            "events/s and the ratios are wall time; replay CPU is the child's process time (the machine is "
            "shared, so CPU time is the steadier figure; the polars pipeline runs on its thread pool)",
        ],
    )

    tb = {}
    for tag, tree in (("before", old), ("after", new)):
        _common.console.print(f"[bold]replay[/bold] Taobao sample ({tag})")
        tb[tag] = replay_child(tree, TAOBAO, "taobao", f"taobao-{tag}")
    report.table(
        "Taobao UserBehavior sample (84k events over 9 days, sorted); users at the end of both replays",
        [
            "replay",
            "events/s",
            "wall s",
            "CPU s",
            "ticks",
            "users live",
            "user slots",
            "user bytes",
            "B / live user",
            "veteran bytes",
        ],  # fmt: skip
        [user_row(f"Taobao, {t}", r) for t, r in tb.items()]
        + [user_row(f"{n:,} day, {t}", r) for t, r in runs.items()],
        notes=[
            f"decisions identical: {same_decisions(tb['before']['decisions'], tb['after']['decisions'])}",
            "target (issue 11): >= 300k events/s; user state <= 64 B per active user",
            "user bytes (allocated, at the end): before, the dict, names list, id strings and first-seen "
            "times of every user seen; after, the hash table, slot arrays and first-seen times of the live "
            "users' slots; veterans apart (hash -> last slot of every released user)",
        ],
    )
    report.table(
        "Cost of a tick (the engine's wall time per tick; inside Engine._on_tick for the ticks Python ran)",
        [
            "replay", "ticks", "ticks Python ran", "µs of engine per tick", "touched ticks in _on_tick",
            "µs per touched", "untouched ticks in _on_tick", "µs per untouched",
        ],  # fmt: skip
        [
            tick_row(f"{name}, {t}", r)
            for name, group in (("Taobao", tb), (f"{n:,} day", runs))
            for t, r in group.items()
        ],
        notes=[
            "ticks Python ran: through Engine._on_tick, or the rest of a tick the compiled loop "
            "(kernels/segment.run_ticks) handed over; the others ran inside it; µs of engine per tick: wall "
            "time in Engine.process (events applied included) over all ticks (nan: not measured before)",
            "touched: events applied since the previous tick; untouched: none (the idle fast path when "
            "nothing is watched and no snapshot or eviction is due)",
            "target (issue 11): a tick that touches one product costs microseconds",
        ],
    )
    for tag, tree in (("before", old), ("after", new)):
        _common.console.print(f"[bold]profile[/bold] {prof_events.name} ({tag})")
        r = replay_child(tree, prof_events, "auto", f"profile-{tag}", profile=True)
        text = "\n".join(line for line in r["profile"].splitlines() if line.strip())
        report.code(text, f"cProfile of a replay of {n_prof:,} events, {tag} (top 15 by own time)")
    if args.record:
        report.record()


if __name__ == "__main__":
    main()
