"""A fifth, independent traffic generator: Taobao-resampled sessions, SEIR epidemics on contact graphs.

Detection was tuned on :mod:`viraltrend.family` and checked on ``benchmarks/foreign.py`` (Hawkes over
Zipf users), ``benchmarks/agents.py`` (sessions, follower graph, cascades) and ``benchmarks/market.py``
(Bass diffusion, adaptive rings).  This module draws traffic with a fifth set of mechanics, written
from scratch (no code shared with any of them; read only the README, ``shared/contract/`` and the
truth keys ``bench_family.py`` reads; never the engine's detection or trust code or its thresholds),
so that ``bench_family.py --generator seir`` tells whether detection and the guard generalise.  The
evaluation seeds (1-6) are the lead's; tuning / report seeds are 101-112.

Mechanics
---------
* **Clock**: two days from local midnight (UTC+8, as the Taobao sample) of a drawn weekday; a daily
  profile (the sample's hourly shares: quiet 02:00-05:00, an evening peak 20:00-22:00) times a
  **weekly** factor (the sample's per-day volumes: Friday +8 %, the weekend +25-30 %), interpolated
  per minute.  ``score_from_ts`` lies 12-20 h after the start.
* **Base traffic resampled from the real Taobao sample** (``shared/data/taobao_userbehavior_sample.csv.gz``):
  sessions (a gap over 30 min splits a user's events) whose lengths, in-session gaps and users'
  activity (events per day) are drawn from the sample's own empirical distributions, its type mix
  (pv 89.8 %, fav 2.8 % -> ``like``, cart 5.3 %, buy 2.1 %; a few ``share`` and ``comment`` taken
  from the views, since Taobao logs none), its category chaining (the next event stays in the
  category 41 % of the time), its repeat rate on an item (17.6 % of (user, item) pairs recur) and,
  notably, its **blind carts**: 74 % of the sample's carts and purchases have no earlier view of the
  item by that user; per seed 35-75 % of base carts and purchases come with no view.  Categories are
  Zipf (slope -1.03, as the sample's top 500), products lognormal within them, sellers Pareto-sized.
  Without the file it falls back to the statistics measured from it (constants ``_TAOBAO_*``).
* **Organic viral products** (8-12 a seed): an **SEIR epidemic on a random contact graph** of its
  market (a configuration model with negative-binomial degrees, mean 4-12).  An infectious member
  passes the product to each neighbour at rate ``beta`` during a gamma-distributed infectious
  period; an exposed neighbour adopts after a **latent period** (gamma, shape 2-4), its first event
  being a view (then the funnel: like, share, comment, cart, purchase, re-views).  1-4 index cases
  adopt at the onset (the first one carries ``video_id``/``creator_id``); an index case whose chain
  dies out early is drawn again.  Time is simulated unit-free and scaled so that the early
  doubling (a third of the time from the 32nd to the 256th adoption) equals ``doubling_s`` drawn
  log-uniform in the bucket (fast 60-300 s, medium 300-1,200 s, slow 1,200-3,600 s, cycling so each
  seed has all three): the SEIR's growth law (a latent delay, a saturating graph) is neither a
  Hawkes, a cascade nor Bass.  Sizes 300-30,000 events (the graph has about 1.2x the target's
  adopters; the epidemic's final size decides).  Adopters: 5-25 % brand-new accounts, the rest
  users by activity.
* **Hard negatives**: ``spikes`` flash (1-20 min, 100-2,000 events, a box or a triangle, distinct
  users, view-heavy with carts) and ``restock`` (a popular product sells nothing for 6-16 h, then
  300-1,500 buyers decay over 15-60 min); ``bursts`` (a creator video once, 200-2,000 events, decay
  2-15 min, 20 % new accounts); ``slow_risers`` (2-3, rate doubling every 3-10 h); ``steady`` (the
  5 head products).
* **Attacks**: the issue-13 family, every parameter drawn per attack: 5-2,000 accounts
  (log-uniform); fresh (first seen at the attack) or aged (organic sessions from the first hour);
  an organic-looking type mix with purchases (a drawn share of buyers skip the view); 1-10 products
  from one existing seller, several sellers or a new seller; concurrent or staggered by 1-20 min or
  0.5-6 h; a ramp (linear, exponential, logistic or a step) over 20 min-4 h; camouflage (the
  accounts also run organic sessions during the attack) or not.  ``kind`` names the draw: ``farm``
  (< 50 accounts), ``fresh_ring``, ``aged_ring``, ``camouflaged_ring``; every drawn parameter is in
  the row.  Plus ``banned_viral``: a genuine SEIR viral of a seller in ``banned_sellers``.  Every
  attack's account ids are in ``truth["attack_accounts"][attack_id]``.
* **Delivery**: 2-5 % of events arrive 0-150 s late, 0.2 % are offline uploads 5-30 min late, 0.5-1 %
  are delivered twice (same ``event_id``), 2 % of users' clocks are skewed N(0, 15 s); the file is in
  arrival order.

Ids are opaque (``p``/``u``/``s`` + 16 hex digits of a keyed hash), categories ``c`` + a number.

>>> import pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     truth = write_seir(2, pathlib.Path(tmp), events_per_day=15_000, n_products=3_000, n_users=6_000)
>>> sorted({v["bucket"] for v in truth["viral"]})
['fast', 'medium', 'slow']
>>> "banned_viral" in {a["kind"] for a in truth["attacks"]}
True
"""

from __future__ import annotations

import gzip
import heapq
import json
from pathlib import Path
from typing import Any

import numpy as np

#: the real sample, read from ``shared/data`` beside the checkout (its licence keeps it out of the repo)
TAOBAO = Path(__file__).resolve().parents[2] / "shared" / "data" / "taobao_userbehavior_sample.csv.gz"

# --- statistics measured from the Taobao sample (84,440 events in 2017-11-25..12-03, 815 users) ---
_TAOBAO_TYPE_MIX = {"view": 0.8981, "like": 0.0279, "add_to_cart": 0.0533, "purchase": 0.0207}
#: events per user per day: lognormal fit of the 815 users (mu, sigma of log)
_TAOBAO_ACTIVITY = (2.072, 0.916)
#: session length (events; a gap > 30 min splits): P(1) = 0.31, quartiles 1 / 3 / 7, p90 15, p99 40, mean 6.0
_TAOBAO_SESSION_Q = ((0.0, 1), (0.31, 1), (0.40, 2), (0.50, 3), (0.75, 7), (0.90, 15), (0.99, 40), (1.0, 120))
#: in-session gaps (s), lognormal fit of the positive gaps (median 54 s, p90 337 s)
_TAOBAO_GAP = (4.026, 1.364)
#: events per hour of day (UTC+8), relative to the mean hour
_TAOBAO_HOURLY = (0.85, 0.38, 0.19, 0.11, 0.13, 0.18, 0.38, 0.63, 0.78, 0.96, 1.07, 1.1,
                  0.97, 1.22, 1.2, 1.33, 1.3, 1.1, 1.18, 1.57, 1.88, 2.12, 1.9, 1.46)  # fmt: skip
#: events per day of week, Monday first (the sample's Mon-Fri and its two weekends, averaged)
_TAOBAO_WEEKLY = (8335, 8867, 8785, 8616, 9455, 10108, 10082)
_TAOBAO_SAME_CATEGORY = 0.407  # P(the next event of a user is in the same category)
_TAOBAO_REPEAT_ITEM = 0.176  # share of (user, item) pairs with more than one event
_TAOBAO_BLIND_CART = 0.738  # carts and purchases with no earlier view of the item by the user
_CATEGORY_ZIPF = 1.03  # rank-frequency slope of the sample's top 500 categories

TYPES = ("view", "like", "comment", "share", "add_to_cart", "purchase")
V, L, C, S, A, P = range(6)
BUCKETS = (("fast", 60.0, 300.0), ("medium", 300.0, 1200.0), ("slow", 1200.0, 3600.0))
DAY_S = 86_400


def taobao_stats(path: Path = TAOBAO) -> dict[str, Any]:
    """Empirical arrays from the sample (session lengths, gaps, activity), or the built-in fallback."""
    if not path.exists():
        return {"source": "built-in"}
    users, ts = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            parts = line.rstrip().split(",")
            if len(parts) == 5:
                users.append(int(parts[0]))
                ts.append(int(parts[4]))
    u, t = np.asarray(users), np.asarray(ts)
    keep = (t >= 1511539200) & (t < 1511539200 + 9 * DAY_S)
    u, t = u[keep], t[keep]
    order = np.lexsort((t, u))
    u, t = u[order], t[order]
    new_user = np.r_[True, u[1:] != u[:-1]]
    gap = np.r_[0, np.diff(t)]
    start = new_user | (gap > 1800)
    sid = np.cumsum(start) - 1
    lengths = np.bincount(sid)
    gaps = gap[~start]
    gaps = gaps[gaps > 0].astype(np.float64)
    per_user = np.bincount(np.cumsum(new_user) - 1) / 9.0
    return {"source": "taobao", "lengths": lengths, "gaps": gaps, "activity": per_user}


def _hex_ids(prefix: str, idx: np.ndarray, salt: int) -> list[str]:
    x = (idx.astype(np.uint64) + np.uint64(salt & 0xFFFFFFFF)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(32)
    return [f"{prefix}{int(v):016x}" for v in x]


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


class _Events:
    """Column buffers: ts (ms), type, product, user, content (video/creator index, -1 none)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, ts: Any, typ: Any, product: Any, user: Any, content: Any = -1) -> None:
        ts = np.asarray(ts, dtype=np.float64)
        n = ts.size
        if n == 0:
            return

        def col(x: Any, dtype: Any) -> np.ndarray:
            a = np.asarray(x, dtype=dtype)
            return np.full(n, a, dtype=dtype) if a.ndim == 0 else a

        self.parts.append((ts, col(typ, np.int8), col(product, np.int64), col(user, np.int64),
                           col(content, np.int32)))  # fmt: skip

    def columns(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(5))


class _World:
    """Catalogue, users, clock and the session machinery shared by every traffic source."""

    def __init__(self, rng: np.random.Generator, seed: int, events_per_day: int, n_products: int,
                 n_users: int, stats: dict[str, Any]) -> None:  # fmt: skip
        self.rng, self.seed, self.stats = rng, seed, stats
        self.n_products, self.n_users = n_products, n_users
        dow = int(rng.integers(0, 7))  # the first day's weekday, Monday = 0
        self.dow = dow
        # a Monday 2026-03-02 00:00 UTC+8 plus whole weeks drawn, plus the weekday
        monday = 1772380800 - 8 * 3600
        self.t0 = monday + int(rng.integers(0, 30)) * 7 * DAY_S + dow * DAY_S
        self.days = 2
        self.span = self.days * DAY_S
        # per-minute intensity: hourly shape (interpolated) x weekly factor
        minutes = np.arange(self.span // 60)
        hour = (minutes / 60.0) % 24
        hourly = np.asarray(_TAOBAO_HOURLY)
        h0 = np.floor(hour - 0.5).astype(int) % 24
        frac = (hour - 0.5) - np.floor(hour - 0.5)
        shape = hourly[h0] * (1 - frac) + hourly[(h0 + 1) % 24] * frac
        weekly = np.asarray(_TAOBAO_WEEKLY, dtype=np.float64)
        weekly /= weekly.mean()
        day = (dow + minutes // 1440) % 7
        self.minute_w = shape * weekly[day]
        self.minute_p = self.minute_w / self.minute_w.sum()
        # categories (Zipf) and products (lognormal within, sellers Pareto-sized)
        n_cat = max(20, n_products // 100)
        cat_w = 1.0 / np.arange(1, n_cat + 1) ** _CATEGORY_ZIPF
        self.n_cat = n_cat
        self.cat = np.sort(rng.choice(n_cat, size=n_products, p=cat_w / cat_w.sum()))
        pop = rng.lognormal(0.0, float(rng.uniform(1.3, 1.9)), n_products)
        self.pop = pop
        # within-category sampling: key = category + cumulative share within it
        self.cat_start = np.searchsorted(self.cat, np.arange(n_cat + 1))
        keys = np.empty(n_products)
        for c in range(n_cat):
            a, b = self.cat_start[c], self.cat_start[c + 1]
            if b > a:
                w = np.cumsum(pop[a:b])
                keys[a:b] = c + w / w[-1]
        self.keys = keys
        cat_mass = np.bincount(self.cat, weights=pop, minlength=n_cat)
        self.cat_p = cat_mass / cat_mass.sum()
        n_sellers = max(50, n_products // 15)
        seller_w = rng.pareto(1.2, n_sellers) + 1.0
        self.seller = rng.choice(n_sellers, size=n_products, p=seller_w / seller_w.sum()).astype(np.int64)
        self.n_sellers = n_sellers
        cat_price = rng.lognormal(3.0, 0.8, n_cat)
        self.price = np.round(cat_price[self.cat] * rng.lognormal(0.0, 0.5, n_products), 2)
        # users: activity from the sample (resampled) or its lognormal fit
        if stats["source"] == "taobao":
            act = rng.choice(stats["activity"], size=n_users) * rng.lognormal(0.0, 0.15, n_users)
        else:
            act = rng.lognormal(*_TAOBAO_ACTIVITY, n_users)
        self.activity = act
        self.user_p = act / act.sum()
        self.next_user = n_users  # brand-new accounts are numbered from here
        self.events_per_day = events_per_day
        self.blind = float(rng.uniform(0.35, 0.75))
        self.extra_products: list[tuple[int, int, float]] = []  # (seller, category, price) of new products
        self.next_seller = n_sellers
        self.content = 0  # video/creator index counter
        self.ev = _Events()

    # ---------------------------------------------------------------- helpers
    def new_users(self, n: int) -> np.ndarray:
        out = np.arange(self.next_user, self.next_user + n, dtype=np.int64)
        self.next_user += n
        return out

    def new_product(self, seller: int, category: int | None = None) -> int:
        c = int(self.rng.choice(self.n_cat, p=self.cat_p)) if category is None else category
        pid = self.n_products + len(self.extra_products)
        self.extra_products.append((seller, c, round(float(self.rng.lognormal(3.0, 0.8)), 2)))
        return pid

    def new_seller(self) -> int:
        self.next_seller += 1
        return self.next_seller - 1

    def new_content(self) -> int:
        self.content += 1
        return self.content

    def seller_of(self, pid: int) -> int:
        if pid < self.n_products:
            return int(self.seller[pid])
        return self.extra_products[pid - self.n_products][0]

    def times_from_profile(self, n: int, lo: float = 0.0, hi: float | None = None) -> np.ndarray:
        """n event times (s from t0) drawn from the daily x weekly profile within [lo, hi)."""
        hi = self.span if hi is None else hi
        a, b = int(lo // 60), int(np.ceil(hi / 60))
        p = self.minute_w[a:b] / self.minute_w[a:b].sum()
        m = self.rng.choice(np.arange(a, b), size=n, p=p)
        return np.clip(m * 60.0 + self.rng.uniform(0, 60, n), lo, hi - 1e-3)

    def session_lengths(self, n: int) -> np.ndarray:
        if self.stats["source"] == "taobao":
            return np.minimum(self.rng.choice(self.stats["lengths"], size=n), 120)
        q = np.asarray(_TAOBAO_SESSION_Q, dtype=np.float64)
        u = self.rng.uniform(0, 1, n)
        return np.maximum(1, np.round(np.exp(np.interp(u, q[:, 0], np.log(q[:, 1]))))).astype(np.int64)

    def gaps(self, n: int) -> np.ndarray:
        if self.stats["source"] == "taobao":
            g = self.rng.choice(self.stats["gaps"], size=n) * self.rng.uniform(0.8, 1.25, n)
        else:
            g = self.rng.lognormal(*_TAOBAO_GAP, n)
        return np.minimum(g, 1800.0)

    def pick_products(self, n: int, categories: np.ndarray | None = None) -> np.ndarray:
        c = self.rng.choice(self.n_cat, size=n, p=self.cat_p) if categories is None else categories
        k = c + self.rng.uniform(1e-9, 1.0, n)
        return np.minimum(np.searchsorted(self.keys, k), self.n_products - 1)

    def sessions(self, starts: np.ndarray, users: np.ndarray, exclude: set[int] | None = None) -> int:
        """Organic sessions at ``starts`` (s) by ``users``: lengths, gaps, category chain, type mix."""
        rng = self.rng
        n_s = starts.size
        if n_s == 0:
            return 0
        lens = self.session_lengths(n_s)
        total = int(lens.sum())
        sid = np.repeat(np.arange(n_s), lens)
        first = np.r_[0, np.cumsum(lens)[:-1]]
        is_first = np.zeros(total, dtype=bool)
        is_first[first] = True
        gaps = self.gaps(total)
        gaps[is_first] = 0.0
        csum = np.cumsum(gaps)
        t = starts[sid] + (csum - np.repeat(csum[first], lens))
        # category chain: a new category unless it stays (41 %)
        new_cat = is_first | (rng.uniform(0, 1, total) > _TAOBAO_SAME_CATEGORY)
        draws = rng.choice(self.n_cat, size=total, p=self.cat_p)
        idx = np.maximum.accumulate(np.where(new_cat, np.arange(total), 0))
        cats = draws[idx]
        prod = self.pick_products(total, cats)
        # a repeat of the previous item in the session
        rep = (~is_first) & (rng.uniform(0, 1, total) < _TAOBAO_REPEAT_ITEM)
        j = np.where(rep, np.arange(total) - 1, np.arange(total))
        prod = prod[j]
        if exclude:
            bad = np.isin(prod, np.fromiter(exclude, dtype=np.int64))
            prod[bad] = self.pick_products(int(bad.sum()))
        mix = np.array([_TAOBAO_TYPE_MIX["view"] - 0.007, _TAOBAO_TYPE_MIX["like"], 0.003, 0.004,
                        _TAOBAO_TYPE_MIX["add_to_cart"], _TAOBAO_TYPE_MIX["purchase"]])  # fmt: skip
        typ = rng.choice(6, size=total, p=mix / mix.sum())
        user = users[sid]
        self.ev.add(t, typ, prod, user)
        # carts and purchases: the view before them, unless blind
        conv = np.flatnonzero((typ == A) | (typ == P))
        seen = conv[rng.uniform(0, 1, conv.size) >= self.blind]
        self.ev.add(t[seen] - rng.uniform(5, 120, seen.size), V, prod[seen], user[seen])
        return total + seen.size

    def base(self, n_events: int) -> None:
        mean_len = 6.0 * (1 + (1 - self.blind) * 0.074)
        n_s = int(n_events / mean_len)
        starts = self.times_from_profile(n_s)
        users = self.rng.choice(self.n_users, size=n_s, p=self.user_p)
        self.sessions(starts, users)

    def funnel(self, t: np.ndarray, users: np.ndarray, pid: int, p: dict[str, float],
               content: int = -1, first_view: bool = True) -> int:  # fmt: skip
        """Each user's visit at t: a view (unless blind), then like / share / comment / cart / buy."""
        rng = self.rng
        n = t.size
        if n == 0:
            return 0
        out = 0
        viewed = np.ones(n, dtype=bool) if first_view else rng.uniform(0, 1, n) >= p.get("blind", 0.0)
        self.ev.add(t[viewed], V, pid, users[viewed], content)
        out += int(viewed.sum())
        for typ, key, lo, hi in ((L, "like", 3, 90), (S, "share", 5, 240), (C, "comment", 10, 300),
                                 (V, "review", 60, 1800)):  # fmt: skip
            m = rng.uniform(0, 1, n) < p.get(key, 0.0)
            self.ev.add(t[m] + rng.uniform(lo, hi, int(m.sum())), typ, pid, users[m], content)
            out += int(m.sum())
        cart = rng.uniform(0, 1, n) < p.get("cart", 0.0)
        tc = t[cart] + rng.uniform(10, 240, int(cart.sum()))
        self.ev.add(tc, A, pid, users[cart], content)
        buy = rng.uniform(0, 1, tc.size) < p.get("buy", 0.0)
        self.ev.add(tc[buy] + rng.uniform(20, 600, int(buy.sum())), P, pid, users[cart][buy], content)
        return out + tc.size + int(buy.sum())


# ------------------------------------------------------------------ SEIR on a contact graph
def _graph(rng: np.random.Generator, n: int, mean_k: float, disp: float) -> tuple[np.ndarray, np.ndarray]:
    """Configuration model, negative-binomial degrees: CSR (offsets, neighbours)."""
    p = disp / (disp + mean_k)
    deg = rng.negative_binomial(disp, p, n)
    if deg.sum() % 2:
        deg[int(rng.integers(n))] += 1
    stubs = np.repeat(np.arange(n), deg)
    rng.shuffle(stubs)
    a, b = stubs[0::2], stubs[1::2]
    keep = a != b
    a, b = a[keep], b[keep]
    src, dst = np.r_[a, b], np.r_[b, a]
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    off = np.searchsorted(src, np.arange(n + 1))
    return off, dst


def seir_times(rng: np.random.Generator, n: int, mean_k: float, r0: float, latent_shape: float,
               infectious: float, n_index: int) -> np.ndarray:  # fmt: skip
    """Adoption (end of latency) times, unit-free (latent mean 1), of an SEIR run on a graph of n."""
    off, nb = _graph(rng, n, mean_k, float(rng.uniform(0.8, 3.0)))
    deg = np.diff(off)
    mean_excess = float((deg * (deg - 1)).sum() / max(1, deg.sum()))
    # per-edge transmissibility T = beta / (beta + gamma) so that T * mean_excess = r0
    tr = min(0.95, r0 / max(mean_excess, 1e-9))
    gamma = 1.0 / infectious
    beta = gamma * tr / (1 - tr)
    adopt = np.full(n, np.inf)
    heap: list[tuple[float, int]] = []
    for i in rng.choice(n, size=n_index, replace=False):
        heapq.heappush(heap, (0.0, int(i)))
    done = np.zeros(n, dtype=bool)
    while heap:
        t, i = heapq.heappop(heap)
        if done[i]:
            continue
        done[i] = True
        adopt[i] = t
        period = rng.exponential(infectious)
        nbrs = nb[off[i]:off[i + 1]]
        if nbrs.size == 0:
            continue
        tx = rng.exponential(1.0 / beta, nbrs.size)
        hit = tx < period
        for j, tj in zip(nbrs[hit], tx[hit], strict=True):
            if not done[j]:
                heapq.heappush(heap, (t + tj + rng.gamma(latent_shape, 1.0 / latent_shape), int(j)))
    out = adopt[np.isfinite(adopt)]
    return np.sort(out)


def _doubling(times: np.ndarray) -> float:
    """A third of the time from the 32nd to the 256th adoption (8th to 64th for small ones)."""
    lo, hi = (32, 256) if times.size >= 400 else (8, 64)
    if times.size < hi:
        return float("nan")
    return float(times[hi - 1] - times[lo - 1]) / 3.0


def _viral(w: _World, pid: int, onset: float, doubling: float, target_events: int) -> dict[str, Any]:
    """One SEIR viral of product pid from onset (s): events added to w; a truth row returned."""
    rng = w.rng
    funnel = {"like": rng.uniform(0.1, 0.3), "share": rng.uniform(0.06, 0.2),
              "comment": rng.uniform(0.02, 0.08), "review": rng.uniform(0.1, 0.25),
              "cart": rng.uniform(0.1, 0.25), "buy": rng.uniform(0.3, 0.6)}  # fmt: skip
    per_adopter = 1 + sum(funnel[k] for k in ("like", "share", "comment", "review", "cart"))
    per_adopter += funnel["cart"] * funnel["buy"]
    n_target = max(150, int(target_events / per_adopter))
    mean_k, r0 = float(rng.uniform(4, 12)), float(rng.uniform(1.6, 3.5))
    latent_shape, infectious = float(rng.uniform(2, 4)), float(rng.uniform(0.7, 2.5))
    times = np.empty(0)
    for _ in range(40):
        times = seir_times(rng, int(n_target * 1.2), mean_k, r0, latent_shape, infectious,
                           int(rng.integers(1, 5)))  # fmt: skip
        if times.size >= max(100, n_target // 4):
            break
    unit = doubling / _doubling(times) if np.isfinite(_doubling(times)) else doubling
    t = onset + times * unit
    t = t[t < w.span - 60]
    n = t.size
    fresh = rng.uniform(0, 1, n) < rng.uniform(0.05, 0.25)
    users = rng.choice(w.n_users, size=n, replace=n > w.n_users // 2, p=w.user_p)
    users[fresh] = w.new_users(int(fresh.sum()))
    users[0] = w.new_users(1)[0]  # the creator
    content = w.new_content()
    w.ev.add(t[:1], S, pid, users[:1], content)  # the launch post
    k = w.funnel(t, users, pid, funnel, content=-1)
    doubling_measured = _doubling(t)
    return {"product_id": pid, "onset_ts": onset, "doubling_s": round(doubling, 1),
            "doubling_measured_s": round(doubling_measured, 1) if np.isfinite(doubling_measured) else None,
            "events": k + 1, "adopters": n, "market": int(n_target * 1.2), "mean_degree": round(mean_k, 2),
            "r0": round(r0, 2), "latent_shape": round(latent_shape, 2), "infectious": round(infectious, 2),
            "shape": "seir"}  # fmt: skip


# ------------------------------------------------------------------ hard negatives
def _flash(w: _World, pid: int, onset: float) -> dict[str, Any]:
    rng = w.rng
    dur = float(rng.uniform(60, 1200))
    n = int(_loguniform(rng, 100, 2000) / 1.35)
    if rng.uniform() < 0.5:
        t = onset + rng.uniform(0, dur, n)
        shape = "box"
    else:
        t = onset + rng.triangular(0, dur * float(rng.uniform(0, 0.4)), dur, n)
        shape = "triangle"
    users = rng.choice(w.n_users, size=n, p=w.user_p)
    k = w.funnel(t, users, pid, {"cart": 0.25, "buy": 0.5, "like": 0.05, "share": 0.01})
    return {"product_id": pid, "onset_ts": onset, "events": k, "kind": "flash", "duration_s": round(dur),
            "shape": shape}  # fmt: skip


def _restock(w: _World, pid: int, onset: float, excluded: dict[int, tuple[float, float]]) -> dict[str, Any]:
    rng = w.rng
    out_s = float(rng.uniform(6, 16)) * 3600
    excluded[pid] = (onset - out_s, onset)
    n = int(_loguniform(rng, 300, 1500) / 1.6)
    decay = float(rng.uniform(15, 60)) * 60
    t = onset + np.minimum(rng.exponential(decay / 3, n), decay * 2)
    users = rng.choice(w.n_users, size=n, p=w.user_p)
    k = w.funnel(t, users, pid, {"cart": 0.6, "buy": 0.7, "like": 0.02}, first_view=True)
    return {"product_id": pid, "onset_ts": onset, "events": k, "kind": "restock",
            "out_of_stock_s": round(out_s), "decay_s": round(decay)}  # fmt: skip


def _burst(w: _World, pid: int, onset: float) -> dict[str, Any]:
    rng = w.rng
    n = int(_loguniform(rng, 200, 2000) / 1.4)
    tau = float(rng.uniform(2, 15)) * 60
    t = onset + rng.exponential(tau, n)
    users = rng.choice(w.n_users, size=n, p=w.user_p)
    fresh = rng.uniform(0, 1, n) < 0.2
    users[fresh] = w.new_users(int(fresh.sum()))
    content = w.new_content()
    k = w.funnel(t, users, pid, {"like": 0.25, "share": 0.08, "comment": 0.05, "cart": 0.04, "buy": 0.4},
                 content=content)  # fmt: skip
    return {"product_id": pid, "onset_ts": onset, "events": k, "decay_s": round(tau)}


def _slow_riser(w: _World, pid: int, onset: float) -> dict[str, Any]:
    rng = w.rng
    doubling = float(rng.uniform(3, 10)) * 3600
    base_rate = float(rng.uniform(4, 12)) / 3600  # events per s at onset
    # rate(t) = base * 2^(t/d), capped at 30x; inverse-CDF sampling over [onset, span)
    grid = np.arange(onset, w.span, 60.0)
    rate = base_rate * np.minimum(2 ** ((grid - onset) / doubling), 30.0)
    cum = np.cumsum(rate * 60)
    n = int(rng.poisson(cum[-1] / 1.3))
    t = np.interp(rng.uniform(0, cum[-1], n), cum, grid)
    users = rng.choice(w.n_users, size=n, p=w.user_p)
    k = w.funnel(t, users, pid, {"like": 0.05, "share": 0.02, "cart": 0.1, "buy": 0.4, "review": 0.1})
    return {"product_id": pid, "onset_ts": onset, "events": k, "doubling_s": round(doubling)}


# ------------------------------------------------------------------ attacks
_RAMPS = ("linear", "exponential", "logistic", "step")


def _ramp_times(rng: np.random.Generator, n: int, start: float, dur: float, ramp: str) -> np.ndarray:
    u = rng.uniform(0, 1, n)
    if ramp == "linear":  # rate grows linearly: CDF x^2
        x = np.sqrt(u)
    elif ramp == "exponential":  # rate e^(k x), k = 4..6
        k = float(rng.uniform(4, 6))
        x = np.log1p(u * (np.exp(k) - 1)) / k
    elif ramp == "logistic":
        x = np.clip(0.5 + np.log(u / (1 - u + 1e-12) + 1e-12) / 10, 0, 1)
    else:  # step: all at once
        x = u
    return start + x * dur


def _attack(w: _World, attack_id: str, start: float, truth: dict[str, Any], taken: set[int]) -> list[str]:
    """One attack drawn from the family; rows appended to truth["attacks"]; its account ids returned."""
    rng = w.rng
    n_acc = int(_loguniform(rng, 5, 2000))
    fresh = bool(rng.uniform() < 0.5)
    camouflage = bool(rng.uniform() < 0.4)
    n_prod = int(rng.integers(1, 11))
    sellers_mode = str(rng.choice(["one", "several", "new"], p=[0.5, 0.3, 0.2]))
    stagger_mode = str(rng.choice(["concurrent", "minutes", "hours"]))
    stagger = {"concurrent": 0.0, "minutes": float(rng.uniform(60, 1200)),
               "hours": float(rng.uniform(1800, 6 * 3600))}[stagger_mode]  # fmt: skip
    ramp = str(rng.choice(_RAMPS))
    dur = float(_loguniform(rng, 1200, 4 * 3600)) if ramp != "step" else float(rng.uniform(300, 1500))
    blind = float(rng.choice([0.0, 0.0, rng.uniform(0.1, 0.6)]))
    funnel = {"like": rng.uniform(0.05, 0.3), "share": rng.uniform(0.0, 0.15),
              "comment": rng.uniform(0, 0.05),
              "review": rng.uniform(0, 0.2), "cart": rng.uniform(0.15, 0.5), "buy": rng.uniform(0.4, 0.8),
              "blind": blind}  # fmt: skip
    if n_acc < 50:
        kind = "farm"
    elif camouflage:
        kind = "camouflaged_ring"
    else:
        kind = "fresh_ring" if fresh else "aged_ring"
    accounts = w.new_users(n_acc)
    acc_act = rng.lognormal(2.0, 0.9, n_acc)
    last = min(w.span - 600, start + (n_prod - 1) * stagger + dur)
    if not fresh:  # aged: organic sessions from the first hours, at a lognormal rate
        n_s = rng.poisson(acc_act / 6.0 * start / DAY_S)
        sess_users = np.repeat(accounts, n_s)
        first_seen = rng.uniform(0, 4 * 3600, n_acc)
        lo = np.repeat(first_seen, n_s)
        starts = lo + rng.uniform(0, 1, sess_users.size) * (start - lo)
        w.sessions(starts, sess_users)
    if camouflage:  # organic sessions during the attack as well
        n_s = rng.poisson(acc_act / 6.0 * (last - start + 3600) / DAY_S * 2)
        sess_users = np.repeat(accounts, n_s)
        starts = start - 1800 + rng.uniform(0, 1, sess_users.size) * (last - start + 3600)
        w.sessions(starts, sess_users)
    # products
    if sellers_mode == "new":
        s = w.new_seller()
        pids = [w.new_product(s) for _ in range(n_prod)]
    elif sellers_mode == "one":
        counts = np.bincount(w.seller, minlength=w.n_sellers)
        ok = np.flatnonzero(counts >= max(2, n_prod))
        s = int(rng.choice(ok)) if ok.size else int(rng.integers(w.n_sellers))
        own = [int(p) for p in np.flatnonzero(w.seller == s) if int(p) not in taken]
        rng.shuffle(own)
        pids = own[:n_prod] + [w.new_product(s) for _ in range(max(0, n_prod - len(own)))]
    else:
        cand = np.flatnonzero(np.argsort(np.argsort(-w.pop)) >= 300)
        pids = []
        while len(pids) < n_prod:
            p = int(rng.choice(cand))
            if p not in taken and p not in pids:
                pids.append(p)
    rows = []
    for k, pid in enumerate(pids):
        taken.add(pid)
        t_start = start + k * stagger
        if t_start > w.span - 1200:
            break
        events = int(_loguniform(rng, 300, 3000))
        share = float(rng.uniform(0.5, 1.0))
        part = accounts[rng.uniform(0, 1, n_acc) < share]
        if part.size == 0:
            part = accounts[:1]
        per_visit = 1 + sum(funnel[k] for k in ("like", "share", "comment", "review"))
        per_visit += funnel["cart"] * (1 + funnel["buy"])
        visits = max(1, int(events / per_visit))
        if visits >= part.size:
            users = part[np.arange(visits) % part.size]
        else:
            users = rng.choice(part, visits, replace=False)
        t = _ramp_times(rng, visits, t_start, min(dur, w.span - 600 - t_start), ramp)
        users = users[np.argsort(rng.uniform(0, 1, visits))]
        n_ev = w.funnel(np.sort(t), users, pid, funnel, first_view=False)
        rows.append({"product_id": pid, "kind": kind, "attack_id": attack_id, "onset_ts": t_start,
                     "events": n_ev, "accounts": n_acc, "participants": int(min(visits, part.size)),
                     "fresh": fresh, "camouflage": camouflage, "products": n_prod, "sellers": sellers_mode,
                     "seller": w.seller_of(pid), "stagger": stagger_mode, "stagger_s": round(stagger),
                     "ramp": ramp, "duration_s": round(dur), "blind": round(blind, 2)})  # fmt: skip
    truth["attacks"] += rows
    return [str(a) for a in accounts]


# ------------------------------------------------------------------ the scenario
def write_seir(seed: int, out_dir: Path, events_per_day: int = 120_000, n_products: int = 30_000,
               n_users: int = 40_000, taobao: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Draw one scenario; write ``events.ndjson`` (arrival order) and ``truth.json``; return the truth."""
    rng = np.random.default_rng([seed, 0x5E1F])
    stats = taobao_stats(TAOBAO if taobao is None else taobao)
    w = _World(rng, seed, events_per_day, n_products, n_users, stats)
    score_from = float(rng.uniform(12, 20)) * 3600
    truth: dict[str, Any] = {"generator": "seir", "seed": seed, "base_stats": stats["source"],
                             "family": {"n_days": 2, "events_per_day": events_per_day,
                                        "n_products": n_products, "n_users": n_users},
                             "viral": [], "spikes": [], "bursts": [], "slow_risers": [], "steady": [],
                             "attacks": [], "attack_accounts": {}, "banned_sellers": []}  # fmt: skip
    rank = np.argsort(-w.pop)
    taken: set[int] = set(int(p) for p in rank[:5])
    scale = events_per_day / 150_000

    def pick(lo: int, hi: int) -> int:
        hi = min(hi, n_products)
        for _ in range(1000):
            p = int(rank[int(rng.integers(min(lo, hi - 1), hi))])
            if p not in taken:
                taken.add(p)
                return p
        msg = "no free product"
        raise RuntimeError(msg)

    def onset(lo: float = 0.0, tail: float = 4 * 3600) -> float:
        return float(rng.uniform(score_from + lo, w.span - tail))

    # organic viral (buckets cycle)
    n_viral = int(rng.integers(8, 13))
    for i in range(n_viral):
        name, lo, hi = BUCKETS[(i + seed) % 3]
        d = _loguniform(rng, lo, hi)
        pid = pick(200, 20_000) if rng.uniform() < 0.8 else w.new_product(int(rng.integers(w.n_sellers)))
        taken.add(pid)
        row = _viral(w, pid, onset(0, 3 * 3600 if name != "slow" else 6 * 3600), d,
                     int(_loguniform(rng, 300, 30_000) * max(scale, 0.1)))  # fmt: skip
        truth["viral"].append({**row, "bucket": name})
    # hard negatives
    excluded: dict[int, tuple[float, float]] = {}
    for _ in range(int(rng.integers(6, 11))):
        truth["spikes"].append(_flash(w, pick(100, 20_000), onset(0, 1800)))
    for _ in range(int(rng.integers(2, 5))):
        truth["spikes"].append(_restock(w, pick(20, 300), onset(0, 3600), excluded))
    for _ in range(int(rng.integers(4, 9))):
        truth["bursts"].append(_burst(w, pick(100, 20_000), onset(0, 1800)))
    for _ in range(int(rng.integers(2, 4))):
        truth["slow_risers"].append(_slow_riser(w, pick(100, 1000), float(rng.uniform(2, 12)) * 3600))
    # attacks
    for a in range(int(rng.integers(4, 8))):
        aid = f"a{a}"
        truth["attack_accounts"][aid] = _attack(w, aid, onset(0, 2 * 3600), truth, taken)
    banned = w.new_seller()
    pid = w.new_product(banned)
    name, lo, hi = BUCKETS[int(rng.integers(0, 3))]
    row = _viral(w, pid, onset(0, 4 * 3600), _loguniform(rng, lo, hi), int(_loguniform(rng, 1000, 10_000)))
    truth["attacks"].append({"product_id": pid, "kind": "banned_viral", "attack_id": "banned",
                             "onset_ts": row["onset_ts"], "events": row["events"],
                             "bucket": name})  # fmt: skip
    truth["banned_sellers"].append(banned)
    # base traffic last (so its size follows events_per_day whatever the rest drew)
    w.base(int(events_per_day * w.days))
    # steady: the 5 head products (their base traffic)
    ts_s, typ, prod, user, content = w.ev.columns()
    # restocks: nothing sold while out of stock (carts and purchases dropped, 60 % of views dropped)
    drop = np.zeros(ts_s.size, dtype=bool)
    for pid, (a, b) in excluded.items():
        m = (prod == pid) & (ts_s >= a) & (ts_s < b)
        drop |= m & ((typ == A) | (typ == P) | (rng.uniform(0, 1, ts_s.size) < 0.6))
    keep = ~drop & (ts_s >= 0) & (ts_s < w.span)
    ts_s, typ, prod, user, content = ts_s[keep], typ[keep], prod[keep], user[keep], content[keep]
    for p in rank[:5]:
        truth["steady"].append({"product_id": int(p), "events": int((prod == p).sum())})
    return _finish(w, truth, score_from, ts_s, typ, prod, user, content, out_dir)


def _finish(w: _World, truth: dict[str, Any], score_from: float, ts_s: np.ndarray, typ: np.ndarray,
            prod: np.ndarray, user: np.ndarray, content: np.ndarray,
            out_dir: Path) -> dict[str, Any]:  # fmt: skip
    rng = w.rng
    n = ts_s.size
    # clock skew of 2 % of users' devices
    skewed = np.flatnonzero(rng.uniform(0, 1, w.next_user) < 0.02)
    skew = np.zeros(w.next_user)
    skew[skewed] = rng.normal(0, 15, skewed.size)
    ts_ms = w.t0 * 1000 + np.round((ts_s + skew[user]) * 1000).astype(np.int64)
    # delivery: late, offline, duplicates
    delay = np.zeros(n)
    late = rng.uniform(0, 1, n) < rng.uniform(0.02, 0.05)
    delay[late] = rng.uniform(0, 150, int(late.sum()))
    off = rng.uniform(0, 1, n) < 0.002
    delay[off] = rng.uniform(300, 1800, int(off.sum()))
    dup = np.flatnonzero(rng.uniform(0, 1, n) < rng.uniform(0.005, 0.01))
    idx = np.r_[np.arange(n), dup]
    arrive = np.r_[ts_s + delay, ts_s[dup] + delay[dup] + rng.uniform(0, 60, dup.size)]
    order = idx[np.argsort(arrive, kind="stable")]
    # ids
    n_prod_all = w.n_products + len(w.extra_products)
    pid_s = _hex_ids("p", np.arange(n_prod_all), w.seed * 7 + 1)
    used_users = np.unique(user)
    uid_map = dict(zip(used_users.tolist(), _hex_ids("u", used_users, w.seed * 7 + 2), strict=True))
    sid_s = _hex_ids("s", np.arange(w.next_seller + 1), w.seed * 7 + 3)
    eid = _hex_ids("e", np.arange(n), w.seed * 7 + 4)
    sellers = np.r_[w.seller, [e[0] for e in w.extra_products]].astype(np.int64)
    cats = np.r_[w.cat, [e[1] for e in w.extra_products]].astype(np.int64)
    prices = np.r_[w.price, [e[2] for e in w.extra_products]]
    quantity = rng.integers(1, 3, n)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "events.ndjson").open("w") as f:
        lines = []
        ts_l, typ_l, prod_l, user_l = ts_ms.tolist(), typ.tolist(), prod.tolist(), user.tolist()
        cont_l, q_l = content.tolist(), quantity.tolist()
        for i in order.tolist():
            p = prod_l[i]
            t = typ_l[i]
            extra = ""
            if t >= A:
                extra += f',"quantity":{q_l[i]}'
            if cont_l[i] >= 0:
                extra += f',"video_id":"v{cont_l[i]}","creator_id":"cr{cont_l[i]}"'
            lines.append(
                f'{{"event_id":"{eid[i]}","ts":{ts_l[i]},"type":"{TYPES[t]}","product_id":"{pid_s[p]}",'
                f'"user_id":"{uid_map[user_l[i]]}","seller_id":"{sid_s[sellers[p]]}","category":"c{cats[p]}",'
                f'"price":{prices[p]}{extra}}}\n'
            )
            if len(lines) >= 100_000:
                f.writelines(lines)
                lines = []
        f.writelines(lines)
    # truth in ids and ms
    t0ms = w.t0 * 1000

    def ms(x: float) -> int:
        return int(t0ms + round(x * 1000))

    for key in ("viral", "spikes", "bursts", "slow_risers", "attacks"):
        for row in truth[key]:
            row["product_id"] = pid_s[row["product_id"]]
            row["onset_ts"] = ms(row["onset_ts"])
            if "seller" in row:
                row["seller"] = sid_s[row["seller"]]
    for row in truth["steady"]:
        row["product_id"] = pid_s[row["product_id"]]
    truth["banned_sellers"] = [sid_s[s] for s in truth["banned_sellers"]]
    truth["attack_accounts"] = {k: [uid_map.get(int(u), _hex_ids("u", np.array([int(u)]), w.seed * 7 + 2)[0])
                                    for u in v] for k, v in truth["attack_accounts"].items()}  # fmt: skip
    truth["score_from_ts"] = ms(score_from)
    truth["start_ts"] = t0ms
    truth["end_ts"] = ms(w.span)
    truth["n_events"] = int(order.size)
    truth["blind_base_share"] = round(w.blind, 3)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
