"""The hostile corpus (tests/stream/hostile.py) through file replay and through the real broker.

Every hostile record must land in the rejects file / dead-letter topic with its reason and its
original bytes, and every good event between them must be applied.
"""

from __future__ import annotations

import json
import signal

import pytest
from kafka import KafkaProducer

from tests.stream.contract import check_dead_letter
from tests.stream.hostile import HOSTILE, Kind, hostile_stream
from tests.stream.services import finish, read_topic, samples, scrape, start_service, topics, wait_for
from viraltrend.config import load_config
from viraltrend.events import REJECT_REASONS
from viraltrend.replay import replay
from viraltrend.stream.broker import free_port
from viraltrend.stream.decode import decode_records

ENGINE_REASONS = {"duplicate", "late", "future_ts"}


def test_the_corpus_has_at_least_30_kinds_and_only_known_reasons():
    assert len(HOSTILE) >= 30
    assert len({k.name for k in HOSTILE}) == len(HOSTILE)
    assert {k.reason for k in HOSTILE} <= set(REJECT_REASONS)


@pytest.mark.parametrize("kind", [k for k in HOSTILE if k.reason not in ENGINE_REASONS], ids=lambda k: k.name)
def test_each_kind_alone_is_rejected_by_the_decoder_with_its_reason(kind: Kind):
    batch, rejects = decode_records([kind.raw], offsets=None)
    assert len(batch) == 0
    assert [(r.reason, r.raw) for r in rejects] == [(kind.reason, kind.raw)]
    assert rejects[0].detail and "\n" not in rejects[0].detail


@pytest.mark.parametrize("batch_size", [100_000, 7])
def test_replay_rejects_every_hostile_record_with_its_reason_and_applies_every_good_one(tmp_path, batch_size):
    records, hostile_at, good_at = hostile_stream()
    path = tmp_path / "hostile.ndjson"
    path.write_bytes(b"\n".join(records) + b"\n")
    summary = replay(
        [path],
        load_config(None, environ={}),
        out=tmp_path / "decisions.ndjson",
        rejects_out=tmp_path / "rejects.ndjson",
        batch_size=batch_size,
    )
    lines = (tmp_path / "rejects.ndjson").read_bytes().splitlines()
    rejects = [json.loads(x) for x in lines]
    assert {r["offset"] - 1: r["reason"] for r in rejects} == {p: k.reason for p, k in hostile_at.items()}
    for line, r in zip(lines, rejects, strict=True):  # the DLQ's record, with the original bytes
        check_dead_letter(line, original=records[r["offset"] - 1])
    assert summary.events_applied == len(good_at)
    assert summary.events_read == len(records)


@pytest.mark.integration
def test_every_hostile_record_reaches_the_dlq_with_its_reason_and_the_good_ones_are_applied(broker, tmp_path):
    records, hostile_at, good_at = hostile_stream()
    names = topics(broker.bootstrap_servers, "hostile")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    for value in records:  # no keys: some records are not even JSON
        producer.send(names["input"], value=value)
    producer.flush(timeout=30)
    producer.close()
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    try:
        wait_for(
            lambda: len(read_topic(broker.bootstrap_servers, names["dlq"], timeout_s=10)) >= len(hostile_at),
            timeout_s=180.0,  # a first start may compile kernels (cold numba cache, loaded machine)
            what="every dead letter",
        )

        def applied_all() -> bool:
            return sum(samples(scrape(port), "viraltrend_events_applied_total").values()) >= len(good_at)

        wait_for(applied_all, what="every good event applied")
        text = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    values = [v for _, v in read_topic(broker.bootstrap_servers, names["dlq"])]
    dead = [json.loads(v) for v in values]
    assert {d["offset"]: d["reason"] for d in dead} == {p: k.reason for p, k in hostile_at.items()}
    for value, d in zip(values, dead, strict=True):  # whole, or its start with its size and digest
        check_dead_letter(value, original=records[d["offset"]])
        assert (d["source_topic"], d["partition"]) == (names["input"], 0)
    consumed = sum(samples(text, "viraltrend_events_consumed_total").values())
    applied = sum(samples(text, "viraltrend_events_applied_total").values())
    rejected = samples(text, "viraltrend_events_rejected_total")
    assert consumed == len(records) == applied + sum(rejected.values())
    assert applied == len(good_at)
