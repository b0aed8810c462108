"""Sinks for decision messages and rejects: NDJSON files (replay) and, via kafka_io, topics (live).

A decision message leaves the engine with ``emitted_at = None``; the sink stamps the wall
clock at publication (the only wall-clock value in the output, so replays compare equal
once ``emitted_at`` is ignored).  A reject is written as the same
:class:`~viraltrend.messages.DeadLetter` record as on the dead-letter topic, truncated (full
size and SHA-256 kept) past the same limit, so a replay's rejects file and the live DLQ hold
byte-identical records apart from ``rejected_at``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Self

from viraltrend.events import Reject
from viraltrend.messages import ENCODER, Message, dead_letter, stamp

__all__ = ["DecisionFile", "RejectsFile", "stamp"]


class _NdjsonFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = self.path.open("wb")
        self.count = 0

    def _write(self, encoded: bytes) -> None:
        self._fh.write(encoded + b"\n")
        self.count += 1

    def close(self) -> None:
        """Flush and close the file."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DecisionFile(_NdjsonFile):
    """Writes decision messages, one JSON object per line, stamping ``emitted_at``."""

    def write(self, messages: list[Message]) -> None:
        """Append ``messages`` in order (one ``encode_lines`` call and one file write for them all)."""
        if not messages:
            return
        now = int(time.time() * 1000)
        for m in messages:
            stamp(m, now)
        self._fh.write(ENCODER.encode_lines(messages))  # each message's encode() and a newline
        self.count += len(messages)


class RejectsFile(_NdjsonFile):
    """Writes rejects as dead-letter records (NDJSON), each at most ``max_bytes`` long.

    ``max_bytes`` is the longest dead letter the live service would send (``kafka.max_message_bytes``
    less the framing); None keeps every original whole.
    """

    def __init__(self, path: str | Path, *, max_bytes: int | None = None) -> None:
        super().__init__(path)
        self.max_bytes = max_bytes

    def write(self, rejects: list[Reject]) -> None:
        """Append ``rejects`` in order."""
        now = int(time.time() * 1000)
        for r in rejects:
            self._write(ENCODER.encode(dead_letter(r, now_ms=now, max_bytes=self.max_bytes)))
