"""Scale-out: events/s with 1 and 2 workers in one consumer group, and restore time per million products.

Targets (issue 6, benchmark only): events/s with 1 and 2 workers on this 2-core machine (the
broker on the same machine) and the per-worker efficiency; restore time per million products of
state; a projection for a production cluster (partitions, workers, events/s, state size) and
what it rests on.

1. Throughput, per Kafka client (``--clients``, default ``confluent,kafka-python``), on a fresh
   :class:`EmbeddedBroker`: a ``--partitions`` (4) partition input topic is filled once with the
   simulated events (default 1M events over 100k products, keyed by ``product_id`` by
   ``produce_file``); then, ``--repeats`` times, one worker (``viraltrend run``, the real CLI, a
   subprocess), then two workers started together, each run in a new consumer group, checkpoints
   in the changelog topic ``<group>.state``.  Every worker's ``/metrics`` is scraped every
   0.25 s; events/s = records counted from the first non-zero ``viraltrend_events_consumed_total``
   (summed over the workers) to N, so process start and the first group join are excluded (a
   rebalance when the second worker joins late is included; the "settled" rate counts only from
   the scrape where every worker holds partitions).  CPU seconds of each worker and of the
   broker over the same window come from ``/proc/<pid>/stat``.  Per-worker efficiency =
   (rate with 2 workers / 2) / rate with 1 worker.  After the first one-worker run a new worker
   joins that group alone and restores every partition from the changelog
   (``viraltrend_restore_duration_seconds``).
2. Restore, per size (``--restore-products``, default 250k and 1M), in a spawned child process (so
   its peak RSS is its own): an :class:`~viraltrend.engine.Engine` is fed synthetic events (two per
   product over 50 minutes of event time, users drawn from a pool of half as many, no eviction)
   until it tracks that many products; its state is saved with :class:`ChangelogStore` into a
   topic of the embedded broker and with :class:`LocalStore` into a directory, then a fresh store
   instance ``load``\\ s it and ``Engine.restore`` rebuilds the engine (timed separately; the
   restored arrays are compared with the saved ones).  The checkpoint is broken down into
   per-product, per-(user, product) pair and per-dedup-id bytes for the projection.
3. Rich tables, ``benchmarks/out/scaleout.md`` (appended), and with ``--record`` a section of
   ``benchmarks/RESULTS.md``, with a projection computed from the measured numbers.

Run: ``.venv/bin/python benchmarks/bench_scaleout.py [--quick] [--record]`` (full run ~10 min).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# _common before viraltrend: it sets NUMBA_CACHE_DIR (out/numba-cache) before numba is first imported
from _common import OUT_DIR, Report, console, fmt_rate, loadavg, peak_rss_mb
from bench_service import (
    SCRAPE_S,
    ServiceProc,
    broker,
    broker_pid,
    child_env,
    cpu_s,
    require_crc32c,
    simulated,
    viraltrend_cmd,
    warm_numba,
)

SCALEOUT_MD = OUT_DIR / "scaleout.md"
START_MS = 1_764_201_600_000  # on an hour boundary: no eviction within the 50 minutes of restore input
RESTORE_SPAN_MS = 50 * 60 * 1000
RESTORE_BATCH = 50_000
TARGETS = (200_000.0, 1_000_000.0)  # events/s of the projection
LIVE_PRODUCTS = 10_000_000
_CLK_TCK = os.sysconf("SC_CLK_TCK")
HEADROOM = 0.7  # a worker planned at 70% of the rate it reached here


# ------------------------------------------------------------------ workers
def _metrics(text: str) -> dict[str, float]:
    """``{name{labels}: value}`` of a Prometheus text exposition (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


def msum(m: dict[str, float] | None, name: str) -> float:
    """Sum of every sample of metric ``name`` (all label sets); 0 when not scraped."""
    if not m:
        return 0.0
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


class Worker(ServiceProc):
    """One ``viraltrend run`` of a group (own log, chosen client, changelog checkpoints)."""

    def __init__(  # noqa: PLR0913 - the command line's flags
        self,
        bootstrap: str,
        names: dict[str, str],
        group: str,
        tmp: Path,
        *,
        client: str,
        index: int,
        exit_when_idle: float | None = None,
    ) -> None:
        from viraltrend.stream.broker import free_port

        self.port = free_port()
        self.log_path = tmp / f"{group}-w{index}.log"
        flags = {"--bootstrap-servers": bootstrap, "--input-topic": names["input"],
                 "--output-topic": names["output"], "--dlq-topic": names["dlq"], "--group-id": group,
                 "--kafka-client": client, "--checkpoint-store": "changelog",
                 "--checkpoint-dir": str(tmp / "ckpt"), "--metrics-port": str(self.port),
                 "--log-level": "INFO"}  # fmt: skip
        self.cmd = [*viraltrend_cmd(), "run", "--no-create-topics", *(x for kv in flags.items() for x in kv)]
        if exit_when_idle is not None:
            self.cmd += ["--exit-when-idle", str(exit_when_idle)]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=child_env()
        )

    def metrics(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2.0) as r:
                return _metrics(r.read().decode())
        except OSError:
            return None


def machine_busy_s() -> float:
    """CPU seconds every process of the machine has spent (all cores, idle and iowait excluded)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def stop_all(workers: list[Worker], timeout_s: float = 60.0) -> list[int]:
    """SIGTERM every worker at once (each checkpoints and leaves), then wait; kill what hangs."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    codes = []
    deadline = time.monotonic() + timeout_s
    for w in workers:
        try:
            codes.append(w.proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            codes.append(w.proc.wait())
        w._log.close()  # noqa: SLF001 - ServiceProc's own log handle
    return codes


@dataclass
class Sample:
    t: float
    consumed: list[float]
    assigned: list[float]
    cpu: list[float]
    broker_cpu: float
    machine_cpu: float = field(default_factory=machine_busy_s)
    self_cpu: float = field(default_factory=time.process_time)

    @property
    def total(self) -> float:
        return sum(self.consumed)


@dataclass
class GroupRun:
    """One run of ``workers`` workers of a new group over the whole filled topic."""

    client: str
    workers: int
    partitions: int
    n: int
    window_s: float
    counted: float
    total_s: float
    settled_rate: float
    worker_cpu_s: list[float]
    broker_cpu_s: float
    other_cpu_s: float  # every other process of the machine (this benchmark's scraper included)
    per_worker: list[float]
    assigned_at_end: list[float]
    rebalances: list[float]
    exit_codes: list[int]
    load: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.counted / self.window_s if self.window_s > 0 else float("nan")


def run_group(
    bootstrap: str,
    names: dict[str, str],
    n: int,
    workers: int,
    group: str,
    client: str,
    tmp: Path,
    tansu: int | None,
    partitions: int,
    timeout_s: float = 600.0,
) -> GroupRun:
    """Start ``workers`` workers of ``group`` together; scrape until they consumed ``n`` records."""
    load = loadavg()
    procs = [Worker(bootstrap, names, group, tmp, client=client, index=i) for i in range(workers)]
    t_start = time.monotonic()
    first = settled = last = None
    final: list[dict[str, float] | None] = []
    try:
        while True:
            ms = [w.metrics() for w in procs]
            s = Sample(
                time.monotonic(),
                [msum(m, "viraltrend_events_consumed_total") for m in ms],
                [msum(m, "viraltrend_assigned_partitions") for m in ms],
                [cpu_s(w.proc.pid) for w in procs],
                cpu_s(tansu) if tansu else float("nan"),
            )
            if first is None and s.total > 0:
                first = s
            if settled is None and all(a > 0 for a in s.assigned) and sum(s.assigned) == partitions:
                settled = s
            if s.total >= n:
                last = s
                final = ms
                break
            for w in procs:
                if w.proc.poll() is not None:
                    stop_all(procs)
                    w.fail(f"exited with code {w.proc.returncode} before the group consumed {n:,} records")
            if s.t - t_start > timeout_s:
                procs[0].fail(f"group {group} consumed {s.total:,.0f} of {n:,} records in {timeout_s:g} s")
            time.sleep(SCRAPE_S)
    finally:
        codes = stop_all(procs)
    assert first is not None and last is not None
    settled_rate = float("nan")
    if settled is not None and last.t > settled.t:
        settled_rate = (last.total - settled.total) / (last.t - settled.t)
    return GroupRun(
        client=client,
        workers=workers,
        partitions=partitions,
        n=n,
        window_s=last.t - first.t,
        counted=n - first.total,
        total_s=last.t - t_start,
        settled_rate=settled_rate,
        worker_cpu_s=[b - a for a, b in zip(first.cpu, last.cpu, strict=True)],
        broker_cpu_s=last.broker_cpu - first.broker_cpu,
        other_cpu_s=(last.machine_cpu - first.machine_cpu)
        - sum(b - a for a, b in zip(first.cpu, last.cpu, strict=True))
        - (last.broker_cpu - first.broker_cpu),
        per_worker=last.consumed,
        assigned_at_end=last.assigned,
        rebalances=[msum(m, 'viraltrend_rebalances_total{kind="assigned"}') for m in final],
        exit_codes=codes,
        load=load,
        extra={"settled_after_s": (settled.t - first.t) if settled is not None else float("nan")},
    )


def service_restore(
    bootstrap: str, names: dict[str, str], group: str, client: str, tmp: Path, partitions: int
) -> dict[str, float]:
    """A new worker joins ``group`` alone: it restores every partition from ``<group>.state``."""
    w = Worker(bootstrap, names, group, tmp, client=client, index=9)
    deadline = time.monotonic() + 180
    try:
        while True:
            m = w.metrics()
            if m and msum(m, "viraltrend_restore_duration_seconds_count") >= partitions:
                return {
                    "partitions": msum(m, "viraltrend_restore_duration_seconds_count"),
                    "seconds": msum(m, "viraltrend_restore_duration_seconds_sum"),
                    "products": msum(m, "viraltrend_tracked_products"),
                    "state_bytes": msum(m, "viraltrend_state_bytes"),
                }
            if w.proc.poll() is not None or time.monotonic() > deadline:
                stop_all([w])
                w.fail("did not restore every partition")
            time.sleep(SCRAPE_S)
    finally:
        stop_all([w])


def fill(
    bootstrap: str, events: Path, n: int, partitions: int, stem: str
) -> tuple[dict[str, str], int, list[int]]:
    """Create the topics and produce ``n`` events keyed by product; (names, sent, records per partition)."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    from viraltrend.stream.broker import create_topics
    from viraltrend.stream.feeder import produce_file

    names = {"input": f"{stem}-in", "output": f"{stem}-out", "dlq": f"{stem}-dlq"}
    create_topics(
        bootstrap,
        {names["input"]: partitions, names["output"]: 1, names["dlq"]: 1},
        compacted={names["output"]},
    )
    t0 = time.perf_counter()
    sent = produce_file(bootstrap, names["input"], events, limit=n)
    rate = sent / (time.perf_counter() - t0)
    console.print(f"produced {sent:,} records into {partitions} partitions at {fmt_rate(rate)}/s")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(names["input"], p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return names, sent, [int(ends[tp]) for tp in tps]


def throughput_series(  # noqa: PLR0913
    client: str, events: Path, n: int, partitions: int, repeats: int, tmp: Path, *, baseline: bool
) -> tuple[list[GroupRun], dict[str, float] | None, list[int], float]:
    """A fresh broker: fill the topic, then 1 and 2 workers ``repeats`` times, each a new group.

    With ``baseline``, then one worker over the same events in a 1-partition topic (one engine).
    """
    runs: list[GroupRun] = []
    restore = None
    with broker(tmp, f"scale-{client}") as b:
        bs, tansu = b.bootstrap_servers, broker_pid()
        names, sent, per_partition = fill(bs, events, n, partitions, f"so-{client}")
        for rep in range(repeats):
            for workers in (1, 2):
                group = f"so-{client}-{workers}w-r{rep}"
                run = run_group(bs, names, sent, workers, group, client, tmp, tansu, partitions)
                console.print(
                    f"{client}, {workers} worker(s), run {rep + 1}: {fmt_rate(run.rate)}/s "
                    f"(settled {fmt_rate(run.settled_rate)}/s), workers' CPU "
                    f"{', '.join(f'{c:.1f}' for c in run.worker_cpu_s)} s, "
                    f"broker CPU {run.broker_cpu_s:.1f} s "
                    f"in {run.window_s:.1f} s; exit {run.exit_codes}"
                )
                runs.append(run)
                if rep == 0 and workers == 1:
                    restore = service_restore(bs, names, group, client, tmp, partitions)
                    console.print(f"service restore: {restore}")
        if baseline:
            names1, sent1, _ = fill(bs, events, n, 1, f"so-{client}-p1")
            run = run_group(bs, names1, sent1, 1, f"so-{client}-1w-p1", client, tmp, tansu, 1)
            console.print(f"{client}, 1 worker, 1 partition: {fmt_rate(run.rate)}/s; exit {run.exit_codes}")
            runs.append(run)
        broker_rss = _rss_mb(tansu)
    return runs, restore, per_partition, broker_rss


def _rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------ restore (in a spawned child)
def _synthetic_engine(n_products: int, seed: int) -> tuple[Any, dict[str, float]]:
    """An engine fed 2 events per product (Zipf-free, shuffled) over 50 min; no eviction."""
    import numpy as np

    from viraltrend.config import load_config
    from viraltrend.engine import Engine
    from viraltrend.events import EventBatch

    rng = np.random.default_rng(seed)
    n_users = max(1_000, n_products // 2)
    n_events = 2 * n_products
    order = np.concatenate([rng.permutation(n_products), rng.permutation(n_products)])
    ts = START_MS + np.sort(rng.integers(0, RESTORE_SPAN_MS, n_events)).astype(np.int64)
    types = rng.choice(6, n_events, p=[0.7, 0.12, 0.05, 0.04, 0.06, 0.03]).astype(np.int8)
    users = rng.integers(0, n_users, n_events)
    pids = [f"p-{i:07d}" for i in range(n_products)]
    sellers = [f"s-{i}" for i in range(10_000)]
    cats = [f"c-{i}" for i in range(40)]
    engine = Engine(load_config(None, environ={}))
    t0 = time.perf_counter()
    for a in range(0, n_events, RESTORE_BATCH):
        b = min(n_events, a + RESTORE_BATCH)
        prod = order[a:b].tolist()
        engine.process(
            EventBatch(
                ts_ms=ts[a:b],
                type_code=types[a:b],
                product_id=[pids[k] for k in prod],
                user_id=[f"u-{u}" for u in users[a:b].tolist()],
                event_id=[f"e-{i}" for i in range(a, b)],
                seller_id=[sellers[k % 10_000] for k in prod],
                category=[cats[k % 40] for k in prod],
                price=np.full(b - a, np.nan),
                quantity=np.ones(b - a, np.int64),
                partition=np.zeros(b - a, np.int32),
                offset=np.arange(a, b, dtype=np.int64),
            )
        )
    build_s = time.perf_counter() - t0
    return engine, {"events": n_events, "users": n_users, "build_s": build_s}


def _warm(cfg: Any) -> None:
    """Compile (or load from numba's cache) what a restore runs, so the timings hold no first call.

    A small engine's state is encoded, decoded and restored: the kernels of the checkpoint codec
    and of ``Engine.restore`` are then ready, as in a service that restores after it started.
    """
    from viraltrend.engine import Engine
    from viraltrend.stream.checkpoint import EncodedCheckpoint, decode_checkpoint, encode_checkpoint

    engine, _ = _synthetic_engine(20_000, 1)
    arrays, meta = engine.state()
    blob = bytearray(encode_checkpoint(arrays, meta, {0: 0}).to_blob())  # writable, as the stores load
    encoded = EncodedCheckpoint.from_blob(blob, where="warm-up", remedy="")
    got = decode_checkpoint(encoded, where="warm-up", remedy="")
    Engine.restore(cfg, got[0], got[1], copy=False)


def _cpu_now() -> tuple[float, float]:
    """CPU seconds so far of this process (all its threads) and of the broker (``BENCH_BROKER_PID``)."""
    pid = os.environ.get("BENCH_BROKER_PID")
    return time.process_time(), cpu_s(int(pid)) if pid else float("nan")


def _cpu_since(start: tuple[float, float]) -> list[float]:
    now = _cpu_now()
    return [now[0] - start[0], now[1] - start[1]]


def restore_child(bootstrap: str, n_products: int, tmp: str, seed: int) -> dict[str, Any]:
    """In a spawned process: build, save (changelog and local), load and restore; times and sizes."""
    import numpy as np

    from viraltrend.config import load_config
    from viraltrend.engine import Engine
    from viraltrend.stream.changelog import ChangelogStore, create_changelog_topic
    from viraltrend.stream.checkpoint import LocalStore, encode_checkpoint

    cfg = load_config(None, environ={})
    _warm(cfg)
    engine, info = _synthetic_engine(n_products, seed)
    out: dict[str, Any] = {"products": engine.tracked_products, **info}
    out["bytes_per_product"] = engine.bytes_per_product
    out["state_bytes"] = engine.state_bytes
    t0 = time.perf_counter()
    arrays, meta = engine.state()
    out["state_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = encode_checkpoint(arrays, meta, {0: info["events"]})
    blob_len = len(enc.to_blob())
    out["encode_s"] = time.perf_counter() - t0
    out["blob_bytes"], out["npz_bytes"], out["meta_bytes"] = blob_len, len(enc.data), len(enc.meta)
    is_user = ("users.", "usertable.")  # the user table is arrays of id hashes, no JSON ids
    user_arrays = sum(v.nbytes for k, v in arrays.items() if k.startswith(is_user))
    out["parts"] = {
        "arrays_product": sum(v.nbytes for k, v in arrays.items() if not k.startswith(is_user)),
        "arrays_users": user_arrays,
        "json_products": 0,  # product names: the products.* arrays
        "json_users": 0,
        "json_dedup": sum(v.nbytes for k, v in arrays.items() if k.startswith("dedup.")),
    }
    out["dedup_ids"] = len(engine.dedup) if engine.dedup is not None else 0
    out["user_ids"] = len(engine.users)
    del enc
    name = f"restore-{n_products}-{Path(tmp).name}"  # a topic of its own per tree
    # changelog: save with one store, load with a fresh one (as a worker taking over the partition)
    topic = f"{name}.state"
    create_changelog_topic(bootstrap, topic, 1)
    with ChangelogStore(bootstrap, topic, f"{name}-in", partitions=1, load_timeout_s=900) as store:
        t0 = time.perf_counter()
        store.save(0, arrays, meta, {0: info["events"]})
        out["changelog_save_s"] = time.perf_counter() - t0
    with ChangelogStore(bootstrap, topic, f"{name}-in", partitions=1, load_timeout_s=900) as fresh:
        c0 = _cpu_now()
        t0 = time.perf_counter()
        loaded = fresh.load(0)
        out["changelog_load_s"] = time.perf_counter() - t0
        out["changelog_records"] = fresh.last_load_records
    assert loaded is not None
    t0 = time.perf_counter()
    restored = Engine.restore(cfg, loaded[0], loaded[1], copy=False)  # as the service does
    out["changelog_restore_s"] = time.perf_counter() - t0
    out["changelog_cpu"] = _cpu_since(c0)
    same = restored.tracked_products == engine.tracked_products and sorted(loaded[0]) == sorted(arrays)
    same = same and all(np.array_equal(loaded[0][k], v) for k, v in arrays.items())
    out["identical"] = bool(same)
    del loaded, restored
    # the same changelog read with librdkafka (the service's reader with kafka.client = confluent)
    with ChangelogStore(
        bootstrap, topic, f"{name}-in", partitions=1, load_timeout_s=900, reader="confluent"
    ) as fresh:
        c0 = _cpu_now()
        t0 = time.perf_counter()
        loaded = fresh.load(0)
        out["changelog_rd_load_s"] = time.perf_counter() - t0
    assert loaded is not None
    t0 = time.perf_counter()
    restored = Engine.restore(cfg, loaded[0], loaded[1], copy=False)
    out["changelog_rd_restore_s"] = time.perf_counter() - t0
    out["changelog_rd_cpu"] = _cpu_since(c0)
    same = restored.tracked_products == engine.tracked_products and sorted(loaded[0]) == sorted(arrays)
    out["rd_identical"] = bool(same and all(np.array_equal(loaded[0][k], v) for k, v in arrays.items()))
    del loaded, restored
    # local directory
    directory = Path(tmp) / name
    t0 = time.perf_counter()
    out["local_bytes"] = LocalStore(directory, f"{name}-in").save(0, arrays, meta, {0: info["events"]})
    out["local_save_s"] = time.perf_counter() - t0
    c0 = _cpu_now()
    t0 = time.perf_counter()
    local = LocalStore(directory, f"{name}-in").load(0)
    out["local_load_s"] = time.perf_counter() - t0
    assert local is not None
    t0 = time.perf_counter()
    Engine.restore(cfg, local[0], local[1], copy=False)  # as the service does (Partitions.restore)
    out["local_restore_s"] = time.perf_counter() - t0
    out["local_cpu"] = _cpu_since(c0)
    del local
    out["incremental"] = _incremental(engine, arrays, meta, bootstrap, Path(tmp), name, info["events"], seed)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _touch(engine: Any, n_products: int, n_touch: int, k: int, seed: int) -> int:
    """Two events on each of ``n_touch`` random products, in minute ``k`` after the restore input."""
    import numpy as np

    from viraltrend.events import EventBatch

    rng = np.random.default_rng(seed * 1000 + k)
    prods = np.repeat(rng.choice(n_products, n_touch, replace=False), 2)
    n = prods.shape[0]
    t0 = START_MS + RESTORE_SPAN_MS + k * 60_000
    ts = t0 + np.sort(rng.integers(0, 60_000, n)).astype(np.int64)
    users = rng.integers(0, max(1_000, n_products // 2), n)
    for a in range(0, n, RESTORE_BATCH):
        b = min(n, a + RESTORE_BATCH)
        part = prods[a:b].tolist()
        engine.process(
            EventBatch(
                ts_ms=ts[a:b],
                type_code=np.zeros(b - a, np.int8),
                product_id=[f"p-{i:07d}" for i in part],
                user_id=[f"u-{u}" for u in users[a:b].tolist()],
                event_id=[f"t{k}-{i}" for i in range(a, b)],
                seller_id=[f"s-{i % 10_000}" for i in part],
                category=[f"c-{i % 40}" for i in part],
                price=np.full(b - a, np.nan),
                quantity=np.ones(b - a, np.int64),
                partition=np.zeros(b - a, np.int32),
                offset=np.arange(a, b, dtype=np.int64),
            )
        )
    return n


def _incremental(  # noqa: PLR0913
    engine: Any, arrays: Any, meta: Any, bootstrap: str, tmp: Path, name: str, offset: int, seed: int
) -> dict[str, Any]:
    """A base, then a delta after each batch of changes (to both stores); restores of the chain."""
    import numpy as np

    from viraltrend.config import load_config
    from viraltrend.engine import Engine
    from viraltrend.stream.changelog import ChangelogStore, create_changelog_topic
    from viraltrend.stream.checkpoint import ChainPolicy, LocalStore
    from viraltrend.stream.loop import Service

    cfg = load_config(None, environ={})
    n_products = engine.tracked_products
    policy = ChainPolicy(max_deltas=100, max_chain_ratio=100.0)  # deltas only, to measure them
    topic = f"{name}-inc.state"
    create_changelog_topic(bootstrap, topic, 1)
    local = LocalStore(tmp / f"{name}-inc", f"{name}-in", policy=policy)
    changelog = ChangelogStore(
        bootstrap, topic, f"{name}-in", partitions=1, load_timeout_s=900, policy=policy
    )
    out: dict[str, Any] = {"deltas": []}
    del arrays, meta
    loop = SimpleNamespace(_buffers={})  # Service._snapshot's buffers, reused from one checkpoint to the next
    t0 = time.perf_counter()
    arrays, meta = Service._snapshot(loop, 0, engine)  # type: ignore[arg-type]
    out["base_state_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["base_local_bytes"] = local.save(0, arrays, meta, {0: offset})
    out["base_local_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["base_changelog_bytes"] = changelog.save(0, arrays, meta, {0: offset})
    out["base_changelog_s"] = time.perf_counter() - t0
    del arrays, meta
    for k, frac in enumerate((0.001, 0.01, 0.1)):
        n_touch = max(1, round(frac * n_products))
        offset += _touch(engine, n_products, n_touch, k, seed)
        t0 = time.perf_counter()
        state = Service._snapshot(loop, 0, engine)  # type: ignore[arg-type]  # what the loop does
        stall = time.perf_counter() - t0
        t0 = time.perf_counter()
        local_bytes = local.save(0, *state, {0: offset})
        local_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        changelog_bytes = changelog.save(0, *state, {0: offset})
        changelog_s = time.perf_counter() - t0
        row = {"touched": n_touch, "events": 2 * n_touch, "state_s": stall, "local_bytes": local_bytes}
        row |= {"local_s": local_s, "changelog_bytes": changelog_bytes, "changelog_s": changelog_s}
        out["deltas"].append(row)
        console.print(f"delta after {n_touch:,} products touched: {local_bytes / 1e6:.1f} MB, {row}")
    want = ({k: v.copy() for k, v in state[0].items()}, state[1])
    changelog.close()
    for kind in ("local", "changelog"):
        if kind == "local":
            store: Any = LocalStore(tmp / f"{name}-inc", f"{name}-in")
        else:
            store = ChangelogStore(bootstrap, topic, f"{name}-in", partitions=1, load_timeout_s=900)
        t0 = time.perf_counter()
        loaded = store.load(0)
        out[f"{kind}_load_s"] = time.perf_counter() - t0
        out[f"{kind}_load_bytes"] = store.last_load_bytes
        out[f"{kind}_deltas"] = store.last_load_deltas
        same = sorted(loaded[0]) == sorted(want[0]) and all(
            np.array_equal(loaded[0][k], v, equal_nan=v.dtype.kind == "f") for k, v in want[0].items()
        )
        out[f"{kind}_identical"] = bool(same) and loaded[1] == json.loads(json.dumps(want[1]))
        t0 = time.perf_counter()
        Engine.restore(cfg, loaded[0], loaded[1], copy=False)  # as the service does: no copy of the state
        out[f"{kind}_restore_s"] = time.perf_counter() - t0
        store.close()
        del loaded
    return out


_CHILD = """
import json, sys
sys.path[:0] = [{tree!r}, {bench!r}]
import viraltrend  # from the tree, before _common puts this bench's checkout on the path
assert viraltrend.__file__.startswith({tree!r} + "/"), viraltrend.__file__
from bench_scaleout import restore_child
out = restore_child({bootstrap!r}, {size}, {tmp!r}, {seed})
open({result!r}, "w").write(json.dumps(out))
"""


def _restore_in(tree: Path, bootstrap: str, size: int, tmp: Path, seed: int) -> dict[str, Any]:
    """:func:`restore_child` in a new process importing ``viraltrend`` from ``tree`` (this bench's code)."""
    result = tmp / f"restore-{tree.name}-{size}.json"
    code = _CHILD.format(
        tree=str(tree), bench=str(Path(__file__).resolve().parent), bootstrap=bootstrap, size=size,
        tmp=str(tmp / tree.name), seed=seed, result=str(result),
    )  # fmt: skip
    (tmp / tree.name).mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_BROKER_PID": str(broker_pid() or "")}
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True)
    out: dict[str, Any] = json.loads(result.read_text())
    return out


def restore_series(
    sizes: list[int], tmp: Path, baseline: Path | None = None
) -> tuple[list[dict[str, Any]], float]:
    """A fresh broker; each size and tree in its own process (``baseline`` first); the broker's RSS."""
    here = Path(__file__).resolve().parents[1]
    trees = [(baseline, "baseline"), (here, "this tree")] if baseline is not None else [(here, "this tree")]
    results = []
    with broker(tmp, "restore") as b:
        tansu = broker_pid()
        for k, size in enumerate(sizes):
            for tree, label in trees:
                console.print(f"[bold]restore[/bold] ({label}, {tree}): an engine of {size:,} products ...")
                r = _restore_in(tree, b.bootstrap_servers, size, tmp, 100 + k)
                r["tree"] = f"{label} ({_git_head(tree)})"
                console.print(
                    f"{r['products']:,} products: checkpoint {r['blob_bytes'] / 1e6:.0f} MB; changelog load "
                    f"{r['changelog_load_s']:.2f} s + restore {r['changelog_restore_s']:.2f} s (librdkafka "
                    f"{r['changelog_rd_load_s']:.2f} + {r['changelog_rd_restore_s']:.2f}); local load "
                    f"{r['local_load_s']:.2f} s + restore {r['local_restore_s']:.2f} s"
                )
                results.append(r)
        rss = _rss_mb(tansu)
    return results, rss


def _git_head(tree: Path) -> str:
    try:
        got = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "?"
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return got.stdout.strip() + ("+changes" if dirty else "")


# ------------------------------------------------------------------ tables
def _div(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _med(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def throughput_tables(
    report: Report, client_runs: dict[str, list[GroupRun]], n: int, partitions: int, per_partition: list[int]
) -> dict[str, dict[str, float]]:
    rows = []
    for runs in client_runs.values():
        for r in runs:
            cores = _div(sum(r.worker_cpu_s) + r.broker_cpu_s, r.window_s)
            rows.append(
                [
                    r.client,
                    r.partitions,
                    r.workers,
                    fmt_rate(r.rate),
                    fmt_rate(r.settled_rate) if not math.isnan(r.settled_rate) else "—",
                    f"{r.window_s:.1f}",
                    f"{r.total_s:.1f}",
                    " / ".join(f"{x / 1e3:.0f}k" for x in r.per_worker),
                    " / ".join(f"{_div(c, r.window_s):.2f}" for c in r.worker_cpu_s),
                    f"{_div(r.broker_cpu_s, r.window_s):.2f}",
                    f"{cores:.2f}",
                    f"{_div(r.other_cpu_s, r.window_s):.2f}",
                    " / ".join(f"{x:.0f}" for x in r.rebalances),
                    " ".join(str(c) for c in r.exit_codes),
                    r.load,
                ]
            )
    report.table(
        f"Throughput: {n:,} events in a {partitions}-partition topic "
        f"({' / '.join(f'{x / 1e3:.0f}k' for x in per_partition)} per partition), each run a new group",
        "client|partitions|workers|events/s|settled events/s|window s|total s|events per worker|"
        "worker CPU (cores)|broker CPU (cores)|workers + broker (cores)|other processes (cores)|"
        "assignments per worker|exit codes|load avg at start".split("|"),
        rows,
        notes=[
            "events/s: records counted from the first scrape with a non-zero consumed counter (summed over "
            "the workers) to the scrape at N (every 0.25 s); process start, JIT loading and the first group "
            "join are excluded, a rebalance when the second worker joins after the first has started "
            "reading is included",
            "settled events/s: counted only from the scrape where every worker held partitions (the "
            "steady state of the group)",
            "total s: from starting the processes to N consumed",
            "CPU (cores): CPU seconds (user + system, all threads, /proc/<pid>/stat) over the window, "
            "divided by the window; other processes: the machine's busy time (/proc/stat) minus the workers' "
            "and the broker's, i.e. this benchmark's scraper and whatever else runs on the shared machine; "
            "the machine has 2 cores, so a sum near 2.0 means saturated",
            "assignments: viraltrend_rebalances_total{kind=assigned} of each worker (1 = no rebalance)",
            "the 1-partition row (if any): the same events in a 1-partition topic, one engine instead of "
            f"{partitions}: no candidates topic, no board merge, and 1/{partitions} of the engines' ticks",
        ],
    )
    summary: dict[str, dict[str, float]] = {}
    eff_rows = []
    for client, every in client_runs.items():
        runs = [r for r in every if r.partitions == partitions]
        one = [r.rate for r in runs if r.workers == 1]
        two = [r.rate for r in runs if r.workers == 2]
        two_settled = [r.settled_rate for r in runs if r.workers == 2]
        r1, r2, r2s = _med(one), _med(two), _med(two_settled)
        cpu1 = _med([_div(sum(r.worker_cpu_s), r.window_s) for r in runs if r.workers == 1])
        cpu2 = _med([_div(sum(r.worker_cpu_s), r.window_s) for r in runs if r.workers == 2])
        b1 = _med([_div(r.broker_cpu_s, r.window_s) for r in runs if r.workers == 1])
        b2 = _med([_div(r.broker_cpu_s, r.window_s) for r in runs if r.workers == 2])
        per_cpu1 = _med([_div(r.counted, sum(r.worker_cpu_s)) for r in runs if r.workers == 1])
        per_cpu2 = _med([_div(r.counted, sum(r.worker_cpu_s)) for r in runs if r.workers == 2])
        summary[client] = {"r1": r1, "r2": r2, "r2s": r2s, "per_cpu1": per_cpu1, "per_cpu2": per_cpu2}
        eff_rows.append(
            [
                client,
                fmt_rate(r1),
                fmt_rate(r2),
                f"{r2 / r1:.2f}x",
                f"{(r2 / 2) / r1:.0%}",
                f"{(r2s / 2) / r1:.0%}" if not math.isnan(r2s) else "—",
                f"{cpu1:.2f} + {b1:.2f}",
                f"{cpu2:.2f} + {b2:.2f}",
                fmt_rate(per_cpu1),
                fmt_rate(per_cpu2),
            ]
        )
    report.table(
        "Scale-out efficiency (medians over the repeats)",
        "client|1 worker /s|2 workers /s|speed-up|per-worker efficiency|efficiency, settled|"
        "CPU 1 worker (workers + broker, cores)|CPU 2 workers (workers + broker, cores)|"
        "events per worker CPU-s, 1 worker|events per worker CPU-s, 2 workers".split("|"),
        eff_rows,
        notes=[
            "per-worker efficiency = (events/s with 2 workers / 2) / events/s with 1 worker; 100% = linear",
            "events per worker CPU-second: the work each event costs a worker; if it stays the same with 2 "
            "workers, the missing speed-up is CPU the machine does not have (2 cores shared by the workers, "
            "the broker and the scraper), not contention inside viraltrend",
        ],
    )
    return summary


def _cpu_cell(cpu: list[float] | None) -> str:
    return "" if not cpu else f"{cpu[0]:.2f} + {cpu[1]:.2f}"


def restore_tables(
    report: Report, results: list[dict[str, Any]], service: dict[str, dict[str, float]]
) -> None:
    rows = []
    for r in results:
        m = r["products"] / 1e6
        ch = r["changelog_load_s"] + r["changelog_restore_s"]
        lo = r["local_load_s"] + r["local_restore_s"]
        rd = r["changelog_rd_load_s"] + r["changelog_rd_restore_s"]
        rows.append(
            [
                r["tree"],
                "changelog topic, kafka-python reader",
                f"{r['products']:,}",
                f"{r['blob_bytes'] / 1e6:.0f}",
                f"{r['blob_bytes'] / 1e6 / m:.0f}",
                f"{r['changelog_save_s']:.2f}",
                f"{r['changelog_load_s']:.2f}",
                f"{r['changelog_restore_s']:.2f}",
                f"{ch:.2f}",
                f"{ch / m:.2f}",
                _cpu_cell(r.get("changelog_cpu")),
                f"{r['blob_bytes'] / 1e6 / ch:.0f}",
                f"{r['peak_rss_mb']:,.0f}",
                "yes" if r["identical"] else "NO",
            ]
        )
        rows.append(
            [
                r["tree"],
                "changelog topic, librdkafka reader",
                f"{r['products']:,}",
                f"{r['blob_bytes'] / 1e6:.0f}",
                f"{r['blob_bytes'] / 1e6 / m:.0f}",
                "",
                f"{r['changelog_rd_load_s']:.2f}",
                f"{r['changelog_rd_restore_s']:.2f}",
                f"{rd:.2f}",
                f"{rd / m:.2f}",
                _cpu_cell(r.get("changelog_rd_cpu")),
                f"{r['blob_bytes'] / 1e6 / rd:.0f}",
                "",
                "yes" if r["rd_identical"] else "NO",
            ]
        )
        rows.append(
            [
                r["tree"],
                "local directory",
                f"{r['products']:,}",
                f"{r['local_bytes'] / 1e6:.0f}",
                f"{r['local_bytes'] / 1e6 / m:.0f}",
                f"{r['local_save_s']:.2f}",
                f"{r['local_load_s']:.2f}",
                f"{r['local_restore_s']:.2f}",
                f"{lo:.2f}",
                f"{lo / m:.2f}",
                _cpu_cell(r.get("local_cpu")),
                f"{r['local_bytes'] / 1e6 / lo:.0f}",
                "",
                "",
            ]
        )
    for client, s in service.items():
        if s.get("partitions"):
            m = s["products"] / 1e6
            rows.append(
                [
                    f"`viraltrend run` ({client}), {s['partitions']:.0f} partitions "
                    f"({s['seconds'] / s['partitions']:.2f} s each)",
                    "this tree",
                    f"{s['products']:,.0f}" if m else "(gauge 0)",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"{s['seconds']:.2f}",
                    f"{s['seconds'] / m:.2f}" if m else "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    report.table(
        "Restore time per million products",
        "tree|store|products|checkpoint MB|MB per M products|save s|load s|Engine.restore s|restore s|"
        "s per M products|CPU s: restorer + broker|MB/s|peak RSS MB|identical".split("|"),
        rows,
        notes=[
            "engine rows: an Engine fed 2 synthetic events per product (50 min of event time, users from a "
            "pool of products / 2, every event with an event_id), state saved once, then loaded by a fresh "
            "store instance (ChangelogStore reads the end of the changelog partition with kafka-python, "
            "then again with librdkafka, and checks every chunk's SHA-256; LocalStore maps arrays.bin "
            "copy-on-write from the page cache and checks its SHA-256) and rebuilt by "
            "Engine.restore(copy=False) as the service does (the engine works in the loaded arrays); "
            "restore s = load + Engine.restore; each size and tree in its own process, which first "
            "restores a 20k-product engine (numba's kernels loaded, as in a running service); the "
            "baseline tree is measured with this bench's code, importing that tree's viraltrend",
            "identical: the restored arrays equal the saved ones, and the same products are tracked",
            "CPU s: of load + Engine.restore, the restoring process (all its threads) + the broker (Tansu), "
            "from /proc: the measure that holds on a shared machine (wall seconds stretch with its load)",
            "`viraltrend run` rows: a new worker joining the group of the first one-worker run restores "
            "every partition from the changelog (viraltrend_restore_duration_seconds, summed over the "
            "partitions: load + Engine.restore + seek); products = viraltrend_tracked_products after it; "
            "with so little state per partition its time is the fixed cost of reading a changelog "
            "partition (connect, seek, the end confirmed by an empty poll), not a rate per product; "
            "(gauge 0): viraltrend_tracked_products stayed 0 because that worker processed no batch after "
            "restoring (the gauges are set per batch)",
        ],
    )
    parts = []
    for r in results:
        p = r["parts"]
        parts.append(
            [
                r["tree"],
                f"{r['products']:,}",
                f"{r['bytes_per_product']}",
                f"{r['state_bytes'] / r['products']:.0f}",
                f"{(p['arrays_product'] + p['json_products']) / r['products']:.0f}",
                f"{r['user_ids']:,}",
                f"{r['events']:,}",
                f"{(p['arrays_users'] + p['json_users']) / r['events']:.0f}",
                f"{r['dedup_ids']:,}",
                f"{p['json_dedup'] / max(1, r['dedup_ids']):.0f}",
                f"{r['blob_bytes'] / r['products']:.0f}",
                f"{r['state_s'] + r['encode_s']:.2f}",
            ]
        )
    report.table(
        "What a checkpoint holds (from the engine rows above)",
        "tree|products|engine bytes_per_product|state_bytes per product|"
        "checkpoint B per product (arrays + ids)|"
        "user ids|events (all in the trust windows)|checkpoint B per event (user arrays + ids)|"
        "dedup ids|checkpoint B per dedup id|checkpoint B per product, all|state() + encode s".split("|"),
        parts,
        notes=[
            "per product: every array except users.* (counters, trust counters, seller/category, sketches, "
            "at the engine's doubled capacity) plus the product ids' JSON",
            "per event: users.* arrays (one row per (user, product, type) active in the per-user cap window "
            "of 1 h) plus the user ids' JSON; every synthetic event is within that window, so this is the "
            "upper bound for the trust state per event of the last hour",
            "per dedup id: the event ids remembered for the dedup window (600 s; two generations, so "
            "between 1 and 2 windows of events are held)",
        ],
    )


def incremental_tables(report: Report, results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        inc = r["incremental"]
        m = r["products"] / 1e6
        rows.append(
            [
                r["tree"], f"{r['products']:,}", "base (full)", "", "",
                f"{inc['base_local_bytes'] / 1e6:.1f}", "",
                f"{inc['base_local_s']:.2f}", f"{inc['base_changelog_s']:.2f}", f"{inc['base_state_s']:.2f}",
            ]
        )  # fmt: skip
        for d in inc["deltas"]:
            rows.append(
                [
                    r["tree"], f"{r['products']:,}", "delta", f"{d['touched']:,}", f"{d['events']:,}",
                    f"{d['local_bytes'] / 1e6:.2f}", f"{d['local_bytes'] / d['touched']:.0f}",
                    f"{d['local_s']:.2f}", f"{d['changelog_s']:.2f}", f"{d['state_s']:.2f}",
                ]
            )  # fmt: skip
        for kind in ("local", "changelog"):
            total = inc[f"{kind}_load_s"] + inc[f"{kind}_restore_s"]
            rows.append(
                [
                    r["tree"], f"{r['products']:,}",
                    f"restore, {kind}: base + {inc[f'{kind}_deltas']} deltas",
                    "", "",
                    f"{inc[f'{kind}_load_bytes'] / 1e6:.1f}", "",
                    f"load {inc[f'{kind}_load_s']:.2f} + Engine.restore {inc[f'{kind}_restore_s']:.2f}",
                    f"{total / m:.2f} s per M", "identical" if inc[f"{kind}_identical"] else "DIFFERENT",
                ]
            )  # fmt: skip
    report.table(
        "Incremental checkpoints: bytes per interval against the rows that changed",
        "tree|products|checkpoint|products touched|events|MB written (local)|B per touched product|"
        "local save s|changelog save s|snapshot s (the loop's part)".split("|"),
        rows,
        notes=[
            "the engine of the restore series; then, per interval, 2 events on each of 0.1 %, 1 % and 10 % "
            "of the products (new users, new event ids, one minute of event time), the loop's snapshot "
            "(Service._snapshot: state(copy=False), the big arrays copied into the buffers of the last "
            "checkpoint; the first one allocates them) and one save to each store (the writer thread's "
            "part); each save is a delta on the base (compaction off for the measurement)",
            "restore rows: a fresh store loads the base and applies the deltas, then Engine.restore; "
            "identical: the loaded arrays and JSON equal the engine's state() after the last interval",
        ],
    )


def projection(
    report: Report,
    summary: dict[str, dict[str, float]],
    results: list[dict[str, Any]],
    partitions: int,
) -> None:
    """Workers, partitions, state and restore time for TARGETS events/s and LIVE_PRODUCTS live products."""
    from viraltrend.config import load_config

    client = "confluent" if "confluent" in summary else next(iter(summary))
    r1 = summary[client]["r1"]
    big = max(results, key=lambda r: r["products"])
    p = big["parts"]
    b_prod = (p["arrays_product"] + p["json_products"]) / big["products"]
    b_event = (p["arrays_users"] + p["json_users"]) / big["events"]
    b_dedup = p["json_dedup"] / max(1, big["dedup_ids"])
    restore_mbps = big["blob_bytes"] / 1e6 / (big["changelog_load_s"] + big["changelog_restore_s"])
    save_mbps = big["blob_bytes"] / 1e6 / (big["state_s"] + big["encode_s"] + big["changelog_save_s"])
    interval = load_config(None, environ={}).checkpoint.interval_s
    per_worker = HEADROOM * r1
    rows = []
    for target in TARGETS:
        workers = math.ceil(target / per_worker)
        parts = 4 * math.ceil(2 * workers / 4)  # twice the workers, a multiple of 4
        prod_gb = LIVE_PRODUCTS * b_prod / 1e9
        for bound, trust_gb, dedup_gb in (
            ("upper", target * 3600 * b_event / 1e9, target * 1200 * b_dedup / 1e9),
            ("products only", 0.0, 0.0),
        ):
            total_gb = prod_gb + trust_gb + dedup_gb
            per_part_mb = total_gb * 1e3 / parts
            rows.append(
                [
                    fmt_rate(target),
                    bound,
                    f"{workers}",
                    f"{parts}",
                    f"{LIVE_PRODUCTS / parts / 1e3:,.0f}k",
                    f"{prod_gb:.1f}",
                    f"{trust_gb:.0f}",
                    f"{dedup_gb:.0f}",
                    f"{per_part_mb:,.0f}",
                    f"{per_part_mb / save_mbps:.1f}",
                    f"{per_part_mb / restore_mbps:.1f}",
                    f"{per_part_mb * parts / workers / restore_mbps:.0f}",
                    f"{total_gb * 1e3 / interval:,.0f}",
                ]
            )
    report.table(
        f"Projection for a production cluster ({LIVE_PRODUCTS / 1e6:.0f}M live products)",
        "events/s|state|workers (1 core each)|partitions|products per partition|product state GB|"
        "trust state GB|dedup state GB|checkpoint MB per partition|checkpoint s per partition|"
        "restore s per partition|restore s per worker (all its partitions)|"
        f"changelog writes MB/s (all workers, full snapshot every {interval:g} s)".split("|"),
        rows,
        notes=[
            f"workers = target / ({HEADROOM:.0%} of {fmt_rate(r1)}/s), the median one-worker rate measured "
            f"here with the {client} client over {partitions} partitions; partitions = twice the workers "
            "(rounded to a multiple of 4) so the group can double without re-partitioning: the changelog "
            "has as many partitions as the input, and a product's state lives in its partition, so the "
            "partition count is fixed for the topic's life",
            f"product state: {b_prod:.0f} B per live product (checkpoint arrays + ids, measured at "
            f"{big['products']:,} products); upper: plus trust state at {b_event:.0f} B per event of the "
            "last hour (the 1 h per-user cap window; every event a new (user, product, type) row, as in the "
            f"synthetic input: repeats share a row) and dedup at {b_dedup:.0f} B per event id for 2 x 600 s "
            "of events (its two generations); products only: the floor, with neither",
            f"checkpoint s = MB / {save_mbps:.0f} MB/s (Engine.state + encode + ChangelogStore.save, "
            f"measured at {big['products']:,} products); restore s = MB / {restore_mbps:.0f} MB/s (changelog "
            "load + Engine.restore, one kafka-python reader); a worker checkpoints and restores its "
            "partitions one after the other; every checkpoint is a full snapshot of the partition's state",
        ],
    )


def write_md(report: Report) -> None:
    """Append this run to ``SCALEOUT_MD`` (the benchmark's own log of runs)."""
    report.record(
        SCALEOUT_MD,
        header="# Scale-out benchmark (`benchmarks/bench_scaleout.py`)\n\n"
        "Sections are appended by each run; the newest is last.\n",
    )


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--events", type=int, default=None, help="events in the input topic (default 1M; quick 200k)"
    )
    ap.add_argument(
        "--products", type=int, default=None, help="simulated catalogue (default 100k; quick 10k)"
    )
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the input topic (default 4)")
    ap.add_argument(
        "--repeats", type=int, default=None, help="1- and 2-worker runs per client (default 2; quick 1)"
    )
    ap.add_argument(
        "--clients",
        default=None,
        help="comma-separated Kafka clients of the workers (default confluent,kafka-python; quick confluent)",
    )
    ap.add_argument(
        "--restore-products",
        default=None,
        help="comma-separated engine sizes for the restore series (default 250000,1000000; quick 100000)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout (e.g. /work/main) whose restore is measured first, in the same run and broker",
    )
    ap.add_argument("--skip-throughput", action="store_true", help="only the restore series")
    ap.add_argument("--skip-restore", action="store_true", help="only the throughput series")
    ap.add_argument(
        "--quick", action="store_true", help="200k events, 10k products, 1 repeat, 100k-product restore"
    )
    ap.add_argument("--record", action="store_true", help="also append the section to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    n = args.events or (200_000 if args.quick else 1_000_000)
    products = args.products or (10_000 if args.quick else 100_000)
    repeats = args.repeats or (1 if args.quick else 2)
    clients = (args.clients or ("confluent" if args.quick else "confluent,kafka-python")).split(",")
    sizes = [
        int(x) for x in (args.restore_products or ("100000" if args.quick else "250000,1000000")).split(",")
    ]
    require_crc32c()
    cli = ["benchmarks/bench_scaleout.py", *sys.argv[1:]]
    report = Report("Scale-out: 1 and 2 workers, restore time per million products", cli)
    client_runs: dict[str, list[GroupRun]] = {}
    service: dict[str, dict[str, float]] = {}
    results: list[dict[str, Any]] = []
    summary: dict[str, dict[str, float]] = {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as d:
        tmp = Path(d)
        per_partition: list[int] = []
        rss_notes = []
        if not args.skip_throughput:
            events = simulated(n, products, 5, 1)
            warm_numba(tmp)
            for client in clients:
                console.rule(f"throughput, {client} (load average {loadavg()})")
                runs, restore, per_partition, rss = throughput_series(
                    client, events, n, args.partitions, repeats, tmp, baseline=client == clients[0]
                )
                client_runs[client] = runs
                if restore is not None:
                    service[client] = restore
                rss_notes.append(f"broker RSS after the {client} series: {rss:,.0f} MB")
            summary = throughput_tables(report, client_runs, n, args.partitions, per_partition)
        if not args.skip_restore:
            console.rule(f"restore (load average {loadavg()})")
            results, rss = restore_series(sizes, tmp, args.baseline)
            rss_notes.append(
                f"broker RSS after the restore series (every checkpoint in memory): {rss:,.0f} MB"
            )
            restore_tables(report, results, service)
            incremental_tables(report, results)
        if summary and results:
            projection(report, summary, [r for r in results if r["tree"].startswith("this")], args.partitions)
        report.note(
            "; ".join(rss_notes)
            + f". Whole run: {time.perf_counter() - t_all:.0f} s; load average at the end "
            f"{loadavg()}."
        )
    write_md(report)
    if args.record:
        report.record()
    return 0


if __name__ == "__main__":
    sys.exit(main())
