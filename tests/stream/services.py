"""Helpers of the service tests: produce and read topics, start ``viraltrend run`` subprocesses, scrape.

Every service started here is listed in :data:`STARTED`; the stream conftest kills what a failed
test left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.stream.broker import create_topics
from viraltrend.stream.checkpoint import LocalStore, chain_offsets
from viraltrend.stream.files import FileSource


class _Key(msgspec.Struct):
    product_id: str


_KEY = msgspec.json.Decoder(_Key)


def key_of(line: bytes) -> bytes | None:
    """The record key of an event line: its product id (None for lines that are not events)."""
    try:
        return _KEY.decode(line).product_id.encode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024, acks=1)
    for line in lines:
        producer.send(topic, key=key_of(line), value=line)
    producer.flush()
    producer.close()


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 15.0) -> list[tuple[bytes | None, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(parts)
    out: list[tuple[int, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            out.extend((tp.partition, r.offset, r.key, r.value) for r in records)
    consumer.close()
    out.sort()
    return [(k, v) for _, _, k, v in out]


def decisions(bootstrap: str, topic: str) -> list[dict]:
    rows = [json.loads(v) for _, v in read_topic(bootstrap, topic)]
    for r in rows:
        r.pop("emitted_at")
    return rows


def topics(bootstrap: str, stem: str, partitions: int = 1) -> dict[str, str]:
    names = {"input": f"{stem}-in", "output": f"{stem}-out", "dlq": f"{stem}-dlq"}
    create_topics(
        bootstrap,
        {names["input"]: partitions, names["output"]: 1, names["dlq"]: 1},
        compacted={names["output"]},
    )
    return names


STARTED: list[subprocess.Popen[str]] = []

#: The group session of every service started here (``kafka.session_timeout_ms``; the default is 6 s),
#: unless a test sets its own.  Tansu holds a new member's join about half a session, rounded up
#: to whole seconds (measured: 3 s at 6 s, 2 s at 3-4 s), and a killed or frozen worker's
#: partitions move one session after its last heartbeat: at 3 s each start joins a second
#: sooner and each eviction comes 3 s sooner.  Heartbeats stay at 1 s, on their own thread.
SESSION_TIMEOUT_MS = "3000"


def service_env(bootstrap: str, names: dict[str, str], group: str, **extra: str) -> dict[str, str]:
    """Config keys (as ``VIRALTREND_*`` variables) of an in-process ``Service`` over ``names``' topics."""
    env = {
        "VIRALTREND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VIRALTREND_KAFKA_INPUT_TOPIC": names["input"],
        "VIRALTREND_KAFKA_OUTPUT_TOPIC": names["output"],
        "VIRALTREND_KAFKA_DLQ_TOPIC": names["dlq"],
        "VIRALTREND_KAFKA_GROUP_ID": group,
    }
    return {**env, **{f"VIRALTREND_{k.upper()}": v for k, v in extra.items()}}


def start_service(
    bootstrap: str,
    names: dict[str, str],
    tmp: Path,
    *,
    idle_s: float | None = 2.0,
    metrics_port: int = 0,
    env: dict[str, str] | None = None,
    store: str = "changelog",
    group_id: str | None = None,
    log_name: str = "service.log",
) -> subprocess.Popen[str]:
    """Start ``viraltrend run`` as a subprocess (reaped after the test by the stream conftest).

    ``idle_s``: ``--exit-when-idle`` (None: run until stopped).  An idle exit also waits until every
    assigned partition is read to the broker's end offset (``loop.IDLE_EXIT_PATIENCE``), so a short
    idle time cannot end a run that still has input on the broker; every test produces its input
    before it starts an idle-exiting service.
    """
    args = [
        sys.executable,
        "-m",
        "viraltrend",
        "run",
        "--bootstrap-servers",
        bootstrap,
        "--input-topic",
        names["input"],
        "--output-topic",
        names["output"],
        "--dlq-topic",
        names["dlq"],
        "--group-id",
        group_id or f"g-{names['input']}",
        "--no-create-topics",
        "--checkpoint-store",
        store,
        "--checkpoint-dir",
        str(tmp / "ckpt"),
        "--metrics-port",
        str(metrics_port),
    ]
    if idle_s is not None:
        args += ["--exit-when-idle", str(idle_s)]
    log = (tmp / log_name).open("a")
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "VIRALTREND_KAFKA_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS, **(env or {})},
    )
    STARTED.append(proc)
    return proc


def finish(
    proc: subprocess.Popen[str], tmp: Path, timeout_s: float = 240, log_name: str = "service.log"
) -> None:
    """Wait for a service to exit by itself; it must exit 0 (else its log tail is shown).

    The default deadline is generous (it costs nothing when the service exits in time): a run that
    starts on a cold numba cache compiles its kernels for minutes on a loaded 2-core machine (a
    clean clone's ``make test``; 120 s was once not enough, svc19).
    """
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"the service did not exit within {timeout_s:.0f} s{_log_tail(tmp / log_name)}")
    assert rc == 0, (tmp / log_name).read_text()[-3000:]


def scrape(port: int, up_within_s: float = 30.0) -> str:
    """The metrics endpoint's text; a service just started may not listen yet, so it is retried for
    ``up_within_s`` (a wait on a checkpoint can be met by an earlier run's before this one is up)."""
    deadline = time.monotonic() + up_within_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return resp.read().decode()
        except OSError:  # URLError is an OSError: connection refused while the server starts
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def samples(text: str, name: str) -> dict[str, float]:
    """Label value (or "") -> sample value, for every sample of metric ``name`` (one label at most)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(rf'^{name}(?:\{{\w+="([^"]*)"\}})? (\S+)$', line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def wait_for(
    predicate,
    timeout_s: float = 60.0,
    what: str = "condition",
    proc: subprocess.Popen[str] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``predicate`` until it holds; with ``proc``, fail at once if the process exits first.

    A failure names what was awaited and, with ``log``, shows the process's state and its log's
    last lines (the long config line left out), so a timeout on a loaded machine says why.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None and not predicate():
            pytest.fail(f"the service exited ({proc.returncode}) before {what}{_log_tail(log)}")
        time.sleep(0.2)
    state = "" if proc is None else f" (service {'running' if proc.poll() is None else 'exited'})"
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}{state}{_log_tail(log)}")


def _log_tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    kept = [x[:300] for x in log.read_text(errors="replace").splitlines() if "effective config" not in x]
    return f"\n--- last {lines} lines of {log.name} ---\n" + "\n".join(kept[-lines:])


def checkpointed_at(meta_path: Path) -> int:
    """The input offset of the local checkpoint whose base's ``meta.json`` is ``meta_path`` (-1 if none)."""
    offsets = chain_offsets(meta_path.parent)  # the base's meta.json, or its latest delta's
    return -1 if offsets is None else offsets.get(0, -1)


def assert_same_state(directory: Path, input_topic: str, n_records: int, uninterrupted: Engine) -> None:
    """The last local checkpoint is at the stream's end and its state equals the uninterrupted engine's."""
    loaded = LocalStore(directory, input_topic).load(0)
    assert loaded is not None
    arrays, state_meta, offsets = loaded
    assert offsets == {0: n_records}
    restored = Engine.restore(load_config(None, environ={}), arrays, state_meta)
    assert restored.products.to_list() == uninterrupted.products.to_list()
    assert restored.clock.to_dict() == uninterrupted.clock.to_dict()
    wm = int(uninterrupted.clock.watermark_ms)
    slots = np.arange(len(uninterrupted.products.to_list()), dtype=np.int64)
    np.testing.assert_allclose(
        restored.counters.read(slots, wm), uninterrupted.counters.read(slots, wm), rtol=1e-12
    )
    assert restored.board.to_dict() == uninterrupted.board.to_dict()


def assert_accounted(text: str, *, nothing_left: bool = False) -> None:
    """consumed = applied + the sum of rejected (duplicates included), from one scrape.

    ``nothing_left``: the service started at a checkpoint of the stream's end, so it must have
    consumed, applied and rejected nothing; otherwise it must have consumed something.
    """
    consumed = sum(samples(text, "viraltrend_events_consumed_total").values())
    applied = sum(samples(text, "viraltrend_events_applied_total").values())
    rejected = sum(samples(text, "viraltrend_events_rejected_total").values())
    if nothing_left:
        assert consumed == applied == rejected == 0, (consumed, applied, rejected)
    else:
        assert consumed > 0 and consumed == applied + rejected, (consumed, applied, rejected)


def engine_over(path: Path) -> Engine:
    """The engine of an uninterrupted run over the file at ``path`` (default config)."""
    engine = Engine(load_config(None, environ={}))
    with FileSource([path]) as source:
        while not source.exhausted:
            batch, _ = source.next_batch(50_000)
            engine.process(batch)
    return engine


def tick_events(lines: list[bytes], skip: frozenset[int] = frozenset()):
    """For a decision's ``event_ts``, the index of the record whose arrival fired that tick.

    Records that are not events (no integer ``ts``) and those at the indices in ``skip`` (bad
    records) keep the running maximum where it was.
    """
    ts = []
    for i, line in enumerate(lines):
        if i in skip:
            ts.append(-(2**62))
            continue
        try:
            value = json.loads(line)["ts"]
        except (ValueError, KeyError, TypeError, RecursionError):  # the hostile corpus nests deep
            value = None
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62
        ts.append(value if ok else -(2**62))
    running = np.maximum.accumulate(np.array(ts, np.int64))

    def fired_at(event_ts: int) -> int:
        return int(np.searchsorted(running, event_ts, side="left"))

    return fired_at
