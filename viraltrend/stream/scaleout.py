"""Scale-out: one board across the workers of a group (candidates shared, merged by the publisher).

With several input partitions, each worker shares its partitions' boards on the candidates
topic (:mod:`viraltrend.stream.candidates`) and publishes only ``block`` decisions; the worker
holding input partition 0 merges every partition's board into the one global board
(:mod:`viraltrend.merge`) and publishes its promote / demote / update messages and snapshots.
With one input partition none of this runs: the engine's decisions pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from viraltrend.board import Member
from viraltrend.config import Config
from viraltrend.engine import Engine
from viraltrend.merge import BoardMerger
from viraltrend.messages import BOARD_KEY, BoardSnapshot, Decision, Message, decode_board_snapshot
from viraltrend.stream.candidates import (
    CandidatesFollower,
    PartitionCandidates,
    encode_candidates,
    last_value,
)
from viraltrend.stream.kafka_io import KafkaSink

__all__ = ["BOARD_KEY", "BoardShare"]

log = logging.getLogger("viraltrend.service")


class BoardShare:
    """A worker's part in the one board: its candidates, and the merge when it publishes.

    ``engines`` is the worker's live map of partition -> engine (owned by
    :class:`~viraltrend.stream.partitions.Partitions`); :attr:`follower` is set by the loop
    when it connects.
    """

    def __init__(self, cfg: Config, engines: Mapping[int, Engine], client_options: dict[str, Any]) -> None:
        self.cfg = cfg
        self.engines = engines
        self._client_options = client_options
        self.merger = BoardMerger(cfg.board)
        self.follower: CandidatesFollower | None = None
        self._published: dict[int, tuple[Any, ...]] = {}  # partition -> board signature last shared
        self._round: dict[int, dict[str, Decision]] = {}  # partition -> decisions since its last share
        self._snapshot_wm = 0  # event time of the last merged snapshot
        self._snapshot_sig: tuple[Any, ...] | None = None  # what the last merged snapshot showed
        self.merged_wm = 0  # event time of the last merge: the newest watermark of any partition
        self.announce = False  # publish a board snapshot at the next merge (just became publisher)

    @property
    def is_publisher(self) -> bool:
        """Whether this worker publishes the board: it holds input partition 0."""
        return 0 in self.engines

    # ------------------------------------------------------------------ lifecycle
    def assigned(self, partitions: Iterable[int], *, was_publisher: bool, n_partitions: int) -> None:
        """After a restore: start the partitions' rounds; a new publisher adopts the published board."""
        for p in partitions:
            self._published.pop(p, None)
            self._round[p] = {}
        if n_partitions > 1 and self.is_publisher and not was_publisher:
            self.announce = True
            log.info("holding input partition 0: this worker now publishes the merged board")
            self._adopt_published()
        elif not self.is_publisher:
            self.merger.reset(self.all_members())
        # (a publisher that stays one keeps its merger: it holds what this worker published)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what was kept for partitions this worker no longer holds."""
        for p in partitions:
            self._round.pop(p, None)
            self._published.pop(p, None)

    def _adopt_published(self) -> None:
        """A new board publisher starts from the last board published on the output topic.

        Not from the merge of the restored boards: the changes the previous publisher decided
        but never published before it failed over would then never be published (issue 12,
        item 5).  With no snapshot on the topic, the first merge promotes every member.
        """
        k = self.cfg.kafka
        value = last_value(k.bootstrap_servers, k.output_topic, BOARD_KEY, self._client_options)
        self.merger.reset([])
        if value is None:
            log.info("no board snapshot on %s: the first merge publishes the whole board", k.output_topic)
            return
        try:
            self.merger.adopt(decode_board_snapshot(value))
        except ValueError as exc:
            log.warning(
                "the last board snapshot on %s is unreadable (%s); starting from an empty board",
                k.output_topic,
                exc,
            )
            self.merger.reset([])
            return
        log.info(
            "adopted the last published board (%d products) from %s", len(self.merger.current), k.output_topic
        )

    # ------------------------------------------------------------------ one batch
    def record(self, partition: int, messages: list[Message]) -> None:
        """Keep ``partition``'s per-product decisions until they are shared with the publisher."""
        round_msgs = self._round.setdefault(partition, {})
        for m in messages:
            if isinstance(m, Decision):
                round_msgs[m.product_id] = m

    def turn(
        self, messages: list[Message], touched: set[int], sink: KafkaSink, offsets: Mapping[int, int]
    ) -> list[Message]:
        """The batch's scale-out turn: share the touched boards; the messages this worker publishes."""
        latest = {pid: m for p in touched for pid, m in self._round[p].items()}
        self.share(touched, sink, offsets)
        out: list[Message] = [m for m in messages if isinstance(m, Decision) and m.action == "block"]
        if self.is_publisher:
            out += self.merge(latest)
        return out

    def idle_snapshot(self) -> BoardSnapshot | None:
        """Caught up: the publisher's snapshot with the newest event time, the final board.

        Published when it differs from the last snapshot published: a newer event time, or a
        merged board that changed without any message.  A partition behind the newest watermark
        (one a new owner replays after a failover) changes its members' scores at its later
        ticks without moving the merged event time, and a score that moves by less than
        ``board.update_min_score_delta`` at an unchanged rank is no ``update``: the last snapshot
        would otherwise keep the score of an earlier tick, and the published board would not be
        the one every partition's state gives (the one the shutdown publishes).
        """
        if not self.is_publisher:
            return None
        if self._signature(self.merged_wm) != self._snapshot_sig:  # the signature holds the event time
            return self._snapshot(self.merged_wm)
        return None

    def _signature(self, wm: int) -> tuple[Any, ...]:
        """What a merged snapshot at ``wm`` shows (the members' values, not the live objects)."""
        items = sorted(self.merger.current.items(), key=lambda kv: self.merger.ranks[kv[0]])
        return (wm, *((pid, self.merger.ranks[pid], m.score, m.since_ms) for pid, m in items))

    def _snapshot(self, wm: int) -> BoardSnapshot:
        """The merged board as a snapshot at ``wm``, remembered as the last one published."""
        self._snapshot_wm = wm
        self._snapshot_sig = self._signature(wm)
        return self.merger.snapshot(wm)

    def all_members(self) -> list[Member]:
        """Members of every partition's board: this worker's own, and the others' latest candidates."""
        members = [m for e in self.engines.values() for m in e.board.members.values()]
        if self.follower is not None:
            for p, pc in self.follower.latest.items():
                if p not in self.engines:
                    members.extend(pc.members)
        return members

    def share(
        self, partitions: Iterable[int], sink: KafkaSink, offsets: Mapping[int, int], *, force: bool = False
    ) -> None:
        """Publish the boards of ``partitions`` that changed to the candidates topic (keyed by partition)."""
        for p in sorted(partitions):
            engine = self.engines.get(p)
            if engine is None or p not in offsets:
                continue
            members = engine.board.ranked()
            signature = (engine.clock.watermark_ms, *((m.product_id, m.score, m.since_ms) for m in members))
            if not force and signature == self._published.get(p) and not self._round.get(p):
                continue
            record = PartitionCandidates(
                partition=p,
                offset=offsets[p],
                watermark_ms=engine.clock.watermark_ms,
                members=members,
                messages=self._round.get(p, {}),
            )
            sink.send(self.topic, str(p).encode(), encode_candidates(record))
            self._published[p] = signature
            self._round[p] = {}

    @property
    def topic(self) -> str:
        """Where workers share their partitions' boards."""
        return self.cfg.kafka.candidates_topic or f"{self.cfg.kafka.group_id}.candidates"

    def merge(self, latest: dict[str, Decision]) -> list[Message]:
        """The publisher's turn: merge every partition's board and return the changes (and snapshot)."""
        remote: dict[str, Decision] = self.follower.drain_messages() if self.follower is not None else {}
        wms = [e.clock.watermark_ms for e in self.engines.values() if e.clock.watermark_ms is not None]
        if self.follower is not None:
            wms += [
                pc.watermark_ms
                for p, pc in self.follower.latest.items()
                if p not in self.engines and pc.watermark_ms is not None
            ]
        wm = self.merged_wm = max(wms, default=0)
        merged = self.merger.merge(self.all_members(), wm, {**remote, **latest})
        every_ms = self.cfg.board.snapshot_interval_s * 1000
        if not merged and (self.announce or wm - self._snapshot_wm >= every_ms):
            merged = [self.merger.snapshot(wm)]  # periodically, so subscribers see event time move
        if merged:  # ends with the snapshot of the merged board
            self._snapshot_wm = wm
            self._snapshot_sig = self._signature(wm)
        self.announce = False
        return merged

    def final_board(self) -> list[Message]:
        """On shutdown, the publisher's last changes and snapshot of the merged board."""
        if not self.is_publisher:
            return []
        if self.follower is not None:
            self.follower.poll(timeout_ms=200)
        out = [m for m in self.merge({}) if isinstance(m, Decision)]
        return [*out, self._snapshot(self.merged_wm)]
