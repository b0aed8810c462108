"""The ``viraltrend`` command line: simulate, replay, train, explain, demo, and the live service (run).

Every subcommand takes ``--config FILE`` (only the keys it changes, layered over the
defaults; ``VIRALTREND_<SECTION>_<KEY>`` environment variables override single values).
Errors of viraltrend's own kinds are printed as one clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from viraltrend import __version__
from viraltrend.config import Config, load_config
from viraltrend.errors import ConfigError, ViraltrendError

__all__ = ["main"]

_err = Console(stderr=True)


def _iso(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="FILE", help="TOML file with the keys to change (see config/default.toml)"
    )


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        metavar="FILE",
        help="start the online model warm from this file (written by `viraltrend train --out`); turns "
        "the model on (model.enabled, model.checkpoint)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="viraltrend",
        description="Spot products going viral in engagement events and promote them onto a "
        "'Deals of the day' board, refusing faked popularity.",
        epilog="Examples:\n  viraltrend simulate --events 1000000 --out sim/\n"
        "  viraltrend replay sim/events.ndjson --out decisions.ndjson --trace p-000042\n"
        "  viraltrend demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"viraltrend {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="write simulated engagement events with ground truth",
        description="Write DIR/events.ndjson and DIR/truth.json: Zipf popularity, viral products "
        "growing as a self-exciting process from their onset, steady sellers, one-off spikes.",
    )
    sim.add_argument("--events", type=int, default=1_000_000, help="number of events (default 1,000,000)")
    sim.add_argument("--products", type=int, default=100_000, help="catalogue size (default 100,000)")
    sim.add_argument("--viral", type=int, default=5, help="products that go viral (default 5)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument("--hours", type=float, default=24.0, help="event-time span in hours (default 24)")
    sim.add_argument(
        "--duplicates", type=float, default=0.0, help="fraction of events re-sent with the same event_id"
    )
    sim.add_argument(
        "--garbage", type=float, default=0.0, help="fraction of lines replaced by malformed input"
    )
    sim.add_argument("--bot-farms", type=int, default=0, help="products pumped by a few accounts (attack)")
    sim.add_argument(
        "--click-farms", type=int, default=0, help="products pumped by many fresh accounts that never buy"
    )
    sim.add_argument(
        "--lockstep-rings", type=int, default=0, help="rings of accounts boosting one seller's products"
    )
    sim.add_argument("--banned-viral", type=int, default=0, help="really viral products of banned sellers")
    sim.add_argument(
        "--family",
        action="store_true",
        help="write a member of the scenario family instead (viraltrend.family: 3 days, 40k products, "
        "300k events a day, viral ramps, distractors, attacks, all drawn from the seed); the other "
        "options above except --seed are ignored",
    )
    sim.add_argument(
        "--family-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the family scenario (default: --seed)",
    )
    sim.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _add_config(sim)

    rep = sub.add_parser(
        "replay",
        help="run the engine over event files and write every decision",
        description="Replay files of engagement events (NDJSON, CSV, Parquet; or the Taobao "
        "UserBehavior CSV with --format taobao) through the engine, in event-time order, and write "
        "every decision message (the deals contract) as NDJSON. Prints a summary.",
    )
    rep.add_argument("files", nargs="+", metavar="FILE", help="event files, replayed in the order given")
    rep.add_argument(
        "--out", default="decisions.ndjson", metavar="FILE", help="decisions (default decisions.ndjson)"
    )
    rep.add_argument(
        "--rejects", metavar="FILE", help="write refused records here (default OUT.rejects.ndjson)"
    )
    rep.add_argument(
        "--format",
        default="auto",
        choices=["auto", "ndjson", "csv", "parquet", "taobao"],
        help="input format (default: from the file extension)",
    )
    rep.add_argument(
        "--sort", action="store_true", help="load all input and sort it by ts first (unsorted files)"
    )
    rep.add_argument(
        "--batch-size", type=int, default=50_000, help="events per batch (does not change decisions)"
    )
    rep.add_argument(
        "--trace",
        action="append",
        default=[],
        metavar="PRODUCT_ID",
        help="record this product's features and score at every tick (repeatable)",
    )
    rep.add_argument("--trace-out", metavar="FILE", help="CSV for --trace (default OUT.trace.csv)")
    rep.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model(rep)
    _add_config(rep)

    trn = sub.add_parser(
        "train",
        help="learn the online model from event files (a replay that only learns)",
        description="Replay files of engagement events through the engine with the online model on, "
        "learning from the delayed labels the stream provides (one horizon later, from the engine's own "
        "counters), and write the model as JSON. No decisions are written. Start replay, run or demo "
        "warm from it with --model FILE. Prints the model's progressive ROC AUC, log loss and labels seen.",
    )
    trn.add_argument("files", nargs="+", metavar="FILE", help="event files, in event-time order")
    trn.add_argument("--out", required=True, metavar="FILE", help="model file to write (JSON)")
    trn.add_argument(
        "--format",
        default="auto",
        choices=["auto", "ndjson", "csv", "parquet", "taobao"],
        help="input format (default: from the file extension)",
    )
    trn.add_argument("--batch-size", type=int, default=50_000, help="events per batch")
    trn.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model(trn)
    _add_config(trn)

    exp = sub.add_parser(
        "explain",
        help="why was this product promoted, or not? (from replay output)",
        description="Print every decision about one product with its reasons and the numbers behind the "
        "score; with --trace (the CSV of replay --trace), its score curve and when it crossed the promote "
        "threshold; with --plot, a PNG of it.",
    )
    exp.add_argument("product_id", metavar="PRODUCT_ID")
    exp.add_argument(
        "--from", dest="decisions", required=True, metavar="FILE", help="decisions NDJSON (replay --out)"
    )
    exp.add_argument("--trace", metavar="CSV", help="trace CSV from replay --trace PRODUCT_ID")
    exp.add_argument(
        "--plot", metavar="PNG", help="also draw the score and the decisions to this PNG (needs --trace)"
    )
    _add_config(exp)

    run = sub.add_parser(
        "run",
        help="the live service: consume events from Kafka, publish Deals of the day",
        description="Consume engagement events from Kafka in a consumer group, run the engine, "
        "publish decisions and board snapshots (shared/contract/deals.md), send bad records to the "
        "dead-letter topic, serve Prometheus metrics, checkpoint state. Flags override [kafka], "
        "[metrics] and [checkpoint] config keys. Stops cleanly on SIGTERM/SIGINT.",
    )
    run.add_argument(
        "--bootstrap-servers", help="Kafka brokers, host:port[,host:port] (kafka.bootstrap_servers)"
    )
    run.add_argument(
        "--kafka-client",
        choices=["kafka-python", "confluent"],
        help="consumer library (kafka.client); confluent needs pip install 'viraltrend[fast]'",
    )
    run.add_argument("--input-topic", help="engagement events topic (kafka.input_topic)")
    run.add_argument("--output-topic", help="decisions topic (kafka.output_topic)")
    run.add_argument("--dlq-topic", help="dead-letter topic (kafka.dlq_topic)")
    run.add_argument(
        "--group-id",
        help="consumer group; workers started with the same group share the partitions and publish "
        "one merged board (kafka.group_id)",
    )
    run.add_argument(
        "--create-topics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create missing topics with explicit retention and cleanup configs (kafka.create_topics)",
    )
    run.add_argument(
        "--metrics-host", help="address of the /metrics endpoint (metrics.host, default 127.0.0.1)"
    )
    run.add_argument(
        "--metrics-port", type=int, help="port of the /metrics endpoint, 0 = any free (metrics.port)"
    )
    run.add_argument(
        "--checkpoint-store",
        choices=["changelog", "local"],
        help="where checkpoints live: the compacted topic <group-id>.state, which any worker can "
        "restore from (default), or files under --checkpoint-dir on this machine (checkpoint.store)",
    )
    run.add_argument(
        "--checkpoint-dir",
        help="directory of local checkpoints, with --checkpoint-store local (checkpoint.dir)",
    )
    run.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help=(
            "stop (publishing the final board) after this long with no input and no lag left on the broker"
            " (a slow fetch is waited for, up to 10x as long); for batch jobs and tests"
        ),
    )
    run.add_argument("--security-protocol", help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    run.add_argument("--sasl-mechanism", help="e.g. PLAIN, SCRAM-SHA-256")
    run.add_argument("--sasl-username", help="SASL user (kafka.sasl_plain_username)")
    run.add_argument(
        "--sasl-password-file",
        metavar="FILE",
        help="file holding the SASL password (kafka.sasl_plain_password_file); or set "
        "VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD. There is no password flag: ps would show it",
    )
    run.add_argument("--sasl-password", help=argparse.SUPPRESS)  # refused in _cmd_run, with the way out
    run.add_argument("--ssl-cafile", help="CA bundle for TLS (kafka.ssl_cafile)")
    run.add_argument("--ssl-certfile", help="client certificate (PEM) for mutual TLS (kafka.ssl_certfile)")
    run.add_argument("--ssl-keyfile", help="the client certificate's private key (PEM) (kafka.ssl_keyfile)")
    run.add_argument(
        "--no-ssl-check-hostname",
        dest="ssl_check_hostname",
        action="store_const",
        const=False,
        help="do not check the broker certificate's host name (kafka.ssl_check_hostname)",
    )
    run.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    _add_model(run)
    _add_config(run)

    demo = sub.add_parser(
        "demo",
        help="the whole system live on this machine: broker, traffic, engine, board",
        description="Start the embedded Kafka-protocol broker, simulate a day of traffic with "
        "viral products, feed it in faster than real time (a day in about a minute), run the live "
        "service with its metrics endpoint, and watch the board change in the terminal as a "
        "subscriber of the output topic. Stops by itself after the day (or --duration, or Ctrl-C) "
        "and compares the board's decisions with the ground truth.",
    )
    demo.add_argument("--events", type=int, default=1_000_000, help="events to simulate (default 1,000,000)")
    demo.add_argument("--products", type=int, default=100_000, help="catalogue size (default 100,000)")
    demo.add_argument("--viral", type=int, default=5, help="products that go viral (default 5)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--rate", type=float, default=25_000.0, help="events fed per second of wall time (default 25,000)"
    )
    demo.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (default: after the day)"
    )
    demo.add_argument(
        "--metrics-port", type=int, default=0, help="port of the /metrics endpoint (default: a free one)"
    )
    demo.add_argument(
        "--attacks",
        type=int,
        default=1,
        metavar="N",
        help="bot farms, click farms and banned sellers' viral products, N of each (default 1; 0 = none)",
    )
    demo.add_argument("--out", metavar="DIR", help="keep the files here (default: a temporary directory)")
    _add_model(demo)
    _add_config(demo)
    return parser


def _load(args: argparse.Namespace, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    overrides = dict(overrides or {})
    if getattr(args, "model", None):  # --model FILE: the model on, warm from FILE
        overrides["model"] = {**overrides.get("model", {}), "enabled": True, "checkpoint": args.model}
    return load_config(args.config, overrides=overrides)


_RUN_FLAGS = {
    "bootstrap_servers": ("kafka", "bootstrap_servers"),
    "kafka_client": ("kafka", "client"),
    "input_topic": ("kafka", "input_topic"),
    "output_topic": ("kafka", "output_topic"),
    "dlq_topic": ("kafka", "dlq_topic"),
    "group_id": ("kafka", "group_id"),
    "create_topics": ("kafka", "create_topics"),
    "metrics_host": ("metrics", "host"),
    "metrics_port": ("metrics", "port"),
    "checkpoint_store": ("checkpoint", "store"),
    "checkpoint_dir": ("checkpoint", "dir"),
    "security_protocol": ("kafka", "security_protocol"),
    "sasl_mechanism": ("kafka", "sasl_mechanism"),
    "sasl_username": ("kafka", "sasl_plain_username"),
    "sasl_password_file": ("kafka", "sasl_plain_password_file"),
    "ssl_cafile": ("kafka", "ssl_cafile"),
    "ssl_certfile": ("kafka", "ssl_certfile"),
    "ssl_keyfile": ("kafka", "ssl_keyfile"),
    "ssl_check_hostname": ("kafka", "ssl_check_hostname"),
}


def _cmd_run(args: argparse.Namespace) -> int:
    from viraltrend.stream.loop import run_service

    if args.sasl_password is not None:
        msg = (
            "--sasl-password would show the password in ps; put it in a file and pass "
            "--sasl-password-file FILE, or set VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD"
        )
        raise ConfigError(msg)
    overrides: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in _RUN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    cfg = _load(args, overrides)
    return run_service(cfg, exit_when_idle_s=args.exit_when_idle, log_level=args.log_level)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TransferSpeedColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeRemainingColumn(),
        console=_err,
        transient=True,
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from viraltrend.simulate import Scenario, simulate

    if args.family:
        from viraltrend.family import FamilyScenario, simulate_family

        family = FamilyScenario(seed=args.seed if args.family_seed is None else args.family_seed)
        with _progress() as bar:
            task = bar.add_task("simulating", total=family.n_days * family.events_per_day, events=0)
            result = simulate_family(
                family,
                Path(args.out),
                progress=lambda done, total: bar.update(task, completed=done, total=total, events=done),
            )
        _err.print(f"wrote {result.events_path} and {result.truth_path}")
        return 0
    scenario = Scenario(
        n_events=args.events,
        n_products=args.products,
        n_viral=args.viral,
        seed=args.seed,
        duration_s=args.hours * 3600.0,
        duplicate_fraction=args.duplicates,
        garbage_fraction=args.garbage,
        n_bot_farms=args.bot_farms,
        n_click_farms=args.click_farms,
        n_lockstep_rings=args.lockstep_rings,
        n_banned_viral=args.banned_viral,
    )
    with _progress() as bar:
        task = bar.add_task("simulating", total=args.events, events=0)
        result = simulate(
            scenario,
            Path(args.out),
            progress=lambda done, total: bar.update(task, completed=done, total=total, events=done),
        )
    _err.print(f"wrote {result.events_path} and {result.truth_path}")
    return 0


def _summary_table(summary: Any) -> Table:
    t = Table(title="replay summary", show_header=False)
    t.add_row("events read", f"{summary.events_read:,}")
    t.add_row("events applied", f"{summary.events_applied:,}")
    t.add_row("throughput", f"{summary.events_per_s:,.0f} events/s over {summary.wall_s:.2f} s")
    t.add_row("rejected", ", ".join(f"{k}={v:,}" for k, v in summary.rejected.items()) or "none")
    t.add_row("decisions", ", ".join(f"{k}={v:,}" for k, v in summary.decisions.items()) or "none")
    t.add_row(
        "products tracked", f"{summary.products_tracked:,} ({summary.bytes_per_product:.0f} bytes/product)"
    )
    t.add_row("event time reached", _iso(summary.watermark_ms))
    return t


def _board_table(items: list[dict[str, Any]], truth: set[str] | None = None) -> Table:
    t = Table(title="Deals of the day (end of input)")
    for col in ("rank", "product", "seller", "category", "score", "on board since"):
        t.add_column(col)
    if truth is not None:
        t.add_column("truly viral?")
    for it in items:
        row = [
            str(it["rank"]),
            it["product_id"],
            it.get("seller_id") or "-",
            it.get("category") or "-",
            f"{it['score']:.3f}",
            _iso(it.get("since_ts")),
        ]
        if truth is not None:
            row.append("yes" if it["product_id"] in truth else "no")
        t.add_row(*row)
    return t


def _cmd_replay(args: argparse.Namespace) -> int:
    from viraltrend.replay import replay

    cfg = _load(args)
    out = Path(args.out)
    rejects = args.rejects or str(out.with_suffix("")) + ".rejects.ndjson"
    trace_out = args.trace_out or (str(out.with_suffix("")) + ".trace.csv" if args.trace else None)
    bar = None if args.no_progress else _progress()
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("replaying", total=None, events=0)

    def on_progress(done: int, total: int, events: int) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=done, total=total, events=events)

    try:
        summary = replay(
            args.files,
            cfg,
            out=out,
            rejects_out=rejects,
            batch_size=args.batch_size,
            file_format=args.format,
            sort=args.sort,
            trace=args.trace,
            trace_out=trace_out,
            progress=on_progress,
        )
    finally:
        if bar is not None:
            bar.stop()
    console = Console()
    console.print(_summary_table(summary))
    console.print(_board_table(summary.board))
    console.print(f"decisions: {out}   rejects: {rejects}" + (f"   trace: {trace_out}" if trace_out else ""))
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from viraltrend.train import train

    cfg = _load(args)
    bar = None if args.no_progress else _progress()
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("training", total=None, events=0)

    def on_progress(done: int, total: int, events: int) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=done, total=total, events=events)

    try:
        summary = train(
            args.files,
            cfg,
            out=args.out,
            batch_size=args.batch_size,
            file_format=args.format,
            progress=on_progress,
        )
    finally:
        if bar is not None:
            bar.stop()
    m = summary.model
    t = Table(title="train summary", show_header=False)
    streams = f"{summary.streams} stream{'s' if summary.streams > 1 else ''}"
    t.add_row("events", f"{summary.events_valid:,} ({streams}) in {summary.wall_s:.1f} s")
    t.add_row("labels seen", f"{m['labels_seen']:,} ({m['positives_seen']:,} positive)")
    t.add_row("progressive ROC AUC", f"{m['roc_auc']:.3f}")
    t.add_row("progressive log loss", f"{m['log_loss']:.4f}")
    cold = "no (the rule decides until it has seen model.min_labels labels)"
    t.add_row("warm", "yes" if m["warm"] else cold)
    t.add_row("features", ", ".join(summary.features))
    console = Console()
    console.print(t)
    console.print(f"model: {summary.out}   (start warm with --model {summary.out})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from viraltrend.demo import DemoOptions, run_demo

    cfg = _load(args)
    opts = DemoOptions(
        events=args.events,
        products=args.products,
        viral=args.viral,
        seed=args.seed,
        rate_per_s=args.rate,
        duration_s=args.duration,
        metrics_port=args.metrics_port,
        out_dir=Path(args.out) if args.out else None,
        attacks=(
            ("n_bot_farms", args.attacks),
            ("n_click_farms", args.attacks),
            ("n_banned_viral", args.attacks),
        ),
    )
    return run_demo(cfg, opts)


def _cmd_explain(args: argparse.Namespace) -> int:
    from viraltrend.explain import explain

    return explain(args.product_id, args.decisions, _load(args), trace_path=args.trace, plot_path=args.plot)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    handlers = {
        "simulate": _cmd_simulate,
        "replay": _cmd_replay,
        "train": _cmd_train,
        "explain": _cmd_explain,
        "run": _cmd_run,
        "demo": _cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except ViraltrendError as exc:
        _err.print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        _err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
