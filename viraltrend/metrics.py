"""Prometheus metrics of viraltrend, all built in one place.

Every metric lives under ``namespace="viraltrend"`` in the registry passed in, so each test
can use a fresh :class:`~prometheus_client.CollectorRegistry`.  Counters end in ``_total``;
histograms are in seconds; no label ever carries a product, user or seller id (per-product
detail goes to the decisions topic).  Label values come from fixed sets created at start-up.

Examples
--------
>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = Metrics(reg)
>>> m.rejected.labels(reason="bad_json").inc()
>>> reg.get_sample_value("viraltrend_events_rejected_total", {"reason": "bad_json"})
1.0
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from viraltrend import __version__
from viraltrend.events import REJECT_REASONS

__all__ = ["DECISION_ACTIONS", "Metrics", "serve_metrics", "stop_metrics"]

DECISION_ACTIONS = ("promote", "update", "demote", "block", "board")

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    """All viraltrend metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "viraltrend"
        self.registry = registry
        self.consumed = Counter(
            "events_consumed",
            "Records consumed from the input, valid or not.",
            ["partition"],
            namespace=ns,
            registry=registry,
        )
        self.applied = Counter(
            "events_applied",
            "Events applied to the state; consumed = applied + the sum of rejected over reasons.",
            ["partition"],
            namespace=ns,
            registry=registry,
        )
        self.rejected = Counter(
            "events_rejected",
            "Records refused, by reason (sent to the dead-letter topic); duplicates included.",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
        self.late_dropped = Counter(
            "events_late_dropped", "Events older than the allowed lateness.", namespace=ns, registry=registry
        )
        self.board_changes = Counter(
            "board_changes",
            "Decision messages published, by action.",
            ["action"],
            namespace=ns,
            registry=registry,
        )
        for action in DECISION_ACTIONS:
            self.board_changes.labels(action=action)
        self.batch_duration = Histogram(
            "batch_duration_seconds",
            "Wall time to process one batch end to end.",
            namespace=ns,
            registry=registry,
            buckets=_FAST,
        )
        self.kernel_duration = Histogram(
            "kernel_update_duration_seconds",
            "Wall time in the engine per batch.",
            namespace=ns,
            registry=registry,
            buckets=_FAST,
        )
        self.checkpoint_duration = Histogram(
            "checkpoint_duration_seconds",
            "Wall time to write a checkpoint.",
            namespace=ns,
            registry=registry,
            buckets=_LATENCY,
        )
        self.latency = Histogram(
            "end_to_end_latency_seconds",
            "From a batch's arrival (poll) to its decisions being published.",
            namespace=ns,
            registry=registry,
            buckets=_LATENCY,
        )
        self.event_time_lag = Gauge(
            "event_time_lag_seconds",
            "Wall clock minus the event-time watermark.",
            namespace=ns,
            registry=registry,
        )
        self.last_checkpoint = Gauge(
            "last_checkpoint_timestamp_seconds",
            "Wall time of the last checkpoint.",
            namespace=ns,
            registry=registry,
        )
        self.tracked_products = Gauge(
            "tracked_products", "Products holding state.", namespace=ns, registry=registry
        )
        self.state_bytes = Gauge(
            "state_bytes", "Bytes of per-product numeric state.", namespace=ns, registry=registry
        )
        self.tracked_ids = Gauge(
            "tracked_ids",
            "Ids held by the engines' bounded tables, by kind: products, sellers, categories (released"
            " with their last product), users (released after the trust windows), dedup (event ids).",
            ["kind"],
            namespace=ns,
            registry=registry,
        )
        self.evicted_over_cap = Gauge(
            "products_evicted_over_cap",
            "Products evicted because the state held state.max_products (running total of the held state).",
            namespace=ns,
            registry=registry,
        )
        self.board_size = Gauge("board_size", "Products on the board.", namespace=ns, registry=registry)
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Messages behind the end of the input, per partition.",
            ["partition"],
            namespace=ns,
            registry=registry,
        )
        self.broker_up = Gauge(
            "broker_up",
            "1 while the broker answers, 0 while it is unreachable.",
            namespace=ns,
            registry=registry,
        )
        self.broker_errors = Counter(
            "broker_errors",
            "Broker operations that failed and were retried.",
            namespace=ns,
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "assigned_partitions", "Input partitions this worker owns.", namespace=ns, registry=registry
        )
        self.rebalances = Counter(
            "rebalances",
            "Partition assignments and revocations, by kind.",
            ["kind"],
            namespace=ns,
            registry=registry,
        )
        for kind in ("assigned", "revoked", "lost"):
            self.rebalances.labels(kind=kind)
        self.restore_duration = Histogram(
            "restore_duration_seconds",
            "Wall time to restore a partition's state.",
            namespace=ns,
            registry=registry,
            buckets=_LATENCY,
        )
        self.changelog_lag = Gauge(
            "changelog_lag",
            "Input records processed but not yet checkpointed (how far the changelog trails), per partition.",
            ["partition"],
            namespace=ns,
            registry=registry,
        )
        self.checkpoint_bytes = Gauge(
            "checkpoint_bytes",
            "Size of the last checkpoint written, summed over this worker's partitions.",
            namespace=ns,
            registry=registry,
        )
        self.board_publisher = Gauge(
            "board_publisher",
            "1 on the worker that publishes the merged board (it holds input partition 0), else 0.",
            namespace=ns,
            registry=registry,
        )
        self.model_roc_auc = Gauge(
            "model_roc_auc",
            "Online model: progressive ROC AUC (predict, then learn), label-weighted over partitions.",
            namespace=ns,
            registry=registry,
        )
        self.model_log_loss = Gauge(
            "model_log_loss",
            "Online model: progressive-validation log loss, label-weighted over partitions.",
            namespace=ns,
            registry=registry,
        )
        self.model_precision = Gauge(
            "model_precision",
            "Online model: progressive-validation precision at the 0.5 cut, label-weighted over partitions.",
            namespace=ns,
            registry=registry,
        )
        self.model_labels_seen = Gauge(
            "model_labels_seen", "Online model: delayed labels learned from.", namespace=ns, registry=registry
        )
        self.model_warm = Gauge(
            "model_warm",
            "Online model: partitions whose model has seen enough labels to decide (else the rule decides).",
            namespace=ns,
            registry=registry,
        )
        self.build_info = Gauge(
            "build_info",
            "Always 1; the version is in the label.",
            ["version"],
            namespace=ns,
            registry=registry,
        )
        self.build_info.labels(version=__version__).set(1)


def serve_metrics(registry: CollectorRegistry, *, host: str, port: int) -> tuple[object, int]:
    """Serve ``registry`` at ``http://host:port/metrics`` in a daemon thread; returns (server, port).

    Port 0 picks a free port; the port actually bound is returned.
    """
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_address[1])


def stop_metrics(server: object) -> None:
    """Stop a server of :func:`serve_metrics` at once, not at the next turn of its 0.5 s poll.

    ``shutdown()`` asks the server's ``serve_forever`` loop to stop and waits until it does; the
    loop looks between two 0.5 s ``select`` calls, so a stop waited 0.25 s on average.  A
    connection wakes the loop (it is closed without a request, which the server drops).
    """
    srv: Any = server
    waiter = threading.Thread(target=srv.shutdown, name="metrics-shutdown", daemon=True)
    waiter.start()
    host, port = srv.server_address[:2]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    while waiter.is_alive():
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=1.0).close()
        waiter.join(0.05)
