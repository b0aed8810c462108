"""The product table: each product's slot, name, seller and category, as one part of the engine.

A product id becomes a dense slot (:class:`~viraltrend.kernels.names.NameTable`, names in a byte
arena); the engine's counters, detector and trust signals are indexed by that slot.  Beside the names
the table keeps two columns, the slot's seller and category (``int32``, -1: none given), as slots of
two :class:`~viraltrend.kernels.names.CountedNames` tables that hold an id while a live product refers
to it.  A product's seller and category are those of the first event that made it live: they are
attached when the counters find the slot fresh (:meth:`ProductTable.attach`) and let go when the
slot is released (:meth:`ProductTable.release`).

The columns are as long as the counters (:meth:`ProductTable.grow` gives the capacity both grow to).
In a checkpoint (:mod:`viraltrend.stateful`) the table's share is the layout checkpoints had before
the table was a part: arrays ``products.*`` (the names), ``seller_of`` and ``category_of``; meta
``sellers`` and ``categories`` (the shared ids, ``None`` for a free slot).

Examples
--------
>>> from viraltrend.events import IdColumns
>>> t = ProductTable(capacity=4)
>>> ids = IdColumns.from_strings([["p1", "p2", "p1"], ["u"] * 3, [None] * 3, ["s1", None, "s2"], ["c"] * 3])
>>> idx = np.arange(3)
>>> slots = t.intern(ids, idx); slots.tolist()
[0, 1, 0]
>>> t.attach(ids, idx, slots, np.array([True, True, False])); t.seller(0), t.seller(1), t.category(1)
('s1', None, 'c')
>>> t.release(np.array([0])); t.seller_of[:2].tolist(), len(t.sellers), len(t.categories)
([-1, -1], 0, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from viraltrend.events import IdColumns
from viraltrend.kernels._checks import owned
from viraltrend.kernels.decay import grown_capacity
from viraltrend.kernels.names import CountedNames, NameTable
from viraltrend.stateful import Arrays, Meta, under

__all__ = ["ProductTable"]

_SELLER_ROW, _CATEGORY_ROW = 3, 4  # rows of IdColumns (events.ID_FIELDS)


class ProductTable:
    """Product ids -> slots, with each slot's seller and category (a :class:`~viraltrend.stateful.Stateful`).

    ``capacity``: the columns' initial length (the engine's ``state.initial_capacity``); ``limit``:
    the product cap (``state.max_products``): the names' arrays and the capacity double up to it,
    then grow by an eighth (:func:`~viraltrend.kernels.decay.grown_capacity`).
    """

    def __init__(self, capacity: int, *, limit: int | None = None) -> None:
        self.limit = limit
        self.products = NameTable(limit=limit)  # names only for products, in an arena
        self.sellers = CountedNames()  # held while a live product refers to them (bounded by products)
        self.categories = CountedNames()
        self.seller_of: NDArray[np.int32] = np.full(capacity, -1, np.int32)
        self.category_of: NDArray[np.int32] = np.full(capacity, -1, np.int32)

    @property
    def capacity(self) -> int:
        """Slots the columns hold (the counters' capacity)."""
        return int(self.seller_of.shape[0])

    @property
    def high_water(self) -> int:
        """One past the highest product slot ever handed out."""
        return self.products.high_water

    def intern(self, ids: IdColumns, idx: NDArray[np.intp]) -> NDArray[np.int64]:
        """Slots of the products of the events at ``idx`` (new ids in first-seen order, freed slots reused).

        The columns may be shorter than :attr:`high_water` afterwards: :meth:`grow` them (with the
        counters) before :meth:`attach`.
        """
        start, stop, hashes = ids.start[0], ids.stop[0], ids.product_hash  # no str per event
        if idx.size != hashes.shape[0]:
            start, stop, hashes = start[idx], stop[idx], hashes[idx]
        return self.products.intern_spans(ids.buf, start, stop, hashes)

    def grow(self, n: int) -> int | None:
        """Columns for ``n`` slots; the new capacity (the counters grow to it too), None if they fit."""
        if n <= self.seller_of.shape[0]:
            return None
        cap = grown_capacity(self.seller_of.shape[0], n, self.limit)  # no 2x slack at the cap
        for name in ("seller_of", "category_of"):
            old = getattr(self, name)
            new = np.full(cap, -1, np.int32)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        return cap

    def attach(
        self, ids: IdColumns, idx: NDArray[np.intp], slots: NDArray[np.int64], fresh: NDArray[np.bool_]
    ) -> None:
        """Attach seller and category to the fresh products of the events at ``idx`` (slots ``slots``).

        ``fresh``: the event's product holds no state yet (the counters' last event time is none): a
        new product, or one evicted and not yet released, whose earlier seller and category are let
        go.  The first such event of a product in the batch names them; an absent field leaves the
        column as it is.
        """
        new = np.flatnonzero(fresh)
        if not new.size:
            return
        new = new[np.unique(slots[new], return_index=True)[1]]  # one event per new product
        events = idx[new]
        for row, table, column in (
            (_SELLER_ROW, self.sellers, self.seller_of),
            (_CATEGORY_ROW, self.categories, self.category_of),
        ):
            start, stop = ids.start[row, events], ids.stop[row, events]  # the new products' names
            given = start >= 0  # -1: not given
            if given.any():
                rows = slots[new[given]]
                got = table.intern_spans(ids.buf, start[given], stop[given])
                table.hold(got)
                table.drop(column[rows].astype(np.int64))  # a revived product's earlier id
                column[rows] = got.astype(np.int32)

    def release(self, cold: NDArray[np.int64]) -> None:
        """Free the slots ``cold`` (evicted, no event since): their names, sellers and categories."""
        self.products.release(cold.tolist())
        self.sellers.drop(self.seller_of[cold].astype(np.int64))  # ids no live product holds are released
        self.categories.drop(self.category_of[cold].astype(np.int64))
        self.seller_of[cold] = -1
        self.category_of[cold] = -1

    def seller(self, slot: int) -> str | None:
        """The seller id of the product in ``slot`` (None: none given)."""
        s = int(self.seller_of[slot])
        return self.sellers.name(s) if s >= 0 else None

    def category(self, slot: int) -> str | None:
        """The category of the product in ``slot`` (None: none given)."""
        c = int(self.category_of[slot])
        return self.categories.name(c) if c >= 0 else None

    @property
    def itemsize(self) -> int:
        """Bytes of the columns per slot."""
        return int(self.seller_of.itemsize + self.category_of.itemsize)

    @property
    def nbytes(self) -> int:
        """Bytes of the columns allocated (the names and shared ids apart)."""
        return int(self.seller_of.nbytes + self.category_of.nbytes)

    # ------------------------------------------------------------------ checkpoints
    def to_state(self, *, copy: bool = True) -> tuple[Arrays, Meta]:
        """The names under ``products.``, the columns (views with ``copy=False``), the shared ids as meta."""
        cp = np.copy if copy else np.ndarray.view  # a view: owndata False, so a caller tells it from a copy
        names, _ = self.products.to_state(copy=copy)
        arrays = {f"products.{k}": v for k, v in names.items()}
        arrays["seller_of"], arrays["category_of"] = cp(self.seller_of), cp(self.category_of)
        return arrays, {"sellers": self.sellers.to_list(), "categories": self.categories.to_list()}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> ProductTable:
        """In place, from the checkpoint's arrays (all of them: the part has no prefix of its own).

        An older checkpoint's names in ``meta["products"]``: :meth:`NameTable.load_state`.  The
        shared ids' counts are those of the columns (:meth:`CountedNames.from_list`).
        """
        self.products = self.products.load_state(under(arrays, "products."), meta)
        # copies: two engines restored from one state must not share them (unless handed over)
        self.seller_of = owned(arrays["seller_of"], np.int32)
        self.category_of = owned(arrays["category_of"], np.int32)
        self.sellers = CountedNames.from_list(meta["sellers"], self.seller_of)
        self.categories = CountedNames.from_list(meta["categories"], self.category_of)
        return self
