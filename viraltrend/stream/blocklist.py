"""The blocklist follower: sellers and products an operator blocks, from a compacted topic."""

from __future__ import annotations

import logging
from typing import Any

from viraltrend.engine import Engine
from viraltrend.errors import StreamError
from viraltrend.stream.broker import _connect, kafka_errors

__all__ = ["BlocklistFollower", "Change"]

log = logging.getLogger("viraltrend.service")
#: One blocklist change: (kind ``seller`` or ``product``, id, reason, or None to unblock).
Change = tuple[str, str, str | None]


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

    def poll(self) -> list[Change]:
        """Changes since the last call: (kind, id, reason or None); StreamError if the broker fails."""
        changes: list[Change] = []
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

    def apply(self, engine: Engine, changes: list[Change] | None = None) -> None:
        """Apply ``changes`` to ``engine`` (None: the whole current blocklist, for a new engine)."""
        if changes is None:
            changes = [(kind, ident, reason) for (kind, ident), reason in self.state.items()]
        for kind, ident, reason in changes:
            engine.guard.set_blocked(kind, ident, reason)
