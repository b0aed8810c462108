"""Sinks for decision messages and rejects: NDJSON files (replay) and, via kafka_io, topics (live).

A decision message leaves the engine with ``emitted_at = None``; the sink stamps the wall
clock at publication (the only wall-clock value in the output, so replays compare equal
once ``emitted_at`` is ignored).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any, Self

import msgspec

from viraltrend.events import Reject

__all__ = ["DecisionFile", "RejectsFile", "reject_record", "stamp"]

_ENCODE = msgspec.json.Encoder()


def stamp(message: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """Set ``emitted_at`` (wall-clock epoch ms) on a decision message and return it."""
    message["emitted_at"] = int(time.time() * 1000) if now_ms is None else now_ms
    return message


def reject_record(reject: Reject) -> dict[str, Any]:
    """A reject as plain data: where it came from, why, and the original text."""
    try:
        original: str | None = reject.raw.decode("utf-8")
    except UnicodeDecodeError:
        original = None
    return {
        "schema": 1,
        "reason": reject.reason,
        "detail": reject.detail,
        "source": reject.source,
        "partition": reject.partition,
        "offset": reject.offset,
        "original": original,
        "original_hex": None if original is not None else reject.raw.hex(),
    }


class _NdjsonFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = self.path.open("wb")
        self.count = 0

    def _write(self, obj: dict[str, Any]) -> None:
        self._fh.write(_ENCODE.encode(obj) + b"\n")
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

    def write(self, messages: list[dict[str, Any]]) -> None:
        """Append ``messages`` in order."""
        now = int(time.time() * 1000)
        for m in messages:
            self._write(stamp(m, now))


class RejectsFile(_NdjsonFile):
    """Writes rejects (original line, line number, reason) as NDJSON."""

    def write(self, rejects: list[Reject]) -> None:
        """Append ``rejects`` in order."""
        for r in rejects:
            self._write(reject_record(r))
