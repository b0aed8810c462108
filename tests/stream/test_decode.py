from __future__ import annotations

import math

import msgspec
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from viraltrend.events import EVENT_TYPES, REJECT_REASONS, EventBatch
from viraltrend.stream.decode import decode_frame, decode_records

TS = 1_764_253_200_123


def event(**fields: object) -> bytes:
    """A valid contract event as JSON bytes; keyword ``None`` drops a field."""
    record: dict[str, object] = {"ts": TS, "type": "share", "product_id": "p-1", "user_id": "u-1"}
    record.update(fields)
    return msgspec.json.encode({k: v for k, v in record.items() if v is not None})


def as_frame(batch: EventBatch) -> pl.DataFrame:
    return pl.DataFrame(
        {name: getattr(batch, name) for name in EventBatch.FIELDS if name not in ("raw", "source")},
        schema_overrides={"event_id": pl.String, "seller_id": pl.String, "category": pl.String},
    )


def raw_with(fragment: bytes) -> bytes:
    return b'{"ts":1764253200123,"type":"view","product_id":"p","user_id":"u",' + fragment + b"}"


BAD_RECORDS = [
    ("not_json", b"this is not json", "bad_json"),
    ("truncated_json", b'{"ts":1764253200123,"type":"vi', "bad_json"),
    ("trailing_garbage", event() + b" x", "bad_json"),
    ("json_array", b"[1, 2, 3]", "not_object"),
    ("json_string", b'"an event"', "not_object"),
    ("json_null", b"null", "not_object"),
    ("missing_ts", event(ts=None), "missing_field"),
    ("missing_type", event(type=None), "missing_field"),
    ("missing_product_id", event(product_id=None), "missing_field"),
    ("missing_user_id", event(user_id=None), "missing_field"),
    ("null_product_id", raw_with(b'"product_id":null'), "missing_field"),
    ("ts_as_string", event(ts=str(TS)), "bad_ts"),
    ("ts_as_float", event(ts=float(TS)), "bad_ts"),
    ("ts_as_bool", event(ts=True), "bad_ts"),
    ("negative_ts", event(ts=-5), "bad_ts"),
    ("zero_ts", event(ts=0), "bad_ts"),
    ("far_future_ts", event(ts=9_999_999_999_999), "bad_ts"),
    ("ts_huge_integer", event(ts=10**30), "bad_ts"),
    ("ts_overflowing_float", raw_with(b'"ts":1e999'), "bad_ts"),
    ("unknown_type", event(type="poke"), "unknown_event_type"),
    ("type_wrong_case", event(type="VIEW"), "unknown_event_type"),
    ("type_as_number", event(type=3), "unknown_event_type"),
    ("product_id_empty", event(product_id=""), "bad_string"),
    ("product_id_129_chars", event(product_id="x" * 129), "bad_string"),
    ("user_id_129_chars", event(user_id="u" * 129), "bad_string"),
    ("category_65_chars", event(category="c" * 65), "bad_string"),
    ("video_id_empty", event(video_id=""), "bad_string"),
    ("product_id_as_number", event(product_id=12), "wrong_type"),
    ("price_as_string", event(price="9.99"), "wrong_type"),
    ("quantity_as_float", event(quantity=1.5), "wrong_type"),
    ("seller_id_as_object", event(seller_id={"id": 1}), "wrong_type"),
    ("negative_price", event(price=-1), "bad_number"),
    ("price_1e999", raw_with(b'"price":1e999'), "bad_number"),
    ("price_nan_literal", raw_with(b'"price":NaN'), "bad_number"),
    ("price_infinity_literal", raw_with(b'"price":Infinity'), "bad_number"),
    ("price_minus_infinity_literal", raw_with(b'"price":-Infinity'), "bad_number"),
    ("quantity_zero", event(quantity=0), "bad_number"),
    ("quantity_negative", event(quantity=-2), "bad_number"),
    ("quantity_beyond_int64", event(quantity=2**63), "bad_number"),
    ("invalid_utf8_bytes", b"\xff\xfe", "bad_utf8"),
    ("invalid_utf8_in_string", raw_with(b'"seller_id":"s\xff"'), "bad_utf8"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS])
def test_bad_record_is_rejected_with_its_reason(raw: bytes, reason: str) -> None:
    batch, rejects = decode_records([raw])
    assert len(batch) == 0
    assert [(r.reason, r.raw, r.offset) for r in rejects] == [(reason, raw, 1)]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS])
def test_reject_detail_is_one_nonempty_line(raw: bytes, reason: str) -> None:
    (reject,) = decode_records([raw])[1]
    assert reject.reason in REJECT_REASONS
    assert reject.detail and "\n" not in reject.detail


def test_ts_as_string_detail_names_the_field_and_the_found_type() -> None:
    (reject,) = decode_records([event(ts=str(TS))])[1]
    assert reject.detail.startswith("field 'ts' must be an integer epoch-ms")
    assert "got a string '1764253200123'" in reject.detail


@pytest.mark.parametrize("blank", [b"", b" ", b"\t  \r"])
def test_blank_line_is_skipped_without_a_reject(blank: bytes) -> None:
    batch, rejects = decode_records([event(), blank, event()])
    assert (len(batch), rejects, batch.offset.tolist()) == (2, [], [1, 3])


def test_good_records_around_bad_ones_are_kept_in_order_with_their_offsets() -> None:
    a, b, c = (event(product_id=pid) for pid in "abc")
    raw = [b"{", a, b"[]", b, event(ts=-1), c, b"x"]
    batch, rejects = decode_records(raw)
    assert (batch.product_id, batch.offset.tolist()) == (["a", "b", "c"], [2, 4, 6])
    reasons = [(r.offset, r.reason) for r in rejects]
    assert reasons == [(1, "bad_json"), (3, "not_object"), (5, "bad_ts"), (7, "bad_json")]


def test_records_spanning_many_decode_blocks_keep_their_order_and_offsets() -> None:
    bad_at = {0, 1023, 1024, 2047, 2599}
    raw = [b"bad" if i in bad_at else b" " if i == 1500 else event(product_id=f"p{i}") for i in range(2600)]
    batch, rejects = decode_records(raw)
    good = [i for i in range(2600) if i not in bad_at and i != 1500]
    assert (batch.product_id, batch.offset.tolist()) == ([f"p{i}" for i in good], [i + 1 for i in good])
    assert [r.offset for r in rejects] == sorted(i + 1 for i in bad_at)


def test_given_offsets_partition_and_source_are_copied_into_events_and_rejects() -> None:
    batch, rejects = decode_records(
        [event(), b"nope"], offsets=np.array([40, 41], np.int64), partition=3, source="engagement-events"
    )
    assert (batch.offset.tolist(), batch.partition.tolist(), batch.partition.dtype) == ([40], [3], np.int32)
    assert (rejects[0].offset, rejects[0].partition, rejects[0].source) == (41, 3, "engagement-events")


def test_offsets_of_the_wrong_length_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"offsets must have one entry per record, shape \(2,\)"):
        decode_records([event(), event()], offsets=np.array([1], np.int64))


def test_unknown_extra_fields_are_ignored() -> None:
    raw = raw_with(b'"campaign":{"id":[1,2,{"deep":1e999}]},"ab_test":"b","price":2.5')
    batch, rejects = decode_records([raw])
    assert (rejects, batch.price.tolist()) == ([], [2.5])


def test_absent_optional_fields_become_nan_one_and_none() -> None:
    batch, _ = decode_records([event()])
    assert math.isnan(batch.price[0]) and batch.quantity.tolist() == [1]
    assert (batch.event_id, batch.seller_id, batch.category) == ([None], [None], [None])


def test_null_optional_fields_are_treated_as_absent() -> None:
    raw = raw_with(b'"price":null,"quantity":null,"seller_id":null')
    batch, rejects = decode_records([raw])
    assert (rejects, np.isnan(batch.price).tolist(), batch.quantity.tolist(), batch.seller_id) == (
        [],
        [True],
        [1],
        [None],
    )


def test_all_fields_are_decoded_into_columns() -> None:
    raw = event(type="purchase", event_id="e-1", seller_id="s-1", category="beauty", price=12.99, quantity=3)
    batch, _ = decode_records([raw])
    assert (batch.ts_ms.tolist(), batch.type_code.tolist(), batch.event_id, batch.seller_id) == (
        [TS],
        [EVENT_TYPES.index("purchase")],
        ["e-1"],
        ["s-1"],
    )
    assert (batch.category, batch.price.tolist(), batch.quantity.tolist()) == (["beauty"], [12.99], [3])


def test_column_dtypes_follow_event_batch() -> None:
    batch, _ = decode_records([event()])
    dtypes = [a.dtype for a in (batch.ts_ms, batch.type_code, batch.price, batch.quantity, batch.offset)]
    assert dtypes == [np.int64, np.int8, np.float64, np.int64, np.int64]


def test_each_event_type_maps_to_its_code() -> None:
    batch, _ = decode_records([event(type=name) for name in EVENT_TYPES])
    assert batch.type_code.tolist() == list(range(len(EVENT_TYPES)))


def test_ts_bounds_are_inclusive() -> None:
    batch, rejects = decode_records([event(ts=946_684_800_000), event(ts=4_102_444_800_000)])
    assert (len(batch), rejects) == (2, [])


def test_no_records_give_an_empty_batch() -> None:
    batch, rejects = decode_records([])
    assert_frame_equal(as_frame(batch), as_frame(EventBatch.empty()))


VALID = st.builds(
    lambda ts, kind, pid, price, qty: event(ts=ts, type=kind, product_id=pid, price=price, quantity=qty),
    st.integers(946_684_800_000, 4_102_444_800_000),
    st.sampled_from(EVENT_TYPES),
    st.text(min_size=1, max_size=128),
    st.none() | st.floats(min_value=0, allow_infinity=False, allow_nan=False),
    st.none() | st.integers(1, 2**63 - 1),
)
RECORD = VALID | st.sampled_from([c[1] for c in BAD_RECORDS] + [b"", b"  "]) | st.binary(max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(RECORD, max_size=30))
def test_batch_decoding_equals_decoding_each_record_alone(raw: list[bytes]) -> None:
    batch, rejects = decode_records(raw)
    alone = [decode_records([r], offsets=np.array([i + 1], np.int64)) for i, r in enumerate(raw)]
    assert len(batch) + len(rejects) == sum(1 for r in raw if r.strip())
    assert_frame_equal(as_frame(batch), as_frame(EventBatch.concat([b for b, _ in alone])))
    assert rejects == [r for _, rs in alone for r in rs]


FRAME_BAD = [
    ("ts_not_integer", {"ts": "abc"}, "bad_ts"),
    ("ts_decimal", {"ts": "1764253200123.0"}, "bad_ts"),
    ("ts_padded", {"ts": " 1764253200123"}, "bad_ts"),
    ("ts_out_of_range", {"ts": "9999999999999"}, "bad_ts"),
    ("ts_overflowing_int64", {"ts": "99999999999999999999999"}, "bad_ts"),
    ("ts_null", {"ts": None}, "missing_field"),
    ("unknown_type", {"type": "poke"}, "unknown_event_type"),
    ("product_id_129_chars", {"product_id": "x" * 129}, "bad_string"),
    ("category_65_chars", {"category": "c" * 65}, "bad_string"),
    ("price_not_a_number", {"price": "cheap"}, "wrong_type"),
    ("price_negative", {"price": "-1"}, "bad_number"),
    ("price_infinite", {"price": "inf"}, "bad_number"),
    ("price_nan", {"price": "NaN"}, "bad_number"),
    ("quantity_decimal", {"quantity": "1.5"}, "wrong_type"),
    ("quantity_zero", {"quantity": "0"}, "bad_number"),
    ("quantity_beyond_int64", {"quantity": "9223372036854775808"}, "bad_number"),
]


def string_frame(**overrides: str | None) -> pl.DataFrame:
    row = {"ts": str(TS), "type": "view", "product_id": "p", "user_id": "u", "category": None, "price": None,
           "quantity": None}  # fmt: skip
    row.update(overrides)
    return pl.DataFrame([row], schema={name: pl.String for name in row})


@pytest.mark.parametrize(("fields", "reason"), [c[1:] for c in FRAME_BAD], ids=[c[0] for c in FRAME_BAD])
def test_bad_frame_row_is_rejected_with_its_reason(fields: dict[str, str | None], reason: str) -> None:
    batch, rejects = decode_frame(string_frame(**fields), offsets=np.array([7], np.int64))
    assert (len(batch), [(r.reason, r.offset) for r in rejects]) == (0, [(reason, 7)])


def test_frame_and_json_decoding_agree_on_valid_rows() -> None:
    frame = string_frame(type="purchase", category="home", price="2.5", quantity="4")
    json = event(type="purchase", product_id="p", user_id="u", category="home", price=2.5, quantity=4)
    assert_frame_equal(as_frame(decode_frame(frame)[0]), as_frame(decode_records([json])[0]))


def test_typed_frame_decodes_like_its_text() -> None:
    typed = pl.DataFrame({"ts": [TS], "type": ["like"], "product_id": ["p"], "user_id": ["u"], "price": [0.1],
                          "quantity": [3]})  # fmt: skip
    text = typed.with_columns(pl.all().cast(pl.String))
    assert_frame_equal(as_frame(decode_frame(typed)[0]), as_frame(decode_frame(text)[0]))


def test_frame_reject_without_raw_keeps_the_row_as_json() -> None:
    frame = pl.DataFrame({"ts": [-1], "type": ["like"], "product_id": ["p"], "user_id": ["u"]})
    (reject,) = decode_frame(frame)[1]
    assert msgspec.json.decode(reject.raw) == {"ts": -1, "type": "like", "product_id": "p", "user_id": "u"}


def test_frame_ts_scale_and_type_names_translate_other_spellings() -> None:
    frame = string_frame(ts="1511544070", type="pv")
    batch, _ = decode_frame(frame, ts_scale=1000, type_names={"pv": "view"})
    assert (batch.ts_ms.tolist(), batch.type_code.tolist()) == ([1_511_544_070_000], [0])


# ------------------------------------------------------------------------------- reserved ids


@pytest.mark.parametrize(
    "raw, field",
    [
        (event(product_id="__board__"), "product_id"),
        (event(user_id="__x"), "user_id"),
        (event(event_id="__e"), "event_id"),
        (event(seller_id="__s"), "seller_id"),
        (event(video_id="__v"), "video_id"),
        (event(creator_id="__c"), "creator_id"),
        (rb'{"ts":1764253200123,"type":"view","product_id":"\u005f_board__","user_id":"u"}', "product_id"),
        (rb'{"ts":1764253200123,"type":"view","product_id":"\u005F\u005Fx","user_id":"u"}', "product_id"),
    ],
)
def test_an_id_beginning_with_two_underscores_is_rejected_as_reserved(raw, field):
    batch, rejects = decode_records([event(), raw, event(product_id="p-2")])
    assert batch.product_id == ["p-1", "p-2"] and batch.offset.tolist() == [1, 3]
    [reject] = rejects
    assert (reject.reason, reject.offset, reject.raw) == ("reserved_id", 2, raw)
    assert f"'{field}'" in reject.detail and "reserved" in reject.detail


def test_underscores_elsewhere_are_fine():
    ok = [event(product_id="p__x", user_id="_u"), event(category="__cat"), raw_with(b'"__extra":1')]
    batch, rejects = decode_records(ok)
    assert len(batch) == 3 and rejects == []


@pytest.mark.parametrize(
    "reserved",
    [event(user_id="__u"), rb'{"ts":1764253200123,"type":"view","product_id":"\u005F_p","user_id":"u"}'],
)
def test_a_reserved_id_in_a_later_block_is_found(reserved):
    """Blocks whose raw bytes hold neither '"__' nor an escape skip the id scan; the others do not."""
    raw = [event(product_id=f"p-{i}") for i in range(2_500)]
    raw[2_100] = reserved
    batch, rejects = decode_records(raw)
    assert len(batch) == 2_499 and [(r.reason, r.offset) for r in rejects] == [("reserved_id", 2_101)]


def test_reserved_ids_among_bad_records_keep_offset_order():
    records = [b"nope", event(product_id="__board__"), event(), b"[]", event(user_id="__u")]
    batch, rejects = decode_records(records)
    assert [(r.offset, r.reason) for r in rejects] == [
        (1, "bad_json"),
        (2, "reserved_id"),
        (4, "not_object"),
        (5, "reserved_id"),
    ]
    assert batch.offset.tolist() == [3]


def test_frame_rejects_reserved_ids_too():
    frame = pl.DataFrame(
        {
            "ts": [str(TS)] * 3,
            "type": ["view"] * 3,
            "product_id": ["p", "__board__", "q"],
            "user_id": ["u"] * 3,
        }
    )
    batch, rejects = decode_frame(frame)
    assert batch.product_id == ["p", "q"]
    assert [(r.reason, r.offset) for r in rejects] == [("reserved_id", 2)]
    assert "reserved" in rejects[0].detail
