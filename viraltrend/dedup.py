"""Dropping repeated ``event_id`` values within an event-time window.

An event is a duplicate when an earlier *kept* event carried the same ``event_id`` and its
``ts`` is within ``window_ms`` of the dedup watermark.  The dedup watermark is an event-time
watermark with the engine clock's future rule (:class:`~viraltrend.kernels.clock.EventClock`,
run over every event dedup sees, in arrival order): a timestamp more than ``max_future_ms``
ahead moves it only when a clear majority of the events after it confirm the jump, so a few
absurd timestamps (the year 2099) cannot push the window past every real event and switch
dedup off.  That rule depends only on the sequence of events, never on how it is split into
batches, so a replay is deterministic.  Events without an ``event_id`` are never duplicates.

Ids are kept as 128-bit hashes (:mod:`viraltrend.kernels.idset`), and a batch is filtered in one
compiled loop in arrival order (a kept id is stored at once, so a repeat later in the batch sees
it; no Python step per event).  Memory is kept in two
generations: ids go into ``current``; once ``current`` has covered a whole window of the
watermark it becomes ``previous`` and the entries of the old ``previous`` whose ``ts`` is more
than a window behind the watermark are dropped.  The watermark never goes back, so such an entry
can never match again: the rotation changes no decision, however the stream is cut into
batches.  The entries of the old ``previous`` still inside the window are carried into the new
``previous``: these are ids stored with a ``ts`` ahead of the watermark (at most
``max_future_ms`` ahead of it when stored), and they stay duplicates until the watermark is a
window past them.  A far-future event (beyond the future rule, rejected by the engine as
``future_ts``) is never a duplicate and reserves no id, so hostile far-future ids cost no memory.
Memory is two windows of ids plus at most ``max_future_ms`` of ids ahead of the watermark.

Examples
--------
>>> d = Deduplicator(window_ms=1000)
>>> d.filter(["a", "b", "a", None], np.array([0, 10, 20, 30])).tolist()
[True, True, False, True]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from viraltrend.events import EventBatch, Reject
from viraltrend.kernels.clock import DEFAULT_JUMP_QUORUM, EventClock
from viraltrend.kernels.idset import SeenIds, filter_seen, hash_pairs

__all__ = ["Deduplicator", "duplicate_rejects"]

_NEVER = -(2**62)
_NO_TICKS = 2**53  # dedup's clock only keeps the watermark: ticks this far apart never fire


class Deduplicator:
    """Remembers kept ``event_id`` values and their ``ts`` for ``window_ms`` of event time.

    Parameters
    ----------
    window_ms : int
        How long an id is remembered, in event time (> 0).
    max_future_ms, jump_quorum : int
        The future rule of the dedup watermark (see the module docstring); :meth:`filter` can
        take them from the engine's clock instead.
    """

    def __init__(
        self, *, window_ms: int, max_future_ms: int = 3_600_000, jump_quorum: int = DEFAULT_JUMP_QUORUM
    ) -> None:
        if window_ms <= 0:
            msg = f"window_ms must be > 0, got {window_ms}"
            raise ValueError(msg)
        self.window_ms = int(window_ms)
        self._clock = EventClock(
            tick_ms=_NO_TICKS, allowed_lateness_ms=0, max_future_ms=max_future_ms, jump_quorum=jump_quorum
        )
        self._current = SeenIds()
        self._previous = SeenIds()
        self._current_since_ms = _NEVER  # watermark when ``current`` was started

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    @property
    def watermark_ms(self) -> int:
        """The dedup watermark, epoch ms (a large negative number before the first event)."""
        wm = self._clock.watermark_ms
        return _NEVER if wm is None else wm

    def filter(
        self,
        event_id: Sequence[str | None],
        ts_ms: NDArray[np.int64],
        *,
        future_rule: EventClock | None = None,
    ) -> NDArray[np.bool_]:
        """Return ``keep: bool[n]``, False for duplicates, and remember the kept ids.

        ``future_rule``: take ``max_future_ms`` and ``jump_quorum`` of the watermark from this
        clock (the engine's), so that dedup follows event time exactly as far as the engine does.
        """
        n = len(event_id)
        if n == 0:
            return np.ones(0, np.bool_)
        has_id = np.fromiter(map(bool, event_id), np.bool_, n)
        h1 = np.zeros(n, np.uint64)
        h2 = np.zeros(n, np.uint64)
        if has_id.all():
            h1, h2 = hash_pairs(event_id)  # type: ignore[arg-type]  # no None: all have an id
        elif has_id.any():
            h1[has_id], h2[has_id] = hash_pairs(list(filter(None, event_id)))  # those with an id
        return self.filter_hashed(h1, h2, ts_ms, future_rule=future_rule)

    def filter_hashed(
        self,
        h1: NDArray[np.uint64],
        h2: NDArray[np.uint64],
        ts_ms: NDArray[np.int64],
        *,
        future_rule: EventClock | None = None,
    ) -> NDArray[np.bool_]:
        """:meth:`filter` of events whose ids are given as :func:`~viraltrend.kernels.idset.hash_pairs`.

        ``h1[i] == 0`` (a value ``hash_pairs`` never gives) marks an event without an ``event_id``.
        """
        n = h1.shape[0]
        if n == 0:
            return np.ones(0, np.bool_)
        if future_rule is not None:
            self._clock.max_future_ms = future_rule.max_future_ms
            self._clock.jump_quorum = future_rule.jump_quorum
        ts = np.ascontiguousarray(ts_ms, np.int64)
        step = self._clock.advance(ts, watermarks=True)
        assert step.watermarks is not None
        running = np.maximum(step.watermarks, _NEVER)  # the clock's "unset" is the int64 minimum
        horizon = np.maximum(running - self.window_ms, _NEVER + 1)  # an id never seen is never a dup
        has_id = h1 != 0
        # a far-future event (status 2) is rejected as future_ts: it reserves no id, so endless
        # distinct far-future ids cost no memory, and a later copy inside the window is no duplicate
        remember = has_id & (step.status != 2)
        keep = filter_seen(self._current, self._previous, h1, h2, remember, ts, horizon, _NEVER)
        if self.watermark_ms == _NEVER:
            pass  # no event accepted by the watermark yet
        elif self._current_since_ms == _NEVER:
            self._current_since_ms = int(running[running > _NEVER][0])
        elif self.watermark_ms - self._current_since_ms > self.window_ms:
            self._carry_live(
                self._previous, into=self._current, horizon_ms=self.watermark_ms - self.window_ms
            )
            self._previous, self._current = self._current, SeenIds()
            self._current_since_ms = self.watermark_ms
        return keep

    @staticmethod
    def _carry_live(old: SeenIds, *, into: SeenIds, horizon_ms: int) -> None:
        """Copy the entries of ``old`` with ``ts >= horizon_ms`` into ``into`` (the larger ``ts`` wins).

        The others can never match again (every later event's horizon is at least ``horizon_ms``);
        the live ones are ids stored ahead of the watermark, which must outlive the rotation.
        """
        rows = old.rows
        live = (rows[:, 0] != 0) & (rows[:, 2] >= horizon_ms)
        if not live.any():
            return
        h = rows[live, :2].copy().view(np.uint64)
        ts = np.ascontiguousarray(rows[live, 2])
        # horizon = ts: an entry of ``into`` with a ts at least as large keeps it, else ts is stored
        filter_seen(
            into, SeenIds(capacity=2), h[:, 0], h[:, 1], np.ones(ts.shape[0], np.bool_), ts, ts, _NEVER
        )

    def to_dict(self) -> dict[str, object]:
        """Plain data for a checkpoint: the ids of each generation as ``[h1s, h2s, ts]`` lists."""
        return {
            "window_ms": self.window_ms,
            "watermark_ms": self.watermark_ms,
            "clock": self._clock.to_dict(),
            "current_hashed": self._current.to_lists(),
            "previous_hashed": self._previous.to_lists(),
            "current_since_ms": self._current_since_ms,
        }

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """Plain data for a checkpoint (:mod:`viraltrend.stateful`): small fields as JSON, tables as they are.

        Meta ``dedup``: the small fields.

        Arrays ``current`` and ``previous``: int64[rows, 3] (copies); :meth:`from_state` takes
        them back without re-inserting an id, and a checkpoint's delta holds only their changed rows.
        """
        meta = {
            "window_ms": self.window_ms,
            "watermark_ms": self.watermark_ms,
            "clock": self._clock.to_dict(),
            "current_since_ms": self._current_since_ms,
            "current_used": self._current.used,
            "previous_used": self._previous.used,
        }
        return {"current": self._current.rows.copy(), "previous": self._previous.rows.copy()}, {"dedup": meta}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> Deduplicator:
        """:meth:`from_state` of ``meta["dedup"]`` (None: a checkpoint without dedup, this one)."""
        data = meta["dedup"]
        if data is None:
            return self
        if "current_used" in data:
            return type(self).from_state(data, dict(arrays))
        return type(self).from_dict(data)  # written before the tables were saved as arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> Deduplicator:
        """Rebuild from :meth:`to_state` output, from copies (ValueError if a table misfits its count)."""
        d = cls(window_ms=int(meta["window_ms"]))
        d._clock = EventClock.from_dict(meta["clock"])
        for name in ("current", "previous"):
            rows = np.array(
                arrays[name], np.int64
            )  # a copy: two engines restored from one state share nothing
            used = int(meta[f"{name}_used"])
            n = rows.shape[0] if rows.ndim == 2 else 0
            if (
                rows.ndim != 2
                or rows.shape[1] != 3
                or n < 2
                or n & (n - 1)
                or int(np.count_nonzero(rows[:, 0])) != used
            ):
                msg = f"dedup table {name!r} does not fit its count of {used} ids; the checkpoint is corrupt"
                raise ValueError(msg)
            table = SeenIds(capacity=2)
            table.rows, table.used = rows, used
            setattr(d, f"_{name}", table)
        d._current_since_ms = int(meta["current_since_ms"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deduplicator:
        """Rebuild from :meth:`to_dict` output (also from older checkpoints: id strings, no ``clock``)."""
        d = cls(window_ms=int(data["window_ms"]))
        if "clock" in data:
            d._clock = EventClock.from_dict(data["clock"])
        elif int(data["watermark_ms"]) != _NEVER:
            d._clock = EventClock.from_dict({**d._clock.to_dict(), "watermark_ms": int(data["watermark_ms"])})
        for name in ("current", "previous"):
            if f"{name}_hashed" in data:
                h1, h2, ts = data[f"{name}_hashed"]
                table = SeenIds.from_arrays(
                    np.array(h1, np.uint64), np.array(h2, np.uint64), np.array(ts, np.int64)
                )
            else:  # written when ids were kept as strings
                ids: dict[str, int] = dict(data[name])
                table = SeenIds.from_arrays(*hash_pairs(list(ids)), np.array(list(ids.values()), np.int64))
            setattr(d, f"_{name}", table)
        d._current_since_ms = int(data["current_since_ms"])
        return d


def duplicate_rejects(batch: EventBatch, duplicate: NDArray[np.bool_], window_ms: int) -> list[Reject]:
    """One ``duplicate`` reject per marked event of ``batch``, with its original bytes and place."""
    seconds = f"{window_ms / 1000:g}"
    return [
        Reject(
            raw=batch.record_bytes(i),
            reason="duplicate",
            detail=f"event_id {batch.text('event_id', i)!r} already seen within {seconds} s of event time",
            source=batch.source,
            partition=int(batch.partition[i]),
            offset=int(batch.offset[i]),
        )
        for i in np.flatnonzero(duplicate).tolist()
    ]
