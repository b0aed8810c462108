"""Board candidates shared by the workers of one consumer group, so that the group publishes one board.

State is kept per input partition, and partitions are spread over workers, so no worker sees
every partition's board.  Each worker therefore publishes, after every batch that changed a
partition's board, that partition's members (its *candidates* for the global board) to a
compacted topic (``kafka.candidates_topic``, default ``<group_id>.candidates``) keyed by the
partition number: the value carries the members, the partition's event-time watermark and the
input offset the state reflects.  Every worker follows that topic (:class:`CandidatesFollower`);
the worker that currently holds input partition 0 is the *board publisher*: it merges its own
partitions' boards with everyone else's latest candidates (:class:`viraltrend.merge.BoardMerger`,
a pure function of the members) and publishes the promote / demote / update messages and the
``__board__`` snapshots.  The other workers publish only ``block`` decisions.

A record older than the one already held for its partition (a lower input offset) is ignored:
after a worker dies, the partition's new owner restores an older checkpoint and replays, and the
board keeps the dead worker's newer view until the replay passes it (it reproduces the same
state, since the engine is deterministic).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec

from viraltrend.board import Member
from viraltrend.errors import StreamError
from viraltrend.messages import ENCODER, SCHEMA, CandidateMember, CandidatesRecord, Decision
from viraltrend.stream.broker import _connect, kafka_errors

__all__ = ["CandidatesFollower", "PartitionCandidates", "decode_candidates", "encode_candidates"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PartitionCandidates:
    """One input partition's board as published by the worker holding it."""

    partition: int
    offset: int  # next input offset: the state reflects every record before it
    watermark_ms: int | None
    members: list[Member]
    messages: dict[str, Decision] = field(default_factory=dict)  # last decision per member (reasons)


def encode_candidates(pc: PartitionCandidates) -> bytes:
    """The candidates record's value: a :class:`~viraltrend.messages.CandidatesRecord` as JSON."""
    record = CandidatesRecord(
        partition=pc.partition,
        offset=pc.offset,
        watermark_ms=pc.watermark_ms,
        members=[
            CandidateMember(
                product_id=m.product_id,
                seller_id=m.seller_id,
                category=m.category,
                score=m.score,
                since_ms=m.since_ms,
            )
            for m in pc.members
        ],
        messages=pc.messages,
    )
    return ENCODER.encode(record)


_DECODER = msgspec.json.Decoder(CandidatesRecord)


def decode_candidates(value: bytes) -> PartitionCandidates:
    """Parse a candidates record; :class:`ValueError` says what is wrong with a malformed one."""
    try:
        record = _DECODER.decode(value)
    except msgspec.DecodeError as exc:  # ValidationError included
        msg = f"malformed candidates record: {exc}"
        raise ValueError(msg) from exc
    if record.schema != SCHEMA:
        msg = f"candidates record has schema {record.schema!r}, this worker reads schema {SCHEMA}"
        raise ValueError(msg)
    members = [
        Member(
            slot=-1,
            product_id=m.product_id,
            seller_id=m.seller_id,
            category=m.category,
            score=m.score,
            since_ms=m.since_ms,
        )
        for m in record.members
    ]
    return PartitionCandidates(
        partition=record.partition,
        offset=record.offset,
        watermark_ms=record.watermark_ms,
        members=members,
        messages=record.messages,
    )


class CandidatesFollower:
    """Follows the candidates topic from its beginning; :attr:`latest` holds each partition's newest.

    Parameters
    ----------
    bootstrap_servers, topic : str
        Where the candidates topic is.
    options : dict
        kafka-python client options (security).
    """

    def __init__(self, bootstrap_servers: str, topic: str, options: dict[str, Any]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.latest: dict[int, PartitionCandidates] = {}
        self.records_read = 0
        self._fresh: dict[int, dict[str, Decision]] = {}  # partition -> decisions not yet drained
        config = {"group_id": None, "enable_auto_commit": False, "bootstrap_timeout_ms": 10_000, **options}
        self._consumer = _connect(KafkaConsumer, bootstrap_servers, config)
        try:
            with kafka_errors(f"reading the candidates topic {topic!r} on {bootstrap_servers}"):
                parts = self._consumer.partitions_for_topic(topic) or set()
                if not parts:
                    msg = f"candidates topic {topic!r} does not exist on {bootstrap_servers}"
                    raise StreamError(msg)
                self._tps = [TopicPartition(topic, p) for p in sorted(parts)]
                self._consumer.assign(self._tps)
                self._consumer.seek_to_beginning(*self._tps)
        except StreamError:
            self.close()
            raise

    def poll(self, timeout_ms: int = 0) -> int:
        """Read what arrived; returns how many records changed :attr:`latest`."""
        changed = 0
        with kafka_errors(f"reading the candidates topic {self.topic!r}"):
            polled = self._consumer.poll(timeout_ms=timeout_ms)
        for records in polled.values():
            for r in records:
                self.records_read += 1
                if r.value is None:
                    continue
                try:
                    pc = decode_candidates(r.value)
                except ValueError as exc:
                    log.warning("candidates %s offset %d skipped: %s", self.topic, r.offset, exc)
                    continue
                held = self.latest.get(pc.partition)
                if held is not None and pc.offset < held.offset:
                    continue  # an older view (a replay after a crash): keep the newer one
                self.latest[pc.partition] = pc
                self._fresh.setdefault(pc.partition, {}).update(pc.messages)
                changed += 1
        return changed

    def drain_messages(self, exclude: Collection[int] = ()) -> dict[str, Decision]:
        """Decisions of other workers' partitions received since the last drain, by product id.

        Partitions in ``exclude`` (this worker's own, whose decisions it has first-hand) are dropped.
        """
        out: dict[str, Decision] = {}
        for p, msgs in self._fresh.items():
            if p not in exclude:
                out.update(msgs)
        self._fresh = {}
        return out

    def catch_up(self, timeout_s: float = 10.0) -> int:
        """Read up to the topic's current end (bounded by ``timeout_s``); returns records changed."""
        with kafka_errors(f"reading the end of the candidates topic {self.topic!r}"):
            ends = self._consumer.end_offsets(self._tps, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        changed = 0
        while time.monotonic() < deadline:
            changed += self.poll(timeout_ms=200)
            with kafka_errors(f"reading the candidates topic {self.topic!r}"):
                if all(self._consumer.position(tp, timeout_ms=1000) >= ends[tp] for tp in self._tps):
                    break
        return changed

    def close(self) -> None:
        """Close the consumer (errors of a gone broker are logged, not raised)."""
        try:
            self._consumer.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("closing the candidates follower: %s", exc)


def last_value(
    bootstrap_servers: str, topic: str, key: bytes, options: dict[str, Any], *, timeout_s: float = 30.0
) -> bytes | None:
    """The value of the latest record keyed ``key`` in ``topic``, None if it has none.

    Reads the key's partition (Kafka's default partitioner: murmur2 of the key) back from its
    end, in windows that grow four times until the key is found or the log's start is reached:
    the publisher's last board snapshot lies near the end of the output topic.  StreamError if
    the broker fails.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.partitioner.default import murmur2

    config = {"group_id": None, "enable_auto_commit": False, "bootstrap_timeout_ms": 10_000, **options}
    consumer = _connect(KafkaConsumer, bootstrap_servers, config)
    try:
        with kafka_errors(f"reading the last {key!r} record of topic {topic!r}"):
            parts = sorted(consumer.partitions_for_topic(topic) or [])
            if not parts:
                return None
            tp = TopicPartition(topic, parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)])
            consumer.assign([tp])
            begin = int(consumer.beginning_offsets([tp])[tp] or 0)
            end = int(consumer.end_offsets([tp])[tp] or 0)
            window = 256
            deadline = time.monotonic() + timeout_s
            while True:
                start = max(begin, end - window)
                consumer.seek(tp, start)
                found: bytes | None = None
                while True:
                    records = consumer.poll(timeout_ms=200).get(tp, [])
                    for r in records:
                        if r.key == key:
                            found = r.value
                    high = consumer.highwater(tp)
                    if not records and high is not None and consumer.position(tp) >= max(end, high):
                        break
                    if time.monotonic() > deadline:
                        msg = f"could not read topic {topic!r} to its end within {timeout_s:g} s"
                        raise StreamError(msg)
                if found is not None or start <= begin:
                    return found
                window *= 4
    finally:
        consumer.close()
