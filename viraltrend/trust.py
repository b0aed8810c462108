"""The trust guard: refuse trending products whose popularity is faked or whose seller is banned.

Three layers, cheapest first:

1. **Per-user caps** (in the kernels, :class:`~viraltrend.kernels.users.UserSignals`): one
   (user, product, event type) counts once per ``trust.cap_window_s``, so a bot farm of a few
   accounts hammering a product gains no lift at all: it never even trends.
2. **Signals behind a trend** (features read at each tick): decayed distinct users of the
   trend window (``unique_users``), raw events per user (``events_per_user``), the share of
   events from accounts first seen within ``trust.fresh_window_s`` (``fresh_share``), the
   product's conversion (add-to-cart and purchases per view) against the catalogue's
   (``conversion_ratio``), and lockstep: the MinHash Jaccard similarity of the user sets of two
   hot products (the CopyCatch idea: the same accounts hitting the same products in the same
   windows).
3. **Blocklists** of sellers and products, from config, files, and live from a compacted topic.

:meth:`TrustGuard.check` returns the reasons a candidate is refused (or None); the board
turns them into a ``block`` decision instead of a ``promote``.  :func:`soft_refusal` tells a
refusal that may resolve as the trend grows (the board holds the product back, and blocks it
only if the refusal still holds after ``board.confirm_s``) from one that is final (blocked at
once).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from viraltrend.config import TrustConfig

__all__ = ["TrustGuard", "soft_refusal"]

_LOW_USERS = "low_unique_users"
#: Signals read off too few distinct users to be final: while ``low_unique_users`` holds, these
#: only hold the product back (the first users of any product may all be new accounts).
_SOFT_WHILE_FEW_USERS = (_LOW_USERS, "fresh_accounts")


def soft_refusal(reasons: list[str]) -> bool:
    """Whether a refusal may resolve as the trend grows, so the board holds rather than blocks.

    Soft: too few distinct users (``low_unique_users``), alone or with the fresh-accounts /
    low-conversion signal.  Below ``trust.min_unique_users`` that signal rests on a handful of
    accounts: the first two users of an organic viral product may both be new accounts, so it
    would block a product that is merely early.  Once the floor is reached, a product still
    driven by fresh accounts that never convert gets a hard refusal (a click farm); a product
    held below the floor for ``board.confirm_s`` is blocked too, so nothing soft is ever promoted.
    Blocklists and lockstep are always hard.

    Examples
    --------
    >>> soft_refusal(["low_unique_users_2", "fresh_accounts_100%_no_conversion_x0.00"])
    True
    >>> soft_refusal(["fresh_accounts_95%_no_conversion_x0.00"])
    False
    >>> soft_refusal(["low_unique_users_4", "lockstep_with_p-000001"])
    False
    """
    return any(r.startswith(_LOW_USERS) for r in reasons) and all(
        r.startswith(_SOFT_WHILE_FEW_USERS) for r in reasons
    )


@dataclass(slots=True)
class TrustGuard:
    """Blocklists plus thresholds on the trust features.  Blocklists can change while running."""

    cfg: TrustConfig
    blocked_products: dict[str, str] = field(default_factory=dict)  # id -> reason
    blocked_sellers: dict[str, str] = field(default_factory=dict)
    lockstep: dict[int, str] = field(default_factory=dict)  # slot -> the product it moves with
    refused: Counter[str] = field(default_factory=Counter)  # reason -> candidates refused

    def set_blocked(self, kind: str, ident: str, reason: str | None) -> None:
        """Block (``reason``) or unblock (None) a ``"seller"`` or ``"product"`` id."""
        table = self.blocked_sellers if kind == "seller" else self.blocked_products
        if reason is None:
            table.pop(ident, None)
        else:
            table[ident] = reason

    def find_lockstep(
        self, slots: NDArray[np.int64], product_ids: list[str], similarity: NDArray[np.float64]
    ) -> None:
        """Record hot products whose user sets nearly coincide (``similarity``: float64[m, m])."""
        self.lockstep = {}
        if slots.size < 2:
            return
        sim = np.where(np.isnan(similarity), 0.0, similarity)
        np.fill_diagonal(sim, 0.0)
        best = sim.argmax(axis=1)
        for i in np.flatnonzero(sim.max(axis=1) >= self.cfg.lockstep_similarity).tolist():
            self.lockstep[int(slots[i])] = product_ids[int(best[i])]

    def check(
        self,
        product_id: str,
        seller_id: str | None,
        slot: int,
        features: dict[str, NDArray[np.float64]],
        i: int,
    ) -> list[str] | None:
        """Reasons to refuse candidate ``i`` (machine-readable strings), or None if it may be promoted."""
        c = self.cfg
        reasons: list[str] = []
        for kind, table, ident in (
            ("product", self.blocked_products, product_id),
            ("seller", self.blocked_sellers, seller_id),
        ):
            if ident is not None and ident in table:
                reasons.append(f"{kind}_blocked")
                if table[ident] != "config":
                    reasons.append(f"blocklist_reason:{table[ident]}")
        if "unique_users" in features:
            users = float(features["unique_users"][i])
            if users < c.min_unique_users:
                reasons.append(f"low_unique_users_{users:.0f}")
            fresh = float(features["fresh_share"][i])
            conversion = float(features["conversion_ratio"][i])
            if fresh >= c.max_fresh_share and conversion < c.min_conversion_ratio:
                reasons.append(f"fresh_accounts_{fresh:.0%}_no_conversion_x{conversion:.2f}")
        if slot in self.lockstep:
            reasons.append(f"lockstep_with_{self.lockstep[slot]}")
        for r in reasons:
            self.refused[r.split(":")[0].split("_x")[0].rstrip("_0123456789.%")] += 1
        return reasons or None
