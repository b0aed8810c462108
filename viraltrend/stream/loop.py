"""The live service's batch loop: consume, run the engines, publish, checkpoint, commit.

State is kept per input partition (one :class:`~viraltrend.engine.Engine` each), restored
from its checkpoint (the compacted changelog topic ``<group_id>.state``, or a local directory)
when the partition is assigned, and checkpointed when it is revoked.  A partition's life:
kafka-python's rebalance callback only pauses a newly assigned partition; the restore runs on
the loop's thread, outside that callback (whose thread also sends the group heartbeats, so a
restore longer than the session timeout would get the worker evicted), then the partition is
sought to the checkpoint's offsets and resumed.  On revoke, the partition is checkpointed and
its offsets committed inside the callback, before it moves.  One turn of the loop:

1. poll a batch (decoded; bad records become rejects), and the other workers' board candidates;
2. send each reject to the dead-letter topic, with its reason;
3. run each partition's events through that partition's engine;
4. publish the decisions keyed by ``product_id`` / ``__board__`` (the producer sends them in
   the background; ``end_to_end_latency_seconds`` runs from the poll to this hand-over).  With
   one input partition the engine's decisions pass through unchanged.  With several, each worker
   shares its partitions' boards on the candidates topic and publishes only ``block`` decisions;
   the worker holding input partition 0 merges every partition's board into the one global board
   and publishes its promote / demote / update messages and snapshots (see
   :mod:`viraltrend.stream.candidates` and :mod:`viraltrend.merge`);
5. every ``checkpoint.interval_s`` (and on shutdown or revoke): checkpoint each engine with the
   offsets its state reflects, then commit those offsets.

**Guarantees.**  Offsets are committed only after every message produced for those events
(decisions, snapshots, dead letters, candidates) was acknowledged and the state reflecting them
was checkpointed.  A failed message leaves the producer failed (see :class:`KafkaSink`): the
loop then drops its engines *before* closing the clients (leaving the group runs the revoke
hook, which must find nothing to checkpoint), reconnects and restores the last checkpoints, so
no offset is ever committed past an unpublished record.  After a crash the service
restores the checkpoint and re-reads from its offsets, so the state counts every event exactly
once; decisions made after the last checkpoint are published again (at-least-once), identical
apart from ``emitted_at`` and idempotent by key.  When the broker cannot be reached the loop
keeps its state, reports ``viraltrend_broker_up 0``, backs off and, once the broker answers
again, rolls back to its last checkpoint and replays from there, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from viraltrend.board import Member
from viraltrend.config import Config
from viraltrend.engine import Engine
from viraltrend.errors import CheckpointError, ConfigError, StreamError
from viraltrend.events import EventBatch, Reject
from viraltrend.merge import BoardMerger
from viraltrend.messages import Message, decode_board_snapshot
from viraltrend.metrics import Metrics
from viraltrend.stream.broker import INTERNAL_TOPIC_CONFIGS, _connect, kafka_errors, reachable
from viraltrend.stream.candidates import (
    CandidatesFollower,
    PartitionCandidates,
    encode_candidates,
    last_value,
)
from viraltrend.stream.changelog import ChangelogStore
from viraltrend.stream.checkpoint import LocalStore, StateStore
from viraltrend.stream.kafka_io import KafkaSink, KafkaSource, create_topics, describe_topic, dlq_record
from viraltrend.stream.sinks import stamp

__all__ = ["Service", "ServiceOptions"]

log = logging.getLogger("viraltrend.service")
BOARD_KEY = b"__board__"
#: Fault injection (the fault suite): seconds added to each partition's restore from a checkpoint.
RESTORE_DELAY_ENV = "VTFAULT_RESTORE_DELAY_S"  # not VIRALTREND_*: those are config keys


class GroupSource(Protocol):
    """A consumer-group source: :class:`KafkaSource` (kafka-python) or ``ConfluentSource`` (librdkafka)."""

    def next_batch(self, max_events: int) -> tuple[EventBatch, list[Reject]]:
        """Poll once; decoded events and rejects."""
        ...

    def snapshot(self) -> dict[int, int]:
        """Next offset per partition."""
        ...

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit exactly these offsets."""
        ...

    def seek(self, offsets: Mapping[int, int]) -> None:
        """Move the read positions."""
        ...

    def generation(self) -> int | None:
        """The consumer-group generation of the current assignment (the checkpoints' epoch)."""
        ...

    def lag(self) -> dict[int, int]:
        """Messages behind the end, per partition."""
        ...

    def close(self) -> None:
        """Leave the group and close."""
        ...


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How the loop runs (beyond the config)."""

    exit_when_idle_s: float | None = None  # stop after this long with nothing to read
    max_backoff_s: float = 5.0


class BlocklistFollower:
    """Follows the compacted blocklist topic (``trust.blocklist_topic``) from its beginning.

    Key ``seller:<id>`` or ``product:<id>``; value a UTF-8 reason to block, or a tombstone
    (null value) to unblock.  Malformed keys are logged and skipped.
    """

    def __init__(self, bootstrap_servers: str, topic: str, options: dict[str, Any]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.state: dict[tuple[str, str], str] = {}
        config = {"group_id": None, "enable_auto_commit": False, "bootstrap_timeout_ms": 10_000, **options}
        self._consumer = _connect(KafkaConsumer, bootstrap_servers, config)
        try:
            with kafka_errors(f"reading the blocklist topic {topic!r} on {bootstrap_servers}"):
                parts = self._consumer.partitions_for_topic(topic) or set()
                if not parts:
                    msg = (
                        f"blocklist topic {topic!r} does not exist on {bootstrap_servers}; "
                        "create it (compacted) or unset trust.blocklist_topic"
                    )
                    raise StreamError(msg)
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                self._consumer.assign(tps)
                self._consumer.seek_to_beginning(*tps)
        except StreamError:
            self.close()
            raise

    def poll(self) -> list[tuple[str, str, str | None]]:
        """Changes since the last call: (kind, id, reason or None); StreamError if the broker fails."""
        changes: list[tuple[str, str, str | None]] = []
        with kafka_errors(f"reading the blocklist topic {self.topic!r}"):
            polled = self._consumer.poll(timeout_ms=0)
        for records in polled.values():
            for r in records:
                kind, _, ident = (r.key or b"").decode("utf-8", "replace").partition(":")
                if kind not in ("seller", "product") or not ident:
                    log.warning(
                        "blocklist %s offset %d: key %r is not seller:<id> or product:<id>",
                        self.topic,
                        r.offset,
                        r.key,
                    )
                    continue
                reason = None if r.value is None else (r.value.decode("utf-8", "replace") or "blocked")
                if reason is None:
                    self.state.pop((kind, ident), None)
                else:
                    self.state[(kind, ident)] = reason
                changes.append((kind, ident, reason))
        return changes

    def close(self) -> None:
        """Close the consumer (errors of a gone broker are logged, not raised)."""
        try:
            self._consumer.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("closing the blocklist follower: %s", exc)


class Service:
    """Runs engines over a Kafka topic and publishes their decisions.  See the module docstring."""

    def __init__(
        self,
        cfg: Config,
        *,
        metrics: Metrics,
        client_options: dict[str, Any] | None = None,
        options: ServiceOptions | None = None,
        source_factory: Callable[..., GroupSource] = KafkaSource,
        sink_factory: Callable[..., KafkaSink] = KafkaSink,
    ) -> None:
        self.cfg = cfg
        self.k = cfg.kafka
        self.metrics = metrics
        self.options = options or ServiceOptions()
        self.client_options = client_options or {}
        self.store: StateStore | None = None
        self.engines: dict[int, Engine] = {}
        self.merger = BoardMerger(cfg.board)
        self.n_partitions = 1
        self._source_factory = source_factory
        self._sink_factory = sink_factory
        self._source: GroupSource | None = None
        self._sink: KafkaSink | None = None
        self._blocklist: BlocklistFollower | None = None
        self._follower: CandidatesFollower | None = None
        self._published: dict[int, tuple[Any, ...]] = {}  # partition -> board signature last published
        self._round: dict[int, dict[str, Message]] = {}  # partition -> decisions since its last candidates
        self._checkpointed: dict[int, int] = {}  # partition -> offset of its last checkpoint
        self._epochs: dict[int, int] = {}  # partition -> group generation it was assigned in (fencing)
        self._fresh: set[int] = set()  # partitions started without a checkpoint, before their first record
        self._snapshot_wm = 0  # event time of the last merged snapshot
        self._merged_wm = 0  # event time of the last merge: the newest watermark of any partition
        self._announce = False  # publish a board snapshot at the next merge (just became publisher)
        self._last_checkpoint = time.monotonic()
        self._lag_due = 0.0
        self._log_due = 0.0
        self._probe_due = 0.0
        self._last_record_at = time.monotonic()
        self.stop_event = threading.Event()

    @property
    def candidates_topic(self) -> str:
        """Where workers share their partitions' boards (see :mod:`viraltrend.stream.candidates`)."""
        return self.k.candidates_topic or f"{self.k.group_id}.candidates"

    @property
    def changelog_topic(self) -> str:
        """The compacted topic holding checkpoints when ``checkpoint.store = "changelog"``."""
        return self.cfg.checkpoint.changelog_topic or f"{self.k.group_id}.state"

    @property
    def is_publisher(self) -> bool:
        """Whether this worker publishes the board: it holds input partition 0."""
        return 0 in self.engines

    # ------------------------------------------------------------------ partitions
    def _restore(self, partitions: set[int]) -> None:
        """Assign hook, on the loop's thread: restore each partition's checkpoint, seek to its offsets."""
        assert self.store is not None
        delay_s = float(os.environ.get(RESTORE_DELAY_ENV) or 0)
        was_publisher = self.is_publisher
        seek: dict[int, int] = {}
        self.metrics.rebalances.labels(kind="assigned").inc()
        generation = self._source.generation() if self._source is not None else None
        log.info("assigned partitions %s in group generation %s", sorted(partitions), generation)
        for p in sorted(partitions):
            t0 = time.perf_counter()
            self._epochs[p] = generation or 0
            loaded = self.store.load(p)
            self._published.pop(p, None)
            self._round[p] = {}
            if loaded is None:
                self.engines[p] = Engine(self.cfg)
                self._apply_blocklist(self.engines[p], None)
                self._checkpointed[p] = 0
                self._fresh.add(p)  # _check_fresh_start() warns if the group had read past offset 0
                log.info("partition %d: no checkpoint in %s, starting fresh", p, self.store.describe)
                continue
            arrays, meta, offsets = loaded
            self.engines[p] = Engine.restore(self.cfg, arrays, meta)
            if delay_s > 0:  # fault injection: a restore as long as one of a few million products
                log.warning(
                    "partition %d: %s=%g: the restore lasts %g s longer",
                    p,
                    RESTORE_DELAY_ENV,
                    delay_s,
                    delay_s,
                )
                time.sleep(delay_s)
            self._apply_blocklist(self.engines[p], None)
            if p in offsets:
                seek[p] = offsets[p]
            self._checkpointed[p] = offsets.get(p, 0)
            self.metrics.restore_duration.observe(time.perf_counter() - t0)
            log.info("partition %d: restored from %s at offset %s", p, self.store.describe, offsets.get(p))
        if seek and self._source is not None:
            self._source.seek(seek)
        if self.n_partitions > 1 and self.is_publisher and not was_publisher:
            self._announce = True
            log.info("holding input partition 0: this worker now publishes the merged board")
            self._adopt_published()
        elif not self.is_publisher:
            self.merger.reset(self._all_members())
        # (a publisher that stays one keeps its merger: it holds what this worker published)
        self._state_gauges()  # restored state shows before the first batch
        self.metrics.assigned_partitions.set(len(self.engines))
        self.metrics.board_publisher.set(int(self.is_publisher))

    def _adopt_published(self) -> None:
        """A new board publisher starts from the last board published on the output topic.

        Not from the merge of the restored boards: the changes the previous publisher decided
        but never published before it failed over would then never be published (issue 12,
        item 5).  With no snapshot on the topic, the first merge promotes every member.
        """
        value = last_value(self.k.bootstrap_servers, self.k.output_topic, BOARD_KEY, self.client_options)
        self.merger.reset([])
        if value is None:
            log.info(
                "no board snapshot on %s: the first merge publishes the whole board", self.k.output_topic
            )
            return
        try:
            self.merger.adopt(decode_board_snapshot(value))
        except ValueError as exc:
            log.warning(
                "the last board snapshot on %s is unreadable (%s); starting from an empty board",
                self.k.output_topic,
                exc,
            )
            self.merger.reset([])
            return
        log.info(
            "adopted the last published board (%d products) from %s",
            len(self.merger.current),
            self.k.output_topic,
        )

    def _revoke(self, partitions: set[int]) -> None:
        """Rebalance hook (revoke): share, publish, checkpoint and commit, then drop the partitions' state."""
        if self.n_partitions > 1:
            self._share_candidates(partitions & set(self.engines), force=True)
        self.checkpoint(only=partitions)
        self._drop(partitions)
        self.metrics.rebalances.labels(kind="revoked").inc()

    def _lost(self, partitions: set[int]) -> None:
        self._drop(partitions)
        self.metrics.rebalances.labels(kind="lost").inc()

    def _drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self.engines.pop(p, None)
            self._round.pop(p, None)
            self._published.pop(p, None)
            self._checkpointed.pop(p, None)
            self._epochs.pop(p, None)
            self._fresh.discard(p)
            for gauge in (self.metrics.consumer_lag, self.metrics.changelog_lag):  # not ours any more
                with contextlib.suppress(KeyError):
                    gauge.remove(str(p))
        self.metrics.assigned_partitions.set(len(self.engines))
        self.metrics.board_publisher.set(int(self.is_publisher))
        self._state_gauges()

    # ------------------------------------------------------------------ connections
    def connect(self) -> None:
        """Open the state store, the candidates follower, the consumer and the producer.

        The consumer joins the group on its first poll, which calls :meth:`_restore`.
        """
        self.n_partitions = describe_topic(
            self.k.bootstrap_servers, self.k.input_topic, **self.client_options
        ).partitions
        internal = {}
        if self.n_partitions > 1:
            internal[self.candidates_topic] = 1
        if self.cfg.checkpoint.store == "changelog":
            internal[self.changelog_topic] = self.n_partitions
        if internal:  # internal topics, created whatever kafka.create_topics says (as Kafka Streams does)
            create_topics(  # compacted and kept forever: the latest record per key is the state
                self.k.bootstrap_servers,
                internal,
                compacted=frozenset(internal),
                retention_ms=-1,
                configs=INTERNAL_TOPIC_CONFIGS,
                **self.client_options,
            )
        if self.store is None:
            if self.cfg.checkpoint.store == "changelog":
                self.store = ChangelogStore(
                    self.k.bootstrap_servers,
                    self.changelog_topic,
                    self.k.input_topic,
                    partitions=self.n_partitions,
                    **self.client_options,
                )
            else:
                self.store = LocalStore(f"{self.cfg.checkpoint.dir}/{self.k.group_id}", self.k.input_topic)
        if self.n_partitions > 1 and self._follower is None:
            self._follower = CandidatesFollower(
                self.k.bootstrap_servers, self.candidates_topic, self.client_options
            )
            self._follower.catch_up()
        self._sink = self._sink_factory(
            self.k.bootstrap_servers, max_message_bytes=self.k.max_message_bytes, **self.client_options
        )
        factory = self._source_factory
        if factory is KafkaSource and self.k.client == "confluent":
            from viraltrend.stream.kafka_confluent import ConfluentSource

            factory = ConfluentSource
        self._source = factory(
            self.k.bootstrap_servers,
            self.k.input_topic,
            group_id=self.k.group_id,
            poll_timeout_ms=self.k.poll_timeout_ms,
            on_assign=self._restore,
            on_revoke=self._revoke,
            on_lost=self._lost,
            **self.client_options,
        )
        if self.cfg.trust.blocklist_topic and self._blocklist is None:
            self._blocklist = BlocklistFollower(
                self.k.bootstrap_servers, self.cfg.trust.blocklist_topic, self.client_options
            )
        self.metrics.broker_up.set(1)

    def _apply_blocklist(self, engine: Engine, changes: list[tuple[str, str, str | None]] | None) -> None:
        """Apply blocklist ``changes`` to ``engine`` (None: the follower's whole current state)."""
        if self._blocklist is None:
            return
        if changes is None:
            changes = [(kind, ident, reason) for (kind, ident), reason in self._blocklist.state.items()]
        for kind, ident, reason in changes:
            engine.guard.set_blocked(kind, ident, reason)

    def close(self) -> None:
        """Close the clients (after :meth:`checkpoint`)."""
        for closer in (self._source, self._sink, self._follower, self.store):
            if closer is not None:
                closer.close()
        self._follower = None
        self.store = None

    # ------------------------------------------------------------------ one batch
    def step(self) -> int:
        """Process one polled batch; return the number of records it held (input and candidates)."""
        assert self._source is not None and self._sink is not None
        t0 = time.perf_counter()
        if self._blocklist is not None:
            changes = self._blocklist.poll()
            for engine in self.engines.values():
                self._apply_blocklist(engine, changes)
        batch, rejects = self._source.next_batch(self.k.max_batch_events)
        if self._fresh:
            self._check_fresh_start(batch, rejects)
        shared = self._follower.poll() if self._follower is not None else 0
        n = len(batch) + len(rejects)
        if n == 0 and shared == 0 and not (self._announce and self.is_publisher):
            if self.is_publisher and self.n_partitions > 1 and self._merged_wm > self._snapshot_wm:
                # caught up: the latest snapshot carries the newest event time, so it is the final board
                self._publish([self.merger.snapshot(self._merged_wm)], [])
                self._snapshot_wm = self._merged_wm
            if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint.interval_s:
                self.checkpoint()  # idle, but what was read since the last checkpoint is not yet in one
            return 0
        self._last_record_at = time.monotonic()
        if n:
            self._count_consumed(batch, rejects)
        t_engine = time.perf_counter()
        messages: list[Message] = []
        touched: set[int] = set()
        for p in np.unique(batch.partition).tolist():
            got = self.engines.get(p)
            if got is None:  # assigned without a hook call (should not happen); start fresh
                got = self.engines[p] = Engine(self.cfg)
            engine = got
            part = batch if len(self.engines) == 1 else batch.take(batch.partition == p)
            msgs, late = engine.process(part)  # late: duplicates, late and far-future events
            rejects.extend(late)
            self.metrics.applied.labels(partition=str(p)).inc(len(part) - len(late))
            messages.extend(msgs)
            touched.add(p)
            if self.n_partitions > 1:  # kept until shared with the board publisher
                round_msgs = self._round.setdefault(p, {})
                for m in msgs:
                    if m["action"] != "board":
                        round_msgs[m["product_id"]] = m
        self.metrics.kernel_duration.observe(time.perf_counter() - t_engine)
        if self.n_partitions > 1:
            latest = {pid: m for p in touched for pid, m in self._round[p].items()}
            self._share_candidates(touched)
            out = [m for m in messages if m["action"] == "block"]
            if self.is_publisher:
                out += self._merge(latest)
            messages = out
        self._publish(messages, rejects)
        self.metrics.latency.observe(time.perf_counter() - t0)
        self.metrics.batch_duration.observe(time.perf_counter() - t0)
        self._update_gauges()
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint.interval_s:
            self.checkpoint()
        return n + shared

    def _check_fresh_start(self, batch: EventBatch, rejects: list[Reject]) -> None:
        """Warn loudly when a partition without a checkpoint starts reading past offset 0.

        Then the group had committed offsets (or retention removed the log's start), so the
        state starts empty in the middle of the stream: the events before are in no state.
        """
        for p in sorted(self._fresh):
            offsets = [int(o) for o in batch.offset[batch.partition == p][:1]]
            offsets += [r.offset for r in rejects if r.partition == p][:1]
            if not offsets:
                continue
            self._fresh.discard(p)
            first = min(offsets)
            if first > 0:
                assert self.store is not None
                log.warning(
                    "partition %d: NO CHECKPOINT in %s, yet reading starts at offset %d (the group's "
                    "committed offset, or the log's start): the state of this partition starts EMPTY "
                    "there and holds none of the %d events before it. If a checkpoint was expected "
                    "(was it deleted, or did --checkpoint-store / --checkpoint-dir change?), stop now "
                    "and restore it; to rebuild from the beginning, reset the group's offsets to 0.",
                    p,
                    self.store.describe,
                    first,
                    first,
                )

    # ------------------------------------------------------------------ one board across workers
    def _all_members(self) -> list[Member]:
        """Members of every partition's board: this worker's own, and the others' latest candidates."""
        members = [m for e in self.engines.values() for m in e.board.members.values()]
        if self._follower is not None:
            for p, pc in self._follower.latest.items():
                if p not in self.engines:
                    members.extend(pc.members)
        return members

    def _share_candidates(self, partitions: set[int], *, force: bool = False) -> None:
        """Publish the boards of ``partitions`` that changed to the candidates topic (keyed by partition)."""
        assert self._source is not None and self._sink is not None
        offsets = self._source.snapshot()
        for p in sorted(partitions):
            engine = self.engines.get(p)
            if engine is None or p not in offsets:
                continue
            members = engine.board.ranked()
            signature = (engine.clock.watermark_ms, *((m.product_id, m.score, m.since_ms) for m in members))
            if not force and signature == self._published.get(p) and not self._round.get(p):
                continue
            record = PartitionCandidates(
                partition=p,
                offset=offsets[p],
                watermark_ms=engine.clock.watermark_ms,
                members=members,
                messages=self._round.get(p, {}),
            )
            self._sink.send(self.candidates_topic, str(p).encode(), encode_candidates(record))
            self._published[p] = signature
            self._round[p] = {}

    def _merge(self, latest: dict[str, Message]) -> list[Message]:
        """The publisher's turn: merge every partition's board and return the changes (and snapshot)."""
        remote: dict[str, Message] = self._follower.drain_messages() if self._follower is not None else {}
        wms = [e.clock.watermark_ms for e in self.engines.values() if e.clock.watermark_ms is not None]
        if self._follower is not None:
            wms += [
                pc.watermark_ms
                for p, pc in self._follower.latest.items()
                if p not in self.engines and pc.watermark_ms is not None
            ]
        wm = self._merged_wm = max(wms, default=0)
        merged = self.merger.merge(self._all_members(), wm, {**remote, **latest})
        every_ms = self.cfg.board.snapshot_interval_s * 1000
        if not merged and (self._announce or wm - self._snapshot_wm >= every_ms):
            merged = [self.merger.snapshot(wm)]  # periodically, so subscribers see event time move
        if merged:
            self._snapshot_wm = wm
        self._announce = False
        return merged

    def _count_consumed(self, batch: EventBatch, rejects: list[Reject]) -> None:
        parts, counts = np.unique(batch.partition, return_counts=True)
        for p, c in zip(parts.tolist(), counts.tolist(), strict=True):
            self.metrics.consumed.labels(partition=str(p)).inc(c)
        for r in rejects:
            self.metrics.consumed.labels(partition=str(r.partition)).inc()

    def _publish(self, messages: list[Message], rejects: list[Reject]) -> None:
        assert self._sink is not None
        sink = self._sink
        now_ms = int(time.time() * 1000)
        limit = sink.max_value_bytes()
        for r in rejects:  # counted as read, like consumed: a failed send below re-reads (and counts) both
            self.metrics.rejected.labels(reason=r.reason).inc()
            if r.reason == "late":
                self.metrics.late_dropped.inc()
        for r in rejects:  # a dead letter too large is truncated (size and SHA-256 kept), never dropped
            sink.send(self.k.dlq_topic, None, dlq_record(r, now_ms=now_ms, max_bytes=limit))
        for m in messages:
            key = BOARD_KEY if m["action"] == "board" else m["product_id"].encode("utf-8")
            sink.send_json(self.k.output_topic, key, stamp(m, now_ms))
            self.metrics.board_changes.labels(action=m["action"]).inc()
        # No flush here: the producer batches on its IO thread.  Acknowledgement is awaited in
        # checkpoint() before any offset is committed, which is all the guarantee needs.

    def _state_gauges(self) -> None:
        engines = list(self.engines.values())
        self.metrics.tracked_products.set(sum(e.tracked_products for e in engines))
        self.metrics.state_bytes.set(sum(e.state_bytes for e in engines))

    def _update_gauges(self) -> None:
        engines = list(self.engines.values())
        self._state_gauges()
        if self.n_partitions == 1:
            board = sum(len(e.board.members) for e in engines)
        else:  # the publisher knows the merged board; the others their own partitions' part of it
            board = (
                len(self.merger.current) if self.is_publisher else sum(len(e.board.members) for e in engines)
            )
        self.metrics.board_size.set(board)
        wms = [e.clock.watermark_ms for e in engines if e.clock.watermark_ms is not None]
        if wms:
            self.metrics.event_time_lag.set(time.time() - max(wms) / 1000.0)
        self._model_gauges(engines)
        if time.monotonic() >= self._lag_due and self._source is not None:
            self._lag_due = time.monotonic() + 5.0
            for p, lag in self._source.lag().items():
                self.metrics.consumer_lag.labels(partition=str(p)).set(lag)
            positions = self._source.snapshot()
            for p, pos in positions.items():
                if p in self._checkpointed:
                    self.metrics.changelog_lag.labels(partition=str(p)).set(pos - self._checkpointed[p])
            if time.monotonic() >= self._log_due:
                self._log_due = time.monotonic() + 30.0
                log.info(
                    "partitions %s at offsets %s, checkpointed %s; board publisher: %s",
                    sorted(self.engines),
                    positions,
                    self._checkpointed,
                    self.is_publisher,
                )

    def _model_gauges(self, engines: list[Engine]) -> None:
        models = [e.model.metrics() for e in engines if e.model is not None]
        if not models:
            return
        seen = sum(int(m["labels_seen"]) for m in models)
        self.metrics.model_labels_seen.set(seen)
        self.metrics.model_warm.set(sum(bool(m["warm"]) for m in models))
        if seen:
            for gauge, key in (
                (self.metrics.model_roc_auc, "roc_auc"),
                (self.metrics.model_log_loss, "log_loss"),
                (self.metrics.model_precision, "precision"),
            ):
                gauge.set(sum(float(m[key]) * int(m["labels_seen"]) for m in models) / seen)

    @property
    def idle_s(self) -> float:
        """Seconds since the last polled batch held any record."""
        return time.monotonic() - self._last_record_at

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, only: set[int] | None = None) -> None:
        """Flush the producer, checkpoint each engine with its offsets, then commit those offsets."""
        if self._source is None or self._sink is None or self.store is None:
            return
        t0 = time.perf_counter()
        offsets = self._source.snapshot()
        due = [
            (p, engine)
            for p, engine in sorted(self.engines.items())
            if (only is None or p in only)
            and p in offsets
            and not (only is None and self._checkpointed.get(p) == offsets[p])  # nothing read since
        ]
        self._last_checkpoint = time.monotonic()
        if not due:
            return
        self._sink.flush()  # every output of what was read is acknowledged, or StreamError: no commit
        done: dict[int, int] = {}
        size = 0
        for p, engine in due:
            arrays, meta = engine.state()
            size += self.store.save(p, arrays, meta, {p: offsets[p]}, epoch=self._epochs.get(p, 0))
            done[p] = offsets[p]
            self._checkpointed[p] = offsets[p]
            self.metrics.changelog_lag.labels(partition=str(p)).set(0)
        if done:
            self._source.commit(done)
            self.metrics.checkpoint_bytes.set(size)
        self._last_checkpoint = time.monotonic()
        self.metrics.checkpoint_duration.observe(time.perf_counter() - t0)
        self.metrics.last_checkpoint.set(time.time())

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Loop until :attr:`stop_event` is set (SIGTERM/SIGINT) or the input stays idle long enough."""
        try:
            self._loop()
        except CheckpointError:
            log.error("a checkpoint cannot be restored; stopping without writing any state")
            self.close()
            raise
        self.shutdown()

    def _loop(self) -> None:
        backoff = 0.1
        idle_since = time.monotonic()
        while not self.stop_event.is_set():
            try:
                if self._source is None:
                    self.connect()
                n = self.step()
                backoff = 0.1
            except StreamError as exc:
                self.metrics.broker_up.set(0)
                self.metrics.broker_errors.inc()
                log.warning("broker trouble: %s; retrying in %.1f s (state kept)", exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_s)
                self._recover()
                continue
            if n == 0 and self._broker_gone():  # also while no partition is assigned yet
                continue
            if n or not self.engines:  # idle counts only once partitions are assigned
                idle_since = time.monotonic()
            elif self.options.exit_when_idle_s is not None and (
                time.monotonic() - idle_since >= self.options.exit_when_idle_s
            ):
                log.info("input idle for %.1f s: stopping", self.options.exit_when_idle_s)
                break
            self.metrics.broker_up.set(1)

    def _broker_gone(self) -> bool:
        """While idle, every 2 s, check the broker is still there (an idle poll cannot tell)."""
        if time.monotonic() < self._probe_due:
            return False
        self._probe_due = time.monotonic() + 2.0
        if reachable(self.k.bootstrap_servers):
            return False
        self.metrics.broker_up.set(0)
        self.metrics.broker_errors.inc()
        log.warning("broker %s unreachable; state kept, reconnecting with backoff", self.k.bootstrap_servers)
        self._recover()
        return True

    def _recover(self) -> None:
        """After a failed publish or poll: drop the clients and roll state back to the last checkpoint.

        The engines go first: closing the source leaves the group, which runs the revoke hook,
        and that hook must find nothing to checkpoint or commit (what was read since the last
        checkpoint may not have been published).
        """
        self._drop(set(self.engines))  # the next assignment restores them from their checkpoints
        for closer in (self._source, self._sink, self._follower, self.store):
            try:
                if closer is not None:
                    closer.close()
            except Exception as exc:  # noqa: BLE001 - the broker is gone; closing is best effort
                log.debug("closing after broker trouble: %s", exc)
        self._source = None
        self._sink = None
        self._follower = None
        if self.cfg.checkpoint.store == "changelog":
            self.store = None  # reopened on connect

    def shutdown(self) -> None:
        """Finish: publish the final board (the publisher only), checkpoint, commit, close."""
        try:
            if self._sink is not None and self.engines:
                final = self._final_board()
                if final:
                    self._publish(final, [])
            self.checkpoint()
        except StreamError as exc:
            log.warning(
                "could not checkpoint on shutdown (%s); the next start resumes from the last one", exc
            )
            self._drop(set(self.engines))  # leaving the group must not checkpoint or commit either
        finally:
            self.close()
            if self._blocklist is not None:
                self._blocklist.close()

    def _final_board(self) -> list[Message]:
        engines = list(self.engines.values())
        wms = [e.clock.watermark_ms for e in engines if e.clock.watermark_ms is not None]
        if not wms:
            return []
        if self.n_partitions == 1:
            return [engines[0].board.snapshot(wms[0])]
        if not self.is_publisher:
            return []
        if self._follower is not None:
            self._follower.poll(timeout_ms=200)
        out = [m for m in self._merge({}) if m["action"] != "board"]
        return [*out, self.merger.snapshot(self._merged_wm)]


def client_options(cfg: Config) -> dict[str, Any]:
    """Security options of both Kafka clients from ``[kafka]`` (only the ones that are set).

    kafka-python names (``ssl_certfile``, ...); :func:`~viraltrend.stream.kafka_confluent.librdkafka_options`
    renames them for librdkafka.  The SASL password comes from ``kafka.sasl_plain_password_file``
    (a file, trailing newline dropped) or ``kafka.sasl_plain_password`` (set it with
    ``VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD``), never from a command-line flag that ``ps`` shows.

    Raises
    ------
    ConfigError
        The password file cannot be read or is empty, or the password is given both ways.
    """
    k = cfg.kafka
    opts: dict[str, Any] = {}
    if k.security_protocol != "PLAINTEXT":
        opts["security_protocol"] = k.security_protocol
    if k.sasl_mechanism:
        opts["sasl_mechanism"] = k.sasl_mechanism
    if k.sasl_plain_username:
        opts["sasl_plain_username"] = k.sasl_plain_username
    password = _sasl_password(k.sasl_plain_password, k.sasl_plain_password_file)
    if password:
        opts["sasl_plain_password"] = password
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(k, key):
            opts[key] = getattr(k, key)
    if not k.ssl_check_hostname:
        opts["ssl_check_hostname"] = False
    return opts


def _sasl_password(inline: str, path: str) -> str:
    if not path:
        return inline
    if inline:
        msg = (
            "kafka.sasl_plain_password and kafka.sasl_plain_password_file are both set; "
            "give the SASL password one way (the file, or VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD)"
        )
        raise ConfigError(msg)
    try:
        password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"kafka.sasl_plain_password_file: cannot read {path}: {exc}; give a file holding the password"
        raise ConfigError(msg) from exc
    if not password:
        msg = f"kafka.sasl_plain_password_file: {path} is empty; it must hold the SASL password"
        raise ConfigError(msg)
    return password


def prepare_topics(cfg: Config, options: dict[str, Any]) -> None:
    """Create the topics (when allowed) or check that they exist; StreamError says what is wrong."""
    from viraltrend.stream.broker import create_topics, topic_exists

    k = cfg.kafka
    if k.create_topics:
        extra = {cfg.trust.blocklist_topic: 1} if cfg.trust.blocklist_topic else {}
        create_topics(
            k.bootstrap_servers,
            {k.input_topic: k.partitions, k.output_topic: 1, k.dlq_topic: 1, **extra},
            compacted=frozenset({k.output_topic, cfg.trust.blocklist_topic} - {""}),
            **options,
        )
        return
    missing = [
        t
        for t in (k.input_topic, k.output_topic, k.dlq_topic)
        if not topic_exists(k.bootstrap_servers, t, **options)
    ]
    if missing:
        msg = (
            f"topic(s) {', '.join(missing)} do not exist on {k.bootstrap_servers}; create them or pass "
            "--create-topics (kafka.create_topics = true)"
        )
        raise StreamError(msg)


def run_service(
    cfg: Config, *, exit_when_idle_s: float | None = None, log_level: str = "INFO", registry: Any = None
) -> int:
    """``viraltrend run``: metrics endpoint, topics, signal handling, then :meth:`Service.run`."""
    import faulthandler
    import signal

    from prometheus_client import CollectorRegistry

    from viraltrend.config import config_as_dict
    from viraltrend.metrics import serve_metrics

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("effective config: %s", json.dumps(config_as_dict(cfg)))
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    server, port = serve_metrics(registry, host=cfg.metrics.host, port=cfg.metrics.port)
    log.info("metrics at http://%s:%d/metrics", cfg.metrics.host, port)
    options = client_options(cfg)
    service = Service(
        cfg,
        metrics=metrics,
        client_options=options,
        options=ServiceOptions(exit_when_idle_s=exit_when_idle_s),
    )

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the batch, checkpointing, stopping", signum)
        service.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    faulthandler.register(
        signal.SIGUSR1, all_threads=True
    )  # kill -USR1 <pid>: every thread's stack to stderr
    try:
        prepare_topics(cfg, options)
        service.connect()
    except StreamError:
        server.shutdown()  # type: ignore[attr-defined]
        raise
    service.run()
    server.shutdown()  # type: ignore[attr-defined]
    log.info("stopped cleanly")
    return 0
