"""A third, independent traffic generator: users in sessions, a follower graph, diffusion cascades.

Detection was tuned on :mod:`viraltrend.family`; ``benchmarks/foreign.py`` checks it on a Hawkes
branching process over Zipf users.  This module draws traffic with a third set of mechanics,
written from scratch (no code shared with either), so that ``bench_family.py --generator agents``
tells whether detection and the trust guard generalise.  Nobody tunes on it: every seed is an
evaluation seed.

Mechanics
---------
* **Clock**: two days from a Monday 00:00 UTC, a local time zone (UTC-8..+9) per seed, a daily
  profile with a lunch peak (about 12:45), a higher evening peak (about 20:45), a daytime plateau
  and a quiet night (about 10 % of the evening peak at 04:00).  ``score_from_ts`` lies 12-24 h
  after the start (a warm-up whose length is drawn).
* **Catalogue**: lognormal popularity (sigma 1.6-2.2, not Zipf), 40 categories of Dirichlet
  weights, sellers owning 1-200 products (Pareto sizes), lognormal prices; per category a like,
  share, cart and purchase-given-cart rate.
* **Users**: activity lognormal (sigma 1.0-1.5), so sessions per day are heavy-tailed; each user has
  a favourite category.  Base traffic is **sessions**: a start time from the daily profile, a user
  drawn by activity, 1 + geometric views (mean 3.3) spaced by exponential gaps (mean 45 s), 70 % of
  them in the session's category; every view may be followed by a like, a share and an
  add-to-cart, and a cart by a purchase (the per-category funnel).
* **Viral products**: an **independent cascade** on a follower graph.  Each product has a finite
  market (existing users drawn by activity, plus 10-30 % brand-new accounts that join because of
  the trend).  Every market member has a heavy-tailed follower count (lognormal, mean about 27);
  half of a sharer's followers are its neighbours on a ring of the market (small world), half are
  drawn by attractiveness (preferential attachment).  A creator's share at the onset exposes 20-150
  members; an exposed member views with probability ``p_view`` (0.2-0.4) after an exponential
  delay, and a viewer shares with the probability that makes the mean offspring ``R`` (1.5-2.5);
  a share exposes the sharer's followers (each member at most once, so the market saturates).  The
  delays are scaled so that the early growth doubles every ``doubling_s`` (log-uniform 60-3,600 s);
  the target size is log-uniform 300-20,000 events (a cascade that dies out before 300 events or a
  quarter of its target is drawn again).  Viewers then run the funnel (like, comment, cart,
  purchase) and 15 % view again.  ``onset_ts`` is the creator's share (the first seeded exposure,
  also the product's first cascade event); ``bucket`` is fast (doubling <= 300 s), medium (<= 1200 s)
  or slow, from the drawn doubling as in ``foreign.py``; ``doubling_measured_s`` is a third of the
  time the cascade's cumulative count took to go from 32 to 256 events.
* **Hard negatives** (none is organic viral; promoting one costs precision):
  - ``spikes``: push notifications (a sharp start, exponential decay 1-10 min, 100-3,000 events,
    90 % views, distinct users) and livestream plateaus (a flat 10-40 min, 300-3,000 events, a
    shopping-heavy funnel, then off; ``duration_s`` in the row);
  - ``bursts``: a creator video that links 2-4 products; each gets 200-2,000 events decaying as a
    power law ``(1 + t / c) ** -1.6`` over about 30 min, viewers shared between the linked products;
  - ``slow_risers``: 1-2 mid-ranked products whose session share grows steadily (doubling 6-24 h);
  - ``steady``: the 5 head products, and one **price drop** on a head product (ranks 5-30): its
    price falls 20-50 % and its session share steps up 3-8x and stays so until the end (hours).
    Truth calls the price drop ``steady`` (``"kind": "price_drop"``), not viral: it is a level
    change with no diffusion (no share recruits anybody; the same session traffic buys more).  A
    board of trends should not promote it; a deals board might want to, so the report counts it
    apart (the ``steady`` column).
* **Attacks** (``attacks``, one row per attacked product, ``kind`` and ``attack_id``):
  - ``aged_ring``: 30-400 accounts that browse organically in sessions from the start, then boost
    2-6 products of 1-3 sellers (existing ones) in 20-90 min, each product 400-3,000 events from a
    random 50-90 % of the ring, an organic-looking funnel with purchases, a convex ramp;
  - ``camouflaged_ring``: 50-500 accounts with a little organic history that boost 1-4 products
    over 30-120 min and spend 30-60 % of their attack events on popular organic products;
  - ``slow_drip``: 1-3 products ramp exponentially (doubling 20-60 min) over 2-6 h through a pool of
    aged accounts that each act only once or twice on them (600-3,000 events a product);
  - ``bot_farm``: 5-40 fresh accounts, 1-2 products, 800-3,000 events each in 10-40 min;
  - ``banned_viral``: a genuinely viral cascade of a banned seller (its own seller id, listed in
    ``banned_sellers``).
  Every attack's account ids are in ``truth["attack_accounts"][attack_id]``.
* **Delivery**: 2-5 % of events arrive 0-120 s late; the file is in arrival order.

User, product and seller ids are opaque (a bijective hash of an integer), so an attack account's id
does not give it away.

>>> import pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     truth = write_agents(2, pathlib.Path(tmp), events_per_day=15_000, n_products=3_000, n_users=5_000)
>>> {v["bucket"] for v in truth["viral"]} <= {"fast", "medium", "slow"}
True
>>> sorted({a["kind"] for a in truth["attacks"]})
['aged_ring', 'banned_viral', 'bot_farm', 'camouflaged_ring', 'slow_drip']
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path
from typing import Any

import numpy as np

MIN_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
START_TS_MS = 1_772_409_600_000  # 2026-03-02T00:00:00Z, a Monday
TYPES = ("view", "like", "comment", "share", "add_to_cart", "purchase")
VIEW, LIKE, COMMENT, SHARE, CART, PURCHASE = range(6)
N_CATEGORIES = 40
RING_MIX = np.array([0.58, 0.14, 0.03, 0.06, 0.12, 0.07])  # organic-looking, purchases included
BOT_MIX = np.array([0.75, 0.20, 0.0, 0.05, 0.0, 0.0])


def _opaque(i: np.ndarray, salt: int) -> np.ndarray:
    """A bijection of 32-bit ints (odd multiplier mod 2**32, xor salt): ids that reveal nothing."""
    return ((i.astype(np.uint64) * np.uint64(2_654_435_761)) % np.uint64(2**32)) ^ np.uint64(salt)


class _Events:
    """Event columns being drawn (users are ints; ids are made at writing)."""

    def __init__(self) -> None:
        self.cols: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, ts: Any, product: Any, user: Any, kind: Any) -> None:
        ts = np.asarray(ts, np.int64)
        n = ts.size
        self.cols.append(
            (
                ts,
                np.broadcast_to(np.asarray(product, np.int64), (n,)).copy(),
                np.broadcast_to(np.asarray(user, np.int64), (n,)).copy(),
                np.broadcast_to(np.asarray(kind, np.int8), (n,)).copy(),
            )
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate([c[i] for c in self.cols]) for i in range(4))  # type: ignore[return-value]


class _Cdf:
    """Draw indices (or mapped ids) in proportion to weights, by inverse CDF."""

    def __init__(self, weights: np.ndarray, ids: np.ndarray | None = None) -> None:
        c = np.cumsum(np.asarray(weights, np.float64))
        self.cdf = c / c[-1]
        self.ids = ids

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), self.cdf.size - 1)
        return i if self.ids is None else self.ids[i]


def _profile(tz_h: float, lunch: float, evening: float) -> np.ndarray:
    """Relative activity per minute of the two days: quiet night, lunch and evening peaks."""
    h = (np.arange(2 * 1440) / 60.0 + tz_h) % 24.0

    def bump(mu: float, sd: float) -> np.ndarray:
        d = np.minimum(np.abs(h - mu), 24.0 - np.abs(h - mu))
        return np.exp(-0.5 * (d / sd) ** 2)

    day = 1.0 / (1.0 + np.exp(-(h - 7.5) * 1.5)) / (1.0 + np.exp((h - 23.5) * 1.5))
    return 0.10 + 0.35 * day + lunch * bump(12.75, 1.1) + evening * bump(20.75, 1.7)


class _World:
    """Catalogue, users, clock, and the session machinery every source of organic traffic uses."""

    def __init__(self, rng: np.random.Generator, n_products: int, n_users: int, t0: int) -> None:
        self.rng, self.t0 = rng, t0
        self.n_products, self.n_users = n_products, n_users
        self.minute_w = _profile(float(rng.integers(-8, 10)), rng.uniform(0.6, 1.0), rng.uniform(0.9, 1.3))
        self.minute_cdf = np.cumsum(self.minute_w) / self.minute_w.sum()
        # catalogue
        self.pop = rng.lognormal(0.0, rng.uniform(1.6, 2.2), n_products)
        self.rank_order = np.argsort(-self.pop)  # rank -> product
        self.rank_of = np.empty(n_products, np.int64)
        self.rank_of[self.rank_order] = np.arange(n_products)
        cat_w = rng.dirichlet(np.full(N_CATEGORIES, 1.5))
        self.category = rng.choice(N_CATEGORIES, n_products, p=cat_w)
        self.by_cat = np.argsort(self.category, kind="stable")  # products grouped by category
        cum = np.cumsum(self.pop[self.by_cat])
        self.cat_cum = np.concatenate([[0.0], cum])
        bounds = np.searchsorted(self.category[self.by_cat], np.arange(N_CATEGORIES + 1))
        self.cat_lo, self.cat_hi = self.cat_cum[bounds[:-1]], self.cat_cum[bounds[1:]]
        self.global_pop = _Cdf(self.pop)
        self.cat_pick = _Cdf(np.maximum(self.cat_hi - self.cat_lo, 1e-12))
        sizes: list[int] = []
        while sum(sizes) < n_products:
            sizes.append(int(min(200, max(1, int(rng.pareto(1.1) + 1)))))
        self.seller = np.repeat(np.arange(len(sizes)), sizes)[:n_products][rng.permutation(n_products)]
        self.n_sellers = len(sizes)
        self.price = np.round(np.exp(rng.normal(3.0, 1.0, n_products)), 2)
        self.like_rate = rng.uniform(0.03, 0.10, N_CATEGORIES)
        self.share_rate = rng.uniform(0.003, 0.015, N_CATEGORIES)
        self.cart_rate = np.exp(rng.normal(np.log(0.04), 0.5, N_CATEGORIES)).clip(0.005, 0.15)
        self.buy_rate = rng.uniform(0.2, 0.5, N_CATEGORIES)
        # users
        self.activity = rng.lognormal(0.0, rng.uniform(1.0, 1.5), n_users)
        self.fav_cat = self.cat_pick.draw(rng, n_users)
        self.next_uid = n_users  # accounts made later (newcomers, attack accounts)

    def new_accounts(self, n: int) -> np.ndarray:
        out = np.arange(self.next_uid, self.next_uid + n, dtype=np.int64)
        self.next_uid += n
        return out

    def session_starts(self, n: int, lo: int, hi: int) -> np.ndarray:
        """``n`` times in ``[lo, hi)`` following the daily profile."""
        grid = np.arange(self.minute_cdf.size + 1)
        cdf = np.concatenate([[0.0], self.minute_cdf])
        c_lo = np.interp((lo - self.t0) / MIN_MS, grid, cdf)
        c_hi = np.interp((hi - self.t0) / MIN_MS, grid, cdf)
        u = c_lo + self.rng.random(n) * (c_hi - c_lo)
        m = np.interp(u, cdf, grid)
        return np.clip(self.t0 + (m * MIN_MS).astype(np.int64), lo, hi - 1)

    def in_category(self, cats: np.ndarray) -> np.ndarray:
        """A product of each given category, by popularity."""
        u = self.cat_lo[cats] + self.rng.random(cats.size) * (self.cat_hi[cats] - self.cat_lo[cats])
        i = np.minimum(np.searchsorted(self.cat_cum, u, side="right") - 1, self.n_products - 1)
        return self.by_cat[np.maximum(i, 0)]

    def funnel(
        self, ev: _Events, ts: np.ndarray, product: np.ndarray, user: np.ndarray, boost: float = 1.0
    ) -> int:
        """Views at ``ts``, and the per-category funnel after each (like, share, cart -> purchase)."""
        rng = self.rng
        cat = self.category[product]
        ev.add(ts, product, user, VIEW)
        size = n = ts.size
        for kind, rate, gap in (
            (LIKE, self.like_rate[cat], 15_000),
            (SHARE, self.share_rate[cat], 30_000),
            (CART, np.minimum(self.cart_rate[cat] * boost, 0.6), 40_000),
        ):
            hit = rng.random(size) < rate
            t = ts[hit] + rng.exponential(gap, int(hit.sum())).astype(np.int64)
            ev.add(t, product[hit], user[hit], kind)
            n += t.size
            if kind == CART:
                buy = rng.random(t.size) < np.minimum(self.buy_rate[cat[hit]] * boost**0.5, 0.9)
                ev.add(t[buy] + rng.exponential(90_000, int(buy.sum())).astype(np.int64),
                       product[hit][buy], user[hit][buy], PURCHASE)  # fmt: skip
                n += int(buy.sum())
        return n

    def sessions(
        self,
        ev: _Events,
        n_views: int,
        lo: int,
        hi: int,
        users: np.ndarray | None = None,
        product_weight: Any = None,
    ) -> None:
        """About ``n_views`` views in sessions starting in ``[lo, hi)``; users drawn by activity
        (or uniformly from ``users``); ``product_weight(ts) -> (products, prob)`` may redirect views."""
        rng = self.rng
        n_sess = max(1, int(n_views / 3.33))
        start = self.session_starts(n_sess, lo, hi)
        if users is None:
            who = _Cdf(self.activity).draw(rng, n_sess)
        else:
            who = users[rng.integers(0, users.size, n_sess)]
        length = rng.geometric(0.3, n_sess)
        sess = np.repeat(np.arange(n_sess), length)
        gaps = rng.exponential(45_000.0, sess.size)
        first = np.concatenate([[0], np.cumsum(length)[:-1]])
        cum = np.cumsum(gaps)
        offset = cum - np.repeat(cum[first] - gaps[first], length)
        ts = start[sess] + offset.astype(np.int64)
        fav = self.fav_cat[who % self.n_users]  # accounts made later: some user's taste
        s_cat = np.where(rng.random(n_sess) < 0.6, fav, self.cat_pick.draw(rng, n_sess))
        in_cat = rng.random(sess.size) < 0.7
        product = np.where(in_cat, self.in_category(s_cat[sess]), self.global_pop.draw(rng, sess.size))
        if product_weight is not None:
            product = product_weight(ts, product)
        keep = ts < hi
        self.funnel(ev, ts[keep], product[keep], who[sess][keep])


def _cascade(
    world: _World,
    rng: np.random.Generator,
    onset: int,
    t_end: int,
    doubling_s: float,
    size: int,
    r0: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]] | None:
    """An independent cascade on a small-world / preferential follower graph over a finite market.

    Returns (ts, users, kinds, facts) of the cascade's events, or None if it died out."""
    p_view = rng.uniform(0.2, 0.4)
    per_viewer = 1.0 + 0.25 + 0.05 + 0.15 + 0.12  # view, like, comment, repeat view, cart+purchase (+share)
    m = int(size / per_viewer / p_view * 1.15) + 30
    new_share = rng.uniform(0.1, 0.3)
    n_new = int(m * new_share)
    old = _Cdf(world.activity).draw(rng, m - n_new)
    market = np.concatenate([old, world.new_accounts(n_new)])
    rng.shuffle(market)
    followers_n = np.minimum(np.exp(rng.normal(2.8, 1.0, m)).astype(np.int64) + 1, 3000)
    kbar = float(followers_n.mean())
    p_share = min(0.9, r0 / (kbar * p_view))
    attract = _Cdf(rng.pareto(1.5, m) + 1.0)
    # delays: exposure -> view ~ Exp(b), view -> share ~ Exp(a); growth rate r: R = (1 + r a)(1 + r b)
    r = np.log(2.0) / doubling_s
    qa, qb = 0.35, 0.65
    d = (-1.0 + np.sqrt(1.0 + 4.0 * qa * qb * (r0 - 1.0))) / (2.0 * qa * qb * r)
    a_ms, b_ms = qa * d * 1000.0, qb * d * 1000.0
    exposed = np.zeros(m, bool)
    ts: list[float] = []
    who: list[int] = []
    heap: list[tuple[float, int]] = []

    def expose(t: float, idx: np.ndarray) -> None:
        idx = np.unique(idx)
        idx = idx[~exposed[idx]]
        exposed[idx] = True
        view = idx[rng.random(idx.size) < p_view]
        tv = t + rng.exponential(b_ms, view.size)
        ts.extend(tv.tolist())
        who.extend(view.tolist())
        share = rng.random(view.size) < p_share
        for j, t_s in zip(
            view[share].tolist(), (tv[share] + rng.exponential(a_ms, int(share.sum()))).tolist(), strict=True
        ):
            if t_s < t_end:
                heapq.heappush(heap, (t_s, j))

    expose(float(onset), rng.choice(m, int(rng.integers(20, 151)), replace=False))
    shares_t: list[float] = []
    shares_who: list[int] = []
    while heap:
        t, j = heapq.heappop(heap)
        shares_t.append(t)
        shares_who.append(j)
        k = int(followers_n[j])
        local = j + rng.integers(-k, k + 1, (k + 1) // 2)
        far = attract.draw(rng, k // 2)
        expose(t, np.concatenate([local % m, far]))
    tv = np.asarray(ts, np.float64)
    wv = np.asarray(who, np.int64)
    keep = tv < t_end
    tv, wv = tv[keep], wv[keep]
    if tv.size < 10:
        return None
    # the funnel of viewers: like, comment, repeat view, cart -> purchase; plus the shares
    out_t = [np.array([float(onset)]), tv]
    out_u = [np.array([-1]), wv]  # -1: the creator (a user drawn below)
    out_k = [np.array([SHARE]), np.full(tv.size, VIEW)]
    for kind, p, gap in (
        (LIKE, 0.25, 20_000),
        (COMMENT, 0.05, 60_000),
        (VIEW, 0.15, 600_000),
        (CART, 0.09, 45_000),
    ):
        hit = rng.random(tv.size) < p
        t2 = tv[hit] + rng.exponential(gap, int(hit.sum()))
        out_t.append(t2)
        out_u.append(wv[hit])
        out_k.append(np.full(t2.size, kind))
        if kind == CART:
            buy = rng.random(t2.size) < 0.35
            out_t.append(t2[buy] + rng.exponential(120_000, int(buy.sum())))
            out_u.append(wv[hit][buy])
            out_k.append(np.full(int(buy.sum()), PURCHASE))
    out_t.append(np.asarray(shares_t))
    out_u.append(np.asarray(shares_who, np.int64))
    out_k.append(np.full(len(shares_t), SHARE))
    t_all = np.concatenate(out_t)
    u_idx = np.concatenate(out_u)
    k_all = np.concatenate(out_k).astype(np.int8)
    keep = t_all < t_end
    t_all, u_idx, k_all = t_all[keep].astype(np.int64), u_idx[keep], k_all[keep]
    creator = int(_Cdf(world.activity).draw(rng, 1)[0])
    users = np.where(u_idx < 0, creator, market[np.maximum(u_idx, 0)])
    facts = {
        "R": round(r0, 2),
        "p_view": round(p_view, 3),
        "p_share": round(p_share, 3),
        "market": m,
        "new_user_share": round(new_share, 3),
    }
    return t_all, users, k_all, facts


def _measured_doubling(ts: np.ndarray) -> float | None:
    s = np.sort(ts)
    if s.size < 256:
        return None
    return round(float(s[255] - s[31]) / 3000.0, 1)


def write_agents(
    seed: int,
    out_dir: Path,
    *,
    events_per_day: int = 150_000,
    n_products: int = 30_000,
    n_users: int = 40_000,
) -> dict[str, Any]:
    """Write ``out_dir/events.ndjson`` and ``out_dir/truth.json``; return the truth."""
    rng = np.random.default_rng([seed, 0xA6E7])
    t0, t1 = START_TS_MS, START_TS_MS + 2 * DAY_MS
    score_from = t0 + int(rng.uniform(12, 24) * HOUR_MS)
    w = _World(rng, n_products, n_users, t0)
    ev = _Events()
    truth: dict[str, Any] = {
        "generator": "agents",
        "seed": seed,
        "score_from_ts": score_from,
        "family": {
            "n_days": 2,
            "events_per_day": events_per_day,
            "n_products": n_products,
            "n_users": n_users,
        },
        "viral": [],
        "spikes": [],
        "bursts": [],
        "slow_risers": [],
        "steady": [],
        "attacks": [],
        "banned_sellers": [],
        "attack_accounts": {},
    }
    used: set[int] = set(w.rank_order[:30].tolist())
    head = w.rank_order[:5]

    def pick(lo_rank: float, hi_rank: float) -> int:
        while True:
            rk = int(np.exp(rng.uniform(np.log(lo_rank), np.log(hi_rank))))
            p = int(w.rank_order[min(rk, n_products - 1)])
            if p not in used:
                used.add(p)
                return p

    def onset_time(tail_h: float = 3.0) -> int:
        return int(rng.uniform(score_from + 10 * MIN_MS, t1 - tail_h * HOUR_MS))

    def pid(p: int) -> str:
        return f"p{int(_opaque(np.array([p]), 0x5EED)[0]):08x}"

    def sid(s: int) -> str:
        return f"s{int(s)}"

    # ---------------------------------------------------------------- redirections of session views
    drop_p = int(w.rank_order[int(rng.integers(5, 30))])
    drop_at = onset_time(6.0)
    drop_x = rng.uniform(3.0, 8.0)
    risers = [pick(300, 3000) for _ in range(int(rng.integers(1, 3)))]
    riser_at = [int(rng.uniform(t0 + 4 * HOUR_MS, score_from)) for _ in risers]
    riser_dbl = [rng.uniform(6, 24) * HOUR_MS for _ in risers]
    total_pop = w.pop.sum()

    def redirect(ts: np.ndarray, product: np.ndarray) -> np.ndarray:
        out = product.copy()
        # price drop: the product's share of views x drop_x after drop_at
        extra = (drop_x - 1.0) * w.pop[drop_p] / total_pop
        hit = (ts >= drop_at) & (rng.random(ts.size) < extra)
        out[hit] = drop_p
        floor = float(np.quantile(w.pop, 0.99))
        for p, at, dbl in zip(risers, riser_at, riser_dbl, strict=True):
            grow = np.minimum(2.0 ** (np.maximum(ts - at, 0) / dbl), 16.0) - 1.0
            share = grow * max(w.pop[p], floor) / total_pop
            out[(ts >= at) & (rng.random(ts.size) < share)] = p
        return out

    w.sessions(ev, int(2 * events_per_day / 1.17), t0, t1, product_weight=redirect)
    truth["steady"] = [
        {"product_id": pid(p), "events": 0, "kind": "head", "rank": int(w.rank_of[p])} for p in head.tolist()
    ]
    truth["steady"].append(
        {
            "product_id": pid(drop_p),
            "events": 0,
            "kind": "price_drop",
            "rank": int(w.rank_of[drop_p]),
            "ts": drop_at,
            "level_x": round(drop_x, 2),
        }
    )
    price_cut = rng.uniform(0.5, 0.8)
    for p, at, dbl in zip(risers, riser_at, riser_dbl, strict=True):
        truth["slow_risers"].append(
            {"product_id": pid(p), "onset_ts": at, "events": 0, "doubling_s": round(dbl / 1000.0)}
        )

    # ---------------------------------------------------------------- viral cascades
    def viral(kind: str) -> dict[str, Any]:
        p = pick(50, n_products)
        seller = int(w.seller[p])
        if kind == "banned_viral":
            seller = w.n_sellers + 1
            w.seller[p] = seller
        doubling = float(np.exp(rng.uniform(np.log(60), np.log(3600))))
        size = int(np.exp(rng.uniform(np.log(300), np.log(20_000))))
        onset = onset_time()
        for _ in range(50):
            got = _cascade(w, rng, onset, t1, doubling, size, rng.uniform(1.5, 2.5))
            if got is not None and got[0].size >= max(300, size // 4):
                break
        assert got is not None
        ts, users, kinds, facts = got
        ev.add(ts, p, users, kinds)
        return {
            "product_id": pid(p),
            "seller_id": sid(seller),
            "rank": int(w.rank_of[p]),
            "onset_ts": onset,
            "events": int(ts.size),
            "events_first_10min": int((ts < onset + 10 * MIN_MS).sum()),
            "doubling_s": round(doubling, 1),
            "doubling_measured_s": _measured_doubling(ts),
            "bucket": "fast" if doubling <= 300 else "medium" if doubling <= 1200 else "slow",
            "shape": "cascade",
            "target_size": size,
            "baseline_per_min": round(float(2 * events_per_day * w.pop[p] / total_pop / 2880), 4),
            "kind": kind,
            **facts,
        }

    for _ in range(int(rng.integers(6, 11))):
        truth["viral"].append(viral("viral"))

    # ---------------------------------------------------------------- hard negatives
    def distinct_users(n: int) -> np.ndarray:
        return _Cdf(w.activity).draw(rng, n)

    for i in range(int(rng.integers(4, 8))):
        p, onset = pick(20, n_products), onset_time()
        if i % 2 == 0:  # push notification: sharp start, exponential decay, mostly views
            n = int(np.exp(rng.uniform(np.log(100), np.log(3000))))
            tau = rng.uniform(1, 10) * MIN_MS
            ts = onset + rng.exponential(tau, n).astype(np.int64)
            users = distinct_users(n)
            ev.add(ts, p, users, np.where(rng.random(n) < 0.9, VIEW, LIKE))
            cart = rng.random(n) < 0.02
            ev.add(ts[cart] + 30_000, p, users[cart], CART)
            row = {"shape": "push", "tau_s": round(tau / 1000.0)}
            n += int(cart.sum())
        else:  # livestream: a flat plateau, shopping-heavy, then off
            n_v = int(rng.uniform(300, 3000) / 1.4)
            dur = int(rng.uniform(10, 40) * MIN_MS)
            ts = np.sort(onset + rng.integers(0, dur, n_v))
            n = w.funnel(ev, ts, np.full(n_v, p), distinct_users(n_v), boost=4.0)
            row = {"shape": "livestream", "duration_s": dur // 1000}
        truth["spikes"].append({"product_id": pid(p), "ts": onset, "events": n, **row})
    for _ in range(int(rng.integers(1, 3))):  # creator videos linking 2-4 products
        onset, c = onset_time(), rng.uniform(1, 4) * MIN_MS
        audience = distinct_users(3000)
        for _ in range(int(rng.integers(2, 5))):
            p, n = pick(20, n_products), int(rng.uniform(200, 2000))
            # power-law decay (1 + t/c)^-1.6: inverse CDF of a Lomax with shape 0.6, cut at 30 min
            u = rng.random(n) * (1 - (1 + 30 * MIN_MS / c) ** -0.6)
            ts = onset + (c * ((1 - u) ** (-1 / 0.6) - 1)).astype(np.int64)
            users = audience[rng.integers(0, audience.size, n)]
            ev.add(
                ts, p, users, np.where(rng.random(n) < 0.85, VIEW, np.where(rng.random(n) < 0.6, LIKE, SHARE))
            )
            truth["bursts"].append({"product_id": pid(p), "ts": onset, "events": n, "shape": "creator_video"})

    # ---------------------------------------------------------------- attacks
    def attack(
        kind: str, p: int, ts: np.ndarray, users: np.ndarray, kinds: np.ndarray, aid: str, k: int
    ) -> None:
        ev.add(ts, p, users, kinds)
        truth["attacks"].append(
            {
                "product_id": pid(p),
                "seller_id": sid(w.seller[p]),
                "kind": kind,
                "onset_ts": int(ts.min()),
                "events": int(ts.size),
                "accounts": k,
                "attack_id": aid,
            }
        )

    def mix(m: np.ndarray, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(np.cumsum(m) / m.sum(), rng.random(n)), 5).astype(np.int8)

    def ramp(start: int, dur: float, n: int, g: float) -> np.ndarray:
        return start + (dur * rng.random(n) ** (1.0 / (g + 1.0))).astype(np.int64)

    def aged(k: int, per_day: float, lo: int) -> np.ndarray:
        acc = w.new_accounts(k)
        days = (t1 - lo) / DAY_MS
        w.sessions(ev, int(k * per_day * days), lo, t1, users=acc)
        return acc

    # aged ring: organic sessions from the start, then 2-6 products of 1-3 sellers in 20-90 min
    k = int(rng.integers(30, 401))
    ring = aged(k, rng.uniform(4, 12), t0)
    aid = f"aged_ring-{seed}"
    truth["attack_accounts"][aid] = ring
    start, win = onset_time(), rng.uniform(20, 90) * MIN_MS
    sellers = [int(w.seller[pick(100, n_products)]) for _ in range(int(rng.integers(1, 4)))]
    for i in range(int(rng.integers(2, 7))):
        pool = np.flatnonzero(w.seller == sellers[i % len(sellers)])
        pool = pool[~np.isin(pool, list(used))]
        p = int(pool[0]) if pool.size else pick(100, n_products)
        used.add(p)
        n = int(rng.uniform(400, 3000))
        sub = ring[rng.random(k) < rng.uniform(0.5, 0.9)]
        sub = sub if sub.size else ring
        off = rng.uniform(0, win / 3)
        attack("aged_ring", p, ramp(start + int(off), win - off, n, rng.uniform(1, 3)),
               sub[rng.integers(0, sub.size, n)], mix(RING_MIX, n), aid, k)  # fmt: skip

    # camouflaged ring: a little history, boosts 1-4 products, 30-60 % of its events on popular products
    k = int(rng.integers(50, 501))
    ring = aged(k, rng.uniform(1, 3), t0 + int(rng.uniform(0, 12) * HOUR_MS))
    aid = f"camouflaged_ring-{seed}"
    truth["attack_accounts"][aid] = ring
    start, win = onset_time(), rng.uniform(30, 120) * MIN_MS
    camo = rng.uniform(0.3, 0.6)
    for _ in range(int(rng.integers(1, 5))):
        p, n = pick(100, n_products), int(rng.uniform(400, 3000))
        attack("camouflaged_ring", p, ramp(start, win, n, rng.uniform(0.5, 2)),
               ring[rng.integers(0, k, n)], mix(RING_MIX, n), aid, k)  # fmt: skip
        n_c = int(n * camo / (1 - camo))
        pop_p = w.rank_order[rng.integers(0, 200, n_c)]
        w.funnel(ev, ramp(start, win, n_c, 0.0), pop_p, ring[rng.integers(0, k, n_c)], boost=2.0)

    # slow drip: 1-3 products ramp over 2-6 h through aged accounts acting once or twice each
    aid = f"slow_drip-{seed}"
    drip_accounts: list[np.ndarray] = []
    start = onset_time(6.0)
    for _ in range(int(rng.integers(1, 4))):
        p, n = pick(100, n_products), int(rng.uniform(600, 3000))
        k = int(n / 1.5)
        acc = aged(k, rng.uniform(0.5, 2), t0)
        drip_accounts.append(acc)
        dur = rng.uniform(2, 6) * HOUR_MS
        dbl = rng.uniform(20, 60) * MIN_MS
        lam = np.log(2) / dbl
        u = rng.random(n)  # exponential growth over [0, dur]: inverse CDF
        ts = start + (np.log1p(u * np.expm1(lam * dur)) / lam).astype(np.int64)
        users = np.concatenate([acc, acc[rng.random(k) < 0.5]])[:n]
        users = np.concatenate([users, acc[rng.integers(0, k, n - users.size)]]) if users.size < n else users
        attack("slow_drip", p, np.sort(ts), rng.permutation(users), mix(RING_MIX, n), aid, k)
    truth["attack_accounts"][aid] = np.concatenate(drip_accounts)

    # bot farm: few fresh accounts, many events
    k = int(rng.integers(5, 41))
    farm = w.new_accounts(k)
    aid = f"bot_farm-{seed}"
    truth["attack_accounts"][aid] = farm
    start, win = onset_time(), rng.uniform(10, 40) * MIN_MS
    for _ in range(int(rng.integers(1, 3))):
        p, n = pick(100, n_products), int(rng.uniform(800, 3000))
        attack("bot_farm", p, start + rng.integers(0, int(win), n), farm[rng.integers(0, k, n)],
               mix(BOT_MIX, n), aid, k)  # fmt: skip

    # a banned seller's genuinely viral product
    banned = viral("banned_viral")
    truth["banned_sellers"].append(banned["seller_id"])
    truth["attacks"].append(
        {x: banned[x] for x in ("product_id", "seller_id", "onset_ts", "events")}
        | {"kind": "banned_viral", "accounts": 0, "attack_id": f"banned_viral-{seed}"}
    )
    truth["attack_accounts"][f"banned_viral-{seed}"] = np.zeros(0, np.int64)

    # ---------------------------------------------------------------- delivery and writing
    ts, product, user, kind = ev.arrays()
    keep = (ts >= t0) & (ts < t1)
    ts, product, user, kind = ts[keep], product[keep], user[keep], kind[keep]
    late = rng.random(ts.size) < rng.uniform(0.02, 0.05)
    arrival = ts + np.where(late, rng.integers(0, 120_001, ts.size), 0)
    order = np.lexsort((np.arange(ts.size), arrival))
    price = w.price[product] * np.where((product == drop_p) & (ts >= drop_at), price_cut, 1.0)
    counts = np.bincount(product, minlength=n_products)
    for row in truth["steady"] + truth["slow_risers"]:
        row["events"] = 0
    by_pid = {pid(p): p for p in np.flatnonzero(counts).tolist()}
    for key in ("steady", "slow_risers"):
        for row in truth[key]:
            row["events"] = int(counts[by_pid[row["product_id"]]]) if row["product_id"] in by_pid else 0
    truth["attack_accounts"] = {
        a: [f"u{int(x):08x}" for x in _opaque(np.asarray(v, np.int64), 0xACC7)]
        for a, v in truth["attack_accounts"].items()
    }
    truth["late_share"] = round(float(late.mean()), 4)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / "events.ndjson", seed, ts[order], product[order], user[order], kind[order],
           price[order], w)  # fmt: skip
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _write(
    path: Path,
    seed: int,
    ts: np.ndarray,
    product: np.ndarray,
    user: np.ndarray,
    kind: np.ndarray,
    price: np.ndarray,
    w: _World,
) -> None:
    prod_ids = _opaque(np.arange(w.n_products), 0x5EED)
    user_hex = _opaque(user, 0xACC7)
    seller = w.seller[product]
    cat = w.category[product]
    qty = np.where(kind == PURCHASE, 1 + (user_hex % np.uint64(3)).astype(np.int64) // 2, 1)
    with path.open("w") as out:
        lines = []
        for i, (t, p, u, k, s, c, pr, q) in enumerate(
            zip(
                ts.tolist(),
                product.tolist(),
                user_hex.tolist(),
                kind.tolist(),
                seller.tolist(),
                cat.tolist(),
                price.tolist(),
                qty.tolist(),
                strict=True,
            )  # fmt: skip
        ):
            extra = f',"quantity":{q}' if k >= CART else ""
            lines.append(
                f'{{"event_id":"a{seed}-{i}","ts":{t},"type":"{TYPES[k]}","product_id":"p{int(prod_ids[p]):08x}",'
                f'"user_id":"u{u:08x}","seller_id":"s{s}","category":"c{c}","price":{pr:.2f}{extra}}}\n'
            )
            if len(lines) >= 100_000:
                out.write("".join(lines))
                lines = []
        out.write("".join(lines))
