"""The embedded Tansu broker: start, serve kafka-python, stop, restart on the same port, fail clearly."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from viraltrend.errors import StreamError
from viraltrend.stream.broker import EmbeddedBroker
from viraltrend.stream.kafka_io import create_topics, topic_exists


@pytest.mark.integration
def test_broker_serves_a_produced_message_to_a_consumer(broker, topic_factory):
    topic = topic_factory(partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send(topic, key=b"p-1", value=b'{"hello": 1}').get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records = []
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        records = consumer.poll(timeout_ms=200).get(tp, [])
    consumer.close()
    assert [(r.key, r.value, r.offset) for r in records] == [(b"p-1", b'{"hello": 1}', 0)]


@pytest.mark.integration
def test_broker_reports_its_address_and_writes_its_log_to_a_file(broker):
    assert broker.running
    assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert "listening on" in broker.log_path.read_text()


@pytest.mark.integration
def test_restart_on_the_same_port_comes_back_empty(tmp_path):
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as embedded:
        create_topics(embedded.bootstrap_servers, {"kept": 1})
        port = embedded.port
        embedded.stop()
        assert not embedded.running
        embedded.start()
        assert embedded.port == port
        assert not topic_exists(embedded.bootstrap_servers, "kept")  # memory storage: data is gone


@pytest.mark.integration
def test_stop_is_idempotent_and_start_after_stop_works(tmp_path):
    embedded = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    embedded.stop()
    embedded.start()
    embedded.stop()
    embedded.stop()
    assert not embedded.running
    embedded.start()
    try:
        assert topic_exists(embedded.bootstrap_servers, "nothing-here") is False
    finally:
        embedded.stop()


@pytest.mark.integration
def test_a_busy_port_is_a_clear_error(broker, tmp_path):
    second = EmbeddedBroker(port=broker.port, log_path=tmp_path / "tansu.log")
    with pytest.raises(StreamError, match=rf"127\.0\.0\.1:{broker.port}.*already in use"):
        second.start()
    assert broker.running


def test_a_binary_that_exits_is_an_error_naming_it_and_quoting_its_log(tmp_path):
    script = tmp_path / "fake-tansu"
    script.write_text("#!/bin/sh\necho 'boom: cannot start' >&2\nexit 3\n")
    script.chmod(0o755)
    embedded = EmbeddedBroker(binary=str(script), log_path=tmp_path / "tansu.log", start_timeout_s=5)
    with pytest.raises(StreamError, match=r"(?s)fake-tansu exited with code 3.*boom: cannot start"):
        embedded.start()
    assert not embedded.running


def test_a_binary_that_never_answers_times_out_with_its_log(tmp_path):
    script = tmp_path / "silent-tansu"
    script.write_text("#!/bin/sh\necho 'warming up'\nexec sleep 30\n")
    script.chmod(0o755)
    embedded = EmbeddedBroker(binary=str(script), log_path=tmp_path / "tansu.log", start_timeout_s=1)
    with pytest.raises(StreamError, match=r"(?s)did not answer.*within 1 s.*warming up"):
        embedded.start()
    embedded.stop()
    assert not embedded.running
