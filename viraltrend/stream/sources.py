"""The Source interface: where batches of decoded engagement events come from.

Implementations: :class:`viraltrend.stream.files.FileSource` (replay of NDJSON, CSV,
Parquet files) and :class:`viraltrend.stream.kafka_io.KafkaSource` (a live topic).  The
engine only ever sees :class:`~viraltrend.events.EventBatch` values and
:class:`~viraltrend.events.Reject` values from a source, so replay and live run the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from viraltrend.errors import ConfigError
from viraltrend.events import EventBatch, Reject
from viraltrend.stream.decode import decode_records

__all__ = ["KafkaGroupSource", "Source", "reject_blanks"]


class Source(ABC):
    """A typed, batch-at-a-time source of decoded events (bytewax / quix style)."""

    @abstractmethod
    def next_batch(self, max_events: int) -> tuple[EventBatch, list[Reject]]:
        """Return at most ``max_events`` records, decoded: the valid events and the rejects.

        Returns at once with an empty batch when idle; never blocks longer than the
        source's poll timeout.  Valid events keep their arrival order.
        """

    @abstractmethod
    def snapshot(self) -> dict[int, int]:
        """Per partition, the offset of the next record to read (after the last one returned)."""

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True when no more records will ever come (end of files); False for live topics."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, sockets and threads.  Safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PartitionsCallback = Callable[[set[int]], None]


class KafkaGroupSource(Source):
    """What the two consumer-group sources share (kafka-python and librdkafka).

    :class:`~viraltrend.stream.kafka_io.KafkaSource` and
    :class:`~viraltrend.stream.kafka_confluent.ConfluentSource` differ in their client and in how
    their rebalance hooks run; they keep the read positions, decode a partition's raw values, check
    offsets to commit and hand a hook's exception to the caller the same way, here.
    """

    def _init_group_source(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        *,
        poll_timeout_ms: int,
        commit_timeout_s: float,
        lag_interval_s: float,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
        on_lost: PartitionsCallback | None,
        client_options: Mapping[str, Any],
        reserved: frozenset[str],
    ) -> None:
        taken = reserved & client_options.keys()
        if taken:
            msg = f"{type(self).__name__} sets {sorted(taken)} itself; remove them from the client options"
            raise ConfigError(msg)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_timeout_s = commit_timeout_s
        self.lag_interval_s = lag_interval_s
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._ends: dict[int, int] = {}  # partition -> end offset last asked
        self._ends_due = 0.0
        self._hook_error: BaseException | None = None
        self._closed = False

    def snapshot(self) -> dict[int, int]:
        """Per assigned partition read or sought, the offset of the next record to read."""
        return dict(self._next)

    @property
    def exhausted(self) -> bool:
        """Always False: a live topic never ends."""
        return False

    def session_expired(self) -> bool:
        """True when this member's group session has surely expired.

        No heartbeat was answered within the session timeout (the process was frozen, or cut
        off), so the group has evicted it and its partitions may have a new owner.  False when
        the client cannot tell (librdkafka).
        """
        return False

    def _decode(
        self, partition: int, raw: Sequence[bytes | None], offsets: NDArray[np.int64]
    ) -> tuple[EventBatch, list[Reject]]:
        """Decode one partition's values (offset order); empty values and tombstones are rejects."""
        values = [b"" if v is None else v for v in raw] if None in raw else cast("Sequence[bytes]", raw)
        batch, bad = decode_records(values, offsets=offsets, partition=partition, source=self.topic)
        if len(batch) + len(bad) < len(values):
            bad = reject_blanks(values, offsets, batch, bad, self.topic, partition)
        self._next[partition] = int(offsets[-1]) + 1
        return batch, bad

    @staticmethod
    def _checked(offsets: Mapping[int, int]) -> dict[int, int]:
        """``offsets`` as ints, each >= 0 (ValueError names the partition otherwise)."""
        out = {}
        for partition, offset in offsets.items():
            if int(offset) < 0:
                msg = f"offsets[{partition}] must be >= 0, got {offset}"
                raise ValueError(msg)
            out[int(partition)] = int(offset)
        return out

    def _drop_positions(self, partitions: set[int]) -> None:
        """Drop the positions of partitions this source no longer holds."""
        for p in partitions:
            self._next.pop(p, None)
            self._ends.pop(p, None)

    def _raise_hook_error(self, cause: BaseException | None) -> None:
        error, self._hook_error = self._hook_error, None
        if error is not None:
            raise error from cause


def reject_blanks(
    raw: Sequence[bytes],
    offsets: NDArray[np.int64],
    batch: EventBatch,
    bad: list[Reject],
    topic: str,
    partition: int,
) -> list[Reject]:
    """Reject the empty values the decoder skips: on a topic they are not events, they are bad input."""
    seen = np.concatenate([batch.offset, np.array([r.offset for r in bad], np.int64)])
    blank = np.flatnonzero(~np.isin(offsets, seen)).tolist()
    detail = "the message value is empty (a tombstone or blank record); expected a JSON object"
    extra = [Reject(raw[i], "bad_json", detail, topic, partition, int(offsets[i])) for i in blank]
    return sorted([*bad, *extra], key=lambda r: r.offset)
