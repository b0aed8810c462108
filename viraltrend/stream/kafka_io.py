"""Kafka in and out with kafka-python: the live source, the producer sink, topic admin, DLQ records.

- :class:`KafkaSource` reads engagement events in a consumer group, decodes each partition's
  raw values with :func:`viraltrend.stream.decode.decode_records`, and commits only the
  offsets the engine hands it (after decisions are published and state is checkpointed).
- :class:`KafkaSink` produces decisions, board snapshots and dead-letter records
  (``acks="all"``) and reports failed deliveries as :class:`~viraltrend.errors.StreamError`.
- :func:`dlq_record` builds a dead-letter value; topic admin (:func:`create_topics`, ...) lives
  in :mod:`viraltrend.stream.broker` and is re-exported here.

Clients pass ``**client_options`` to kafka-python (``security_protocol``, ``sasl_mechanism``,
``ssl_cafile``, ...).  Needs kafka-python >= 3.0 (rebalance hooks run on its IO thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from operator import attrgetter
from typing import Any, Final

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka import errors as kerr
from kafka.consumer.subscription_state import (
    AsyncConsumerRebalanceListener,
)

from viraltrend.errors import ConfigError, StreamError
from viraltrend.events import EventBatch, Reject
from viraltrend.messages import ENCODER, FRAMING_BYTES, SCHEMA, dead_letter
from viraltrend.stream.broker import (  # topic admin lives with the broker; re-exported here
    _CREATE_HINT,
    TopicInfo,
    _admin,
    _connect,
    _describe,
    _unreachable,
    create_topics,
    describe_topic,
    topic_exists,
)
from viraltrend.stream.kafka_fast import install as install_spans
from viraltrend.stream.kafka_fast import spans_of
from viraltrend.stream.sources import KafkaGroupSource

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DLQ_SCHEMA",
    "KafkaSink",
    "KafkaSource",
    "TopicInfo",
    "create_topics",
    "describe_topic",
    "dlq_record",
    "topic_exists",
]

log = logging.getLogger(__name__)

#: ``schema`` field of every dead-letter record.
DLQ_SCHEMA: Final = SCHEMA
_RESERVED: Final = frozenset({"group_id", "enable_auto_commit", "key_deserializer", "value_deserializer"})
#: kafka-python's default ``max_request_size``; Kafka's default ``message.max.bytes`` is a little more.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_576
_MIN_MESSAGE_BYTES: Final = 512
_VALUE: Final = attrgetter("value")
_OFFSET: Final = attrgetter("offset")

PartitionsCallback = Callable[[set[int]], None]


# ----------------------------------------------------------------------------------------- source


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards kafka-python's rebalance events (on its IO thread) to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source._rebalanced("revoke", revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source._rebalanced("assign", assigned)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        await self._source._rebalanced("lost", lost)


class KafkaSource(KafkaGroupSource):
    """Engagement events from a Kafka topic, read in a consumer group, decoded per partition.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,host:port...]``.
    topic : str
        The events topic; it must exist (:class:`StreamError` otherwise).
    group_id : str
        The consumer group; workers in one group share the topic's partitions.
    poll_timeout_ms : int
        Longest :meth:`next_batch` waits for records.
    on_assign, on_revoke, on_lost : callable(set[int]), optional
        Rebalance hooks, called with partition numbers on the thread that calls
        :meth:`next_batch`, never while engine work is under way.  ``on_revoke`` runs before
        the partitions move (checkpoint them, :meth:`commit`), inside ``poll`` on
        kafka-python's IO thread while the caller waits; :meth:`commit` there is sent and
        awaited before the rebalance goes on.  ``on_lost`` runs there too, when the
        membership was lost and the partitions may already be someone else's (drop state;
        defaults to ``on_revoke``).  ``on_assign`` (restore, :meth:`seek`) does *not* run in
        kafka-python's callback: that thread also sends the heartbeats, so a restore longer
        than ``session_timeout_ms`` would get this worker evicted.  The callback only pauses
        the new partitions; :meth:`next_batch` then calls ``on_assign`` on the caller's
        thread after ``poll`` returns (heartbeats go on meanwhile) and resumes them.  An
        exception from ``on_revoke`` / ``on_lost`` is re-raised by :meth:`next_batch`; one
        from ``on_assign`` propagates from it, the partitions left paused.
    connect_timeout_s : float
        Bounded wait for the first connection.
    lag_interval_s : float
        :meth:`lag` asks the broker for end offsets at most this often.
    **client_options
        Passed to :class:`kafka.KafkaConsumer` (security, fetch sizes, assignors, ...).
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
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": auto_offset_reset,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "max_poll_interval_ms": max_poll_interval_ms,
            "allow_auto_create_topics": False,
            "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 16 * 1024 * 1024,
            "fetch_max_wait_ms": 100,
            "max_poll_records": 10_000,
        }
        config.update(client_options)
        self._in_hook = False
        self._to_assign: set[int] = set()  # assigned and paused; on_assign not yet called
        self._session_timeout_s = float(config["session_timeout_ms"]) / 1000
        self._assigned_at = time.monotonic()  # when the current assignment came (membership fence)
        self._deferred: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self._consumer: KafkaConsumer = _connect(KafkaConsumer, bootstrap_servers, config)
        try:
            partitions = self._consumer.partitions_for_topic(topic)
        except kerr.KafkaError as exc:
            self._consumer.close(autocommit=False)
            raise _unreachable(bootstrap_servers, exc) from exc
        if not partitions:
            self._consumer.close(autocommit=False)
            msg = f"topic {topic!r} does not exist on {bootstrap_servers}; {_CREATE_HINT}"
            raise StreamError(msg)
        self._consumer.subscribe(topics=[topic], listener=_Listener(self))
        install_spans(self._consumer)  # a poll's values as spans of the fetch buffer, no record objects

    # -- the Source interface

    def next_batch(self, max_events: int) -> tuple[EventBatch, list[Reject]]:
        """Poll once (at most ``poll_timeout_ms``) and decode what came, partition by partition.

        Returns the valid events (each partition's in offset order) and the rejects, each
        carrying its partition and offset.  An empty batch when nothing arrived.
        """
        if max_events < 1:
            msg = f"max_events must be >= 1, got {max_events}"
            raise ValueError(msg)
        try:
            polled = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=max_events)
        except kerr.KafkaError as exc:
            self._raise_hook_error(exc)
            msg = f"reading topic {self.topic!r} from {self.bootstrap_servers} failed: {_describe(exc)}"
            raise StreamError(msg) from exc
        self._raise_hook_error(None)
        if self._to_assign:  # outside kafka-python's callback: heartbeats go on during a long restore
            polled = {tp: r for tp, r in polled.items() if tp.partition not in self._to_assign}
            self._assign_paused()
        batches: list[EventBatch] = []
        rejects: list[Reject] = []
        for tp, records in polled.items():
            values, offsets = spans_of(records)
            if not values:
                continue
            batch, bad = self._decode(tp.partition, values, offsets)
            batches.append(batch)
            rejects.extend(bad)
        return EventBatch.concat(batches), rejects

    def close(self) -> None:
        """Leave the group (which may call ``on_revoke``) and close the consumer.  Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._consumer.close(autocommit=False)
            except kerr.KafkaError as exc:  # leaving a dead broker's group is not worth failing over
                log.warning("closing the consumer of %r: %s", self.topic, exc)

    # -- offsets and assignment

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit exactly ``offsets`` (partition -> next offset to read) for the group, synchronously.

        Raises :class:`StreamError` if the commit fails (e.g. the partitions moved to another
        worker in a rebalance: their new owner re-reads from the last committed offsets).
        """
        if not offsets:
            return
        request = {
            TopicPartition(self.topic, partition): OffsetAndMetadata(offset, "", -1)
            for partition, offset in self._checked(offsets).items()
        }
        if self._in_hook:  # on the IO thread: blocking would deadlock; awaited after the hook
            self._deferred.append(request)
            return
        try:
            self._consumer.commit(request, timeout_ms=int(self.commit_timeout_s * 1000))
        except kerr.KafkaError as exc:
            what = f"offsets {dict(offsets)} of topic {self.topic!r} for group {self.group_id!r}"
            msg = f"committing {what} failed: {_describe(exc)}"
            raise StreamError(msg) from exc

    def generation(self) -> int | None:
        """The consumer-group generation of this member's assignment (None before it joined).

        The group coordinator bumps it at every rebalance: the owner of a partition in a later
        generation supersedes any earlier one (the changelog's fencing epoch).
        """
        coordinator = self._consumer._coordinator
        generation = coordinator.generation_if_stable() or getattr(coordinator, "_generation", None)
        gid = int(getattr(generation, "generation_id", -1))
        return gid if gid >= 0 else None

    def seek(self, offsets: Mapping[int, int]) -> None:
        """Read each partition next from the given offset (restore from a checkpoint).

        The partitions must be assigned to this consumer (call from ``on_assign``).
        """
        for partition, offset in offsets.items():
            tp = TopicPartition(self.topic, int(partition))
            try:
                self._consumer.seek(tp, int(offset))
            except ValueError as exc:
                assigned = sorted(self.assignment())
                msg = f"cannot seek {self.topic!r}[{partition}] to {offset}: {exc}; assigned: {assigned}"
                raise StreamError(msg) from exc
            self._next[int(partition)] = int(offset)

    def assignment(self) -> set[int]:
        """Return the partitions of the topic currently assigned to this consumer."""
        return {tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic}

    def session_expired(self) -> bool:
        """True when no heartbeat was answered within ``session_timeout_ms`` (see the base class).

        Counted from the later of the last answered heartbeat and the current assignment, not
        from kafka-python's own timer, which restarts when it finds the coordinator again after
        the session expired (as it does first thing when a frozen process resumes).
        """
        heartbeat = getattr(self._consumer._coordinator, "heartbeat", None)
        if heartbeat is None or not self._consumer.assignment():
            return False
        last = max(float(heartbeat.last_receive), self._assigned_at)
        return time.monotonic() - last > self._session_timeout_s

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
            try:
                ends = self._consumer.end_offsets(assigned, timeout_ms=2000)
            except kerr.KafkaError as exc:
                log.debug("end offsets of %r unavailable: %s", self.topic, exc)
                ends = {}
            self._ends.update({tp.partition: int(end) for tp, end in ends.items() if end is not None})
        out: dict[int, int] = {}
        for tp in assigned:
            end = max(self._ends.get(tp.partition, 0), self._consumer.highwater(tp) or 0)
            position = self._next.get(tp.partition)
            if position is None:
                try:
                    position = self._consumer.position(tp, timeout_ms=1000)
                except kerr.KafkaError:
                    position = None
            if position is not None:
                out[tp.partition] = max(end - int(position), 0)
        return out

    # -- rebalance plumbing (runs on kafka-python's IO thread while poll() waits)

    def _assign_paused(self) -> None:
        """Call ``on_assign`` for the partitions the last rebalance paused, then resume them.

        On the caller's thread, outside ``poll``: kafka-python's IO thread keeps heartbeating.
        """
        parts, self._to_assign = self._to_assign, set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        if self.on_assign is not None:
            self.on_assign(parts)  # restore; seek() sets where each partition is read from
        owned = self._consumer.assignment()
        self._consumer.resume(*[tp for tp in tps if tp in owned])

    async def _rebalanced(self, kind: str, tps: Collection[TopicPartition]) -> None:
        parts = {tp.partition for tp in tps if tp.topic == self.topic}
        if kind == "assign":  # pause now; next_batch restores on the caller's thread, then resumes
            self._assigned_at = time.monotonic()
            self._consumer.pause(*[tp for tp in tps if tp.topic == self.topic])
            self._to_assign |= parts
            return
        never = parts & self._to_assign  # assigned and taken away before on_assign ran: nothing to save
        self._to_assign -= never
        parts -= never
        lost = self.on_lost if self.on_lost is not None else self.on_revoke
        hook = {"assign": self.on_assign, "revoke": self.on_revoke, "lost": lost}[kind]
        if hook is not None and parts:
            self._in_hook = True
            try:
                hook(parts)
            except Exception as exc:  # noqa: BLE001 - handed to the engine by next_batch
                log.exception("the on_%s hook failed for partitions %s", kind, sorted(parts))
                if self._hook_error is None:
                    self._hook_error = exc
            finally:
                self._in_hook = False
        self._drop_positions(parts)  # after the hook, which may still read snapshot()
        deferred, self._deferred = self._deferred, []
        for request in deferred:
            try:
                await self._consumer.commit_async(request)
            except kerr.KafkaError as exc:  # the next owner re-reads from the last committed offsets
                log.warning("commit during %s of partitions %s failed: %s", kind, sorted(parts), exc)


# ------------------------------------------------------------------------------------------- sink


class KafkaSink:
    """A producer for decisions, board snapshots and dead-letter records.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,host:port...]``.
    linger_ms : int
        How long the producer waits to fill a batch.
    connect_timeout_s : float
        Bounded wait for the first connection.
    max_block_s : float
        Longest :meth:`send` blocks for topic metadata or buffer space.
    check_topics : bool
        Check that a topic exists before the first send to it: Tansu creates any topic a
        producer asks about (4 partitions, no configs) even with auto-creation off.
    max_message_bytes : int
        The producer's ``max_request_size``: the largest message it sends.  :func:`dlq_record`
        truncates dead letters to fit under it (see :meth:`max_value_bytes`).
    **client_options
        Passed to :class:`kafka.KafkaProducer` (security, ``batch_size``, ...).

    Notes
    -----
    A failure is *sticky*: once one message failed (an error from the broker, a message too
    large, a delivery that timed out, a flush that timed out), every later :meth:`send` and
    :meth:`flush` raises :class:`StreamError` until the sink is closed.  The caller must not
    commit input offsets past records whose output was not acknowledged; it drops this sink,
    rolls back to its last checkpoint and re-reads.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        linger_ms: int = 5,
        connect_timeout_s: float = 10.0,
        max_block_s: float = 10.0,
        check_topics: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        **client_options: Any,
    ) -> None:
        if max_message_bytes < _MIN_MESSAGE_BYTES:
            msg = f"max_message_bytes must be >= {_MIN_MESSAGE_BYTES}, got {max_message_bytes}"
            raise ConfigError(msg)
        self.bootstrap_servers = bootstrap_servers
        self.max_message_bytes = int(max_message_bytes)
        self.check_topics = check_topics
        self._options = client_options
        self._timeout_s = connect_timeout_s
        self._known_topics: set[str] = set()
        self._pending_topics: set[str] = set()  # sent to since the last flush
        self._admin: Any = None  # for the topic check after a flush, made on first use
        config: dict[str, Any] = {
            "acks": "all",
            "linger_ms": linger_ms,
            "compression_type": None,
            "allow_auto_create_topics": False,
            "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
            "max_block_ms": int(max_block_s * 1000),
            "max_request_size": self.max_message_bytes,
        }
        config.update(client_options)
        self._producer: KafkaProducer = _connect(KafkaProducer, bootstrap_servers, config)
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0  #: messages handed to the producer so far

    def send(self, topic: str, key: bytes | str | None, value: bytes) -> None:
        """Queue one message; delivery failures surface in :meth:`flush` (or the next send)."""
        self._raise_failures()
        if self.check_topics and topic not in self._known_topics:
            if not topic_exists(self.bootstrap_servers, topic, timeout_s=self._timeout_s, **self._options):
                where = self.bootstrap_servers
                msg = f"cannot send to topic {topic!r}: it does not exist on {where}; {_CREATE_HINT}"
                raise StreamError(msg)
            self._known_topics.add(topic)
        if isinstance(key, str):
            key = key.encode("utf-8")
        try:
            future = self._producer.send(topic, key=key, value=value)
        except kerr.KafkaError as exc:  # too large, or a timeout: no metadata or no buffer space in time
            self._failed(topic, exc)
            msg = f"cannot send to topic {topic!r} on {self.bootstrap_servers}: {_describe(exc)}"
            raise StreamError(msg) from exc
        future.add_errback(self._failed, topic)
        self._pending_topics.add(topic)
        self.sent += 1

    def max_value_bytes(self, key: bytes | None = None) -> int:
        """The longest value a message with ``key`` may have: :attr:`max_message_bytes` less framing."""
        return self.max_message_bytes - FRAMING_BYTES - (len(key) if key else 0)

    def send_json(self, topic: str, key: bytes | str | None, obj: object) -> None:
        """Encode ``obj`` as UTF-8 JSON (msgspec) and :meth:`send` it."""
        self.send(topic, key, ENCODER.encode(obj))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued message is acknowledged; :class:`StreamError` if any failed.

        Then, with ``check_topics``, check that every topic sent to since the last flush still
        exists: a broker may acknowledge records for a topic deleted meanwhile (Tansu does) and
        keep none of them.  A missing topic fails the sink (sticky, like any failed message).
        """
        self._raise_failures()
        try:
            self._producer.flush(timeout=timeout_s)
        except kerr.KafkaError as exc:
            msg = (
                f"messages to {self.bootstrap_servers} were not acknowledged within {timeout_s:g} s "
                f"({_describe(exc)}); is the broker running?"
            )
            self._failed("(flush)", exc)  # unacknowledged: this sink can no longer vouch for them
            raise StreamError(msg) from exc
        self._raise_failures()
        if self.check_topics and self._pending_topics:
            self._check_still_there()

    def _check_still_there(self) -> None:
        """Fail the sink if a topic written since the last flush was deleted meanwhile."""
        try:
            if self._admin is None:
                self._admin = _admin(self.bootstrap_servers, self._timeout_s, self._options)
            existing = set(self._admin.list_topics())
        except (kerr.KafkaError, StreamError) as exc:
            self._failed("(topic check)", exc)
            msg = f"cannot check the topics written on {self.bootstrap_servers}: {exc}"
            raise StreamError(msg) from exc
        gone = sorted(self._pending_topics - existing)
        self._pending_topics = set()
        for topic in gone:
            self._known_topics.discard(topic)
            self._failed(topic, RuntimeError("the topic was deleted while messages were sent to it"))
        self._raise_failures()

    @property
    def failed(self) -> bool:
        """True once any message failed: the sink then refuses to send or flush (see Notes)."""
        with self._lock:
            return bool(self._errors)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close the producer; failures are logged, not raised (call flush first).  Idempotent."""
        if not self._closed:
            self._closed = True
            self._producer.close(timeout=timeout_s)
            if self._admin is not None:
                self._admin.close()
            if self._errors:
                log.error("%d message(s) failed before close; first: %s", len(self._errors), self._errors[0])

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failed(self, topic: str, exc: BaseException) -> None:  # on the producer's IO thread
        with self._lock:
            self._errors.append(f"{topic}: {_describe(exc)}")

    def _raise_failures(self) -> None:
        """Raise while any message failed.  Never clears: a failed sink stays failed (see Notes)."""
        with self._lock:
            errors = list(self._errors)
        if errors:
            msg = (
                f"{len(errors)} message(s) to {self.bootstrap_servers} failed; first: {errors[0]}; "
                "nothing after them may be committed"
            )
            raise StreamError(msg)


def dlq_record(reject: Reject, *, now_ms: int | None = None, max_bytes: int | None = None) -> bytes:
    """The dead-letter value of ``reject``, encoded once as UTF-8 JSON per the events contract.

    The record is :func:`~viraltrend.messages.dead_letter`'s: truncated (full size and SHA-256
    kept), never dropped, when it would be longer than ``max_bytes``.

    Examples
    --------
    >>> from viraltrend.events import Reject
    >>> dlq_record(Reject(b"{", "bad_json", "truncated", "events", 1, 7), now_ms=5)[:40]
    b'{"schema":1,"reason":"bad_json","detail"'
    """
    return ENCODER.encode(dead_letter(reject, now_ms=now_ms, max_bytes=max_bytes))
