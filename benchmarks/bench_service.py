"""The live service end to end through the embedded broker: throughput against raw kafka-python, latency.

Targets (issue): in one run, the service's events/s against the raw kafka-python consume rate of
the same topic, the service reaching at least 80% of it; p99 end-to-end latency below 1 s at
50k events/s.

1. Simulate a scenario (default 1M events, 100k products, 5 viral, seed 1; cached in
   ``benchmarks/out/sim-*``) and warm the numba cache with a tiny ``viraltrend replay``.
2. Series A, on a fresh :class:`EmbeddedBroker`: produce the file into a 1-partition topic
   (``produce_file``), then

   a. raw consume: a manually assigned kafka-python ``KafkaConsumer`` with large fetch sizes
      reads all N messages (before and after the service; the faster run is used);
   b. the service: ``viraltrend run --exit-when-idle 3`` (the real CLI, a subprocess) over the
      same topic; its ``/metrics`` is scraped every 0.25 s and the rate is taken from the first
      non-zero ``viraltrend_events_consumed_total`` to N (group join excluded);
   c. with ``--profile`` (``auto``: when the service is below 80% of raw), the same run under
      ``python -m cProfile``, top 25 by tottime.

3. Series B (and C), each on a fresh broker and topic: the service runs (no idle exit), a
   ``Feeder`` in a spawned process produces at ``--rate`` for ``--seconds``; the service's
   ``viraltrend_end_to_end_latency_seconds`` histogram is read before and after (deltas, quantiles
   interpolated within buckets), and produce-to-decision latency is measured directly: each
   decision's ``emitted_at`` against the producer timestamp of the input record whose ``ts``
   moved the watermark across that decision's tick.  If the feeder cannot reach ``--rate``,
   series C repeats at about 90% of the rate it did reach.

Prints rich tables and appends a markdown section to ``benchmarks/out/service.md``.

Run: ``.venv/bin/python benchmarks/bench_service.py [--quick] [--events N] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

# _common before viraltrend: it sets NUMBA_CACHE_DIR (out/numba-cache) before numba is first imported
from _common import OUT_DIR, Report, console, fmt_rate, loadavg, verdict

from viraltrend.config import load_config

TARGET_RATIO = 0.80
TARGET_P99_S = 1.0
SCRAPE_S = 0.25
IDLE_EXIT_S = 3.0
WARM_LINES = 2_000  # sent before the latency window, so the group is joined and the JIT loaded
SERVICE_MD = OUT_DIR / "service.md"
_FETCH = {"fetch_max_bytes": 64 << 20, "max_partition_fetch_bytes": 16 << 20, "max_poll_records": 10_000}
_ASSIGNED = {
    "group_id": None,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 100,
}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ inputs
def simulated(n_events: int, n_products: int, n_viral: int, seed: int) -> Path:
    """``events.ndjson`` of the scenario, simulated once and cached under out/ (as bench_replay does)."""
    from viraltrend.simulate import Scenario, simulate

    scenario = Scenario(n_events=n_events, n_products=n_products, n_viral=n_viral, seed=seed)
    where = OUT_DIR / f"sim-{n_events}-{n_products}-{n_viral}-s{seed}"
    truth_path, events_path = where / "truth.json", where / "events.ndjson"
    if truth_path.exists() and events_path.exists():
        if json.loads(truth_path.read_text()).get("scenario") == asdict(scenario):
            return events_path
    console.print(f"[bold]simulating[/bold] {scenario} -> {where}")
    return simulate(scenario, where).events_path


def viraltrend_cmd() -> list[str]:
    """The real CLI: the venv's ``viraltrend`` script, else ``python -m viraltrend``."""
    script = Path(sys.executable).parent / "viraltrend"
    return [str(script)] if script.exists() else [sys.executable, "-m", "viraltrend"]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # NUMBA_CACHE_DIR comes from _common


def warm_numba(tmp: Path, env: dict[str, str] | None = None) -> None:
    """Compile (or load) every kernel into the shared numba cache before anything is timed."""
    events = simulated(20_000, 2_000, 1, 12345)
    subprocess.run(
        [*viraltrend_cmd(), "replay", str(events), "--out", str(tmp / "warm.ndjson")],
        check=True,
        env={**child_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def require_crc32c() -> None:
    import crc32c  # noqa: F401 - the C checksum; without it kafka-python checks CRCs in pure Python
    from kafka.record import util

    if util._crc32c is util.crc32c_py:  # noqa: SLF001
        msg = "kafka-python does not use the crc32c package; install it in the venv (pip install crc32c)"
        raise SystemExit(msg)


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; nan once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def thread_names(pid: int) -> dict[str, str]:
    """Native thread id -> Python thread name, from ``py-spy dump`` (Python 3.11 names no OS thread)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return {}
    try:
        out = subprocess.run([str(spy), "dump", "--nonblocking", "--pid", str(pid)],
                             capture_output=True, text=True, timeout=20, check=False).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names: dict[str, str] = {}
    for line in out.splitlines():  # Thread 27922 (idle): "MainThread"
        if line.startswith("Thread ") and '"' in line:
            tid = line.split()[1].strip("()")
            names[tid] = line.split('"')[1]
    return names


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """Native thread id -> (Python thread name or ``thread``, utime + stime in seconds)."""
    names = thread_names(pid)
    out: dict[str, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[task.name] = (names.get(task.name, "thread"), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return out


def thread_table(before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]], n: float) -> str:
    """CPU per thread over a window (diffed by thread id, named at the end), µs per event, by name."""
    by: dict[str, float] = {}
    for tid, (name, c) in after.items():
        label = name if name != "thread" else before.get(tid, (name, 0.0))[0]
        by[label] = by.get(label, 0.0) + c - before.get(tid, (name, 0.0))[1]
    rows = [
        f"{name}: {c:.2f} s, {1e6 * c / n:.2f} µs/event"
        for name, c in sorted(by.items(), key=lambda kv: -kv[1])
        if c > 0
    ]
    return "; ".join(rows)


def broker_pid() -> int | None:
    """The pid of our own ``tansu`` child (the broker), for CPU accounting."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().split(") ", 1)
        except OSError:
            continue
        if "tansu" in comm and int(rest.split()[1]) == me:
            return int(stat.parent.name)
    return None


@contextmanager
def broker(tmp: Path, name: str) -> Iterator[Any]:
    """A fresh embedded broker per series (memory storage: it forgets everything when stopped)."""
    from viraltrend.stream.broker import EmbeddedBroker

    b = EmbeddedBroker(log_path=tmp / f"tansu-{name}.log").start()
    try:
        yield b
    finally:
        b.stop()


def make_topics(bootstrap: str, prefix: str) -> tuple[str, str, str]:
    """Input (1 partition), output and dead-letter topics; output kept uncompacted so every decision stays."""
    from viraltrend.stream.broker import create_topics

    topics = (f"{prefix}-events", f"{prefix}-deals", f"{prefix}-events.dlq")
    create_topics(bootstrap, dict.fromkeys(topics, 1))
    return topics


# ------------------------------------------------------------------ the service subprocess
@dataclass
class Scrape:
    t: float  # monotonic
    consumed: float
    latency_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    batch_sum: float = 0.0
    batch_count: float = 0.0
    kernel_sum: float = 0.0
    ckpt_sum: float = 0.0
    ckpt_count: float = 0.0
    cpu: float = float("nan")  # the service process's utime+stime at the scrape


_SCALARS = {
    "viraltrend_batch_duration_seconds_sum": "batch_sum",
    "viraltrend_batch_duration_seconds_count": "batch_count",
    "viraltrend_kernel_update_duration_seconds_sum": "kernel_sum",
    "viraltrend_checkpoint_duration_seconds_sum": "ckpt_sum",
    "viraltrend_checkpoint_duration_seconds_count": "ckpt_count",
}


def parse_metrics(text: str, t: float) -> Scrape:
    """The few samples the benchmark reads from a Prometheus text exposition."""
    s = Scrape(t, 0.0)
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("viraltrend_events_consumed_total{"):
            s.consumed += float(value)
        elif name.startswith("viraltrend_end_to_end_latency_seconds_bucket{"):
            s.latency_buckets[float(name.split('le="', 1)[1].split('"', 1)[0])] = float(value)
        elif name in _SCALARS:
            setattr(s, _SCALARS[name], float(value))
    return s


class ServiceProc:
    """``viraltrend run`` as a subprocess, with its /metrics scraped on demand."""

    def __init__(
        self,
        bootstrap: str,
        topics: tuple[str, str, str],
        group: str,
        tmp: Path,
        *,
        exit_when_idle: float | None,
        profile_out: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        from viraltrend.stream.broker import free_port

        self.port = free_port()
        self.log_path = tmp / f"service-{group}.log"
        ckpt = tempfile.mkdtemp(prefix="ckpt-", dir=tmp)
        cmd = (
            viraltrend_cmd()
            if profile_out is None
            else [sys.executable, "-m", "cProfile", "-o", str(profile_out), "-m", "viraltrend"]
        )
        flags = {"--bootstrap-servers": bootstrap, "--input-topic": topics[0], "--output-topic": topics[1],
                 "--dlq-topic": topics[2], "--group-id": group, "--checkpoint-dir": ckpt,
                 "--metrics-port": str(self.port), "--log-level": "INFO"}  # fmt: skip
        cmd += ["run", "--no-create-topics", *(x for kv in flags.items() for x in kv)]
        if exit_when_idle is not None:
            cmd += ["--exit-when-idle", str(exit_when_idle)]
        if prefix:  # e.g. py-spy record ... --: every thread sampled, not only the main one
            cmd = [*prefix, *cmd]
        self.cmd = cmd
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**child_env(), **(env or {})},
        )

    def scrape(self) -> Scrape | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2.0) as r:
                text = r.read().decode()
        except OSError:
            return None
        s = parse_metrics(text, time.monotonic())
        s.cpu = cpu_s(self.proc.pid)
        return s

    def wait_consumed(self, n: int, timeout_s: float, trace: list[Scrape] | None = None) -> Scrape:
        """Scrape every SCRAPE_S until the consumed counter reaches ``n``; exit if it dies or stalls."""
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.scrape()
            if s is not None:
                if trace is not None:
                    trace.append(s)
                if s.consumed >= n:
                    return s
            if self.proc.poll() is not None:
                self.fail(f"exited with code {self.proc.returncode} before consuming {n:,} records")
            if time.monotonic() > deadline:
                got = "?" if s is None else f"{s.consumed:,.0f}"
                self.fail(f"consumed {got} of {n:,} records within {timeout_s:g} s")
            time.sleep(SCRAPE_S)

    def fail(self, what: str) -> None:
        tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
        self.stop()
        raise SystemExit(f"the service {what}; last lines of {self.log_path}:\n" + "\n".join(tail))

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (it checkpoints and stops cleanly), kill if it takes longer than ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


# ------------------------------------------------------------------ series A: throughput
@dataclass
class Rate:
    """A consume run: records counted from the first non-empty read to the last, and CPU seconds spent."""

    n: int
    window_s: float  # from the first non-empty read (or scrape) to reaching n
    counted: float  # records read within the window (n minus the first read)
    total_s: float  # from start (connect / process start) to reaching n, joins and JIT included
    cpu_s: float = float("nan")  # the consumer (or service) process during the window
    broker_cpu_s: float = float("nan")  # the broker during the window

    @property
    def rate(self) -> float:
        return self.counted / self.window_s if self.window_s > 0 else float("nan")


def _count_reads(read: Callable[[], int], who: str, n: int, t_start: float, tansu: int | None) -> Rate:
    """Call ``read`` (records per poll) until ``n`` records; the window opens at the first non-empty read."""
    got, first = 0, None
    cpu0 = bcpu0 = 0.0
    deadline = time.monotonic() + 600
    while got < n:
        k = read()
        if k and first is None:
            first = (time.perf_counter(), k)
            cpu0, bcpu0 = time.process_time(), cpu_s(tansu) if tansu else float("nan")
        got += k
        if time.monotonic() > deadline:
            msg = f"{who} consumer read {got:,} of {n:,} records in 600 s"
            raise SystemExit(msg)
    t_end = time.perf_counter()
    cpu, bcpu = time.process_time() - cpu0, (cpu_s(tansu) - bcpu0) if tansu else float("nan")
    assert first is not None
    return Rate(got, t_end - first[0], got - first[1], t_end - t_start, cpu, bcpu)


def raw_consume(bootstrap: str, topic: str, n: int, tansu: int | None) -> Rate:
    """A manually assigned kafka-python consumer with large fetch sizes reads ``n`` records; count only."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    t_start = time.perf_counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **_ASSIGNED, **_FETCH)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    try:
        return _count_reads(
            lambda: sum(len(v) for v in consumer.poll(timeout_ms=1000).values()), "raw", n, t_start, tansu
        )
    finally:
        consumer.close()


def raw_consume_confluent(bootstrap: str, topic: str, n: int, tansu: int | None) -> Rate:
    """A manually assigned confluent-kafka (librdkafka) consumer reads ``n`` records; count only.

    The fetch settings are those of ``ConfluentSource``; ``consume`` asks for up to 50k messages
    (the service's ``kafka.max_batch_events``) and touches nothing but the list's length.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    t_start = time.perf_counter()
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "bench-raw-rdkafka", "enable.auto.commit": False,
        "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20, "fetch.wait.max.ms": 100,
        "queued.min.messages": 200_000, "queued.max.messages.kbytes": 256 * 1024,
    })  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        return _count_reads(
            lambda: sum(1 for m in consumer.consume(num_messages=50_000, timeout=1.0) if m.error() is None),
            "raw librdkafka",
            n,
            t_start,
            tansu,
        )
    finally:
        consumer.close()


def service_consume(
    bootstrap: str,
    topics: tuple[str, str, str],
    n: int,
    tmp: Path,
    group: str,
    tansu: int | None,
    env: dict[str, str] | None = None,
) -> tuple[Rate, list[Scrape], tuple[float, float, int, str]]:
    """``viraltrend run --exit-when-idle`` over a filled topic; rate from the scraped consumed counter.

    Returns the rate, the scrapes, and (summed batch durations, summed engine durations, batches)
    over the window: the service's busy time and the part of it spent in the engine.
    """
    svc = ServiceProc(bootstrap, topics, group, tmp, exit_when_idle=IDLE_EXIT_S, env=env)
    t_start = time.monotonic()
    trace: list[Scrape] = []
    first = svc.wait_consumed(1, 120, trace)
    cpu0, bcpu0 = cpu_s(svc.proc.pid), cpu_s(tansu) if tansu else float("nan")
    threads0 = thread_cpu(svc.proc.pid)
    last = svc.wait_consumed(n, 600, trace)
    cpu, bcpu = cpu_s(svc.proc.pid) - cpu0, (cpu_s(tansu) - bcpu0) if tansu else float("nan")
    threads = thread_table(threads0, thread_cpu(svc.proc.pid), n - first.consumed)
    code = svc.proc.wait(timeout=120)  # exits by itself after IDLE_EXIT_S idle
    svc.stop()
    if code != 0:
        svc.fail(f"exited with code {code}")
    rate = Rate(n, last.t - first.t, n - first.consumed, last.t - t_start, cpu, bcpu)
    busy = (
        last.batch_sum - first.batch_sum,
        last.kernel_sum - first.kernel_sum,
        int(last.batch_count - first.batch_count),
    )
    return rate, trace, (*busy, threads)


def engine_floor(events: Path, n: int, batch: int = 30_000) -> float:
    """CPU µs per event of ``Engine.process`` alone over the first ``n`` events, in a child process.

    The lower bound of any service over these events: a throwaway engine runs the first batch
    first, so the kernels are loaded; the engine measured is a fresh one.
    """
    code = (
        "import sys, time\n"
        "from viraltrend.config import load_config\n"
        "from viraltrend.engine import Engine\n"
        "from viraltrend.stream.files import FileSource\n"
        f"src = FileSource([{str(events)!r}]); batches = []; got = 0\n"
        f"while got < {n}:\n"
        f"    b, _ = src.next_batch(min({batch}, {n} - got))\n"
        "    if len(b) == 0: break\n"
        "    batches.append(b); got += len(b)\n"
        "cfg = load_config(); Engine(cfg).process(batches[0]); e = Engine(cfg)\n"
        "t = time.process_time()\n"
        "for b in batches: e.process(b)\n"
        "print((time.process_time() - t) / got * 1e6)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                         check=True).stdout  # fmt: skip
    return float(out.strip().splitlines()[-1])


def steady_cpu(trace: list[Scrape], n: int, lo: float = 0.1) -> float:
    """CPU µs per event between the first scrapes at or past ``lo * n`` and ``n``.

    Leaves out the first batches, whose engine work (counted as consumed before the engine runs)
    includes loading each kernel from the numba cache on its first call.
    """
    a = next(s for s in trace if s.consumed >= lo * n)
    b = next(s for s in trace if s.consumed >= n)
    return 1e6 * (b.cpu - a.cpu) / (b.consumed - a.consumed) if b.consumed > a.consumed else float("nan")


def steady_rate(trace: list[Scrape], n: int, lo: float = 0.1) -> float:
    """Events/s between the first scrapes at or past ``lo * n`` and ``n`` (first batches left out)."""
    a = next(s for s in trace if s.consumed >= lo * n)
    b = next(s for s in trace if s.consumed >= n)
    return (b.consumed - a.consumed) / (b.t - a.t) if b.t > a.t else float("nan")


def profile_service(
    bootstrap: str,
    topics: tuple[str, str, str],
    n: int,
    tmp: Path,
    top: int = 25,
    env: dict[str, str] | None = None,
    name: str = "bench-profiled",
) -> tuple[str, str]:
    """The same service run under ``python -m cProfile``; (top by tottime, top by cumtime)."""
    prof = tmp / f"{name}.prof"
    svc = ServiceProc(bootstrap, topics, name, tmp, exit_when_idle=IDLE_EXIT_S, profile_out=prof, env=env)
    _run_to_end(svc, n, prof, "profiled")
    out = []
    for key, k in (("tottime", top), ("cumulative", 20)):
        buf = io.StringIO()
        stats = pstats.Stats(str(prof), stream=buf)
        stats.strip_dirs().sort_stats(key).print_stats(k)
        text = buf.getvalue()
        out.append(text[text.find("   ncalls") :].rstrip() if "   ncalls" in text else text)
    head = buf.getvalue().split("   ncalls")[0].strip().splitlines()
    total = next((h.strip() for h in head if "function calls" in h), "")
    return f"{total}\n\n{out[0]}", out[1]


def _run_to_end(svc: ServiceProc, n: int, out: Path, what: str) -> None:
    """Wait for a profiled service to consume ``n`` events and exit idle; fail unless it wrote ``out``."""
    svc.wait_consumed(n, 900)
    code = svc.proc.wait(timeout=300)
    svc.stop()
    if code != 0 or not out.exists():
        svc.fail(f"({what}) exited with code {code}")


def pyspy_service(
    bootstrap: str,
    topics: tuple[str, str, str],
    n: int,
    tmp: Path,
    env: dict[str, str] | None = None,
    name: str = "bench-pyspy",
    rate_hz: int = 250,
) -> str:
    """The same service run under ``py-spy record --threads`` (every thread, raw collapsed stacks).

    Returns a table of sampled time per thread and per component (:func:`components`), in
    µs per event; the raw stacks are kept in ``out/<name>.pyspy.txt``.
    """
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        msg = "--profile pyspy needs py-spy in the venv (pip install py-spy)"
        raise SystemExit(msg)
    raw = OUT_DIR / f"{name}.pyspy.txt"
    prefix = [str(spy), "record", "--threads", "--format", "raw", "--rate", str(rate_hz),
              "--output", str(raw), "--"]  # fmt: skip
    svc = ServiceProc(bootstrap, topics, name, tmp, exit_when_idle=IDLE_EXIT_S, env=env, prefix=prefix)
    _run_to_end(svc, n, raw, "py-spy")
    return components(raw.read_text(), n, rate_hz)


#: Where a sampled stack's time goes, first match from the leaf's side wins (substring of a frame).
_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("engine", "_run_engines"),
    ("source: poll (kafka-python)", "next_batch"),
    ("publish (encode, produce)", "_publish"),
    ("flush (await acks)", "flush ("),
    ("checkpoint: copy (loop)", "checkpoint ("),
    ("checkpoint: writer thread", "writer.py"),
    ("commit", "commit ("),
    ("gauges / metrics", "_update_gauges"),
    ("gauges / metrics", "gauges.py"),
    ("metrics http", "http"),
    ("producer IO thread", "sender.py"),
    ("producer IO thread", "producer"),
    ("consumer heartbeat thread", "heartbeat"),
    ("consumer heartbeat thread", "coordinator"),
    ("startup (import, JIT load, connect)", "<module>"),
    ("startup (import, JIT load, connect)", "connect ("),
)


def components(raw: str, n: int, rate_hz: int) -> str:
    """µs per event of sampled time per component, busy samples only, from py-spy's raw output."""
    busy: dict[str, float] = {}
    threads: dict[str, float] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        idle = False  # without --idle, py-spy samples only threads on the CPU
        c = int(count) / rate_hz
        thread = frames[0]
        threads[thread] = threads.get(thread, 0.0) + (0.0 if idle else c)
        what = next((label for label, key in _COMPONENTS if any(key in f for f in frames)), "other")
        busy[what] = busy.get(what, 0.0) + c
    rows = [f"{'component':<40} {'s':>8} {'µs/event':>9}"]
    for label, s in sorted(busy.items(), key=lambda kv: -kv[1]):
        rows.append(f"{label:<40} {s:8.2f} {s / n * 1e6:9.2f}")
    rows.append("")
    rows.append(f"{'thread (busy samples)':<60} {'s':>8} {'µs/event':>9}")
    for thread, s in sorted(threads.items(), key=lambda kv: -kv[1]):
        rows.append(f"{thread[:60]:<60} {s:8.2f} {s / n * 1e6:9.2f}")
    return "\n".join(rows)


# ------------------------------------------------------------------ series B/C: latency at a fixed rate
def feed(
    bootstrap: str, topic: str, events: str, rate: float, seconds: float, start_line: int, conn: Any
) -> None:
    """In a spawned process: a looping Feeder at ``rate`` for ``seconds``; sends back what it achieved."""
    from viraltrend.stream.feeder import Feeder

    feeder = Feeder(bootstrap, topic, events, rate_per_s=rate, loop=True, start_line=start_line).start()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not feeder.done:
        time.sleep(0.1)
    sent, elapsed = feeder.sent, feeder.elapsed_s
    feeder.stop()
    error = None
    try:
        feeder.join(60)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        error = repr(exc)
    conn.send({"sent_at_stop": sent, "elapsed_s": elapsed, "sent": feeder.sent, "error": error})
    conn.close()


def hist_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Prometheus-style ``histogram_quantile`` on bucket deltas: linear within a bucket, inf past the last."""
    les = sorted(after)
    cum = [after[le] - before.get(le, 0.0) for le in les]
    if not cum or cum[-1] <= 0:
        return float("nan")
    rank, prev_le, prev_c = q * cum[-1], 0.0, 0.0
    for le, c in zip(les, cum, strict=True):
        if c >= rank:
            if np.isinf(le):
                return float("inf")
            return le if c == prev_c else prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return float("inf")


class _Ts(msgspec.Struct):
    ts: int


def read_topic(bootstrap: str, topic: str, n: int | None) -> list[Any]:
    """All records of partition 0 of ``topic`` (exactly ``n``, or until 2 s pass with nothing new)."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **_ASSIGNED, **_FETCH)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out: list[Any] = []
    quiet_since = time.monotonic()
    try:
        while n is None or len(out) < n:
            got = consumer.poll(timeout_ms=500).get(tp, [])
            out.extend(got)
            if got:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > (2.0 if n is None else 30.0):
                break
    finally:
        consumer.close()
    return out


def direct_latency(
    bootstrap: str, topics: tuple[str, str, str], n_in: int, from_offset: int, cutoff_ms: int
) -> dict[str, Any]:
    """Produce-to-decision latency per decided tick, from the input and output topics.

    The tick ``T`` of a decision fires when the watermark (running max of ``ts``) first reaches
    ``T``; the input record that moved it there was sent at its producer timestamp, and the
    decisions of ``T`` were published (``emitted_at``) after the batch holding it.
    """
    records = read_topic(bootstrap, topics[0], n_in)
    decode = msgspec.json.Decoder(_Ts).decode
    ts = np.fromiter((decode(r.value).ts for r in records), dtype=np.int64, count=len(records))
    sent_ms = np.fromiter((r.timestamp for r in records), dtype=np.int64, count=len(records))
    ts_types = {r.timestamp_type for r in records[:1000]}
    watermark = np.maximum.accumulate(ts)
    decisions = [json.loads(r.value) for r in read_topic(bootstrap, topics[1], None)]
    ticks: dict[int, int] = {}
    for m in decisions:
        if m.get("emitted_at") is not None and m["emitted_at"] <= cutoff_ms:
            t = int(m["event_ts"])
            ticks[t] = min(ticks.get(t, m["emitted_at"]), m["emitted_at"])
    lat = []
    for t, emitted in ticks.items():
        i = int(np.searchsorted(watermark, t, side="left"))
        if from_offset <= i < len(records):
            lat.append((emitted - int(sent_ms[i])) / 1000.0)
    arr = np.array(lat, dtype=np.float64)
    pct = (lambda q: float(np.percentile(arr, q))) if arr.size else (lambda q: float("nan"))
    return {"ticks": int(arr.size), "decisions": len(decisions), "p50": pct(50), "p99": pct(99),
            "over_1s": float((arr > 1.0).mean()) if arr.size else float("nan"), "max": pct(100),
            "input_records": len(records), "timestamp_types": sorted(ts_types)}  # fmt: skip


def latency_series(events: Path, rate: float, seconds: float, tmp: Path, name: str) -> dict[str, Any]:
    """A fresh broker and topic; the service running; a Feeder process at ``rate`` for ``seconds``."""
    from viraltrend.stream.feeder import produce_file

    console.print(f"[bold]latency[/bold] {name}: feeder at {rate:,.0f}/s for {seconds:g} s")
    load = loadavg()
    with broker(tmp, name) as b:
        bs = b.bootstrap_servers
        topics = make_topics(bs, name)
        svc = ServiceProc(bs, topics, f"bench-{name}", tmp, exit_when_idle=None)
        try:
            produce_file(bs, topics[0], events, limit=WARM_LINES)  # joins the group, loads the JIT
            svc.wait_consumed(WARM_LINES, 120)
            time.sleep(1.0)  # the warm batch's publish and histogram observation
            before = svc.scrape()
            cpu0 = cpu_s(svc.proc.pid)
            ctx = mp.get_context("spawn")
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=feed, args=(bs, topics[0], str(events), rate, seconds, WARM_LINES, send)
            )
            proc.start()
            trace: list[Scrape] = []
            while not recv.poll(SCRAPE_S):
                if (s := svc.scrape()) is not None:
                    trace.append(s)
                if not proc.is_alive() and not recv.poll(1.0):
                    msg = f"the feeder process died (exit code {proc.exitcode})"
                    raise SystemExit(msg)
            fed = recv.recv()
            cpu_fed = cpu_s(svc.proc.pid) - cpu0
            proc.join(30)
            if fed["error"]:
                msg = f"the feeder failed: {fed['error']}"
                raise SystemExit(msg)
            t_fed = time.monotonic()
            total = WARM_LINES + fed["sent"]
            drained = svc.wait_consumed(total, 300, trace)
            time.sleep(1.0)  # the last batch's publish and histogram observation
            after = svc.scrape()
            cutoff_ms = int(time.time() * 1000)
        finally:
            code = svc.stop()
        assert before is not None and after is not None
        direct = direct_latency(bs, topics, total, WARM_LINES, cutoff_ms)
    hb, ha = before.latency_buckets, after.latency_buckets
    batches = ha.get(float("inf"), 0) - hb.get(float("inf"), 0)
    under_1s = (ha.get(1.0, 0) - hb.get(1.0, 0)) / batches if batches else float("nan")
    ckpts = after.ckpt_count - before.ckpt_count
    return {"rate": rate, "load": load, "achieved": fed["sent_at_stop"] / fed["elapsed_s"],
            "fed_s": fed["elapsed_s"], "sent": fed["sent"], "drain_s": max(0.0, drained.t - t_fed),
            "exit_code": code, "batches": batches, "events_per_batch": fed["sent"] / max(batches, 1),
            "h_p50": hist_quantile(hb, ha, 0.50), "h_p99": hist_quantile(hb, ha, 0.99), "under_1s": under_1s,
            "engine_s": after.kernel_sum - before.kernel_sum, "service_cpu": cpu_fed / fed["elapsed_s"],
            "checkpoints": ckpts, "ckpt_mean_s": (after.ckpt_sum - before.ckpt_sum) / max(1.0, ckpts),
            **{f"d_{k}": v for k, v in direct.items()}}  # fmt: skip


# ------------------------------------------------------------------ report
_THROUGHPUT_NOTES = (
    "window: from the first non-empty read (raw) or the first scrape with a non-zero "
    f"viraltrend_events_consumed_total (service, scraped every {SCRAPE_S} s) to reaching N; events/s "
    "counts the records read inside the window; total: from process start (connect, group join ~3 s, "
    "JIT load) to N",
    "raw: kafka-python KafkaConsumer, manually assigned, fetch_max_bytes 64 MB, max_partition_fetch_bytes "
    "16 MB, max_poll_records 10000, crc32c installed; counts records, decodes nothing; the faster of the "
    "two raw runs is the reference",
    "CPU: utime+stime (all threads) of the consumer process and of the broker during the window; the "
    "ratio row's CPU column is raw CPU per event / service CPU per event (less sensitive to other load "
    "on the machine than wall-clock rates)",
)
_LATENCY_NOTES = (
    "achieved: messages handed to the producer / wall seconds, at the moment the feeder was stopped; "
    "drain: seconds from the feeder's end (after its flush) until the service had consumed everything",
    "hist: the service's viraltrend_end_to_end_latency_seconds, bucket deltas over the window, one "
    "observation per batch, from the poll returning to the decisions being flushed (it does not see "
    "time spent in Kafka before the poll, nor a checkpoint between batches); quantiles interpolated "
    "within buckets (0.01/0.025/0.05/0.1/0.25/0.5/0.75/1/2/5/10/30 s); batches <= 1 s is exact",
    "direct: for every tick with a decision, emitted_at minus the producer timestamp of the input "
    "record whose ts moved the watermark to that tick (that record's batch published the tick's "
    "decisions): produce -> broker -> poll -> decode -> engine -> publish, one sample per tick",
)
_LOAD_NOTES = (
    "service CPU: utime+stime of the service process (all threads) / wall while the feeder ran (100% = "
    "one core); engine: summed viraltrend_kernel_update_duration_seconds; checkpoints: every "
    "checkpoint.interval_s (10 s) of wall time, inside the loop (no poll meanwhile)",
)


def _s(x: float, digits: int = 2) -> str:
    return "n/a" if np.isnan(x) else ("> 30" if np.isinf(x) else f"{x:.{digits}f}")


def _rate_row(label: str, r: Rate) -> list[object]:
    cpu_us = 1e6 * r.cpu_s / r.counted if r.counted else float("nan")  # one poll read them all: no window
    busy = f"{r.cpu_s / r.window_s:.0%}" if r.window_s > 0 else "n/a"
    return [label, fmt_rate(r.rate), _s(r.window_s), _s(r.total_s), _s(r.cpu_s, 1),
            busy, _s(cpu_us, 1), _s(r.broker_cpu_s, 1)]  # fmt: skip


CLIENT_LABEL = {"kafka-python": "kafka-python", "confluent": "librdkafka"}


@dataclass
class ServiceRun:
    """One ``viraltrend run`` of the throughput series: which client, which source tree, what it did."""

    client: str
    source: str  # "this tree" or the --baseline directory
    rate: Rate
    steady: float
    busy_s: float
    engine_s: float
    batches: int


def throughput_table(
    report: Report, n: int, raws: dict[str, list[Rate]], runs: list[ServiceRun], extra: dict[str, Any]
) -> dict[tuple[str, str], float]:
    """The throughput table: raw consume per client, then each service run against its client's raw.

    Returns the wall-clock share of raw per (client, source).
    """
    rows: list[list[object]] = []
    best = {c: max(rs, key=lambda r: r.rate) for c, rs in raws.items()}
    for client, rs in raws.items():
        for i, r in enumerate(rs):
            when = "before" if i == 0 else "after"
            rows.append(
                [
                    f"raw {CLIENT_LABEL[client]} consume ({when} the services)",
                    *_rate_row("", r)[1:],
                    "",
                    "",
                    "",
                ]
            )
    shares = {}
    for run in runs:
        raw = best.get(run.client) or best["kafka-python"]
        share = run.rate.rate / raw.rate
        cpu_share = (raw.cpu_s / raw.counted) / (run.rate.cpu_s / run.rate.counted)
        shares[(run.client, run.source)] = share
        label = f"`viraltrend run`, {CLIENT_LABEL[run.client]} ({run.source})"
        rows.append([label, *_rate_row("", run.rate)[1:], f"{share:.0%}", f"{cpu_share:.0%}",
                     f"{run.busy_s:.2f} / {run.engine_s:.2f}"])  # fmt: skip
    report.table(
        f"Throughput: {n:,} events through the embedded broker, 1 partition",
        "run|events/s|window s|total s|consumer CPU s|CPU / wall|CPU us/event|broker CPU s|share of raw "
        "(wall)|share of raw (CPU per event)|busy s / engine s".split("|"),
        rows,
        notes=[
            *_THROUGHPUT_NOTES,
            "raw librdkafka: confluent-kafka Consumer, manually assigned, ConfluentSource's fetch settings, "
            "consume(50000), counts records; each service run is compared with the raw run of its own client "
            "(the faster of before and after)",
            "busy: summed viraltrend_batch_duration_seconds in the window (poll + decode + engine + "
            "publish); engine: summed viraltrend_kernel_update_duration_seconds",
            *(
                f"steady rate (10% of N to N), {CLIENT_LABEL[r.client]} ({r.source}): {fmt_rate(r.steady)}/s "
                f"in {r.batches} batches"
                for r in runs
            ),
            f"loading the topic with produce_file ran at {fmt_rate(extra['produce_rate'])}/s; load "
            f"average at the start of this series: {extra['load']}",
        ],
    )
    return shares


def latency_table(report: Report, runs: list[dict[str, Any]], n_lines: int, duration_s: float) -> None:
    tick_s = load_config(None).decay.tick_s
    rows, load = [], []
    for r in runs:
        ok = r["h_p99"] < TARGET_P99_S and r["d_p99"] < TARGET_P99_S
        rows.append([f"{r['rate']:,.0f}", f"{r['achieved']:,.0f}", f"{r['sent']:,}", _s(r["drain_s"]),
                     _s(r["h_p50"], 3), _s(r["h_p99"], 3), f"{r['under_1s']:.1%}", _s(r["d_p50"], 3),
                     _s(r["d_p99"], 3), _s(r["d_max"], 3), f"{r['d_ticks']:,}", f"{r['d_over_1s']:.1%}",
                     verdict(ok)])  # fmt: skip
        ticks_per_s = r["achieved"] * duration_s / n_lines / tick_s
        load.append([f"{r['rate']:,.0f}", _s(r["fed_s"], 1), f"{r['batches']:,.0f}",
                     f"{r['events_per_batch']:,.0f}", f"{r['service_cpu']:.0%}", _s(r["engine_s"], 1),
                     f"{r['checkpoints']:.0f}", _s(r["ckpt_mean_s"], 3), f"{ticks_per_s:,.0f}",
                     r["load"]])  # fmt: skip
    report.table(
        "Latency at a fixed input rate (fresh broker and topic per rate, service running, Feeder in its "
        "own process)",
        (
            "target /s|achieved /s|events|drain s|hist p50 s|hist p99 s|batches <= 1 s|direct p50 s|"
            f"direct p99 s|direct max s|ticks|ticks > 1 s|p99 < {TARGET_P99_S:g} s"
        ).split("|"),  # fmt: skip
        rows,
        notes=_LATENCY_NOTES,
    )
    report.table(
        "The service during the latency windows",
        "target /s|fed s|batches|events/batch|service CPU|engine s|checkpoints|mean checkpoint s|ticks/s|"
        "load avg at start".split("|"),
        load,
        notes=[
            *_LOAD_NOTES,
            f"ticks/s: board evaluations per wall second the input rate implies: the file covers "
            f"{duration_s / 3600:g} h of event time in {n_lines:,} lines ({duration_s / n_lines:.3f} s of "
            f"event time per event, tick {tick_s:g} s): event time runs thousands of times faster than live",
        ],
    )


def write_md(report: Report) -> None:
    """Append this run to ``SERVICE_MD`` (the benchmark's own log of runs)."""
    report.record(
        SERVICE_MD,
        header="# End-to-end service benchmark (`benchmarks/bench_service.py`)\n\n"
        "Sections are appended by each run; the newest is last.\n",
    )


# ------------------------------------------------------------------ main
def series_throughput(
    events: Path,
    n: int,
    tmp: Path,
    report: Report,
    profile: str,
    clients: list[str],
    baseline: str | None = None,
    rounds: int = 1,
) -> None:
    """Raw consume per client, then ``viraltrend run`` per client (and per source tree), on one topic.

    With ``baseline`` (a directory holding another ``viraltrend/`` tree), each service run is
    repeated with ``PYTHONPATH`` pointing there, interleaved, so before and after share one run.
    """
    from viraltrend.stream.feeder import produce_file

    load = loadavg()
    sources = [("this tree", {})]
    if baseline:
        sources.append((f"baseline {Path(baseline).name}", {"PYTHONPATH": str(Path(baseline).resolve())}))
    with broker(tmp, "throughput") as b:
        bs, tansu = b.bootstrap_servers, broker_pid()
        topics = make_topics(bs, "tp")
        t0 = time.perf_counter()
        sent = produce_file(bs, topics[0], events, limit=n)
        produce_rate = sent / (time.perf_counter() - t0)
        console.print(f"produced {sent:,} records at {fmt_rate(produce_rate)}/s")
        raw_fns = {"kafka-python": raw_consume, "confluent": raw_consume_confluent}
        raws: dict[str, list[Rate]] = {}
        for client in clients:
            raws[client] = [raw_fns[client](bs, topics[0], sent, tansu)]
            console.print(f"raw {CLIENT_LABEL[client]} consume: {fmt_rate(raws[client][0].rate)}/s")
        runs: list[ServiceRun] = []
        thread_notes: list[str] = []
        k = 0
        for _ in range(rounds):
            for client in clients:
                for source, env in sources:
                    k += 1
                    env = {**env, "VIRALTREND_KAFKA_CLIENT": client}
                    svc, trace, busy = service_consume(
                        bs, topics, sent, tmp, f"bench-throughput-{k}", tansu, env
                    )
                    *busy3, threads = busy
                    runs.append(ServiceRun(client, source, svc, steady_rate(trace, sent), *busy3))
                    console.print(f"service, {CLIENT_LABEL[client]} ({source}): {fmt_rate(svc.rate)}/s")
                    thread_notes.append(
                        f"CPU from 10% of N to N, {CLIENT_LABEL[client]} ({source}): "
                        f"{steady_cpu(trace, sent):.2f} µs/event; "
                        f"CPU per thread over the window: {threads}"
                    )
        for client in clients:
            raws[client].append(raw_fns[client](bs, topics[0], sent, tansu))
        shares = throughput_table(report, sent, raws, runs, {"produce_rate": produce_rate, "load": load})
        for note in thread_notes:
            report.note(note)
        floor = engine_floor(events, sent)
        for client in clients:
            best = min(1e6 * r.cpu_s / r.counted for r in raws[client] if r.counted)
            note = (
                f"the engine alone (in process, same events, batches of 30,000, kernels warm): "
                f"{floor:.2f} µs/event of CPU; against raw {CLIENT_LABEL[client]} ({best:.2f} µs/record) "
                f"nothing else spent, a service would reach {best / floor:.0%} of raw by CPU"
            )
            report.note(note)
        for client in clients:
            share = shares.get((client, "this tree"), 1.0)
            if profile == "pyspy":
                console.print(f"[bold]py-spy[/bold] over every thread of the service, {CLIENT_LABEL[client]}")
                table = pyspy_service(bs, topics, sent, tmp, env={"VIRALTREND_KAFKA_CLIENT": client},
                                      name=f"pyspy-{client}")  # fmt: skip
                console.print(table)
                report.code(table, f"py-spy (all threads) of `viraltrend run` ({CLIENT_LABEL[client]}), "
                            f"{sent:,} records; samples of threads on the CPU only")  # fmt: skip
                continue
            if profile == "yes" or (profile == "auto" and share < TARGET_RATIO):
                console.print(f"[bold]profiling[/bold] the service, {CLIENT_LABEL[client]} (cProfile)")
                env = {"VIRALTREND_KAFKA_CLIENT": client}
                by_tottime, by_cumtime = profile_service(
                    bs, topics, sent, tmp, env=env, name=f"prof-{client}"
                )
                report.code(
                    by_tottime,
                    f"cProfile of `viraltrend run` ({CLIENT_LABEL[client]}) over the same {sent:,} records, "
                    f"top 25 by tottime (main thread only: the producer's IO thread is not seen; includes "
                    f"group join and the {IDLE_EXIT_S:g} s idle wait before exit)",
                )
                report.code(by_cumtime, "the same profile, top 20 by cumulative time")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--events", type=int, default=None, help="events to simulate and consume (default 1M; quick 200k)"
    )
    ap.add_argument("--products", type=int, default=None, help="catalogue size (default 100k; quick 10k)")
    ap.add_argument("--rate", type=float, default=50_000, help="feeder rate for the latency series, events/s")
    ap.add_argument(
        "--seconds", type=float, default=None, help="length of each latency series (default 30; quick 10)"
    )
    ap.add_argument(
        "--profile",
        choices=("auto", "yes", "no", "pyspy"),
        default="auto",
        help="profile the service with cProfile (auto: when below 80%% of raw), or every thread of it "
        "with py-spy (pyspy)",
    )
    ap.add_argument("--skip-latency", action="store_true", help="only the throughput series")
    ap.add_argument(
        "--clients",
        default="kafka-python,confluent",
        help="comma-separated service clients (kafka-python, confluent), each against its own raw consume",
    )
    ap.add_argument(
        "--baseline",
        default=None,
        help="a directory holding another viraltrend/ tree: each service run is repeated from it "
        "(PYTHONPATH)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="service runs per client and source tree")
    ap.add_argument("--quick", action="store_true", help="200k events, 10 s latency series")
    args = ap.parse_args(argv)
    n = args.events or (200_000 if args.quick else 1_000_000)
    if n < 100_000:
        ap.error(f"--events {n:,} is too few: one or two polls read them all, so no rate is measured")
    products = args.products or (10_000 if args.quick else 100_000)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    require_crc32c()
    report = Report(
        "End-to-end service: throughput vs raw kafka-python, latency at a fixed rate",
        ["benchmarks/bench_service.py", *sys.argv[1:]],
    )
    events = simulated(n, products, 5, 1)
    with tempfile.TemporaryDirectory(prefix="bench-service-") as d:
        tmp = Path(d)
        warm_numba(tmp)
        if args.baseline:
            warm_numba(tmp, {"PYTHONPATH": str(Path(args.baseline).resolve())})
        clients = [c.strip() for c in args.clients.split(",") if c.strip()]
        series_throughput(events, n, tmp, report, args.profile, clients, args.baseline, args.rounds)
        if not args.skip_latency:
            runs = [latency_series(events, args.rate, seconds, tmp, "lat1")]
            if runs[0]["achieved"] < 0.95 * args.rate:
                lower = max(1_000.0, 1_000.0 * int(0.9 * runs[0]["achieved"] / 1_000))
                report.note(
                    f"The feeder reached {runs[0]['achieved']:,.0f}/s of the {args.rate:,.0f}/s asked; "
                    f"repeating at {lower:,.0f}/s (about 90% of that) as the highest sustainable rate."
                )
                runs.append(latency_series(events, lower, seconds, tmp, "lat2"))
            latency_table(report, runs, n, 86_400.0)
    write_md(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
