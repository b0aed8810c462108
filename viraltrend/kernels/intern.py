"""Interning: map string ids (product, seller, category) to dense integer slots.

Kernels index numpy arrays by slot, so every string id is mapped once per batch to an
``int64`` slot.  The mapping runs as C-level ``map``/``dict`` calls over the batch (no
Python bytecode per event); only ids new to the table take a Python step each.  Slots of
evicted ids go to a free list and are reused lowest-first, so the mapping is a
deterministic function of the input.

Examples
--------
>>> table = Interner()
>>> table.intern(["p1", "p2", "p1"]).tolist()
[0, 1, 0]
>>> table.release([0]); table.intern(["p3"]).tolist()
[0]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from itertools import repeat

import numpy as np
from numpy.typing import NDArray

__all__ = ["Interner"]


class Interner:
    """A string -> dense slot table with slot reuse after :meth:`release`."""

    def __init__(self) -> None:
        self._slot_of: dict[str, int] = {}
        self._names: list[str | None] = []
        self._free: list[int] = []  # a min-heap of released slots

    def __len__(self) -> int:
        """Number of ids currently interned."""
        return len(self._slot_of)

    @property
    def high_water(self) -> int:
        """One past the highest slot ever handed out: arrays indexed by slot need this length."""
        return len(self._names)

    def intern(self, ids: Sequence[str]) -> NDArray[np.int64]:
        """Return the slot of each id (``int64[n]``), adding ids not seen before (in first-seen order)."""
        table = self._slot_of
        slots = np.fromiter(map(table.get, ids, repeat(-1)), np.int64, len(ids))  # one C-level pass
        missing = np.flatnonzero(slots < 0)
        if missing.size == 0:
            return slots
        new = dict.fromkeys(ids[i] for i in missing.tolist())  # first-seen order: deterministic slots
        for name in new:
            if self._free:
                slot = heapq.heappop(self._free)
                self._names[slot] = name
            else:
                slot = len(self._names)
                self._names.append(name)
            table[name] = slot
        slots[missing] = np.fromiter((table[ids[i]] for i in missing.tolist()), np.int64, missing.size)
        return slots

    def lookup(self, ids: Iterable[str]) -> NDArray[np.int64]:
        """Return the slot of each id, or -1 where it is not interned (adds nothing)."""
        get = self._slot_of.get
        return np.fromiter((get(s, -1) for s in ids), np.int64)

    def name(self, slot: int) -> str:
        """Return the id held by ``slot``."""
        name = self._names[slot]
        if name is None:
            msg = f"slot {slot} is free; it holds no id"
            raise KeyError(msg)
        return name

    def names(self, slots: Iterable[int]) -> list[str]:
        """Return the ids held by ``slots``."""
        return [self.name(int(s)) for s in slots]

    def release(self, slots: Iterable[int]) -> None:
        """Forget the ids in ``slots``; the slots will be reused by later :meth:`intern` calls."""
        for slot in slots:
            name = self._names[int(slot)]
            if name is None:
                continue
            del self._slot_of[name]
            self._names[int(slot)] = None
            heapq.heappush(self._free, int(slot))

    def to_list(self) -> list[str | None]:
        """Plain data for a checkpoint: the id of every slot, None for free slots."""
        return list(self._names)

    @classmethod
    def from_list(cls, names: Sequence[str | None]) -> Interner:
        """Rebuild a table from :meth:`to_list` output."""
        table = cls()
        table._names = list(names)
        table._slot_of = {n: i for i, n in enumerate(table._names) if n is not None}
        table._free = [i for i, n in enumerate(table._names) if n is None]
        heapq.heapify(table._free)
        if len(table._slot_of) != len(names) - len(table._free):
            msg = "interner checkpoint holds the same id twice; the checkpoint is corrupt"
            raise ValueError(msg)
        return table
