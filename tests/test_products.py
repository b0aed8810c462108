"""The product table (:mod:`viraltrend.products`): slots, seller and category columns, their shared ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from viraltrend.events import IdColumns
from viraltrend.products import ProductTable
from viraltrend.stateful import Stateful


def _ids(products, sellers, categories) -> IdColumns:
    n = len(products)
    return IdColumns.from_strings([products, ["u"] * n, [None] * n, sellers, categories])


def _take(table: ProductTable, ids: IdColumns, fresh=None):
    """What the engine's _intern does: slots, grow, attach (fresh: a slot the table did not hold before)."""
    before = table.high_water
    idx = np.arange(ids.product_hash.shape[0])
    slots = table.intern(ids, idx)
    table.grow(table.high_water)
    table.attach(ids, idx, slots, slots >= before if fresh is None else fresh)
    return slots


def test_intern_grow_attach_and_release():
    table = ProductTable(capacity=2, limit=100)
    assert isinstance(table, Stateful)
    ids = _ids(["a", "b", "a", "c"], ["s1", "s1", "s9", None], ["k", None, "k", "k"])
    slots = _take(table, ids)
    assert slots.tolist() == [0, 1, 0, 2]
    assert table.capacity == 4 and table.seller_of.shape == table.category_of.shape == (4,)
    # a product's seller and category are those of its first event in the batch; "c" names no seller
    assert [table.seller(s) for s in range(3)] == ["s1", "s1", None]
    assert [table.category(s) for s in range(3)] == ["k", None, "k"]
    assert len(table.sellers) == 1 and table.sellers.refs[0] == 2 and table.categories.refs[0] == 2
    assert table.grow(3) is None and table.grow(5) == 8  # doubling, the counters' rule
    table.release(np.array([0, 2], np.int64))
    assert table.seller_of[:3].tolist() == [-1, 0, -1] and table.category_of[:3].tolist() == [-1, -1, -1]
    assert len(table.sellers) == 1 and len(table.categories) == 0 and table.categories.released == 1
    # the lowest freed slot first; a product back after release takes the seller its new event names
    again = _take(table, _ids(["c", "a"], ["s2", "s3"], [None, "q"]), fresh=np.array([True, True]))
    assert again.tolist() == [0, 2] and table.products.names([0, 2]) == ["c", "a"]
    assert table.seller(0) == "s2" and table.seller(2) == "s3" and table.category(2) == "q"


def test_a_revived_product_lets_go_of_its_earlier_seller_and_an_absent_field_keeps_it():
    table = ProductTable(capacity=4)
    _take(table, _ids(["a", "b"], ["s1", "s2"], ["k", "k"]))
    # "a" evicted (its counters cleared) and back before its slot is released: fresh again
    _take(table, _ids(["a", "b"], ["s2", "s9"], [None, "q"]), fresh=np.array([True, False]))
    assert table.seller(0) == "s2" and table.category(0) == "k"  # no category given: the earlier one
    assert table.seller(1) == "s2" and table.category(1) == "k"  # not fresh: nothing attached
    assert table.sellers.table.lookup(["s1"]).tolist() == [-1] and table.sellers.released == 1
    assert table.sellers.refs[int(table.seller_of[0])] == 2


def test_the_state_round_trips_and_an_older_checkpoint_s_names_restore():
    table = ProductTable(capacity=4, limit=50)
    _take(table, _ids([f"p{i}" for i in range(6)], [f"s{i % 2}" for i in range(6)], ["c"] * 6))
    table.release(np.array([1, 4], np.int64))
    arrays, meta = table.to_state()
    assert sorted(arrays) == ["category_of", "products.free", "products.length", "products.meta",
                              "products.names", "seller_of"]  # fmt: skip
    assert sorted(meta) == ["categories", "sellers"]
    back = ProductTable(capacity=4, limit=50).load_state(arrays, json.loads(json.dumps(meta)))
    assert back.products.to_list() == table.products.to_list() == ["p0", None, "p2", "p3", None, "p5"]
    assert back.products.limit == 50 and back.capacity == table.capacity == 8
    assert np.array_equal(back.seller_of, table.seller_of) and np.array_equal(
        back.category_of, table.category_of
    )
    assert back.sellers.to_list() == table.sellers.to_list() and back.sellers.refs[:2].tolist() == [2, 2]
    assert not np.shares_memory(back.seller_of, arrays["seller_of"])
    # the next new product takes the same slot in both
    assert (
        _take(back, _ids(["x"], ["s7"], ["c"])).tolist() == _take(table, _ids(["x"], ["s7"], ["c"])).tolist()
    )
    # copy=False: the columns are views of the table's own; the names are copies either way
    views, _ = table.to_state(copy=False)
    assert np.shares_memory(views["seller_of"], table.seller_of) and not views["seller_of"].flags.owndata
    assert not np.shares_memory(table.to_state()[0]["seller_of"], table.seller_of)
    # a checkpoint written before the names were arrays holds them in meta["products"]
    older = {k: v for k, v in arrays.items() if not k.startswith("products.")}
    old = ProductTable(capacity=4).load_state(
        older, {**meta, "products": ["p0", None, "p2", "p3", None, "p5"]}
    )
    assert old.products.to_list() == ["p0", None, "p2", "p3", None, "p5"]
    with pytest.raises(KeyError, match="sellers"):
        ProductTable(capacity=4).load_state(arrays, {"categories": meta["categories"]})
