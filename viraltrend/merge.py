"""One global "Deals of the day" board from the boards of several partitions.

State is kept per input partition (a product's events all land on one partition), so each
partition's engine runs its own board.  The published board is their merge: all partition
members ranked by (score desc, product_id), taken greedily under the global size and the
diversity caps.  The merge is a pure function of the partition boards, so any number of
workers holding the same partitions' state publish the same board.

With a single partition the merge is the identity, and the service passes that engine's
decisions through unchanged (so a replay of a one-partition topic gives byte-identical
decisions).  With several, the merger turns membership and rank changes of the merged board
into ``promote`` / ``demote`` / ``update`` messages, reusing the partition engine's features
and reasons for the product when it has them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from viraltrend.board import Member
from viraltrend.config import BoardConfig
from viraltrend.messages import BoardSnapshot, Decision, DecisionAction, Message, board_snapshot, decision

__all__ = ["BoardMerger"]


@dataclass(slots=True)
class BoardMerger:
    """Keeps the published global board and emits its changes."""

    cfg: BoardConfig
    current: dict[str, Member] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)

    def select(self, members: Iterable[Member]) -> list[Member]:
        """The global board: best first, within size and diversity caps."""
        chosen: list[Member] = []
        per_seller: dict[str, int] = {}
        per_category: dict[str, int] = {}
        for m in sorted(members, key=lambda m: (-m.score, m.product_id)):
            if len(chosen) >= self.cfg.size:
                break
            if m.seller_id is not None and per_seller.get(m.seller_id, 0) >= self.cfg.max_per_seller:
                continue
            if m.category is not None and per_category.get(m.category, 0) >= self.cfg.max_per_category:
                continue
            chosen.append(m)
            if m.seller_id is not None:
                per_seller[m.seller_id] = per_seller.get(m.seller_id, 0) + 1
            if m.category is not None:
                per_category[m.category] = per_category.get(m.category, 0) + 1
        return chosen

    def reset(self, members: Iterable[Member]) -> None:
        """Adopt the merge of ``members`` silently (after restoring state from checkpoints)."""
        chosen = self.select(members)
        self.current = {m.product_id: m for m in chosen}
        self.ranks = {m.product_id: r for r, m in enumerate(chosen, start=1)}

    def adopt(self, snapshot: BoardSnapshot) -> None:
        """Take the board of a published ``board`` message as the current one (a new publisher).

        The next :meth:`merge` then publishes every change since that board, including those the
        previous publisher decided but never published before it failed over.
        """
        items = sorted(snapshot.entries, key=lambda item: item.rank)
        self.current = {
            item.product_id: Member(
                slot=-1,
                product_id=item.product_id,
                seller_id=item.seller_id,
                category=item.category,
                score=item.score,
                since_ms=item.since_ts,
            )
            for item in items
        }
        self.ranks = {item.product_id: item.rank for item in items}

    def merge(self, members: Iterable[Member], event_ts: int, latest: dict[str, Decision]) -> list[Message]:
        """Merge, and return the messages that turn the previous global board into the new one.

        ``latest`` maps product ids to the last per-product message a partition engine emitted
        in this round (its features and reasons are reused).  Ends with a board snapshot when
        anything changed.
        """
        chosen = self.select(members)
        new = {m.product_id: m for m in chosen}
        out: list[Message] = []
        for pid in sorted(set(self.current) - set(new)):
            m = self.current[pid]
            src = latest.get(pid)
            reasons = src.reasons if src is not None and src.action == "demote" else ["displaced_in_merge"]
            out.append(self._message("demote", m, None, event_ts, reasons, src))
        for rank, m in enumerate(chosen, start=1):
            src = latest.get(m.product_id)
            if m.product_id not in self.current:
                reasons = (
                    src.reasons if src is not None and src.action == "promote" else ["entered_merged_board"]
                )
                out.append(self._message("promote", m, rank, event_ts, reasons, src))
            elif self.ranks.get(m.product_id) != rank or (src is not None and src.action == "update"):
                out.append(self._message("update", m, rank, event_ts, ["rank_changed"], src))
        self.current = new
        self.ranks = {m.product_id: r for r, m in enumerate(chosen, start=1)}
        if out:
            out.append(self.snapshot(event_ts))
        return out

    def snapshot(self, event_ts: int) -> BoardSnapshot:
        """The merged board as a ``board`` message."""
        ranked = sorted(self.current.items(), key=lambda kv: self.ranks[kv[0]])
        return board_snapshot(event_ts, ((self.ranks[pid], m) for pid, m in ranked))

    @staticmethod
    def _message(
        action: DecisionAction,
        m: Member,
        rank: int | None,
        event_ts: int,
        reasons: list[str],
        src: Decision | None,
    ) -> Decision:
        return decision(
            action,
            product_id=m.product_id,
            seller_id=m.seller_id,
            category=m.category,
            rank=rank,
            score=m.score,
            event_ts=src.event_ts if src is not None else event_ts,
            reasons=reasons,
            features=src.features if src is not None else {},
        )
