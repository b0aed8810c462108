"""Board candidates shared between workers: the record format, and the follower on a real topic."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from viraltrend.board import Member
from viraltrend.messages import Decision, decision
from viraltrend.stream.candidates import (
    CandidatesFollower,
    PartitionCandidates,
    decode_candidates,
    encode_candidates,
)


def record(partition: int, offset: int, *scores: float, messages: dict | None = None) -> PartitionCandidates:
    members = [
        Member(slot=-1, product_id=f"p{partition}-{i}", seller_id="s", category=None, score=s, since_ms=7)
        for i, s in enumerate(scores)
    ]
    return PartitionCandidates(partition, offset, 1_764_000_000_000 + offset, members, messages or {})


def promote(pid: str, *reasons: str) -> Decision:
    return decision(
        "promote",
        product_id=pid,
        seller_id="s",
        category=None,
        rank=1,
        score=0.5,
        event_ts=9,
        reasons=reasons,
        features={"lift": 1 / 3},
    )


def test_a_record_round_trips_exactly_floats_included():
    pc = record(3, 120, 0.1 + 0.2, 1 / 3, messages={"p3-0": promote("p3-0", "x")})
    back = decode_candidates(encode_candidates(pc))
    assert back == pc and isinstance(back.messages["p3-0"], Decision)
    assert back.members[0].score == 0.1 + 0.2


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[]", b'{"schema": 2}', b'{"schema": 1, "partition": 0}', b"\xff\xfe"],
)
def test_a_malformed_record_is_a_value_error_that_says_so(value):
    with pytest.raises(ValueError, match="candidates"):
        decode_candidates(value)


@pytest.mark.integration
def test_the_follower_keeps_each_partitions_newest_view_and_skips_bad_records(broker, topic_factory):
    topic = topic_factory(compacted=True)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    sends = [
        record(0, 100, 0.5),
        record(1, 50, 0.7, messages={"p1-0": promote("p1-0")}),
        record(0, 200, 0.6),
        record(0, 150, 0.9),  # older than the view held for partition 0 (a replay after a crash)
    ]
    for pc in sends:
        producer.send(topic, key=str(pc.partition).encode(), value=encode_candidates(pc))
    producer.send(topic, key=b"2", value=b"garbage")
    producer.flush()
    follower = CandidatesFollower(broker.bootstrap_servers, topic, {})
    try:
        follower.catch_up(timeout_s=20)
        assert sorted(follower.latest) == [0, 1]
        assert follower.latest[0].offset == 200 and follower.latest[0].members[0].score == 0.6
        assert follower.records_read == 5
        assert follower.drain_messages(exclude={0}) == {"p1-0": promote("p1-0")}
        assert follower.drain_messages() == {}, "drained once"
        producer.send(topic, key=b"1", value=encode_candidates(record(1, 60, 0.8)))
        producer.flush()
        changed = 0
        for _ in range(20):
            changed += follower.poll(timeout_ms=250)
            if changed:
                break
        assert changed == 1 and follower.latest[1].offset == 60
    finally:
        follower.close()
        producer.close()
