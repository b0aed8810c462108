"""Every message the service writes, as typed msgspec Structs, each built in one place.

- :class:`Decision`: a per-product board change (``promote`` / ``update`` / ``demote`` /
  ``block``; key ``product_id``), built by :func:`decision`, whether a partition's board or the
  merged board decided it;
- :class:`BoardSnapshot` of :class:`BoardItem`: the whole board (key ``__board__``), built by
  :func:`board_snapshot` and read back by :func:`decode_board_snapshot`;
- :class:`DeadLetter`: a rejected record on the dead-letter topic, built by :func:`dead_letter`;
- :class:`CandidatesRecord` of :class:`CandidateMember`: one partition's board shared with the
  other workers (see :mod:`viraltrend.stream.candidates`).

The field order is the contracts' (``shared/contract/deals.md``, ``events.md``).  The engine and
the merger hand decisions and snapshots on as the plain JSON-shaped dicts of the contract
(:data:`Message`), converted from the Struct where they are built: replays, tests and tools read
them as JSON, and the sink encodes them with :data:`ENCODER`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

import msgspec

from viraltrend.events import Reject

__all__ = [
    "SCHEMA",
    "ENCODER",
    "BoardItem",
    "BoardSnapshot",
    "CandidateMember",
    "CandidatesRecord",
    "DeadLetter",
    "DecisionAction",
    "Decision",
    "Message",
    "board_snapshot",
    "dead_letter",
    "decision",
    "decode_board_snapshot",
]

#: A decision or a snapshot as the contract's JSON object (what the engine returns).
Message = dict[str, Any]
DecisionAction = Literal["promote", "update", "demote", "block"]
SCHEMA: Final = 1
#: One encoder for every message (numpy scalars and other odd values become strings).
ENCODER: Final = msgspec.json.Encoder(enc_hook=str)


class Decision(msgspec.Struct, kw_only=True):
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


class BoardItem(msgspec.Struct, kw_only=True):
    """One product of a board snapshot."""

    rank: int
    product_id: str
    seller_id: str | None
    category: str | None
    score: float
    since_ts: int


class BoardSnapshot(msgspec.Struct, kw_only=True):
    """The whole board (key ``__board__``)."""

    schema: int = SCHEMA
    action: Literal["board"] = "board"
    event_ts: int
    emitted_at: int | None = None
    items: list[BoardItem]


class DeadLetter(msgspec.Struct, kw_only=True):
    """A rejected record on the dead-letter topic (``events.md``); unset fields are left out."""

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
    messages: dict[str, Message] = {}  # noqa: RUF012 - msgspec copies mutable defaults


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
) -> Message:
    """The one place a decision is built: the :class:`Decision` as the contract's JSON object."""
    built = Decision(
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
    out: Message = msgspec.structs.asdict(built)
    return out


def board_snapshot(event_ts: int, ranked: Iterable[tuple[int, _Member]]) -> Message:
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
    out: Message = msgspec.to_builtins(BoardSnapshot(event_ts=int(event_ts), items=items))
    return out


def decode_board_snapshot(value: bytes) -> BoardSnapshot:
    """Read a published ``__board__`` value; :class:`ValueError` says what is wrong with a bad one."""
    try:
        return msgspec.json.decode(value, type=BoardSnapshot)
    except msgspec.DecodeError as exc:  # ValidationError included
        msg = f"not a board snapshot: {exc}"
        raise ValueError(msg) from exc


def dead_letter(reject: Reject, *, now_ms: int | None = None) -> DeadLetter:
    """The one place a dead letter is built: ``reject`` with its original bytes, whole."""
    raw = reject.raw
    try:
        original: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        original = None
    return DeadLetter(
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
