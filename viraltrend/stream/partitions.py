"""Partition lifecycle: the input partitions a worker holds, one engine each.

A partition's life in a worker: **assign** (the client's rebalance callback only pauses it) ->
**restore** its checkpoint on the loop's thread, outside the callback whose thread also sends
the group heartbeats (a restore longer than the session timeout would get the worker evicted)
-> **seek** to the checkpoint's offsets and **resume** (the source does both) -> ... ->
**revoke**: checkpoint and commit (the loop's commit path), then :meth:`Partitions.drop`.
Each partition remembers the offset of its last checkpoint and its *epoch*, the consumer-group
generation it was assigned in, which fences checkpoints of a superseded owner (see
:mod:`viraltrend.stream.changelog`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from viraltrend.config import Config
from viraltrend.engine import Engine
from viraltrend.events import EventBatch, Reject
from viraltrend.metrics import Metrics
from viraltrend.stream.blocklist import BlocklistFollower
from viraltrend.stream.checkpoint import StateStore

__all__ = ["RESTORE_DELAY_ENV", "Partitions"]

log = logging.getLogger("viraltrend.service")
#: Fault injection (the fault suite): seconds added to each partition's restore from a checkpoint.
RESTORE_DELAY_ENV = "VTFAULT_RESTORE_DELAY_S"  # not VIRALTREND_*: those are config keys


@dataclass(slots=True)
class Partitions:
    """The input partitions this worker holds: their engines, checkpoint offsets and epochs."""

    cfg: Config
    metrics: Metrics
    engines: dict[int, Engine] = field(default_factory=dict)
    checkpointed: dict[int, int] = field(default_factory=dict)  # offset of the last checkpoint
    epochs: dict[int, int] = field(default_factory=dict)  # group generation it was assigned in
    fresh: set[int] = field(default_factory=set)  # started without a checkpoint, before their first record

    def restore(
        self,
        partitions: Iterable[int],
        store: StateStore,
        *,
        generation: int | None,
        blocklist: BlocklistFollower | None,
    ) -> dict[int, int]:
        """Restore each partition's checkpoint (or start it fresh); return the offsets to seek to."""
        delay_s = float(os.environ.get(RESTORE_DELAY_ENV) or 0)
        seek: dict[int, int] = {}
        for p in sorted(partitions):
            t0 = time.perf_counter()
            self.epochs[p] = generation or 0
            loaded = store.load(p)
            if loaded is None:
                self.engines[p] = self._new_engine(blocklist)
                self.checkpointed[p] = 0
                self.fresh.add(p)  # check_fresh_start() warns if the group had read past offset 0
                log.info("partition %d: no checkpoint in %s, starting fresh", p, store.describe)
                continue
            arrays, meta, offsets = loaded
            self.engines[p] = Engine.restore(self.cfg, arrays, meta, copy=False)  # the store's own arrays
            if delay_s > 0:  # fault injection: a restore as long as one of a few million products
                log.warning(
                    "partition %d: %s=%g: the restore lasts %g s longer",
                    p,
                    RESTORE_DELAY_ENV,
                    delay_s,
                    delay_s,
                )
                time.sleep(delay_s)
            if blocklist is not None:
                blocklist.apply(self.engines[p])
            if p in offsets:
                seek[p] = offsets[p]
            self.checkpointed[p] = offsets.get(p, 0)
            self.metrics.restore_duration.observe(time.perf_counter() - t0)
            log.info("partition %d: restored from %s at offset %s", p, store.describe, offsets.get(p))
        return seek

    def engine(self, partition: int, blocklist: BlocklistFollower | None) -> Engine:
        """The engine of ``partition`` (a fresh one if it was assigned without a hook call)."""
        got = self.engines.get(partition)
        if got is None:  # should not happen: every assignment goes through restore()
            got = self.engines[partition] = self._new_engine(blocklist)
        return got

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (revoked, lost, or rolled back)."""
        for p in partitions:
            self.engines.pop(p, None)
            self.checkpointed.pop(p, None)
            self.epochs.pop(p, None)
            self.fresh.discard(p)

    def check_fresh_start(self, batch: EventBatch, rejects: list[Reject], store: StateStore) -> None:
        """Warn loudly when a partition without a checkpoint starts reading past offset 0.

        Then the group had committed offsets (or retention removed the log's start), so the
        state starts empty in the middle of the stream: the events before are in no state.
        """
        for p in sorted(self.fresh):
            offsets = [int(o) for o in batch.offset[batch.partition == p][:1]]
            offsets += [r.offset for r in rejects if r.partition == p][:1]
            if not offsets:
                continue
            self.fresh.discard(p)
            first = min(offsets)
            if first > 0:
                log.warning(
                    "partition %d: NO CHECKPOINT in %s, yet reading starts at offset %d (the group's "
                    "committed offset, or the log's start): the state of this partition starts EMPTY "
                    "there and holds none of the %d events before it. If a checkpoint was expected "
                    "(was it deleted, or did --checkpoint-store / --checkpoint-dir change?), stop now "
                    "and restore it; to rebuild from the beginning, reset the group's offsets to 0.",
                    p,
                    store.describe,
                    first,
                    first,
                )

    def _new_engine(self, blocklist: BlocklistFollower | None) -> Engine:
        engine = Engine(self.cfg)
        if blocklist is not None:
            blocklist.apply(engine)
        return engine
