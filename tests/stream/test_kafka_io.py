"""KafkaSink, topic admin and DLQ records against the real embedded broker.

The sources' contract (both clients) is in ``test_sources.py``.
"""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from viraltrend.errors import StreamError
from viraltrend.events import Reject
from viraltrend.stream.kafka_io import (
    KafkaSink,
    create_topics,
    describe_topic,
    dlq_record,
    topic_exists,
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------- errors


@pytest.mark.integration
def test_an_unreachable_bootstrap_is_a_stream_error_within_a_bounded_time():
    address = f"127.0.0.1:{closed_port()}"
    with pytest.raises(StreamError, match="check --bootstrap-servers"):
        KafkaSink(address, connect_timeout_s=1.5)
    with pytest.raises(StreamError, match=f"cannot reach Kafka at {address}"):
        topic_exists(address, "events", timeout_s=1.5)


@pytest.mark.integration
def test_sending_to_a_missing_topic_is_a_stream_error_and_does_not_create_it(broker):
    name = f"no-such-deals-{time.monotonic_ns()}"
    with KafkaSink(broker.bootstrap_servers) as sink:
        with pytest.raises(StreamError, match=rf"topic '{name}': it does not exist.*--create-topics"):
            sink.send(name, b"k", b"v")
    assert not topic_exists(broker.bootstrap_servers, name)


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
