"""The compiled NDJSON scanner against the reference: msgspec's decoding of the same records.

``decode_records`` takes the records the scanner calls plain from the scanner and the others from
msgspec (``_decode_msgspec``, the path every record took before); the two must give the same batch
(every column, bit for bit, the ids' hashes included) and the same rejects for any records.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.events import EVENT_TYPES, EventBatch, IdColumns
from viraltrend.kernels import ndjson
from viraltrend.kernels.hashtable import hash_ids
from viraltrend.kernels.idset import hash_pairs
from viraltrend.stream.decode import _decode_msgspec, decode_records

TS = 1_764_253_200_123
PLAIN = (
    b'{"event_id":"e-1","ts":1764253200123,"type":"view","product_id":"p-1","user_id":"u-1","price":11.98}'
)

_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=12)
_text = (
    _ascii | st.text(max_size=6) | st.sampled_from(["__x", "_x", "a\\b", "é", "\x7f", "a" * 129, "b" * 65])
)
_number = st.one_of(
    st.integers(-5, 10**20).map(str),
    st.sampled_from(
        ["0", "00", "1.", ".5", "1e3", "1E-2", "-0.0", "0.1", "1.000000000000001", "3.14159265358979"]
    ),
    st.tuples(st.integers(0, 10**9), st.integers(0, 10**17), st.integers(1, 17)).map(
        lambda t: f"{t[0]}.{str(t[1]).zfill(t[2])[: t[2]]}"
    ),
    st.floats(min_value=0, max_value=1e12, allow_nan=False).map(repr),
)
_value = st.one_of(
    _text.map(json.dumps),
    _number,
    st.sampled_from(["null", "true", "[]", "{}", '"view"', '"purchase"', '"VIEW"']),
)
_FIELD = st.sampled_from(
    ["ts", "type", "product_id", "user_id", "event_id", "seller_id", "category", "price", "quantity",
     "video_id", "creator_id", "other"]
)  # fmt: skip
_WS = st.sampled_from(["", "", "", " ", "\t", "\r", "\n", "  ", "\x0b"])


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A JSON-ish record: mostly plain events, with every kind of deviation mixed in."""
    fields: dict[str, str] = {
        "ts": str(draw(st.sampled_from([TS, TS + 1, 946_684_800_000, 4_102_444_800_000, 946_684_799_999]))),
        "type": json.dumps(draw(st.sampled_from(EVENT_TYPES))),
        "product_id": json.dumps(draw(st.sampled_from(["p-1", "p-2", "p-3"]) | _text)),
        "user_id": json.dumps(draw(st.sampled_from(["u-1", "u-2"]) | _text)),
    }
    for name in draw(st.lists(_FIELD, max_size=4)):
        fields[name] = draw(_value)
    for name in draw(st.lists(st.sampled_from(list(fields)), max_size=2)):
        fields.pop(name, None)
    items = list(fields.items())
    order = draw(st.permutations(range(len(items))))
    ws = draw(_WS)
    body = ("," + ws).join(f'{ws}"{k}"{ws}:{ws}{v}' for k, v in (items[i] for i in order))
    if draw(st.booleans()) and items:  # a repeated field
        k, v = items[0]
        body += f',"{k}":{v}'
    text = draw(st.sampled_from(["{%s}", " {%s} ", "{%s}x", "[{%s}]", "{%s", "{%s}\t"])) % body
    return text.encode("utf-8", "surrogatepass")


_id = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=130)
_price = st.one_of(
    st.just("null"),
    st.integers(0, 10**16).map(str),
    st.tuples(st.integers(0, 10**9), st.integers(1, 10**8)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.floats(min_value=0, max_value=1e15, allow_nan=False).map(repr),
)
_OPTIONAL = {
    "event_id": _id.map(json.dumps) | st.just("null"),
    "seller_id": _id.map(json.dumps) | st.just("null"),
    "category": _id.map(json.dumps) | st.just("null"),
    "video_id": _id.map(json.dumps) | st.just("null"),
    "creator_id": _id.map(json.dumps) | st.just("null"),
    "price": _price,
    "quantity": st.integers(0, 2**63).map(str) | st.just("null"),
}


@st.composite
def plain_records(draw: st.DrawFn) -> bytes:
    """Records the scanner should mostly take: contract fields with valid-looking values, any order."""
    fields = {
        "ts": str(draw(st.integers(946_684_800_000 - 5, 4_102_444_800_000 + 5))),
        "type": json.dumps(draw(st.sampled_from(EVENT_TYPES))),
        "product_id": json.dumps(draw(_id)),
        "user_id": json.dumps(draw(_id)),
    }
    for name in draw(st.lists(st.sampled_from(list(_OPTIONAL)), max_size=7, unique=True)):
        fields[name] = draw(_OPTIONAL[name])
    items = list(fields.items())
    order = draw(st.permutations(range(len(items))))
    ws = draw(st.sampled_from(["", "", " ", "\t", "\r\n "]))
    body = ("," + ws).join(f'"{k}"{ws}:{ws}{v}' for k, v in (items[i] for i in order))
    return f"{ws}{{{ws}{body}{ws}}}{ws}".encode()


def _same(a: EventBatch, b: EventBatch) -> None:
    assert len(a) == len(b)
    for name in EventBatch.FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, name
            assert x.tobytes() == y.tobytes(), name  # bit for bit (NaN prices too)
        else:
            assert x == y, name
    for name in ("product_hash", "user_hash", "event_h1", "event_h2"):
        assert getattr(a.ids, name).tolist() == getattr(b.ids, name).tolist(), name


@settings(max_examples=400, deadline=None)
@given(st.lists(plain_records() | records() | st.sampled_from([PLAIN, b"", b"  ", b"oops"]), max_size=40))
def test_decode_records_agrees_with_msgspec(lines: list[bytes]) -> None:
    offsets = np.arange(100, 100 + len(lines), dtype=np.int64)
    fast, fast_rejects = decode_records(lines, offsets=offsets, partition=3, source="t")
    slow, slow_rejects = _decode_msgspec(lines, offsets=offsets, partition=3, source="t")
    _same(fast, slow)
    assert fast_rejects == slow_rejects


def test_plain_records_take_the_scanner_and_keep_their_values() -> None:
    prices = ["0", "1", "11.98", "0.1", "123456789.012345", "0.00000000000001", "99999999999999.9"]
    lines = [
        f'{{"ts":{TS + i},"type":"{EVENT_TYPES[i % 6]}","product_id":"p-{i}","user_id":"u-{i % 3}",'
        f'"price":{p},"quantity":{i + 1},"seller_id":null,"category":"c"}}'.encode()
        for i, p in enumerate(prices)
    ]
    buf = np.frombuffer(b"".join(lines), np.uint8)
    ends = np.cumsum([len(x) for x in lines]).astype(np.int64)
    found = ndjson.scan(buf, ends - np.array([len(x) for x in lines]), ends)
    assert found.status.tolist() == [ndjson.OK] * len(lines)  # the fast path is taken
    assert found.price.tolist() == [float(p) for p in prices]
    assert found.quantity.tolist() == list(range(1, len(lines) + 1))
    assert found.start[3].tolist() == [-1] * len(lines)  # seller null: absent
    n = len(lines)
    ref = IdColumns.from_strings(
        [[f"p-{i}" for i in range(n)], [f"u-{i % 3}" for i in range(n)], [None] * n, [None] * n, ["c"] * n]
    )
    assert found.hashes[0].tolist() == ref.product_hash.tolist()
    assert found.hashes[1].tolist() == ref.user_hash.tolist()
    batch, rejects = decode_records(lines)
    assert not rejects and batch.product_id == [f"p-{i}" for i in range(len(lines))]


def test_records_that_are_not_plain_are_left_to_msgspec() -> None:
    lines = [
        PLAIN.replace(b'"p-1"', b'"p\\u002d1"'),  # an escape
        PLAIN.replace(b'"u-1"', '"ü"'.encode()),  # non-ASCII
        PLAIN.replace(b"11.98", b"1e1"),  # an exponent
        PLAIN.replace(b"11.98", b"1234567890.1234567"),  # over 15 digits
        PLAIN.replace(b'"p-1"', b'"__p"'),  # reserved
        PLAIN.replace(b"}", b',"extra":[1]}'),  # an unknown field
        PLAIN.replace(b"}", b',"ts":1764253200124}'),  # a repeated field
        PLAIN.replace(b'"type":"view",', b""),  # missing
        b"",  # blank: neither
    ]
    buf = np.frombuffer(b"".join(lines), np.uint8)
    sizes = np.array([len(x) for x in lines], np.int64)
    found = ndjson.scan(buf, np.cumsum(sizes) - sizes, np.cumsum(sizes))
    assert found.status.tolist() == [ndjson.FALLBACK] * (len(lines) - 1) + [ndjson.BLANK]
    batch, rejects = decode_records(lines)
    assert batch.product_id == ["p-1"] * 6  # unknown fields ignored; a repeated one: the last
    assert batch.user_id[1] == "ü"
    assert batch.price[2:4].tolist() == [10.0, 1234567890.1234567]
    assert [r.reason for r in rejects] == ["reserved_id", "missing_field"]
    assert [r.offset for r in rejects] == [5, 8]
    assert batch.ts_ms[4:].tolist() == [TS, TS + 1]


def test_the_kernel_and_its_plain_python_run_agree() -> None:
    lines = [PLAIN, PLAIN.replace(b"11.98", b"null"), b"  ", b"{", PLAIN.replace(b"e-1", b"e-22")]
    buf = np.frombuffer(b"".join(lines), np.uint8)
    sizes = np.array([len(x) for x in lines], np.int64)
    starts, ends = np.cumsum(sizes) - sizes, np.cumsum(sizes)
    with np.errstate(over="ignore"):
        python = ndjson._scan.py_func(buf, starts, ends)
    compiled = ndjson._scan(buf, starts, ends)
    for a, b in zip(python, compiled, strict=True):
        assert a.tobytes() == b.tobytes()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=5),
            st.text(min_size=1, max_size=5),
            st.none() | st.text(max_size=5),
            st.none() | st.text(max_size=5),
            st.none() | st.text(max_size=5),
        ),
        max_size=20,
    )
)
def test_id_columns_from_strings_give_the_strings_and_their_hashes(rows: list[tuple[Any, ...]]) -> None:
    columns = [[r[k] for r in rows] for k in range(5)]
    ids = IdColumns.from_strings(columns)
    for k in range(5):
        assert ids.texts(k) == columns[k]
    assert ids.product_hash.tolist() == hash_ids(columns[0]).tolist()
    assert ids.user_hash.tolist() == hash_ids(columns[1]).tolist()
    with_id = [i for i, v in enumerate(columns[2]) if v]  # an empty event id is none (dedup's rule)
    h1, h2 = hash_pairs([columns[2][i] for i in with_id])
    assert ids.event_h1[with_id].tolist() == h1.tolist()
    assert ids.event_h2[with_id].tolist() == h2.tolist()
    assert not ids.event_h1[[i for i in range(len(rows)) if i not in with_id]].any()


_SCAN_DIGEST = """
import hashlib, sys
import numpy as np
from viraltrend.kernels import ndjson
data = sys.stdin.buffer.read()
buf = np.frombuffer(data, np.uint8)
ends = ndjson.line_ends(buf)
starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
with np.errstate(over="ignore"):
    found = ndjson._scan(buf, starts, ends)
print(hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in found)).hexdigest())
"""


def test_the_compiled_scan_without_reference_counts_equals_the_plain_python_scan() -> None:
    """The scan's grammar runs compiled with ``_nrt=False`` (no reference counts): the same columns.

    Records of every kind (plain, null fields, spaces, escapes, unknown and repeated fields, bad
    numbers, blanks, non-ASCII) scanned compiled and with ``NUMBA_DISABLE_JIT=1`` in a subprocess,
    every output array compared by digest.
    """
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(22)
    lines = []
    for i in range(1500):
        record: dict[str, Any] = {
            "event_id": f"e-{i}",
            "ts": int(1_764_201_600_000 + rng.integers(0, 10**8)),
            "type": EVENT_TYPES[int(rng.integers(0, 6))],
            "product_id": f"p-{rng.integers(0, 10**6):06d}",
            "user_id": f"u-{rng.integers(0, 10**6)}",
            "seller_id": f"s-{rng.integers(0, 5000)}",
            "category": f"c-{rng.integers(0, 40)}",
            "price": round(float(rng.random()) * 200, int(rng.integers(0, 4))),
        }
        kind = int(rng.integers(0, 12))
        if kind == 0:
            record["price"] = None
        elif kind == 1:
            record["quantity"] = int(rng.integers(1, 9))
        elif kind == 2:
            record["user_id"] = "ü-" + record["user_id"]
        elif kind == 3:
            record["junk"] = 1
        elif kind == 4:
            del record["type"]
        line = json.dumps(record, separators=(",", ":") if kind != 5 else (", ", " : ")).encode()
        if kind == 6:
            line = line.replace(b'"p-', b'"p\\u002d')
        elif kind == 7:
            line = line.replace(b'"ts":', b'"ts":-')
        elif kind == 8:
            line = b"  "
        elif kind == 9:
            line = line.replace(b'"price":', b'"price":1e')
        lines.append(line)
    data = b"\n".join(lines) + b"\n"
    digests = []
    for disable in ("0", "1"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": disable}
        done = subprocess.run(
            [sys.executable, "-c", _SCAN_DIGEST], input=data, capture_output=True, env=env, check=True
        )
        digests.append(done.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64
