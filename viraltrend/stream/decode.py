"""Strict, fast decoding of contract events into an :class:`~viraltrend.events.EventBatch`.

Two entry points, one set of rules (``shared/contract/events.md``):

* :func:`decode_records` takes JSON objects as bytes (NDJSON lines, Kafka message values).  The
  records are joined into one buffer and a compiled scanner (:mod:`viraltrend.kernels.ndjson`)
  turns every *plain* record (known fields, ASCII strings without escapes, plain numbers) into
  columns, byte spans of its ids and their 64-bit hashes, with no Python object per record; the
  others (anything unusual, every bad record) go to msgspec, which validates them in C 1024 at a
  time (only a block that holds a bad record is decoded again one record at a time) and names
  the reason of each reject.  The scanner takes only records msgspec takes, with the same values
  (tested), so the result is that of msgspec alone.
* :func:`decode_frame` takes the same fields as columns of a polars DataFrame (CSV, Parquet,
  Taobao replays) and validates them with vectorised expressions.

Both return the valid events in arrival order and one :class:`~viraltrend.events.Reject` per
refused record, whose ``reason`` is one of :data:`~viraltrend.events.REJECT_REASONS`.  Blank
records (empty or whitespace only) are not events: they are skipped without a reject.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
import numpy as np
from msgspec import Meta
from numpy.typing import NDArray

from viraltrend.errors import InputError
from viraltrend.events import (
    EVENT_TYPE_CODE,
    EVENT_TYPES,
    ID_FIELDS,
    EventBatch,
    IdColumns,
    LineSpans,
    Reject,
)
from viraltrend.kernels.ndjson import FALLBACK, OK, scan

if TYPE_CHECKING:  # polars is imported by the frame decoder only (files); the live service never needs it
    import polars as pl

__all__ = ["COLUMNS", "REQUIRED_COLUMNS", "TS_MAX_MS", "TS_MIN_MS", "decode_frame", "decode_records"]

TS_MIN_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_MS: Final = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_INT64_MAX: Final = 2**63 - 1

#: Contract fields in contract order; the columns :func:`decode_frame` reads.
COLUMNS: Final = (
    "ts", "type", "product_id", "user_id", "event_id", "seller_id",
    "category", "price", "quantity", "video_id", "creator_id",
)  # fmt: skip
REQUIRED_COLUMNS: Final = ("ts", "type", "product_id", "user_id")
#: Maximum length in characters of each string field (the minimum is always 1).
_MAX_CHARS: Final = {
    "product_id": 128, "user_id": 128, "event_id": 128, "seller_id": 128,
    "category": 64, "video_id": 128, "creator_id": 128,
}  # fmt: skip

_Id = Annotated[str, Meta(min_length=1, max_length=128)]
#: Ids beginning ``__`` are reserved for control keys (reason ``reserved_id``).  The id columns
#: are checked after decoding (:func:`_reserved_ids`, fast); ``video_id`` and ``creator_id``, not
#: kept as columns and rarely given, by a pattern in the decoder.
_COLUMN_IDS: Final = ("product_id", "user_id", "event_id", "seller_id")
_ID_FIELDS: Final = (*_COLUMN_IDS, "video_id", "creator_id")
_UNRESERVED: Final = "^(?!__)"
_ContentId = Annotated[str, Meta(min_length=1, max_length=128, pattern=_UNRESERVED)]
_Category = Annotated[str, Meta(min_length=1, max_length=64)]


class _Event(msgspec.Struct, frozen=True, gc=False):
    """One contract event; unknown fields are ignored, ``null`` means absent for optional ones."""

    ts: Annotated[int, Meta(ge=TS_MIN_MS, le=TS_MAX_MS)]
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    product_id: _Id
    user_id: _Id
    event_id: _Id | None = None
    seller_id: _Id | None = None
    category: _Category | None = None
    price: Annotated[float, Meta(ge=0.0)] | None = math.nan
    quantity: Annotated[int, Meta(ge=1, le=_INT64_MAX)] | None = 1
    video_id: _ContentId | None = None
    creator_id: _ContentId | None = None


_DECODER: Final = msgspec.json.Decoder(_Event)
_BLOCK: Final = 1024  # records decoded, then turned into columns, at a time
_DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)  # ValidationError is one

#: What each field must be, as the end of "field 'x' must be ...".
_RULES: Final = {
    "ts": f"an integer epoch-ms between {TS_MIN_MS} (2000-01-01) and {TS_MAX_MS} (2100-01-01)",
    "type": "one of " + ", ".join(EVENT_TYPES),
    "price": "a finite number >= 0",
    "quantity": "an integer >= 1 that fits in int64",
    **{name: f"a string of 1..{limit} characters" for name, limit in _MAX_CHARS.items()},
}
_ERROR_AT: Final = re.compile(r"^(?P<what>.*?)(?: - at `\$(?:\.(?P<field>\w+))?[^`]*`)?$", re.DOTALL)
_GOT: Final = re.compile(r"got `(\w+)`")
_BAD_BYTE: Final = re.compile(r"invalid character \(byte (\d+)\)")
_NON_FINITE: Final = re.compile(rb"-?(?:NaN|nan|Infinity|inf)")
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")  # control characters: never in an id
_MISSING: Final = object()


def decode_records(
    raw: Sequence[bytes],
    *,
    offsets: NDArray[np.int64] | None = None,
    partition: int = 0,
    source: str = "",
) -> tuple[EventBatch, list[Reject]]:
    """Decode JSON records into a batch of valid events and a list of rejects.

    Parameters
    ----------
    raw : sequence of bytes
        One JSON object per element: an NDJSON line without its newline, or a Kafka value.  A
        :class:`~viraltrend.events.LineSpans` (a file reader's block) is scanned in place.
    offsets : int64[n], optional
        The source offset of each record; defaults to the line numbers ``1..n``.
    partition : int
        Source partition, copied into every event and reject.
    source : str
        Where the records came from (a file path, a topic), copied into every reject.

    Returns
    -------
    batch : EventBatch
        The valid events, in input order.
    rejects : list of Reject
        One per invalid non-blank record, in input order, with the original bytes.

    Examples
    --------
    >>> batch, rejects = decode_records(
    ...     [b'{"ts":1764253200123,"type":"share","product_id":"p1","user_id":"u1"}', b"oops"])
    >>> batch.product_id, batch.offset.tolist(), [(r.reason, r.offset) for r in rejects]
    (['p1'], [1], [('bad_json', 2)])
    """
    n = len(raw)
    offsets = _check_offsets(offsets, n)
    if n == 0:
        return _decode_msgspec(raw, offsets=offsets, partition=partition, source=source)
    if isinstance(raw, LineSpans):  # a reader's block of lines: scanned in place
        buf = np.frombuffer(raw.data, np.uint8)
        found = scan(buf, raw.start, raw.stop)
    else:
        sizes = np.fromiter(map(len, raw), np.int64, n)
        ends = np.cumsum(sizes)
        buf = np.frombuffer(b"".join(raw), np.uint8)
        found = scan(buf, ends - sizes, ends)
    status = found.status
    fast = np.flatnonzero(status == OK)
    # every record plain (a replay's usual block): the scan's own arrays, not copies of them all
    pick: slice | NDArray[np.intp] = slice(None) if fast.shape[0] == n else fast
    ids = IdColumns(
        buf=buf,
        start=found.start[:, pick],
        stop=found.stop[:, pick],
        product_hash=found.hashes[0, pick],
        user_hash=found.hashes[1, pick],
        event_h1=found.hashes[2, pick],
        event_h2=found.hashes[3, pick],
    )
    ts, code, price, qty = found.ts[pick], found.code[pick], found.price[pick], found.quantity[pick]
    kept, rejects = fast, list[Reject]()
    slow = np.flatnonzero(status == FALLBACK)
    if slow.size:  # msgspec judges what the scanner does not take; offsets here are positions
        records = [raw[i] for i in slow.tolist()]
        other, rejects = _decode_msgspec(records, offsets=slow, partition=partition, source=source)
        rejects = [dataclasses.replace(r, offset=int(offsets[r.offset])) for r in rejects]
        pos = other.offset
        order = np.argsort(np.concatenate([fast, pos]), kind="stable")
        kept = np.concatenate([fast, pos])[order]
        ids = IdColumns.concat([ids, other.ids]).take(order)
        ts = np.concatenate([ts, other.ts_ms])[order]
        code = np.concatenate([code, other.type_code])[order]
        price = np.concatenate([price, other.price])[order]
        qty = np.concatenate([qty, other.quantity])[order]
    m = kept.shape[0]
    batch = EventBatch(
        ts_ms=ts,
        type_code=code,
        price=price,
        quantity=qty,
        partition=np.full(m, partition, np.int32),
        offset=offsets[kept],
        raw=_kept_raw(raw, kept, m == n),
        source=source,
        ids=ids,
    )
    return batch, rejects


def _kept_raw(raw: Sequence[bytes], kept: NDArray[np.intp], whole: bool) -> Sequence[bytes]:
    """The records of ``raw`` at ``kept`` (all of them when ``whole``), spans kept as spans."""
    if isinstance(raw, LineSpans):
        return raw if whole else raw.take(kept)
    return list(raw) if whole else [raw[i] for i in kept.tolist()]


def _decode_msgspec(
    raw: Sequence[bytes],
    *,
    offsets: NDArray[np.int64] | None = None,
    partition: int = 0,
    source: str = "",
) -> tuple[EventBatch, list[Reject]]:
    """:func:`decode_records` by msgspec alone, in blocks of ``_BLOCK`` records (the reference path).

    The records the scanner does not take go through here; :func:`decode_records` gives the same
    result for any records (``tests/kernels/test_ndjson.py``).
    """
    n = len(raw)
    offsets = _check_offsets(offsets, n)
    columns = _Columns()
    skipped: list[int] = []  # positions of rejects and blank records
    rejects: list[Reject] = []
    for start in range(0, n, _BLOCK):
        block = raw[start : start + _BLOCK]
        joined = b"\n".join(block)  # C-level scans of the whole block: UTF-8, control characters
        is_ascii = joined.isascii()
        valid_utf8 = is_ascii or _is_utf8(joined)  # msgspec skips unknown fields without checking them
        columns.escapes = (  # where a control character may be: an escape, DEL, C1 (U+0080..U+009F)
            columns.escapes or b"\\" in joined or b"\x7f" in joined or (not is_ascii and b"\xc2" in joined)
        )
        try:
            if not valid_utf8:
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "somewhere in the block")  # noqa: EM101
            events = list(map(_DECODER.decode, block))  # the whole fast path: one C-level loop
        except _DECODE_ERRORS:
            events = []
            for pos, line in enumerate(block, start):
                try:
                    if not valid_utf8:
                        bytes(line).decode("utf-8")
                    events.append(_DECODER.decode(line))
                except _DECODE_ERRORS as exc:
                    skipped.append(pos)
                    verdict = _classify(line, exc)
                    if verdict is not None:
                        offset = int(offsets[pos])
                        rejects.append(Reject(bytes(line), *verdict, source, partition, offset))
        # an id can begin with "__" only where the raw block has '"__' or an escape (such as \u005f)
        columns.add(events, may_be_reserved=b'"__' in joined or b"\\" in joined)
    kept = np.delete(np.arange(n), skipped)
    originals = list(raw) if not skipped else [raw[i] for i in kept.tolist()]
    batch = columns.batch(offsets[kept], partition, raw=originals, source=source)
    infinite = np.isinf(batch.price)  # a guard: msgspec already refuses overflow, JSON has no NaN
    if infinite.any():
        for pos in kept[infinite].tolist():
            detail = f"field 'price' must be {_RULES['price']}, got inf"
            offset = int(offsets[pos])
            rejects.append(Reject(bytes(raw[pos]), "bad_number", detail, source, partition, offset))
        rejects.sort(key=attrgetter("offset"))
        kept = kept[~infinite]
        batch = batch.take(~infinite)
    if columns.maybe_reserved or columns.escapes:
        bad = _bad_strings(batch, reserved=columns.maybe_reserved, control=columns.escapes)
        if bad:
            for row, (reason, detail) in bad.items():
                pos = int(kept[row])
                offset = int(offsets[pos])
                rejects.append(Reject(bytes(raw[pos]), reason, detail, source, partition, offset))
            rejects.sort(key=attrgetter("offset"))
            batch = batch.take(np.delete(np.arange(len(batch)), sorted(bad)))
    return batch, rejects


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bad_strings(batch: EventBatch, *, reserved: bool, control: bool) -> dict[int, tuple[str, str]]:
    """Rows of ``batch`` whose strings break the contract: row -> (reason, detail), the first per row.

    ``reserved``: look for ids beginning ``__`` (``reserved_id``); ``control``: for control
    characters (C0, DEL, C1) in ids and the category (``bad_string``).  Called only for the
    rare batches whose cheap per-block scans hit.
    """
    bad: dict[int, tuple[str, str]] = {}
    for name in (*_COLUMN_IDS, "category"):
        column: list[str | None] = getattr(batch, name)
        for i, value in enumerate(column):
            if value is None or i in bad:
                continue
            if reserved and name != "category" and value.startswith("__"):
                bad[i] = ("reserved_id", _reserved_detail(name))
            elif control and (found := _CONTROL.search(value)) is not None:
                bad[i] = ("bad_string", f"field '{name}' holds control character U+{ord(found.group()):04X}")
    return dict(sorted(bad.items()))


def _reserved_detail(name: str) -> str:
    return f"field '{name}' begins with '__', which is reserved for control keys (such as __board__)"


class _Columns:
    """Event columns grown block by block, while each block's structs are still in the CPU cache.

    Pulling the fields of 1024 freshly decoded structs is about twice as fast as pulling them
    from a million structs that have left the cache.
    """

    def __init__(self) -> None:
        self.ts_ms: list[NDArray[np.int64]] = []
        self.type_code: list[NDArray[np.int8]] = []
        self.price: list[NDArray[np.float64]] = []
        self.quantity: list[NDArray[np.int64]] = []
        self.product_id: list[str] = []
        self.user_id: list[str] = []
        self.event_id: list[str | None] = []
        self.seller_id: list[str | None] = []
        self.category: list[str | None] = []
        self.maybe_reserved = False  # some id may begin with "__"
        self.escapes = False  # some record may hold a control character (an escape, DEL, a C1 byte)

    def add(self, events: list[_Event], *, may_be_reserved: bool = True) -> None:
        n = len(events)
        self.ts_ms.append(np.fromiter([e.ts for e in events], np.int64, n))
        codes = map(EVENT_TYPE_CODE.__getitem__, [e.type for e in events])
        self.type_code.append(np.fromiter(codes, np.int8, n))
        ids = ([e.product_id for e in events], [e.user_id for e in events])
        optional = ([e.event_id for e in events], [e.seller_id for e in events])
        self.product_id += ids[0]
        self.user_id += ids[1]
        self.event_id += optional[0]
        self.seller_id += optional[1]
        self.category += [e.category for e in events]
        # one join and search while the strings are in the CPU cache; a hit (or a "\0" inside an
        # id) only costs an exact check after decoding, in _bad_strings
        if may_be_reserved and not self.maybe_reserved:
            present = chain(*ids, filter(None, optional[0]), filter(None, optional[1]))
            self.maybe_reserved = "\0__" in "\0" + "\0".join(present)
        self.price.append(_column([e.price for e in events], np.float64, math.nan))
        self.quantity.append(_column([e.quantity for e in events], np.int64, 1))

    def batch(
        self, offsets: NDArray[np.int64], partition: int, *, raw: list[bytes] | None, source: str
    ) -> EventBatch:
        def join(parts: list[NDArray[Any]], dtype: type[np.generic]) -> NDArray[Any]:
            return np.concatenate(parts) if parts else np.empty(0, dtype)

        return EventBatch(
            ts_ms=join(self.ts_ms, np.int64),
            type_code=join(self.type_code, np.int8),
            product_id=self.product_id,
            user_id=self.user_id,
            event_id=self.event_id,
            seller_id=self.seller_id,
            category=self.category,
            price=join(self.price, np.float64),
            quantity=join(self.quantity, np.int64),
            partition=np.full(len(offsets), partition, np.int32),
            offset=offsets,
            raw=raw,
            source=source,
        )


def _column(values: list[Any], dtype: type[np.generic], absent: object) -> NDArray[Any]:
    """Values as an array, with ``None`` (an explicit JSON null) read as ``absent``."""
    try:
        return np.fromiter(values, dtype, len(values))
    except TypeError:
        return np.fromiter([absent if v is None else v for v in values], dtype, len(values))


def _check_offsets(offsets: NDArray[np.int64] | None, n: int) -> NDArray[np.int64]:
    if offsets is None:
        return np.arange(1, n + 1, dtype=np.int64)
    out = np.asarray(offsets, dtype=np.int64)
    if out.shape != (n,):
        msg = f"offsets must have one entry per record, shape ({n},); got shape {out.shape}"
        raise ValueError(msg)
    return out


def _classify(line: bytes, exc: Exception) -> tuple[str, str] | None:
    """Return ``(reason, detail)`` for a record msgspec refused, or None for a blank record."""
    if not line.strip():
        return None
    try:
        bytes(line).decode("utf-8")
    except UnicodeDecodeError as err:
        return "bad_utf8", f"record is not UTF-8: {err.reason} at byte {err.start}"
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return _classify_invalid(line, message)
    bad_byte = _BAD_BYTE.search(message)
    if bad_byte:
        pos = int(bad_byte.group(1))
        token = _NON_FINITE.search(line, max(0, pos - 8), pos + 10)
        if token and token.start() <= pos <= token.end() + 1:
            literal = token.group().decode()
            detail = f"non-finite number {literal} at byte {token.start()}: JSON has no NaN/Infinity"
            return "bad_number", detail
    return "bad_json", f"not valid JSON: {message}"


def _classify_invalid(line: bytes, message: str) -> tuple[str, str]:
    """Map a msgspec ValidationError message on well-formed JSON to a reason and a detail."""
    match = _ERROR_AT.match(message)
    what, field = (match.group("what"), match.group("field")) if match else (message, None)
    got = _GOT.search(what)
    if field is None:
        if what.startswith("Object missing required field"):
            name = what.rsplit("`", 2)[-2]
            return "missing_field", f"required field '{name}' is missing"
        if what.startswith("Expected `object`"):
            kind = got.group(1) if got else "something else"
            return "not_object", f"a record must be a JSON object, got {_JSON_KINDS.get(kind, kind)}"
        return "wrong_type", message
    rule = _RULES.get(field, "valid")
    if got and got.group(1) == "null" and field in REQUIRED_COLUMNS:
        return "missing_field", f"required field '{field}' is null"
    value = _field_value(line, field)
    if got:  # wrong JSON type
        kind = _JSON_KINDS.get(got.group(1), got.group(1))
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            kind = f"{kind} {_short(value)}"
        return _FIELD_REASON.get(field, "wrong_type"), f"field '{field}' must be {rule}, got {kind}"
    if "matching regex" in what and _UNRESERVED in what:
        return "reserved_id", _reserved_detail(field)
    if "length" in what:
        size = len(value) if isinstance(value, str) else "?"
        return "bad_string", f"field '{field}' must be {rule}, got {size} characters"
    shown = "an out-of-range number" if value is _MISSING else _short(value)
    reason = _FIELD_REASON.get(field, "bad_number" if field in ("price", "quantity") else "wrong_type")
    return reason, f"field '{field}' must be {rule}, got {shown}"


#: Reasons for a ts or type that is wrong in any way (type, range, spelling).
_FIELD_REASON: Final = {"ts": "bad_ts", "type": "unknown_event_type"}
_JSON_KINDS: Final = {
    "str": "a string", "int": "an integer", "float": "a float", "bool": "a boolean",
    "null": "null", "array": "an array", "object": "an object",
}  # fmt: skip


def _field_value(line: bytes, field: str) -> object:
    """The raw JSON value of ``field`` in ``line``, or _MISSING if it cannot be read back."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return _MISSING
    return obj.get(field, _MISSING) if isinstance(obj, dict) else _MISSING


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_frame(
    frame: pl.DataFrame,
    *,
    offsets: NDArray[np.int64] | None = None,
    raw: Sequence[bytes] | None = None,
    partition: int = 0,
    source: str = "",
    ts_scale: int = 1,
    type_names: Mapping[str, str] | None = None,
) -> tuple[EventBatch, list[Reject]]:
    """Validate contract columns with vectorised polars expressions.

    Parameters
    ----------
    frame : polars.DataFrame
        Any of :data:`COLUMNS` (others are ignored); :data:`REQUIRED_COLUMNS` must be present.
        Every column is read through its text form, so ``"12"`` and ``12`` are both a valid
        ``ts``, while ``"12.0"``, ``12.0`` or ``" 12"`` are not.  Null means absent.
    offsets : int64[n], optional
        Offset of each row (line or row number); defaults to ``1..n``.
    raw : sequence of bytes, optional
        The original bytes of each row (e.g. the CSV line), kept in rejects; by default a
        rejected row is serialised as a JSON object.
    partition, source
        As in :func:`decode_records`.
    ts_scale : int
        Milliseconds per unit of ``ts`` (1000 for epoch seconds).
    type_names : mapping of str to str, optional
        Spellings of ``type`` accepted in the input, mapped to :data:`EVENT_TYPES`; by default
        exactly the contract's names.

    Returns
    -------
    batch, rejects
        As in :func:`decode_records`.

    Raises
    ------
    InputError
        A required column is absent, or a column cannot be read as text.
    """
    import polars as pl  # the caller has a frame, so polars is imported already

    absent = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if absent:
        msg = f"columns {absent} are required; found columns {frame.columns}"
        raise InputError(msg)
    offsets = _check_offsets(offsets, frame.height)
    names = dict(zip(EVENT_TYPES, EVENT_TYPES, strict=True)) if type_names is None else dict(type_names)
    try:  # absent optional columns become null ones
        text = frame.select(
            pl.col(name).cast(pl.String) if name in frame.columns else pl.lit(None, pl.String).alias(name)
            for name in COLUMNS
        )
    except pl.exceptions.PolarsError as exc:
        msg = f"cannot read columns {frame.columns} as text: {exc}"
        raise InputError(msg) from exc
    codes = {k: EVENT_TYPE_CODE[v] for k, v in names.items()}
    work = text.with_columns(
        _ts=pl.col("ts").str.to_integer(strict=False),
        _code=pl.col("type").replace_strict(codes, default=-1, return_dtype=pl.Int8),
        _price=pl.col("price").cast(pl.Float64, strict=False),
        _qty=pl.col("quantity").str.to_integer(strict=False),
    )
    checks = _frame_checks(ts_scale)
    verdict: Any = pl.when(checks[0][2]).then(0)
    for index, (_, _, bad) in enumerate(checks[1:], start=1):
        verdict = verdict.when(bad).then(index)
    work = work.with_columns(_check=verdict.otherwise(-1).cast(pl.Int16))
    valid = work.get_column("_check").to_numpy() == -1
    ok = work.filter(pl.col("_check") == -1)
    m = ok.height
    batch = EventBatch(
        ts_ms=(ok.get_column("_ts") * ts_scale).to_numpy().astype(np.int64, copy=False),
        type_code=ok.get_column("_code").to_numpy().astype(np.int8, copy=False),
        ids=_id_spans(ok),  # no str per event: the lists are built from the spans if ever asked for
        price=ok.get_column("_price").fill_null(math.nan).to_numpy().astype(np.float64, copy=False),
        quantity=ok.get_column("_qty").fill_null(1).to_numpy().astype(np.int64, copy=False),
        partition=np.full(m, partition, np.int32),
        offset=offsets[valid],
        raw=None if raw is None else _valid_raw(raw, valid, m == frame.height),
        source=source,
    )
    if m == frame.height:
        return batch, []
    bad_rows = np.flatnonzero(~valid)
    originals = (
        [bytes(raw[i]) for i in bad_rows.tolist()]
        if raw is not None
        else [line.encode() for line in frame[bad_rows].write_ndjson().splitlines()]
    )
    described = work[bad_rows].select("_check", *COLUMNS).iter_rows(named=True)
    rejects = []
    for pos, original, row in zip(bad_rows.tolist(), originals, described, strict=True):
        reason, field, _ = checks[row["_check"]]
        detail = _frame_detail(reason, field, row[field], names, ts_scale)
        rejects.append(Reject(original, reason, detail, source, partition, int(offsets[pos])))
    return batch, rejects


def _valid_raw(raw: Sequence[bytes], valid: NDArray[np.bool_], every: bool) -> list[bytes]:
    """``bytes`` of the rows of ``raw`` where ``valid`` (``every``: all of them), in order."""
    if every:
        return list(map(bytes, raw))
    return list(map(bytes, map(raw.__getitem__, np.flatnonzero(valid).tolist())))


def _id_spans(frame: pl.DataFrame) -> IdColumns:
    """The id columns of ``frame`` (String, null: absent) as :class:`IdColumns`, with no ``str`` per row.

    Per column one ``join`` of its values (nulls left out) into UTF-8 bytes and the byte lengths
    (``len_bytes``), whose running sum gives the spans: the same texts and hashes as
    :meth:`IdColumns.from_strings` of the column's values (``tests/stream/test_decode_frame_ids.py``).
    """
    n = frame.height
    start = np.full((5, n), -1, np.int64)
    stop = np.full((5, n), -1, np.int64)
    chunks: list[bytes] = []
    pos = 0
    for row, name in enumerate(ID_FIELDS):
        column = frame.get_column(name)
        sizes = column.str.len_bytes()
        present = sizes.is_not_null().to_numpy()
        if not present.any():
            continue
        data = str(column.str.join("").item()).encode("utf-8")
        ends = np.cumsum(sizes.drop_nulls().to_numpy().astype(np.int64))
        begins = np.empty_like(ends)
        begins[0] = 0
        begins[1:] = ends[:-1]
        where = slice(None) if present.all() else np.flatnonzero(present)
        start[row, where] = begins + pos
        stop[row, where] = ends + pos
        chunks.append(data)
        pos += len(data)
    return IdColumns.from_spans(np.frombuffer(b"".join(chunks), np.uint8), start, stop)


def _frame_checks(ts_scale: int) -> list[tuple[str, str, pl.Expr]]:
    """The row checks of :func:`decode_frame` in priority order: ``(reason, field, is_bad)``."""
    import polars as pl

    lo, hi = -(-TS_MIN_MS // ts_scale), TS_MAX_MS // ts_scale
    integer = r"^-?[0-9]+$"
    checks = [("missing_field", name, pl.col(name).is_null()) for name in REQUIRED_COLUMNS]
    in_range = pl.col("_ts").is_between(lo, hi).fill_null(False)  # null: beyond int64
    checks.append(("bad_ts", "ts", ~pl.col("ts").str.contains(integer) | ~in_range))
    checks.append(("unknown_event_type", "type", pl.col("_code") == -1))
    for name, limit in _MAX_CHARS.items():
        checks.append(("bad_string", name, ~pl.col(name).str.len_chars().is_between(1, limit)))
    for name in _ID_FIELDS:
        checks.append(("reserved_id", name, pl.col(name).str.starts_with("__")))
    price, quantity = pl.col("_price"), pl.col("_qty")
    checks.append(("wrong_type", "price", pl.col("price").is_not_null() & price.is_null()))
    checks.append(("bad_number", "price", ~price.is_finite() | (price < 0)))
    given = pl.col("quantity").is_not_null()
    checks.append(("wrong_type", "quantity", given & ~pl.col("quantity").str.contains(integer)))
    checks.append(("bad_number", "quantity", given & (quantity.is_null() | (quantity < 1))))
    return [(reason, field, bad.fill_null(False)) for reason, field, bad in checks]


def _frame_detail(reason: str, field: str, value: str | None, names: dict[str, str], ts_scale: int) -> str:
    """One-line explanation of why a row of :func:`decode_frame` was refused."""
    if reason == "missing_field":
        return f"required field '{field}' is missing or empty"
    rule = _RULES[field]
    if field == "ts" and ts_scale != 1:
        unit = "epoch-seconds" if ts_scale == 1000 else f"count of {ts_scale} ms"
        rule = f"an integer {unit} between {-(-TS_MIN_MS // ts_scale)} and {TS_MAX_MS // ts_scale}"
    elif field == "type":
        rule = "one of " + ", ".join(names)
    elif reason == "wrong_type":
        rule = "a number" if field == "price" else "an integer"
    if reason == "bad_string":
        return f"field '{field}' must be {rule}, got {len(value or '')} characters"
    if reason == "reserved_id":
        return _reserved_detail(field)
    return f"field '{field}' must be {rule}, got {_short(value)}"
