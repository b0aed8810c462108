"""Replay end to end on a simulated day: throughput, memory, detection quality, determinism.

1. Simulate a scenario (default 2M events, 100k products, 5 viral, seed 1), cached in
   ``benchmarks/out/sim-*``.
2. In a fresh child process per run (so peak RSS is the run's own), warm the JIT on a tiny
   replay, then time ``viraltrend.replay.replay`` with the default config and batch 50k;
   again with batches of 10k and 200k, and once with a viral product traced.
3. Score the decisions against ``truth.json``: minutes from each viral product's onset to its
   first ``promote``, precision and recall of the promoted set, steady and spike products
   promoted (should be 0), and whether every run gave the same decisions (``emitted_at`` aside).
4. Plot ``out/onset_to_promotion.png`` and ``out/viral_rate_trace.png``.
5. With ``--profile`` (or ``auto`` when below 1M events/s), profile one replay with cProfile.

Run: ``.venv/bin/python benchmarks/bench_replay.py [--quick] [--events N] [--record]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common  # first: sets the numba cache dir before numba is imported  # noqa: I001
from _common import OUT_DIR, Report, fmt_rate, peak_rss_mb, verdict

from viraltrend.config import load_config

TARGET_EVENTS_PER_S = 1e6
MAIN_BATCH = 50_000  # replay's default
FEW_MINUTES = 5.0  # "promoted within a few minutes of onset", read as <= 5 min


# ------------------------------------------------------------------ simulation (cached)
def simulated(n_events: int, n_products: int, n_viral: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """``events.ndjson`` and the truth of the scenario, simulated once and cached under out/."""
    from viraltrend.simulate import Scenario, simulate

    scenario = Scenario(n_events=n_events, n_products=n_products, n_viral=n_viral, seed=seed)
    where = OUT_DIR / f"sim-{n_events}-{n_products}-{n_viral}-s{seed}"
    truth_path, events_path = where / "truth.json", where / "events.ndjson"
    if truth_path.exists() and events_path.exists():
        truth = json.loads(truth_path.read_text())
        from dataclasses import asdict

        if truth.get("scenario") == asdict(scenario):
            return events_path, truth
    _common.console.print(f"[bold]simulating[/bold] {scenario} -> {where}")
    result = simulate(scenario, where)
    return result.events_path, result.truth


# ------------------------------------------------------------------ child process
def _warm_up() -> None:
    """Compile/load every kernel replay uses, on a tiny scenario, before anything is timed."""
    from viraltrend.config import load_config
    from viraltrend.replay import replay

    events, _ = simulated(20_000, 2_000, 1, 12345)
    replay([events], load_config(None), out=OUT_DIR / "warmup-decisions.ndjson", batch_size=5_000)


def replay_child(
    events: str, out: str, batch_size: int, trace: list[str], trace_out: str | None, profile_out: str | None
) -> dict[str, Any]:
    """Run in a spawned process: warm up, replay once (profiled if asked), return the summary."""
    from viraltrend.config import load_config
    from viraltrend.replay import replay

    _warm_up()
    cfg = load_config(None)

    def run() -> Any:
        return replay([events], cfg, out=out, batch_size=batch_size, trace=trace, trace_out=trace_out)

    if profile_out is None:
        summary = run()
    else:
        import cProfile

        prof = cProfile.Profile()
        summary = prof.runcall(run)
        prof.dump_stats(profile_out)
    d = summary.to_dict()
    d.pop("board", None)
    d["vm_hwm_mb"] = peak_rss_mb()
    return d


def in_child(**kwargs: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(replay_child, kwds=kwargs)


# ------------------------------------------------------------------ decisions
def load_decisions(path: Path) -> list[dict[str, Any]]:
    """Decision messages with ``emitted_at`` removed (the only wall-clock field)."""
    out = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                m = json.loads(line)
                m.pop("emitted_at", None)
                out.append(m)
    return out


def first_promotions(decisions: list[dict[str, Any]]) -> dict[str, int]:
    first: dict[str, int] = {}
    for m in decisions:
        if m.get("action") == "promote":
            first.setdefault(m["product_id"], int(m["event_ts"]))
    return first


def _utc(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M:%S")


def detection(truth: dict[str, Any], promoted: dict[str, int]) -> dict[str, Any]:
    viral = {v["product_id"]: v for v in truth["viral"]}
    steady = {s["product_id"] for s in truth["steady"]}
    spikes = {s["product_id"] for s in truth["spikes"]}
    rows, delays = [], []
    for pid, v in viral.items():
        at = promoted.get(pid)
        delay = None if at is None else (at - v["onset_ts"]) / 60_000
        if delay is not None:
            delays.append(delay)
        rows.append(
            (
                pid,
                v["rank"],
                _utc(v["onset_ts"]),
                "-" if at is None else _utc(at),
                "not promoted" if delay is None else f"{delay:.1f}",
                v["events"],
                v["events_first_10min"],
            )
        )
    hits = set(promoted) & set(viral)
    return {
        "rows": rows,
        "delays": {
            pid: None if pid not in promoted else (promoted[pid] - v["onset_ts"]) / 60_000
            for pid, v in viral.items()
        },
        "median": statistics.median(delays) if delays else None,
        "max": max(delays) if delays else None,
        "precision": len(hits) / len(promoted) if promoted else None,
        "recall": len(hits) / len(viral) if viral else None,
        "n_promoted": len(promoted),
        "steady_promoted": sorted(set(promoted) & steady),
        "spikes_promoted": sorted(set(promoted) & spikes),
        "other_promoted": sorted(set(promoted) - set(viral) - steady - spikes),
    }


def score_crossings(trace_csv: Path, truth: dict[str, Any], threshold: float) -> dict[str, str]:
    """Per viral product, minutes from onset to the first traced tick with score >= threshold."""
    import polars as pl

    df = pl.read_csv(trace_csv)
    out = {}
    for v in truth["viral"]:
        hit = df.filter(
            (pl.col("product_id") == v["product_id"])
            & (pl.col("event_ts") >= v["onset_ts"])
            & (pl.col("score") >= threshold)
        )
        out[v["product_id"]] = (
            "never" if hit.is_empty() else f"{(hit['event_ts'].min() - v['onset_ts']) / 60_000:.1f}"
        )
    return out


# ------------------------------------------------------------------ plots
def plot_delays(delays: dict[str, float | None], crossings: dict[str, str], path: Path) -> None:
    """Bars of onset-to-promotion minutes per viral product, split at the first score crossing when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    names = list(delays)
    total = [0.0 if d is None else d for d in delays.values()]
    cross = []
    for name, t in zip(names, total, strict=True):
        c = crossings.get(name, "")
        cross.append(min(float(c), t) if c.replace(".", "", 1).lstrip("-").isdigit() and t > 0 else 0.0)
    if any(cross):
        ax.bar(names, cross, color="tab:orange", label="onset -> score crosses promote threshold")
        ax.bar(
            names,
            [t - c for t, c in zip(total, cross, strict=True)],
            bottom=cross,
            color="tab:blue",
            label="-> promote (confirm_s hold, tick alignment)",
        )
    else:
        ax.bar(names, total, color="tab:blue", label="onset -> first promote")
    for x, (t, d) in enumerate(zip(total, delays.values(), strict=True)):
        ax.annotate("not promoted" if d is None else f"{d:.1f}", (x, t), ha="center", va="bottom", fontsize=8)
    ax.axhline(FEW_MINUTES, color="tab:red", ls="--", lw=1, label=f"{FEW_MINUTES:g} min")
    ax.set_ylim(0, max([*total, FEW_MINUTES]) * 1.45)
    ax.set_ylabel("minutes of event time")
    ax.set_title("Viral products: onset (truth) to first promotion")
    ax.legend(loc="upper center", fontsize=8, ncol=2)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_trace(trace_csv: Path, product: str, onset_ts: int, promote_ts: int | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    df = pl.read_csv(trace_csv).filter(pl.col("product_id") == product)
    df = df.with_columns(minutes=(pl.col("event_ts") - onset_ts) / 60_000).filter(
        pl.col("minutes").is_between(-30, 90)
    )
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(
        df["minutes"], df["rate_5m_per_h"], label="rate_5m_per_h (weighted engagements/h)", color="tab:blue"
    )
    if "baseline_per_h" in df.columns:
        ax.plot(df["minutes"], df["baseline_per_h"], label="baseline_per_h", color="tab:gray", ls="--")
    ax.set_yscale("symlog", linthresh=10)
    ax.axvline(0, color="black", lw=1, label="onset (truth)")
    if promote_ts is not None:
        ax.axvline(
            (promote_ts - onset_ts) / 60_000,
            color="tab:red",
            lw=1.5,
            label=f"first promote (+{(promote_ts - onset_ts) / 60_000:.1f} min)",
        )
    ax2 = ax.twinx()
    ax2.plot(df["minutes"], df["score"], color="tab:orange", lw=0.8, alpha=0.7, label="score")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("score")
    ax.set_xlabel("minutes from onset (event time, 10 s ticks)")
    ax.set_ylabel("rate per hour (symlog)")
    ax.set_title(f"{product}: 5-minute rate around its onset")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main
def _profile_text(path: Path, top: int) -> str:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def stage_rows(path: Path) -> list[tuple[str, str, str, str]]:
    """Where replay() spends its time, from a cProfile dump.

    Reading + decoding, writing decisions, then every callee of ``Engine.process`` above 1 % of
    the total (found by name, so the table follows the engine's code as it changes), then the rest.
    """
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]

    def find(file: str, func: str) -> list[Any]:
        return [k for k in stats if k[0].endswith("/" + file) and k[2] == func]

    def cum(keys: list[Any]) -> tuple[int, float]:
        return sum(stats[k][1] for k in keys), sum(stats[k][3] for k in keys)

    total = cum(find("replay.py", "replay"))[1]
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, calls: int, seconds: float) -> None:
        share = f"{100 * seconds / total:.0f}%" if total else "n/a"
        rows.append((label, f"{calls:,}", f"{seconds:.2f}", share))

    read, write = cum(find("files.py", "next_batch")), cum(find("sinks.py", "write"))
    add("read file + decode (FileSource.next_batch)", *read)
    add("... of which decode_records", *cum(find("decode.py", "decode_records")))
    add("write decisions (DecisionFile.write)", *write)
    process = find("engine.py", "process")
    callees = []
    for key, entry in stats.items():
        for p in process:
            if p in entry[4]:
                _, nc, _, ct = entry[4][p]
                name = key[2] if key[0] == "~" else f"{Path(key[0]).stem}.{key[2]}"
                callees.append((ct, nc, name))
    shown = 0.0
    for ct, nc, name in sorted(callees, reverse=True):
        if total and ct >= 0.01 * total:
            add(f"Engine.process -> {name}", nc, ct)
            shown += ct
            if name == "engine._apply":
                add("... of which DecayedCounters.add", *cum(find("decay.py", "add")))
    n_process, process_s = cum(process)
    add("Engine.process: own time and callees under 1 % each", n_process, process_s - shown)
    add("rest of replay() (batch loop, summary)", 1, max(total - read[1] - write[1] - process_s, 0.0))
    rows.append(("replay() total", "1", f"{total:.2f}", "100%"))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--viral", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--batch-sizes", default="10000,200000", help="other batch sizes whose decisions must match"
    )
    ap.add_argument(
        "--profile",
        choices=("auto", "yes", "no"),
        default="auto",
        help="cProfile one replay (auto: when below 1M events/s)",
    )
    ap.add_argument("--top", type=int, default=10, help="profile lines to show")
    ap.add_argument("--quick", action="store_true", help="10x smaller scenario, for a fast check")
    ap.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.events //= 10
        args.products //= 10
    report = Report("bench_replay", ["benchmarks/bench_replay.py", *(sys.argv[1:] if argv is None else argv)])
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    events, truth = simulated(args.events, args.products, args.viral, args.seed)
    size_mb = events.stat().st_size / 1e6
    tag = f"{args.events}-{args.products}-{args.viral}-s{args.seed}"

    runs: list[tuple[str, int, dict[str, Any], Path]] = []
    sizes = [MAIN_BATCH] + [int(x) for x in args.batch_sizes.split(",") if x]
    for b in sizes:
        out = OUT_DIR / f"decisions-{tag}-b{b}.ndjson"
        _common.console.print(f"replay, batch {b:,} ...")
        runs.append(
            (
                f"batch {b:,}",
                b,
                in_child(
                    events=str(events), out=str(out), batch_size=b, trace=[], trace_out=None, profile_out=None
                ),
                out,
            )
        )

    decisions = {label: load_decisions(out) for label, _, _, out in runs}
    main_label = runs[0][0]
    promoted = first_promotions(decisions[main_label])
    det = detection(truth, promoted)

    # every viral product traced; the plot shows the first promoted one (in truth order), else the first
    viral_ids = [v["product_id"] for v in truth["viral"]]
    traced = next((p for p in viral_ids if p in promoted), viral_ids[0] if viral_ids else None)
    trace_csv = OUT_DIR / f"trace-{tag}.csv"
    if traced is not None:
        out = OUT_DIR / f"decisions-{tag}-b{MAIN_BATCH}-trace.ndjson"
        _common.console.print(
            f"replay, batch {MAIN_BATCH:,}, tracing the {len(viral_ids)} viral products ..."
        )
        s = in_child(
            events=str(events),
            out=str(out),
            batch_size=MAIN_BATCH,
            trace=viral_ids,
            trace_out=str(trace_csv),
            profile_out=None,
        )
        runs.append((f"batch {MAIN_BATCH:,} + trace of {len(viral_ids)}", MAIN_BATCH, s, out))
        decisions[runs[-1][0]] = load_decisions(out)
        first_cross = score_crossings(trace_csv, truth, load_config(None).board.promote_threshold)
        det["crossings"] = first_cross
        for i, row in enumerate(det["rows"]):
            det["rows"][i] = (*row[:4], first_cross.get(row[0], "-"), *row[4:])
    else:
        det["rows"] = [(*row[:4], "-", *row[4:]) for row in det["rows"]]

    # ---- throughput table
    rows = []
    for label, _, s, _ in runs:
        per_live = s["state_bytes"] / max(s["products_tracked"], 1)
        rows.append(
            (
                label,
                f"{s['events_read']:,}",
                f"{s['wall_s']:.2f}",
                fmt_rate(s["events_per_s"]),
                f"{s['vm_hwm_mb']:.0f}",
                f"{s['peak_rss_mb']:.0f}",
                f"{s['bytes_per_product']:.0f}",
                f"{per_live:.0f}",
                f"{s['products_tracked']:,}",
                f"{s['ticks']:,}",
                ", ".join(f"{k} {v}" for k, v in s["decisions"].items()),
            )
        )
    main_s = runs[0][2]
    per_live_main = main_s["state_bytes"] / max(main_s["products_tracked"], 1)
    inherited = any(s["peak_rss_mb"] > s["vm_hwm_mb"] + 1 for _, _, s, _ in runs)
    rss_note = (
        [
            "summary peak_rss_mb (ReplaySummary, ru_maxrss) exceeds VmHWM: ru_maxrss survives exec, so a "
            "child started from a bigger process reports at least the parent's RSS at fork; VmHWM is the "
            "run's own peak"
        ]
        if inherited
        else []
    )
    report.table(
        f"replay end to end: {args.events:,} simulated events ({size_mb:.0f} MB NDJSON), "
        f"{args.products:,} products, "
        f"{args.viral} viral, seed {args.seed}, default config",
        (
            "run",
            "events read",
            "wall s",
            "events/s",
            "peak RSS MB (VmHWM)",
            "summary peak_rss_mb",
            "bytes/product (per slot)",
            "state B / tracked product",
            "products tracked",
            "ticks",
            "decisions",
        ),
        rows,
        notes=[
            "each run in a fresh spawned process, after a warm-up replay of a 20k-event scenario "
            "in that process; "
            "wall = replay() from opening the file to the final snapshot (decode, engine, decision file)",
            "bytes/product (per slot) = ReplaySummary.bytes_per_product = state bytes / allocated slots; "
            "the next column divides by the products holding state at the end",
            f"target replay >= 1M events/s: {verdict(main_s['events_per_s'] >= TARGET_EVENTS_PER_S)} "
            f"({fmt_rate(main_s['events_per_s'])}/s at batch {MAIN_BATCH:,})",
            f"target <= 256 bytes/product: {verdict(main_s['bytes_per_product'] <= 256)} per allocated slot "
            f"({main_s['bytes_per_product']:.0f} B); per product holding state at the end: "
            f"{verdict(per_live_main <= 256)} "
            f"({per_live_main:.0f} B: capacity grows by doubling)",
            *rss_note,
        ],
    )

    # ---- detection quality
    board = load_config(None).board
    report.table(
        f"detection quality (batch {MAIN_BATCH:,}): viral products, onset (truth) to first promote, "
        "event time UTC",
        (
            "product",
            "popularity rank",
            "onset",
            "first promote",
            f"score >= {board.promote_threshold:g} after, min",
            "delay to promote, min",
            "viral events",
            "events in first 10 min",
        ),
        det["rows"],
        notes=[
            f"a candidate must hold score >= board.promote_threshold ({board.promote_threshold:g}) "
            "with momentum "
            f">= {board.min_momentum:g} for board.confirm_s = {board.confirm_s:g} s before it is promoted; "
            "'score >= ... after' is the first 10 s tick at which the traced score crossed it"
        ],
    )

    def f(x: float | None, fmt: str = "{:.1f}") -> str:
        return "n/a" if x is None else fmt.format(x)

    all_fast = det["max"] is not None and det["recall"] == 1.0 and det["max"] <= FEW_MINUTES
    report.table(
        "detection summary",
        ("measure", "value", "target"),
        [
            ("median delay, min", f(det["median"]), f'<= {FEW_MINUTES:g} (my reading of "a few minutes")'),
            ("max delay, min", f(det["max"]), f"<= {FEW_MINUTES:g}: {verdict(all_fast)}"),
            (
                "precision (promoted viral / promoted)",
                f(det["precision"], "{:.2f}") + f" of {det['n_promoted']} promoted",
                "",
            ),
            ("recall (promoted viral / viral)", f(det["recall"], "{:.2f}"), "1.00"),
            (
                "steady products promoted",
                f"{len(det['steady_promoted'])} {det['steady_promoted'] or ''}",
                f"0: {verdict(not det['steady_promoted'])}",
            ),
            (
                "spike products promoted",
                f"{len(det['spikes_promoted'])} {det['spikes_promoted'] or ''}",
                f"0: {verdict(not det['spikes_promoted'])}",
            ),
            (
                "other (non-viral base) products promoted",
                f"{len(det['other_promoted'])} {det['other_promoted'][:5] or ''}",
                "",
            ),
        ],
    )

    # ---- determinism
    ref = decisions[main_label]
    det_rows = [
        (label, f"{len(decisions[label]):,}", "yes" if decisions[label] == ref else "NO")
        for label, *_ in runs[1:]
    ]
    report.table(
        f"same decisions as batch {MAIN_BATCH:,} ({len(ref):,} messages), ignoring emitted_at",
        ("run", "messages", "identical"),
        det_rows,
    )

    # ---- plots
    delay_png, trace_png = OUT_DIR / "onset_to_promotion.png", OUT_DIR / "viral_rate_trace.png"
    plot_delays(det["delays"], det.get("crossings", {}), delay_png)
    if traced is not None and trace_csv.exists():
        onset = next(v["onset_ts"] for v in truth["viral"] if v["product_id"] == traced)
        plot_trace(trace_csv, traced, onset, promoted.get(traced), trace_png)
        report.note(
            f"plots: `{delay_png.relative_to(OUT_DIR.parent)}`, `{trace_png.relative_to(OUT_DIR.parent)}` "
            f"(trace of {traced})"
        )

    # ---- profile
    if args.profile == "yes" or (args.profile == "auto" and main_s["events_per_s"] < TARGET_EVENTS_PER_S):
        prof = OUT_DIR / f"replay-{tag}.prof"
        _common.console.print("profiling one replay (cProfile) ...")
        s = in_child(
            events=str(events),
            out=str(OUT_DIR / f"decisions-{tag}-profiled.ndjson"),
            batch_size=MAIN_BATCH,
            trace=[],
            trace_out=None,
            profile_out=str(prof),
        )
        report.code(
            _profile_text(prof, args.top),
            f"cProfile of replay (batch {MAIN_BATCH:,}; {s['wall_s']:.1f} s under the profiler vs "
            f"{main_s['wall_s']:.1f} s without), top {args.top} by tottime",
        )
        report.table(
            "replay stages in the same profile (cumulative time, profiler overhead included)",
            ("stage", "calls", "cumulative s", "share of replay()"),
            stage_rows(prof),
        )
    if args.record:
        report.record()


if __name__ == "__main__":
    main()
