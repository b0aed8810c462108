"""A corpus of hostile input: one table of (name, raw bytes, expected reason), used by the tests.

:func:`hostile_stream` places every kind between good events (a few each side), so the tests can
check that every hostile record lands in the rejects file / dead-letter topic with its reason
and that every good event around it is applied.  Kinds that need event time (late, far-future,
duplicate) are written against the good events' clock: ``T0`` and ``good(0)``.
"""

from __future__ import annotations

import json
from typing import Final, NamedTuple

T0: Final = 1_764_000_000_000  # event time of good(0); good(i) is 100 ms later per i
YEAR_2099_MS: Final = 4_070_908_800_000


def good(i: int) -> bytes:
    """A valid event, unique event_id, time T0 + i * 100 ms."""
    obj = {
        "event_id": f"g-{i}",
        "ts": T0 + i * 100,
        "type": "view",
        "product_id": f"p{i % 11}",
        "user_id": f"u{i}",
    }
    return json.dumps(obj).encode()


def _event(**fields: object) -> bytes:
    obj: dict[str, object] = {"ts": T0 + 50, "type": "like", "product_id": "p-h", "user_id": "u-h"}
    obj.update(fields)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


class Kind(NamedTuple):
    name: str
    raw: bytes
    reason: str


_OK = b'{"ts":1764000000050,"type":"view","product_id":"p","user_id":"u"'  # an event without its "}"

#: Every kind of hostile record and the reason it must be rejected with.
HOSTILE: Final[tuple[Kind, ...]] = (
    # not JSON at all
    Kind("plain_text", b"this is not json", "bad_json"),
    Kind("html_error_page", b"<html><body>502 Bad Gateway</body></html>", "bad_json"),
    Kind("truncated_json", b'{"type":"view","product_id":"p', "bad_json"),
    Kind("trailing_garbage", _event() + b" x", "bad_json"),
    Kind("nul_byte", b"\x00", "bad_json"),
    Kind("bom_mid_stream", b"\xef\xbb\xbf" + _event(), "bad_json"),
    Kind("raw_control_char_in_id", _OK.replace(b'"p"', b'"p\x01x"') + b"}", "bad_json"),
    Kind("lone_surrogate_escape", _OK.replace(b'"p"', b'"p\\ud800"') + b"}", "bad_json"),
    Kind("nested_100k_deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "bad_json"),
    # JSON, but not an object
    Kind("array", b"[1, 2, 3]", "not_object"),
    Kind("deep_array", b"[" * 5000 + b"]" * 5000, "not_object"),
    Kind("string", b'"hello"', "not_object"),
    Kind("null", b"null", "not_object"),
    Kind("csv_line", b"1764000000000,view,p,u", "not_object"),
    # not UTF-8
    Kind("utf16", _event().decode().encode("utf-16"), "bad_utf8"),
    Kind("invalid_utf8_in_id", _OK.replace(b'"p"', b'"p\xff\xfe"') + b"}", "bad_utf8"),
    Kind("overlong_utf8", _OK.replace(b'"p"', b'"p\xc0\xaf"') + b"}", "bad_utf8"),
    Kind("invalid_utf8_in_ignored_field", _OK + b',"note":"\xc3\x28"}', "bad_utf8"),
    # required fields
    Kind("empty_object", b"{}", "missing_field"),
    Kind("missing_ts", _event(ts=...), "missing_field"),
    Kind("missing_product_id", _event(product_id=...), "missing_field"),
    Kind("null_user_id", _event(user_id=None), "missing_field"),
    Kind("null_type", _event(type=None), "missing_field"),
    # event time
    Kind("ts_as_string", _event(ts="yesterday"), "bad_ts"),
    Kind("ts_negative", _event(ts=-5), "bad_ts"),
    Kind("ts_float", _event(ts=1_764_000_000_000.5), "bad_ts"),
    Kind("ts_boolean", _event(ts=True), "bad_ts"),
    Kind("ts_after_2100", _event(ts=99_999_999_999_999), "bad_ts"),
    Kind("ts_beyond_int64", _OK.replace(b"1764000000050", b"99999999999999999999999") + b"}", "bad_ts"),
    Kind("ts_seconds_not_ms", _event(ts=1_764_000_000), "bad_ts"),
    # event type
    Kind("unknown_type", _event(type="teleport"), "unknown_event_type"),
    Kind("type_wrong_case", _event(type="VIEW"), "unknown_event_type"),
    Kind("type_array", _event(type=["view"]), "unknown_event_type"),
    # strings
    Kind("empty_product_id", _event(product_id=""), "bad_string"),
    Kind("product_id_129_chars", _event(product_id="p" * 129), "bad_string"),
    Kind("product_id_500k_chars", _event(product_id="x" * 500_000), "bad_string"),
    Kind("category_65_chars", _event(category="c" * 65), "bad_string"),
    Kind("empty_event_id", _event(event_id=""), "bad_string"),
    Kind("control_char_escaped_in_id", _event(product_id="p\u0001x"), "bad_string"),
    Kind("newline_in_user_id", _event(user_id="u\nX-Injected: 1"), "bad_string"),
    Kind("del_char_in_seller_id", _event(seller_id="s\x7f"), "bad_string"),
    Kind("c1_control_in_category", _event(category="c\u0085"), "bad_string"),
    Kind("product_id_number", _event(product_id=42), "wrong_type"),
    Kind("product_id_object", _event(product_id={"id": "p"}), "wrong_type"),
    # reserved ids
    Kind("board_key_as_product_id", _event(product_id="__board__"), "reserved_id"),
    Kind("reserved_user_id", _event(user_id="__admin"), "reserved_id"),
    Kind("reserved_seller_id", _event(seller_id="__s"), "reserved_id"),
    Kind("reserved_video_id", _event(video_id="__v"), "reserved_id"),
    Kind(
        "reserved_id_spelled_with_escapes",
        _OK.replace(b'"p"', b'"\\u005f\\u005Fboard__"') + b"}",
        "reserved_id",
    ),
    # numbers
    Kind("negative_price", _event(price=-1.0), "bad_number"),
    Kind("nan_price", _OK + b',"price":NaN}', "bad_number"),
    Kind("infinite_price", _OK + b',"price":Infinity}', "bad_number"),
    Kind("price_overflow", _OK + b',"price":1e400}', "bad_number"),
    Kind("zero_quantity", _event(quantity=0), "bad_number"),
    Kind("quantity_beyond_int64", _OK + b',"quantity":9223372036854775808}', "bad_number"),
    Kind("quantity_as_string", _event(quantity="2"), "wrong_type"),
    Kind("price_boolean", _event(price=True), "wrong_type"),
    # decided by the engine after decoding
    Kind("duplicate_of_the_first_event", good(0), "duplicate"),
    Kind("an_hour_late", _event(event_id="late-1", ts=T0 - 3_600_000), "late"),
    Kind("year_2099", _event(event_id="far-1", ts=YEAR_2099_MS), "future_ts"),
    Kind("year_2099_again", _event(event_id="far-2", ts=YEAR_2099_MS + 1), "future_ts"),
)

GOOD_BETWEEN: Final = 3  # good events after each hostile one


def hostile_stream() -> tuple[list[bytes], dict[int, Kind], list[int]]:
    """Good events with every hostile kind between them.

    Returns the records, the hostile kind at each of its positions, and the positions of the
    good events (a position is the offset on a one-partition topic, or the line number - 1).
    """
    records = [good(0)]
    good_at = [0]
    hostile_at: dict[int, Kind] = {}
    i = 1
    for kind in HOSTILE:
        hostile_at[len(records)] = kind
        records.append(kind.raw)
        for _ in range(GOOD_BETWEEN):
            good_at.append(len(records))
            records.append(good(i))
            i += 1
    return records, hostile_at, good_at
