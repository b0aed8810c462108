"""The group source's contract, for both clients, against the real embedded broker.

``KafkaSource`` (kafka-python) and ``ConfluentSource`` (librdkafka) must behave the same for the
service: decoded batches with partition and offset, rejects with reasons and original bytes,
offsets committed and resumed, rebalance hooks, lag, seek, errors.  Every test here runs once per
client (the two used to have a test file each, most of them copies, and kafka-python's lacked the
tombstone, unknown-option and seek cases); the sink and topic admin are in ``test_kafka_io.py``.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.stream.conftest import drain
from viraltrend.errors import ConfigError, StreamError
from viraltrend.events import EVENT_TYPE_CODE
from viraltrend.stream.kafka_confluent import ConfluentSource, librdkafka_options
from viraltrend.stream.kafka_io import KafkaSource, create_topics, topic_exists

pytestmark = pytest.mark.integration

TS = 1_764_253_200_123
CLIENTS = {"kafka-python": KafkaSource, "confluent": ConfluentSource}


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


def produce(bootstrap: str, topic: str, values: list[bytes | None], keys: list[bytes] | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i, value in enumerate(values):
        producer.send(topic, key=None if keys is None else keys[i], value=value)
    producer.flush(timeout=30)
    producer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    """The group's committed offset, read by a third consumer that does not join the group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close()


@pytest.fixture(params=list(CLIENTS), scope="module")
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def group_source(broker, client) -> Iterator[Callable[..., Any]]:
    """``group_source(topic, group_id=None, **options)`` with this test's client; closed at teardown."""
    made: list[Any] = []

    def make(topic: str, *, group_id: str | None = None, **options: object) -> Any:
        group = group_id if group_id is not None else f"g-{uuid.uuid4().hex[:8]}"
        source = CLIENTS[client](broker.bootstrap_servers, topic, group_id=group, **options)  # type: ignore[arg-type]
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


# ------------------------------------------------------------------------------- decoding corpus


@pytest.fixture(scope="module")
def corpus(broker, client):
    """One partition: good events interleaved with every kind of bad message and a tombstone."""
    name = f"corpus-{client}-{time.monotonic_ns()}"
    create_topics(broker.bootstrap_servers, {name: 1})
    values: list[bytes | None] = []
    expected_good, expected_bad = [], {}
    for i, (bad, reason) in enumerate(BAD):
        expected_good.append(len(values))
        values.append(event(i, product=f"p-{i}"))
        expected_bad[len(values)] = reason
        values.append(bad)
    expected_bad[len(values)] = "bad_json"
    values.append(None)  # a tombstone
    expected_good.append(len(values))
    values.append(event(99, product="p-last", price=12.5, quantity=2))
    produce(broker.bootstrap_servers, name, values, keys=[b"k"] * len(values))  # a tombstone needs a key
    source = CLIENTS[client](broker.bootstrap_servers, name, group_id=f"{name}-g")
    try:
        batch, rejects = drain(source, len(values))  # type: ignore[arg-type]
        snapshot = source.snapshot()
    finally:
        source.close()
    return {"values": values, "good": expected_good, "bad": expected_bad, "batch": batch,
            "rejects": rejects, "snapshot": snapshot, "topic": name}  # fmt: skip


def test_good_events_come_back_in_order_with_partition_and_offset(corpus):
    batch = corpus["batch"]
    assert batch.offset.tolist() == corpus["good"]
    assert batch.partition.tolist() == [0] * len(corpus["good"])
    assert batch.product_id == [f"p-{i}" for i in range(len(BAD))] + ["p-last"]
    assert batch.ts_ms[-1] == TS + 99
    assert batch.price[-1] == 12.5 and batch.quantity[-1] == 2
    assert set(batch.type_code.tolist()) == {EVENT_TYPE_CODE["view"]}


def test_bad_messages_become_rejects_with_reasons_offsets_and_original_bytes(corpus):
    rejects = corpus["rejects"]
    assert {r.offset: r.reason for r in rejects} == corpus["bad"]
    for r in rejects:
        assert r.raw == (corpus["values"][r.offset] or b"")
        assert (r.source, r.partition) == (corpus["topic"], 0)
        assert r.detail and "\n" not in r.detail
    tombstone = next(r for r in rejects if r.offset == len(corpus["values"]) - 2)
    assert "empty" in tombstone.detail


def test_snapshot_is_the_offset_after_the_last_record_returned(corpus):
    assert corpus["snapshot"] == {0: len(corpus["values"])}


# ------------------------------------------------------------------------------- groups, offsets


def test_a_new_consumer_in_the_group_resumes_after_the_committed_offsets(broker, topic_factory, group_source):
    topic = topic_factory(partitions=1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(10)])
    first = group_source(topic, group_id=f"{topic}-g")
    drain(first, 10)
    first.commit({0: 6})  # as if only the first 6 were checkpointed
    first.close()
    assert committed(broker.bootstrap_servers, f"{topic}-g", topic) == 6
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(10, 12)])
    second = group_source(topic, group_id=f"{topic}-g")
    batch, _ = drain(second, 6)
    assert batch.offset.tolist() == [6, 7, 8, 9, 10, 11]
    assert second.snapshot() == {0: 12}


def test_keyed_messages_on_two_partitions_keep_per_key_order(broker, topic_factory, group_source):
    topic = topic_factory(partitions=2)
    products = [f"p-{i % 5}" for i in range(60)]
    produce(broker.bootstrap_servers, topic, [event(i, p) for i, p in enumerate(products)],
            keys=[p.encode() for p in products])  # fmt: skip
    source = group_source(topic)
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


def test_lag_counts_the_records_beyond_those_returned(broker, topic_factory, group_source):
    topic = topic_factory(partitions=1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(50)])
    source = group_source(topic)
    drain(source, 10, max_events=10)
    assert source.snapshot() == {0: 10}
    assert source.lag() == {0: 40}


def test_rebalance_hooks_restore_on_assign_and_checkpoint_and_commit_on_revoke(
    broker, topic_factory, group_source
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

    source = group_source(topic, group_id=f"{topic}-g", on_assign=on_assign, on_revoke=on_revoke)
    batch, _ = drain(source, 5)
    assert batch.offset.tolist() == [3, 4, 5, 6, 7]
    source.close()  # leaving the group revokes
    assert calls == [("assign", {0}), ("revoke", {0}, {0: 8})]
    assert committed(broker.bootstrap_servers, f"{topic}-g", topic) == 8


def test_an_error_in_a_rebalance_hook_is_raised_by_next_batch(topic_factory, group_source):
    def on_assign(parts):
        msg = f"cannot restore {sorted(parts)}"
        raise RuntimeError(msg)

    source = group_source(topic_factory(partitions=1), on_assign=on_assign)
    deadline = time.monotonic() + 20
    with pytest.raises(RuntimeError, match=r"cannot restore \[0\]"):
        while time.monotonic() < deadline:
            source.next_batch(100)


def test_next_batch_returns_empty_batches_while_the_group_joins(topic_factory, group_source):
    source = group_source(topic_factory(partitions=1), poll_timeout_ms=100)
    for _ in range(10):
        batch, rejects = source.next_batch(100)
        assert len(batch) == 0 and rejects == []
    assert source.exhausted is False


def test_seek_outside_a_hook_rereads_and_seeking_an_unassigned_partition_is_a_stream_error(
    broker, topic_factory, group_source
):
    topic = topic_factory(partitions=1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(6)])
    source = group_source(topic)
    drain(source, 6)
    source.seek({0: 2})
    assert source.snapshot() == {0: 2}
    batch, _ = drain(source, 4)
    assert batch.offset.tolist() == [2, 3, 4, 5]
    with pytest.raises(StreamError, match=r"cannot seek .*\[7\] to 0.*assigned: \[0\]"):
        source.seek({7: 0})


# ------------------------------------------------------------------------------------- errors


def test_an_unreachable_bootstrap_is_a_stream_error_within_a_bounded_time(client):
    address = f"127.0.0.1:{closed_port()}"
    with pytest.raises(StreamError, match=rf"cannot reach Kafka at {address}.*is the broker running"):
        CLIENTS[client](address, "events", group_id="g", connect_timeout_s=1.5)


def test_a_missing_topic_is_a_stream_error_naming_it_and_the_create_flag(broker, client):
    name = f"no-such-events-{time.monotonic_ns()}"
    with pytest.raises(StreamError, match=rf"topic '{name}' does not exist.*--create-topics"):
        CLIENTS[client](broker.bootstrap_servers, name, group_id="g")
    assert not topic_exists(broker.bootstrap_servers, name)  # asking did not create it


def test_reserved_and_unknown_consumer_options_are_refused(client):
    with pytest.raises(ConfigError, match="enable_auto_commit"):
        CLIENTS[client]("127.0.0.1:1", "events", group_id="g", enable_auto_commit=True)
    with pytest.raises(ConfigError, match="invalid Kafka client option.*no.such.option"):
        CLIENTS[client]("127.0.0.1:1", "events", group_id="g", no_such_option=1)


def test_kafka_python_client_options_are_translated_to_librdkafka_names():
    options = {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": "pw", "ssl_cafile": "/etc/ca.pem",
        "ssl_check_hostname": False, "max_poll_records": 500, "fetch.min.bytes": 10,
    }  # fmt: skip
    assert librdkafka_options(options) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc", "sasl.password": "pw", "ssl.ca.location": "/etc/ca.pem",
        "ssl.endpoint.identification.algorithm": "none", "fetch.min.bytes": 10,
    }  # fmt: skip
