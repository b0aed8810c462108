"""The live service's loop: poll, run the engines, publish, await acks, checkpoint, commit.

The service is made of parts with one job each:

- this module: :class:`Service`, the loop and its commit path (below), connections, recovery;
- :mod:`~viraltrend.stream.partitions`: the partitions this worker holds, one engine each, and
  their lifecycle (assign -> pause -> restore on the loop's thread, outside the client's
  heartbeat thread -> seek -> resume; revoke -> checkpoint and commit -> drop);
- :mod:`~viraltrend.stream.scaleout`: one board across workers (candidates shared, merged by the
  worker holding input partition 0);
- :mod:`~viraltrend.stream.gauges`: the metrics the loop reports;
- :mod:`~viraltrend.stream.blocklist`, :mod:`~viraltrend.stream.clients`: the blocklist follower,
  client options and topics.

**The commit path**, one turn of the loop (:meth:`Service.step`, then :meth:`Service.checkpoint`
every ``checkpoint.interval_s``, and on revoke and shutdown):

1. **poll** a batch (decoded; bad records become rejects), the blocklist's changes and the other
   workers' board candidates;
2. **engines**: each partition's events through that partition's engine (its duplicates, late and
   far-future events become rejects too); with several input partitions, share the boards and,
   as the board publisher, merge them;
3. **publish**: hand the decisions (key ``product_id`` / ``__board__``) and every reject's dead
   letter to the producer, which sends them in the background;
4. **await acks**: flush the producer; any message that failed (an error, a message too large, a
   delivery or flush timeout, a topic deleted meanwhile) fails the sink for good
   (:class:`~viraltrend.stream.kafka_io.KafkaSink`), so nothing after it is ever committed;
5. **checkpoint** each partition read since its last checkpoint: its state with the offsets that
   state reflects, stamped with the partition's epoch (fencing).  The loop only copies the state;
   a writer thread (:mod:`~viraltrend.stream.writer`, ``checkpoint.background``) saves it, most
   often as a delta on the last full checkpoint (:mod:`~viraltrend.stream.incremental`), while the
   loop goes on with the next turns; a revoke and the shutdown wait for it.  Right before a save
   becomes visible, the loop's thread checks again that this worker owns the partition (the writer
   waits for that check at the loop's next turn) and a save whose partition was lost is dropped;
6. **commit** exactly those offsets, once the writer reports the checkpoint durable (at the first
   turn after that).

**Guarantees.**  Offsets are committed only after every message produced for those events
(decisions, snapshots, dead letters, candidates) was acknowledged and the state reflecting them
was checkpointed.  When any step fails, the loop drops its engines *before* closing the clients
(leaving the group runs the revoke hook, which must then find nothing to checkpoint), reconnects
and restores the last checkpoints, so no offset is ever committed past an unpublished record.
After a crash the service restores the checkpoint and re-reads from its offsets, so the state
counts every event exactly once; what was published after the last checkpoint is published
again (at-least-once), identical apart from ``emitted_at`` / ``rejected_at``.  When the broker
cannot be reached the loop keeps its state, reports ``viraltrend_broker_up 0``, backs off and,
once the broker answers again, rolls back to its last checkpoint and replays from there.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from viraltrend.config import Config
from viraltrend.engine import Engine
from viraltrend.errors import CheckpointError, StreamError
from viraltrend.events import EventBatch, Reject
from viraltrend.messages import ENCODER, Message, message_key, stamp
from viraltrend.metrics import Metrics
from viraltrend.stream.blocklist import BlocklistFollower
from viraltrend.stream.broker import INTERNAL_TOPIC_CONFIGS, reachable
from viraltrend.stream.candidates import CandidatesFollower
from viraltrend.stream.changelog import ChangelogStore
from viraltrend.stream.checkpoint import ChainPolicy, LocalStore, StateStore
from viraltrend.stream.clients import client_options, prepare_topics
from viraltrend.stream.gauges import Gauges
from viraltrend.stream.kafka_io import KafkaSink, KafkaSource, create_topics, describe_topic, dlq_record
from viraltrend.stream.partitions import Partitions
from viraltrend.stream.scaleout import BoardShare
from viraltrend.stream.writer import CheckpointJob, CheckpointWriter

__all__ = ["Service", "ServiceOptions", "run_service"]

log = logging.getLogger("viraltrend.service")
#: Fault injection (the fault suite): a file whose appearance makes the service stop itself (SIGSTOP)
#: before publishing or right before a checkpoint's save becomes visible (see :meth:`Service._maybe_freeze`).
FREEZE_FILE_ENV = "VTFAULT_FREEZE_FILE"  # not VIRALTREND_*: those are config keys
#: An idle exit waits this many times ``exit_when_idle_s`` while the broker still reports lag.
IDLE_EXIT_PATIENCE = 10


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

    def session_expired(self) -> bool:
        """True when the group has surely evicted this member (no heartbeat answered in time)."""
        ...

    def assignment(self) -> set[int]:
        """The input partitions assigned to this member now."""
        ...

    def lag(self, *, fresh: bool = False) -> dict[int, int]:
        """Messages behind the end, per partition (``fresh``: ask the broker now)."""
        ...

    def close(self) -> None:
        """Leave the group and close."""
        ...


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How the loop runs (beyond the config)."""

    exit_when_idle_s: float | None = None  # stop after this long with nothing to read
    max_backoff_s: float = 5.0


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
        self.partitions = Partitions(cfg, metrics)
        self.board = BoardShare(cfg, self.partitions.engines, self.client_options)
        self.gauges = Gauges(metrics)
        self.n_partitions = 1
        self._source_factory = source_factory
        self._sink_factory = sink_factory
        self._source: GroupSource | None = None
        self._sink: KafkaSink | None = None
        self._blocklist: BlocklistFollower | None = None
        self._last_checkpoint = time.monotonic()
        self._probe_due = 0.0
        self._last_record_at = time.monotonic()
        self.stop_event = threading.Event()
        self._freeze_file = os.environ.get(FREEZE_FILE_ENV) or None
        self.writer = CheckpointWriter()  # checkpoints are written off the loop (checkpoint.background)
        self._held_job: CheckpointJob | None = None  # finished during a rebalance, committed next turn
        self._buffers: dict[
            int, dict[str, np.ndarray[Any, Any]]
        ] = {}  # partition -> snapshot buffers, reused
        #: ``viraltrend run``'s startup imports left to a thread (:func:`import_in_background`): awaited
        #: before the first restore, and what they made frozen then (:meth:`_after_preload`)
        self.preload: threading.Thread | None = None
        self._closing = False  # the final checkpoint is done: closing the clients saves nothing again

    @property
    def engines(self) -> dict[int, Engine]:
        """The engine of each input partition this worker holds."""
        return self.partitions.engines

    @property
    def changelog_topic(self) -> str:
        """The compacted topic holding checkpoints when ``checkpoint.store = "changelog"``."""
        return self.cfg.checkpoint.changelog_topic or f"{self.k.group_id}.state"

    @property
    def chain_policy(self) -> ChainPolicy:
        """When the store writes a delta and when a full checkpoint (``checkpoint.*``)."""
        c = self.cfg.checkpoint
        return ChainPolicy(
            incremental=c.incremental, max_deltas=c.max_deltas, max_chain_ratio=c.max_chain_ratio
        )

    @property
    def is_publisher(self) -> bool:
        """Whether this worker publishes the board: it holds input partition 0."""
        return self.board.is_publisher

    @property
    def idle_s(self) -> float:
        """Seconds since the last batch holding any record was done (0 while one is in hand).

        A batch's first engine call may compile kernels for a minute on a cold numba cache: the
        demo's "the board settled" waits on this, so it must not count that time as idle.
        """
        return max(time.monotonic() - self._last_record_at, 0.0)

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
                if self._input_left(time.monotonic() - idle_since):
                    continue
                log.info("input idle for %.1f s: stopping", self.options.exit_when_idle_s)
                break
            self.metrics.broker_up.set(1)

    def step(self) -> int:
        """One turn: steps 1-3 of the commit path, then 4-6 when a checkpoint is due.

        Returns the number of records read (input and candidates).
        """
        assert self._source is not None and self._sink is not None
        self._collect()  # step 6 of a checkpoint the writer finished since the last turn
        t0 = time.perf_counter()
        # 1. poll
        if self._blocklist is not None:
            changes = self._blocklist.poll()
            for engine in self.engines.values():
                self._blocklist.apply(engine, changes)
        batch, rejects = self._source.next_batch(self.k.max_batch_events)
        if self.partitions.fresh and self.store is not None:
            self.partitions.check_fresh_start(batch, rejects, self.store)
        shared = self.board.follower.poll() if self.board.follower is not None else 0
        n = len(batch) + len(rejects)
        if n == 0 and shared == 0 and not (self.board.announce and self.is_publisher):
            self._idle()
            return 0
        self._last_record_at = math.inf  # busy until this batch is done (idle_s is 0 meanwhile)
        if n:
            self.gauges.consumed(batch, rejects)
        # 2. engines (rejects grow by the events they refuse)
        messages, touched = self._run_engines(batch, rejects)
        self.gauges.rejected(rejects)  # counted as read, like consumed, before anything can fail
        if self._freeze_file is not None and n:
            self._maybe_freeze(self._freeze_file, "publish")
        # 3. publish: the scale-out turn (candidates, the merged board), dead letters, decisions; the
        # producer sends in the background, step 4 awaits the acks.  Not once evicted.
        self._check_membership("publishing")
        if self.n_partitions > 1:
            messages = self.board.turn(messages, touched, self._sink, self._source.snapshot())
        self._publish(messages, rejects)
        self.metrics.latency.observe(time.perf_counter() - t0)
        self.metrics.batch_duration.observe(time.perf_counter() - t0)
        self._update_gauges()
        # 4-6. await acks, checkpoint, commit
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint.interval_s:
            self.checkpoint()
        self._last_record_at = time.monotonic()
        return n + shared

    def _check_membership(self, what: str) -> None:
        """Fence this worker's own writes: :class:`StreamError` (roll back, rejoin) once evicted.

        A worker whose group session expired (frozen past ``session_timeout_ms``, say) no longer
        owns its partitions; what it would publish or checkpoint now comes from a superseded
        state.  This catches it before the write; a checkpoint's saves are checked again right
        before each becomes visible (:meth:`_owns`), and the changelog's epochs fence one that
        slips through (the session may expire between that check and the write).
        """
        if self._source is not None and self._source.session_expired():
            msg = (
                f"not {what}: no group heartbeat was answered within the session timeout, so the "
                "group has evicted this worker and its partitions may have a new owner"
            )
            raise StreamError(msg)

    def _owns(self, partition: int, epoch: int) -> bool:
        """Whether this worker still holds ``partition`` in ``epoch`` with its group session alive.

        The checkpoint writer's check before each save and right before the save becomes visible
        (:mod:`~viraltrend.stream.writer`); never raises (unsure is no).
        """
        source = self._source
        if source is None or partition not in self.partitions.engines:
            return False
        if self.partitions.epochs.get(partition, 0) != epoch:
            return False
        try:
            return not source.session_expired()
        except Exception as exc:  # noqa: BLE001 - e.g. the client's state changing under another thread
            log.debug("membership check of partition %d failed: %s", partition, exc)
            return False

    @staticmethod
    def _maybe_freeze(path: str, point: str) -> None:
        """Fault injection: once ``path`` holds ``point``, remove it and stop this process (SIGSTOP).

        ``publish``: between a batch's engines and its publication; ``checkpoint``: in a save,
        after its last ownership check, right before the write that makes it visible (the
        race no check can close: the changelog's epochs fence that save on restore).  The test
        resumes the process (SIGCONT) once the group evicted it and another worker took its
        partitions: what it then writes comes from a superseded state, and fencing must keep it
        harmless.
        """
        try:
            with open(path, encoding="utf-8") as fh:
                if fh.read().strip() != point:
                    return
            os.remove(path)
        except FileNotFoundError:
            return
        log.warning("fault injection (%s): stopping this process before %s", FREEZE_FILE_ENV, point)
        os.kill(os.getpid(), signal.SIGSTOP)
        log.warning("fault injection (%s): resumed", FREEZE_FILE_ENV)

    def _after_preload(self) -> None:
        """Once: wait for the background imports, and freeze their objects as the startup's were."""
        if self.preload is None:
            return
        t0 = time.perf_counter()
        self.preload.join()
        self.preload = None
        waited = time.perf_counter() - t0
        gc.collect()
        gc.freeze()
        log.info(
            "gc: %d objects frozen after the background imports (waited %.2f s)",
            gc.get_freeze_count(),
            waited,
        )

    def _idle(self) -> None:
        """Nothing read: the caught-up publisher's final snapshot, and a checkpoint when due."""
        if self.n_partitions > 1:
            snapshot = self.board.idle_snapshot()  # carries the newest event time: the final board
            if snapshot is not None:
                self._publish([snapshot], [])
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint.interval_s:
            self.checkpoint()  # idle, but what was read since the last checkpoint is not yet in one

    def _run_engines(self, batch: EventBatch, rejects: list[Reject]) -> tuple[list[Message], set[int]]:
        """Step 2: each partition's events through its engine; its refusals join ``rejects``."""
        t_engine = time.perf_counter()
        messages: list[Message] = []
        touched: set[int] = set()
        for p in np.unique(batch.partition).tolist():
            engine = self.partitions.engine(p, self._blocklist)
            part = batch if len(self.engines) == 1 else batch.take(batch.partition == p)
            msgs, late = engine.process(part)  # late: duplicates, late and far-future events
            rejects.extend(late)
            self.metrics.applied.labels(partition=str(p)).inc(len(part) - len(late))
            messages.extend(msgs)
            touched.add(p)
            if self.n_partitions > 1:  # kept until shared with the board publisher
                self.board.record(p, msgs)
        self.metrics.kernel_duration.observe(time.perf_counter() - t_engine)
        return messages, touched

    def _publish(self, messages: list[Message], rejects: list[Reject]) -> None:
        """Step 3: hand dead letters and decisions to the producer (acks are awaited in step 4)."""
        assert self._sink is not None
        sink = self._sink
        now_ms = int(time.time() * 1000)
        limit = sink.max_value_bytes()
        self._check_membership("publishing")  # evicted: nothing from a superseded state goes out
        for r in rejects:  # a dead letter too large is truncated (size and SHA-256 kept), never dropped
            sink.send(self.k.dlq_topic, None, dlq_record(r, now_ms=now_ms, max_bytes=limit))
        for m in messages:
            sink.send(self.k.output_topic, message_key(m), ENCODER.encode(stamp(m, now_ms)))  # encoded once
            self.metrics.board_changes.labels(action=m.action).inc()

    def checkpoint(self, only: set[int] | None = None, *, wait: bool = False) -> None:
        """Steps 4-6: await every ack, checkpoint each due partition with its offsets, commit them.

        With ``checkpoint.background`` (and neither ``only`` nor ``wait``: a revoke or shutdown
        waits), step 5 copies each due partition's state and hands it to the writer thread, and
        step 6 happens at a later turn, once the writer reports the checkpoint durable
        (:meth:`_collect`).  While the writer is still busy with the previous checkpoint, a due
        one waits for the next turn.
        """
        if self._source is None or self._sink is None or self.store is None:
            return
        sync = wait or only is not None or not self.cfg.checkpoint.background
        self._collect(block=sync)
        if self.writer.busy:  # the previous checkpoint is still being written: try again next turn
            return
        t0 = time.perf_counter()
        offsets = self._source.snapshot()
        checkpointed = self.partitions.checkpointed
        # a revoke saves its partitions whatever was read; but leaving the group on shutdown revokes
        # them right after the final checkpoint, which left nothing unsaved
        skip_unchanged = only is None or self._closing
        due = [
            (p, engine)
            for p, engine in sorted(self.engines.items())
            if (only is None or p in only)
            and p in offsets
            and not (skip_unchanged and checkpointed.get(p) == offsets[p])  # nothing read since
        ]
        self._last_checkpoint = time.monotonic()
        if not due:
            if only is not None and self._closing:  # await what the revoke shared (candidates) all the same
                self._sink.flush()
            return
        # 4. await acks: every output of what was read is acknowledged, or StreamError: no commit
        self._sink.flush()
        # 5. checkpoint: the state with the offsets it reflects, stamped with the partition's epoch;
        # each save checks again that this worker owns the partition right before it becomes visible
        self._check_membership("checkpointing")
        items = []
        for p, engine in due:
            arrays, meta = self._snapshot(p, engine)
            items.append((p, arrays, meta, offsets[p], self.partitions.epochs.get(p, 0)))
        freeze = self._freeze_file
        job = CheckpointJob(
            self.store,
            items,
            owns=self._owns,
            before_visible=None if freeze is None else lambda: self._maybe_freeze(freeze, "checkpoint"),
        )
        log.debug(
            "checkpoint of %d partition(s): state copied in %.3f s", len(items), time.perf_counter() - t0
        )
        if sync:
            job.run()
            self._complete(job)
        else:
            self.writer.submit(job)

    def _snapshot(self, p: int, engine: Engine) -> tuple[dict[str, Any], dict[str, Any]]:
        """Partition ``p``'s state as a copy the writer can save while the engine goes on.

        The largest arrays are copied into the buffers of ``p``'s last checkpoint (the writer is
        done with them): copying into memory already mapped costs a fraction of fresh memory's
        page faults, which made the copy seconds long at a million products.
        """
        arrays, meta = engine.state(copy=False)
        buffers = self._buffers.setdefault(p, {})
        for name, arr in arrays.items():
            if arr.flags.owndata:  # already a copy
                continue
            buf = buffers.get(name)
            if buf is None or buf.shape != arr.shape or buf.dtype != arr.dtype:
                buf = buffers[name] = np.empty_like(arr)
            np.copyto(buf, arr)
            arrays[name] = buf
        return arrays, json.loads(json.dumps(meta))  # JSON round trip: no list or dict shared with the engine

    def _collect(self, *, block: bool = False) -> None:
        """Step 6 of a checkpoint the writer finished: commit its offsets (or raise its error)."""
        job = self._held_job or (self.writer.wait() if block else self.writer.poll())
        self._held_job = None
        if job is not None:
            self._complete(job)

    def _complete(self, job: CheckpointJob) -> None:
        """Commit the offsets of the partitions ``job`` saved that this worker still holds in that epoch."""
        done = {
            p: o
            for p, o in job.done.items()
            if p in self.engines and self.partitions.epochs.get(p, 0) == job.epochs.get(p)
        }
        if job.done:  # before the lag reads 0: a scrape that sees no lag sees this checkpoint's figures
            self.metrics.checkpoint_bytes.set(job.size)
            self.metrics.checkpoint_duration.observe(job.finished - job.started)
            self.metrics.last_checkpoint.set(time.time())
        for p, o in done.items():
            self.partitions.checkpointed[p] = o
            self.metrics.changelog_lag.labels(partition=str(p)).set(0)
        if done and self._source is not None:
            # 6. commit exactly those offsets
            self._source.commit(done)
        if job.error is not None:
            raise job.error

    def _update_gauges(self) -> None:
        if self.n_partitions > 1 and self.is_publisher:  # the publisher knows the merged board
            board = len(self.board.merger.current)
        else:  # the others (and a one-partition run) their own partitions' part of it
            board = sum(len(e.board.members) for e in self.engines.values())
        lag = positions = None
        if self._source is not None and self.gauges.lag_due():
            lag, positions = self._source.lag(), self._source.snapshot()
        self.gauges.after_batch(
            self.engines,
            board_size=board,
            lag=lag,
            positions=positions,
            checkpointed=self.partitions.checkpointed,
            publisher=self.is_publisher,
        )

    # ------------------------------------------------------------------ partition lifecycle (source hooks)
    def _restore(self, partitions: set[int]) -> None:
        """Assign hook, on the loop's thread: restore each partition's checkpoint, seek to its offsets."""
        assert self.store is not None
        self._after_preload()  # before the first engine is built
        if self.writer.busy:  # a checkpoint of a partition may be in flight: load after it
            self._held_job = self.writer.wait()
        was_publisher = self.is_publisher
        self.metrics.rebalances.labels(kind="assigned").inc()
        generation = self._source.generation() if self._source is not None else None
        log.info("assigned partitions %s in group generation %s", sorted(partitions), generation)
        seek = self.partitions.restore(
            partitions, self.store, generation=generation, blocklist=self._blocklist
        )
        if seek and self._source is not None:
            self._source.seek(seek)
        self.board.assigned(partitions, was_publisher=was_publisher, n_partitions=self.n_partitions)
        self.gauges.state(self.engines.values())  # restored state shows before the first batch
        self.gauges.partitions(len(self.engines), publisher=self.is_publisher)

    def _revoke(self, partitions: set[int]) -> None:
        """Revoke hook: share, publish, checkpoint and commit, then drop the partitions' state."""
        if self.n_partitions > 1 and self._source is not None and self._sink is not None:
            held = partitions & set(self.engines)
            self.board.share(held, self._sink, self._source.snapshot(), force=True)
        self.checkpoint(only=partitions)
        self._drop(partitions)
        self.metrics.rebalances.labels(kind="revoked").inc()

    def _lost(self, partitions: set[int]) -> None:
        self._drop(partitions)
        self.metrics.rebalances.labels(kind="lost").inc()

    def _drop(self, partitions: set[int]) -> None:
        self.partitions.drop(partitions)
        for p in partitions:
            self._buffers.pop(p, None)
        self.board.forget(partitions)
        for p in partitions:
            self.gauges.forget(p)  # not ours any more
        self.gauges.partitions(len(self.engines), publisher=self.is_publisher)
        self.gauges.state(self.engines.values())

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
            internal[self.board.topic] = 1
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
                    policy=self.chain_policy,
                    reader="confluent" if self.k.client == "confluent" else "kafka-python",
                    **self.client_options,
                )
            else:
                self.store = LocalStore(
                    f"{self.cfg.checkpoint.dir}/{self.k.group_id}",
                    self.k.input_topic,
                    policy=self.chain_policy,
                )
        if self.n_partitions > 1 and self.board.follower is None:
            self.board.follower = CandidatesFollower(
                self.k.bootstrap_servers, self.board.topic, self.client_options
            )
            self.board.follower.catch_up()
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
            session_timeout_ms=self.k.session_timeout_ms,
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

    def close(self) -> None:
        """Close the clients (after :meth:`checkpoint`)."""
        self.writer.close()
        for closer in (self._source, self._sink, self.board.follower, self.store):
            if closer is not None:
                closer.close()
        self.board.follower = None
        self.store = None

    def _input_left(self, idle_s: float) -> bool:
        """Whether idle polls hide input still on the broker (a starved broker's fetch can be slow).

        An idle exit stops only once every assigned partition is read to the broker's end offset,
        or once polls have returned nothing for :data:`IDLE_EXIT_PATIENCE` times the idle limit
        despite the lag (then with a warning: the fetches are failing, not slow).
        """
        assert self._source is not None and self.options.exit_when_idle_s is not None
        try:
            lag = self._source.lag(fresh=True)
            assigned = self._source.assignment()
        except StreamError as exc:
            log.debug("lag unavailable at the idle exit: %s", exc)
            return False
        # a partition whose position is not known yet counts as read, as before
        behind = {p: n for p, n in sorted(lag.items()) if n > 0 and p in assigned}
        if not behind:
            return False
        give_up = idle_s >= IDLE_EXIT_PATIENCE * self.options.exit_when_idle_s
        log.log(
            logging.WARNING if give_up else logging.DEBUG,
            "nothing read for %.1f s, though partitions %s lag %s: %s",
            idle_s,
            list(behind),
            list(behind.values()),
            "stopping" if give_up else "reading on",
        )
        return not give_up

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
        """After a failed step: drop the clients and roll state back to the last checkpoint.

        The engines go first: closing the source leaves the group, which runs the revoke hook,
        and that hook must find nothing to checkpoint or commit (what was read since the last
        checkpoint may not have been published).
        """
        self._drop(set(self.engines))  # the next assignment restores them from their checkpoints
        self._last_record_at = time.monotonic()  # the failed batch is no longer in hand (idle_s counts again)
        job = self.writer.wait() or self._held_job  # durable or not, nothing is committed now
        self._held_job = None
        if job is not None and job.error is not None:
            log.debug("the checkpoint in flight failed too: %s", job.error)
        for closer in (self._source, self._sink, self.board.follower, self.store):
            try:
                if closer is not None:
                    closer.close()
            except Exception as exc:  # noqa: BLE001 - the broker is gone; closing is best effort
                log.debug("closing after broker trouble: %s", exc)
        self._source = None
        self._sink = None
        self.board.follower = None
        if self.cfg.checkpoint.store == "changelog":
            self.store = None  # reopened on connect

    def shutdown(self) -> None:
        """Finish: publish the final board (the publisher only), checkpoint, commit, close."""
        t0 = time.perf_counter()
        t_saved = None
        try:
            if self._sink is not None and self.engines:
                final = self._final_board()
                if final:
                    self._publish(final, [])
            self.checkpoint(wait=True)
            self._closing = True
            t_saved = time.perf_counter()
        except StreamError as exc:
            log.warning(
                "could not checkpoint on shutdown (%s); the next start resumes from the last one", exc
            )
            self._drop(set(self.engines))  # leaving the group must not checkpoint or commit either
        finally:
            self.close()
            if self._blocklist is not None:
                self._blocklist.close()
        if t_saved is not None:
            log.info(
                "shutdown: final board and checkpoint in %.2f s, clients closed in %.2f s",
                t_saved - t0,
                time.perf_counter() - t_saved,
            )

    def _final_board(self) -> list[Message]:
        engines = list(self.engines.values())
        wms = [e.clock.watermark_ms for e in engines if e.clock.watermark_ms is not None]
        if not wms:
            return []
        if self.n_partitions == 1:
            return [engines[0].board.snapshot(wms[0])]
        return self.board.final_board()


def import_in_background(cfg: Config) -> threading.Thread | None:
    """Import what the first engine needs but startup does not, on a thread; None if nothing.

    The online model's library (river, which pulls in ``scipy.stats``: ~0.9 s of CPU on a quiet
    machine, several seconds under load) is needed only once a partition is assigned and its
    engine built.  Until then the service connects and joins its consumer group, which is mostly
    waiting (about 3 s on Tansu): imported meanwhile, it no longer delays the first event.  The
    engine's own import waits for this one if it is still running (Python's import lock); an
    error here is left to that import to raise.
    """
    if not cfg.model.enabled:
        return None

    def _import() -> None:
        try:
            import river.compose
            import river.linear_model
            import river.metrics
            import river.optim
            import river.preprocessing
            import river.utils  # noqa: F401 - imported for the engine's later use
        except Exception as exc:  # noqa: BLE001 - the engine's import reports it
            log.debug("background import of river failed: %s", exc)

    thread = threading.Thread(target=_import, name="viraltrend-imports", daemon=True)
    thread.start()
    return thread


def _freeze_startup_objects() -> None:
    """Collect once, then move every object alive to the permanent generation (``gc.freeze``).

    After the imports and the connections the process holds ~150k long-lived objects (numba,
    llvmlite, scikit-learn, kafka-python, prometheus_client); every full collection the loop's
    short-lived objects trigger walked all of them: ~100 ms of CPU each, ~15 ms once they are
    frozen (bench_service, 300k events: 0.2-0.8 µs per event less).  The collection right before
    the freeze frees what is garbage already, so nothing collectable is kept; objects made later
    (engines, restored state, batches) are collected as before.
    """
    gc.collect()
    gc.freeze()
    log.info("gc: %d objects alive after startup frozen (never walked again)", gc.get_freeze_count())


def run_service(
    cfg: Config, *, exit_when_idle_s: float | None = None, log_level: str = "INFO", registry: Any = None
) -> int:
    """``viraltrend run``: metrics endpoint, topics, signal handling, then :meth:`Service.run`."""
    import faulthandler

    from prometheus_client import CollectorRegistry

    from viraltrend.config import config_as_dict
    from viraltrend.metrics import serve_metrics, stop_metrics

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preload = import_in_background(cfg)  # while the service connects and its consumer joins the group
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
    service.preload = preload

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
        stop_metrics(server)
        raise
    _freeze_startup_objects()
    service.run()
    stop_metrics(server)
    log.info("stopped cleanly")
    return 0
