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


def _intern_before_perf23(rows, used, start, length, arena, arena_end, high_water, free, free_pos, buf,
                          starts, ends, hashes, insert, limit):  # fmt: skip
    """``names._intern`` as it was before perf23 split it (one loop, every step in it): the reference."""
    from viraltrend.kernels.names import _FREE, _LOW, _find, _grow1, _row_rehash

    slots = np.empty(hashes.shape[0], np.int64)
    for i in range(hashes.shape[0]):
        h = hashes[i]
        r = _find(rows, arena, start, length, h, buf, starts[i], ends[i])
        if rows[r] != _FREE:
            slots[i] = np.int64(rows[r] & _LOW)
            continue
        if not insert:
            slots[i] = -1
            continue
        if 4 * (used + 1) > 3 * rows.shape[0]:
            rows = _row_rehash(rows, 2 * rows.shape[0])
            r = _find(rows, arena, start, length, h, buf, starts[i], ends[i])
        if free_pos < free.shape[0]:
            s = free[free_pos]
            free_pos += 1
        else:
            s = high_water
            high_water += 1
            start = _grow1(start, high_water, np.int64(0), limit)
            length = _grow1(length, high_water, np.int32(-1), limit)
        size = ends[i] - starts[i]
        arena = _grow1(arena, arena_end + size, np.uint8(0), 0)
        arena[arena_end : arena_end + size] = buf[starts[i] : ends[i]]
        rows[r] = ((h & _LOW) << np.uint64(32)) | np.uint64(s)
        used += 1
        start[s] = arena_end
        length[s] = size
        arena_end += size
        slots[i] = s
    return slots, rows, used, start, length, arena, arena_end, high_water, free_pos


@pytest.mark.parametrize("limit", [0, 37])
def test_the_split_intern_equals_the_one_loop_it_replaced(limit):
    """perf23: ``_intern`` + ``_intern_run`` (no reference counts) give every output of the old loop."""
    from viraltrend.kernels.names import _FREE, _intern

    rng = np.random.default_rng(11 + limit)
    state = [np.full(4, _FREE, np.uint64), 0, np.zeros(2, np.int64), np.full(2, -1, np.int32),
             np.zeros(16, np.uint8), 0, 0, np.array([], np.int64), 0]  # fmt: skip
    ref = [a.copy() if isinstance(a, np.ndarray) else a for a in state]
    for batch in range(40):
        ids = [f"p{int(x)}".encode() for x in rng.integers(0, 60 + 10 * batch, int(rng.integers(1, 30)))]
        buf = np.frombuffer(b"".join(ids), np.uint8).copy()
        ends = np.cumsum([len(x) for x in ids]).astype(np.int64)
        starts = ends - np.array([len(x) for x in ids], np.int64)
        hashes = np.array([sum(x) % 11 for x in ids], np.uint64)  # the same id the same hash; collisions
        insert = bool(batch % 5)
        if batch == 20:  # released slots to take again, ascending
            free = np.array([0, 2], np.int64)
            state[7], state[8], ref[7], ref[8] = free, 0, free.copy(), 0
        for st_ in (state, ref):  # the caller grows the arena beforehand
            need = st_[5] + buf.shape[0]
            if need > st_[4].shape[0]:
                grown = np.zeros(2 * need, np.uint8)
                grown[: st_[4].shape[0]] = st_[4]
                st_[4] = grown
        got = _intern(*state[:9], buf, starts, ends, hashes, insert, limit)
        exp = _intern_before_perf23(*ref[:9], buf, starts, ends, hashes, insert, limit)
        for a, b in zip(got, exp, strict=True):
            assert (a.tobytes() == b.tobytes()) if isinstance(a, np.ndarray) else int(a) == int(b)
        state = [got[1], got[2], got[3], got[4], got[5], got[6], got[7], state[7], got[8]]
        ref = [exp[1], exp[2], exp[3], exp[4], exp[5], exp[6], exp[7], ref[7], exp[8]]
    assert int(state[6]) > 100  # slots were taken past several growths
