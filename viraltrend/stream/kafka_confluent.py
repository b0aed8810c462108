"""A faster live source: :class:`ConfluentSource`, the kafka-python ``KafkaSource`` on librdkafka.

Same constructor, same behaviour, same errors as the kafka-python source, so the service can
pick either through a factory; confluent-kafka (librdkafka) ingests several times faster
(``DESIGN.md``, "The embedded broker").  Differences worth knowing:

- rebalance hooks run on the caller's thread inside ``consume`` (librdkafka serves its
  callbacks there), so :meth:`~ConfluentSource.commit` inside a hook is a plain synchronous
  commit and :meth:`~ConfluentSource.seek` inside ``on_assign`` sets the start offsets of
  the assignment itself;
- ``**client_options`` take librdkafka names (``"fetch.max.bytes"``) or the kafka-python
  names the service uses (``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username``,
  ``sasl_plain_password``, ``ssl_cafile``, ...), translated; other ``snake_case`` names are
  tried as their dotted librdkafka form, and unknown ones are a :class:`ConfigError`;
- ``commit_timeout_s`` becomes librdkafka's ``socket.timeout.ms`` (a synchronous commit has no
  timeout of its own).

Needs ``confluent-kafka`` (``pip install confluent-kafka``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from viraltrend.errors import ConfigError, StreamError
from viraltrend.events import EventBatch, Reject
from viraltrend.stream.broker import _CREATE_HINT
from viraltrend.stream.sources import KafkaGroupSource

__all__ = ["ConfluentSource", "librdkafka_options"]

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[set[int]], None]

#: Set by the source itself, in either spelling.
_RESERVED: Final = frozenset({
    "group_id", "enable_auto_commit", "key_deserializer", "value_deserializer",
    "group.id", "enable.auto.commit", "enable.auto.offset.store", "bootstrap.servers",
    "bootstrap_servers", "on_commit",
})  # fmt: skip
#: kafka-python option -> librdkafka property.
_RENAMED: Final = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "client_id": "client.id",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "request_timeout_ms": "socket.timeout.ms",
    "check_crcs": "check.crcs",
}
#: kafka-python options with no librdkafka counterpart: dropped (with a debug log).
_NO_COUNTERPART: Final = frozenset({
    "max_poll_records", "bootstrap_timeout_ms", "api_version", "api_version_auto_timeout_ms",
    "consumer_timeout_ms", "selector", "ssl_context",
})  # fmt: skip
_EOF: Final = KafkaError._PARTITION_EOF  # noqa: SLF001 - librdkafka's public error code
_VALUE: Final = Message.value
_OFFSET: Final = Message.offset
_PARTITION: Final = Message.partition
_ERROR: Final = Message.error
_CGMD_MAGIC: Final = b"CGMDv2:"  # librdkafka's serialized consumer-group metadata


def librdkafka_options(client_options: Mapping[str, Any]) -> dict[str, Any]:
    """Translate kafka-python style client options to librdkafka properties.

    Dotted names pass as they are; known kafka-python names are renamed (``ssl_cafile`` ->
    ``ssl.ca.location``, ``sasl_plain_username`` -> ``sasl.username``, ...);
    ``ssl_check_hostname=False`` turns hostname checks off; kafka-python-only options
    (``max_poll_records``, ...) are dropped; other ``snake_case`` names become dotted.

    Examples
    --------
    >>> librdkafka_options({"security_protocol": "SASL_SSL", "sasl_plain_username": "u",
    ...                     "fetch.min.bytes": 1, "max_poll_records": 5})
    {'security.protocol': 'SASL_SSL', 'sasl.username': 'u', 'fetch.min.bytes': 1}
    """
    out: dict[str, Any] = {}
    for name, value in client_options.items():
        if name in _NO_COUNTERPART:
            log.debug("client option %r has no librdkafka counterpart; ignored", name)
        elif name == "ssl_check_hostname":
            out["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif name in _RENAMED:
            out[_RENAMED[name]] = value
        else:
            out[name.replace("_", ".")] = value
    return out


class ConfluentSource(KafkaGroupSource):
    """Engagement events from a Kafka topic, read in a consumer group with confluent-kafka.

    A drop-in for :class:`viraltrend.stream.kafka_io.KafkaSource` (same parameters, same
    hooks, same errors); see that class for the parameters.  Rebalance hooks run inside
    :meth:`next_batch` (or :meth:`close`) on the caller's thread; an exception from a hook is
    re-raised by :meth:`next_batch`.  ``on_assign`` may call :meth:`seek`: the offsets become
    the start positions of the new assignment.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        group_id: str,
        poll_timeout_ms: int = 200,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        max_poll_interval_ms: int = 300_000,
        auto_offset_reset: str = "earliest",
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
        connect_timeout_s: float = 10.0,
        commit_timeout_s: float = 10.0,
        lag_interval_s: float = 5.0,
        **client_options: Any,
    ) -> None:
        self._init_group_source(
            bootstrap_servers,
            topic,
            group_id,
            poll_timeout_ms=poll_timeout_ms,
            commit_timeout_s=commit_timeout_s,
            lag_interval_s=lag_interval_s,
            on_assign=on_assign,
            on_revoke=on_revoke,
            on_lost=on_lost,
            client_options=client_options,
            reserved=_RESERVED,
        )
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
            "max.poll.interval.ms": max_poll_interval_ms,
            "allow.auto.create.topics": False,
            "enable.partition.eof": False,
            "socket.timeout.ms": max(int(commit_timeout_s * 1000), 100),
            # throughput: big fetches, a deep pre-fetch queue, short broker waits
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 200_000,
            "queued.max.messages.kbytes": 256 * 1024,
            "error_cb": self._on_error,
            "logger": log,
        }
        config.update(librdkafka_options(client_options))
        strategy = str(config.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy
        self._in_assign = False
        self._pending_seek: dict[int, int] = {}
        self._assigning: set[int] = set()
        self._fatal: KafkaError | None = None
        self._quiet_until: dict[int, float] = {}
        try:
            self._consumer = Consumer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            msg = f"invalid Kafka client option for ConfluentSource: {_text(exc)}"
            raise ConfigError(msg) from exc
        try:
            metadata = self._consumer.list_topics(topic, timeout=connect_timeout_s)
        except KafkaException as exc:
            self._close_quietly()
            msg = (
                f"cannot reach Kafka at {bootstrap_servers}: {_text(exc)}; "
                "is the broker running? check --bootstrap-servers"
            )
            raise StreamError(msg) from exc
        found = metadata.topics.get(topic)
        if found is None or not found.partitions:
            self._close_quietly()
            msg = f"topic {topic!r} does not exist on {bootstrap_servers}; {_CREATE_HINT}"
            raise StreamError(msg)
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # -- the Source interface

    def next_batch(self, max_events: int) -> tuple[EventBatch, list[Reject]]:
        """Consume once (at most ``poll_timeout_ms``) and decode what came, partition by partition.

        Returns the valid events (each partition's in offset order) and the rejects, each
        carrying its partition and offset.  An empty batch when nothing arrived.  A consumer
        error (other than reaching the end of a partition) is a :class:`StreamError`.
        """
        if max_events < 1:
            msg = f"max_events must be >= 1, got {max_events}"
            raise ValueError(msg)
        try:
            messages = self._consumer.consume(num_messages=max_events, timeout=self.poll_timeout_ms / 1000)
        except (KafkaException, RuntimeError) as exc:
            self._raise_hook_error(exc)
            msg = f"reading topic {self.topic!r} from {self.bootstrap_servers} failed: {_text(exc)}"
            raise StreamError(msg) from exc
        self._raise_hook_error(None)
        if self._fatal is not None:
            msg = f"reading topic {self.topic!r} from {self.bootstrap_servers} failed: {self._fatal.str()}"
            raise StreamError(msg)
        if not messages:
            return EventBatch.empty(), []
        if any(map(_ERROR, messages)):
            messages = self._without_errors(messages)
            if not messages:
                return EventBatch.empty(), []
        partitions = np.fromiter(map(_PARTITION, messages), dtype=np.int64, count=len(messages))
        offsets = np.fromiter(map(_OFFSET, messages), dtype=np.int64, count=len(messages))
        values: list[Any] = list(map(_VALUE, messages))  # bytes, or None for tombstones
        first = int(partitions[0])
        if (partitions == first).all():
            groups = [(first, values, offsets)]
        else:
            groups = []
            for p in dict.fromkeys(partitions.tolist()):  # in order of first arrival
                where = np.flatnonzero(partitions == p)
                groups.append((p, [values[i] for i in where.tolist()], offsets[where]))
        batches: list[EventBatch] = []
        rejects: list[Reject] = []
        for partition, raw, part_offsets in groups:
            batch, bad = self._decode(partition, raw, part_offsets)
            batches.append(batch)
            rejects.extend(bad)
        return EventBatch.concat(batches), rejects

    def close(self) -> None:
        """Leave the group (which may call ``on_revoke``) and close the consumer.  Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer of %r: %s", self.topic, _text(exc))
            error, self._hook_error = self._hook_error, None
            if error is not None:
                log.warning("a rebalance hook failed while closing: %s", error)

    # -- offsets and assignment

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit exactly ``offsets`` (partition -> next offset to read) for the group, synchronously.

        Raises :class:`StreamError` if the commit fails (e.g. the partitions moved to another
        worker in a rebalance: their new owner re-reads from the last committed offsets).
        Safe inside the rebalance hooks.
        """
        if not offsets:
            return
        request = [TopicPartition(self.topic, p, o) for p, o in self._checked(offsets).items()]
        what = f"offsets {dict(offsets)} of topic {self.topic!r} for group {self.group_id!r}"
        try:
            result = self._consumer.commit(offsets=request, asynchronous=False)
        except (KafkaException, RuntimeError) as exc:
            msg = f"committing {what} failed: {_text(exc)}"
            raise StreamError(msg) from exc
        failed = [f"[{tp.partition}] {tp.error.str()}" for tp in result or [] if tp.error is not None]
        if failed:
            msg = f"committing {what} failed: {'; '.join(failed)}"
            raise StreamError(msg)

    def generation(self) -> int | None:
        """The consumer-group generation of this member's assignment (None before it joined).

        librdkafka does not expose it directly; its serialized group metadata (``CGMDv2:``, then
        the generation as a native int32) holds it.  None if that format ever changes.
        """
        try:
            raw = self._consumer.consumer_group_metadata()
        except (KafkaException, RuntimeError):
            return None
        if not isinstance(raw, bytes) or not raw.startswith(_CGMD_MAGIC) or len(raw) < len(_CGMD_MAGIC) + 4:
            return None
        gid = int.from_bytes(raw[len(_CGMD_MAGIC) : len(_CGMD_MAGIC) + 4], sys.byteorder, signed=True)
        return gid if gid >= 0 else None

    def seek(self, offsets: Mapping[int, int]) -> None:
        """Read each partition next from the given offset (restore from a checkpoint).

        The partitions must be assigned to this consumer (call from ``on_assign``, where the
        offsets become the start positions of the assignment).
        """
        for partition, offset in offsets.items():
            p, o = int(partition), int(offset)
            if self._in_assign:
                if p not in self._assigning:
                    msg = f"cannot seek {self.topic!r}[{p}] to {o}: not being assigned; assigned: "
                    raise StreamError(msg + str(sorted(self._assigning)))
                self._pending_seek[p] = o
            else:
                try:
                    self._consumer.seek(TopicPartition(self.topic, p, o))
                except KafkaException as exc:
                    assigned = sorted(self.assignment())
                    msg = f"cannot seek {self.topic!r}[{p}] to {o}: {_text(exc)}; assigned: {assigned}"
                    raise StreamError(msg) from exc
            self._next[p] = o

    def assignment(self) -> set[int]:
        """Return the partitions of the topic currently assigned to this consumer."""
        return {tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic}

    def lag(self, *, fresh: bool = False) -> dict[int, int]:
        """Per assigned partition, how many records lie beyond what was returned.

        Uses the high watermark of the latest fetch and, at most every ``lag_interval_s`` (or now,
        when ``fresh``), the broker's end offsets (the larger of the two: Tansu's ``ListOffsets``
        can lag).  A partition whose read position is not known yet is left out.
        """
        assigned = [tp for tp in self._consumer.assignment() if tp.topic == self.topic]
        now = time.monotonic()
        if assigned and (fresh or now >= self._ends_due):
            self._ends_due = now + self.lag_interval_s
            for tp in assigned:
                try:
                    marks = self._consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
                except KafkaException as exc:
                    log.debug("end offset of %r[%d] unavailable: %s", self.topic, tp.partition, exc)
                    continue
                if marks is not None and marks[1] >= 0:
                    self._ends[tp.partition] = int(marks[1])
        out: dict[int, int] = {}
        for tp in assigned:
            try:
                cached = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                cached = None
            high = cached[1] if cached is not None and cached[1] >= 0 else 0
            end = max(self._ends.get(tp.partition, 0), high)
            position = self._next.get(tp.partition)
            if position is None:
                try:
                    position = self._consumer.position([tp])[0].offset
                except KafkaException:
                    position = None
                if position is not None and position < 0:  # not known yet (no fetch, no commit)
                    position = None
            if position is not None:
                out[tp.partition] = max(end - int(position), 0)
        return out

    # -- rebalance plumbing (librdkafka calls these on the caller's thread inside consume/close)

    def _assigned(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        parts = {tp.partition for tp in tps if tp.topic == self.topic}
        self._pending_seek = {}
        self._assigning = parts
        self._in_assign = True
        try:
            self._call("assign", self.on_assign, parts)
        finally:
            self._in_assign = False
        for tp in tps:
            if tp.topic == self.topic and tp.partition in self._pending_seek:
                tp.offset = self._pending_seek[tp.partition]
        self._pending_seek = {}
        if self._cooperative:
            consumer.incremental_assign(tps)
        else:
            consumer.assign(tps)

    def _revoked(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._forget("revoke", self.on_revoke, tps)

    def _lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._forget("lost", self.on_lost if self.on_lost is not None else self.on_revoke, tps)

    def _forget(self, kind: str, hook: PartitionsCallback | None, tps: list[TopicPartition]) -> None:
        parts = {tp.partition for tp in tps if tp.topic == self.topic}
        self._call(kind, hook, parts)
        self._drop_positions(parts)  # after the hook, which may still read snapshot()
        # confluent-kafka unassigns (eagerly or incrementally) after this callback returns

    def _call(self, kind: str, hook: PartitionsCallback | None, parts: set[int]) -> None:
        if hook is None or not parts:
            return
        try:
            hook(parts)
        except Exception as exc:  # noqa: BLE001 - handed to the engine by next_batch
            log.exception("the on_%s hook failed for partitions %s", kind, sorted(parts))
            if self._hook_error is None:
                self._hook_error = exc

    def _on_error(self, error: KafkaError) -> None:  # from librdkafka, inside consume
        if error.fatal():
            self._fatal = error
            log.error("Kafka consumer of %r: fatal error %s", self.topic, error.str())
        else:  # librdkafka retries by itself; say so once a minute per kind of error
            now = time.monotonic()
            if now >= self._quiet_until.get(error.code(), 0.0):
                self._quiet_until[error.code()] = now + 60.0
                log.warning("Kafka consumer of %r: %s (retrying)", self.topic, error.str())

    def _without_errors(self, messages: list[Message]) -> list[Message]:
        kept = []
        for m in messages:
            error = m.error()
            if error is None:
                kept.append(m)
            elif error.code() != _EOF:
                where = f"topic {m.topic()!r}" + (f"[{m.partition()}]" if m.partition() is not None else "")
                msg = f"reading {where} from {self.bootstrap_servers} failed: {error.str()}"
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    msg += f"; was the topic deleted? {_CREATE_HINT}"
                raise StreamError(msg)
        return kept

    def _close_quietly(self) -> None:
        self._closed = True
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.debug("closing a consumer that never started: %s", exc)


def _text(exc: BaseException) -> str:
    """The message of a confluent-kafka exception (its ``KafkaError.str()``), else ``str(exc)``."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        error: KafkaError = exc.args[0]
        return f"{error.name()}: {error.str()}"
    return str(exc)
