"""Getting events in and decisions out: decoding, file and Kafka sources, sinks, the embedded broker."""

from __future__ import annotations

from viraltrend.stream.decode import decode_records
from viraltrend.stream.files import FileSource
from viraltrend.stream.sources import Source

__all__ = ["FileSource", "Source", "decode_records"]
