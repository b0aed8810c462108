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
turns them into a ``block`` decision instead of a ``promote``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from viraltrend.config import TrustConfig

__all__ = ["TrustGuard"]


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
