"""Every record is accounted for: consumed = applied + rejected (duplicates included), all in the DLQ.

A real ``viraltrend run`` against the embedded broker, its metrics scraped over HTTP, its dead
letters read back from the topic and compared byte for byte with what was produced.
"""

from __future__ import annotations

import base64
import json
import signal

import pytest

from tests.stream.services import (
    finish,
    produce,
    read_topic,
    samples,
    scrape,
    start_service,
    topics,
    wait_for,
)
from viraltrend.config import load_config
from viraltrend.events import REJECT_REASONS
from viraltrend.replay import replay
from viraltrend.stream.broker import free_port

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


def good(i: int) -> bytes:
    obj = {
        "event_id": f"e-{i}",
        "ts": T0 + i * 100,
        "type": "view",
        "product_id": f"p{i % 13}",
        "user_id": f"u{i}",
    }
    return json.dumps(obj).encode()


def mixed_stream() -> tuple[list[bytes], dict[int, str]]:
    """3000 good events with duplicates, late, far-future and malformed records among them.

    Returns the records and, per position (= offset on a one-partition topic), the expected reason.
    """
    records: list[bytes] = []
    expected: dict[int, str] = {}

    def bad(raw: bytes, reason: str) -> None:
        expected[len(records)] = reason
        records.append(raw)

    for i in range(3000):
        records.append(good(i))
        if i % 150 == 149:  # a repeat of an event sent a little earlier: a duplicate
            bad(good(i - 3), "duplicate")
        if i % 400 == 399:  # an hour behind the watermark: late
            late = {"event_id": f"late-{i}", "ts": T0 + i * 100 - 3_600_000, "type": "like",
                    "product_id": "p1", "user_id": "u-late"}  # fmt: skip
            bad(json.dumps(late).encode(), "late")
        if i == 1500:  # two events of 2099
            for k in range(2):
                far = {"event_id": f"far-{k}", "ts": 4_070_908_800_000 + k, "type": "share",
                       "product_id": "p2", "user_id": "u-far"}  # fmt: skip
                bad(json.dumps(far).encode(), "future_ts")
        if i % 500 == 250:
            bad(b"this is not json", "bad_json")
            bad(
                json.dumps({"ts": T0, "type": "view", "product_id": "__board__", "user_id": "u"}).encode(),
                "reserved_id",
            )
    return records, expected


def test_replay_sends_duplicates_late_and_future_events_to_the_rejects_file_as_they_came(tmp_path):
    records, expected = mixed_stream()
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(records) + b"\n")
    summary = replay(
        [path], load_config(None, environ={}), out=tmp_path / "d.ndjson", rejects_out=tmp_path / "r.ndjson"
    )
    rejects = [json.loads(x) for x in (tmp_path / "r.ndjson").read_text().splitlines()]
    got = {r["offset"] - 1: r["reason"] for r in rejects}  # file offsets are 1-based line numbers
    assert got == expected
    assert all(r["original"].encode() == records[r["offset"] - 1] for r in rejects)
    assert all(r["source_topic"] == str(path) for r in rejects)
    assert summary.events_applied == 3000
    assert summary.events_read == len(records)


def test_consumed_equals_applied_plus_rejected_and_every_reject_is_in_the_dlq(broker, tmp_path):
    records, expected = mixed_stream()
    names = topics(broker.bootstrap_servers, "accounting")
    produce(broker.bootstrap_servers, names["input"], records)
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    try:

        def consumed_all() -> bool:
            try:
                return sum(samples(scrape(port), "viraltrend_events_consumed_total").values()) >= len(records)
            except OSError:
                return False

        wait_for(consumed_all, what="every record consumed")
        wait_for(
            lambda: len(read_topic(broker.bootstrap_servers, names["dlq"], timeout_s=10)) >= len(expected),
            timeout_s=180.0,  # each read is a fresh consumer of up to 10 s; a loaded 2-core machine took 72 s
            what="every dead letter",
            proc=proc,
        )
        text = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    consumed = sum(samples(text, "viraltrend_events_consumed_total").values())
    applied = sum(samples(text, "viraltrend_events_applied_total").values())
    rejected = samples(text, "viraltrend_events_rejected_total")
    assert set(rejected) == set(REJECT_REASONS)
    assert consumed == len(records)
    assert consumed == applied + sum(rejected.values())
    assert applied == 3000
    want_counts: dict[str, float] = {reason: 0.0 for reason in REJECT_REASONS}
    for reason in expected.values():
        want_counts[reason] += 1
    assert rejected == want_counts
    dead = [json.loads(v) for _, v in read_topic(broker.bootstrap_servers, names["dlq"])]
    assert {d["offset"]: d["reason"] for d in dead} == expected
    for d in dead:
        assert base64.b64decode(d["original_b64"]) == records[d["offset"]]  # the bytes as produced
        assert (d["source_topic"], d["partition"]) == (names["input"], 0)
