"""The trust guard: refuse trending products whose popularity is faked or whose seller is banned.

Three layers, cheapest first:

1. **Per-user caps** (in the kernels, :class:`~viraltrend.kernels.users.UserSignals`): one
   (user, product, event type) counts once per ``trust.cap_window_s``, so a bot farm of a few
   accounts hammering a product gains no lift at all: it never even trends.
2. **Signals behind a trend** (features read at each tick): decayed distinct users of the
   trend window (``unique_users``), raw events per user (``events_per_user``), the share of
   events from accounts first seen within ``trust.fresh_window_s`` (``fresh_share``), the
   product's conversion (add-to-cart and purchases per view) against the catalogue's
   (``conversion_ratio``), and lockstep: the share of a candidate's users found in the audience of
   a product hot in the last hours (:class:`AudienceMemory`, bottom-k samples; the CopyCatch idea:
   the same accounts hitting the same products in the same windows), counted at its lower
   confidence bound and beyond chance (:func:`significant_share`; chance per sampled user: a heavy user,
   in many audiences anyway, is expected in more, :func:`activity_chance`); a co-audience: an overlap with
   a remembered audience far beyond chance although neither holds half of the other
   (:func:`chance_evidence`, a sibling's first minute); and a dense user x product
   block (:meth:`AudienceMemory.block_density`, the FRAUDAR idea with its log-degree column weights:
   the candidate's users' weighted number of other recently hot products they acted on), and blind
   buyers (the funnel: the share of its sampled buyers whose cart or purchase came with no view of the
   product lately, against the catalogue's, :func:`blind_buyers_refused`).  The
   catalogue references (fresh share, events per user) are the smaller of the trend and baseline
   windows, so a running attack does not lift its own bar.  A hard refusal sticks to the
   product (the engine keeps it for ``trust.audience_memory_s``).
3. **Blocklists** of sellers and products, from config, files, and live from a compacted topic.

:meth:`TrustGuard.check` returns the reasons a candidate is refused (or None); the board
turns them into a ``block`` decision instead of a ``promote``.  :func:`soft_refusal` tells a
refusal that may resolve as the trend grows (the board holds the product back, and blocks it
only if the refusal still holds after ``board.confirm_s``) from one that is final (blocked at
once).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from viraltrend.config import TrustConfig
from viraltrend.kernels.audience import (
    _activity_chance,
    containment,
    estimated_users,
    sample_size,
    union_into,
)
from viraltrend.kernels.columns import in_sorted
from viraltrend.kernels.segment import fold_funnel

__all__ = [
    "AudienceMemory",
    "FunnelShare",
    "blind_buyers_refused",
    "blind_reason",
    "Match",
    "TrustGuard",
    "activity_chance",
    "activity_reference",
    "activity_weights",
    "chance_evidence",
    "pooled_evidence",
    "pooled_numbers",
    "co_numbers",
    "light_numbers",
    "low_numbers",
    "light_sample",
    "hold_reason",
    "match_numbers",
    "significant_share",
    "soft_refusal",
    "uniform_reason",
]

_LOW_USERS = "low_unique_users"
#: A hold: the guard's audience evidence is still accumulating (see :func:`hold_reason`); always soft.
HELD = "held_"
#: Shared sampled users below which two audiences' overlap is not estimated (see best_match).
_MIN_SHARED_USERS = 4
#: "Almost all fresh accounts" alone refuses only where the catalogue's own share of events from
#: fresh accounts is at most this many times smaller: at the start of a stream, or where most
#: accounts are new anyway, every product's audience is fresh.
_FRESH_CONTRAST = 3.0
#: ...or where the odds of an event coming from a fresh account are this many times the catalogue's: a
#: share near 1 has no room left for a ratio (97 % fresh against a catalogue at 36 %, a click farm
#: inflating the catalogue's own share, is a ratio of 2.7 but odds 57 times the catalogue's), while
#: 97 % against 60 % (odds 22 times) is still a young stream's.
_FRESH_ODDS_CONTRAST = 40.0
#: ...only where most of the catalogue's events come from accounts that are not fresh (a young stream,
#: or one where most accounts are new, has every audience fresh: 100 % against 90 % is no signal),
_FRESH_ODDS_BELOW = 0.5
#: ...and a share counted as at most this (a dozen users all fresh are not infinite odds).
_FRESH_ODDS_CAP = 0.99


def _odds(share: float) -> float:
    return share / max(1.0 - share, 1e-9)


#: "No conversion at all" (``trust.min_conversion_ratio_any``) refuses only from this many times
#: ``trust.min_unique_users`` on: a dozen users may all just look, a crowd that never buys is not a deal.
_NO_CONVERSION_USERS = 2.0
#: Signals read off too few distinct users to be final: while ``low_unique_users`` holds, these
#: only hold the product back (the first users of any product may all be new accounts).
_SOFT_WHILE_FEW_USERS = (_LOW_USERS, "fresh_accounts")
#: "No conversion" read before ``trust.conversion_wait_s`` of its change: carts and purchases follow
#: views by seconds to minutes, so a product minutes into its trend may simply not have converted yet.
#: It holds the product back (soft); once the change is that old it is a hard ``no_conversion``.
_CONVERTING = "no_conversion_yet_"


#: Refusals that take a product off the board: blocklists (they change live) and a ring exposed after
#: the product was promoted, through a later product of the same audience (``ring_member_of_...``).
_EVICTING = ("seller_blocked", "product_blocked", "ring_member_of_")


def evicts(reasons: list[str]) -> bool:
    """Whether a refusal of a product on the board takes it off (a ``block``) rather than nothing.

    >>> evicts(["ring_member_of_p-2_shared_91%"]), evicts(["no_conversion_x0.10_28_users"])
    (True, False)
    """
    return any(r.startswith(_EVICTING) for r in reasons)


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
    >>> soft_refusal(["held_seller_sibling_p-7_11_of_50_sampled"])
    True
    >>> soft_refusal(["held_seller_sibling_p-7_11_of_50_sampled", "no_conversion_x0.02_30_users"])
    False
    >>> soft_refusal(["fresh_accounts_100%_no_conversion_x0.00", "held_uniform_looking_12_of_30_sampled"])
    False

    Soft too: no conversion yet, minutes into a change (``no_conversion_yet_...``).

    >>> soft_refusal(["no_conversion_yet_x0.00_38_users_change_55s"])
    True
    """
    if all(r.startswith((HELD, _CONVERTING)) for r in reasons):  # the evidence is still accumulating
        return bool(reasons)
    return any(r.startswith(_LOW_USERS) for r in reasons) and all(
        r.startswith((*_SOFT_WHILE_FEW_USERS, HELD)) for r in reasons
    )


@dataclass(slots=True)
class TrustGuard:
    """Blocklists plus thresholds on the trust features.  Blocklists can change while running."""

    cfg: TrustConfig
    blocked_products: dict[str, str] = field(default_factory=dict)  # id -> reason
    blocked_sellers: dict[str, str] = field(default_factory=dict)
    lockstep: dict[int, str] = field(default_factory=dict)  # slot -> a sticky refusal (set by the engine)
    held: dict[int, str] = field(default_factory=dict)  # slot -> a hold for this tick (set by the engine)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> candidates refused
    catalogue_fresh_share: float = 1.0  # share of all events from fresh accounts (set by the engine per tick)
    min_change_users: float = math.inf  # detect.min_change_users: users since a change point that back it
    catalogue_events_per_user: float = 1.0  # raw events per (user, product) pair (set by the engine per tick)

    def set_blocked(self, kind: str, ident: str, reason: str | None) -> None:
        """Block (``reason``) or unblock (None) a ``"seller"`` or ``"product"`` id."""
        table = self.blocked_sellers if kind == "seller" else self.blocked_products
        if reason is None:
            table.pop(ident, None)
        else:
            table[ident] = reason

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The blocklists, as they stand (set live), for a checkpoint (:mod:`viraltrend.stateful`)."""
        products, sellers = dict(self.blocked_products), dict(self.blocked_sellers)
        return {}, {"blocked_products": products, "blocked_sellers": sellers}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> TrustGuard:
        """The blocklists of a checkpoint, in place (the rest is config or set per tick)."""
        self.blocked_products = dict(meta["blocked_products"])
        self.blocked_sellers = dict(meta["blocked_sellers"])
        return self

    def check(
        self,
        product_id: str,
        seller_id: str | None,
        slot: int,
        features: dict[str, NDArray[np.float64]],
        i: int,
    ) -> list[str] | None:
        """Reasons to refuse candidate ``i`` (machine-readable strings), or None if it may be promoted."""
        reasons = self.own_reasons(product_id, seller_id, features, i)
        if slot in self.lockstep and self.lockstep[slot] not in reasons:
            reasons.append(self.lockstep[slot])  # a ring match, or an earlier hard refusal that sticks
        elif slot in self.held and (not reasons or soft_refusal(reasons)):
            reasons.append(self.held[slot])  # evidence still accumulating: held back, never blocked for it
        for r in reasons:
            self.refused[r.split(":")[0].split("_x")[0].rstrip("_0123456789.%")] += 1
        return reasons or None

    def own_reasons(
        self, product_id: str, seller_id: str | None, features: dict[str, NDArray[np.float64]], i: int
    ) -> list[str]:
        """Candidate ``i``'s refusals on its own figures and blocklists (no ring match or hold, uncounted)."""
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
            floor = c.min_unique_users
            users = float(features["unique_users"][i])
            if "change_users" in features and features["change_users"][i] >= self.min_change_users:
                users = max(users, c.min_unique_users)  # a slow trend: enough users since its change point
            if users < c.min_unique_users:
                reasons.append(f"low_unique_users_{users:.0f}")
            fresh = float(features["fresh_share"][i])
            conversion = float(features["conversion_ratio"][i])
            if fresh >= c.max_fresh_share and conversion < c.min_conversion_ratio:
                reasons.append(f"fresh_accounts_{fresh:.0%}_no_conversion_x{conversion:.2f}")
            elif (
                fresh >= c.max_fresh_share_any
                and users >= c.min_unique_users
                and (
                    self.catalogue_fresh_share * _FRESH_CONTRAST <= fresh
                    or (
                        self.catalogue_fresh_share < _FRESH_ODDS_BELOW
                        and _odds(min(fresh, _FRESH_ODDS_CAP))
                        >= _FRESH_ODDS_CONTRAST * _odds(self.catalogue_fresh_share)
                    )
                )
            ):
                reasons.append(f"fresh_accounts_{fresh:.0%}_catalogue_{self.catalogue_fresh_share:.0%}")
            elif conversion < c.min_conversion_ratio_any and users >= _NO_CONVERSION_USERS * floor:
                change_s = float(features["change_s"][i]) if "change_s" in features else math.inf
                expected = float(features["expected_buys"][i]) if "expected_buys" in features else math.inf
                if change_s < c.conversion_wait_s:
                    reasons.append(f"{_CONVERTING}x{conversion:.2f}_{users:.0f}_users_change_{change_s:.0f}s")
                elif expected < c.no_conversion_expected_buys:  # too few views yet to tell from chance
                    reasons.append(
                        f"{_CONVERTING}x{conversion:.2f}_{users:.0f}_users_expected_{expected:.1f}"
                    )
                else:
                    reasons.append(f"no_conversion_x{conversion:.2f}_{users:.0f}_users")
            per_user = float(features["events_per_user"][i]) if "events_per_user" in features else 0.0
            usual = self.catalogue_events_per_user
            if users >= c.min_unique_users and (
                per_user >= c.max_events_per_user or per_user >= c.recycled_contrast * usual
            ):
                reasons.append(f"recycled_audience_{per_user:.1f}_events_per_user_catalogue_{usual:.1f}")
        return reasons


def uniform_reason(sampled: int, mean: float, dispersion: float, catalogue: float) -> str:
    """The refusal of an audience of uniformly active accounts, with its numbers.

    ``sampled`` users of the candidate's audience sample had ``mean`` events each before they
    joined, with variance ``dispersion`` times the mean (about 1: accounts acting at one common
    rate, a farm warmed up by a script; real audiences are heavy-tailed, far above 1), where the
    other hot audiences' users spread their activity rates with squared coefficient of variation
    ``catalogue`` (:func:`~viraltrend.kernels.audience.pooled_overdispersion`).

    >>> uniform_reason(42, 9.31, 1.12, 2.345)
    'uniform_accounts_dispersion_1.12_mean_9.3_events_of_42_sampled_catalogue_cv2_2.35'
    """
    return (
        f"uniform_accounts_dispersion_{dispersion:.2f}_mean_{mean:.1f}_events_of_{sampled}_sampled"
        f"_catalogue_cv2_{catalogue:.2f}"
    )


def hold_reason(kind: str, sampled: int, needed: int, numbers: str = "") -> str:
    """The soft refusal of a candidate held while the guard's audience evidence accumulates.

    ``kind``: ``uniform_looking`` (its few sampled users so far act alike, see :func:`uniform_reason`)
    or ``seller_sibling_<id>`` (another product of its seller is trending at the same time, and two
    young audiences cannot show yet whether they are one group of accounts); ``sampled`` of the
    ``needed`` sampled users the hold waits for.

    >>> hold_reason("seller_sibling_p-7", 11, 50)
    'held_seller_sibling_p-7_11_of_50_sampled'
    >>> hold_reason("uniform_looking", 22, 30, "_dispersion_0.63_mean_7.4")
    'held_uniform_looking_dispersion_0.63_mean_7.4_22_of_30_sampled'
    """
    return f"{HELD}{kind}{numbers}_{sampled}_of_{needed}_sampled"


def blind_buyers_refused(
    buyers: NDArray[np.int64], blind: NDArray[np.int64], catalogue: float, cfg: TrustConfig
) -> NDArray[np.bool_]:
    """Which candidates' buyers skipped the funnel: carts and purchases from users who never viewed it.

    ``blind`` of a candidate's ``buyers`` (sampled users with a cart or purchase, see
    :func:`~viraltrend.kernels.audience.blind_buyers`) bought before any view of theirs was seen;
    ``catalogue`` is that share over the other hot audiences' buyers (nan: not known).  Refused from
    ``trust.blind_min_buyers`` buyers on, where the share at its lower confidence bound (Wilson,
    ``trust.lockstep_z``; 0 below 4 blind buyers) reaches both ``trust.blind_buyer_share`` and
    ``trust.blind_buyer_contrast`` times the catalogue's.  Where the catalogue's own buyers mostly buy
    blind (traffic whose views are not reported, or a sampled feed), nothing is refused.

    >>> from viraltrend.config import TrustConfig
    >>> cfg = TrustConfig(blind_buyer_share=0.15, blind_buyer_contrast=3.0, blind_min_buyers=8)
    >>> blind_buyers_refused(np.array([40, 40, 5, 40]), np.array([16, 2, 5, 7]), 0.04, cfg).tolist()
    [True, False, False, False]
    >>> blind_buyers_refused(np.array([40]), np.array([16]), 0.9, cfg).tolist()
    [False]
    """
    if cfg.blind_buyer_share <= 0 or not catalogue < 1.0:  # off, or no catalogue figure (nan)
        return np.zeros(buyers.shape, np.bool_)
    low = significant_share(blind, buyers, np.zeros(buyers.shape), cfg.lockstep_z)
    bar = max(cfg.blind_buyer_share, cfg.blind_buyer_contrast * catalogue)
    return np.asarray((buyers >= cfg.blind_min_buyers) & (low >= bar), np.bool_)


def blind_reason(buyers: int, blind: int, catalogue: float) -> str:
    """The refusal of an audience whose buyers skipped the funnel, with its numbers.

    >>> blind_reason(40, 16, 0.041)
    'blind_buyers_16_of_40_sampled_buyers_never_viewed_catalogue_4%'
    """
    return f"blind_buyers_{blind}_of_{buyers}_sampled_buyers_never_viewed_catalogue_{catalogue:.0%}"


@dataclass(slots=True)
class FunnelShare:
    """The catalogue's share of carts and purchases with no view of the product by their user lately.

    Decayed counts over every product's carts and purchases, over a short and a long half-life
    (``half_lives_ms``, event time): the blind-buyers test's reference is the smaller of the two
    shares, so a running attack, whose blind carts lift the short window's share, does not lift its
    own bar (as the other catalogue references).  About the late deliveries on traffic whose users walk
    the funnel; near 1 where views are not reported (or each event's type is drawn on its own), and
    then nothing is refused for blind buyers.  ``O(1)`` state.

    >>> f = FunnelShare(half_lives_ms=(1000, 1000))
    >>> f.add(100, 5, now_ms=0); round(f.share(), 3)
    0.05
    >>> f.add(100, 95, now_ms=1000); round(f.share(), 3)  # the older counts weigh half
    0.65
    >>> g = FunnelShare(half_lives_ms=(1000, 100_000))
    >>> g.add(1000, 50, now_ms=0); g.add(100, 95, now_ms=1000); round(g.share(), 3)  # the long window's
    0.132
    >>> FunnelShare(half_lives_ms=(1000, 1000)).share()
    nan
    """

    half_lives_ms: tuple[int, int]
    buys: list[float] = field(default_factory=lambda: [0.0, 0.0])
    blind: list[float] = field(default_factory=lambda: [0.0, 0.0])
    at_ms: int = -(2**62)

    def add(self, buys: int, blind: int, *, now_ms: int) -> None:
        """Count ``buys`` carts and purchases, ``blind`` of them with no view lately, at ``now_ms``."""
        for i, h in enumerate(self.half_lives_ms):
            if now_ms > self.at_ms:
                w = 0.5 ** ((now_ms - self.at_ms) / max(h, 1))
                self.buys[i], self.blind[i] = self.buys[i] * w, self.blind[i] * w
            self.buys[i] += buys
            self.blind[i] += blind
        self.at_ms = max(self.at_ms, now_ms)

    def add_rows(self, rows: NDArray[np.int64]) -> None:
        """:meth:`add` of each row ``(buys, blind, now_ms)`` of int64[m, 3], in order, bit for bit.

        One compiled call (:func:`~viraltrend.kernels.segment.fold_funnel`) for the rows it can fold
        exactly; a step of ``2**53`` ms or more from :attr:`at_ms` (the first add ever) the Python way.
        """
        while rows.shape[0]:
            self.buys, self.blind, self.at_ms, done = fold_funnel(
                self.half_lives_ms, self.buys, self.blind, self.at_ms, rows
            )
            if done < rows.shape[0]:
                buys, blind, now_ms = rows[done].tolist()
                self.add(buys, blind, now_ms=now_ms)
                done += 1
            rows = rows[done:]

    def share(self) -> float:
        """The smaller share of the windows with ``_FUNNEL_MIN_BUYS`` (decayed) buys; nan: none has."""
        shares = [b / n for b, n in zip(self.blind, self.buys, strict=True) if n >= _FUNNEL_MIN_BUYS]
        return min(shares) if shares else math.nan

    def to_list(self) -> list[float]:
        """``[buys short, buys long, blind short, blind long, at_ms]`` for a checkpoint."""
        return [*self.buys, *self.blind, float(self.at_ms)]

    def load_list(self, values: list[float]) -> None:
        """Restore from :meth:`to_list` (an older checkpoint without it: empty counts)."""
        if len(values) == 5:
            self.buys, self.blind, self.at_ms = [values[0], values[1]], [values[2], values[3]], int(values[4])

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_list` as a part of a checkpoint (:mod:`viraltrend.stateful`)."""
        return {}, {"funnel_share": self.to_list()}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> FunnelShare:
        """:meth:`load_list`, in place."""
        self.load_list(meta.get("funnel_share", []))
        return self


#: Decayed carts and purchases of the catalogue below which its share of blind ones is not judged.
_FUNNEL_MIN_BUYS = 50.0


def significant_share(
    shared: NDArray[np.int64], sampled: NDArray[np.int64], chance: NDArray[np.float64], z: float
) -> NDArray[np.float64]:
    """The share of a candidate's sampled users in another audience that is not explained by chance.

    ``shared`` of ``sampled`` users are in the other audience; ``chance`` is the share expected if the
    candidate's users were strangers to it (the other audience's users over the active population).
    The share counts at its lower confidence bound (Wilson score interval, ``z`` standard errors:
    4 of 8 is not "half" the way 120 of 240 is), and only beyond ``chance``: ``(lower - chance) /
    (1 - chance)``, 0 where the other audience holds (about) everyone.  0 below ``_MIN_SHARED_USERS``
    shared users.  ``z = 0`` and ``chance = 0``: the plain share.

    >>> shared, sampled = np.array([4, 120, 10, 4]), np.array([8, 240, 10, 4])
    >>> [round(float(x), 2) for x in significant_share(shared, sampled, np.array([0, 0, 0, 1.0]), 1.0)]
    [0.33, 0.47, 0.91, 0.0]
    """
    n = np.maximum(sampled, 1).astype(np.float64)
    p = shared / n
    z2 = z * z
    lower = (p + z2 / (2 * n) - z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n)
    chance = np.clip(chance, 0.0, 1.0)
    excess = (lower - chance) / np.maximum(1.0 - chance, 1e-12)
    ok = (shared >= _MIN_SHARED_USERS) & (chance < 1.0)
    return np.where(ok, np.clip(excess, 0.0, 1.0), 0.0)


def chance_evidence(
    shared: NDArray[np.int64], sampled: NDArray[np.int64], chance: NDArray[np.float64]
) -> NDArray[np.float64]:
    """How unlikely ``shared`` of ``sampled`` users in another audience are by chance, in powers of ten.

    Under chance each sampled user is in the other audience with probability ``chance``; the
    Chernoff bound ``P(X >= shared) <= exp(-sampled * KL(shared / sampled || chance))`` gives the
    returned ``sampled * KL / ln 10`` (at least that many powers of ten against chance; 0 where
    the share is not above chance, or below ``_MIN_SHARED_USERS`` shared users).  CopyCatch's
    question: do these accounts act together far more often than strangers would?

    >>> [round(float(x), 1) for x in chance_evidence(np.array([5, 5, 20]), np.array([29, 200, 200]),
    ...                                               np.array([0.003, 0.03, 0.1]))]
    [6.9, 0.0, 0.0]
    """
    n = np.maximum(sampled, 1).astype(np.float64)
    q = np.clip(shared / n, 1e-12, 1 - 1e-12)
    p = np.clip(chance, 1e-12, 1 - 1e-12)
    kl = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
    ok = (shared >= _MIN_SHARED_USERS) & (q > p) & (chance < 1.0)
    return np.where(ok, n * kl / math.log(10.0), 0.0)


def pooled_evidence(shared: NDArray[np.int64], expected: NDArray[np.float64]) -> NDArray[np.float64]:
    """How unlikely ``shared`` users are by chance where ``expected`` are, in powers of ten (Poisson).

    For a count pooled over several audiences (a candidate's users found in the remembered audiences of
    its seller's other products): the Chernoff bound of a Poisson count, ``P(X >= s) <= exp(-(s ln(s / e)
    - s + e))``, in powers of ten; 0 where ``s`` is not above ``e`` or below ``_MIN_SHARED_USERS``.  Two
    shared users with each of two siblings, where half a user was expected in all, are 2.1 powers of
    ten: not a ring yet, but worth waiting for (see ``trust.hold_evidence``).

    >>> ev = pooled_evidence(np.array([4, 4, 3, 30]), np.array([0.5, 4.0, 0.01, 6.0]))
    >>> [round(float(x), 1) for x in ev]
    [2.1, 0.0, 0.0, 10.5]
    """
    s = shared.astype(np.float64)
    e = np.maximum(expected, 1e-12)
    ok = (shared >= _MIN_SHARED_USERS) & (s > e)
    nats = s * np.log(np.maximum(s, 1e-12) / e) - s + e
    return np.where(ok, nats / math.log(10.0), 0.0)


def pooled_numbers(shared: int, expected: float, evidence: float) -> str:
    """The numbers behind a pooled co-audience (:func:`pooled_evidence`), for a refusal or a hold.

    >>> pooled_numbers(4, 0.46, 2.09)
    'shared_4_expected_0.5_evidence_2.1'
    """
    return f"shared_{shared}_expected_{expected:.1f}_evidence_{evidence:.1f}"


def activity_reference(sig: NDArray[np.uint64], val: NDArray[np.uint16]) -> float:
    """The active population's mean activity, from audience samples: the harmonic mean of ``val + 1``.

    ``val`` (uint16[r, k], beside the sorted samples ``sig``) holds each sampled user's earlier events.
    A user is in audiences about in proportion to its activity, so pooled audience samples hold user
    ``u`` with weight ``a_u``: the mean of ``1 / a`` over them is ``N / sum(a)``, one over the
    population's plain mean (a heavy user seen in many audiences does not inflate it).  nan where no
    user is sampled.

    >>> sig = np.array([[1, 2, 3, 4], [1, 2, 3, 4]], np.uint64)
    >>> round(activity_reference(sig, np.array([[0, 0, 0, 9], [0, 0, 9, 9]], np.uint16)), 2)
    1.51
    """
    held = sig != np.iinfo(np.uint64).max
    if not held.any():
        return math.nan
    return float(1.0 / np.mean(1.0 / (val[held].astype(np.float64) + 1.0)))


def activity_weights(
    sig: NDArray[np.uint64], val: NDArray[np.uint16], reference: float, heavy: float
) -> NDArray[np.float64] | None:
    """Each sampled user's chance of being in an audience, relative to an average user's (float64[m, k]).

    A user with ``a`` earlier events is in about ``(a + 1) / reference`` times as many audiences as
    the average user (:func:`activity_reference`).  Only heavy users are given that: the weight is
    ``max(1, (a + 1) / (heavy * reference))``, so users up to ``heavy`` times the mean count as
    average (as in the uniform null: a ring's accounts, whose earlier events are mostly the ring's own
    work, are not explained by them) and a deal hunter with tens of times the mean is expected in
    tens of times more audiences.  None where ``heavy`` is 0 or the reference is not known (the
    uniform null).  Padding gets weight 1 (never read: see best_match).

    >>> sig = np.array([[1, 2, 3, 2**64 - 1]], np.uint64)
    >>> activity_weights(sig, np.array([[0, 15, 79, 0]], np.uint16), 2.0, 4.0).tolist()
    [[1.0, 2.0, 10.0, 1.0]]
    """
    if heavy <= 0 or not reference > 0:
        return None
    w = np.maximum(1.0, (val.astype(np.float64) + 1.0) / (heavy * reference))
    return np.where(sig != np.iinfo(np.uint64).max, w, 1.0)


def activity_chance(
    chance: NDArray[np.float64], weight: NDArray[np.float64], sampled: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The share of each candidate's sampled users expected in each other audience by chance.

    Heterogeneous users: sampled user ``u`` of candidate ``i`` is in audience ``j`` by chance with
    probability ``min(1, chance_j * weight_iu)`` (``chance``: float64[r], audience ``j``'s users over
    the active population; ``weight``: float64[m, k], :func:`activity_weights`), so heavy users, in
    many audiences anyway, explain an overlap, while accounts that act little but always together do
    not.  The pair's sampled users are the first ``sampled[i, j]`` of the candidate's sorted sample
    (:func:`~viraltrend.kernels.audience.containment`); returns their mean chance, float64[m, r]
    (``chance_j`` where none is sampled).  ``O(m * r * k)``, compiled
    (:func:`~viraltrend.kernels.audience._activity_chance`: the same bits as the numpy form,
    ``tests/kernels/reference.py``'s ``activity_chance``).

    >>> w = np.array([[1.0, 1.0, 1.0, 1.0], [10.0, 10.0, 0.1, 0.1]])
    >>> [[round(float(x), 3) for x in row] for row in activity_chance(np.array([0.02, 0.5]), w,
    ...                                                                 np.array([[4, 4], [2, 4]]))]
    [[0.02, 0.5], [0.2, 0.525]]
    """
    m, k = weight.shape
    out = np.empty(sampled.shape)
    if k == 0 or chance.shape != (sampled.shape[1],) or sampled.shape[0] != m:
        msg = f"activity_chance: shapes do not fit {chance.shape}, {weight.shape}, {sampled.shape}"
        raise ValueError(msg)
    _activity_chance(  # numpy's running (cumsum) sums, one compiled pass
        np.ascontiguousarray(chance, np.float64), np.ascontiguousarray(weight, np.float64),
        np.ascontiguousarray(sampled, np.int64), out,
    )  # fmt: skip
    return out


class Match(NamedTuple):
    """:meth:`AudienceMemory.best_match`'s answer per candidate (float64[m] / int64[m] arrays)."""

    sim: NDArray[np.float64]  # the significant share (see significant_share) of the best match
    other: NDArray[np.int64]  # its slot, -1: nothing remembered
    sim_same: NDArray[np.float64]  # the same among the remembered products of the candidate's seller
    other_same: NDArray[np.int64]
    shared: NDArray[np.int64]  # shared / sampled users behind sim (the numbers of a refusal)
    sampled: NDArray[np.int64]
    chance: NDArray[np.float64]  # the share expected by chance behind sim
    shared_same: NDArray[np.int64]
    sampled_same: NDArray[np.int64]
    chance_same: NDArray[np.float64]
    co_evidence: NDArray[np.float64]  # chance_evidence of the least likely overlap (lift >= co_lift)
    co_other: NDArray[np.int64]  # its slot, -1: none
    co_shared: NDArray[np.int64]
    co_sampled: NDArray[np.int64]
    co_expected: NDArray[np.float64]  # shared users expected by chance
    #: pooled over the remembered products of the candidate's seller: shared sampled users, and expected
    seller_shared: NDArray[np.int64] | None = None
    seller_expected: NDArray[np.float64] | None = None
    #: the co-audience among the candidate's light users only (those whose activity does not explain an
    #: overlap, weight 1 in :func:`activity_weights`), chance the plain audience share: see best_match
    light_evidence: NDArray[np.float64] | None = None
    light_other: NDArray[np.int64] | None = None
    light_shared: NDArray[np.int64] | None = None
    light_sampled: NDArray[np.int64] | None = None
    light_expected: NDArray[np.float64] | None = None
    #: the same at the weaker lift ``light_low_lift`` (see best_match; zeros where not asked)
    low_evidence: NDArray[np.float64] | None = None
    low_other: NDArray[np.int64] | None = None
    low_shared: NDArray[np.int64] | None = None
    low_sampled: NDArray[np.int64] | None = None
    low_expected: NDArray[np.float64] | None = None


def match_numbers(match: Match, j: int, *, same: bool = False) -> str:
    """The numbers behind candidate ``j``'s (same-seller, ``same``) match, for its refusal reason.

    >>> one = lambda x: np.array([x])
    >>> m = Match(one(0.8), one(5), one(0.0), one(-1), one(30), one(32), one(0.04), *[one(0)] * 8)
    >>> "lockstep_with_p-5_" + match_numbers(m, 0)
    'lockstep_with_p-5_shared_94%_of_32_sampled_chance_4%'
    """
    if same:
        shared, sampled, chance = match.shared_same[j], match.sampled_same[j], match.chance_same[j]
    else:
        shared, sampled, chance = match.shared[j], match.sampled[j], match.chance[j]
    return f"shared_{shared / max(sampled, 1):.0%}_of_{sampled}_sampled_chance_{chance:.0%}"


def light_numbers(match: Match, j: int) -> str:
    """The numbers behind candidate ``j``'s co-audience among light users, for its refusal reason.

    >>> one = lambda x: np.array([x])
    >>> z = one(0)
    >>> m = Match(*[z] * 15, None, None, one(9.7), one(3), one(16), one(36), one(1.1))
    >>> "co_audience_light_with_p-3_" + light_numbers(m, 0)
    'co_audience_light_with_p-3_shared_16_of_36_light_sampled_expected_1.1_evidence_9.7'
    """
    assert match.light_evidence is not None and match.light_shared is not None
    assert match.light_sampled is not None and match.light_expected is not None
    return (
        f"shared_{match.light_shared[j]}_of_{match.light_sampled[j]}_light_sampled_expected_"
        f"{match.light_expected[j]:.1f}_evidence_{match.light_evidence[j]:.1f}"
    )


def low_numbers(match: Match, j: int) -> str:
    """The numbers behind candidate ``j``'s co-audience among light users at the weaker lift.

    >>> one = lambda x: np.array([x])
    >>> m = Match(*[one(0)] * 15, *[None] * 7, one(1.3), one(3), one(9), one(20), one(4.0))
    >>> low_numbers(m, 0)
    'shared_9_of_20_light_sampled_expected_4.0_evidence_1.3'
    """
    assert match.low_evidence is not None and match.low_shared is not None
    assert match.low_sampled is not None and match.low_expected is not None
    return (
        f"shared_{match.low_shared[j]}_of_{match.low_sampled[j]}_light_sampled_expected_"
        f"{match.low_expected[j]:.1f}_evidence_{match.low_evidence[j]:.1f}"
    )


def light_sample(sig: NDArray[np.uint64], weight: NDArray[np.float64]) -> NDArray[np.uint64]:
    """The sorted samples ``sig`` (uint64[m, k]) without their heavy users (``weight`` > 1), padded.

    A subset of a bottom-k sample is still sorted, so :func:`containment` reads it as it reads a sample.

    >>> pad = 2**64 - 1
    >>> light_sample(np.array([[1, 2, 3, pad]], np.uint64), np.array([[1.0, 4.0, 1.0, 1.0]])).tolist()
    [[1, 3, 18446744073709551615, 18446744073709551615]]
    """
    out = np.full(sig.shape, np.iinfo(np.uint64).max, np.uint64)
    keep = (weight <= 1.0) & (sig != np.iinfo(np.uint64).max)
    for i in range(sig.shape[0]):
        row = sig[i][keep[i]]
        out[i, : row.size] = row
    return out


def co_numbers(match: Match, j: int) -> str:
    """The numbers behind candidate ``j``'s co-audience match, for its refusal reason.

    >>> one = lambda x: np.array([x])
    >>> z = one(0)
    >>> m = Match(z, z, z, z, z, z, z, z, z, z, one(6.9), one(4), one(5), one(29), one(0.08))
    >>> "co_audience_with_p-4_" + co_numbers(m, 0)
    'co_audience_with_p-4_shared_5_of_29_sampled_expected_0.1_evidence_6.9'
    """
    return (
        f"shared_{match.co_shared[j]}_of_{match.co_sampled[j]}_sampled_expected_{match.co_expected[j]:.1f}"
        f"_evidence_{match.co_evidence[j]:.1f}"
    )


_NEVER = int(np.iinfo(np.int64).min)  # a time not yet come


def _empty(dtype: type[np.generic]) -> Any:
    return field(default_factory=lambda: np.empty(0, dtype))


@dataclass(slots=True, eq=False)  # arrays: no field-wise ==
class GuardBook:
    """The trust guard's bookkeeping per product slot, carried from tick to tick.

    The engine's guard steps keep it (``AudienceGuard``: its holds, ``track``, the board's guard
    call); it holds what they found, so a restored engine goes on holding and refusing exactly as
    one never stopped.  Released slots are forgotten (:meth:`release`).
    """

    ring_refusals: dict[int, tuple[str, int]] = field(default_factory=dict)  # slot -> (lockstep reason, when)
    held_since: dict[int, int] = field(default_factory=dict)  # slot -> first held by the guard (hold_max_s)
    suspected: dict[int, int] = field(default_factory=dict)  # the same, held for co-audience evidence
    low_held: dict[int, int] = field(default_factory=dict)  # of suspected: held at hold_light_low_lift
    vouch_since: dict[int, int] = field(default_factory=dict)  # slot -> first held as a vouch, short sample
    ready_ms: dict[int, int] = field(default_factory=dict)  # slot -> last tick the rule found it ready
    vouch_ms: dict[int, tuple[int, int]] = field(default_factory=dict)  # slot -> (first, last) vouch tick
    catalogue_phi: tuple[float, int] = (math.nan, _NEVER)  # the last judged catalogue activity spread, when
    catalogue_checked_ms: int = _NEVER  # when it was last looked at (every _CATALOGUE_EVERY_MS)
    sketched: NDArray[np.int64] = _empty(np.int64)  # products whose user sets are sketched (hot ones), sorted
    sketched_ms: NDArray[np.int64] = _empty(np.int64)  # per sketched product: last tick hot with events
    sketched_ev: NDArray[np.float64] = _empty(np.float64)  # ...and its change evidence then

    def release(self, cold: NDArray[np.int64]) -> NDArray[np.int64]:
        """Forget the released slots ``cold`` (sorted); return the sketched ones (their samples must go)."""
        gone = in_sorted(self.sketched, cold)
        out = self.sketched[gone]
        if out.size:
            if self.sketched_ms.shape == self.sketched.shape:  # else restored without the times
                self.sketched_ms, self.sketched_ev = self.sketched_ms[~gone], self.sketched_ev[~gone]
            self.sketched = self.sketched[~gone]
        for d in (self.ring_refusals, self.held_since, self.suspected, self.low_held, self.vouch_since):
            if d:  # the few slots each holds, looked up in the (many) released ones: not one pop per slot
                keys = np.sort(np.fromiter(d, np.int64, len(d)))
                for s in keys[in_sorted(keys, cold)].tolist():
                    del d[s]
        return out

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The sketched products as arrays, the rest as meta lists (:mod:`viraltrend.stateful`)."""
        arrays = {"sketched": self.sketched.copy(), "sketched_ms": self.sketched_ms.copy(),
                  "sketched_ev": self.sketched_ev.copy()}  # fmt: skip
        phi, when = self.catalogue_phi
        meta = {
            "ring_refusals": [[s, r, t] for s, (r, t) in sorted(self.ring_refusals.items())],
            **{k: sorted(getattr(self, k).items()) for k in _BOOK_TIMES},
            "catalogue_phi": [None if math.isnan(phi) else phi, when, self.catalogue_checked_ms],
            "vouch_ms": [[s, a, b] for s, (a, b) in sorted(self.vouch_ms.items())],
        }
        return arrays, meta

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> GuardBook:
        """A book from :meth:`to_state` output (older checkpoints: the entries they lack start empty)."""
        book = GuardBook({int(s): (str(r), int(t)) for s, r, t in meta["ring_refusals"]})
        for k in _BOOK_TIMES:
            setattr(book, k, {int(s): int(t) for s, t in meta.get(k, [])})
        book.vouch_ms = {int(s): (int(a), int(b)) for s, a, b in meta.get("vouch_ms", [])}
        book.sketched = np.asarray(arrays["sketched"], np.int64)
        phi, when, checked = meta.get("catalogue_phi", [None, _NEVER, _NEVER])
        book.catalogue_phi = (math.nan if phi is None else float(phi), int(when))
        book.catalogue_checked_ms = int(checked)
        if "sketched_ms" in arrays:  # older checkpoints: kept as if hot at the next tick
            book.sketched_ms = np.asarray(arrays["sketched_ms"], np.int64)
            book.sketched_ev = np.asarray(arrays["sketched_ev"], np.float64)
        return book


#: GuardBook's slot -> time tables, saved as sorted [slot, ms] pairs under their own names
_BOOK_TIMES = ("held_since", "suspected", "low_held", "vouch_since", "ready_ms")


@dataclass(slots=True)
class AudienceMemory:
    """Bottom-k samples of the audiences of recently hot products, remembered for hours.

    CopyCatch (Beutel et al., WWW 2013) finds groups of accounts acting on the same products in the
    same time windows.  Here every product hot enough to be sketched leaves its audience sample
    (:class:`~viraltrend.kernels.audience.AudienceSketches`, the ``k`` smallest user hashes) in a
    table of at most ``capacity`` entries, kept for ``memory_ms`` of event time after it was last
    hot with events; an entry is the sample of the union of the product's audiences while watched.
    A product about to be promoted is compared with every remembered one (``O(capacity * k)`` per candidate,
    never all pairs of hot products): a ring recycling the same accounts over several products, at
    once or staggered by hours, shows the same audience again.  The oldest entry gives way when
    the table is full.  Memory: ``capacity * (8 k + 24)`` bytes.

    Examples
    --------
    >>> mem = AudienceMemory(capacity=4, k=8, memory_ms=1000)
    >>> pad = 2**64 - 1
    >>> old = np.array([[1, 2, 3, 4, 5, 6, pad, pad], [9, 10, 11, 12, 13, 14, pad, pad]], np.uint64)
    >>> mem.remember(np.array([5, 6]), np.array([0, 1]), old, now_ms=0)
    >>> new = np.array([[2, 3, 4, 5, 99, pad, pad, pad]], np.uint64)
    >>> m = mem.best_match(np.array([7]), np.array([1]), new, now_ms=500)
    >>> m.sim.tolist(), m.other.tolist(), m.sim_same.tolist(), m.other_same.tolist()
    ([0.8], [5], [0.0], [6])
    >>> m.shared.tolist(), m.sampled.tolist(), m.chance.tolist()
    ([4], [5], [0.0])
    """

    capacity: int
    k: int
    memory_ms: int
    slot: NDArray[np.int64] = field(init=False)
    seller: NDArray[np.int64] = field(init=False)
    seen_ms: NDArray[np.int64] = field(init=False)
    sig: NDArray[np.uint64] = field(init=False)
    _row: dict[int, int] = field(init=False)  # slot -> row, for the entries held

    def __post_init__(self) -> None:
        self._row = {}
        self.slot = np.full(self.capacity, -1, np.int64)
        self.seller = np.full(self.capacity, -1, np.int64)
        self.seen_ms = np.full(self.capacity, np.iinfo(np.int64).min, np.int64)
        self.sig = np.full((self.capacity, self.k), np.iinfo(np.uint64).max, np.uint64)

    @property
    def nbytes(self) -> int:
        """Bytes of the table (its configured bound)."""
        return int(self.slot.nbytes + self.seller.nbytes + self.seen_ms.nbytes + self.sig.nbytes)

    def remember(
        self, slots: NDArray[np.int64], sellers: NDArray[np.int64], sig: NDArray[np.uint64], *, now_ms: int
    ) -> None:
        """Store the audience samples (``sig``: uint64[m, k], sorted) of hot ``slots`` (int64[m], unique)."""
        row_of = self._row
        rows = np.empty(len(slots), np.int64)
        for i, s in enumerate(slots.tolist()):
            r = row_of.get(s, -1)
            if r < 0:
                r = int(np.argmin(self.seen_ms))  # a free row (never seen) or the oldest
                if self.slot[r] >= 0:
                    row_of.pop(int(self.slot[r]), None)
                self.slot[r] = s
                self.sig[r] = np.iinfo(np.uint64).max
                row_of[s] = r
            rows[i] = r
            self.seller[r], self.seen_ms[r] = int(sellers[i]), now_ms
        union_into(self.sig, rows, sig)

    def forget(self, slots: NDArray[np.int64]) -> None:
        """Drop the entries of ``slots`` (evicted products whose slots will be reused)."""
        gone = np.isin(self.slot, slots)
        for s in self.slot[gone].tolist():
            self._row.pop(s, None)
        self.slot[gone] = -1
        self.seen_ms[gone] = np.iinfo(np.int64).min
        self.sig[gone] = np.iinfo(np.uint64).max

    def best_match(
        self,
        slots: NDArray[np.int64],
        sellers: NDArray[np.int64],
        sig: NDArray[np.uint64],
        *,
        now_ms: int,
        z: float = 0.0,
        population: float = 0.0,
        co_lift: float = math.inf,
        weight: NDArray[np.float64] | None = None,
        min_evidence: float = 0.0,
        light: bool = False,
        light_lift: float = 0.0,
        light_low_lift: float = 0.0,
    ) -> Match:
        """Per row of ``sig`` (uint64[m, k]), the remembered audience that holds most of it.

        The measure is *containment*: the share of the candidate's users also in the other
        product's audience (:func:`~viraltrend.kernels.audience.containment`, over the users both
        samples hold completely), so a ring recycling its accounts shows up even when the earlier
        product's audience is much larger.  A share counts only from ``_MIN_SHARED_USERS`` shared
        sampled users on: one power user shared with a large audience is not a ring.  With ``z > 0``
        it counts at its lower confidence bound, and with ``population > 0`` (users active now) only
        beyond the share expected by chance, the other audience's estimated users over
        ``population`` (:func:`significant_share`): a huge audience holding everyone is no ring.
        Returns the largest such share and that product's slot (-1: nothing remembered), then the
        same among the remembered products of the same seller (``sellers``, -1: none), with the
        numbers behind both.  ``co_*``: the remembered audience whose overlap with the candidate's is
        least likely by chance (:func:`chance_evidence`) among those sharing at least ``co_lift``
        times the users chance would (needs ``population``): small groups of accounts acting together
        that hold only a part of each other's audiences.  ``weight`` (float64[m, k], beside ``sig``;
        None: every user alike): each sampled user's chance relative to an average user's
        (:func:`activity_weights`), so chance is :func:`activity_chance`: heavy users shared with a big
        audience are expected there.  ``min_evidence`` (powers of ten; 0: none): a share counts for the
        lockstep answer (``sim``, ``other``) only where that many shared users are also that unlikely by
        chance (:func:`chance_evidence`): 5 of 6 sampled users in an audience holding a quarter of the
        active users is a lower bound past half, but 1 chance in 100; the same-seller answer is not gated.
        ``light`` (needs ``weight`` and ``population``): ``light_*``, the co-audience among the candidate's
        light users only (weight 1: activity that explains no overlap), chance each audience's plain share
        of the active users, with the same ``co_lift``: a crowd of real users paid per task holds heavy
        users, whose chance of the mean dilutes the overlap its light users show.  ``light_lift`` (> 0): the
        light users' own lift bar instead of ``co_lift``: a crowd drawn from the active users overlaps
        every product it worked on at a lift near active users / crowd size, often 2-5.
        ``light_low_lift`` (> 0, with ``light``): ``low_*``, the same light-user co-audience from this weaker
        lift on (a crowd's later product against its large first one: lift about 2).
        """
        m = slots.size
        i0, f0 = np.full(m, -1, np.int64), np.zeros(m)
        out = Match(f0, i0, f0, i0, i0 * 0, i0 * 0, f0, i0 * 0, i0 * 0, f0, f0, i0, i0 * 0, i0 * 0, f0)
        live = (self.slot >= 0) & (self.seen_ms >= now_ms - self.memory_ms)
        if m == 0 or not live.any():
            return out
        rows = np.flatnonzero(live).astype(np.int64)
        sampled, shared = containment(sig, self.sig, rows)
        if population > 0 and weight is not None:
            each = np.clip(estimated_users(self.sig[rows]) / population, 0.0, 1.0)
            chance = activity_chance(each, weight, sampled)
        elif population > 0:
            chance = np.broadcast_to(estimated_users(self.sig[rows]) / population, sampled.shape)
        else:
            chance = np.zeros(sampled.shape)
        sim = significant_share(shared, sampled, chance, z)
        sim[self.slot[rows][None, :] == slots[:, None]] = 0.0
        lock = sim
        if min_evidence > 0:
            lock = np.where(chance_evidence(shared, sampled, chance) >= min_evidence, sim, 0.0)
        mine = (self.seller[rows][None, :] == sellers[:, None]) & (sellers[:, None] >= 0)
        mine &= self.slot[rows][None, :] != slots[:, None]
        same = np.where(mine, sim, -1.0)
        at, at_same = lock.argmax(axis=1), same.argmax(axis=1)
        i = np.arange(m)
        has = mine.any(axis=1)
        other_same = np.where(has, self.slot[rows][at_same], -1)
        if population > 0 and math.isfinite(co_lift):
            lifted = shared >= co_lift * sampled * chance
            evidence = np.where(lifted, chance_evidence(shared, sampled, chance), 0.0)
        else:
            evidence = np.zeros(sim.shape)
        evidence[self.slot[rows][None, :] == slots[:, None]] = 0.0
        at_co = evidence.argmax(axis=1)
        co = evidence[i, at_co]
        seller_shared = np.where(mine, shared, 0).sum(axis=1).astype(np.int64)
        seller_expected = np.where(mine, sampled * chance, 0.0).sum(axis=1)
        l_best, l_other, l_sh, l_sa, l_ex = f0, i0, i0 * 0, i0 * 0, f0
        low: tuple[NDArray[np.generic], ...] = (f0, i0, i0 * 0, i0 * 0, f0)  # not asked: nothing
        if light and weight is not None and population > 0 and math.isfinite(co_lift):
            l_sampled, l_shared = containment(light_sample(sig, weight), self.sig, rows)
            plain = np.clip(estimated_users(self.sig[rows]) / population, 0.0, 1.0)
            each = np.broadcast_to(plain, l_sampled.shape)
            l_ev = chance_evidence(l_shared, l_sampled, each)
            l_lift = light_lift if light_lift > 0 else co_lift
            l_ev[l_shared < l_lift * l_sampled * each] = 0.0
            l_ev[self.slot[rows][None, :] == slots[:, None]] = 0.0
            at_l = l_ev.argmax(axis=1)
            l_best = l_ev[i, at_l]
            l_other = np.where(l_best > 0, self.slot[rows][at_l], -1)
            l_sh, l_sa, l_ex = l_shared[i, at_l], l_sampled[i, at_l], l_sampled[i, at_l] * each[i, at_l]
            if light_low_lift > 0:
                w_ev = chance_evidence(l_shared, l_sampled, each)
                w_ev[l_shared < light_low_lift * l_sampled * each] = 0.0
                w_ev[self.slot[rows][None, :] == slots[:, None]] = 0.0
                at_w = w_ev.argmax(axis=1)
                w_best = w_ev[i, at_w]
                low = (
                    w_best, np.where(w_best > 0, self.slot[rows][at_w], -1), l_shared[i, at_w],
                    l_sampled[i, at_w], l_sampled[i, at_w] * each[i, at_w],
                )  # fmt: skip
        return Match(
            lock[i, at], self.slot[rows][at], np.where(has, same[i, at_same], 0.0), other_same,
            shared[i, at], sampled[i, at], chance[i, at],
            shared[i, at_same], sampled[i, at_same], chance[i, at_same],
            co, np.where(co > 0, self.slot[rows][at_co], -1), shared[i, at_co], sampled[i, at_co],
            sampled[i, at_co] * chance[i, at_co], seller_shared, seller_expected,
            l_best, l_other, l_sh, l_sa, l_ex, *low,  # type: ignore[arg-type]
        )  # fmt: skip

    def seller_union(
        self,
        slots: NDArray[np.int64],
        sellers: NDArray[np.int64],
        sig: NDArray[np.uint64],
        *,
        now_ms: int,
        within_ms: int,
        population: float,
        weight: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
        """Per row of ``sig``: its users in the union of its seller's other products hot within ``within_ms``.

        A ring boosting several products of one seller at once draws each product's accounts from the
        same pool, so while the products are young each pair shares 0-1 sampled users, but together
        the siblings' audiences hold a growing part of the pool.  A sampled user ``u`` is compared
        with remembered audience ``r`` where ``r``'s bottom-k sample could hold it (below its
        threshold, or ``r`` not full); it is *shared* if some such ``r`` holds it, and is expected
        there by chance with ``1 - prod_r (1 - min(1, w_u n_r / population))`` (``n_r``: ``r``'s
        estimated users; ``w_u``: the user's activity weight, :func:`activity_weights`, 1 if None):
        a deal hunter in many hot audiences is expected in the union too.  Returns ``(shared,
        expected, sibling)``, int64[m] / float64[m] / int64[m]: the count, its chance expectation
        (:func:`pooled_evidence` reads both) and the sibling holding most of the shared users (-1:
        none).  ``O(m * s * k log k)`` for ``s`` siblings remembered per seller.

        >>> mem = AudienceMemory(capacity=4, k=8, memory_ms=10_000)
        >>> pad = 2**64 - 1
        >>> sibs = np.array([[1, 2, 3] + [pad] * 5, [4, 5, 6] + [pad] * 5], np.uint64)
        >>> mem.remember(np.array([5, 6]), np.array([0, 0]), sibs, now_ms=0)
        >>> cand = np.array([[2, 5, 9, pad, pad, pad, pad, pad]], np.uint64)
        >>> sh, ex, sib = mem.seller_union(np.array([7]), np.array([0]), cand, now_ms=500, within_ms=1000,
        ...                                population=100.0)
        >>> sh.tolist(), [round(float(x), 3) for x in ex], sib.tolist()
        ([2], [0.177], [5])
        """
        m = slots.size
        shared, expected, sibling = np.zeros(m, np.int64), np.zeros(m), np.full(m, -1, np.int64)
        live = (self.slot >= 0) & (self.seen_ms >= now_ms - min(within_ms, self.memory_ms))
        if m == 0 or population <= 0 or not live.any():
            return shared, expected, sibling
        rows = np.flatnonzero(live)
        top = np.iinfo(np.uint64).max
        for j in range(m):
            if sellers[j] < 0:
                continue
            mine = rows[(self.seller[rows] == sellers[j]) & (self.slot[rows] != slots[j])]
            if mine.size == 0:
                continue
            held = sig[j] != top
            users = sig[j][held]
            w = np.ones(users.size) if weight is None else weight[j][held]
            share = np.clip(estimated_users(self.sig[mine]) / population, 0.0, 1.0)
            thr = self.sig[mine, -1]  # top (padding) where the sample is not full: every value comparable
            comparable = users[:, None] <= thr[None, :]
            inside = np.stack([np.isin(users, self.sig[r]) for r in mine.tolist()], axis=1) & comparable
            miss = np.where(comparable, 1.0 - np.clip(w[:, None] * share[None, :], 0.0, 1.0), 1.0)
            shared[j] = int(inside.any(axis=1).sum())
            expected[j] = float((1.0 - miss.prod(axis=1)).sum())
            if shared[j] > 0:
                sibling[j] = int(self.slot[mine[int(inside.sum(axis=0).argmax())]])
        return shared, expected, sibling

    def recent_sibling(
        self, slots: NDArray[np.int64], sellers: NDArray[np.int64], *, now_ms: int, within_ms: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Per candidate, the youngest other remembered product of its seller hot within ``within_ms``.

        A seller-level view: several of one seller's products trending at the same time.  Returns
        its slot (-1: none, or no seller) and the users its sample holds (the fewest among them: the
        audience that can tell least yet).  ``O(m * capacity)``.

        >>> mem = AudienceMemory(capacity=4, k=2, memory_ms=10_000)
        >>> sig = np.array([[1, 2], [3, 2**64 - 1]], np.uint64)
        >>> mem.remember(np.array([5, 6]), np.array([0, 1]), sig, now_ms=0)
        >>> slot, n = mem.recent_sibling(np.array([7, 5, 8]), np.array([0, 0, 1]), now_ms=900, within_ms=1000)
        >>> slot.tolist(), n.tolist()
        ([5, -1, 6], [2, 0, 1])
        >>> mem.recent_sibling(np.array([7]), np.array([0]), now_ms=1001, within_ms=1000)[0].tolist()
        [-1]
        """
        m = slots.size
        out, size = np.full(m, -1, np.int64), np.zeros(m, np.int64)
        live = (self.slot >= 0) & (self.seen_ms >= now_ms - min(within_ms, self.memory_ms))
        if m == 0 or not live.any():
            return out, size
        rows = np.flatnonzero(live)
        mine = (self.seller[rows][None, :] == sellers[:, None]) & (sellers[:, None] >= 0)
        mine &= self.slot[rows][None, :] != slots[:, None]
        held = sample_size(self.sig[rows])
        fewest = np.where(mine, held[None, :], np.iinfo(np.int64).max)
        at = fewest.argmin(axis=1)
        has = mine.any(axis=1)
        return np.where(has, self.slot[rows][at], -1), np.where(has, held[at], 0)

    def block_density(
        self, slots: NDArray[np.int64], sig: NDArray[np.uint64], *, now_ms: int, within_ms: int | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """FRAUDAR-style density of the user x product block around each candidate (``sig``: uint64[m, k]).

        FRAUDAR (Hooi et al., KDD 2016) scores a block of users and products by its edges per node,
        each edge to product ``j`` weighted ``1 / log(d_j + 5)`` (``d_j``: the product's users), so
        accounts that also act on popular products (camouflage) add no weight to them, and popular
        products, whose audiences overlap everything, weigh little.  Restricted to the candidate's
        sampled users and the remembered audiences of recently hot products, the block's edges per
        user are ``sum_j share_j / log(d_j + 5)``: the candidate's users' (weighted) number of other
        recently hot products they also acted on (``share_j``: the candidate's users in ``j``'s
        audience, as in :meth:`best_match`, from ``_MIN_SHARED_USERS`` shared users).  Organic
        audiences spread over the whole catalogue and score near 0; a ring that spreads its accounts
        over many products scores high although no single pair of its products shares most users.
        Returns the density and the number of products behind it.  ``O(m * capacity * k)``.  Only
        the products hot within ``within_ms`` (at most ``memory_ms``; None: ``memory_ms``) count: a
        density sums over every product in its window, so a longer memory kept for pairwise overlaps
        would also let the heavy users of many hours' trends add up to a block.

        >>> mem = AudienceMemory(capacity=4, k=8, memory_ms=1000)
        >>> pad = 2**64 - 1
        >>> ring = np.array([[1, 2, 3, 4, 5, 6, pad, pad], [3, 4, 5, 6, 7, 8, pad, pad]], np.uint64)
        >>> mem.remember(np.array([5, 6]), np.array([0, 0]), ring, now_ms=0)
        >>> d, n = mem.block_density(np.array([7]), np.array([[1, 2, 3, 4, 5, 6, 7, 8]], np.uint64), now_ms=1)
        >>> round(float(d[0]), 3), n.tolist()
        (0.626, [2])
        >>> mem.block_density(np.array([7]), np.array([[1, 2, 3, 4, 5, 6, 7, 8]], np.uint64), now_ms=600,
        ...                   within_ms=500)[1].tolist()
        [0]
        """
        m = slots.size
        dens, n = np.zeros(m), np.zeros(m, np.int64)
        span = self.memory_ms if within_ms is None else min(within_ms, self.memory_ms)
        live = (self.slot >= 0) & (self.seen_ms >= now_ms - span)
        if m == 0 or not live.any():
            return dens, n
        rows = np.flatnonzero(live).astype(np.int64)
        sampled, shared = containment(sig, self.sig, rows)
        share = np.where(shared >= _MIN_SHARED_USERS, shared / np.maximum(sampled, 1), 0.0)
        share[self.slot[rows][None, :] == slots[:, None]] = 0.0
        weight = 1.0 / np.log(estimated_users(self.sig[rows]) + 5.0)
        return share @ weight, (share > 0).sum(axis=1).astype(np.int64)

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Plain arrays for a checkpoint."""
        return {"slot": self.slot.copy(), "seller": self.seller.copy(), "seen_ms": self.seen_ms.copy(),
                "sig": self.sig.copy()}  # fmt: skip

    def load_arrays(self, arrays: dict[str, NDArray[np.generic]]) -> None:
        """Restore from :meth:`to_arrays` output (shapes must match the config)."""
        for name in ("slot", "seller", "seen_ms", "sig"):
            got = np.asarray(arrays[name])
            want = getattr(self, name)
            if got.shape != want.shape or got.dtype != want.dtype:
                msg = f"audience memory {name}: expected {want.dtype}{want.shape}, got {got.dtype}{got.shape}"
                raise ValueError(msg)
            setattr(self, name, got.copy())
        self._row = {s: r for r, s in enumerate(self.slot.tolist()) if s >= 0}

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of a checkpoint (:mod:`viraltrend.stateful`)."""
        return dict(self.to_arrays()), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> AudienceMemory:
        """:meth:`load_arrays`, in place."""
        self.load_arrays(dict(arrays))
        return self
