from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels import names as names_module
from viraltrend.kernels.hashtable import hash_ids
from viraltrend.kernels.intern import Interner
from viraltrend.kernels.names import NameTable

IDS = st.sampled_from(["p1", "p2", "p3", "é", "", "a\x00b", "\x00", "long-" * 20, "p4", "p5"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("intern"), st.lists(IDS, max_size=15)),
        st.tuples(st.just("release"), st.lists(st.integers(0, 12), max_size=5)),
        st.tuples(st.just("restore"), st.just([])),
    ),
    max_size=25,
)


def run_both(ops, table: NameTable) -> None:
    """The table against :class:`Interner` (a dict and a list: the plain-Python reference)."""
    ref = Interner()
    for op, arg in ops:
        if op == "intern":
            assert table.intern(arg).tolist() == ref.intern(arg).tolist()
        elif op == "release":
            slots = [s for s in arg if s < ref.high_water]
            table.release(slots)
            ref.release(slots)
        else:
            table = NameTable.from_list(table.to_list())
        assert table.to_list() == ref.to_list()
        assert len(table) == len(ref) and table.high_water == ref.high_water
        probe = ["p1", "p5", "é", "nope", "a\x00b"]
        assert table.lookup(probe).tolist() == ref.lookup(probe).tolist()


@settings(max_examples=80, deadline=None)
@given(ops=OPS)
def test_name_table_matches_the_interner(ops):
    run_both(ops, NameTable(capacity=2))


@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_hash_collisions_never_merge_two_products(ops):
    """Every id gets one of two hashes: probes must tell ids apart by their bytes."""
    real = names_module._hashes
    names_module._hashes = lambda buf, starts, ends: (  # type: ignore[assignment]
        1 + (ends - starts) % 2
    ).astype(np.uint64)
    try:
        run_both(ops, NameTable(capacity=2))
    finally:
        names_module._hashes = real


def test_hashes_are_those_of_hash_ids():
    ids = ["p1", "é", "", "a\x00b"]
    buf, starts, ends = names_module._encode(ids)
    assert names_module._hashes(buf, starts, ends).tolist() == hash_ids(ids).tolist()


def test_the_arena_is_squeezed_after_many_releases():
    t = NameTable()
    ids = [f"product-{i:06d}" for i in range(20_000)]
    t.intern(ids)
    t.release(range(0, 20_000, 2))
    t.release(range(1, 15_000, 2))
    assert t._arena_end < 5_000 * 14 * 2
    assert t.names([15_001, 19_999]) == ["product-015001", "product-019999"]
    assert t.intern(["x", "product-019999"]).tolist() == [0, 19_999]


def test_free_slot_has_no_name_and_corrupt_lists_are_refused():
    t = NameTable()
    t.intern(["a"])
    t.release([0])
    with pytest.raises(KeyError, match="free"):
        t.name(0)
    with pytest.raises(ValueError, match="corrupt"):
        NameTable.from_list(["a", None, "a"])


def test_counted_names_release_an_id_when_no_product_holds_it():
    from viraltrend.kernels.names import CountedNames

    t = CountedNames()
    a = t.intern(["s1", "s2", "s1"])
    t.hold(a)
    assert len(t) == 2 and t.refs[a[0]] == 2
    t.drop(a[:1])
    assert len(t) == 2
    t.drop(np.array([a[0], -1]))
    assert len(t) == 1 and t.released == 1 and t.table.lookup(["s1"]).tolist() == [-1]
    b = t.intern(["s3"])  # the freed slot is reused
    assert b.tolist() == [int(a[0])]
    again = CountedNames.from_list(t.to_list(), np.array([a[1], -1, -1]))
    assert len(again) == 1 and again.name(int(a[1])) == "s2"


def test_hash_of_is_recomputed_from_the_arena_and_zero_for_free_slots():
    t = NameTable(capacity=2)
    ids = ["p1", "é", "", "a\x00b", "long-" * 20]
    t.intern(ids)
    t.release([1])
    got = t.hash_of
    want = hash_ids(ids)
    want[1] = 0
    assert got.dtype == np.uint64 and got.tolist() == want.tolist()


def test_slot_arrays_stop_at_the_limit_and_rows_are_eight_bytes():
    t = NameTable(capacity=16, limit=1000)
    t.intern([f"p-{i:08d}" for i in range(1000)])
    assert t._start.shape[0] == t._length.shape[0] == 1000  # doubling would have given 1024
    t.intern(["one-more"])
    assert t._start.shape[0] == 1125  # past the limit: an eighth more
    assert t._rows.dtype == np.uint64 and t._rows.shape[0] == 2048  # 1001 ids at most 3/4 full
    assert t.nbytes == 2048 * 8 + 1125 * 8 + t._arena.nbytes + t._free.nbytes  # start int32, length int32
    restored = NameTable.from_list(t.to_list(), limit=1000)
    assert restored._start.shape[0] == 1001 and restored._rows.shape[0] == 2048
    assert restored.intern(["p-00000999", "one-more", "new"]).tolist() == [999, 1000, 1001]


def test_starts_are_int32_and_widen_before_the_arena_passes_int32(monkeypatch):
    """Per-slot starts take 4 bytes; an arena past what int32 holds widens them first (no offset wraps)."""
    t = NameTable(capacity=4)
    t.intern(["alpha", "beta"])
    assert t._start.dtype == np.int32
    monkeypatch.setattr(names_module, "_START32_MAX", 12)  # a small arena limit stands for 2 GiB
    t.intern(["gamma"])  # 9 + 5 = 14 bytes > 12: widened before the kernel writes the offset 9
    assert t._start.dtype == np.int64
    assert [t.name(s) for s in range(3)] == ["alpha", "beta", "gamma"]
    assert t.lookup(["gamma", "alpha", "delta"]).tolist() == [2, 0, -1]
    back = NameTable.from_arrays(t.to_arrays())  # restored over the limit: int64 from the start
    assert back._start.dtype == np.int64 and back.to_list() == t.to_list()
    assert np.array_equal(back.hash_of, t.hash_of)
