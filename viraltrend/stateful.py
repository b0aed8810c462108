"""One protocol for the engine's parts that hold state: what a checkpoint is made of.

A checkpoint (:meth:`viraltrend.engine.Engine.state`) is numpy arrays plus one JSON-able dict, never
pickled.  Each part of the engine (the product table, the counters, the user table, dedup, the clock,
the trust signals, the guard's bookkeeping, the model, the board, the stats) gives its share of both
with :meth:`Stateful.to_state` and takes it back with :meth:`Stateful.load_state`; the engine names
its parts in one table (array-name prefix -> part) and loops over it.

Array names are local to a part (the engine prefixes them: ``counters.acc``); meta keys are the
checkpoint's own, in one flat dict.  So the layout is the one checkpoints had before the parts owned
their state: the array names (the changelog store's deltas key on them) and meta keys are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, runtime_checkable

from numpy.typing import NDArray

__all__ = ["Arrays", "Meta", "Stateful", "under"]

Arrays = dict[str, NDArray[Any]]
Meta = dict[str, Any]


@runtime_checkable
class Stateful(Protocol):
    """A part of the engine whose state a checkpoint holds."""

    def to_state(self, *, copy: bool = True) -> tuple[Arrays, Meta]:
        """The part's arrays (names without the engine's prefix) and its meta entries (JSON-able).

        ``copy=False``: the largest arrays may be views of the part's own (the caller copies them
        before the engine goes on); the others are copies either way.
        """
        ...

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> Self:
        """The part, built from the config, restored from a checkpoint: itself, or a new one for it.

        ``arrays``: the checkpoint's arrays under the part's prefix, the prefix removed; ``meta``: the
        checkpoint's whole meta dict.  A malformed checkpoint raises KeyError, TypeError, ValueError
        or CheckpointError.
        """
        ...


def under(arrays: Mapping[str, NDArray[Any]], prefix: str) -> Arrays:
    """The arrays whose names start with ``prefix``, the prefix removed (``""``: all of them)."""
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
