"""The live service's batch loop: consume, run the engines, publish, checkpoint, commit.

State is kept per input partition (one :class:`~viraltrend.engine.Engine` each), restored
from its checkpoint when the partition is assigned and checkpointed when it is revoked.
One turn of the loop:

1. poll a batch (decoded; bad records become rejects);
2. send each reject to the dead-letter topic, with its reason;
3. run each partition's events through that partition's engine;
4. publish the decisions (passed through for a single partition, merged otherwise: see
   :mod:`viraltrend.merge`) keyed by ``product_id`` / ``__board__`` (the producer sends them
   in the background; ``end_to_end_latency_seconds`` runs from the poll to this hand-over);
5. every ``checkpoint.interval_s`` (and on shutdown or revoke): checkpoint each engine with the
   offsets its state reflects, then commit those offsets.

**Guarantees.**  Offsets are committed only after the decisions of those events were
acknowledged and the state reflecting them was checkpointed.  After a crash the service
restores the checkpoint and re-reads from its offsets, so the state counts every event exactly
once; decisions made after the last checkpoint are published again (at-least-once), identical
apart from ``emitted_at`` and idempotent by key.  When the broker cannot be reached the loop
keeps its state, reports ``viraltrend_broker_up 0``, backs off and, once the broker answers
again, rolls back to its last checkpoint and replays from there, so nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from viraltrend.config import Config
from viraltrend.engine import Engine
from viraltrend.errors import StreamError
from viraltrend.events import EventBatch, Reject
from viraltrend.merge import BoardMerger
from viraltrend.metrics import Metrics
from viraltrend.stream.broker import reachable
from viraltrend.stream.checkpoint import CheckpointStore
from viraltrend.stream.kafka_io import KafkaSink, KafkaSource, dlq_record
from viraltrend.stream.sinks import stamp

__all__ = ["Service", "ServiceOptions"]

log = logging.getLogger("viraltrend.service")
BOARD_KEY = b"__board__"


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
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, **options
        )
        parts = self._consumer.partitions_for_topic(topic) or set()
        if not parts:
            self._consumer.close()
            msg = (
                f"blocklist topic {topic!r} does not exist on {bootstrap_servers}; "
                "create it (compacted) or unset trust.blocklist_topic"
            )
            raise StreamError(msg)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def poll(self) -> list[tuple[str, str, str | None]]:
        """Changes since the last call: (kind, id, reason or None)."""
        changes: list[tuple[str, str, str | None]] = []
        for records in self._consumer.poll(timeout_ms=0).values():
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
        """Close the consumer."""
        self._consumer.close()


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
        self.store = CheckpointStore(f"{cfg.checkpoint.dir}/{self.k.group_id}")
        self.engines: dict[int, Engine] = {}
        self.merger = BoardMerger(cfg.board)
        self.n_partitions = 1
        self._source_factory = source_factory
        self._sink_factory = sink_factory
        self._source: GroupSource | None = None
        self._sink: KafkaSink | None = None
        self._blocklist: BlocklistFollower | None = None
        self._last_checkpoint = time.monotonic()
        self._lag_due = 0.0
        self._probe_due = 0.0
        self._last_record_at = time.monotonic()
        self.stop_event = threading.Event()

    # ------------------------------------------------------------------ partitions
    def _restore(self, partitions: set[int]) -> None:
        """Rebalance hook (assign): restore each partition's checkpoint and seek to its offsets."""
        seek: dict[int, int] = {}
        self.metrics.rebalances.labels(kind="assigned").inc()
        for p in sorted(partitions):
            t0 = time.perf_counter()
            loaded = self.store.load(f"{self.k.input_topic}-{p}")
            if loaded is None:
                self.engines[p] = Engine(self.cfg)
                self._apply_blocklist(self.engines[p], None)
                log.info("partition %d: no checkpoint, starting fresh", p)
                continue
            arrays, meta, offsets = loaded
            self.engines[p] = Engine.restore(self.cfg, arrays, meta)
            self._apply_blocklist(self.engines[p], None)
            if p in offsets:
                seek[p] = offsets[p]
            self.metrics.restore_duration.observe(time.perf_counter() - t0)
            log.info("partition %d: restored checkpoint at offset %s", p, offsets.get(p))
        if seek and self._source is not None:
            self._source.seek(seek)
        self.merger.reset(m for e in self.engines.values() for m in e.board.members.values())
        self.metrics.assigned_partitions.set(len(self.engines))

    def _revoke(self, partitions: set[int]) -> None:
        """Rebalance hook (revoke): publish, checkpoint and commit, then drop the partitions' state."""
        self.checkpoint(only=partitions)
        for p in partitions:
            self.engines.pop(p, None)
        self.metrics.rebalances.labels(kind="revoked").inc()
        self.metrics.assigned_partitions.set(len(self.engines))

    def _lost(self, partitions: set[int]) -> None:
        for p in partitions:
            self.engines.pop(p, None)
        self.metrics.rebalances.labels(kind="lost").inc()
        self.metrics.assigned_partitions.set(len(self.engines))

    # ------------------------------------------------------------------ connections
    def connect(self) -> None:
        """Open the consumer and producer (the consumer joins the group on the first poll)."""
        self._sink = self._sink_factory(self.k.bootstrap_servers, **self.client_options)
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
        if self._source is not None:
            self._source.close()
        if self._sink is not None:
            self._sink.close()

    # ------------------------------------------------------------------ one batch
    def step(self) -> int:
        """Process one polled batch; return the number of records it held."""
        assert self._source is not None and self._sink is not None
        t0 = time.perf_counter()
        if self._blocklist is not None:
            changes = self._blocklist.poll()
            for engine in self.engines.values():
                self._apply_blocklist(engine, changes)
        batch, rejects = self._source.next_batch(self.k.max_batch_events)
        n = len(batch) + len(rejects)
        if n == 0:
            return 0
        self._last_record_at = time.monotonic()
        self._count_consumed(batch, rejects)
        t_engine = time.perf_counter()
        messages: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Any]] = {}
        for p in np.unique(batch.partition).tolist():
            got = self.engines.get(p)
            if got is None:  # assigned without a hook call (should not happen); start fresh
                got = self.engines[p] = Engine(self.cfg)
            engine = got
            part = batch if len(self.engines) == 1 else batch.take(batch.partition == p)
            msgs, late = engine.process(part)
            rejects.extend(late)
            messages.extend(msgs)
            for m in msgs:
                if m["action"] != "board":
                    latest[m["product_id"]] = m
        self.metrics.kernel_duration.observe(time.perf_counter() - t_engine)
        if len(self.engines) > 1:
            blocks = [m for m in messages if m["action"] == "block"]
            wm = max((e.clock.watermark_ms or 0) for e in self.engines.values())
            merged = self.merger.merge(
                (m for e in self.engines.values() for m in e.board.members.values()), wm, latest
            )
            messages = blocks + merged
        self._publish(messages, rejects)
        self.metrics.latency.observe(time.perf_counter() - t0)
        self.metrics.batch_duration.observe(time.perf_counter() - t0)
        self._update_gauges()
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint.interval_s:
            self.checkpoint()
        return n

    def _count_consumed(self, batch: EventBatch, rejects: list[Reject]) -> None:
        parts, counts = np.unique(batch.partition, return_counts=True)
        for p, c in zip(parts.tolist(), counts.tolist(), strict=True):
            self.metrics.consumed.labels(partition=str(p)).inc(c)
        for r in rejects:
            self.metrics.consumed.labels(partition=str(r.partition)).inc()

    def _publish(self, messages: list[dict[str, Any]], rejects: list[Reject]) -> None:
        assert self._sink is not None
        sink = self._sink
        now_ms = int(time.time() * 1000)
        for r in rejects:
            sink.send(self.k.dlq_topic, None, dlq_record(r, now_ms=now_ms))
            self.metrics.rejected.labels(reason=r.reason).inc()
            if r.reason == "late":
                self.metrics.late_dropped.inc()
        for m in messages:
            key = BOARD_KEY if m["action"] == "board" else m["product_id"].encode("utf-8")
            sink.send_json(self.k.output_topic, key, stamp(m, now_ms))
            self.metrics.board_changes.labels(action=m["action"]).inc()
        # No flush here: the producer batches on its IO thread.  Acknowledgement is awaited in
        # checkpoint() before any offset is committed, which is all the guarantee needs.

    def _update_gauges(self) -> None:
        engines = list(self.engines.values())
        self.metrics.tracked_products.set(sum(e.tracked_products for e in engines))
        self.metrics.state_bytes.set(sum(e.state_bytes for e in engines))
        board = len(self.merger.current) if len(engines) > 1 else sum(len(e.board.members) for e in engines)
        self.metrics.board_size.set(board)
        wms = [e.clock.watermark_ms for e in engines if e.clock.watermark_ms is not None]
        if wms:
            self.metrics.event_time_lag.set(time.time() - max(wms) / 1000.0)
        if time.monotonic() >= self._lag_due and self._source is not None:
            self._lag_due = time.monotonic() + 5.0
            for p, lag in self._source.lag().items():
                self.metrics.consumer_lag.labels(partition=str(p)).set(lag)

    @property
    def idle_s(self) -> float:
        """Seconds since the last polled batch held any record."""
        return time.monotonic() - self._last_record_at

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, only: set[int] | None = None) -> None:
        """Flush the producer, checkpoint each engine with its offsets, then commit those offsets."""
        if self._source is None or self._sink is None:
            return
        t0 = time.perf_counter()
        self._sink.flush()
        offsets = self._source.snapshot()
        done: dict[int, int] = {}
        for p, engine in sorted(self.engines.items()):
            if (only is not None and p not in only) or p not in offsets:
                continue
            arrays, meta = engine.state()
            self.store.save(f"{self.k.input_topic}-{p}", arrays, meta, {p: offsets[p]})
            done[p] = offsets[p]
        if done:
            self._source.commit(done)
        self._last_checkpoint = time.monotonic()
        self.metrics.checkpoint_duration.observe(time.perf_counter() - t0)
        self.metrics.last_checkpoint.set(time.time())

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Loop until :attr:`stop_event` is set (SIGTERM/SIGINT) or the input stays idle long enough."""
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
            if n or not self.engines:  # idle counts only once partitions are assigned
                idle_since = time.monotonic()
            elif self._broker_gone():
                continue
            elif self.options.exit_when_idle_s is not None and (
                time.monotonic() - idle_since >= self.options.exit_when_idle_s
            ):
                log.info("input idle for %.1f s: stopping", self.options.exit_when_idle_s)
                break
            self.metrics.broker_up.set(1)
        self.shutdown()

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
        """After a failed publish or poll: drop the clients and roll state back to the last checkpoint."""
        for closer in (self._source, self._sink):
            try:
                if closer is not None:
                    closer.close()
            except Exception as exc:  # noqa: BLE001 - the broker is gone; closing is best effort
                log.debug("closing after broker trouble: %s", exc)
        self._source = None
        self._sink = None
        self.engines = {}  # the next assignment restores them from their checkpoints

    def shutdown(self) -> None:
        """Finish: publish the final board, checkpoint, commit, close."""
        try:
            if self._sink is not None and self.engines:
                final = self._final_board()
                if final is not None:
                    self._publish([final], [])
            self.checkpoint()
        except StreamError as exc:
            log.warning(
                "could not checkpoint on shutdown (%s); the next start resumes from the last one", exc
            )
        finally:
            self.close()
            if self._blocklist is not None:
                self._blocklist.close()

    def _final_board(self) -> dict[str, Any] | None:
        engines = list(self.engines.values())
        wms = [e.clock.watermark_ms for e in engines if e.clock.watermark_ms is not None]
        if not wms:
            return None
        if len(engines) == 1:
            return engines[0].board.snapshot(wms[0])
        return self.merger.snapshot(max(wms))


def client_options(cfg: Config) -> dict[str, Any]:
    """kafka-python security options from ``[kafka]`` (only the ones that are set)."""
    k = cfg.kafka
    opts: dict[str, Any] = {}
    if k.security_protocol != "PLAINTEXT":
        opts["security_protocol"] = k.security_protocol
    if k.sasl_mechanism:
        opts["sasl_mechanism"] = k.sasl_mechanism
    if k.sasl_plain_username:
        opts["sasl_plain_username"] = k.sasl_plain_username
    if k.sasl_plain_password:
        opts["sasl_plain_password"] = k.sasl_plain_password
    if k.ssl_cafile:
        opts["ssl_cafile"] = k.ssl_cafile
    return opts


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
    import json
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
