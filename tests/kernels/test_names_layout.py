"""Ids interned from a writable buffer, a read-only one or strided columns take one compiled signature."""

from __future__ import annotations

import numpy as np

from viraltrend.kernels import names
from viraltrend.kernels.hashtable import hash_ids
from viraltrend.kernels.names import CountedNames, NameTable


def _overloads() -> int:
    # under NUMBA_DISABLE_JIT the kernels are plain functions: no signature to count
    return sum(len(getattr(f, "overloads", {})) for f in (names._intern, names._hashes))


def _spans(ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = "".join(ids).encode()
    ends = np.cumsum([len(i.encode()) for i in ids]).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return np.frombuffer(data, np.uint8), starts, ends  # read-only, as the NDJSON decoder's


def test_writable_and_strided_inputs_add_no_signature() -> None:
    ids = ["p-1", "p-22", "p-333", "p-1"]
    buf, starts, ends = _spans(ids)
    hashes = hash_ids(ids)
    table, counted = NameTable(), CountedNames()
    want = table.intern_spans(buf, starts, ends, hashes).tolist()
    counted.intern_spans(buf, starts, ends)
    before = _overloads()
    wide = np.zeros((2, len(ids)), np.int64, order="F")  # rows of a Fortran array: strided columns
    wide[0], wide[1] = starts, ends
    writable = buf.copy()  # as the CSV decoder's
    assert NameTable().intern_spans(writable, wide[0], wide[1], hashes).tolist() == want
    assert table.intern_spans(writable, wide[0], wide[1], hashes).tolist() == want
    assert (
        counted.intern_spans(writable, wide[0], wide[1]).tolist()
        == counted.intern_spans(buf, starts, ends).tolist()
    )
    assert writable.flags.writeable  # the caller's array is left as it was
    assert _overloads() == before
