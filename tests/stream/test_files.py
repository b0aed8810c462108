from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from viraltrend.errors import InputError
from viraltrend.events import EVENT_TYPES, EventBatch, LineSpans, Reject
from viraltrend.messages import dead_letter
from viraltrend.stream import files
from viraltrend.stream.decode import decode_records
from viraltrend.stream.files import FileSource

TS = 1_764_253_200_123
TAOBAO_SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "taobao_userbehavior_sample.csv.gz"


def event(i: int, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {"ts": TS + i, "type": EVENT_TYPES[i % 6], "product_id": f"p-{i}"}
    record["user_id"] = "u"
    record.update(fields)
    return record


def as_frame(batch: EventBatch) -> pl.DataFrame:
    return pl.DataFrame(
        {name: getattr(batch, name) for name in EventBatch.FIELDS if name not in ("raw", "source")},
        schema_overrides={"event_id": pl.String, "seller_id": pl.String, "category": pl.String},
    )


def read_all(source: FileSource, max_events: int = 1_000_000) -> tuple[EventBatch, list[Reject]]:
    batches, rejects = [], []
    while not source.exhausted:
        batch, bad = source.next_batch(max_events)
        batches.append(batch)
        rejects += bad
    return EventBatch.concat(batches), rejects


@pytest.fixture
def write_ndjson(tmp_path: Path) -> Callable[..., Path]:
    def write(lines: list[bytes], *, name: str = "events.ndjson", final_newline: bool = True) -> Path:
        data = b"\n".join(lines) + (b"\n" if final_newline else b"")
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return write


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, *, name: str = "events.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
        return path

    return write


GOOD = [msgspec.json.encode(event(i)) for i in range(5)]
CSV_TEXT = (
    "ts,type,product_id,user_id,seller_id,price,quantity,extra\n"
    f"{TS},view,p-0,u,s-1,,,x\n"
    f'{TS + 1},purchase,"p,1",u,,12.5,2,y\n'
    f"{TS + 2},share,p-2,u,s-1,0,,z\n"
)


def test_ndjson_file_yields_every_event_with_its_line_number(write_ndjson: Callable[..., Path]) -> None:
    batch, rejects = read_all(FileSource([write_ndjson(GOOD)]))
    assert (batch.product_id, batch.offset.tolist()) == ([f"p-{i}" for i in range(5)], [1, 2, 3, 4, 5])
    assert rejects == []


def test_gzip_ndjson_reads_like_plain_ndjson(write_ndjson: Callable[..., Path]) -> None:
    plain = read_all(FileSource([write_ndjson(GOOD)]))[0]
    gzipped = read_all(FileSource([write_ndjson(GOOD, name="events.jsonl.gz")]))[0]
    assert_frame_equal(as_frame(gzipped), as_frame(plain))


def test_last_line_without_newline_is_read(write_ndjson: Callable[..., Path]) -> None:
    batch, _ = read_all(FileSource([write_ndjson(GOOD, final_newline=False)]))
    assert batch.offset.tolist() == [1, 2, 3, 4, 5]


def test_crlf_line_ends_are_accepted_in_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\r\n".join(GOOD) + b"\r\n")
    batch, rejects = read_all(FileSource([path]))
    assert (len(batch), rejects) == (5, [])


def test_bad_lines_become_rejects_with_path_and_line_number(write_ndjson: Callable[..., Path]) -> None:
    path = write_ndjson([GOOD[0], b"{oops", b"", GOOD[1], b'{"ts":"soon"}'])
    batch, rejects = read_all(FileSource([path]))
    assert batch.offset.tolist() == [1, 4]
    assert [(r.raw, r.reason, r.source, r.offset) for r in rejects] == [
        (b"{oops", "bad_json", str(path), 2),
        (b'{"ts":"soon"}', "bad_ts", str(path), 5),
    ]


def test_batches_never_exceed_max_events(write_ndjson: Callable[..., Path]) -> None:
    source = FileSource([write_ndjson(GOOD)])
    sizes = [len(source.next_batch(2)[0]) for _ in range(3)]
    assert (sizes, source.exhausted) == ([2, 2, 1], True)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 100])
def test_reading_in_small_batches_equals_reading_at_once(
    write_ndjson: Callable[..., Path], batch_size: int
) -> None:
    lines = [GOOD[0], b"[]", GOOD[1], b"", GOOD[2], b"nope", GOOD[3], GOOD[4]]
    path = write_ndjson(lines)
    whole, whole_rejects = read_all(FileSource([path], batch_size=1_000))
    chunked, chunked_rejects = read_all(FileSource([path], batch_size=batch_size))
    assert_frame_equal(as_frame(chunked), as_frame(whole))
    assert chunked_rejects == whole_rejects


def test_snapshot_counts_the_records_consumed(write_ndjson: Callable[..., Path]) -> None:
    source = FileSource([write_ndjson(GOOD)])
    source.next_batch(3)
    assert source.snapshot() == {0: 3}


def test_files_are_replayed_one_after_the_other(write_ndjson: Callable[..., Path]) -> None:
    first = write_ndjson(GOOD[:2], name="a.ndjson")
    second = write_ndjson(GOOD[2:], name="b.ndjson.gz")
    batch, _ = read_all(FileSource([first, second]))
    assert (batch.product_id, batch.offset.tolist()) == ([f"p-{i}" for i in range(5)], [1, 2, 1, 2, 3])


def test_empty_file_is_exhausted_at_once(write_ndjson: Callable[..., Path]) -> None:
    source = FileSource([write_ndjson([], final_newline=False)])
    assert source.exhausted


def test_bytes_read_reaches_total_bytes_when_exhausted(write_ndjson: Callable[..., Path]) -> None:
    source = FileSource([write_ndjson(GOOD), write_ndjson(GOOD, name="more.ndjson.gz")])
    read_all(source, max_events=2)
    assert source.bytes_read == source.total_bytes > 0


def test_csv_with_header_decodes_the_contract_columns(write_csv: Callable[..., Path]) -> None:
    batch, rejects = read_all(FileSource([write_csv(CSV_TEXT)]))
    assert rejects == []
    assert (batch.ts_ms.tolist(), batch.product_id) == ([TS, TS + 1, TS + 2], ["p-0", "p,1", "p-2"])
    assert batch.seller_id == ["s-1", None, "s-1"]
    assert (np.isnan(batch.price).tolist(), batch.quantity.tolist(), batch.offset.tolist()) == (
        [True, False, False],
        [1, 2, 1],
        [2, 3, 4],
    )


def test_gzip_csv_reads_like_plain_csv(write_csv: Callable[..., Path]) -> None:
    plain = read_all(FileSource([write_csv(CSV_TEXT)]))[0]
    gzipped = read_all(FileSource([write_csv(CSV_TEXT, name="events.csv.gz")]))[0]
    assert_frame_equal(as_frame(gzipped), as_frame(plain))


def test_bad_csv_rows_are_rejected_with_their_original_line(write_csv: Callable[..., Path]) -> None:
    text = "ts,type,product_id,user_id,price\n" + "\n".join([
        f"{TS},view,p,u,1",
        "soon,view,p,u,1",
        f"{TS},poke,p,u,1",
        f"{TS},view,p,u",
        f"{TS},view,p,u,1,extra",
        f"{TS},view,,u,1",
        f"{TS},view,p,u,-3",
        f"{TS}.5,view,p,u,1",
        f"{TS},view,\"p\"x,u,1",
        f"{TS},like,p,u,2",
    ])  # fmt: skip
    batch, rejects = read_all(FileSource([write_csv(text)]))
    assert batch.offset.tolist() == [2, 11]
    assert [(r.offset, r.reason) for r in rejects] == [
        (3, "bad_ts"), (4, "unknown_event_type"), (5, "bad_json"), (6, "bad_json"),
        (7, "missing_field"), (8, "bad_number"), (9, "bad_ts"), (10, "bad_json"),
    ]  # fmt: skip
    assert rejects[0].raw == b"soon,view,p,u,1"


def test_invalid_utf8_in_a_csv_row_rejects_only_that_row(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    rows = f"{TS},view,p\xff,u\n{TS},view,p,u\n".encode("latin-1")  # \xff alone is not UTF-8
    path.write_bytes(b"ts,type,product_id,user_id\n" + rows)
    batch, rejects = read_all(FileSource([path]))
    assert (batch.offset.tolist(), [(r.offset, r.reason) for r in rejects]) == ([3], [(2, "bad_utf8")])


def test_csv_without_the_contract_header_is_an_input_error(write_csv: Callable[..., Path]) -> None:
    path = write_csv("1,2268318,2520377,pv,1511544070\n")
    with pytest.raises(InputError, match="--format taobao"):
        read_all(FileSource([path]))


def test_csv_reading_in_small_batches_equals_reading_at_once(write_csv: Callable[..., Path]) -> None:
    path = write_csv(CSV_TEXT + "bad,view,p,u,,,,\n" + CSV_TEXT.split("\n", 1)[1])
    whole, whole_rejects = read_all(FileSource([path]))
    chunked, chunked_rejects = read_all(FileSource([path], batch_size=2))
    assert_frame_equal(as_frame(chunked), as_frame(whole))
    assert chunked_rejects == whole_rejects


def test_parquet_file_decodes_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame([event(i, price=0.1 * i, quantity=i + 1) for i in range(5)]).write_parquet(path)
    batch, rejects = read_all(FileSource([path], batch_size=2))
    assert rejects == []
    assert (batch.ts_ms.tolist(), batch.offset.tolist()) == ([TS + i for i in range(5)], [1, 2, 3, 4, 5])
    assert (batch.price.tolist(), batch.quantity.tolist()) == ([0.1 * i for i in range(5)], [1, 2, 3, 4, 5])


def test_bad_parquet_rows_are_rejected_as_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame([event(0), event(1, ts=-1), event(2, type="poke")]).write_parquet(path)
    _, rejects = read_all(FileSource([path]))
    assert [(r.offset, r.reason) for r in rejects] == [(2, "bad_ts"), (3, "unknown_event_type")]
    assert msgspec.json.decode(rejects[0].raw) == event(1, ts=-1)


def test_taobao_sample_decodes_to_contract_events(tmp_path: Path) -> None:
    if not TAOBAO_SAMPLE.exists():
        pytest.skip(f"shared sample {TAOBAO_SAMPLE} is absent")
    with gzip.open(TAOBAO_SAMPLE, "rb") as sample:
        head = b"".join(islice(sample, 1000))
    path = tmp_path / "taobao.csv"
    path.write_bytes(head)
    batch, rejects = read_all(FileSource([path], format="taobao", batch_size=300))
    assert (len(batch), rejects) == (1000, [])
    first = (batch.user_id[0], batch.product_id[0], batch.category[0], batch.type_code[0], batch.ts_ms[0])
    assert first == ("1", "2268318", "2520377", EVENT_TYPES.index("view"), 1_511_544_070_000)
    assert {EVENT_TYPES[c] for c in batch.type_code} <= {"view", "like", "add_to_cart", "purchase"}


def test_taobao_behaviors_map_to_contract_types(tmp_path: Path) -> None:
    path = tmp_path / "taobao.csv"
    path.write_text("".join(f"1,2,3,{b},1511544070\n" for b in ("pv", "fav", "cart", "buy")))
    batch, _ = read_all(FileSource([path], format="taobao"))
    assert [EVENT_TYPES[c] for c in batch.type_code] == ["view", "like", "add_to_cart", "purchase"]


def test_taobao_unknown_behavior_is_an_unknown_event_type(tmp_path: Path) -> None:
    path = tmp_path / "taobao.csv"
    path.write_text("1,2,3,pv,1511544070\n1,2,3,view,1511544070\n1,2,3,pv,15115440.5\n")
    _, rejects = read_all(FileSource([path], format="taobao"))
    assert [(r.offset, r.reason) for r in rejects] == [(2, "unknown_event_type"), (3, "bad_ts")]


def test_unknown_extension_error_lists_the_format_values(tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text("")
    with pytest.raises(InputError, match="--format with one of ndjson, csv, parquet, taobao"):
        FileSource([path])


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.ndjson"
    with pytest.raises(InputError, match="nowhere.ndjson' does not exist"):
        FileSource([path])


def test_a_short_csv_row_alone_is_rejected_not_padded(write_csv: Callable[..., Path]) -> None:
    _, rejects = read_all(FileSource([write_csv(f"ts,type,product_id,user_id,price\n{TS},view,p,u\n")]))
    assert [(r.offset, r.reason) for r in rejects] == [(2, "bad_json")]


def test_a_quoted_field_cannot_span_lines(write_csv: Callable[..., Path]) -> None:
    text = f'ts,type,product_id,user_id\n{TS},view,"p\n1",u\n{TS},view,p,u\n'
    batch, rejects = read_all(FileSource([write_csv(text)]))
    assert batch.offset.tolist() == [4]
    assert [(r.offset, r.reason) for r in rejects] == [(2, "bad_json"), (3, "bad_json")]


@pytest.mark.parametrize("name", ["events.ndjson", "events.csv", "events.csv.gz"])
def test_reading_in_tiny_blocks_equals_reading_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    ndjson = b"\r\n".join([GOOD[0], b"", GOOD[1], b"{bad", GOOD[2]])
    data = b"\xef\xbb\xbf" + (CSV_TEXT.replace("\n", "\r\n").encode() if ".csv" in name else ndjson)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    whole, whole_rejects = read_all(FileSource([path]))
    monkeypatch.setattr(files, "_READ_BYTES", 5)
    tiny, tiny_rejects = read_all(FileSource([path], batch_size=2))
    assert_frame_equal(as_frame(tiny), as_frame(whole))
    assert tiny_rejects == whole_rejects


def test_byte_order_mark_and_crlf_are_not_part_of_the_data(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV_TEXT.replace("\n", "\r\n").encode())
    batch, rejects = read_all(FileSource([path]))
    assert (len(batch), rejects, batch.product_id[-1]) == (3, [], "p-2")


def test_truncated_gzip_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join(GOOD * 50))[:-30])
    with pytest.raises(InputError, match="cannot read '.*events.ndjson.gz'"):
        read_all(FileSource([path]))


def test_file_that_is_not_parquet_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_all(FileSource([path]))


# ------------------------------------------------------------------------------- oversized lines


@pytest.mark.parametrize("name", ["events.ndjson", "events.ndjson.gz"])
def test_a_line_over_the_limit_is_rejected_as_oversized_and_the_others_are_read(
    write_ndjson: Callable[..., Path], name: str
) -> None:
    huge = b'{"ts": 1, "junk": "' + b"x" * 3_000_000 + b'"}'
    path = write_ndjson([GOOD[0], huge, GOOD[1], GOOD[2]], name=name)
    batch, rejects = read_all(FileSource([path], max_line_bytes=100_000))
    assert batch.offset.tolist() == [1, 3, 4]
    [reject] = rejects
    assert (reject.reason, reject.offset) == ("oversized", 2)
    assert huge.startswith(reject.raw) and len(reject.raw) == 65_536
    assert f"{len(huge)} bytes" in reject.detail
    assert (reject.full_size, reject.full_sha256) == (len(huge), hashlib.sha256(huge).hexdigest())
    letter = dead_letter(reject, now_ms=1)  # its DLQ / rejects-file record says it is a prefix
    assert (letter.truncated, letter.original_size, letter.original_sha256) == (
        True,
        len(huge),
        hashlib.sha256(huge).hexdigest(),
    )
    assert base64.b64decode(letter.original_b64) == reject.raw
    small = dead_letter(reject, now_ms=1, max_bytes=10_000)  # cut further: the full size and digest stay
    assert (small.original_size, small.original_sha256) == (len(huge), hashlib.sha256(huge).hexdigest())


def test_a_last_line_without_a_newline_cannot_grow_without_bound(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "endless.ndjson"
    with path.open("wb") as fh:
        fh.write(GOOD[0] + b"\n")
        for _ in range(12):  # 48 MiB and never a line end
            fh.write(b"y" * (4 << 20))
    tracemalloc.start()
    try:
        batch, rejects = read_all(FileSource([path], max_line_bytes=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batch) == 1
    assert [(r.reason, r.offset) for r in rejects] == [("oversized", 2)]
    assert f"{48 << 20} bytes" in rejects[0].detail
    assert rejects[0].full_size == 48 << 20
    assert rejects[0].full_sha256 == hashlib.sha256(b"y" * (48 << 20)).hexdigest()
    assert peak < 24 << 20  # a few read blocks, never the whole line


def test_oversized_csv_lines_are_rejected_too(write_csv: Callable[..., Path]) -> None:
    text = CSV_TEXT + f"{TS + 3},view,{'q' * 200_000},u,,,,w\n" + f"{TS + 4},view,p-4,u,,,,v\n"
    batch, rejects = read_all(FileSource([write_csv(text)], max_line_bytes=10_000))
    assert batch.product_id == ["p-0", "p,1", "p-2", "p-4"]
    assert [(r.reason, r.offset) for r in rejects] == [("oversized", 5)]  # line 5, after the header


# ------------------------------------------------------------------- NDJSON blocks as line spans


@pytest.mark.parametrize("read_bytes", [7, 100, 1 << 22])
@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_ndjson_blocks_read_as_spans_equal_the_lines_decoded_as_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int, batch_size: int
) -> None:
    huge = b'{"ts": 1, "junk": "' + b"x" * 300 + b'"}'
    lines = [GOOD[0], b"", GOOD[1], b"{bad", huge, GOOD[2], b"  ", GOOD[0] + b"\r", b'{"ts":1}', GOOD[1]]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines))  # the last line has no line end
    monkeypatch.setattr(files, "_READ_BYTES", read_bytes)
    batch, rejects = read_all(FileSource([path], batch_size=batch_size, max_line_bytes=200))
    expected, expected_rejects = decode_records([b"" if x is huge else x for x in lines], source=str(path))
    assert_frame_equal(as_frame(batch), as_frame(expected))
    assert list(batch.raw or ()) == list(expected.raw or ())
    oversized = [r for r in rejects if r.reason == "oversized"]  # its start only, the full size and digest
    assert [(r.offset, r.full_size, huge.startswith(r.raw)) for r in oversized] == [(5, len(huge), True)]
    assert [(r.reason, r.offset, r.raw) for r in rejects if r.reason != "oversized"] == [
        (r.reason, r.offset, r.raw) for r in expected_rejects
    ]


def test_a_plain_ndjson_block_is_decoded_in_place_as_line_spans(write_ndjson: Callable[..., Path]) -> None:
    path = write_ndjson([GOOD[0], b"{bad", GOOD[1]])
    batch, rejects = FileSource([path]).next_batch(10)
    assert isinstance(batch.raw, LineSpans)  # no bytes object per line
    assert batch.raw == [GOOD[0], GOOD[1]] and batch.offset.tolist() == [1, 3]
    assert [(r.reason, r.raw) for r in rejects] == [("bad_json", b"{bad")]
    assert batch.take(np.array([1])).raw == [GOOD[1]] and batch.take(np.array([1, 0])).raw == [
        GOOD[1],
        GOOD[0],
    ]


@pytest.mark.parametrize("read_bytes", [7, 300, 5_000])
@pytest.mark.parametrize("batch_size", [1, 13, 400])
def test_a_batch_of_ndjson_lines_is_one_buffer_read_ahead_lines_are_read_again_with_the_next_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int, batch_size: int
) -> None:
    """Lines read ahead as spans go into the next block's buffer: no batch is joined from pieces.

    The same events, raw lines and rejects as the lines decoded as one list, whatever the block and
    batch sizes (a block that is all tail, a line cut anywhere, blank, bad and oversized lines).
    """
    huge = b'{"ts": 1, "junk": "' + b"x" * 300 + b'"}'
    rng = np.random.default_rng(7)
    lines = []
    for i in range(600):
        kind = rng.integers(0, 20)
        if kind == 0:
            lines.append(b"")
        elif kind == 1:
            lines.append(b"{bad")
        elif kind == 2 and i % 7 == 0:
            lines.append(huge)
        else:
            pad = b" " * int(rng.integers(0, 40))
            lines.append(msgspec.json.encode(event(i, price=round(float(rng.random()) * 50, 2))) + pad)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    joined: list[int] = []
    concat = LineSpans.concat.__func__  # type: ignore[attr-defined]

    def counted(cls: type[LineSpans], parts: list[LineSpans]) -> LineSpans:
        joined.append(sum(1 for p in parts if len(p)))
        return concat(cls, parts)

    monkeypatch.setattr(LineSpans, "concat", classmethod(counted))
    monkeypatch.setattr(files, "_READ_BYTES", read_bytes)
    batch, rejects = read_all(FileSource([path], batch_size=batch_size, max_line_bytes=200))
    expected, expected_rejects = decode_records([b"" if x is huge else x for x in lines], source=str(path))
    assert_frame_equal(as_frame(batch), as_frame(expected))
    assert list(batch.raw or ()) == list(expected.raw or ())
    assert [(r.reason, r.offset) for r in rejects if r.reason != "oversized"] == [
        (r.reason, r.offset) for r in expected_rejects
    ]
    assert [r.offset for r in rejects if r.reason == "oversized"] == [
        i + 1 for i, x in enumerate(lines) if x is huge
    ]
    if huge not in lines or read_bytes > 300:  # the spans path throughout: one piece per batch
        assert joined and max(joined) <= 1
