"""Dropping repeated ``event_id`` values within an event-time window.

An event is a duplicate when an earlier *kept* event carried the same ``event_id`` and its
``ts`` is within ``window_ms`` of the dedup watermark (the running maximum ``ts`` of
every event seen so far, in arrival order).  That rule depends only on the sequence of
events, never on how it is split into batches, so a replay is deterministic.  Events
without an ``event_id`` are never duplicates.

The work per batch is C-level ``map``/``zip`` over dicts; ids older than the window are
pruned whenever the table has doubled since the last prune (amortised O(1) per event).

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
        self._seen: dict[str | None, int] = {}
        self._prune_at = 1 << 16

    def __len__(self) -> int:
        return len(self._seen)

    def filter(self, event_id: Sequence[str | None], ts_ms: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Return ``keep: bool[n]``, False for duplicates, and remember the kept ids."""
        n = len(event_id)
        if n == 0:
            return np.ones(0, np.bool_)
        ts = np.asarray(ts_ms, np.int64)
        running = np.maximum.accumulate(np.maximum(ts, self.watermark_ms))
        horizon = running - self.window_ms
        prev_ts = np.fromiter(map(self._seen.get, event_id, repeat(_NEVER)), np.int64, n)
        has_id = np.fromiter(map(bool, event_id), np.bool_, n)
        distinct = set(event_id)
        distinct.discard(None)
        if len(distinct) < int(has_id.sum()):
            dup = self._resolve_chains(event_id, ts, horizon, prev_ts, has_id)  # an id repeats in the batch
        else:
            dup = has_id & (prev_ts >= horizon)
        keep = ~dup
        remember = keep & has_id
        self._seen.update(zip(compress(event_id, remember.tolist()), ts[remember].tolist(), strict=True))
        self.watermark_ms = int(running[-1])
        if len(self._seen) >= self._prune_at:
            self._prune()
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

    def _prune(self) -> None:
        cutoff = self.watermark_ms - self.window_ms
        self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}
        self._prune_at = max(1 << 16, 2 * len(self._seen))

    def to_dict(self) -> dict[str, object]:
        """Plain data for a checkpoint."""
        return {"window_ms": self.window_ms, "watermark_ms": self.watermark_ms, "seen": self._seen}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Deduplicator:
        """Rebuild from :meth:`to_dict` output."""
        d = cls(window_ms=int(data["window_ms"]))  # type: ignore[call-overload]
        d.watermark_ms = int(data["watermark_ms"])  # type: ignore[call-overload]
        d._seen = dict(data["seen"])  # type: ignore[call-overload]
        return d
