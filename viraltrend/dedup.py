"""Dropping repeated ``event_id`` values within an event-time window.

An event is a duplicate when an earlier *kept* event carried the same ``event_id`` and its
``ts`` is within ``window_ms`` of the dedup watermark (the running maximum ``ts`` of
every event seen so far, in arrival order).  That rule depends only on the sequence of
events, never on how it is split into batches, so a replay is deterministic.  Events
without an ``event_id`` are never duplicates.

The work per batch is C-level ``map``/``zip`` over dicts.  Memory is bounded by two
generations: ids go into ``current``; once ``current`` has covered a whole window of the
watermark it becomes ``previous`` and the old ``previous`` is dropped.  Every id dropped that
way was stored with a ``ts`` at most the watermark at its insertion, which is now more than a
window ago, so it could never match again: the rotation changes no decision.

Examples
--------
>>> d = Deduplicator(window_ms=1000)
>>> d.filter(["a", "b", "a", None], np.array([0, 10, 20, 30])).tolist()
[True, True, False, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat

import numpy as np
from numpy.typing import NDArray

__all__ = ["Deduplicator"]

_NEVER = -(2**62)


class Deduplicator:
    """Remembers kept ``event_id`` values and their ``ts`` for ``window_ms`` of event time."""

    def __init__(self, *, window_ms: int) -> None:
        if window_ms <= 0:
            msg = f"window_ms must be > 0, got {window_ms}"
            raise ValueError(msg)
        self.window_ms = int(window_ms)
        self.watermark_ms = _NEVER
        self._current: dict[str | None, int] = {}
        self._previous: dict[str | None, int] = {}
        self._current_since_ms = _NEVER  # watermark when ``current`` was started

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def filter(self, event_id: Sequence[str | None], ts_ms: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Return ``keep: bool[n]``, False for duplicates, and remember the kept ids."""
        n = len(event_id)
        if n == 0:
            return np.ones(0, np.bool_)
        ts = np.asarray(ts_ms, np.int64)
        running = np.maximum.accumulate(np.maximum(ts, self.watermark_ms))
        horizon = running - self.window_ms
        prev_ts = np.fromiter(map(self._current.get, event_id, repeat(_NEVER)), np.int64, n)
        if self._previous:
            older = np.fromiter(map(self._previous.get, event_id, repeat(_NEVER)), np.int64, n)
            prev_ts = np.maximum(prev_ts, older)
        has_id = np.fromiter(map(bool, event_id), np.bool_, n)
        distinct = set(event_id)
        distinct.discard(None)
        if len(distinct) < int(has_id.sum()):
            dup = self._resolve_chains(event_id, ts, horizon, prev_ts, has_id)  # an id repeats in the batch
        else:
            dup = has_id & (prev_ts >= horizon)
        keep = ~dup
        remember = keep & has_id
        self._current.update(zip(compress(event_id, remember.tolist()), ts[remember].tolist(), strict=True))
        self.watermark_ms = int(running[-1])
        if self._current_since_ms == _NEVER:
            self._current_since_ms = int(running[0])
        elif self.watermark_ms - self._current_since_ms > self.window_ms:
            self._previous, self._current = self._current, {}
            self._current_since_ms = self.watermark_ms
        return keep

    def _resolve_chains(
        self,
        event_id: Sequence[str | None],
        ts: NDArray[np.int64],
        horizon: NDArray[np.int64],
        prev_ts: NDArray[np.int64],
        has_id: NDArray[np.bool_],
    ) -> NDArray[np.bool_]:
        """Exact rule for ids repeated inside one batch: compare with the last *kept* copy."""
        n = len(event_id)
        dup = has_id & (prev_ts >= horizon)
        first_of = dict(zip(reversed(event_id), range(n - 1, -1, -1), strict=True))
        first = np.fromiter(map(first_of.__getitem__, event_id), np.int64, n)
        repeated = {event_id[i] for i in np.flatnonzero(has_id & (first < np.arange(n))).tolist()}
        in_repeated = np.fromiter(map(repeated.__contains__, event_id), np.bool_, n)
        last_kept: dict[str | None, int] = {}
        for i in np.flatnonzero(in_repeated).tolist():
            eid = event_id[i]
            before = last_kept.get(eid, int(prev_ts[i]))
            if before >= horizon[i]:
                dup[i] = True
            else:
                dup[i] = False
                last_kept[eid] = int(ts[i])
        return dup

    def to_dict(self) -> dict[str, object]:
        """Plain data for a checkpoint."""
        return {
            "window_ms": self.window_ms,
            "watermark_ms": self.watermark_ms,
            "current": self._current,
            "previous": self._previous,
            "current_since_ms": self._current_since_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Deduplicator:
        """Rebuild from :meth:`to_dict` output."""
        d = cls(window_ms=int(data["window_ms"]))  # type: ignore[call-overload]
        d.watermark_ms = int(data["watermark_ms"])  # type: ignore[call-overload]
        d._current = dict(data["current"])  # type: ignore[call-overload]
        d._previous = dict(data["previous"])  # type: ignore[call-overload]
        d._current_since_ms = int(data["current_since_ms"])  # type: ignore[call-overload]
        return d
