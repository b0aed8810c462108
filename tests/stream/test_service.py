"""The live service as it runs in production: real ``viraltrend run`` subprocesses, a real broker.

No mocks: events are produced to the embedded Tansu broker, the service is a subprocess of the
CLI, decisions and dead letters are read back from their topics, metrics are scraped over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.replay import replay
from viraltrend.stream.broker import EmbeddedBroker, create_topics, free_port

pytestmark = pytest.mark.integration


class _Key(msgspec.Struct):
    product_id: str


_KEY = msgspec.json.Decoder(_Key)


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024, acks=1)
    for line in lines:
        try:
            key = _KEY.decode(line).product_id.encode()
        except (msgspec.DecodeError, UnicodeDecodeError):
            key = None
        producer.send(topic, key=key, value=line)
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


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_services():
    """A test that fails half-way must not leave its service running: kill what is still alive."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def start_service(
    bootstrap: str,
    names: dict[str, str],
    tmp: Path,
    *,
    idle_s: float | None = 4.0,
    metrics_port: int = 0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
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
        f"g-{names['input']}",
        "--no-create-topics",
        "--checkpoint-dir",
        str(tmp / "ckpt"),
        "--metrics-port",
        str(metrics_port),
    ]
    if idle_s is not None:
        args += ["--exit-when-idle", str(idle_s)]
    log = (tmp / "service.log").open("a")
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )
    _STARTED.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], tmp: Path, timeout_s: float = 120) -> None:
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert rc == 0, (tmp / "service.log").read_text()[-3000:]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(predicate, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def small(scenario_factory):
    directory = scenario_factory(**SMALL)
    lines = (directory / "events.ndjson").read_bytes().splitlines()
    want_path = directory / "replayed.ndjson"
    if not want_path.exists():
        replay([directory / "events.ndjson"], load_config(None, environ={}), out=want_path)
    want = [json.loads(x) for x in want_path.read_text().splitlines()]
    for w in want:
        w.pop("emitted_at")
    return lines, want


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_live_run_publishes_exactly_the_replay_decisions(broker, small, tmp_path, client):
    lines, want = small
    names = topics(broker.bootstrap_servers, f"live-{client}")
    produce(broker.bootstrap_servers, names["input"], lines)
    finish(
        start_service(broker.bootstrap_servers, names, tmp_path, env={"VIRALTREND_KAFKA_CLIENT": client}),
        tmp_path,
    )
    got = decisions(broker.bootstrap_servers, names["output"])
    assert got == want
    keys = {k for k, _ in read_topic(broker.bootstrap_servers, names["output"])}
    assert b"__board__" in keys


def test_bad_messages_go_to_the_dlq_with_reasons_and_good_ones_flow(broker, tmp_path):
    good = [
        json.dumps(
            {"ts": 1_764_000_000_000 + i, "type": "view", "product_id": f"p{i % 7}", "user_id": "u"}
        ).encode()
        for i in range(200)
    ]
    bad = {
        b"not json": "bad_json",
        b"[1,2]": "not_object",
        b'{"ts":1764000000000,"type":"view","user_id":"u"}': "missing_field",
        b'{"ts":"x","type":"view","product_id":"p","user_id":"u"}': "bad_ts",
        b'{"ts":1764000000000,"type":"wishlist","product_id":"p","user_id":"u"}': "unknown_event_type",
        b'{"ts":1764000000000,"type":"view","product_id":"p","user_id":"u","price":NaN}': "bad_number",
        b'{"ts":-5,"type":"view","product_id":"p","user_id":"u"}': "bad_ts",
        b'{"ts":99999999999999,"type":"view","product_id":"p","user_id":"u"}': "bad_ts",
        (
            '{"ts":1764000000000,"type":"view","product_id":"' + "x" * 5000 + '","user_id":"u"}'
        ).encode(): "bad_string",
        b'{"ts":1764000000000,"type":"view","product_id":"\xff\xfe","user_id":"u"}': "bad_utf8",
    }
    stream = []
    for i, raw in enumerate(bad):
        stream += good[i * 20 : (i + 1) * 20] + [raw]
    names = topics(broker.bootstrap_servers, "dlq")
    produce(broker.bootstrap_servers, names["input"], stream)
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    try:
        wait_for(
            lambda: len(read_topic(broker.bootstrap_servers, names["dlq"], timeout_s=2)) >= len(bad),
            what="dead letters",
        )
        text = scrape(port)
        assert sample(text, 'viraltrend_events_consumed_total{partition="0"}') == len(stream)
        assert sample(text, 'viraltrend_events_rejected_total{reason="bad_ts"}') == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    records = [json.loads(v) for _, v in read_topic(broker.bootstrap_servers, names["dlq"])]
    import base64

    got = {base64.b64decode(r["original_b64"]): r["reason"] for r in records}
    assert got == bad
    assert all(r["partition"] == 0 and r["offset"] >= 0 and r["detail"] for r in records)


def test_kill_9_then_restart_gives_the_board_of_an_uninterrupted_run(broker, small, tmp_path):
    lines, want = small
    names = topics(broker.bootstrap_servers, "crash")
    produce(broker.bootstrap_servers, names["input"], lines)
    slow = {"VIRALTREND_KAFKA_MAX_BATCH_EVENTS": "1500", "VIRALTREND_CHECKPOINT_INTERVAL_S": "0.3"}
    proc = start_service(broker.bootstrap_servers, names, tmp_path, env=slow, idle_s=None)
    ckpt = tmp_path / "ckpt" / f"g-{names['input']}" / f"{names['input']}-0" / "meta.json"

    def progressed() -> bool:
        if not ckpt.exists():
            return False
        offset = json.loads(ckpt.read_text())["offsets"]["0"]
        return 5_000 < offset < len(lines) - 5_000

    wait_for(progressed, what="a checkpoint in the middle of the stream")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    finish(start_service(broker.bootstrap_servers, names, tmp_path, env=slow), tmp_path)
    got = decisions(broker.bootstrap_servers, names["output"])
    assert got[-1]["action"] == "board"
    assert got[-1] == want[-1], "the final board equals the uninterrupted run's"
    # at-least-once: every decision of the uninterrupted run was published, in order, maybe twice
    deduped = []
    for m in got:
        if m not in deduped[-200:] or m["action"] == "board":
            deduped.append(m)
    assert [m for m in want if m["action"] != "board"] == [m for m in deduped if m["action"] != "board"]


def test_sigterm_finishes_the_batch_checkpoints_commits_and_exits(broker, small, tmp_path):
    lines, _ = small
    names = topics(broker.bootstrap_servers, "term")
    produce(broker.bootstrap_servers, names["input"], lines[:5000])
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    wait_for(lambda: _consumed(port) >= 5000, what="the service to consume the input")
    proc.send_signal(signal.SIGTERM)
    finish(proc, tmp_path, timeout_s=30)
    meta = json.loads(
        (tmp_path / "ckpt" / f"g-{names['input']}" / f"{names['input']}-0" / "meta.json").read_text()
    )
    assert meta["offsets"] == {"0": 5000}
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=f"g-{names['input']}", enable_auto_commit=False
    )
    committed = consumer.committed(TopicPartition(names["input"], 0))
    consumer.close()
    assert committed == 5000


def _consumed(port: int) -> float:
    try:
        return sample(scrape(port), 'viraltrend_events_consumed_total{partition="0"}') or 0.0
    except OSError:
        return 0.0


def test_metrics_endpoint_serves_the_documented_metrics(broker, small, tmp_path):
    lines, _ = small
    names = topics(broker.bootstrap_servers, "metrics")
    produce(broker.bootstrap_servers, names["input"], lines[:3000])
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    try:
        wait_for(
            lambda: (
                _consumed(port) >= 3000 and (sample(scrape(port), "viraltrend_tracked_products") or 0) > 0
            ),
            what="consumption",
        )
        text = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    for name in (
        "viraltrend_batch_duration_seconds_bucket",
        "viraltrend_end_to_end_latency_seconds_count",
        "viraltrend_tracked_products",
        "viraltrend_board_size",
        "viraltrend_broker_up",
        "viraltrend_last_checkpoint_timestamp_seconds",
        'viraltrend_board_changes_total{action="promote"}',
        'viraltrend_build_info{version="0.1.0"}',
        'viraltrend_events_rejected_total{reason="bad_json"}',
        "viraltrend_restore_duration_seconds_count",
        'viraltrend_rebalances_total{kind="assigned"}',
    ):
        assert sample(text, name) is not None, name
    assert sample(text, "viraltrend_tracked_products") > 100
    assert sample(text, "viraltrend_broker_up") == 1.0
    assert sample(text, "viraltrend_assigned_partitions") == 1.0
    assert "product_id" not in text


def test_broker_outage_is_ridden_out_and_processing_resumes(small, tmp_path):
    lines, _ = small
    port = free_port()
    own = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log").start()
    try:
        names = topics(own.bootstrap_servers, "outage")
        produce(own.bootstrap_servers, names["input"], lines[:2000])
        mport = free_port()
        proc = start_service(own.bootstrap_servers, names, tmp_path, metrics_port=mport, idle_s=None)
        wait_for(lambda: _consumed(mport) >= 2000, what="consumption before the outage")
        own.stop()
        wait_for(
            lambda: sample(scrape(mport), "viraltrend_broker_up") == 0.0, timeout_s=90, what="broker_up 0"
        )
        assert proc.poll() is None, "the service must not crash while the broker is away"
        own.start()
        # The memory-only broker forgot its topics and offsets (a real cluster keeps them): recreate,
        # and fill offsets 0..2999; the service resumes from its checkpointed offset 2000.
        topics(own.bootstrap_servers, "outage")
        produce(own.bootstrap_servers, names["input"], lines[2000:5000])
        wait_for(
            lambda: sample(scrape(mport), "viraltrend_broker_up") == 1.0 and _consumed(mport) >= 3000,
            timeout_s=90,
            what="consumption after the outage",
        )
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    finally:
        own.stop()


def test_blocklist_topic_blocks_a_trending_product_live(broker, scenario_factory, tmp_path):
    directory = scenario_factory(**SMALL)
    lines = (directory / "events.ndjson").read_bytes().splitlines()
    viral = json.loads((directory / "truth.json").read_text())["viral"][0]
    names = topics(broker.bootstrap_servers, "blocklist")
    blocklist = f"{names['input']}-blocklist"
    create_topics(broker.bootstrap_servers, {blocklist: 1}, compacted={blocklist})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    producer.send(blocklist, key=f"seller:{viral['seller_id']}".encode(), value=b"fake_reviews_elsewhere")
    producer.send(blocklist, key=b"seller:s-unblocked-later", value=b"x")
    producer.send(blocklist, key=b"seller:s-unblocked-later", value=None)
    producer.flush()
    producer.close()
    produce(broker.bootstrap_servers, names["input"], lines)
    finish(
        start_service(
            broker.bootstrap_servers, names, tmp_path, env={"VIRALTREND_TRUST_BLOCKLIST_TOPIC": blocklist}
        ),
        tmp_path,
    )
    got = [
        m
        for m in decisions(broker.bootstrap_servers, names["output"])
        if m.get("product_id") == viral["product_id"]
    ]
    assert [m["action"] for m in got][:1] == ["block"]
    assert "promote" not in [m["action"] for m in got]
    assert got[0]["reasons"][:2] == ["seller_blocked", "blocklist_reason:fake_reviews_elsewhere"]
