"""A fourth, independent traffic generator: a shopping market with Bass diffusion and adaptive adversaries.

Detection was tuned on :mod:`viraltrend.family` and checked on ``benchmarks/foreign.py`` (a Hawkes
process over Zipf users) and ``benchmarks/agents.py`` (sessions, a follower graph, cascades).  This
module draws traffic with a fourth set of mechanics, written from scratch (no code shared with any
of them, and without reading the engine's detection or trust code or its thresholds), so that
``bench_family.py --generator market`` tells where detection and the trust guard break.  The
adversaries know only what the README says about the guard, as a real adversary would.  Nobody
tunes on the evaluation seeds (1-6); tuning seeds are 101-199.

Mechanics
---------
* **Clock**: two days from a Thursday, Friday, Saturday or Sunday 00:00 local time (a time zone
  UTC-6..+9 per seed), so a weekday and a weekend day or two of one kind.  A weekday's profile has
  a commute bump (08:30), a lunch peak (12:30), an office plateau and an evening peak (21:00); a
  weekend day starts 1.5 h later and is 25 % busier.  ``score_from_ts`` lies 14-20 h after the start.
* **Catalogue**: 24 named categories (Dirichlet shares), each with its own **daily seasonality**
  (``1 + a cos(2 pi (h - phi) / 24)``, amplitude 0-0.7, so electronics may peak at night and
  groceries in the morning); popularity ``(1 + Pareto(alpha)) * Gamma(0.5)`` (alpha 1.3-1.6, neither
  Zipf nor lognormal); sellers with lognormal weights over 2,500 sellers; lognormal prices per
  category; per category a like, cart and purchase-given-cart rate.
* **Users** (60k): three classes, casual (74.5 %, about 0.6 visits a day), regulars (25 %, about 4)
  and **deal hunters** (0.5 %, 40-80 visits a day, who join many trending products early and most
  flash sales); each user has a favourite category (half of a category's visits come from its fans).
* **Base traffic: visits**, a Poisson process over the minute grid of the profile; each visit picks a
  category by the hour's category mix, a product by popularity within it, a user by activity, and
  walks a **funnel**: a view, then maybe a like, comment, share, a re-view minutes later, an
  add-to-cart 1-3 min after the view and a purchase a few minutes after the cart.  3 % of visits are
  **reorders**: an add-to-cart (and often a purchase) with no view (from the order history).
* **Organic viral products** (5-12 a seed): existing mid- and tail-ranked products adopt by a **Bass
  diffusion** ``dF/dt = (p + q F)(1 - F)`` of a market of ``M`` adopters (so 300-30,000 events, log
  uniform).  Early adoption grows as ``exp(q t)``, so ``q = ln 2 / doubling_s``; ``doubling_s`` is
  drawn log-uniform within a bucket (fast 60-300 s, medium 300-1,200 s, slow 1,200-3,600 s; the
  buckets cycle so each seed has all three), ``p / q`` log-uniform 0.003-0.03.  The diffusion runs on
  an **operational clock** (the square root of the activity profile: word of mouth slows at night),
  and adoption times are drawn by the inverse of Bass's closed form.  Adopters: 5-20 % brand-new
  accounts, 15-35 % of the deal hunters (early, in the first 30 % of the adoption), the rest users by
  activity (fans of the category twice as likely); each adopter walks a viral funnel (likes and
  shares more often).  ``onset_ts`` is the first adoption (the launch post, which carries a
  ``video_id``/``creator_id``); ``bucket`` follows the drawn doubling as in ``foreign.py`` and
  ``agents.py``; ``doubling_measured_s`` is a third of the wall time from 32 to 256 adoptions.
* **Hard negatives** (none is organic viral; promoting one costs precision):
  - ``spikes`` ``flash_sale``: a scheduled price drop (20-50 %) at a round hour or half hour for
    5-20 min, with a pre-sale trickle of wishlist views; 150-1,200 participants (40 % deal hunters)
    arrive front-loaded (``Beta(0.7, 2.5)`` of the sale), most cart within a minute and buy: a steep,
    short burst heavy in carts and purchases; the price reverts at the end;
  - ``spikes`` ``restock``: a popular product (ranks 20-300) is out of stock for 8-20 h (views drop to
    40 %, no carts or purchases), then a back-in-stock push brings 300-1,500 buyers decaying over
    20-60 min;
  - ``bursts`` ``influencer_mention``: an influencer's video (``video_id``, ``creator_id``) mentions a
    product once: 200-2,500 events decaying exponentially (3-15 min), 30 % of them from new accounts
    (followers who sign up), view and like heavy, shares often;
  - ``slow_risers``: 2-3 products (ranks 100-1,000) whose visit rate doubles every 4-10 h from a
    time on day 1 (02:00-12:00), up to 61 times their own;
  - ``steady``: the 5 head products;
  - **crawlers** (``truth["crawlers"]``, no product role): 2-4 scrapers that view thousands of
    products in order every 2-6 s for hours; one of them rotates its user id every 40-80 views, so
    the catalogue sees hundreds of new accounts that only view.
* **Attacks** (``attacks``, one row per attacked product, ``kind`` and ``attack_id``; every
  account in ``truth["attack_accounts"]``).  Each is built against a signal the README documents:
  - ``funnel_ring`` (against fresh accounts, uniform accounts and blind buyers): 300-900 accounts
    registered on day 1's first hours that browse organically at lognormal (not uniform) rates,
    then boost 2-4 products of one existing seller, staggered 0-40 min, each 500-1,500 events on
    an exponential ramp (doubling 6-15 min) over 40-90 min, each account acting once per product
    and walking the funnel (view, then cart, then purchase);
  - ``rotating_ring`` (against the audience that stops growing and fresh-share tests): a core of
    120-250 aged accounts acts once on every product, and fresh helpers (warmed up by 2-6 views of popular
    products in the hours before) are used on one product each, 30-45 % of each product's
    audience; 3-5 products over 2-3 sellers staggered 40-180 min, all converting;
  - ``crowdturf`` (against audience memory and seller views): 300-900 *real* users (organic
    accounts of every activity class, paid per task) each walk the funnel on a product of 3-5
    distinct sellers, each product taking a random 30-50 % of the crowd on a logistic ramp of
    60-120 min; the products are staggered by 6.5-8 h, past the README's 6 h audience memory;
  - ``slow_drip`` (against every rate test): 1-2 products that grow (doubling 30-60 min) for 3-5 h
    through a pool of real users, each acting once, with the funnel (600-2,500 events each);
  - ``bot_farm`` (a known shape, as a control): 10-30 fresh accounts hammer one product with
    1,000-2,000 events of drawn types in 20 min;
  - ``banned_viral``: a genuinely Bass-viral product of a seller listed in ``banned_sellers``.
* **Delivery faults**: 3 % of events arrive 0-120 s late, 0.3 % are offline uploads 2-20 min late,
  0.8 % are delivered twice (same ``event_id``, 0-30 s apart); 3 % of users' devices have a clock
  skew of N(0, 20 s) on ``ts``, and one device is stamped 25 h ahead for its few events.  The file
  is in arrival order.

Ids are opaque hashes (``p``/``u``/``s`` + 16 hex digits), so an attack account's id gives nothing
away; categories are named.

>>> import pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     truth = write_market(2, pathlib.Path(tmp), events_per_day=15_000, n_products=3_000, n_users=6_000)
>>> sorted({v["bucket"] for v in truth["viral"]})
['fast', 'medium', 'slow']
>>> sorted({a["kind"] for a in truth["attacks"]})
['banned_viral', 'bot_farm', 'crowdturf', 'funnel_ring', 'rotating_ring', 'slow_drip']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ATTACK_KINDS", "DAY_MS", "HOUR_MS", "START_MONDAY_MS", "TYPES", "write_market"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
START_MONDAY_MS = 1_772_409_600_000  # Monday 2026-03-02 00:00 UTC
TYPES = ("view", "like", "comment", "share", "add_to_cart", "purchase")
VIEW, LIKE, COMMENT, SHARE, CART, PURCHASE = range(6)
ATTACK_KINDS = ("funnel_ring", "rotating_ring", "crowdturf", "slow_drip", "bot_farm", "banned_viral")
CATEGORIES = (
    "beauty", "skincare", "fashion", "shoes", "bags", "jewelry", "electronics", "phones", "gaming",
    "home", "kitchen", "garden", "tools", "toys", "baby", "pets", "sports", "outdoor", "books",
    "grocery", "snacks", "health", "auto", "stationery",
)  # fmt: skip
MINUTES = 2 * 1440
BUCKET_RANGES = {"fast": (60.0, 300.0), "medium": (300.0, 1200.0), "slow": (1200.0, 3600.0)}


def _hash64(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``x ^ salt``: a bijection of 64-bit ints (opaque ids)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) ^ np.uint64(salt)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _bump(h: np.ndarray, mu: float, sd: float) -> np.ndarray:
    d = (h - mu + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / sd) ** 2)


class _Sampler:
    """Inverse-CDF draws of indices (mapped to ids) in proportion to weights."""

    def __init__(self, weights: np.ndarray, ids: np.ndarray | None = None) -> None:
        c = np.cumsum(np.asarray(weights, np.float64))
        self.cdf = c / c[-1]
        self.ids = ids

    def __call__(self, rng: np.random.Generator, n: int) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.cdf, rng.random(n), side="right"), self.cdf.size - 1)
        return i if self.ids is None else self.ids[i]


class _Out:
    """Event columns being drawn; ``tag`` is the truth row an event belongs to (-1: base traffic)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, ts: Any, product: Any, user: Any, kind: Any, tag: int = -1, video: int = -1) -> None:
        ts = np.asarray(ts, np.float64).ravel()
        n = ts.size

        def col(v: Any, dt: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dt), (n,)).copy()

        self.parts.append(
            (ts, col(product, np.int64), col(user, np.int64), col(kind, np.int8), col(tag, np.int32),
             col(video, np.int32))
        )  # fmt: skip

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(6))


class _Market:
    """Catalogue, users, the clock and the funnel: everything base traffic and injections share."""

    def __init__(self, rng: np.random.Generator, n_products: int, n_users: int, t0_ms: int, tz_h: float,
                 weekend: np.ndarray) -> None:  # fmt: skip
        self.rng, self.n_products, self.n_users, self.t0 = rng, n_products, n_users, t0_ms
        # --- clock: relative activity per minute of the two days (local time)
        m = np.arange(MINUTES)
        day = m // 1440
        h = (m % 1440) / 60.0
        shift = np.where(weekend[day], 1.5, 0.0)
        hl = (h - shift) % 24.0
        prof = (
            0.08
            + 0.35 * _bump(hl, 8.5, 0.8)
            + 0.6 * _bump(hl, 12.5, 0.9)
            + 0.35 * ((hl > 9.5) & (hl < 18.0))
            + 1.0 * _bump(hl, 21.0, 1.6)
        ) * np.where(weekend[day], 1.25, 1.0)
        self.profile = prof / prof.mean()
        self.local_hour = h.astype(np.int64)  # wall-clock local hour of each minute (category mix)
        # operational clock of word of mouth (seconds of "mean activity" since t0), per minute edge
        self.op = np.concatenate([[0.0], np.cumsum(np.sqrt(self.profile)) * 60.0])
        self.op = self.op * (MINUTES * 60.0 / self.op[-1])
        # --- categories and their daily seasonality
        nc = len(CATEGORIES)
        self.cat_share = rng.dirichlet(np.full(nc, 2.0))
        amp, phase = rng.uniform(0.0, 0.7, nc), rng.uniform(0.0, 24.0, nc)
        hours = np.arange(24)[:, None]
        mix = self.cat_share[None, :] * (1 + amp[None, :] * np.cos(2 * np.pi * (hours - phase[None, :]) / 24))
        self.cat_mix = mix / mix.sum(axis=1, keepdims=True)  # [hour, category]
        # --- products
        alpha = rng.uniform(1.3, 1.6)
        self.category = rng.choice(nc, n_products, p=self.cat_share)
        self.pop = (1.0 + rng.pareto(alpha, n_products)) * rng.gamma(0.5, 1.0, n_products)
        self.rank = np.empty(n_products, np.int64)
        self.by_rank = np.argsort(-self.pop, kind="stable")
        self.rank[self.by_rank] = np.arange(n_products)
        self.n_sellers = 2_500
        self.seller = rng.choice(self.n_sellers, n_products, p=_norm(rng.lognormal(0, 1.5, self.n_sellers)))
        med = rng.lognormal(3.0, 0.8, nc)
        self.price = med[self.category] * rng.lognormal(0.0, 0.5, n_products)
        self.like_p = rng.uniform(0.06, 0.18, nc)
        self.cart_p = rng.uniform(0.03, 0.09, nc)
        self.buy_p = rng.uniform(0.3, 0.55, nc)
        self.prod_in_cat = [np.flatnonzero(self.category == c) for c in range(nc)]
        self.prod_sampler = [_Sampler(self.pop[ix], ix) for ix in self.prod_in_cat]
        # --- users: casual, regulars, deal hunters
        u = rng.random(n_users)
        self.hunter = u < 0.005
        regular = (u >= 0.005) & (u < 0.255)
        self.activity = np.where(
            self.hunter,
            rng.uniform(40, 80, n_users),
            np.where(regular, rng.lognormal(np.log(4.0) - 0.5, 1.0, n_users),
                     rng.lognormal(np.log(0.6) - 0.6, 1.1, n_users)),
        )  # fmt: skip
        self.fav = rng.choice(nc, n_users, p=self.cat_share)
        self.user_sampler = _Sampler(self.activity)
        self.fan_sampler = []
        for c in range(nc):
            ix = np.flatnonzero(self.fav == c)
            self.fan_sampler.append(_Sampler(self.activity[ix], ix) if ix.size else self.user_sampler)
        self.hunters = np.flatnonzero(self.hunter)
        self.next_user = n_users  # brand-new accounts get ids from here

    # ------------------------------------------------------------- helpers
    def new_accounts(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_user, self.next_user + n, dtype=np.int64)
        self.next_user += n
        return ids

    def minute_times(self, weights: np.ndarray, n: int) -> np.ndarray:
        """n times (s since t0) with density proportional to weights over the minute grid."""
        minutes = _Sampler(weights)(self.rng, n)
        return (minutes + self.rng.random(n)) * 60.0

    def wall_from_op(self, start_s: float, op_s: np.ndarray) -> np.ndarray:
        """Wall seconds since t0 of operational seconds after ``start_s``."""
        grid = np.arange(MINUTES + 1) * 60.0
        o0 = np.interp(start_s, grid, self.op)
        return np.interp(o0 + op_s, self.op, grid, right=np.inf)

    def products_for(self, cats: np.ndarray) -> np.ndarray:
        """A product per visit of each category, by popularity within it."""
        out = np.empty(cats.size, np.int64)
        for c in np.unique(cats):
            sel = cats == c
            out[sel] = self.prod_sampler[c](self.rng, int(sel.sum()))
        return out

    def users_for(self, cats: np.ndarray) -> np.ndarray:
        """A user per visit: half from the category's fans, half from everyone, by activity."""
        out = self.user_sampler(self.rng, cats.size)
        fans = self.rng.random(cats.size) < 0.5
        for c in np.unique(cats[fans]):
            sel = fans & (cats == c)
            out[sel] = self.fan_sampler[c](self.rng, int(sel.sum()))
        return out

    def funnel(self, out: _Out, ts: np.ndarray, product: np.ndarray, user: np.ndarray, tag: int = -1, *,
               like: Any = None, share: float = 0.015, comment: float = 0.02, cart: Any = None,
               buy: Any = None, review: float = 0.1, view: bool = True) -> None:  # fmt: skip
        """One visit each: a view, then maybe like, comment, share, re-view, cart, then purchase."""
        rng, n = self.rng, ts.size
        if n == 0:
            return
        cat = self.category[product]
        like = self.like_p[cat] if like is None else like
        cart = self.cart_p[cat] if cart is None else cart
        buy = self.buy_p[cat] if buy is None else buy
        if view:
            out.add(ts, product, user, VIEW, tag)
        for kind, p, scale in ((LIKE, like, 40.0), (COMMENT, comment, 120.0), (SHARE, share, 60.0)):
            m = rng.random(n) < p
            out.add(ts[m] + rng.exponential(scale, int(m.sum())), product[m], user[m], kind, tag)
        m = rng.random(n) < review
        out.add(ts[m] + 60 + rng.exponential(900.0, int(m.sum())), product[m], user[m], VIEW, tag)
        c = rng.random(n) < cart
        tc = ts[c] + rng.lognormal(np.log(90.0), 0.7, int(c.sum()))
        out.add(tc, product[c], user[c], CART, tag)
        b = rng.random(int(c.sum())) < (buy if np.ndim(buy) == 0 else np.asarray(buy)[c])
        out.add(
            tc[b] + rng.lognormal(np.log(200.0), 0.8, int(b.sum())), product[c][b], user[c][b], PURCHASE, tag
        )


def _norm(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _bass_times(rng: np.random.Generator, n: int, p: float, q: float, u_lo: float = 0.0,
                u_hi: float = 1.0) -> np.ndarray:  # fmt: skip
    """Adoption times (s) of n adopters of a Bass diffusion, by the inverse of its closed form."""
    u = rng.uniform(u_lo, u_hi, n)
    r, b = q / p, p + q
    return np.log((1 + r * u) / (1 - u)) / b


def write_market(
    seed: int,
    out_dir: Path,
    *,
    events_per_day: int = 100_000,
    n_products: int = 20_000,
    n_users: int = 60_000,
) -> dict[str, Any]:
    """Write ``out_dir/events.ndjson`` and ``out_dir/truth.json``; return the truth."""
    rng = np.random.default_rng([seed, 0x3A2E7])
    scale = events_per_day / 100_000
    dow = int(rng.integers(3, 7))  # Thursday .. Sunday
    tz_h = float(rng.integers(-6, 10))
    t0 = START_MONDAY_MS + dow * DAY_MS - int(tz_h * HOUR_MS)  # local midnight
    t1_s = 2 * 86_400.0
    weekend = np.array([(dow + d) % 7 >= 5 for d in range(2)])
    score_from_s = float(rng.uniform(14, 20)) * 3600
    mk = _Market(rng, n_products, n_users, t0, tz_h, weekend)
    out = _Out()
    rows: list[dict[str, Any]] = []  # every truth row that owns events (tag = its index)
    truth: dict[str, Any] = {
        "generator": "market",
        "seed": seed,
        "score_from_ts": t0 + int(score_from_s * 1000),
        "family": {"n_days": 2, "events_per_day": events_per_day, "n_products": n_products,
                   "n_users": n_users,
                   "weekend": weekend.tolist(), "tz_h": tz_h},  # fmt: skip
        "viral": [], "spikes": [], "bursts": [], "slow_risers": [], "steady": [], "attacks": [],
        "banned_sellers": [], "attack_accounts": {}, "crawlers": [],
    }  # fmt: skip
    used: set[int] = set(mk.by_rank[:30].tolist())

    def pick(lo: float, hi: float) -> int:
        """An unused product of popularity rank in [lo, hi) (fractions of the catalogue if < 1)."""
        a = int(lo * n_products) if lo < 1 else int(lo)
        b = int(hi * n_products) if hi <= 1 else int(hi)
        while True:
            p = int(mk.by_rank[rng.integers(a, max(b, a + 1))])
            if p not in used:
                used.add(p)
                return p

    def tag(row: dict[str, Any]) -> int:
        rows.append(row)
        return len(rows) - 1

    def pid(p: int) -> str:
        return f"p{int(_hash64(np.array([p]), 0x51)[0]):016x}"

    def sid(s: int) -> str:
        return f"s{int(_hash64(np.array([s]), 0x52)[0]):016x}"

    def onset_in(lo_h: float, tail_h: float) -> float:
        return float(rng.uniform(score_from_s + lo_h * 3600, t1_s - tail_h * 3600))

    # ------------------------------------------------------------------ base traffic: visits
    n_visits = int(events_per_day * 2 / 1.27)
    vt = mk.minute_times(mk.profile, n_visits)
    hour = mk.local_hour[(vt // 60).astype(np.int64)]
    vc = np.empty(n_visits, np.int64)
    for hh in range(24):
        sel = hour == hh
        vc[sel] = rng.choice(len(CATEGORIES), int(sel.sum()), p=mk.cat_mix[hh])
    vp = mk.products_for(vc)
    vu = mk.users_for(vc)
    # restock: a popular product out of stock for 8-20 h (its views drop to 40 %, no carts)
    restock_p = pick(20, 300)
    out_from = float(rng.uniform(2, 10)) * 3600
    restock_at = min(out_from + float(rng.uniform(8, 20)) * 3600, t1_s - 4 * 3600)
    restock_at = max(restock_at, score_from_s + 1800)
    gone = (vp == restock_p) & (vt >= out_from) & (vt < restock_at)
    drop = gone & (rng.random(n_visits) < 0.6)
    keep = ~drop
    vt, vp, vu, gone = vt[keep], vp[keep], vu[keep], gone[keep]
    reorder = rng.random(vt.size) < 0.03
    mk.funnel(out, vt[~reorder & ~gone], vp[~reorder & ~gone], vu[~reorder & ~gone])
    mk.funnel(out, vt[gone], vp[gone], vu[gone], cart=0.0)
    mk.funnel(out, vt[reorder & ~gone], vp[reorder & ~gone], vu[reorder & ~gone], view=False, cart=0.85,
              buy=0.6, like=0.0, share=0.0, comment=0.0, review=0.0)  # fmt: skip
    for p in mk.by_rank[:5].tolist():
        truth["steady"].append(
            {"product_id": pid(p), "seller_id": sid(mk.seller[p]), "kind": "head", "events": 0}
        )

    # ------------------------------------------------------------------ organic viral: Bass diffusion
    n_viral = int(rng.integers(5, 13))
    buckets = [("fast", "medium", "slow")[i % 3] for i in rng.permutation(n_viral + (-n_viral) % 3)][:n_viral]
    if n_viral >= 3:
        buckets = ["fast", "medium", "slow"] + buckets[3:]
    next_video = [0]

    def bass_viral(p: int, bucket: str, seller: int, onset_s: float) -> dict[str, Any]:
        lo, hi = BUCKET_RANGES[bucket]
        doubling = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        q = np.log(2.0) / doubling
        pq = float(np.exp(rng.uniform(np.log(0.003), np.log(0.03))))
        target = float(np.exp(rng.uniform(np.log(300 * scale), np.log(30_000 * scale))))
        m_size = max(int(target / 1.95), 60)
        row = {"product_id": pid(p), "seller_id": sid(seller), "category": CATEGORIES[mk.category[p]],
               "onset_ts": t0 + int(onset_s * 1000), "doubling_s": round(doubling, 1), "bucket": bucket,
               "shape": "bass", "p": round(pq * q, 8), "q": round(q, 6), "market": m_size,
               "events": 0}  # fmt: skip
        k = tag(row)
        # adopters: deal hunters (early), brand-new accounts, everyone else by activity (fans x2)
        n_hunt = min(int(rng.uniform(0.15, 0.35) * mk.hunters.size), m_size // 4)
        hunters = rng.choice(mk.hunters, n_hunt, replace=False)
        n_new = int(rng.uniform(0.05, 0.2) * m_size)
        w = mk.activity**0.7 * np.where(mk.fav == mk.category[p], 2.0, 1.0)
        w[hunters] = 0.0
        n_rest = max(m_size - n_hunt - n_new, 1)
        rest = rng.choice(n_users, min(n_rest, int((w > 0).sum())), replace=False, p=_norm(w))
        adopters = np.concatenate([hunters, mk.new_accounts(n_new), rest])
        t_op = np.concatenate([
            _bass_times(rng, n_hunt, pq * q, q, 0.0, 0.3),
            _bass_times(rng, adopters.size - n_hunt, pq * q, q),
        ])  # fmt: skip
        t_op[int(np.argmin(t_op))] = 0.0  # the launch post is the first adoption, at the onset
        ts = mk.wall_from_op(onset_s, t_op)
        ok = ts < t1_s
        ts, adopters = ts[ok], adopters[ok]
        first = int(np.argmin(ts))
        vid = next_video[0]
        next_video[0] += 1
        out.add(ts[first : first + 1], p, adopters[first], SHARE, k, vid)  # the launch post
        prods = np.full(ts.size, p)
        cart = min(float(mk.cart_p[mk.category[p]]) * rng.uniform(1.5, 3.0), 0.35)
        mk.funnel(out, ts, prods, adopters, k, like=rng.uniform(0.2, 0.35), share=rng.uniform(0.06, 0.14),
                  comment=0.05, cart=cart, buy=rng.uniform(0.35, 0.55), review=0.25)  # fmt: skip
        srt = np.sort(ts)
        row["doubling_measured_s"] = round(float(srt[255] - srt[31]) / 3, 1) if srt.size > 256 else None
        return row

    for i in range(n_viral):
        p = pick(0.02, 0.9)
        truth["viral"].append(bass_viral(p, buckets[i], int(mk.seller[p]), onset_in(0.25, 5.0)))

    # ------------------------------------------------------------------ hard negatives
    # flash sales: a scheduled price drop at a round time, front-loaded, cart- and purchase-heavy
    sales = []
    for _ in range(int(rng.integers(2, 5))):
        p = pick(50, 2000)
        start = float(np.floor(onset_in(0.0, 2.0) / 1800) * 1800)
        dur = float(rng.uniform(5, 20)) * 60
        n = int(rng.uniform(150, 1200) * max(scale, 0.25))
        row = {"product_id": pid(p), "seller_id": sid(mk.seller[p]), "kind": "flash_sale",
               "ts": t0 + int(start * 1000), "duration_s": round(dur),
               "price_cut": round(float(rng.uniform(0.2, 0.5)), 2),
               "events": 0}  # fmt: skip
        k = tag(row)
        n_h = min(int(0.4 * n), mk.hunters.size)
        users = np.concatenate([rng.choice(mk.hunters, n_h, replace=False), mk.user_sampler(rng, n - n_h)])
        t = start + dur * rng.beta(0.7, 2.5, n)
        mk.funnel(out, t, np.full(n, p), users, k, like=0.05, share=0.03, cart=0.6, buy=0.6, review=0.05)
        pre = int(0.1 * n)  # wishlist views before the sale
        out.add(start - rng.uniform(0, 1800, pre), p, users[:pre], VIEW, k)
        truth["spikes"].append(row)
        sales.append((p, start, dur, row["price_cut"]))
    # restock: the back-in-stock push
    n = int(rng.uniform(300, 1500) * max(scale, 0.25))
    row = {"product_id": pid(restock_p), "seller_id": sid(mk.seller[restock_p]), "kind": "restock",
           "ts": t0 + int(restock_at * 1000), "out_of_stock_from_ts": t0 + int(out_from * 1000),
           "events": 0}  # fmt: skip
    k = tag(row)
    t = restock_at + rng.exponential(rng.uniform(20, 60) * 60, n)
    mk.funnel(out, t, np.full(n, restock_p), mk.user_sampler(rng, n), k, cart=0.4, buy=0.5, share=0.01)
    truth["spikes"].append(row)
    # influencer mentions: a one-off video, exponential decay, new followers, view and like heavy
    for _ in range(int(rng.integers(2, 4))):
        p = pick(0.01, 0.8)
        start = onset_in(0.0, 2.0)
        n = int(np.exp(rng.uniform(np.log(200), np.log(2500))) * max(scale, 0.25) / 1.4)
        row = {"product_id": pid(p), "seller_id": sid(mk.seller[p]), "shape": "influencer_mention",
               "ts": t0 + int(start * 1000), "events": 0}  # fmt: skip
        k = tag(row)
        n_new = int(0.3 * n)
        users = np.concatenate([mk.new_accounts(n_new), mk.user_sampler(rng, n - n_new)])
        t = start + rng.exponential(rng.uniform(3, 15) * 60, n)
        vid = next_video[0]
        next_video[0] += 1
        out.add(np.array([start]), p, users[0], SHARE, k, vid)
        mk.funnel(out, t, np.full(n, p), users, k, like=0.3, share=0.08, cart=0.02, buy=0.3, review=0.05)
        truth["bursts"].append(row)
    # slow risers: a visit rate doubling every 6-18 h
    for _ in range(int(rng.integers(2, 4))):
        p = pick(100, 1000)
        t_s = float(rng.uniform(2, 12)) * 3600
        dbl = float(rng.uniform(4, 10)) * 3600
        minutes = np.arange(MINUTES) * 60.0
        growth = np.clip(np.exp2(np.maximum(minutes - t_s, 0) / dbl) - 1, 0, 60)
        c = mk.category[p]
        base_rate = n_visits / MINUTES * mk.cat_share[c] * mk.pop[p] / mk.pop[mk.prod_in_cat[c]].sum()
        lam = mk.profile * base_rate * growth
        n = int(rng.poisson(lam.sum()))
        row = {"product_id": pid(p), "seller_id": sid(mk.seller[p]), "onset_ts": t0 + int(t_s * 1000),
               "doubling_s": round(dbl), "events": 0}  # fmt: skip
        k = tag(row)
        if n:
            t = mk.minute_times(lam, n)
            mk.funnel(out, t, np.full(n, p), mk.user_sampler(rng, n), k, share=0.02)
        truth["slow_risers"].append(row)
    # crawlers: views only, many products in order; one rotates its user id
    for j in range(int(rng.integers(2, 5))):
        start = float(rng.uniform(0, t1_s - 6 * 3600))
        n = int(rng.uniform(2000, 8000) * max(scale, 0.1))
        t = start + np.cumsum(rng.uniform(2, 6, n))
        prods = (int(rng.integers(n_products)) + np.arange(n) * int(rng.choice([1, 7, 13]))) % n_products
        if j == 0:
            chunk = int(rng.integers(40, 81))
            ids = mk.new_accounts(n // chunk + 1)
            users = ids[np.arange(n) // chunk]
        else:
            users = np.full(n, mk.new_accounts(1)[0])
        out.add(t, prods, users, VIEW)
        truth["crawlers"].append({"start_ts": t0 + int(start * 1000), "views": n, "rotating": j == 0,
                                  "users": np.unique(users).tolist()})  # fmt: skip

    # ------------------------------------------------------------------ attacks
    accounts: dict[str, list[int]] = {}

    def attack_row(kind: str, aid: str, p: int, seller: int, onset_s: float) -> int:
        row = {"product_id": pid(p), "seller_id": sid(seller), "kind": kind, "attack_id": aid,
               "onset_ts": t0 + int(onset_s * 1000), "events": 0}  # fmt: skip
        truth["attacks"].append(row)
        return tag(row)

    def organic_history(users: np.ndarray, lo_s: float, hi_s: float, visits: np.ndarray) -> None:
        """Each account browses organically: visits[i] visits in [lo_s, hi_s), popular products."""
        u = np.repeat(users, visits)
        t = rng.uniform(lo_s, hi_s, u.size)
        mk.funnel(out, t, mk.products_for(rng.choice(len(CATEGORIES), u.size, p=mk.cat_share)), u)

    def sellers_products(seller: int, n: int) -> list[int]:
        own = [int(x) for x in np.flatnonzero(mk.seller == seller) if int(x) not in used]
        rng.shuffle(own)
        got = own[:n]
        while len(got) < n:  # not enough listed: the seller lists new products (tail products)
            got.append(pick(0.5, 1.0))
        for x in got:
            used.add(x)
        mk.seller[got] = seller
        return got

    def mid_seller() -> int:
        counts = np.bincount(mk.seller, minlength=mk.n_sellers)
        return int(rng.choice(np.flatnonzero((counts >= 3) & (counts <= 40))))

    def ramp_times(start: float, dur: float, n: int, doubling: float) -> np.ndarray:
        """n times on an exponential ramp (rate ~ 2 ** (t / doubling)) over dur seconds."""
        g = np.log(2.0) / doubling
        u = rng.random(n)
        return start + np.log1p(u * np.expm1(g * dur)) / g

    # funnel_ring: aged accounts that browse organically, one action chain per product, funnel walked
    aid = f"funnel_ring-{seed}"
    k_ring = int(rng.uniform(300, 900) * max(scale, 0.2))
    ring = mk.new_accounts(k_ring)
    organic_history(ring, 0, 3 * 3600, np.ones(k_ring, np.int64))  # registered on day 1's first hours
    organic_history(ring, 3 * 3600, t1_s, rng.poisson(rng.lognormal(np.log(3.0), 0.9, k_ring)))
    seller = mid_seller()
    base_on = onset_in(0.5, 3.0)
    for p in sellers_products(seller, int(rng.integers(2, 5))):
        on = base_on + float(rng.uniform(0, 40)) * 60
        k = attack_row("funnel_ring", aid, p, seller, on)
        n = min(int(rng.uniform(500, 1500) * max(scale, 0.2) / 2.2), k_ring)
        users = rng.choice(ring, n, replace=False)
        t = ramp_times(on, float(rng.uniform(40, 90)) * 60, n, float(rng.uniform(6, 15)) * 60)
        t[0] = on
        mk.funnel(out, t, np.full(n, p), users, k, like=0.3, share=0.05, cart=0.45, buy=0.55, review=0.15)
    accounts[aid] = ring.tolist()

    # rotating_ring: an aged core on every product, fresh warmed-up helpers used once each
    aid = f"rotating_ring-{seed}"
    core = mk.new_accounts(int(rng.uniform(120, 250) * max(scale, 0.2)))
    organic_history(core, 0, t1_s, rng.poisson(rng.lognormal(np.log(4.0), 0.8, core.size)))
    sellers = [mid_seller() for _ in range(int(rng.integers(2, 4)))]
    n_prod = int(rng.integers(3, 6))
    on = onset_in(0.5, 3.0 + 0.7 * n_prod)
    helpers_all = []
    for j in range(n_prod):
        seller = sellers[j % len(sellers)]
        p = sellers_products(seller, 1)[0]
        k = attack_row("rotating_ring", aid, p, seller, on)
        n_core = int(core.size * rng.uniform(0.8, 1.0))
        n_help = int(n_core * rng.uniform(0.43, 0.82))  # 30-45 % of the audience
        n = n_core + n_help
        helpers = mk.new_accounts(n_help)
        warm = rng.integers(2, 7, n_help)
        organic_history(helpers, max(on - float(rng.uniform(1, 3)) * 3600, 0), on, warm)
        users = np.concatenate([rng.choice(core, n_core, replace=False), helpers])
        users = users[rng.permutation(n)]
        t = ramp_times(on, float(rng.uniform(40, 80)) * 60, n, float(rng.uniform(8, 15)) * 60)
        t[0] = on
        mk.funnel(out, t, np.full(n, p), users, k, like=0.25, share=0.05, cart=0.4, buy=0.55, review=0.1)
        helpers_all.append(helpers)
        on = min(on + float(rng.uniform(40, 180)) * 60, t1_s - 2.5 * 3600)
    accounts[aid] = np.concatenate([core, *helpers_all]).tolist()

    # crowdturf: real users paid per task, products of distinct sellers staggered past the 6 h memory
    aid = f"crowdturf-{seed}"
    crowd = rng.choice(n_users, int(rng.uniform(300, 900) * max(scale, 0.2)), replace=False,
                       p=_norm(mk.activity))  # fmt: skip
    n_prod = int(rng.integers(3, 6))
    gap = float(rng.uniform(6.5, 8.0)) * 3600
    on = float(rng.uniform(score_from_s + 1800, score_from_s + 3 * 3600))
    for _ in range(n_prod):
        if on > t1_s - 2.5 * 3600:
            on = float(rng.uniform(score_from_s + 1800, t1_s - 2.5 * 3600))  # wrap: no more room
        seller = mid_seller()
        p = sellers_products(seller, 1)[0]
        k = attack_row("crowdturf", aid, p, seller, on)
        users = rng.choice(crowd, int(crowd.size * rng.uniform(0.3, 0.5)), replace=False)
        dur = float(rng.uniform(60, 120)) * 60
        t = np.clip(on + rng.logistic(dur * 0.6, dur / 8, users.size), on, t1_s - 1)  # a logistic ramp
        t[0] = on
        mk.funnel(out, t, np.full(users.size, p), users, k, like=0.25, share=0.04, cart=0.4, buy=0.55)
        on += gap
    accounts[aid] = crowd.tolist()

    # slow_drip: real users, each once, a long exponential ramp
    aid = f"slow_drip-{seed}"
    drip_all = []
    for _ in range(int(rng.integers(1, 3))):
        seller = mid_seller()
        p = sellers_products(seller, 1)[0]
        on = onset_in(0.25, 5.5)
        k = attack_row("slow_drip", aid, p, seller, on)
        n = int(rng.uniform(600, 2500) * max(scale, 0.2) / 2.0)
        users = rng.choice(n_users, n, replace=False, p=_norm(mk.activity**0.5))
        t = ramp_times(on, float(rng.uniform(3, 5)) * 3600, n, float(rng.uniform(30, 60)) * 60)
        t[0] = on
        mk.funnel(out, t, np.full(n, p), users, k, like=0.2, share=0.03, cart=0.3, buy=0.5)
        drip_all.append(users)
    accounts[aid] = np.concatenate(drip_all).tolist()

    # bot_farm: fresh accounts hammering one product with drawn types
    aid = f"bot_farm-{seed}"
    farm = mk.new_accounts(int(rng.integers(10, 31)))
    seller = mid_seller()
    p = sellers_products(seller, 1)[0]
    on = onset_in(0.25, 2.0)
    k = attack_row("bot_farm", aid, p, seller, on)
    n = int(rng.uniform(1000, 2000) * max(scale, 0.2))
    t = on + np.sort(rng.uniform(0, 1200, n))
    t[0] = on
    out.add(t, p, rng.choice(farm, n), rng.choice(6, n, p=[0.6, 0.2, 0.02, 0.08, 0.07, 0.03]), k)
    accounts[aid] = farm.tolist()

    # banned_viral: a genuinely viral product of a banned seller
    banned_seller = mk.n_sellers + 7  # a seller id of its own
    p = pick(0.3, 0.95)
    mk.seller[p] = banned_seller
    row = bass_viral(p, ("fast", "medium")[int(rng.integers(2))], banned_seller, onset_in(0.25, 4.0))
    truth["banned_sellers"].append(row["seller_id"])
    truth["attacks"].append({"product_id": row["product_id"], "seller_id": row["seller_id"],
                             "kind": "banned_viral", "attack_id": f"banned_viral-{seed}",
                             "onset_ts": row["onset_ts"], "events": 0, "bucket": row["bucket"]})  # fmt: skip
    banned_row = row
    accounts[f"banned_viral-{seed}"] = []

    # ------------------------------------------------------------------ delivery faults and writing
    ts, product, user, kind, tags, video = out.arrays()
    keep = (ts >= 0) & (ts < t1_s)
    ts, product, user, kind, tags, video = (
        ts[keep],
        product[keep],
        user[keep],
        kind[keep],
        tags[keep],
        video[keep],
    )
    # price at the time: flash-sale cuts
    price = mk.price[product].copy()
    for p, start, dur, cut in sales:
        m = (product == p) & (ts >= start) & (ts < start + dur)
        price[m] *= 1 - cut
    n = ts.size
    # clock skew per device (3 % of users), one device 25 h ahead
    skewed = (_hash64(user, 0x5E) % np.uint64(100)) < np.uint64(3)
    skew = np.where(skewed, (_hash64(user, 0x5F) % np.uint64(40_001)).astype(np.float64) / 1000 - 20.0, 0.0)
    ahead_user = int(mk.user_sampler(rng, 1)[0])
    skew = np.where(user == ahead_user, 25 * 3600.0, skew)
    stamped = ts + skew
    late = rng.random(n) < 0.03
    offline = rng.random(n) < 0.003
    delay = np.where(late, rng.uniform(0, 120, n), 0.0) + np.where(offline, rng.uniform(120, 1200, n), 0.0)
    arrival = ts + delay + rng.uniform(0, 0.5, n)
    idx = np.arange(n)
    dup = rng.random(n) < 0.008
    d_idx = idx[dup]
    all_idx = np.concatenate([idx, d_idx])
    all_arrival = np.concatenate([arrival, arrival[dup] + rng.uniform(0, 30, d_idx.size)])
    order = all_idx[np.lexsort((np.arange(all_idx.size), all_arrival))]
    # truth counts (each event once, duplicates not counted)
    counts = np.bincount(tags[tags >= 0], minlength=len(rows))
    for i, row in enumerate(rows):
        row["events"] = int(counts[i])
    truth["attacks"][-1]["events"] = banned_row["events"]
    base_counts = np.bincount(product, minlength=mk.n_products)
    for row in truth["steady"]:
        row["events"] = int(base_counts[mk.by_rank[truth["steady"].index(row)]])
    truth["attack_accounts"] = {a: [f"u{int(x):016x}" for x in _hash64(np.asarray(v, np.int64), 0x53)]
                                for a, v in accounts.items()}  # fmt: skip
    for c in truth["crawlers"]:
        c["users"] = [f"u{int(x):016x}" for x in _hash64(np.asarray(c["users"], np.int64), 0x53)]
    truth["late_share"] = round(float((late | offline).mean()), 4)
    truth["duplicate_share"] = round(float(dup.mean()), 4)
    truth["skewed_user"] = f"u{int(_hash64(np.array([ahead_user]), 0x53)[0]):016x}"
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(
        out_dir / "events.ndjson", seed, t0, order, stamped, product, user, kind, price, video, mk, pid, sid
    )
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _write(path: Path, seed: int, t0: int, order: np.ndarray, ts: np.ndarray, product: np.ndarray,
           user: np.ndarray, kind: np.ndarray, price: np.ndarray, video: np.ndarray, mk: _Market,
           pid: Any, sid: Any) -> None:  # fmt: skip
    prod_names = {int(p): pid(int(p)) for p in np.unique(product)}
    seller_names = {int(s): sid(int(s)) for s in np.unique(mk.seller)}
    user_hex = _hash64(user, 0x53)
    qty = 1 + (_hash64(np.arange(product.size), seed) % np.uint64(5) == np.uint64(0)).astype(np.int64)
    ms = t0 + np.round(ts * 1000).astype(np.int64)
    lines = []
    with path.open("w") as f:
        for i in order.tolist():
            p, k = int(product[i]), int(kind[i])
            extra = f',"quantity":{int(qty[i])}' if k >= CART else ""
            if video[i] >= 0:
                extra += f',"video_id":"v{seed}-{int(video[i])}","creator_id":"cr{seed}-{int(video[i])}"'
            lines.append(
                f'{{"event_id":"m{seed}-{i}","ts":{int(ms[i])},"type":"{TYPES[k]}","product_id":"{prod_names[p]}",'
                f'"user_id":"u{int(user_hex[i]):016x}","seller_id":"{seller_names[int(mk.seller[p])]}",'
                f'"category":"{CATEGORIES[int(mk.category[p])]}","price":{float(price[i]):.2f}{extra}}}\n'
            )
            if len(lines) >= 100_000:
                f.write("".join(lines))
                lines = []
        f.write("".join(lines))
