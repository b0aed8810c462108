from __future__ import annotations

import pytest

from viraltrend.kernels.intern import Interner


def test_same_id_same_slot_in_first_seen_order():
    t = Interner()
    assert t.intern(["b", "a", "b"]).tolist() == [0, 1, 0]
    assert t.intern(["a", "c"]).tolist() == [1, 2]


def test_released_slots_are_reused_lowest_first():
    t = Interner()
    t.intern(["a", "b", "c"])
    t.release([2, 0])
    assert t.intern(["x", "y", "z"]).tolist() == [0, 2, 3]
    assert len(t) == 4


def test_lookup_does_not_add():
    t = Interner()
    t.intern(["a"])
    assert t.lookup(["a", "zz"]).tolist() == [0, -1]
    assert len(t) == 1


def test_free_slot_has_no_name():
    t = Interner()
    t.intern(["a"])
    t.release([0])
    with pytest.raises(KeyError, match="free"):
        t.name(0)


def test_round_trip_through_plain_list():
    t = Interner()
    t.intern(["a", "b", "c"])
    t.release([1])
    t2 = Interner.from_list(t.to_list())
    assert t2.intern(["c", "q"]).tolist() == [2, 1]


def test_corrupt_list_is_refused():
    with pytest.raises(ValueError, match="corrupt"):
        Interner.from_list(["a", "a"])
