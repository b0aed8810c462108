"""No record vanishes: dead letters too large are truncated, and failed output stops the commit path.

Real ``viraltrend run`` subprocesses against the embedded broker; nothing is mocked.  Produce
failures are caused for real: a record over the producer's size limit (``kafka.max_message_bytes``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from tests.stream.services import (
    decisions,
    finish,
    produce,
    read_topic,
    sample,
    samples,
    scrape,
    service_env,
    start_service,
    tick_events,
    topics,
    wait_for,
)
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.errors import StreamError
from viraltrend.metrics import Metrics
from viraltrend.replay import replay
from viraltrend.stream.broker import create_topics, free_port
from viraltrend.stream.checkpoint import LocalStore
from viraltrend.stream.loop import Service

pytestmark = pytest.mark.integration

TS = 1_764_000_000_000


def good(i: int) -> bytes:
    obj = {
        "event_id": f"e-{i}",
        "ts": TS + i * 10,
        "type": "view",
        "product_id": f"p{i % 7}",
        "user_id": f"u{i}",
    }
    return json.dumps(obj).encode()


def _metric(port: int, name: str) -> float:
    try:
        return sample(scrape(port), name) or 0.0
    except OSError:
        return 0.0


def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close(autocommit=False)


def test_an_oversized_record_reaches_the_dlq_truncated_with_size_and_sha256(broker, tmp_path):
    huge = json.dumps({"ts": TS + 1000, "type": "view", "product_id": "x" * 500_000, "user_id": "u"}).encode()
    stream = [good(i) for i in range(100)] + [huge] + [good(i) for i in range(100, 200)]
    names = topics(broker.bootstrap_servers, "oversized")
    produce(broker.bootstrap_servers, names["input"], stream)
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    try:
        wait_for(
            lambda: len(read_topic(broker.bootstrap_servers, names["dlq"], timeout_s=10)) >= 1,
            timeout_s=60,
            what="the dead letter of the oversized record",
        )
        wait_for(
            lambda: _metric(port, 'viraltrend_events_applied_total{partition="0"}') >= 200,
            what="the good events applied",
        )
        text = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    assert sample(text, 'viraltrend_events_applied_total{partition="0"}') == 200
    assert sample(text, 'viraltrend_events_rejected_total{reason="bad_string"}') == 1
    assert sample(text, "viraltrend_broker_errors_total") == 0  # no produce failure, no rollback
    [(_, value)] = read_topic(broker.bootstrap_servers, names["dlq"])
    record = json.loads(value)
    assert len(value) <= 1_048_576
    assert (record["reason"], record["partition"], record["offset"]) == ("bad_string", 0, 100)
    assert record["truncated"] is True
    assert record["original_size"] == len(huge)
    assert record["original_sha256"] == hashlib.sha256(huge).hexdigest()
    prefix = base64.b64decode(record["original_b64"])
    assert len(prefix) > 100_000 and huge.startswith(prefix)
    assert record["original"] == prefix.decode()


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


def test_output_that_cannot_be_published_is_never_committed_past(broker, small, tmp_path):
    """Decisions over a 600-byte limit fail to publish: no offset is committed past their events."""
    lines, want = small
    names = topics(broker.bootstrap_servers, "unpublishable")
    produce(broker.bootstrap_servers, names["input"], lines)
    group = f"g-{names['input']}"
    port = free_port()
    tiny = {"VIRALTREND_KAFKA_MAX_MESSAGE_BYTES": "600", "VIRALTREND_CHECKPOINT_INTERVAL_S": "0.2"}
    proc = start_service(
        broker.bootstrap_servers,
        names,
        tmp_path,
        metrics_port=port,
        idle_s=None,
        env=tiny,
        log_name="tiny.log",
    )
    try:
        wait_for(
            lambda: _metric(port, "viraltrend_broker_errors_total") >= 2,
            what="publishing failures (and rollbacks) under the tiny message limit",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30, log_name="tiny.log")
    offset = committed(broker.bootstrap_servers, group, names["input"]) or 0
    published = {_canon(m) for m in decisions(broker.bootstrap_servers, names["output"])}
    assert published <= {_canon(m) for m in want}
    fired_at = tick_events(lines)
    unpublished = [m for m in want if _canon(m) not in published]
    assert unpublished, "the tiny limit must have stopped some decisions"
    first = min(fired_at(m["event_ts"]) for m in unpublished)
    assert offset <= first, (
        f"offset {offset} committed past event {first}, whose decisions were not published"
    )
    # A normal restart resumes from the last checkpoint and publishes everything that was missing.
    # (In a new group on the same changelog: Tansu may not let a group settle again after its only
    # member left and rejoined many times; a real cluster would.)
    same_state = {"VIRALTREND_CHECKPOINT_CHANGELOG_TOPIC": f"{group}.state"}
    finish(
        start_service(broker.bootstrap_servers, names, tmp_path, group_id=f"{group}-2", env=same_state),
        tmp_path,
    )
    got = decisions(broker.bootstrap_servers, names["output"])
    assert {_canon(m) for m in got} == {_canon(m) for m in want}
    assert got[-1] == want[-1]


def _canon(message: dict) -> str:
    return json.dumps(message, sort_keys=True)


def test_dead_letters_to_a_deleted_topic_are_never_committed_past(broker, tmp_path):
    """The DLQ topic is deleted mid-run: Tansu acknowledges records sent to it and keeps none.

    The sink checks, before each commit, that the topics it wrote still exist; the service rolls
    back and waits until the topic is back, then the dead letters of every record read since are
    in it, with their original bytes.
    """
    first = [good(i) for i in range(1000)]
    second: list[bytes] = []
    expected: dict[int, bytes] = {}
    for i in range(1000, 2000):
        second.append(good(i))
        if i % 100 == 50:
            expected[len(first) + len(second)] = b"not json %d" % i
            second.append(expected[len(first) + len(second)])
    names = topics(broker.bootstrap_servers, "deleted-dlq")
    group = f"g-{names['input']}"
    produce(broker.bootstrap_servers, names["input"], first)
    port = free_port()
    env = {"VIRALTREND_CHECKPOINT_INTERVAL_S": "0.2"}
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None, env=env)
    try:
        wait_for(
            lambda: committed(broker.bootstrap_servers, group, names["input"]) == len(first),
            what="the first part committed",
        )
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.delete_topics([names["dlq"]])
        admin.close()
        produce(broker.bootstrap_servers, names["input"], second)
        wait_for(
            lambda: (
                _metric(port, "viraltrend_broker_errors_total") >= 1
                or committed(broker.bootstrap_servers, group, names["input"]) == len(first) + len(second)
            ),
            what="the deleted topic noticed (or, before, everything committed)",
        )
        assert committed(broker.bootstrap_servers, group, names["input"]) < len(first) + len(second)
        create_topics(broker.bootstrap_servers, {names["dlq"]: 1})
        total = len(first) + len(second)
        wait_for(
            lambda: committed(broker.bootstrap_servers, group, names["input"]) == total,
            timeout_s=90,
            what="everything committed once the topic is back",
        )
        text = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    dead = {
        d["offset"]: base64.b64decode(d["original_b64"])
        for d in (json.loads(v) for _, v in read_topic(broker.bootstrap_servers, names["dlq"]))
    }
    assert dead == expected  # every reject read after the deletion, with its original bytes
    consumed = sum(samples(text, "viraltrend_events_consumed_total").values())
    applied = sum(samples(text, "viraltrend_events_applied_total").values())
    rejected = sum(samples(text, "viraltrend_events_rejected_total").values())
    assert consumed == applied + rejected


def test_shutdown_after_a_failed_publish_checkpoints_and_commits_nothing(broker, small, tmp_path):
    """Item 1's last path: ``shutdown()`` with a failed sink must not checkpoint or commit.

    In process, on the real broker: decisions over a 600-byte limit fail to publish, then the
    service is shut down as SIGTERM would.  Its final publish and checkpoint fail (the failure is
    sticky), and leaving the group (the revoke hook) must not checkpoint or commit either.
    """
    lines, _ = small
    names = topics(broker.bootstrap_servers, "shutdown-failed")
    produce(broker.bootstrap_servers, names["input"], lines)
    group = f"g-{names['input']}"
    env = service_env(
        broker.bootstrap_servers,
        names,
        group,
        kafka_max_message_bytes="600",
        checkpoint_store="local",
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_interval_s="3600",  # only shutdown() would checkpoint
    )
    service = Service(load_config(None, environ=env), metrics=Metrics(CollectorRegistry()))
    service.connect()
    with pytest.raises(StreamError, match="cannot send"):
        for _ in range(10_000):
            service.step()
    assert service.engines, "the failure must come while partitions are assigned"
    service.shutdown()
    assert committed(broker.bootstrap_servers, group, names["input"]) is None
    assert LocalStore(tmp_path / "ckpt" / group, names["input"]).load(0) is None
