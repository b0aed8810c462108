"""Every message the service writes, as typed msgspec Structs, each built in one place.

- :class:`Decision`: a per-product board change (``promote`` / ``update`` / ``demote`` /
  ``block``; key ``product_id``), built by :func:`decision`, whether a partition's board or the
  merged board decided it;
- :class:`BoardSnapshot` of :class:`BoardItem`: the whole board (key ``__board__``), built by
  :func:`board_snapshot` and read back by :func:`decode_board_snapshot`;
- :class:`DeadLetter`: a rejected record, built by :func:`dead_letter`, the same record on the
  dead-letter topic and in a replay's rejects file (truncated, with the full size and SHA-256,
  when it would not fit);
- :class:`CandidatesRecord` of :class:`CandidateMember`: one partition's board shared with the
  other workers (see :mod:`viraltrend.stream.candidates`).

The field order is the contracts' (``shared/contract/deals.md``, ``events.md``).  The engine, the
board and the merger return the Structs themselves (:data:`Message`); a sink stamps
``emitted_at`` (:func:`stamp`) and encodes each once with :data:`ENCODER`, whose JSON is the
contract's.  A decision or snapshot can also be read by the contract's field names
(``m["action"]``, ``m.get("rank")``, ``dict(m)``), as a tool reading the published JSON would.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

import msgspec

from viraltrend.errors import StreamError
from viraltrend.events import Reject

__all__ = [
    "SCHEMA",
    "ENCODER",
    "BoardItem",
    "BoardSnapshot",
    "CandidateMember",
    "CandidatesRecord",
    "BOARD_KEY",
    "FRAMING_BYTES",
    "DeadLetter",
    "DecisionAction",
    "Decision",
    "Message",
    "board_snapshot",
    "dead_letter",
    "decision",
    "decode_board_snapshot",
    "message_key",
    "stamp",
]

DecisionAction = Literal["promote", "update", "demote", "block"]
SCHEMA: Final = 1
#: The key of board snapshots on the output topic (``deals.md``).
BOARD_KEY: Final = b"__board__"
#: Bytes of a Kafka message that are not its key or value (record batch, record headers), with room to spare.
FRAMING_BYTES: Final = 128
#: One encoder for every message (numpy scalars and other odd values become strings).
ENCODER: Final = msgspec.json.Encoder(enc_hook=str)


class _ByName:
    """Read access by the contract's field names: ``m["rank"]``, ``m.get(...)``, ``dict(m)``.

    What a reader of the published JSON object would write; the Struct stays the one typed
    object (no dict is built).  Names are the JSON's (a snapshot's ``items`` is the attribute
    :attr:`BoardSnapshot.entries`).  The view is read-only (no item assignment): fields are set
    by their builder (the board ranks its fresh promotes) and by :func:`stamp` only.
    """

    __slots__ = ()
    __struct_fields__: tuple[str, ...]
    __struct_encode_fields__: tuple[str, ...]

    def _attr(self, name: str) -> str | None:
        fields = self.__struct_encode_fields__
        return self.__struct_fields__[fields.index(name)] if name in fields else None

    def __getitem__(self, name: str) -> Any:
        attr = self._attr(name)
        if attr is None:
            raise KeyError(name)
        return getattr(self, attr)

    def get(self, name: str, default: Any = None) -> Any:
        """The field ``name``, or ``default`` when the message has no such field."""
        attr = self._attr(name)
        return default if attr is None else getattr(self, attr)

    def keys(self) -> tuple[str, ...]:
        """The field names, in the contract's order."""
        return self.__struct_encode_fields__

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` pairs, in the contract's order."""
        pairs = zip(self.__struct_encode_fields__, self.__struct_fields__, strict=True)
        return ((name, getattr(self, attr)) for name, attr in pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__struct_encode_fields__)

    def __contains__(self, name: object) -> bool:
        return name in self.__struct_encode_fields__


class Decision(msgspec.Struct, _ByName, kw_only=True):
    """A per-product board change (``deals.md``)."""

    schema: int = SCHEMA
    action: DecisionAction
    product_id: str
    seller_id: str | None
    category: str | None
    rank: int | None  # 1-based; null after demote / block
    score: float
    event_ts: int  # the event time (epoch ms) it was decided at
    emitted_at: int | None = None  # wall-clock epoch ms, stamped when published
    reasons: list[str]
    features: dict[str, float]


class BoardItem(msgspec.Struct, _ByName, kw_only=True):
    """One product of a board snapshot."""

    rank: int
    product_id: str
    seller_id: str | None
    category: str | None
    score: float
    since_ts: int


class BoardSnapshot(msgspec.Struct, _ByName, kw_only=True):
    """The whole board (key ``__board__``)."""

    schema: int = SCHEMA
    action: Literal["board"] = "board"
    event_ts: int
    emitted_at: int | None = None
    entries: list[BoardItem] = msgspec.field(name="items")  # "items" in the JSON


#: A decision or a board snapshot: what the engine, the board and the merger return.
Message = Decision | BoardSnapshot


class DeadLetter(msgspec.Struct, kw_only=True):
    """A rejected record (``events.md``): on the dead-letter topic and in a replay's rejects file.

    ``source_topic``, ``partition`` and ``offset`` say where it was read: the input topic, or
    for a replay the file, partition 0 and the 1-based line (the row for Parquet).  Unset
    fields are left out of the JSON.
    """

    schema: int = SCHEMA
    reason: str
    detail: str
    source_topic: str
    partition: int
    offset: int
    original: str | None  # the bytes as text when they are UTF-8
    original_b64: str
    rejected_at: int
    extra: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    truncated: bool | msgspec.UnsetType = msgspec.UNSET  # only a prefix of the original is kept
    original_size: int | msgspec.UnsetType = msgspec.UNSET
    original_sha256: str | msgspec.UnsetType = msgspec.UNSET


class CandidateMember(msgspec.Struct, kw_only=True):
    """A member of one partition's board, as shared on the candidates topic."""

    product_id: str
    seller_id: str | None
    category: str | None
    score: float
    since_ms: int


class CandidatesRecord(msgspec.Struct, kw_only=True):
    """One partition's board (key: the partition number) on the candidates topic."""

    schema: int = SCHEMA
    partition: int
    offset: int  # next input offset: the state reflects every record before it
    watermark_ms: int | None
    members: list[CandidateMember]
    messages: dict[str, Decision] = {}  # noqa: RUF012 - msgspec copies mutable defaults


class _Member(Protocol):
    """What a board member gives a message (:class:`viraltrend.board.Member`)."""

    product_id: str
    seller_id: str | None
    category: str | None
    score: float
    since_ms: int


def decision(
    action: DecisionAction,
    *,
    product_id: str,
    seller_id: str | None,
    category: str | None,
    rank: int | None,
    score: float,
    event_ts: int,
    reasons: Sequence[str],
    features: Mapping[str, float],
) -> Decision:
    """The one place a decision is built."""
    return Decision(
        action=action,
        product_id=product_id,
        seller_id=seller_id,
        category=category,
        rank=rank,
        score=round(float(score), 6),
        event_ts=int(event_ts),
        reasons=list(reasons),
        features=dict(features),
    )


def board_snapshot(event_ts: int, ranked: Iterable[tuple[int, _Member]]) -> BoardSnapshot:
    """The one place a board snapshot is built, from ``(rank, member)`` pairs best first."""
    items = [
        BoardItem(
            rank=rank,
            product_id=m.product_id,
            seller_id=m.seller_id,
            category=m.category,
            score=round(m.score, 6),
            since_ts=m.since_ms,
        )
        for rank, m in ranked
    ]
    return BoardSnapshot(event_ts=int(event_ts), entries=items)


def stamp(message: Message, now_ms: int | None = None) -> Message:
    """Set ``emitted_at`` (wall-clock epoch ms, now unless given) as it is published; returns it."""
    message.emitted_at = int(time.time() * 1000) if now_ms is None else now_ms
    return message


def message_key(message: Message) -> bytes:
    """The output topic's key: :data:`BOARD_KEY` for a snapshot, else the product id."""
    return BOARD_KEY if isinstance(message, BoardSnapshot) else message.product_id.encode("utf-8")


def decode_board_snapshot(value: bytes) -> BoardSnapshot:
    """Read a published ``__board__`` value; :class:`ValueError` says what is wrong with a bad one."""
    try:
        return msgspec.json.decode(value, type=BoardSnapshot)
    except msgspec.DecodeError as exc:  # ValidationError included
        msg = f"not a board snapshot: {exc}"
        raise ValueError(msg) from exc


def dead_letter(reject: Reject, *, now_ms: int | None = None, max_bytes: int | None = None) -> DeadLetter:
    """The one place a rejected record is built: ``reject`` with its original bytes.

    Fields: ``schema`` (1), ``reason``, ``detail``, ``source_topic``, ``partition``,
    ``offset``, ``original`` (the bytes as text if they are UTF-8, else null),
    ``original_b64`` (always), ``rejected_at`` (wall-clock epoch ms), and ``extra`` when the
    reject carries extra facts.

    When its JSON would be longer than ``max_bytes``, it is *truncated*, never dropped:
    ``original`` and ``original_b64`` then hold the longest prefix of the original bytes that
    fits (cut on a UTF-8 character boundary), and ``truncated`` (true), ``original_size`` (the
    full length in bytes) and ``original_sha256`` (hex digest of the full original) are set.

    Raises
    ------
    StreamError
        Even with no byte of the original, the record is longer than ``max_bytes``.

    Examples
    --------
    >>> from viraltrend.events import Reject
    >>> ENCODER.encode(dead_letter(Reject(b"{", "bad_json", "truncated", "events", 1, 7), now_ms=5))[:40]
    b'{"schema":1,"reason":"bad_json","detail"'
    >>> big = dead_letter(Reject(b"x" * 5000, "bad_json", "not JSON"), now_ms=5, max_bytes=2000)
    >>> len(ENCODER.encode(big)) <= 2000, big.truncated, big.original_size, len(big.original) > 500
    (True, True, 5000, True)
    """
    raw = reject.raw
    try:
        original: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        original = None
    letter = DeadLetter(
        reason=reject.reason,
        detail=reject.detail,
        source_topic=reject.source,
        partition=reject.partition,
        offset=reject.offset,
        original=original,
        original_b64=base64.b64encode(raw).decode("ascii"),
        rejected_at=int(time.time() * 1000) if now_ms is None else now_ms,
        extra=dict(reject.extra) if reject.extra else msgspec.UNSET,
    )
    if reject.full_size >= 0:  # the source kept only the start of the record (an oversized file line)
        letter = msgspec.structs.replace(
            letter, truncated=True, original_size=reject.full_size, original_sha256=reject.full_sha256
        )
    if max_bytes is None or (not reject.extra and _most_bytes(reject) <= max_bytes):
        return letter  # surely fits: not encoded here, only once by its sink
    if len(ENCODER.encode(letter)) <= max_bytes:
        return letter
    return _truncated(letter, raw, max_bytes=max_bytes)


def _most_bytes(reject: Reject) -> int:
    """An upper bound of a dead letter's JSON length without ``extra``.

    A byte of text takes at most 6 bytes of JSON (an escaped control character), base64 4 per 3, and the keys,
    numbers and quotes fewer than 512.
    """
    text = len(reject.raw) + len(reject.reason) + len(reject.detail.encode()) + len(reject.source.encode())
    return 6 * text + 4 * (len(reject.raw) // 3 + 1) + 512


def _truncated(letter: DeadLetter, raw: bytes, *, max_bytes: int) -> DeadLetter:
    """``letter`` with the longest prefix of ``raw`` that keeps it within ``max_bytes`` (see dead_letter)."""
    utf8 = letter.original is not None
    whole = letter  # already the start of a longer record: its full size and digest stay
    if letter.truncated is not True:
        whole = msgspec.structs.replace(
            letter, truncated=True, original_size=len(raw), original_sha256=hashlib.sha256(raw).hexdigest()
        )

    def cut(k: int) -> DeadLetter:
        if utf8:
            while 0 < k < len(raw) and raw[k] & 0xC0 == 0x80:  # not inside a UTF-8 character
                k -= 1
        prefix = raw[:k]
        return msgspec.structs.replace(
            whole,
            original=prefix.decode("utf-8") if utf8 else None,
            original_b64=base64.b64encode(prefix).decode("ascii"),
        )

    if len(ENCODER.encode(cut(0))) > max_bytes:
        msg = (
            f"the dead letter of {letter.source_topic!r}[{letter.partition}] offset "
            f"{letter.offset} needs {len(ENCODER.encode(cut(0)))} bytes without its original, over "
            f"the {max_bytes}-byte limit; raise kafka.max_message_bytes"
        )
        raise StreamError(msg)
    lo, hi = 0, len(raw)  # the longest fitting prefix: lo fits, hi + 1 does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(ENCODER.encode(cut(mid))) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return cut(lo)
