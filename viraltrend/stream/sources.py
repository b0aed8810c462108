"""The Source interface: where batches of decoded engagement events come from.

Implementations: :class:`viraltrend.stream.files.FileSource` (replay of NDJSON, CSV,
Parquet files) and :class:`viraltrend.stream.kafka_io.KafkaSource` (a live topic).  The
engine only ever sees :class:`~viraltrend.events.EventBatch` values and
:class:`~viraltrend.events.Reject` values from a source, so replay and live run the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from viraltrend.events import EventBatch, Reject

__all__ = ["Source"]


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
