"""decode_frame's ids built from the frame's columns (no str per row) against IdColumns.from_strings."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.events import ID_FIELDS, IdColumns
from viraltrend.stream.decode import _id_spans, decode_frame

_TEXT = st.one_of(st.none(), st.text(min_size=0, max_size=6))  # unicode, NULs, empty strings


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT), min_size=0, max_size=30))
def test_id_spans_give_the_texts_and_hashes_of_from_strings(rows):
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    frame = pl.DataFrame(
        {name: pl.Series(name, list(c), dtype=pl.String) for name, c in zip(ID_FIELDS, cols, strict=True)}
    )
    got = _id_spans(frame)
    want = IdColumns.from_strings([list(c) for c in cols])
    for row in range(5):
        assert got.texts(row) == want.texts(row) == list(cols[row])
    for name in ("product_hash", "user_hash", "event_h1", "event_h2"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_decode_frame_builds_no_id_lists_and_reads_them_back():
    frame = pl.DataFrame(
        {
            "ts": ["1764253200123", "1764253200124", "x"],
            "type": ["view", "purchase", "view"],
            "product_id": ["p1", "pé", "p3"],
            "user_id": ["u1", "u2", "u3"],
            "category": [None, "c", "c"],
        }
    )
    batch, rejects = decode_frame(frame)
    assert batch._text == [None] * 5  # spans only: strings are built on first access
    assert (
        batch.product_id == ["p1", "pé"] and batch.category == [None, "c"] and batch.event_id == [None, None]
    )
    assert [r.reason for r in rejects] == ["bad_ts"]
    want = IdColumns.from_strings([["p1", "pé"], ["u1", "u2"], [None, None], [None, None], [None, "c"]])
    np.testing.assert_array_equal(batch.ids.product_hash, want.product_hash)
    np.testing.assert_array_equal(batch.ids.user_hash, want.user_hash)
