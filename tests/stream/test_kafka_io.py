"""KafkaSource, KafkaSink, topic admin and DLQ records against the real embedded broker."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections import defaultdict

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.stream.conftest import drain
from viraltrend.errors import ConfigError, StreamError
from viraltrend.events import EVENT_TYPE_CODE, Reject
from viraltrend.stream.kafka_io import (
    KafkaSink,
    KafkaSource,
    create_topics,
    describe_topic,
    dlq_record,
    topic_exists,
)

TS = 1_764_253_200_123


def event(i: int, product: str = "p-1", **extra: object) -> bytes:
    obj = {"event_id": f"e-{i}", "ts": TS + i, "type": "view", "product_id": product, "user_id": f"u-{i}"}
    obj.update(extra)
    return json.dumps(obj).encode()


#: (value, reason) for each bad message; the reasons are the decoder's.
BAD = [
    (b"this is not json", "bad_json"),
    (b'{"ts": 1764253200123, "type": "view", "product_id": "p-1"', "bad_json"),
    (b"[1, 2, 3]", "not_object"),
    (b'{"ts": "yesterday", "type": "view", "product_id": "p-1", "user_id": "u"}', "bad_ts"),
    (b'{"ts": 1764253200123, "type": "view", "product_id": 42, "user_id": "u"}', "wrong_type"),
    (b'{"ts": 1764253200123, "type": "view", "user_id": "u"}', "missing_field"),
    (b'{"ts": 1764253200123, "type": "teleport", "product_id": "p-1", "user_id": "u"}', "unknown_event_type"),
    (event(0, product="p" * 5000), "bad_string"),
    (b'{"ts": -5, "type": "view", "product_id": "p-1", "user_id": "u"}', "bad_ts"),
    (b'{"ts": 1764253200123, "type": "view", "product_id": "p-\xff\xfe", "user_id": "u"}', "bad_utf8"),
    (b"", "bad_json"),
]


def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i, value in enumerate(values):
        producer.send(topic, key=None if keys is None else keys[i], value=value)
    producer.flush(timeout=30)
    producer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------- decoding corpus


@pytest.fixture(scope="module")
def corpus(broker):
    """One partition, good events interleaved with every kind of bad message, consumed once."""
    name = f"corpus-{time.monotonic_ns()}"
    create_topics(broker.bootstrap_servers, {name: 1})
    values, expected_good, expected_bad = [], [], {}
    for i, (bad, reason) in enumerate(BAD):
        expected_good.append(len(values))
        values.append(event(i, product=f"p-{i}"))
        expected_bad[len(values)] = reason
        values.append(bad)
    expected_good.append(len(values))
    values.append(event(99, product="p-last", price=12.5, quantity=2))
    produce(broker.bootstrap_servers, name, values)
    source = KafkaSource(broker.bootstrap_servers, name, group_id=f"{name}-g")
    try:
        batch, rejects = drain(source, len(values))
        snapshot = source.snapshot()
    finally:
        source.close()
    return {"values": values, "good": expected_good, "bad": expected_bad, "batch": batch,
            "rejects": rejects, "snapshot": snapshot, "topic": name}  # fmt: skip


@pytest.mark.integration
def test_good_events_come_back_in_order_with_partition_and_offset(corpus):
    batch = corpus["batch"]
    assert batch.offset.tolist() == corpus["good"]
    assert batch.partition.tolist() == [0] * len(corpus["good"])
    assert batch.product_id == [f"p-{i}" for i in range(len(BAD))] + ["p-last"]
    assert batch.ts_ms[-1] == TS + 99
    assert batch.price[-1] == 12.5 and batch.quantity[-1] == 2
    assert set(batch.type_code.tolist()) == {EVENT_TYPE_CODE["view"]}


@pytest.mark.integration
def test_bad_messages_become_rejects_with_reasons_offsets_and_original_bytes(corpus):
    rejects = corpus["rejects"]
    assert {r.offset: r.reason for r in rejects} == corpus["bad"]
    for r in rejects:
        assert r.raw == corpus["values"][r.offset]
        assert (r.source, r.partition) == (corpus["topic"], 0)
        assert r.detail and "\n" not in r.detail


@pytest.mark.integration
def test_snapshot_is_the_offset_after_the_last_record_returned(corpus):
    assert corpus["snapshot"] == {0: len(corpus["values"])}


# ------------------------------------------------------------------------------- groups, offsets


@pytest.mark.integration
def test_a_new_consumer_in_the_group_resumes_after_the_committed_offsets(
    broker, topic_factory, source_factory
):
    topic = topic_factory(partitions=1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(10)])
    first = source_factory(topic, group_id=f"{topic}-g")
    drain(first, 10)
    first.commit({0: 6})  # as if only the first 6 were checkpointed
    first.close()
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(10, 12)])
    second = source_factory(topic, group_id=f"{topic}-g")
    batch, _ = drain(second, 6)
    assert batch.offset.tolist() == [6, 7, 8, 9, 10, 11]
    assert second.snapshot() == {0: 12}


@pytest.mark.integration
def test_keyed_messages_on_two_partitions_keep_per_key_order(broker, topic_factory, source_factory):
    topic = topic_factory(partitions=2)
    products = [f"p-{i % 5}" for i in range(60)]
    produce(broker.bootstrap_servers, topic, [event(i, p) for i, p in enumerate(products)],
            keys=[p.encode() for p in products])  # fmt: skip
    source = source_factory(topic)
    batch, rejects = drain(source, 60)
    assert not rejects and len(batch) == 60
    partitions_of = defaultdict(set)
    ts_of = defaultdict(list)
    for p, part, ts in zip(batch.product_id, batch.partition.tolist(), batch.ts_ms.tolist(), strict=True):
        partitions_of[p].add(part)
        ts_of[p].append(ts)
    assert all(len(parts) == 1 for parts in partitions_of.values())  # one product, one partition
    assert all(ts == sorted(ts) for ts in ts_of.values())  # produced order kept per product
    assert set(batch.partition.tolist()) == {0, 1}
    assert source.assignment() == {0, 1}
    counts = np.bincount(batch.partition, minlength=2)
    assert source.snapshot() == {0: int(counts[0]), 1: int(counts[1])}
    assert source.lag() == {0: 0, 1: 0}


@pytest.mark.integration
def test_lag_counts_the_records_beyond_those_returned(broker, topic_factory, source_factory):
    topic = topic_factory(partitions=1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(50)])
    source = source_factory(topic)
    drain(source, 10, max_events=10)
    assert source.snapshot() == {0: 10}
    assert source.lag() == {0: 40}


@pytest.mark.integration
def test_rebalance_hooks_restore_on_assign_and_checkpoint_and_commit_on_revoke(
    broker, topic_factory, source_factory
):
    topic = topic_factory(partitions=1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(8)])
    calls = []

    def on_assign(parts):
        calls.append(("assign", parts))
        source.seek({p: 3 for p in parts})  # restore: the checkpoint said offset 3

    def on_revoke(parts):
        calls.append(("revoke", parts, source.snapshot()))
        source.commit(source.snapshot())  # inside the hook: sent and awaited by the source

    source = source_factory(topic, group_id=f"{topic}-g", on_assign=on_assign, on_revoke=on_revoke)
    batch, _ = drain(source, 5)
    assert batch.offset.tolist() == [3, 4, 5, 6, 7]
    source.close()  # leaving the group revokes
    assert calls == [("assign", {0}), ("revoke", {0}, {0: 8})]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=f"{topic}-g")
    assert consumer.committed(TopicPartition(topic, 0)) == 8
    consumer.close()


@pytest.mark.integration
def test_an_error_in_a_rebalance_hook_is_raised_by_next_batch(topic_factory, source_factory):
    def on_assign(parts):
        msg = f"cannot restore {sorted(parts)}"
        raise RuntimeError(msg)

    source = source_factory(topic_factory(partitions=1), on_assign=on_assign)
    deadline = time.monotonic() + 20
    with pytest.raises(RuntimeError, match=r"cannot restore \[0\]"):
        while time.monotonic() < deadline:
            source.next_batch(100)


@pytest.mark.integration
def test_next_batch_returns_empty_batches_while_the_group_joins(topic_factory, source_factory):
    source = source_factory(topic_factory(partitions=1), poll_timeout_ms=100)
    for _ in range(10):
        batch, rejects = source.next_batch(100)
        assert len(batch) == 0 and rejects == []
    assert source.exhausted is False


# ------------------------------------------------------------------------------------- errors


@pytest.mark.integration
def test_an_unreachable_bootstrap_is_a_stream_error_within_a_bounded_time():
    address = f"127.0.0.1:{closed_port()}"
    with pytest.raises(StreamError, match=rf"cannot reach Kafka at {address}.*is the broker running"):
        KafkaSource(address, "events", group_id="g", connect_timeout_s=1.5)
    with pytest.raises(StreamError, match="check --bootstrap-servers"):
        KafkaSink(address, connect_timeout_s=1.5)
    with pytest.raises(StreamError, match=f"cannot reach Kafka at {address}"):
        topic_exists(address, "events", timeout_s=1.5)


@pytest.mark.integration
def test_a_missing_topic_is_a_stream_error_naming_it_and_the_create_flag(broker):
    name = f"no-such-events-{time.monotonic_ns()}"
    with pytest.raises(StreamError, match=rf"topic '{name}' does not exist.*--create-topics"):
        KafkaSource(broker.bootstrap_servers, name, group_id="g")
    assert not topic_exists(broker.bootstrap_servers, name)  # asking did not create it


@pytest.mark.integration
def test_sending_to_a_missing_topic_is_a_stream_error_and_does_not_create_it(broker):
    name = f"no-such-deals-{time.monotonic_ns()}"
    with KafkaSink(broker.bootstrap_servers) as sink:
        with pytest.raises(StreamError, match=rf"topic '{name}': it does not exist.*--create-topics"):
            sink.send(name, b"k", b"v")
    assert not topic_exists(broker.bootstrap_servers, name)


def test_reserved_consumer_options_are_refused():
    with pytest.raises(ConfigError, match="enable_auto_commit"):
        KafkaSource("127.0.0.1:1", "events", group_id="g", enable_auto_commit=True)


# ------------------------------------------------------------------------------- sink, DLQ, admin


def test_dlq_record_keeps_the_original_bytes_and_where_they_came_from():
    raw = b'{"ts": "soon", "product_id": "p-\xff"}'
    reject = Reject(raw, "bad_utf8", "record is not UTF-8", "engagement-events", 3, 1234)
    record = json.loads(dlq_record(reject, now_ms=1_700_000_000_000))
    assert record == {
        "schema": 1, "reason": "bad_utf8", "detail": "record is not UTF-8",
        "source_topic": "engagement-events", "partition": 3, "offset": 1234, "original": None,
        "original_b64": base64.b64encode(raw).decode(), "rejected_at": 1_700_000_000_000,
    }  # fmt: skip
    assert base64.b64decode(record["original_b64"]) == raw


def test_dlq_record_gives_utf8_originals_as_text_and_stamps_wall_time():
    before = int(time.time() * 1000)
    record = json.loads(dlq_record(Reject("naïve ✓".encode(), "bad_json", "not JSON")))
    assert record["original"] == "naïve ✓"
    assert base64.b64decode(record["original_b64"]).decode() == "naïve ✓"
    assert before <= record["rejected_at"] <= int(time.time() * 1000)


@pytest.mark.integration
def test_sink_delivers_keyed_json_and_dlq_records_that_round_trip(broker, topic_factory):
    decisions, dlq = topic_factory(partitions=1, compacted=True), topic_factory(partitions=1)
    raw = b"\x00\xffnot json"
    with KafkaSink(broker.bootstrap_servers) as sink:
        sink.send_json(decisions, "p-1", {"schema": 1, "action": "promote", "product_id": "p-1", "rank": 1})
        sink.send(dlq, None, dlq_record(Reject(raw, "bad_utf8", "not UTF-8", "events", 0, 17)))
        sink.flush(timeout_s=10)
        assert sink.sent == 2
    got = {}
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    consumer.assign([TopicPartition(decisions, 0), TopicPartition(dlq, 0)])
    consumer.seek_to_beginning()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            got[tp.topic] = records[0]
    consumer.close()
    assert got[decisions].key == b"p-1"
    assert json.loads(got[decisions].value)["action"] == "promote"
    record = json.loads(got[dlq].value)
    assert base64.b64decode(record["original_b64"]) == raw
    assert (record["source_topic"], record["partition"], record["offset"]) == ("events", 0, 17)


@pytest.mark.integration
def test_create_topics_sets_explicit_retention_and_cleanup_configs(broker, topic_factory):
    events, board = f"events-{time.monotonic_ns()}", f"board-{time.monotonic_ns()}"
    created = create_topics(broker.bootstrap_servers, {events: 3, board: 1}, compacted={board},
                            retention_ms=3_600_000, retention_bytes=1 << 30)  # fmt: skip
    assert created == [events, board]
    info = describe_topic(broker.bootstrap_servers, events)
    assert info.partitions == 3
    assert info.configs == {
        "retention.ms": "3600000",
        "retention.bytes": "1073741824",
        "cleanup.policy": "delete",
    }
    assert describe_topic(broker.bootstrap_servers, board).configs["cleanup.policy"] == "compact"


@pytest.mark.integration
def test_create_topics_is_idempotent(broker):
    name = f"twice-{time.monotonic_ns()}"
    assert create_topics(broker.bootstrap_servers, {name: 2}) == [name]
    assert create_topics(broker.bootstrap_servers, {name: 2}) == []
    assert topic_exists(broker.bootstrap_servers, name)
    assert describe_topic(broker.bootstrap_servers, name).partitions == 2


def test_dlq_record_over_the_limit_is_truncated_with_size_and_sha256_never_dropped():
    import hashlib

    raw = ("é" * 3000 + "tail").encode()  # two-byte characters: the cut must not split one
    record_bytes = dlq_record(Reject(raw, "bad_string", "too long", "events", 2, 9), now_ms=1, max_bytes=4000)
    record = json.loads(record_bytes)
    assert len(record_bytes) <= 4000
    assert record["truncated"] is True
    assert record["original_size"] == len(raw)
    assert record["original_sha256"] == hashlib.sha256(raw).hexdigest()
    prefix = base64.b64decode(record["original_b64"])
    assert raw.startswith(prefix) and len(prefix) > 1000
    assert record["original"] == prefix.decode("utf-8")
    # one more character would not fit: the prefix is the longest that does
    assert len(dlq_record(Reject(raw, "bad_string", "too long", "events", 2, 9), now_ms=1)) > 4000


def test_dlq_record_that_cannot_fit_even_without_its_original_is_a_stream_error():
    with pytest.raises(StreamError, match="without its original"):
        dlq_record(Reject(b"x" * 1000, "bad_json", "d" * 600, "events", 0, 1), now_ms=1, max_bytes=300)


@pytest.mark.integration
def test_a_failed_message_fails_every_later_flush_until_the_sink_is_replaced(broker, topic_factory):
    topic = topic_factory(partitions=1)
    with KafkaSink(broker.bootstrap_servers, max_message_bytes=1024) as sink:
        sink.send(topic, None, b"small")
        with pytest.raises(StreamError, match="MessageSizeTooLarge"):
            sink.send(topic, None, b"x" * 5000)
        assert sink.failed
        for _ in range(2):  # never cleared: nothing may be committed after the lost message
            with pytest.raises(StreamError, match="nothing after them may be committed"):
                sink.flush(timeout_s=5)
        with pytest.raises(StreamError):
            sink.send(topic, None, b"more")
    with KafkaSink(broker.bootstrap_servers) as fresh:
        fresh.send(topic, None, b"again")
        fresh.flush(timeout_s=10)
        assert not fresh.failed
