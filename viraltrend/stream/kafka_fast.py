"""kafka-python without a Python object per record: a fetch's values as spans of its buffer.

kafka-python turns every fetched record into a :class:`~kafka.consumer.fetcher.ConsumerRecord`
(the record batch walked in Python: varints, headers, a named tuple), which costs more than
everything the service does with the record afterwards.  :func:`install` swaps, on one consumer
only, the class its fetcher parses fetched data with for :class:`SpanRecords`, which reads the
record batches (message format v2) of a fetch with one compiled pass
(:func:`_record_spans`): the offset of each record and the span of its value in the fetch's
buffer, nothing else.  ``poll`` then returns, per partition, :class:`Spans` chunks (padded with
``None`` so that kafka-python counts records, not chunks, against ``max_records``); the source
turns them into one partition's values with :meth:`Spans.values` and hands those to the columnar
decoder in one step.

What kafka-python does per batch is kept: the CRC check of each batch (``check_crcs``), control
batches skipped, the next fetch offset after the batch's last offset (so compacted gaps and
control records are stepped over), records below the fetch offset dropped.  Anything else, a
compressed batch, an older message format, ``read_committed`` (aborted transactions), goes
through kafka-python's own parser for that fetch, each record turned into the same kind of chunk:
slower, never different.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
from kafka import errors as kerr
from kafka.consumer.fetcher import Fetcher
from numba import njit
from numpy.typing import NDArray

__all__ = ["Spans", "SpanRecords", "install", "spans_of"]

#: A v2 batch's header: base offset, length, leader epoch, magic, crc, attributes, last offset delta.
_HEAD: Final = struct.Struct(">qiibIhi")
_RECORDS_AT: Final = 61  # a v2 batch's records start after its 61-byte header
_COUNT_AT: Final = 57
_CRC_FROM: Final = 21  # the CRC covers the batch from its attributes on
_COMPRESSION: Final = 0x07
_TRANSACTIONAL: Final = 0x10
_CONTROL: Final = 0x20


@njit(cache=True)
def _varint(buf: NDArray[np.uint8], p: int, end: int) -> tuple[int, int]:
    """A zigzag varint at ``p``: ``(value, next position)``; position -1 when it runs past ``end``."""
    result = 0
    shift = 0
    while True:
        if p >= end or shift > 63:
            return 0, -1
        b = int(buf[p])
        p += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), p


@njit(cache=True)
def _record_spans(
    buf: NDArray[np.uint8],
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    bases: NDArray[np.int64],
    counts: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]:
    """Walk the records of v2 batches: each record's offset and value span ``[vstart, vend)``.

    A null value is an empty span.  Returns ``(offsets, vstart, vend, bad)`` with ``bad`` the
    index of the first batch whose records do not parse (-1 when all do).
    """
    total = 0
    for i in range(counts.shape[0]):
        total += counts[i]
    offsets = np.empty(total, np.int64)
    vstart = np.empty(total, np.int64)
    vend = np.empty(total, np.int64)
    k = 0
    for i in range(starts.shape[0]):
        p = starts[i] + 61
        end = ends[i]
        for _ in range(counts[i]):
            length, p = _varint(buf, p, end)
            if p < 0 or length < 0 or p + length > end:
                return offsets[:k], vstart[:k], vend[:k], i
            nxt = p + length
            p += 1  # attributes
            _, p = _varint(buf, p, nxt)  # timestamp delta
            if p < 0:
                return offsets[:k], vstart[:k], vend[:k], i
            delta, p = _varint(buf, p, nxt)
            if p < 0:
                return offsets[:k], vstart[:k], vend[:k], i
            klen, p = _varint(buf, p, nxt)
            if p < 0:
                return offsets[:k], vstart[:k], vend[:k], i
            if klen > 0:
                p += klen
            vlen, p = _varint(buf, p, nxt)
            if p < 0 or (vlen > 0 and p + vlen > nxt):
                return offsets[:k], vstart[:k], vend[:k], i
            offsets[k] = bases[i] + delta
            vstart[k] = p
            vend[k] = p + vlen if vlen > 0 else p
            k += 1
            p = nxt
    return offsets[:k], vstart[:k], vend[:k], -1


class Spans:
    """Records of one partition fetch: their offsets and the spans of their values in ``buf``."""

    __slots__ = ("buf", "offsets", "vend", "vstart")

    def __init__(
        self, buf: bytes, offsets: NDArray[np.int64], vstart: NDArray[np.int64], vend: NDArray[np.int64]
    ) -> None:
        self.buf = buf
        self.offsets = offsets
        self.vstart = vstart
        self.vend = vend

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def split(self, k: int) -> tuple[Spans, Spans]:
        """The first ``k`` records and the rest."""
        o, s, e = self.offsets, self.vstart, self.vend
        return Spans(self.buf, o[:k], s[:k], e[:k]), Spans(self.buf, o[k:], s[k:], e[k:])

    def values(self) -> list[bytes]:
        """The record values as bytes (a null value as ``b""``), in offset order."""
        buf = self.buf
        return [buf[a:b] for a, b in zip(self.vstart.tolist(), self.vend.tolist(), strict=True)]


def spans_of(records: list[Any]) -> tuple[list[bytes], NDArray[np.int64]]:
    """One partition's values and offsets from what ``poll`` returned for it (chunks and padding)."""
    chunks = [c for c in records if c is not None]
    if len(chunks) == 1:
        return chunks[0].values(), chunks[0].offsets
    values: list[bytes] = []
    for c in chunks:
        values.extend(c.values())
    offsets = np.concatenate([c.offsets for c in chunks]) if chunks else np.empty(0, np.int64)
    return values, offsets


def _padded(chunk: Spans) -> list[Any]:
    return [chunk, *([None] * (len(chunk) - 1))] if len(chunk) else []


class SpanRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's ``PartitionRecords`` yielding :class:`Spans` chunks instead of records."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pending: Spans | None = None
        super().__init__(*args, **kwargs)

    def _maybe_skip_record(self, record: Any) -> bool:  # noqa: ARG002 - records below the fetch offset are dropped in the chunks
        return False

    def take(self, n: int | None = None) -> list[Any]:
        """Up to ``n`` records, as chunks padded with None to count as records."""
        self._maybe_raise_next_inline_exception()
        out: list[Any] = []
        count = 0
        it = self.record_iterator
        while it is not None and (n is None or count < n):
            if self._pending is None:
                try:
                    self._pending = next(it)
                except StopIteration:
                    break
                except Exception as exc:
                    if not out:
                        raise
                    self._next_inline_exception = exc
                    break
                continue
            chunk = self._pending
            room = len(chunk) if n is None else n - count
            if len(chunk) > room:
                chunk, self._pending = chunk.split(room)
            else:
                self._pending = None
            self.next_fetch_offset = int(chunk.offsets[-1]) + 1  # the batch's end once exhausted
            out.extend(_padded(chunk))
            count += len(chunk)
        return out

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[Any]:
        buf = records._buffer  # noqa: SLF001 - the fetch's bytes, parsed here instead
        if not isinstance(buf, bytes):
            buf = bytes(buf)  # values are sliced from it: bytes, not views
        layout = None if self.isolation_level != 0 else _layout(buf)
        if layout is None or key_deserializer is not None or value_deserializer is not None:
            yield from self._slow(tp, records, key_deserializer, value_deserializer)
            return
        starts, ends, bases, counts, next_offset, epoch = layout
        if self.check_crcs:
            _check_crcs(buf, starts, ends, bases, self.topic_partition)
        arr = np.frombuffer(buf, np.uint8)
        offsets, vstart, vend, bad = _record_spans(arr, starts, ends, bases, counts)
        if bad >= 0:
            msg = f"Record batch for partition {self.topic_partition} at offset {bases[bad]} is malformed"
            raise kerr.CorruptRecordError(msg)
        if epoch is not None:
            self.leader_epoch = epoch
        keep = offsets >= self.fetch_offset
        if not keep.all():
            offsets, vstart, vend = offsets[keep], vstart[keep], vend[keep]
        self.records_read += int(offsets.shape[0])
        self.bytes_read += int(ends[-1] - starts[0]) if starts.shape[0] else 0
        if offsets.shape[0]:
            yield Spans(buf, offsets, vstart, vend)
        if next_offset is not None:
            self.next_fetch_offset = next_offset
        self.drain()

    def _slow(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Iterator[Any]:
        """kafka-python's own parser; its records become chunks (values joined into one buffer)."""
        values: list[bytes] = []
        offsets: list[int] = []
        for r in super()._unpack_records(tp, records, key_deserializer, value_deserializer):
            if r.offset < self.fetch_offset:
                continue
            values.append(b"" if r.value is None else r.value)
            offsets.append(r.offset)
        if offsets:
            sizes = np.fromiter(map(len, values), np.int64, len(values))
            vend = np.cumsum(sizes)
            yield Spans(b"".join(values), np.array(offsets, np.int64), vend - sizes, vend)


def _layout(buf: bytes) -> tuple[Any, ...] | None:
    """The v2 batches of a fetch that are returned: their spans, base offsets, record counts.

    Also the offset after the last complete batch and the last leader epoch.  None when a batch
    needs kafka-python's own parser (compressed, older format, transactional).
    """
    starts, ends, bases, counts = [], [], [], []
    pos, size = 0, len(buf)
    next_offset = epoch = None
    while pos + _RECORDS_AT <= size:
        base, length, leader_epoch, magic, _, attributes, last_delta = _HEAD.unpack_from(buf, pos)
        end = pos + 12 + length
        if end > size:  # a partial batch at the end of the fetch: fetched again next time
            break
        if magic != 2 or attributes & (_COMPRESSION | _TRANSACTIONAL):
            return None
        if not attributes & _CONTROL:
            starts.append(pos)
            ends.append(end)
            bases.append(base)
            counts.append(struct.unpack_from(">i", buf, pos + _COUNT_AT)[0])
        next_offset, epoch = base + last_delta + 1, leader_epoch
        pos = end
    if not starts and next_offset is None and size:
        return None  # nothing complete: let kafka-python say why (record too large, ...)
    i64 = np.int64
    return (
        np.array(starts, i64),
        np.array(ends, i64),
        np.array(bases, i64),
        np.array(counts, i64),
        next_offset,
        epoch,
    )


def _check_crcs(
    buf: bytes, starts: NDArray[np.int64], ends: NDArray[np.int64], bases: NDArray[np.int64], tp: Any
) -> None:
    from kafka.record.util import calc_crc32c

    view = memoryview(buf)
    for s, e, base in zip(starts.tolist(), ends.tolist(), bases.tolist(), strict=True):
        (crc,) = struct.unpack_from(">I", buf, s + 17)
        if calc_crc32c(view[s + _CRC_FROM : e]) != crc:
            msg = f"Record batch for partition {tp} at offset {base} failed crc check"
            raise kerr.CorruptRecordError(msg)


def install(consumer: Any) -> None:
    """Make ``consumer``'s fetcher return :class:`Spans` chunks (this consumer only)."""
    consumer._fetcher.PartitionRecords = SpanRecords  # noqa: SLF001 - an instance attribute, this consumer only
