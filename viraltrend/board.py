"""The "Deals of the day" board policy: who enters, who stays, who leaves, and why.

At every event-time tick the engine hands the board its scored candidates.  The board
applies, in this order:

1. **demote** members whose score fell below ``demote_threshold`` (hysteresis: the exit bar
   is lower than the entry bar) once they have stayed ``min_dwell_s``;
2. **block** trending products that the trust guard refuses (once per trending episode); a
   blocked product stays off the board for ``block_hold_s`` even if the guard's figures dip back
   under their thresholds at the next tick (a block is a verdict, not a per-tick reading);
   a *soft* refusal (too few distinct users yet, see :func:`~viraltrend.trust.soft_refusal`)
   only holds the product back, and becomes a block if it still holds after ``confirm_s``;
3. **pending**: a product above ``promote_threshold`` whose momentum holds (its shortest
   rate is not fading, ``momentum >= min_momentum``) waits ``confirm_s`` of event time,
   so one-off spikes that fade never enter.  A candidate the *warm* online model scored with
   probability at least ``fast_track_probability`` waits ``model_confirm_s``
   (``[model] confirm_s``) instead: the wait exists to see whether growth is sustained, and
   the model is trained on "engagement over the next horizon", so a confident score may carry
   that evidence already.  The rule (and a cold model, whose fallback is the rule) always
   waits ``confirm_s``; the momentum check applies to both.  ``[model] confirm_s`` defaults to
   ``board.confirm_s`` (no fast track): the detection benchmark found that the model's score
   does not tell a one-off spike's first minute from a viral onset's;
4. **promote** confirmed products, best first, while the board has room and the diversity
   caps (``max_per_seller``, ``max_per_category``) allow; when full, a candidate displaces
   the weakest member that has served its dwell if it beats it by ``replace_margin``;
5. **update** members whose rank changed or whose score moved by ``update_min_score_delta``.

Every change becomes a decision message of ``shared/contract/deals.md``.  Ties are broken
by ``product_id`` so the board is a deterministic function of the scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from viraltrend.config import BoardConfig
from viraltrend.messages import BoardSnapshot, Decision, DecisionAction, board_snapshot, decision
from viraltrend.trust import evicts, soft_refusal

__all__ = ["Board", "Candidates", "Member"]


@dataclass(slots=True)
class Candidates:
    """Scored candidates at one tick: parallel columns of length m."""

    slot: NDArray[np.int64]
    product_id: list[str]
    seller_id: list[str | None]
    category: list[str | None]
    score: NDArray[np.float64]
    features: dict[str, NDArray[np.float64]]
    scored_by: str = "rule"
    explain: Callable[[int], list[str]] | None = None  # the model's top contributions, when it scored
    probability: NDArray[np.float64] | None = None  # float64[m], the warm model's probability
    ready: NDArray[np.bool_] | None = None  # bool[m], the sequential detector's verdict (viraltrend.detect)

    def feature_dict(self, i: int) -> dict[str, float]:
        """The features of candidate ``i`` as plain floats (6 significant digits)."""
        return {k: float(f"{float(v[i]):.6g}") for k, v in self.features.items()}


@dataclass(slots=True)
class Member:
    """A product on the board."""

    slot: int
    product_id: str
    seller_id: str | None
    category: str | None
    score: float
    since_ms: int
    rank: int = 0
    emitted_rank: int = 0
    emitted_score: float = -1.0


@dataclass(slots=True)
class Board:
    """The board state and its policy.  See the module docstring for the rules."""

    cfg: BoardConfig
    trend_label: str = "5m"
    guard: Callable[[Candidates, int], list[str] | None] = field(default=lambda cand, i: None)
    members: dict[int, Member] = field(default_factory=dict)
    pending: dict[int, int] = field(default_factory=dict)
    held: dict[int, int] = field(default_factory=dict)  # slot -> since when a soft refusal holds it back
    blocked_shown: set[int] = field(default_factory=set)
    blocked_until: dict[int, int] = field(default_factory=dict)  # slot -> event time its block ends
    model_confirm_s: float | None = None  # [model] confirm_s; None: every candidate waits confirm_s
    fast_track_probability: float = 0.0  # [model] fast_track_probability
    sequential: bool = False  # detect.method == "sequential": promote on the detector's verdict, no wait

    def confirm_ms(self, cand: Candidates, i: int) -> int:
        """How long candidate ``i`` must stay pending (ms of event time) before it may be promoted.

        ``model_confirm_s`` if the warm model scored it (``scored_by == "model"``) with
        probability >= ``fast_track_probability``, else ``cfg.confirm_s``.  Read at every tick,
        so a fast-tracked candidate whose probability drops waits the full ``confirm_s``.
        """
        fast = (
            self.model_confirm_s is not None
            and cand.scored_by == "model"
            and cand.probability is not None
            and float(cand.probability[i]) >= self.fast_track_probability
        )
        wait_s = self.model_confirm_s if fast and self.model_confirm_s is not None else self.cfg.confirm_s
        return round(wait_s * 1000)

    def watched_slots(self) -> list[int]:
        """Slots the engine must score at every tick (members, pending, held, block-held), sorted."""
        return sorted(set(self.members) | set(self.pending) | set(self.held) | set(self.blocked_until))

    def ranked(self) -> list[Member]:
        """Members best first (score, then product_id)."""
        return sorted(self.members.values(), key=lambda m: (-m.score, m.product_id))

    def step(self, now_ms: int, cand: Candidates) -> list[Decision]:
        """Apply the policy at event time ``now_ms`` and return the decision messages."""
        c = self.cfg
        demotes: list[Decision] = []
        blocks: list[Decision] = []
        promotes: list[Decision] = []
        for ended in [s for s, until in self.blocked_until.items() if until <= now_ms]:
            del self.blocked_until[ended]  # no longer watched
        index = {int(s): i for i, s in enumerate(cand.slot.tolist())}
        score = cand.score
        for slot, m in list(self.members.items()):
            i = index.get(slot)
            if i is None:
                continue
            m.score = float(score[i])
            refused = self.guard(cand, i) if m.score >= c.demote_threshold else None
            if refused is not None and evicts(refused):
                del self.members[slot]  # blocked while on the board (a live blocklist change, a ring exposed)
                blocks.append(self._block(now_ms, cand, i, refused))
            elif m.score < c.demote_threshold and now_ms - m.since_ms >= c.min_dwell_s * 1000:
                del self.members[slot]
                demotes.append(
                    self._message("demote", now_ms, cand, i, None, [f"score_below_{c.demote_threshold:g}"])
                )
        hot_mask = score >= c.demote_threshold
        if self.sequential and cand.ready is not None:
            hot_mask = hot_mask | cand.ready
        hot = np.flatnonzero(hot_mask).tolist()
        hot_set = set(hot)
        for slot in [s for s in self.blocked_shown if index.get(s) not in hot_set and s in index]:
            self.blocked_shown.discard(slot)
        if self.sequential and cand.ready is not None:
            eligible = self._ready(now_ms, cand, cand.ready, blocks)
        else:
            eligible = self._confirmed(now_ms, cand, index, hot, blocks)
        eligible.sort(key=lambda i: (-score[i], cand.product_id[i]))
        for i in eligible:
            self._try_enter(now_ms, cand, i, demotes, promotes)
        blocks.sort(key=lambda m: m.product_id)
        return demotes + blocks + promotes + self._rerank(now_ms, cand, index, promotes)

    def _block(self, now_ms: int, cand: Candidates, i: int, reasons: list[str]) -> Decision:
        """Block candidate ``i``: shown once per trending episode, off the board for ``block_hold_s``."""
        slot = int(cand.slot[i])
        self.blocked_shown.add(slot)
        if self.cfg.block_hold_s > 0:
            self.blocked_until[slot] = now_ms + round(self.cfg.block_hold_s * 1000)
        return self._message("block", now_ms, cand, i, None, reasons)

    def is_block_held(self, slot: int, now_ms: int) -> bool:
        """Whether ``slot`` was blocked less than ``block_hold_s`` ago (it may not be promoted)."""
        return self.blocked_until.get(slot, -1) > now_ms

    def _ready(
        self, now_ms: int, cand: Candidates, ready: NDArray[np.bool_], blocks: list[Decision]
    ) -> list[int]:
        """Sequential mode: candidates the detector calls ready and the guard accepts, at once.

        A hard refusal of a ready product becomes a ``block`` (once per trending episode); a soft
        one (too few distinct users) only keeps it off the board.
        """
        eligible = []
        for i in np.flatnonzero(ready).tolist():
            slot = int(cand.slot[i])
            if slot in self.members or self.is_block_held(slot, now_ms):
                continue
            refused = self.guard(cand, i)
            if refused is None:
                eligible.append(i)
            elif not soft_refusal(refused) and slot not in self.blocked_shown:
                blocks.append(self._block(now_ms, cand, i, [*refused, *self._why_trending(cand, i)]))
        return eligible

    def _confirmed(
        self, now_ms: int, cand: Candidates, index: dict[int, int], hot: list[int], blocks: list[Decision]
    ) -> list[int]:
        """Confirm mode: candidates that held above ``promote_threshold`` for ``confirm_s``."""
        c = self.cfg
        score = cand.score
        momentum = cand.features.get("momentum", np.ones_like(score))
        for slot in [s for s in self.held if s not in index or score[index[s]] < c.promote_threshold]:
            del self.held[slot]
        for slot in [s for s in self.pending if s in index]:
            i = index[slot]
            if score[i] < c.promote_threshold or momentum[i] < c.min_momentum:
                del self.pending[slot]
        for i in hot:
            slot = int(cand.slot[i])
            if slot in self.members or score[i] < c.promote_threshold or self.is_block_held(slot, now_ms):
                continue
            refused = self.guard(cand, i)
            if refused is not None:
                self.pending.pop(slot, None)
                soft = soft_refusal(refused)
                held_since = self.held.setdefault(slot, now_ms)
                if slot not in self.blocked_shown and (not soft or now_ms - held_since >= c.confirm_s * 1000):
                    blocks.append(self._block(now_ms, cand, i, [*refused, *self._why_trending(cand, i)]))
                continue
            self.held.pop(slot, None)
            if momentum[i] >= c.min_momentum:
                self.pending.setdefault(slot, now_ms)
        return [
            index[s]
            for s, since in self.pending.items()
            if s in index and now_ms - since >= self.confirm_ms(cand, index[s])
        ]

    def _try_enter(
        self, now_ms: int, cand: Candidates, i: int, demotes: list[Decision], promotes: list[Decision]
    ) -> None:
        c = self.cfg
        out: Member | None = None
        if len(self.members) >= c.size:
            served = [m for m in self.members.values() if now_ms - m.since_ms >= c.min_dwell_s * 1000]
            if not served:
                return
            out = min(served, key=lambda m: (m.score, m.product_id))
            if cand.score[i] <= out.score + c.replace_margin:
                return
        if not self._diversity_ok(cand.seller_id[i], cand.category[i], out):
            return
        slot = int(cand.slot[i])
        if out is not None:
            del self.members[out.slot]
            reasons = ["displaced_by_higher_score", f"replaced_by_{cand.product_id[i]}"]
            demotes.append(self._member_message("demote", now_ms, out, reasons))
        self.pending.pop(slot, None)
        self.members[slot] = Member(
            slot, cand.product_id[i], cand.seller_id[i], cand.category[i], float(cand.score[i]), now_ms
        )
        reasons = self._why_trending(cand, i)
        wait_ms = self.confirm_ms(cand, i)
        if wait_ms < round(c.confirm_s * 1000):
            reasons.append(f"fast_track_confirm_{wait_ms / 1000:g}s")  # the model's shorter wait
        promotes.append(self._message("promote", now_ms, cand, i, 0, reasons))

    def _diversity_ok(self, seller: str | None, category: str | None, leaving: Member | None) -> bool:
        stay = [m for m in self.members.values() if m is not leaving]
        if seller is not None and sum(m.seller_id == seller for m in stay) >= self.cfg.max_per_seller:
            return False
        return category is None or sum(m.category == category for m in stay) < self.cfg.max_per_category

    def _rerank(
        self, now_ms: int, cand: Candidates, index: dict[int, int], promotes: list[Decision]
    ) -> list[Decision]:
        new = {msg.product_id: msg for msg in promotes}
        updates: list[Decision] = []
        for rank, m in enumerate(self.ranked(), start=1):
            m.rank = rank
            if m.product_id in new:
                new[m.product_id].rank = rank
            elif rank == m.emitted_rank and abs(m.score - m.emitted_score) < self.cfg.update_min_score_delta:
                continue
            else:
                i = index.get(m.slot)
                reasons = ["rank_changed"] if rank != m.emitted_rank else ["score_changed"]
                if i is None:
                    updates.append(self._member_message("update", now_ms, m, reasons))
                else:
                    updates.append(self._message("update", now_ms, cand, i, rank, reasons))
            m.emitted_rank, m.emitted_score = rank, m.score
        return updates

    def _why_trending(self, cand: Candidates, i: int) -> list[str]:
        f = cand.features
        reasons = [f"scored_by_{cand.scored_by}"]
        vouched = "model_vouched" in f and f["model_vouched"][i] > 0.0  # ready only because the model vouched
        if cand.explain is not None and (cand.scored_by == "model" or vouched):
            reasons += cand.explain(i)  # the model's largest contributions to its probability
        if vouched:
            reasons.append(f"model_vouched_p{float(f['model_p'][i]):.2f}")  # for its shape (detect.ready)
        if "lift" in f:
            reasons.append(f"lift_x{float(f['lift'][i]):.1f}")
        if "velocity" in f:
            reasons.append(f"velocity_{self.trend_label}_x{float(f['velocity'][i]):.1f}")
        if "z" in f:
            reasons.append(f"z_{float(f['z'][i]):.1f}")
        if self.sequential and "evidence" in f:
            reasons += [
                f"change_evidence_x{float(f['evidence'][i]):.2f}",
                f"change_lift_x{float(f['evidence_lift'][i]):g}",
                f"change_{float(f['change_s'][i]):.0f}s_ago",
                f"growth_z_{float(f['growth_z'][i]):.1f}",
            ]
            if "share_ratio" in f:  # recruitment: shares per view against the catalogue's
                reasons.append(f"shares_per_view_x{float(f['share_ratio'][i]):.1f}")
        return reasons

    def _message(
        self,
        action: DecisionAction,
        now_ms: int,
        cand: Candidates,
        i: int,
        rank: int | None,
        reasons: Sequence[str],
    ) -> Decision:
        return decision(
            action,
            product_id=cand.product_id[i],
            seller_id=cand.seller_id[i],
            category=cand.category[i],
            rank=rank,
            score=float(cand.score[i]),
            event_ts=now_ms,
            reasons=reasons,
            features=cand.feature_dict(i),
        )

    def _member_message(
        self, action: DecisionAction, now_ms: int, m: Member, reasons: Sequence[str]
    ) -> Decision:
        return decision(
            action,
            product_id=m.product_id,
            seller_id=m.seller_id,
            category=m.category,
            rank=m.rank if action == "update" else None,
            score=m.score,
            event_ts=now_ms,
            reasons=reasons,
            features={},
        )

    def snapshot(self, now_ms: int) -> BoardSnapshot:
        """The whole board as a ``board`` message (key ``__board__``)."""
        return board_snapshot(now_ms, enumerate(self.ranked(), start=1))

    def snapshots(self, times: Sequence[int]) -> list[BoardSnapshot]:
        """:meth:`snapshot` at each of ``times`` of a board that does not change between them.

        The entries are built once (each message gets its own list of the same items): a sparse
        replay's compiled tick loop hands back thousands of snapshots of an unchanged board (perf26).
        """
        if not times:
            return []
        first = self.snapshot(times[0])
        entries = first.entries
        return [first, *(BoardSnapshot(event_ts=int(t), entries=list(entries)) for t in times[1:])]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {
            "members": [
                [
                    m.slot,
                    m.product_id,
                    m.seller_id,
                    m.category,
                    m.score,
                    m.since_ms,
                    m.rank,
                    m.emitted_rank,
                    m.emitted_score,
                ]
                for m in self.members.values()
            ],
            "pending": [[s, t] for s, t in self.pending.items()],
            "held": [[s, t] for s, t in self.held.items()],
            "blocked_shown": sorted(self.blocked_shown),
            "blocked_until": [[s, t] for s, t in sorted(self.blocked_until.items())],
        }

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_dict` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return {}, {"board": self.to_dict()}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> Board:
        """:meth:`load_dict` of ``meta["board"]``, in place."""
        self.load_dict(meta["board"])
        return self

    def load_dict(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`to_dict` output."""
        self.members = {
            int(r[0]): Member(
                int(r[0]), r[1], r[2], r[3], float(r[4]), int(r[5]), int(r[6]), int(r[7]), float(r[8])
            )
            for r in data["members"]
        }
        self.pending = {int(s): int(t) for s, t in data["pending"]}
        self.held = {int(s): int(t) for s, t in data["held"]}
        self.blocked_shown = {int(s) for s in data["blocked_shown"]}
        self.blocked_until = {int(s): int(t) for s, t in data.get("blocked_until", [])}
