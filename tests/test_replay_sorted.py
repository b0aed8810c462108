"""perf26: a sorted replay's batches, a run of unchanged board snapshots and the decoder's raw rows.

``replay(sort=True)`` reads its input in large batches and takes each engine batch straight from
the stable sort order; the batches must be the ones the old way gave (concatenate the reads, sort a
copy, copy each batch out of it), for any read size.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_board import CFG, cands, promoted_board
from tests.test_events_take import _columns
from viraltrend import replay as replay_mod
from viraltrend.board import Board
from viraltrend.config import load_config
from viraltrend.events import EventBatch, LineSpans, Reject
from viraltrend.messages import ENCODER
from viraltrend.stream.decode import _valid_raw, decode_frame
from viraltrend.stream.files import FileSource
from viraltrend.stream.sinks import DecisionFile


def _taobao_lines(n: int, seed: int) -> list[str]:
    """Taobao rows out of time order, equal times among them, a few bad rows."""
    rng = random.Random(seed)
    kinds = ["pv", "fav", "cart", "buy"]
    lines = []
    for i in range(n):
        ts = 1_511_544_000 + rng.randrange(0, 40)  # many ties: the sort must be stable
        kind = kinds[rng.randrange(4)] if i % 17 else "look"  # every 17th an unknown behaviour
        lines.append(f"{rng.randrange(9)},{rng.randrange(30)},{rng.randrange(5)},{kind},{ts}\n")
    return lines


def _old_sorted_batches(source: FileSource, batch_size: int, read_size: int) -> tuple[list[EventBatch], list]:
    """main 98286c7's ``_sorted_batches`` (reads of ``read_size``): the reference."""
    parts, rejects = [], []
    while not source.exhausted:
        batch, rj = source.next_batch(read_size)
        rejects += rj
        parts.append(batch)
    whole = EventBatch.concat(parts)
    if (np.diff(whole.ts_ms) < 0).any():
        whole.ids  # noqa: B018
        whole = whole.take(np.argsort(whole.ts_ms, kind="stable"))
    n = len(whole)
    return [whole.take(np.arange(i, min(i + batch_size, n))) for i in range(0, n, batch_size)], rejects


def _texts(b: EventBatch) -> list[list[str | None]]:
    return [b.ids.texts(row) for row in range(5)]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 200), seed=st.integers(0, 10**6), batch=st.integers(1, 120), read=st.integers(1, 400))
def test_sorted_batches_are_the_old_ones_for_any_read_size(tmp_path_factory, n, seed, batch, read):
    path = tmp_path_factory.mktemp("sorted") / "taobao.csv"
    path.write_text("".join(_taobao_lines(n, seed)))
    with FileSource([path], format="taobao", batch_size=10**6) as source:
        want, want_rejects = _old_sorted_batches(source, batch, read)
    got_rejects: list[Reject] = []
    with FileSource([path], format="taobao", batch_size=max(read, 1)) as source:
        got = replay_mod._sorted_batches(source, batch, got_rejects.extend)
    assert [len(b) for b in got] == [len(b) for b in want]
    for g, w in zip(got, want, strict=True):
        assert _columns(g) == _columns(w)
        assert _texts(g) == _texts(w)
        for a, b in ((g.ids.start, w.ids.start), (g.ts_ms, w.ts_ms), (g.ids.user_hash, w.ids.user_hash)):
            layout = (a.flags.c_contiguous, a.flags.f_contiguous)
            assert layout == (b.flags.c_contiguous, b.flags.f_contiguous)  # the kernels' signatures

    def key(rejects: list[Reject]) -> list[tuple]:
        return [(r.offset, r.reason, r.raw) for r in rejects]

    assert key(got_rejects) == key(want_rejects)


def test_a_sorted_replay_gives_the_same_decisions_for_any_read_size(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "taobao.csv"
    path.write_text("".join(_taobao_lines(3_000, 7)))
    cfg = load_config(None, environ={})

    reads: list[int] = []
    next_batch = FileSource.next_batch

    def spy(self: FileSource, max_events: int) -> tuple[EventBatch, list[Reject]]:
        batch, rejects = next_batch(self, max_events)
        reads.append(len(batch) + len(rejects))
        return batch, rejects

    monkeypatch.setattr(FileSource, "next_batch", spy)

    def decisions(read_events: int, batch_size: int) -> list[dict]:
        monkeypatch.setattr(replay_mod, "_SORT_READ_EVENTS", read_events)
        reads.clear()
        out = tmp_path / f"d-{read_events}-{batch_size}.ndjson"
        replay_mod.replay([path], cfg, out=out, batch_size=batch_size, file_format="taobao", sort=True)
        rows = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
        for r in rows:
            r.pop("emitted_at", None)
        return rows

    base = decisions(1, 50_000)  # reads of 50k (the batch size), as main read them
    assert base, "the replay wrote no message"
    assert decisions(10**6, 333) == base
    assert reads[0] == 3_000  # the file in one read, whatever the engine's batch size
    assert decisions(1, 333) == base
    assert max(reads) == 333
    assert decisions(10**6, 50_000) == base


def test_snapshots_of_an_unchanged_board_are_one_snapshot_per_time() -> None:
    for board in (Board(CFG), promoted_board(rows=((1, "p1", "s1", "c1", 0.9), (2, "p2", "s2", "c2", 0.95)))):
        times = [60_000, 120_000, 180_000, 240_000]
        got = board.snapshots(times)
        assert [ENCODER.encode(m) for m in got] == [ENCODER.encode(board.snapshot(t)) for t in times]
        assert len({id(m.entries) for m in got}) == len(times)  # each message its own list
        assert board.snapshots([]) == []
    assert len(promoted_board(rows=((1, "p1", "s1", "c1", 0.9),)).snapshots([1])[0].entries) == 1


class _Line(bytes):
    """A bytes subclass (``bytes()`` of it is a plain copy)."""


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.binary(max_size=6), max_size=20), data=st.data())
def test_valid_raw_is_bytes_of_each_valid_row(rows, data):
    valid = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows))), np.bool_)
    every = bool(valid.all())
    want = [bytes(rows[i]) for i in np.flatnonzero(valid).tolist()]
    for raw in (rows, [_Line(r) for r in rows], _spans(rows)):
        got = _valid_raw(raw, valid, every)
        assert got == want
        assert all(type(x) is bytes for x in got)


def _spans(rows: list[bytes]) -> LineSpans:
    data = b";".join(rows)
    ends = np.cumsum([len(r) + 1 for r in rows], dtype=np.int64) - 1
    return LineSpans(data, ends - np.asarray([len(r) for r in rows], np.int64), ends)


def test_decode_frame_keeps_the_raw_rows_of_the_valid_events() -> None:
    frame = pl.DataFrame(
        {
            "ts": ["1511544070000", "x", "1511544071000"],
            "type": ["view", "view", "view"],
            "product_id": ["a", "b", "c"],
            "user_id": ["u", "u", "u"],
        }
    )
    raw = [b"r0", b"r1", b"r2"]
    batch, rejects = decode_frame(frame, raw=raw)
    assert batch.raw == [b"r0", b"r2"] and [r.raw for r in rejects] == [b"r1"]
    batch, rejects = decode_frame(frame[[0, 2]], raw=[b"r0", b"r2"])
    assert batch.raw == [b"r0", b"r2"] and rejects == []


@pytest.mark.parametrize("n", [0, 1])
def test_snapshots_of_few_times(n: int) -> None:
    assert len(Board(CFG).snapshots(list(range(n)))) == n


def test_the_decisions_file_writes_each_message_encoded_on_its_own_line(tmp_path: Path) -> None:
    board = promoted_board(rows=((1, "p1", "s1", "c1", 0.9), (2, "p2", "s2", "c2", 0.95)))
    first = board.step(120_000, cands([(1, "p1", "s1", "c1", 0.1), (2, "p2", "s2", "c2", 0.95)]))
    messages = [*board.snapshots([1, 2]), *first, board.snapshot(3)]
    path = tmp_path / "d.ndjson"
    with DecisionFile(path) as out:
        out.write([])
        out.write(messages[:2])
        out.write(messages[2:])
        assert out.count == len(messages)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(messages) + 1
    assert all(m.emitted_at is not None for m in messages)
    assert lines[:-1] == [ENCODER.encode(m) for m in messages]
