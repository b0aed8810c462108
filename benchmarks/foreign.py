"""A second, independent traffic generator: the out-of-family check of detection and the guard.

The scenario family (:mod:`viraltrend.family`) is what detection was tuned on.  A detector can fit
the quirks of one generator, so this module draws traffic with *different mechanics*, written
without reusing the family's code, and ``bench_family.py --generator foreign`` reports the same
figures on it (no seed of it was ever tuned on).  It follows the issue's own description of the
streams that exposed the old engine (issue 10 and 13):

* two days, a sinusoidal daily cycle (amplitude 0.4-0.8), scored from hour 12 on;
* base traffic: Zipf products *and Zipf users* (exponent 0.4-0.7: the Taobao sample in
  ``shared/data`` has a rank-frequency slope of -0.47 over its users; power users act on many
  products, so viral products' audiences overlap), sellers Zipf over products;
* viral products as a **branching process** (Hawkes with an exponential kernel): a creator's
  post seeds 2-5 events, every event begets ``Poisson(n (1 - k / S))`` more after an exponential
  delay, with branching ratio ``n`` in 1.3-2.2, audience size ``S`` log-uniform 600-20,000 events,
  and the delay scale set by a doubling time log-uniform in 60-3,600 s; its users are 70 % new
  (Zipf-weighted draws from the population) and 30 % repeats;
* flash spikes: 150-400 events in 2 minutes, then nothing (the issue's shape), and "TV mentions":
  a flat 5-15 minute plateau of 300-1,500 events;
* creator bursts: a jump, then exponential decay (3-10 min), 300-2,000 events;
* attacks: the issue's aged ring (250 accounts active since the first hour boost 3 products of a
  new seller within one half hour, 900-1,300 events each, an organic mix with purchases, each
  ramping linearly over 30 minutes), a bot farm (10-30 accounts, one product, 1,000-2,000 events in
  20 minutes), a click farm (400-1,200 fresh accounts, 1-2 views or likes on each of 2 products),
  and a banned seller's really viral product;
* delivery: 4 % of events arrive up to 90 s late (file order by arrival).

``truth.json`` has the keys ``bench_family`` reads (``viral``, ``spikes``, ``bursts``,
``slow_risers``, ``steady``, ``attacks``, ``banned_sellers``, ``score_from_ts``).

>>> import pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     truth = write_foreign(3, pathlib.Path(tmp), events_per_day=20_000, n_products=3_000, n_users=8_000)
>>> sorted({v["bucket"] for v in truth["viral"]}) <= ["fast", "medium", "slow"]
True
>>> {a["kind"] for a in truth["attacks"]} == {"aged_ring", "bot_farm", "click_farm", "banned_viral"}
True
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path
from typing import Any

import numpy as np

DAY_MS = 86_400_000
START_TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TYPES = ("view", "like", "comment", "share", "add_to_cart", "purchase")
BASE_MIX = np.array([0.82, 0.07, 0.025, 0.015, 0.05, 0.02])
VIRAL_MIX = np.array([0.60, 0.15, 0.04, 0.08, 0.09, 0.04])
FAKE_MIX = np.array([0.70, 0.25, 0.0, 0.05, 0.0, 0.0])


class _Stream:
    """Columns of events being drawn, and the writer."""

    def __init__(self) -> None:
        self.ts: list[np.ndarray] = []
        self.product: list[np.ndarray] = []
        self.user: list[np.ndarray] = []  # user ids as int64 (>= 10**9: accounts made for attacks)
        self.kind: list[np.ndarray] = []

    def add(self, ts: np.ndarray, product: np.ndarray | int, user: np.ndarray, kind: np.ndarray) -> None:
        n = len(ts)
        self.ts.append(np.asarray(ts, np.int64))
        self.product.append(np.broadcast_to(np.asarray(product, np.int64), (n,)).copy())
        self.user.append(np.asarray(user, np.int64))
        self.kind.append(np.asarray(kind, np.int8))


def _cycle_times(rng: np.random.Generator, n: int, t0: int, t1: int, amp: float, peak_h: float) -> np.ndarray:
    """``n`` event times in ``[t0, t1)`` from the rate ``1 + amp cos(2 pi (hour - peak) / 24)`` (thinning)."""
    out: list[np.ndarray] = []
    need = n
    while need > 0:
        t = rng.uniform(t0, t1, int(need * 2.2) + 16)
        hour = ((t - START_TS_MS) / 3_600_000.0) % 24.0
        keep = rng.random(t.size) * (1 + amp) < 1 + amp * np.cos(2 * np.pi * (hour - peak_h) / 24.0)
        out.append(t[keep][:need])
        need -= out[-1].size
    return np.sort(np.concatenate(out)).astype(np.int64)


def _zipf_sampler(rng: np.random.Generator, n: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    """(cdf over ranks, rank -> id permutation) of a Zipf(s) law over ``n`` ids."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    return np.cumsum(w) / w.sum(), rng.permutation(n).astype(np.int64)


def _draw(rng: np.random.Generator, sampler: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    cdf, perm = sampler
    return perm[np.minimum(np.searchsorted(cdf, rng.random(size)), cdf.size - 1)]


def _mix(rng: np.random.Generator, mix: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(mix) / mix.sum(), rng.random(size)), len(mix) - 1)


def _branching(
    rng: np.random.Generator, onset: float, doubling_s: float, size: int, seeds: int
) -> np.ndarray:
    """Event times (ms) of a saturating Hawkes process started by ``seeds`` events at ``onset``."""
    n = rng.uniform(1.3, 2.2)
    tau_ms = (n - 1.0) * doubling_s / np.log(2.0) * 1000.0  # growth rate (n - 1) / tau
    heap = [float(onset + rng.exponential(5_000.0)) for _ in range(seeds)]
    heapq.heapify(heap)
    times: list[float] = []
    while heap and len(times) < 4 * size:
        t = heapq.heappop(heap)
        times.append(t)
        k = rng.poisson(max(n * (1.0 - len(times) / size), 0.0))
        for d in rng.exponential(tau_ms, k):
            heapq.heappush(heap, t + d)
    return np.asarray(times, np.int64)


def write_foreign(
    seed: int,
    out_dir: Path,
    *,
    events_per_day: int = 100_000,
    n_products: int = 20_000,
    n_users: int = 60_000,
) -> dict[str, Any]:
    """Write ``out_dir/events.ndjson`` and ``out_dir/truth.json``; return the truth."""
    rng = np.random.default_rng([seed, 0xF0E1])
    t0, t1 = START_TS_MS, START_TS_MS + 2 * DAY_MS
    score_from = t0 + DAY_MS // 2
    amp, peak_h = rng.uniform(0.4, 0.8), rng.uniform(0, 24)
    products = _zipf_sampler(rng, n_products, rng.uniform(0.9, 1.2))
    users = _zipf_sampler(rng, n_users, rng.uniform(0.4, 0.7))
    n_sellers = max(n_products // 10, 2)
    seller_of = _draw(rng, _zipf_sampler(rng, n_sellers, 1.0), n_products)
    category_of = rng.integers(0, 30, n_products)
    s = _Stream()
    n_base = 2 * events_per_day
    base_ts = _cycle_times(rng, n_base, t0, t1, amp, peak_h)
    base_product = _draw(rng, products, n_base)
    s.add(base_ts, base_product, _draw(rng, users, n_base), _mix(rng, BASE_MIX, n_base))
    per_min = np.bincount(base_product, minlength=n_products) / (2 * 1440.0)
    rank_of = np.empty(n_products, np.int64)
    rank_of[products[1]] = np.arange(n_products)
    used: set[int] = set(products[1][:10].tolist())  # the head stays steady

    def fresh_product(lo: float, hi: float) -> int:
        while True:
            p = int(products[1][min(int(np.exp(rng.uniform(np.log(lo), np.log(hi)))), n_products - 1)])
            if p not in used:
                used.add(p)
                return p

    def onset_time() -> int:
        return int(rng.uniform(score_from + 600_000, t1 - 3 * 3_600_000))

    truth: dict[str, Any] = {"generator": "foreign", "seed": seed, "score_from_ts": score_from}
    truth["family"] = {
        "n_days": 2,
        "events_per_day": events_per_day,
        "n_products": n_products,
        "n_users": n_users,
    }
    truth.update(viral=[], spikes=[], bursts=[], slow_risers=[], attacks=[], banned_sellers=[])

    def viral_product(kind: str) -> dict[str, Any]:
        p = fresh_product(20, n_products)
        if kind == "banned_viral":  # its own seller: the blocklist must not hide organic products
            seller_of[p] = n_sellers + 2
        doubling = float(np.exp(rng.uniform(np.log(60), np.log(3600))))
        size = int(np.exp(rng.uniform(np.log(600), np.log(20_000))))
        onset = onset_time()
        while True:  # a branching process can die out early: that one never went viral, draw again
            ts = _branching(rng, onset, doubling, size, int(rng.integers(2, 6)))
            ts = ts[ts < t1]
            if ts.size >= min(300, size // 2):
                break
        new = rng.random(ts.size) < 0.7
        u = _draw(rng, users, ts.size)
        for i in np.flatnonzero(~new)[np.flatnonzero(~new) > 0]:
            u[i] = u[rng.integers(0, i)]
        s.add(ts, p, u, _mix(rng, VIRAL_MIX, ts.size))
        bucket = "fast" if doubling <= 300 else "medium" if doubling <= 1200 else "slow"
        return {
            "product_id": f"prod-{p}",
            "seller_id": f"sel-{seller_of[p]}",
            "rank": int(rank_of[p]),
            "onset_ts": int(ts.min()) if ts.size else onset,
            "events": int(ts.size),
            "events_first_10min": int((ts < ts.min() + 600_000).sum()) if ts.size else 0,
            "doubling_s": round(doubling, 1),
            "bucket": bucket,
            "shape": "branching",
            "baseline_per_min": round(float(per_min[p]), 4),
            "kind": kind,
        }

    for _ in range(int(rng.integers(6, 11))):
        truth["viral"].append(viral_product("viral"))
    for i in range(int(rng.integers(4, 9))):  # flash spikes and TV mentions
        p = fresh_product(10, n_products)
        onset = onset_time()
        flash = i % 2 == 0
        n = int(rng.integers(150, 401)) if flash else int(rng.integers(300, 1501))
        dur = 120_000 if flash else int(rng.uniform(5, 15) * 60_000)
        ts = np.sort(onset + rng.integers(0, dur, n))
        s.add(ts, p, _draw(rng, users, n), _mix(rng, BASE_MIX, n))
        truth["spikes"].append(
            {"product_id": f"prod-{p}", "ts": onset, "events": n, "duration_s": dur // 1000}
        )
    for _ in range(int(rng.integers(2, 5))):  # creator bursts: a jump, then decay
        p = fresh_product(10, n_products)
        onset, n = onset_time(), int(rng.integers(300, 2001))
        ts = np.sort(onset + rng.exponential(rng.uniform(3, 10) * 60_000, n).astype(np.int64))
        s.add(ts, p, _draw(rng, users, n), _mix(rng, BASE_MIX, n))
        truth["bursts"].append({"product_id": f"prod-{p}", "ts": onset, "events": n})
    truth["steady"] = [
        {"product_id": f"prod-{p}", "events": int(per_min[p] * 2880)} for p in products[1][:5].tolist()
    ]
    attacker = 10**9

    def attack(kind: str, p: int, ts: np.ndarray, u: np.ndarray, mix: np.ndarray, accounts: int) -> None:
        s.add(ts, p, u, _mix(rng, mix, ts.size))
        truth["attacks"].append(
            {
                "product_id": f"prod-{p}",
                "kind": kind,
                "onset_ts": int(ts.min()),
                "events": int(ts.size),
                "accounts": accounts,
                "attack_id": f"{kind}-{seed}",
            }
        )

    # the aged ring: 250 accounts active from the first hour, then 3 products of one new seller
    ring = attacker + np.arange(250)
    attacker += 250
    history = int(rng.integers(5, 15)) * 250 * 2
    s.add(
        _cycle_times(rng, history, t0 + 3_600_000, t1, amp, peak_h),
        _draw(rng, products, history),
        rng.choice(ring, history),
        _mix(rng, BASE_MIX, history),
    )
    ring_seller = n_sellers + 1
    start = onset_time()
    for _ in range(3):
        p = fresh_product(200, n_products)
        seller_of[p] = ring_seller
        n = int(rng.integers(900, 1301))
        begin = start + int(rng.uniform(0, 30) * 60_000)
        ts = begin + (np.sqrt(rng.random(n)) * 1_800_000).astype(np.int64)  # a linear ramp over 30 min
        attack("aged_ring", p, np.sort(ts), rng.choice(ring, n), VIRAL_MIX, 250)
    # a bot farm: few accounts, many events
    p, k, n = fresh_product(200, n_products), int(rng.integers(10, 31)), int(rng.integers(1000, 2001))
    start = onset_time()
    attack(
        "bot_farm",
        p,
        np.sort(start + rng.integers(0, 1_200_000, n)),
        attacker + rng.integers(0, k, n),
        FAKE_MIX,
        k,
    )
    attacker += k
    # a click farm: many fresh accounts, one or two events on each of two products
    k, start = int(rng.integers(400, 1201)), onset_time()
    for _ in range(2):
        p = fresh_product(200, n_products)
        reps = 1 + (rng.random(k) < 0.5)
        u = np.repeat(attacker + np.arange(k), reps)
        attack("click_farm", p, np.sort(start + rng.integers(0, 900_000, u.size)), u, FAKE_MIX, k)
    attacker += k
    # a banned seller's really viral product
    banned = viral_product("banned_viral")
    truth["banned_sellers"].append(banned["seller_id"])
    truth["attacks"].append(
        {k2: banned[k2] for k2 in ("product_id", "onset_ts", "events")}
        | {"kind": "banned_viral", "accounts": 0, "attack_id": f"banned_viral-{seed}"}
    )
    _write(rng, s, seller_of, category_of, out_dir / "events.ndjson")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _write(
    rng: np.random.Generator, s: _Stream, seller_of: np.ndarray, category_of: np.ndarray, path: Path
) -> None:
    ts = np.concatenate(s.ts)
    product = np.concatenate(s.product)
    user = np.concatenate(s.user)
    kind = np.concatenate(s.kind)
    arrival = ts + np.where(rng.random(ts.size) < 0.04, rng.integers(0, 90_000, ts.size), 0)
    order = np.argsort(arrival, kind="stable")
    price = np.round(5 + (product * 7919 % 9500) / 100.0, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for i, j in enumerate(order.tolist()):
            p = int(product[j])
            u = int(user[j])
            uid = f"acct-{u - 10**9}" if u >= 10**9 else f"user-{u}"
            out.write(
                f'{{"event_id":"x-{i}","ts":{int(ts[j])},"type":"{TYPES[int(kind[j])]}","product_id":"prod-{p}",'
                f'"user_id":"{uid}","seller_id":"sel-{int(seller_of[p])}","category":"cat-{int(category_of[p])}",'
                f'"price":{float(price[j]):.2f}}}\n'
            )
