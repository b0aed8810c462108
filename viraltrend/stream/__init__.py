"""Getting events in and decisions out: decoding, file and Kafka sources, sinks, the embedded broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from viraltrend.stream.decode import decode_records
from viraltrend.stream.sources import Source

if TYPE_CHECKING:
    from viraltrend.stream.files import FileSource

__all__ = ["FileSource", "Source", "decode_records"]


def __getattr__(name: str) -> Any:
    """``FileSource`` on first use: its module imports polars, which the live service never uses."""
    if name == "FileSource":
        from viraltrend.stream.files import FileSource

        return FileSource
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
