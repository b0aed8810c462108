"""Engagement events as columns: the batch type every stage after decoding works on.

The input contract (``shared/contract/events.md``) is decoded once, at the edge, into an
:class:`EventBatch` of numpy columns (numbers) and lists (strings).  Rejected input becomes a
:class:`Reject` value carrying the original bytes and a reason from :data:`REJECT_REASONS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from viraltrend.kernels.ndjson import EVENT_TYPES, span_hashes

__all__ = [
    "EVENT_TYPES",
    "EVENT_TYPE_CODE",
    "ID_FIELDS",
    "REJECT_REASONS",
    "EventBatch",
    "IdColumns",
    "LineSpans",
    "Reject",
]

EVENT_TYPE_CODE: Final = {name: code for code, name in enumerate(EVENT_TYPES)}

_ENCODE: Final = msgspec.json.Encoder()

#: Every reason an event can be refused for.  Metrics label values come from this tuple only.
REJECT_REASONS: Final = (
    "oversized",  # a file line longer than the reader's limit (only its start is kept)
    "bad_utf8",  # the bytes are not UTF-8
    "bad_json",  # not parseable JSON
    "not_object",  # JSON, but not an object
    "missing_field",  # a required field is absent
    "wrong_type",  # a field has the wrong JSON type (e.g. ts as a string)
    "unknown_event_type",  # type is not one of EVENT_TYPES
    "bad_ts",  # ts negative, not an integer, or outside 2000-01-01 .. 2100-01-01
    "bad_string",  # an id/category string empty or longer than allowed
    "reserved_id",  # an id begins with "__" (reserved for control keys such as __board__)
    "bad_number",  # price < 0, quantity < 1, or a non-finite number
    "future_ts",  # ts too far ahead of the stream's event-time watermark
    "late",  # ts older than the watermark minus the allowed lateness
    "duplicate",  # event_id already seen within the dedup window
)


#: The string fields of an event, in the row order of :class:`IdColumns`.
ID_FIELDS: Final = ("product_id", "user_id", "event_id", "seller_id", "category")


@dataclass(slots=True)
class IdColumns:
    """The string fields of a batch as byte spans of one buffer, with the hashes the engine keys on.

    ``buf`` holds UTF-8 (for a decoded NDJSON record, the record's own bytes: a plain id's JSON text
    is its UTF-8); ``start``/``stop`` are ``int64[5, n]``, one row per :data:`ID_FIELDS`, -1 where
    the field is absent.  ``product_hash`` and ``user_hash`` are
    :func:`~viraltrend.kernels.hashtable.hash_ids` of the product and user ids, ``event_h1`` and
    ``event_h2`` :func:`~viraltrend.kernels.idset.hash_pairs` of the event ids (0 where none).
    """

    buf: NDArray[np.uint8]
    start: NDArray[np.int64]
    stop: NDArray[np.int64]
    product_hash: NDArray[np.uint64]
    user_hash: NDArray[np.uint64]
    event_h1: NDArray[np.uint64]
    event_h2: NDArray[np.uint64]

    @classmethod
    def from_strings(cls, columns: Sequence[Sequence[str | None]]) -> IdColumns:
        """Encode the five string columns (product, user, event, seller, category; None: absent).

        One ``join`` and ``encode`` per column (ids holding a NUL, the join's separator, per id) and
        the hashes from the bytes in one compiled pass.
        """
        n = len(columns[0])
        chunks: list[bytes] = []
        start = np.full((5, n), -1, np.int64)
        stop = np.full((5, n), -1, np.int64)
        pos = 0
        for row, column in enumerate(columns):
            if n == 0:
                break
            where = None if None not in column else [i for i, v in enumerate(column) if v is not None]
            values: Sequence[Any] = column if where is None else [column[i] for i in where]
            m = len(values)
            if m == 0:
                continue
            data = "\x00".join(values).encode("utf-8", "surrogatepass")
            if data.count(b"\x00") == m - 1:
                ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 0)
                ends = np.append(ends, len(data)).astype(np.int64)
                begins = np.empty(m, np.int64)
                begins[0] = 0
                begins[1:] = ends[:-1] + 1
            else:  # an id holds a NUL
                parts = [v.encode("utf-8", "surrogatepass") for v in values]
                sizes = np.fromiter(map(len, parts), np.int64, m)
                data = b"".join(parts)
                ends = np.cumsum(sizes)
                begins = ends - sizes
            cols = slice(None) if where is None else np.asarray(where, np.int64)
            start[row, cols] = begins + pos
            stop[row, cols] = ends + pos
            chunks.append(data)
            pos += len(data)
        return cls.from_spans(np.frombuffer(b"".join(chunks), np.uint8), start, stop)

    @classmethod
    def from_spans(
        cls, buf: NDArray[np.uint8], start: NDArray[np.int64], stop: NDArray[np.int64]
    ) -> IdColumns:
        """The five string columns as UTF-8 spans of ``buf`` (``int64[5, n]``, -1: absent); hashes added."""
        product_hash, _ = span_hashes(buf, start[0], stop[0])
        user_hash, _ = span_hashes(buf, start[1], stop[1])
        events = start[2].copy()
        events[stop[2] == start[2]] = -1  # an empty event id is none (dedup's rule)
        event_h1, event_h2 = span_hashes(buf, events, stop[2], pairs=True)
        return cls(
            buf=buf,
            start=start,
            stop=stop,
            product_hash=product_hash,
            user_hash=user_hash,
            event_h1=event_h1,
            event_h2=event_h2,
        )

    def text(self, row: int, i: int) -> str | None:
        """The string of field ``row`` (an index into :data:`ID_FIELDS`) of event ``i``."""
        a = int(self.start[row, i])
        if a < 0:
            return None
        return self.buf[a : int(self.stop[row, i])].tobytes().decode("utf-8", "surrogatepass")

    def texts(self, row: int) -> list[str | None]:
        """The strings of field ``row`` of every event."""
        data = self.buf.tobytes()
        return [
            None if a < 0 else data[a:b].decode("utf-8", "surrogatepass")
            for a, b in zip(self.start[row].tolist(), self.stop[row].tolist(), strict=True)
        ]

    def take(self, idx: NDArray[np.intp]) -> IdColumns:
        """The events at ``idx`` (an integer index), sharing the buffer."""
        return IdColumns(
            buf=self.buf,
            start=self.start[:, idx],
            stop=self.stop[:, idx],
            product_hash=self.product_hash[idx],
            user_hash=self.user_hash[idx],
            event_h1=self.event_h1[idx],
            event_h2=self.event_h2[idx],
        )

    @classmethod
    def concat(cls, parts: Sequence[IdColumns]) -> IdColumns:
        """Concatenate in order (one buffer; spans shifted)."""
        shift = np.cumsum([0, *(p.buf.shape[0] for p in parts[:-1])]).tolist()
        starts = [np.where(p.start >= 0, p.start + s, -1) for p, s in zip(parts, shift, strict=True)]
        stops = [np.where(p.stop >= 0, p.stop + s, -1) for p, s in zip(parts, shift, strict=True)]
        return cls(
            buf=np.concatenate([p.buf for p in parts]),
            start=np.concatenate(starts, axis=1),
            stop=np.concatenate(stops, axis=1),
            product_hash=np.concatenate([p.product_hash for p in parts]),
            user_hash=np.concatenate([p.user_hash for p in parts]),
            event_h1=np.concatenate([p.event_h1 for p in parts]),
            event_h2=np.concatenate([p.event_h2 for p in parts]),
        )


class LineSpans(Sequence[bytes]):
    """Records as spans of one buffer: ``data[start[i]:stop[i]]`` is record ``i`` (a file line).

    A read-only sequence of bytes, the :attr:`EventBatch.raw` of a block of NDJSON lines: the
    reader finds the line ends in its block and the decoder scans the spans in place, so no
    ``bytes`` object is made per line unless one is asked for (a reject, a late event).  Equal
    to any sequence of the same bytes.

    >>> raw = LineSpans(b"ab;cd;", np.array([0, 3]), np.array([2, 5]))
    >>> raw[1], list(raw[:1]), raw == [b"ab", b"cd"], raw.take(np.array([1, 0])) == [b"cd", b"ab"]
    (b'cd', [b'ab'], True, True)
    """

    __slots__ = ("data", "start", "stop")

    def __init__(self, data: bytes, start: NDArray[np.int64], stop: NDArray[np.int64]) -> None:
        self.data, self.start, self.stop = data, start, stop

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return LineSpans(self.data, self.start[i], self.stop[i])
        return self.data[int(self.start[i]) : int(self.stop[i])]

    def __iter__(self) -> Any:
        data = self.data
        return (data[a:b] for a, b in zip(self.start.tolist(), self.stop.tolist(), strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (bytes, str)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence, as a list

    def __repr__(self) -> str:
        return f"LineSpans({list(self)!r})"

    def take(self, idx: NDArray[Any]) -> LineSpans:
        """The records at ``idx``, in that order (the same buffer)."""
        return LineSpans(self.data, self.start[idx], self.stop[idx])

    @classmethod
    def concat(cls, parts: Sequence[LineSpans]) -> LineSpans:
        """The records of ``parts`` in order, over one buffer (copied only for several parts)."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls(b"", np.empty(0, np.int64), np.empty(0, np.int64))
        chunks, starts, stops, at = [], [], [], 0
        for p in parts:
            lo, hi = int(p.start.min()), int(p.stop.max())
            chunks.append(memoryview(p.data)[lo:hi])
            starts.append(p.start + (at - lo))
            stops.append(p.stop + (at - lo))
            at += hi - lo
        return cls(b"".join(chunks), np.concatenate(starts), np.concatenate(stops))


class EventBatch:
    """A batch of valid events as columns, in arrival order.

    Attributes
    ----------
    ts_ms : int64[n]
        Event time, epoch milliseconds.
    type_code : int8[n]
        Index into :data:`EVENT_TYPES`.
    product_id, user_id : list[str] of length n
    event_id, seller_id, category : list[str | None] of length n
        The string fields.  A decoder may give them as :attr:`ids` (byte spans and hashes) instead;
        then these lists are built on first access (the engine never needs them: it reads
        :attr:`ids`).
    ids : IdColumns
        The string fields as spans of one buffer with their hashes; built from the lists on first
        access when the batch was made from lists.
    price : float64[n]
        NaN where absent.
    quantity : int64[n]
        1 where absent.
    partition : int32[n]
        Source partition (0 for files).
    offset : int64[n]
        Source offset (Kafka) or 1-based line number (files).
    raw : sequence of bytes of length n (a list, or :class:`LineSpans`), or None
        The original bytes of each event as received (a Kafka value, a file line), kept so that
        an event refused after decoding (late, far-future, duplicate) reaches the rejects file or
        the dead-letter topic exactly as it came; None when the source has no such bytes
        (Parquet), and then :meth:`record_bytes` re-encodes the event.
    source : str
        Where the events came from (a topic, a file path), for rejects; several joined by ``,``
        after :meth:`concat` of batches of different sources.
    """

    #: The public columns, in constructor order.
    FIELDS: ClassVar = (
        "ts_ms", "type_code", "product_id", "user_id", "event_id", "seller_id", "category",
        "price", "quantity", "partition", "offset", "raw", "source",
    )  # fmt: skip
    __slots__ = (
        "_ids",
        "_text",
        "offset",
        "partition",
        "price",
        "quantity",
        "raw",
        "source",
        "ts_ms",
        "type_code",
    )

    def __init__(  # noqa: PLR0913 (the columns)
        self,
        ts_ms: NDArray[np.int64],
        type_code: NDArray[np.int8],
        product_id: list[str] | None = None,
        user_id: list[str] | None = None,
        event_id: list[str | None] | None = None,
        seller_id: list[str | None] | None = None,
        category: list[str | None] | None = None,
        price: NDArray[np.float64] | None = None,
        quantity: NDArray[np.int64] | None = None,
        partition: NDArray[np.int32] | None = None,
        offset: NDArray[np.int64] | None = None,
        raw: Sequence[bytes] | None = None,
        source: str = "",
        *,
        ids: IdColumns | None = None,
    ) -> None:
        n = int(ts_ms.shape[0])
        self.ts_ms = ts_ms
        self.type_code = type_code
        text: list[list[Any] | None] = [product_id, user_id, event_id, seller_id, category]
        if ids is None and (product_id is None or user_id is None):
            msg = "EventBatch needs product_id and user_id, or ids"
            raise TypeError(msg)
        if ids is None:
            text = [t if t is not None else [None] * n for t in text]
        self._text = text
        self._ids = ids
        self.price = price if price is not None else np.full(n, np.nan)
        self.quantity = quantity if quantity is not None else np.ones(n, np.int64)
        self.partition = partition if partition is not None else np.zeros(n, np.int32)
        self.offset = offset if offset is not None else np.arange(1, n + 1, dtype=np.int64)
        self.raw = raw
        self.source = source

    def _column(self, row: int) -> list[Any]:
        column = self._text[row]
        if column is None:
            assert self._ids is not None  # one of the two is always set
            column = self._text[row] = self._ids.texts(row)
        return column

    @property
    def product_id(self) -> list[str]:
        """The product ids (built from :attr:`ids` at the first access if given so)."""
        return self._column(0)

    @property
    def user_id(self) -> list[str]:
        """The user ids."""
        return self._column(1)

    @property
    def event_id(self) -> list[str | None]:
        """The event ids, None where absent."""
        return self._column(2)

    @property
    def seller_id(self) -> list[str | None]:
        """The seller ids, None where absent."""
        return self._column(3)

    @property
    def category(self) -> list[str | None]:
        """The categories, None where absent."""
        return self._column(4)

    @property
    def ids(self) -> IdColumns:
        """The string fields as spans and hashes (built from the lists at the first access)."""
        if self._ids is None:
            self._ids = IdColumns.from_strings([self._column(row) for row in range(5)])
        return self._ids

    def text(self, name: str, i: int) -> str | None:
        """Field ``name`` (one of :data:`ID_FIELDS`) of event ``i``, without building the whole column."""
        row = ID_FIELDS.index(name)
        column = self._text[row]
        if column is not None:
            value: str | None = column[i]
            return value
        assert self._ids is not None
        return self._ids.text(row, i)

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def __repr__(self) -> str:
        return f"EventBatch(n={len(self)}, source={self.source!r})"

    @classmethod
    def empty(cls) -> EventBatch:
        """Return a batch with no events."""
        return cls(
            ts_ms=np.empty(0, np.int64),
            type_code=np.empty(0, np.int8),
            product_id=[],
            user_id=[],
            event_id=[],
            seller_id=[],
            category=[],
            price=np.empty(0, np.float64),
            quantity=np.empty(0, np.int64),
            partition=np.empty(0, np.int32),
            offset=np.empty(0, np.int64),
            raw=[],
        )

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> EventBatch:
        """Return the events selected by an integer index or a boolean mask, in that order."""
        idx = np.flatnonzero(index) if index.dtype == np.bool_ else np.asarray(index)
        n = idx.shape[0]
        if n and 0 <= idx[0] and idx[-1] - idx[0] == n - 1 and (n == 1 or bool((np.diff(idx) == 1).all())):
            run = slice(int(idx[0]), int(idx[-1]) + 1)  # a run of events: the lists' slices (copies)
            text = [None if t is None else t[run] for t in self._text]
            raw = None if self.raw is None else self.raw[run]
        else:
            pick = idx.tolist()
            lazy = self._ids is not None  # the strings are decoded from the spans if ever asked for
            text = [None if t is None or lazy else [t[i] for i in pick] for t in self._text]
            raw = (
                None if self.raw is None
                else self.raw.take(idx) if isinstance(self.raw, LineSpans)
                else list(map(self.raw.__getitem__, pick))
            )  # fmt: skip
        out = EventBatch(
            ts_ms=self.ts_ms[idx],
            type_code=self.type_code[idx],
            product_id=text[0],
            user_id=text[1],
            event_id=text[2],
            seller_id=text[3],
            category=text[4],
            price=self.price[idx],
            quantity=self.quantity[idx],
            partition=self.partition[idx],
            offset=self.offset[idx],
            raw=raw,
            source=self.source,
            ids=None if self._ids is None else self._ids.take(idx.astype(np.intp, copy=False)),
        )
        out._text = text
        return out

    def record_bytes(self, i: int) -> bytes:
        """The event at ``i`` as received, or re-encoded as contract JSON when :attr:`raw` is None."""
        if self.raw is not None:
            return self.raw[i]
        obj: dict[str, object] = {
            "ts": int(self.ts_ms[i]),
            "type": EVENT_TYPES[int(self.type_code[i])],
            "product_id": self.text("product_id", i),
            "user_id": self.text("user_id", i),
        }
        for name in ("event_id", "seller_id", "category"):
            value = self.text(name, i)
            if value is not None:
                obj[name] = value
        if not np.isnan(self.price[i]):
            obj["price"] = float(self.price[i])
        if self.quantity[i] != 1:
            obj["quantity"] = int(self.quantity[i])
        return _ENCODE.encode(obj)

    @classmethod
    def concat(cls, batches: list[EventBatch]) -> EventBatch:
        """Concatenate batches in order."""
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        lazy = all(b._ids is not None for b in batches)  # keep spans; lists only where all have them
        text = [
            [x for b in batches for x in b._column(row)]
            if not lazy or all(b._text[row] is not None for b in batches)
            else None
            for row in range(5)
        ]
        out = cls(
            ts_ms=np.concatenate([b.ts_ms for b in batches]),
            type_code=np.concatenate([b.type_code for b in batches]),
            product_id=text[0],
            user_id=text[1],
            event_id=text[2],
            seller_id=text[3],
            category=text[4],
            price=np.concatenate([b.price for b in batches]),
            quantity=np.concatenate([b.quantity for b in batches]),
            partition=np.concatenate([b.partition for b in batches]),
            offset=np.concatenate([b.offset for b in batches]),
            raw=None if any(b.raw is None for b in batches) else [x for b in batches for x in b.raw or ()],
            source=",".join(dict.fromkeys(b.source for b in batches if b.source)),
            ids=IdColumns.concat([b.ids for b in batches]) if lazy else None,
        )
        out._text = text
        return out


@dataclass(frozen=True, slots=True)
class Reject:
    """One refused input record, as written to the rejects file or the dead-letter topic.

    ``raw`` is the original bytes exactly as received; ``reason`` is one of
    :data:`REJECT_REASONS`; ``detail`` is a one-line human explanation.
    """

    raw: bytes
    reason: str
    detail: str
    source: str = ""
    partition: int = 0
    offset: int = -1
    extra: dict[str, object] = field(default_factory=dict)
    full_size: int = -1  # >= 0: ``raw`` is only the start of a record of this many bytes...
    full_sha256: str = ""  # ...whose SHA-256 is this (an oversized file line)
