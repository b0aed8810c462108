"""The output messages are typed msgspec Structs, each built in one place (viraltrend/messages.py)."""

from __future__ import annotations

import json

import msgspec
import pytest

from viraltrend.board import Member
from viraltrend.config import load_config
from viraltrend.events import Reject
from viraltrend.merge import BoardMerger
from viraltrend.messages import (
    BoardSnapshot,
    DeadLetter,
    Decision,
    board_snapshot,
    dead_letter,
    decision,
    decode_board_snapshot,
)
from viraltrend.stream.kafka_io import dlq_record

DECISION_KEYS = [
    "schema",
    "action",
    "product_id",
    "seller_id",
    "category",
    "rank",
    "score",
    "event_ts",
    "emitted_at",
    "reasons",
    "features",
]


def member(pid: str, score: float) -> Member:
    return Member(slot=-1, product_id=pid, seller_id="s", category="c", score=score, since_ms=7)


def test_a_decision_has_the_contracts_fields_in_order_and_validates():
    d = decision(
        "promote",
        product_id="p",
        seller_id=None,
        category="c",
        rank=1,
        score=0.1234567891,
        event_ts=5,
        reasons=("a",),
        features={"lift": 2.0},
    )
    assert list(d) == DECISION_KEYS == list(Decision.__struct_fields__)
    assert d["score"] == 0.123457 and d["emitted_at"] is None and d["schema"] == 1
    assert msgspec.convert(d, Decision).action == "promote"
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**d, "action": "sideways"}, Decision)


def test_the_merged_boards_decisions_and_snapshots_come_from_the_same_builders():
    merger = BoardMerger(load_config(None, environ={}).board)
    out = merger.merge([member("a", 0.9), member("b", 0.8)], 100, {})
    promotes, snap = out[:-1], out[-1]
    assert [list(m) for m in promotes] == [DECISION_KEYS, DECISION_KEYS]
    assert snap == board_snapshot(100, enumerate([member("a", 0.9), member("b", 0.8)], start=1))
    back = decode_board_snapshot(json.dumps(snap).encode())
    assert isinstance(back, BoardSnapshot) and [i.product_id for i in back.items] == ["a", "b"]
    fresh = BoardMerger(merger.cfg)
    fresh.adopt(back)
    assert fresh.merge([member("a", 0.9), member("b", 0.8)], 200, {}) == []  # nothing changed


@pytest.mark.parametrize(
    "value",
    [
        b"nope",
        b"{}",
        b'{"event_ts": 1, "items": [{"rank": "one"}]}',
        b'{"action": "promote", "event_ts": 1, "items": []}',
    ],
)
def test_an_unreadable_board_snapshot_is_a_value_error(value):
    with pytest.raises(ValueError, match="not a board snapshot"):
        decode_board_snapshot(value)


def test_a_dead_letter_leaves_out_what_is_unset_and_keeps_the_bytes():
    letter = dead_letter(Reject(b"\xff{", "bad_utf8", "not UTF-8", "events", 2, 9), now_ms=3)
    assert isinstance(letter, DeadLetter) and letter.original is None
    record = json.loads(dlq_record(Reject(b"\xff{", "bad_utf8", "not UTF-8", "events", 2, 9), now_ms=3))
    assert "extra" not in record and "truncated" not in record
    assert record["original_b64"] == "/3s=" and record["original"] is None
    assert list(record)[:3] == ["schema", "reason", "detail"]
