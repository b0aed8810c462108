"""Engagement events as columns: the batch type every stage after decoding works on.

The input contract (``shared/contract/events.md``) is decoded once, at the edge, into an
:class:`EventBatch` of numpy columns (numbers) and lists (strings).  Rejected input becomes a
:class:`Reject` value carrying the original bytes and a reason from :data:`REJECT_REASONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import msgspec
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EVENT_TYPES",
    "EVENT_TYPE_CODE",
    "REJECT_REASONS",
    "EventBatch",
    "Reject",
]

#: Event types in code order; ``type_code`` columns index into this tuple.
EVENT_TYPES: Final = ("view", "like", "comment", "share", "add_to_cart", "purchase")
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


@dataclass(slots=True)
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
    price : float64[n]
        NaN where absent.
    quantity : int64[n]
        1 where absent.
    partition : int32[n]
        Source partition (0 for files).
    offset : int64[n]
        Source offset (Kafka) or 1-based line number (files).
    raw : list[bytes] of length n, or None
        The original bytes of each event as received (a Kafka value, a file line), kept so that
        an event refused after decoding (late, far-future, duplicate) reaches the rejects file or
        the dead-letter topic exactly as it came; None when the source has no such bytes
        (Parquet), and then :meth:`record_bytes` re-encodes the event.
    source : str
        Where the events came from (a topic, a file path), for rejects; several joined by ``,``
        after :meth:`concat` of batches of different sources.
    """

    ts_ms: NDArray[np.int64]
    type_code: NDArray[np.int8]
    product_id: list[str]
    user_id: list[str]
    event_id: list[str | None]
    seller_id: list[str | None]
    category: list[str | None]
    price: NDArray[np.float64]
    quantity: NDArray[np.int64]
    partition: NDArray[np.int32]
    offset: NDArray[np.int64]
    raw: list[bytes] | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

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
        pick = idx.tolist()
        return EventBatch(
            ts_ms=self.ts_ms[idx],
            type_code=self.type_code[idx],
            product_id=[self.product_id[i] for i in pick],
            user_id=[self.user_id[i] for i in pick],
            event_id=[self.event_id[i] for i in pick],
            seller_id=[self.seller_id[i] for i in pick],
            category=[self.category[i] for i in pick],
            price=self.price[idx],
            quantity=self.quantity[idx],
            partition=self.partition[idx],
            offset=self.offset[idx],
            raw=None if self.raw is None else [self.raw[i] for i in pick],
            source=self.source,
        )

    def record_bytes(self, i: int) -> bytes:
        """The event at ``i`` as received, or re-encoded as contract JSON when :attr:`raw` is None."""
        if self.raw is not None:
            return self.raw[i]
        obj: dict[str, object] = {
            "ts": int(self.ts_ms[i]),
            "type": EVENT_TYPES[int(self.type_code[i])],
            "product_id": self.product_id[i],
            "user_id": self.user_id[i],
        }
        for name in ("event_id", "seller_id", "category"):
            value = getattr(self, name)[i]
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
        return cls(
            ts_ms=np.concatenate([b.ts_ms for b in batches]),
            type_code=np.concatenate([b.type_code for b in batches]),
            product_id=[x for b in batches for x in b.product_id],
            user_id=[x for b in batches for x in b.user_id],
            event_id=[x for b in batches for x in b.event_id],
            seller_id=[x for b in batches for x in b.seller_id],
            category=[x for b in batches for x in b.category],
            price=np.concatenate([b.price for b in batches]),
            quantity=np.concatenate([b.quantity for b in batches]),
            partition=np.concatenate([b.partition for b in batches]),
            offset=np.concatenate([b.offset for b in batches]),
            raw=None if any(b.raw is None for b in batches) else [x for b in batches for x in b.raw or ()],
            source=",".join(dict.fromkeys(b.source for b in batches if b.source)),
        )


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
