"""The service's gauges and per-partition counters: what the loop reports after each batch."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping

import numpy as np

from viraltrend.engine import Engine
from viraltrend.events import EventBatch, Reject
from viraltrend.metrics import Metrics

__all__ = ["Gauges"]

log = logging.getLogger("viraltrend.service")


class Gauges:
    """Sets the service's gauges from its engines; the loop calls it, it never changes state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._lag_due = 0.0
        self._log_due = 0.0

    def consumed(self, batch: EventBatch, rejects: list[Reject]) -> None:
        """Count a polled batch's records (events and rejects) per partition."""
        parts, counts = np.unique(batch.partition, return_counts=True)
        for p, c in zip(parts.tolist(), counts.tolist(), strict=True):
            self.metrics.consumed.labels(partition=str(p)).inc(c)
        for r in rejects:
            self.metrics.consumed.labels(partition=str(r.partition)).inc()

    def rejected(self, rejects: list[Reject]) -> None:
        """Count rejects as read (a failed send re-reads, and counts, them and their events again)."""
        for r in rejects:
            self.metrics.rejected.labels(reason=r.reason).inc()
            if r.reason == "late":
                self.metrics.late_dropped.inc()

    def state(self, engines: Iterable[Engine]) -> None:
        """Tracked products, state bytes, the bounded id tables and cap evictions over ``engines``."""
        held = list(engines)
        self.metrics.tracked_products.set(sum(e.tracked_products for e in held))
        self.metrics.state_bytes.set(sum(e.state_bytes for e in held))
        ids = {
            "products": sum(e.tracked_products for e in held),
            "sellers": sum(len(e.sellers) for e in held),
            "categories": sum(len(e.categories) for e in held),
            "users": sum(len(e.users) for e in held),
            "dedup": sum(len(e.dedup) for e in held if e.dedup is not None),
        }
        for kind, n in ids.items():
            self.metrics.tracked_ids.labels(kind=kind).set(n)
        self.metrics.evicted_over_cap.set(sum(e.stats.evicted_over_cap for e in held))

    def partitions(self, n_assigned: int, *, publisher: bool) -> None:
        """How many partitions this worker holds, and whether it publishes the board."""
        self.metrics.assigned_partitions.set(n_assigned)
        self.metrics.board_publisher.set(int(publisher))

    def forget(self, partition: int) -> None:
        """Drop the per-partition gauges of a partition this worker no longer holds."""
        for gauge in (self.metrics.consumer_lag, self.metrics.changelog_lag):
            with contextlib.suppress(KeyError):
                gauge.remove(str(partition))

    def after_batch(
        self,
        engines: Mapping[int, Engine],
        *,
        board_size: int,
        lag: Mapping[int, int] | None,
        positions: Mapping[int, int] | None,
        checkpointed: Mapping[int, int],
        publisher: bool,
    ) -> None:
        """The gauges after a batch; ``lag`` and ``positions`` are read only when :meth:`lag_due`."""
        self.state(engines.values())
        self.metrics.board_size.set(board_size)
        wms = [e.clock.watermark_ms for e in engines.values() if e.clock.watermark_ms is not None]
        if wms:
            self.metrics.event_time_lag.set(time.time() - max(wms) / 1000.0)
        self._model(list(engines.values()))
        if lag is None or positions is None:
            return
        for p, behind in lag.items():
            self.metrics.consumer_lag.labels(partition=str(p)).set(behind)
        for p, pos in positions.items():
            if p in checkpointed:
                self.metrics.changelog_lag.labels(partition=str(p)).set(pos - checkpointed[p])
        if time.monotonic() >= self._log_due:
            self._log_due = time.monotonic() + 30.0
            log.info(
                "partitions %s at offsets %s, checkpointed %s; board publisher: %s",
                sorted(engines),
                dict(positions),
                dict(checkpointed),
                publisher,
            )

    def lag_due(self) -> bool:
        """Whether to read the consumer lag now (every 5 s: it asks the broker)."""
        if time.monotonic() < self._lag_due:
            return False
        self._lag_due = time.monotonic() + 5.0
        return True

    def _model(self, engines: list[Engine]) -> None:
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
