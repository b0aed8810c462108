"""``line_ends`` eight bytes at a time against the byte-by-byte reference and numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels.ndjson import _line_ends_ref, line_ends

# bytes near the line feed (0x0A) and the word test's edges (0x00, 0x0B, 0x80, 0x8A, 0xFF) often
_BYTES = st.one_of(
    st.sampled_from([0x0A, 0x0A, 0x00, 0x09, 0x0B, 0x80, 0x8A, 0xFF, 0x7F]), st.integers(0, 255)
)


@settings(max_examples=300, deadline=None)
@given(data=st.lists(_BYTES, max_size=80), offset=st.integers(0, 15))
def test_line_ends_at_any_alignment_as_the_reference(data: list[int], offset: int) -> None:
    base = np.zeros(offset + len(data) + 8, np.uint8)  # a slice: its start at any alignment
    base[offset : offset + len(data)] = data
    buf = base[offset : offset + len(data)]
    got = line_ends(buf)
    assert got.dtype == np.int64
    assert got.tolist() == _line_ends_ref(buf).tolist() == np.flatnonzero(buf == 0x0A).tolist()


def test_line_ends_of_long_lines() -> None:
    rng = np.random.default_rng(7)
    buf = rng.integers(0, 256, 100_003).astype(np.uint8)
    buf[buf == 0x0A] = 0x20
    buf[rng.choice(buf.shape[0], 700, replace=False)] = 0x0A
    for start in range(9):
        part = buf[start:]
        assert line_ends(part).tolist() == np.flatnonzero(part == 0x0A).tolist()
    assert line_ends(np.zeros(0, np.uint8)).tolist() == []
    assert line_ends(np.full(17, 0x0A, np.uint8)).tolist() == list(range(17))
