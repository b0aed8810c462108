"""Feeder and produce_file against the embedded broker, read back with a plain KafkaConsumer (no mocks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from viraltrend.errors import InputError, StreamError
from viraltrend.stream.feeder import Feeder, produce_file

TS = 1_764_253_200_000
GARBAGE = [
    b"GET /favicon.ico HTTP/1.1",  # not JSON
    b'{"event_id":"e-x","ts":1764253200000,"type":"view"',  # truncated JSON
    b'{"event_id":"e-y","ts":1764253200000,"type":"view","user_id":"u-1"}',  # no product_id
    b'[{"product_id":"p-1"}]',  # JSON, not an object
]


def line(i: int, product: str | None = None, ts: int | None = None) -> bytes:
    obj = {"event_id": f"e-{i}", "ts": TS + i * 1000 if ts is None else ts, "type": "view",
           "product_id": product or f"p-{i % 7}", "user_id": f"u-{i}"}  # fmt: skip
    return json.dumps(obj, separators=(",", ":")).encode()


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(x + b"\n" for x in lines))
    return path


def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 20.0) -> list:
    """Read ``count`` records of ``topic`` from the beginning (all partitions), in partition/offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        extra = consumer.poll(timeout_ms=300)  # nothing beyond what was expected
        out.extend(r for records in extra.values() for r in records)
    finally:
        consumer.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


@pytest.mark.integration
def test_feeder_sends_every_line_no_faster_than_the_target_rate(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=3)
    n, rate = 60, 100.0
    path = write(tmp_path / "events.ndjson", [line(i) for i in range(n)])
    feeder = Feeder(broker.bootstrap_servers, topic, path, rate_per_s=rate)
    started = time.monotonic()
    feeder.start()
    assert feeder.join(timeout=20)
    took = time.monotonic() - started
    assert feeder.done and feeder.error is None and feeder.sent == n
    assert len(consume(broker.bootstrap_servers, topic, n)) == n
    assert took >= 0.9 * (n - 1) / rate


@pytest.mark.integration
def test_feeder_keys_by_product_id_and_sends_garbage_with_no_key(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=1)
    lines = [line(0, "p-alpha"), GARBAGE[0], line(1, "p-beta"), GARBAGE[1], GARBAGE[2], GARBAGE[3],
             b"", b"   ", line(2, "p-ünïcode")]  # fmt: skip
    path = write(tmp_path / "events.ndjson", lines)
    with Feeder(broker.bootstrap_servers, topic, path, rate_per_s=10_000) as feeder:
        feeder.join(timeout=20)
    got = consume(broker.bootstrap_servers, topic, 7)
    expected = [x for x in lines if x.strip()]  # blank lines are not records
    assert [r.value for r in got] == expected
    assert [r.key for r in got] == [b"p-alpha", None, b"p-beta", None, None, None, "p-ünïcode".encode()]
    assert feeder.sent == 7


@pytest.mark.integration
def test_stop_ends_the_feeder_early_and_delivers_what_it_sent(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    n = 5_000
    path = write(tmp_path / "events.ndjson", [line(i) for i in range(n)])
    feeder = Feeder(broker.bootstrap_servers, topic, path, rate_per_s=200).start()
    deadline = time.monotonic() + 20  # it has sent some (a fixed 0.5 s could pass before its first send)
    while feeder.sent == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    feeder.stop()
    assert feeder.join(timeout=20)
    assert 0 < feeder.sent < n
    assert len(consume(broker.bootstrap_servers, topic, feeder.sent)) == feeder.sent


@pytest.mark.integration
def test_start_line_skips_the_first_lines(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=1)
    path = write(tmp_path / "events.ndjson", [line(i) for i in range(10)])
    with Feeder(broker.bootstrap_servers, topic, path, rate_per_s=10_000, start_line=7) as feeder:
        feeder.join(timeout=20)
    assert [r.value for r in consume(broker.bootstrap_servers, topic, 3)] == [line(7), line(8), line(9)]
    assert feeder.line == 10


@pytest.mark.integration
def test_loop_repeats_the_file_later_in_event_time_with_new_event_ids(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=1)
    path = write(tmp_path / "events.ndjson", [line(0), GARBAGE[0], line(1), line(2, ts=TS - 5000)])
    feeder = Feeder(broker.bootstrap_servers, topic, path, rate_per_s=1_000, loop=True).start()
    deadline = time.monotonic() + 20
    while feeder.sent < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    feeder.stop()
    feeder.join(timeout=20)
    got = consume(broker.bootstrap_servers, topic, feeder.sent)
    assert feeder.pass_index >= 2 and len(got) >= 10
    span_ms = 1000 - (-5000) + 1000  # max ts - min ts, plus the 1 s gap
    second = [json.loads(r.value) for r in got[4:8] if r.key is not None]
    assert [e["ts"] for e in second] == [TS + span_ms, TS + 1000 + span_ms, TS - 5000 + span_ms]
    assert [e["event_id"] for e in second] == ["e-0~1", "e-1~1", "e-2~1"]
    assert got[5].value == GARBAGE[0]  # garbage is repeated unchanged


@pytest.mark.integration
def test_produce_file_sends_all_lines_or_up_to_the_limit(broker, topic_factory, tmp_path):
    path = write(tmp_path / "events.ndjson", [line(i) for i in range(500)])
    full, part = topic_factory(partitions=4), topic_factory(partitions=4)
    assert produce_file(broker.bootstrap_servers, full, path) == 500
    assert produce_file(broker.bootstrap_servers, part, path, limit=123) == 123
    assert len(consume(broker.bootstrap_servers, full, 500)) == 500
    assert len(consume(broker.bootstrap_servers, part, 123)) == 123


@pytest.mark.integration
def test_feeding_a_missing_topic_is_a_stream_error_naming_it(broker, tmp_path):
    path = write(tmp_path / "events.ndjson", [line(0)])
    feeder = Feeder(broker.bootstrap_servers, "no-such-topic-feeder", path, rate_per_s=10)
    with pytest.raises(StreamError, match="no-such-topic-feeder"):
        feeder.start()


@pytest.mark.parametrize("rate", [0, -1.0, float("inf"), float("nan")])
def test_rate_must_be_positive_and_finite(tmp_path, rate):
    path = write(tmp_path / "events.ndjson", [line(0)])
    with pytest.raises(ValueError, match="rate_per_s"):
        Feeder("127.0.0.1:1", "t", path, rate_per_s=rate)


def test_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nope.ndjson"):
        Feeder("127.0.0.1:1", "t", tmp_path / "nope.ndjson", rate_per_s=10)
