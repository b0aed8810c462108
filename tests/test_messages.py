"""The output messages are typed msgspec Structs, each built in one place (viraltrend/messages.py)."""

from __future__ import annotations

import json

import msgspec
import pytest

from tests.conftest import read_events, run_engine
from tests.stream.contract import DECISION_FIELDS, check_dead_letter, check_deals_message
from viraltrend.board import Member
from viraltrend.config import load_config
from viraltrend.events import Reject
from viraltrend.merge import BoardMerger
from viraltrend.messages import (
    ENCODER,
    FRAMING_BYTES,
    BoardSnapshot,
    DeadLetter,
    Decision,
    board_snapshot,
    dead_letter,
    decision,
    decode_board_snapshot,
    message_key,
    stamp,
)
from viraltrend.replay import replay
from viraltrend.stream.kafka_io import dlq_record
from viraltrend.stream.sinks import RejectsFile

DECISION_KEYS = list(DECISION_FIELDS)  # the contract's order (tests/stream/contract.py)


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
    back = decode_board_snapshot(ENCODER.encode(snap))
    assert isinstance(back, BoardSnapshot) and [i.product_id for i in back.entries] == ["a", "b"]
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


# ------------------------------------------------------------- real output against the contracts
REPLAYED = dict(
    n_events=20_000,
    n_products=2_000,
    n_viral=2,
    n_steady=2,
    n_spikes=2,
    duration_s=4 * 3600.0,
    seed=3,
    duplicate_fraction=0.01,
    garbage_fraction=0.01,
)


@pytest.fixture(scope="module")
def replayed(scenario_factory, tmp_path_factory):
    """A replay of a simulated day with duplicates and garbage: its engine messages and its files."""
    directory = scenario_factory(**REPLAYED)
    out = tmp_path_factory.mktemp("replayed")
    summary = replay(
        [directory / "events.ndjson"],
        load_config(None, environ={}),
        out=out / "decisions.ndjson",
        rejects_out=out / "rejects.ndjson",
        batch_size=3_000,
    )
    _, messages = run_engine(read_events(directory / "events.ndjson"), [])
    return directory, out, summary, messages


def test_the_engine_returns_structs_that_encode_to_the_replayed_lines(replayed):
    _, out, _, messages = replayed
    assert messages and all(isinstance(m, Decision | BoardSnapshot) for m in messages)
    assert {type(m) for m in messages} == {Decision, BoardSnapshot}
    lines = (out / "decisions.ndjson").read_bytes().splitlines()
    assert len(lines) == len(messages)  # the final snapshot included
    for m, line in zip(messages, lines, strict=False):
        assert ENCODER.encode(msgspec.structs.replace(m, emitted_at=json.loads(line)["emitted_at"])) == line


def test_every_replayed_decision_and_snapshot_meets_the_deals_contract(replayed):
    _, out, summary, _ = replayed
    decoded = [
        check_deals_message(None, line) for line in (out / "decisions.ndjson").read_bytes().splitlines()
    ]
    actions = {m["action"] for m in decoded}
    assert {"promote", "board"} <= actions, actions
    assert decoded[-1]["action"] == "board" and decoded[-1]["items"] == summary.board


def test_every_replayed_reject_is_a_dead_letter_with_its_original_line(replayed):
    directory, out, summary, _ = replayed
    lines = (directory / "events.ndjson").read_bytes().splitlines()
    raw = (out / "rejects.ndjson").read_bytes().splitlines()
    records = [json.loads(x) for x in raw]
    assert len(records) == sum(summary.rejected.values()) > 0
    assert {r["reason"] for r in records} >= {"duplicate"} and len({r["reason"] for r in records}) > 2
    for x, r in zip(raw, records, strict=True):
        check_dead_letter(x, original=lines[r["offset"] - 1])
        assert (r["source_topic"], r["partition"]) == (str(directory / "events.ndjson"), 0)


def test_the_rejects_file_and_the_dlq_hold_the_same_record(tmp_path):
    rejects = [
        Reject(b'{"ts": "soon"}', "bad_type", "ts: not an integer", "events.ndjson", 0, 3),
        Reject(b"\xff\xfe{", "bad_utf8", "not UTF-8", "events.ndjson", 0, 4, {"at_byte": 0}),
        Reject(b"y" * 5000, "bad_json", "not JSON", "events.ndjson", 0, 5),
        Reject(b"\x00" * 3000, "bad_json", "not JSON", "events.ndjson", 0, 6),  # escapes 6x
    ]
    path = tmp_path / "r.ndjson"
    with RejectsFile(path, max_bytes=2048) as f:
        f.write(rejects)
    lines = path.read_bytes().splitlines()
    for r, line in zip(rejects, lines, strict=True):
        at = json.loads(line)["rejected_at"]
        assert line == dlq_record(r, now_ms=at, max_bytes=2048)
        assert len(line) <= 2048
        d = check_dead_letter(line, original=r.raw)
        assert d.get("truncated", False) == (len(r.raw) > 1000)


def test_a_replay_truncates_a_reject_too_large_for_the_dlq_with_its_size_and_digest(tmp_path):
    big = b'{"ts": 1, "type": "view", "product_id": "' + b"p" * 6000 + b'", "user_id": "u"}'
    good = b'{"ts": 1764253200000, "type": "view", "product_id": "p", "user_id": "u"}'
    path = tmp_path / "events.ndjson"
    path.write_bytes(good + b"\n" + big + b"\n")
    environ = {"VIRALTREND_KAFKA_MAX_MESSAGE_BYTES": "4096"}
    replay(
        [path],
        load_config(None, environ=environ),
        out=tmp_path / "d.ndjson",
        rejects_out=tmp_path / "r.ndjson",
    )
    (line,) = (tmp_path / "r.ndjson").read_bytes().splitlines()
    d = check_dead_letter(line, original=big)
    assert d["truncated"] and d["original_size"] == len(big) and d["offset"] == 2
    assert len(line) <= 4096 - FRAMING_BYTES


def test_a_message_is_read_by_the_contracts_names_and_its_view_is_read_only():
    d = decision(
        "update",
        product_id="p",
        seller_id="s",
        category=None,
        rank=2,
        score=0.5,
        event_ts=9,
        reasons=[],
        features={},
    )
    assert dict(d) == json.loads(ENCODER.encode(d)) and "rank" in d and "items" not in d
    assert d.get("items", "none") == "none"
    with pytest.raises(KeyError):
        d["items"]
    with pytest.raises(TypeError):
        d["rank"] = 3  # type: ignore[index]
    snap = board_snapshot(9, [(1, member("p", 0.5))])
    assert (
        list(snap) == ["schema", "action", "event_ts", "emitted_at", "items"]
        and snap["items"] == snap.entries
    )
    assert dict(snap.items())["items"][0]["product_id"] == "p"
    assert stamp(snap, 42) is snap and json.loads(ENCODER.encode(snap))["emitted_at"] == 42
    assert message_key(snap) == b"__board__" and message_key(d) == b"p"
