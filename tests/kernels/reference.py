"""Plain-Python references for the kernels: dicts, loops and math.exp, obvious over fast."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Events", "activity_chance", "change_columns", "clock_reference", "decayed_counts", "decayed_global",
    "detector_ready", "feature_columns", "random_events",
]  # fmt: skip

BASE_TS_MS = 1_700_000_000_000  # 2023-11-14, a realistic epoch-ms magnitude


@dataclass(frozen=True)
class Events:
    """Decoded events as columns, the way the kernels receive them."""

    slot: np.ndarray  # int64[n]
    type_code: np.ndarray  # int8[n]
    ts_ms: np.ndarray  # int64[n]
    weight: np.ndarray  # float64[n]
    n_products: int
    n_types: int = 6

    def __len__(self) -> int:
        return int(self.slot.shape[0])

    @property
    def max_ts_ms(self) -> int:
        return int(self.ts_ms.max())

    def rows(self) -> list[tuple[int, int, int, float]]:
        """(slot, type_code, ts_ms, weight) per event, as Python numbers."""
        return list(
            zip(
                self.slot.tolist(),
                self.type_code.tolist(),
                self.ts_ms.tolist(),
                self.weight.tolist(),
                strict=True,
            )
        )

    def take(self, index: np.ndarray | slice) -> Events:
        """The events at ``index`` (a slice or an integer array), in that order."""
        return Events(
            self.slot[index],
            self.type_code[index],
            self.ts_ms[index],
            self.weight[index],
            self.n_products,
            self.n_types,
        )

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.slot, self.type_code, self.ts_ms, self.weight


def random_events(
    seed: int,
    n: int,
    n_products: int,
    n_types: int = 6,
    *,
    span_ms: int = 3_600_000,
    jitter_ms: int = 120_000,
) -> Events:
    """Events spread over ``span_ms``, arriving out of order by up to ``jitter_ms`` (a few far later).

    Products are skewed (a few hot ones repeat a lot), weights vary in [0.1, 5].
    """
    rng = random.Random(seed)
    times = sorted(rng.randrange(span_ms) for _ in range(n))
    ts = []
    for t in times:
        if rng.random() < 0.05:  # a straggler: arrives much later than its time
            t -= rng.randrange(10 * jitter_ms + 1)
        ts.append(BASE_TS_MS + t + rng.randint(-jitter_ms, jitter_ms))
    hot = max(1, n_products // 5)
    slots = [rng.randrange(hot) if rng.random() < 0.5 else rng.randrange(n_products) for _ in range(n)]
    types = [rng.randrange(n_types) for _ in range(n)]
    weights = [rng.uniform(0.1, 5.0) for _ in range(n)]
    return Events(
        np.array(slots, np.int64),
        np.array(types, np.int8),
        np.array(ts, np.int64),
        np.array(weights, np.float64),
        n_products,
        n_types,
    )


def decayed_counts(events: Events, half_lives_s: tuple[float, ...] | list[float], now_ms: int) -> np.ndarray:
    """sum of w * exp(-ln2 / h * (now - t)) per (slot, type, h), as float64[n_products, n_types, n_hl]."""
    sums: dict[tuple[int, int, int], float] = defaultdict(float)
    for slot, type_code, ts_ms, weight in events.rows():
        for h, half_life_s in enumerate(half_lives_s):
            age_s = (now_ms - ts_ms) / 1000.0
            sums[(slot, type_code, h)] += weight * math.exp(-math.log(2.0) / half_life_s * age_s)
    out = np.zeros((events.n_products, events.n_types, len(half_lives_s)))
    for key, value in sums.items():
        out[key] = value
    return out


def decayed_global(events: Events, half_lives_s: tuple[float, ...] | list[float], now_ms: int) -> np.ndarray:
    """The same summed over products, float64[n_types, n_hl]."""
    sums: dict[tuple[int, int], float] = defaultdict(float)
    for _slot, type_code, ts_ms, weight in events.rows():
        for h, half_life_s in enumerate(half_lives_s):
            age_s = (now_ms - ts_ms) / 1000.0
            sums[(type_code, h)] += weight * math.exp(-math.log(2.0) / half_life_s * age_s)
    out = np.zeros((events.n_types, len(half_lives_s)))
    for key, value in sums.items():
        out[key] = value
    return out


def clock_reference(
    ts_list: list[int],
    tick_ms: int,
    lateness_ms: int,
    max_future_ms: int,
    max_ticks_per_gap: int,
    watermark_ms: int | None = None,
    first_limit_ms: int | None = None,
    jump_quorum: int = 16,
) -> tuple[list[int], list[tuple[int, int]], int | None]:
    """Run the event clock one event at a time.

    Returns (status per event: 0 accepted / 1 late / 2 future, ticks as (fires before event i,
    tick time) in order, watermark after the last event).  ``first_limit_ms`` is the future
    limit used while no event has been accepted (None: no limit).  A jump beyond
    ``max_future_ms`` needs ``jump_quorum`` votes for it, more than twice the votes against.
    """
    statuses: list[int] = []
    ticks: list[tuple[int, int]] = []
    candidate: int | None = None
    votes_for = votes_against = 0
    for i, ts in enumerate(ts_list):
        if watermark_ms is None:
            if first_limit_ms is not None and ts > first_limit_ms:
                statuses.append(2)
            else:
                statuses.append(0)
                watermark_ms = ts
            continue
        status = 0
        if ts > watermark_ms + max_future_ms:
            if candidate is not None and abs(ts - candidate) <= max_future_ms:
                votes_for += 1
                if votes_for >= jump_quorum and votes_for > 2 * votes_against:
                    candidate = None  # the jump is confirmed: accepted below
                else:
                    status = 2
            else:
                if candidate is not None:
                    votes_against += 1
                if candidate is None or votes_against >= votes_for:
                    candidate, votes_for, votes_against = ts, 1, 0
                if jump_quorum == 1:
                    candidate = None
                else:
                    status = 2
        else:
            if candidate is not None:
                votes_against += 1
                if votes_against >= votes_for:
                    candidate = None
            if ts < watermark_ms - lateness_ms:
                status = 1
        statuses.append(status)
        if status == 0 and ts > watermark_ms:
            crossed = [k * tick_ms for k in range(watermark_ms // tick_ms + 1, ts // tick_ms + 1)]
            if len(crossed) > max_ticks_per_gap:
                crossed = crossed[: max_ticks_per_gap - 1] + crossed[-1:]
            ticks.extend((i, t) for t in crossed)
            watermark_ms = ts
    return statuses, ticks, watermark_ms


# -- user signals and MinHash sketches (viraltrend.kernels.users) ---------------------------------


@dataclass(frozen=True)
class UserEvents:
    """Events as the user kernels receive them: product and user slots, type code, time."""

    product: np.ndarray  # int64[n]
    user: np.ndarray  # int64[n]
    type_code: np.ndarray  # int8[n]
    ts_ms: np.ndarray  # int64[n]
    n_users: int

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def rows(self) -> list[tuple[int, int, int, int]]:
        """(product, user, type_code, ts_ms) per event, as Python ints."""
        cols = (self.product, self.user, self.type_code, self.ts_ms)
        return list(zip(*(c.tolist() for c in cols), strict=True))

    def take(self, index: np.ndarray | slice) -> UserEvents:
        """The events at ``index`` (a slice or an integer array), in that order."""
        return UserEvents(
            self.product[index], self.user[index], self.type_code[index], self.ts_ms[index], self.n_users
        )

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.product, self.user, self.type_code, self.ts_ms


def random_user_events(
    seed: int,
    n: int,
    n_products: int,
    n_users: int,
    n_types: int = 3,
    *,
    span_ms: int = 3 * 3_600_000,
    jitter_ms: int = 60_000,
    first_product: int = 0,
) -> UserEvents:
    """Events over ``span_ms`` from few products and users (keys repeat often), out of order.

    Times jitter by up to ``jitter_ms`` and 5% are stragglers up to ``20 * jitter_ms`` late; a
    third of the events come from a few hot (product, user) pairs, as from a like-farming account.
    """
    rng = random.Random(seed)
    times = sorted(rng.randrange(span_ms) for _ in range(n))
    ts, products, users = [], [], []
    for t in times:
        if rng.random() < 0.05:
            t -= rng.randrange(20 * jitter_ms + 1)
        ts.append(BASE_TS_MS + t + rng.randint(-jitter_ms, jitter_ms))
        if rng.random() < 1 / 3:
            products.append(first_product + rng.randrange(min(2, n_products)))
            users.append(rng.randrange(min(2, n_users)))
        else:
            products.append(first_product + rng.randrange(n_products))
            users.append(rng.randrange(n_users))
    types = [rng.randrange(n_types) for _ in range(n)]
    return UserEvents(
        np.array(products, np.int64),
        np.array(users, np.int64),
        np.array(types, np.int8),
        np.array(ts, np.int64),
        n_users,
    )


def user_signals_reference(
    events: UserEvents, cap_window_ms: int, fresh_window_ms: int, allowed_lateness_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight float64[n], new_pair bool[n], fresh bool[n]), one event at a time, with dicts.

    Effective time ``e = max(ts, running max ts - allowed_lateness_ms)``.  A key, (product, user)
    or (product, user, type), counts when it has no stored time or its stored time is
    ``< e - cap_window_ms``; then ``e`` is stored.  Fresh: ``e - (e of the user's first event) <
    fresh_window_ms``.  Nothing is ever forgotten.
    """
    stored: dict[tuple[int, ...], int] = {}
    first_seen: dict[int, int] = {}
    max_ts: int | None = None
    weight, new_pair, fresh = [], [], []
    for product, user, type_code, ts in events.rows():
        max_ts = ts if max_ts is None else max(max_ts, ts)
        e = max(ts, max_ts - allowed_lateness_ms)
        first_seen.setdefault(user, e)
        fresh.append(e - first_seen[user] < fresh_window_ms)
        for key, out in (((product, user), new_pair), ((product, user, type_code), weight)):
            counted = key not in stored or stored[key] < e - cap_window_ms
            if counted:
                stored[key] = e
            out.append(counted)
    return np.array(weight, np.float64), np.array(new_pair, np.bool_), np.array(fresh, np.bool_)


def splitmix64(state: int) -> int:
    """The splitmix64 output for ``state`` (Steele, Lea, Flood 2014), as an int in [0, 2**64)."""
    mask = 2**64 - 1
    z = (state + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def minhash_signature(users: list[int], k: int, seed: int) -> list[int]:
    """min over users of splitmix64(user ^ seed_j), seed_j = splitmix64(seed + j * golden gamma)."""
    mask = 2**64 - 1
    seeds = [splitmix64((seed + j * 0x9E3779B97F4A7C15) & mask) for j in range(k)]
    return [min((splitmix64((u & mask) ^ s) for u in users), default=mask) for s in seeds]


def cusum(
    counts: dict[int, dict[int, int]], mu: dict[int, float], lifts: list[float], tick_s: float, last_tick: int
) -> dict[int, tuple[list[float], list[int]]]:
    """Poisson CUSUMs updated at every tick, idle ones included (the kernel skips idle ticks).

    ``counts[tick][product]`` are new users in that tick; ``mu[product]`` a constant baseline per
    second.  Returns, per product seen, the statistics and the change-point ticks (the last tick
    after which the statistic was 0) after tick ``last_tick``.
    """
    products = sorted({p for per_tick in counts.values() for p in per_tick})
    first = min(counts)
    stat = {p: [0.0] * len(lifts) for p in products}
    zero = {p: [first - 1] * len(lifts) for p in products}
    for tick in range(first, last_tick + 1):
        for p in products:
            x = counts.get(tick, {}).get(p, 0)
            for g, rho in enumerate(lifts):
                s = stat[p][g] + x * math.log(rho) - (rho - 1.0) * mu[p] * tick_s
                if s <= 0.0:
                    s = 0.0
                    zero[p][g] = tick
                stat[p][g] = s
    return {p: (stat[p], zero[p]) for p in products}


def user_hash(user_id: str) -> int:
    """FNV-1a 64 of the UTF-8 bytes, then murmur3's finaliser; 0 becomes 1 (hashtable.hash_ids)."""
    mask = 2**64 - 1
    h = 0xCBF29CE484222325
    for b in user_id.encode("utf-8", "surrogatepass"):
        h = ((h ^ b) * 0x100000001B3) & mask
    for mult in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * mult) & mask
    h ^= h >> 33
    return h or 1


class UserTableReference:
    """Dicts for hashtable.UserTable: slots lowest-free-first, idle users released, veterans kept.

    ``intern`` gives each event's slot and whether it brought a released user back; a released
    user's slot is *held* until ``recycle``; a returning user takes its last slot back while held.
    """

    def __init__(self, idle_ms: int, lateness_ms: int) -> None:
        self.idle_ms, self.lateness_ms = idle_ms, lateness_ms
        self.slot_of: dict[int, int] = {}
        self.last: dict[int, int] = {}  # slot -> latest effective time
        self.veteran: dict[int, int] = {}  # hash -> last slot
        self.held: dict[int, int] = {}  # slot -> the hash released from it
        self.free: set[int] = set()
        self.high_water = 0
        self.max_ts: int | None = None

    def intern(self, hashes: list[int], ts: list[int]) -> tuple[list[int], list[bool]]:
        slots, returning = [], []
        for h, t in zip(hashes, ts, strict=True):
            self.max_ts = t if self.max_ts is None else max(self.max_ts, t)
            e = max(t, self.max_ts - self.lateness_ms)
            back = False
            if h not in self.slot_of:
                back = h in self.veteran
                if back and self.held.get(self.veteran[h]) == h:
                    s = self.veteran[h]
                    del self.held[s]
                elif self.free:
                    s = min(self.free)
                    self.free.discard(s)
                else:
                    s = self.high_water
                    self.high_water += 1
                self.slot_of[h] = s
                self.last[s] = e
            s = self.slot_of[h]
            self.last[s] = max(self.last[s], e)
            slots.append(s)
            returning.append(back)
        return slots, returning

    def release_idle(self) -> list[int]:
        if self.max_ts is None:
            return []
        cutoff = self.max_ts - self.lateness_ms - self.idle_ms
        gone = sorted(s for s in self.slot_of.values() if self.last[s] < cutoff)
        for h, s in list(self.slot_of.items()):
            if s in gone:
                del self.slot_of[h]
                del self.last[s]
                self.veteran[h] = s
                self.held[s] = h
        return gone

    def recycle(self, slots: list[int]) -> None:
        for s in slots:
            del self.held[s]
            self.free.add(s)


def id_hash_pair(event_id: str) -> tuple[int, int]:
    """Both hashes of :func:`viraltrend.kernels.idset.hash_pairs`: FNV-1a/murmur3, and a polynomial hash.

    The second: ``b <- b * 0x9E3779B97F4A7C15 + byte + 1`` over the UTF-8 bytes, plus the length,
    then splitmix64's finaliser.
    """
    mask = 2**64 - 1
    data = event_id.encode("utf-8", "surrogatepass")
    b = 0
    for byte in data:
        b = (b * 0x9E3779B97F4A7C15 + byte + 1) & mask
    z = (b + len(data)) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return user_hash(event_id), z ^ (z >> 31)


def seen_filter(
    current: dict[tuple[int, int], int],
    previous: dict[tuple[int, int], int],
    keys: list[tuple[int, int] | None],
    ts: list[int],
    horizon: list[int],
    never: int,
) -> list[bool]:
    """Keep an event unless the last kept ts of its key (either generation) is >= its horizon."""
    keep = []
    for key, t, h in zip(keys, ts, horizon, strict=True):
        if key is None:
            keep.append(True)
            continue
        before = max(current.get(key, never), previous.get(key, never))
        if before >= h:
            keep.append(False)
        else:
            keep.append(True)
            current[key] = t
    return keep


def change_columns(
    stat: np.ndarray, zero: np.ndarray, fine: np.ndarray, coarse: np.ndarray, mu: np.ndarray,
    lifts: np.ndarray, *, now_ms: int, tick_ms: int, ticks_per_coarse: int, h: float, fade_ticks: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The detector's read columns as ``SequentialDetector.read`` computed them in numpy (main, 3d5e6af)."""
    m, k = fine.shape
    best = stat.argmax(axis=1) if m else np.zeros(0, np.int64)
    rows = np.arange(m)
    s = stat[rows, best]
    since_ms = now_ms - zero[rows, best]
    ticks = np.clip(np.ceil(since_ms / tick_ms).astype(np.int64), 1, k)
    growth_fine = _growth(fine, np.maximum(ticks - 1, 0), k - 1)
    per, n_slow = ticks_per_coarse, coarse.shape[1]
    tick = now_ms // tick_ms
    complete = int(tick % per == per - 1)
    newest = n_slow - 2 + complete
    c_now, c_zero = tick // per, (zero[rows, best] // tick_ms) // per
    usable = np.clip(c_now - c_zero - 1 + complete, 0, newest + 1)
    growth_slow = _growth(coarse, usable, newest)
    j = np.arange(k)[None, :]
    last = fine[:, k - fade_ticks :].sum(axis=1)
    before = (j >= k - ticks[:, None]) & (j < k - fade_ticks)
    n_before = before.sum(axis=1)
    expected = (fine * before).sum(axis=1) / np.maximum(n_before, 1) * fade_ticks
    fade = np.where(n_before >= fade_ticks, (last - expected) / np.sqrt(expected + 1.0), 0.0)
    window = (j >= k - ticks[:, None]).astype(np.float64)
    fine_users = (fine * window).sum(axis=1)
    recent_lift = fine_users / (mu * ticks * tick_ms / 1000.0)
    c_since = np.clip(c_now - c_zero + 1, 1, n_slow)
    in_coarse = np.arange(n_slow)[None, :] >= n_slow - c_since[:, None]
    change_users = np.where(since_ms <= k * tick_ms, fine_users, (coarse * in_coarse).sum(axis=1))
    return {
        "evidence": s / h,
        "evidence_lift": lifts[best] if m else np.zeros(0),
        "change_s": since_ms / 1000.0,
        "growth_z": growth_fine,
        "growth_z_slow": growth_slow,
        "fade_z": fade,
        "recent_users": last,
        "recent_lift": recent_lift,
        "change_users": change_users,
    }


def detector_ready(det, cols, users, probability=None, *, shape_free=False, long_floor=True, joint=True):
    """``SequentialDetector.ready`` as main (6cf2e65) computed it, in numpy (``det``: the detector)."""
    self = det
    d = self.cfg.detect
    fading = (cols["growth_z"] <= -d.fade_z) | (cols["growth_z_slow"] <= -d.fade_z)
    fading |= cols["fade_z"] <= -d.fade_z
    shaped = (cols["growth_z"] >= d.growth_z) | (cols["growth_z_slow"] >= d.growth_z)
    if joint and d.joint_growth_z > 0.0 and "growth_z_joint" in cols:
        shaped |= cols["growth_z_joint"] >= d.joint_growth_z
    sustained = cols["change_s"] >= d.sustain_s
    if d.sustain_min_share_ratio > 0.0:  # a plateau that recruits no one is a level change
        share = cols.get("share_ratio", np.full_like(sustained, np.inf, np.float64))
        shared = share >= d.sustain_min_share_ratio
        if "sustain_share_ratio" in cols:  # a slow ramp's few shares, read over a longer window too
            if long_floor and d.sustain_share_long_floor > 0.0:  # on an old change, backed by the hour's
                young = cols["change_s"] < d.sustain_share_long_floor_age_s
                shared &= young | (cols["sustain_share_ratio"] >= d.sustain_share_long_floor)
            bar = d.sustain_share_long_ratio or d.sustain_min_share_ratio
            shared |= cols["sustain_share_ratio"] >= bar
        sustained &= shared
    shaped |= sustained
    if shape_free:
        shaped = np.ones_like(shaped)
    elif probability is not None:  # too young a change: the rings cannot tell a step from a ramp yet
        m = self.cfg.model
        vouched = (probability >= m.fast_track_probability) & (cols["change_s"] >= m.min_change_s)
        cap = np.full_like(probability, m.max_change_users)
        if m.grown_change_users > m.max_change_users:  # more users while the slow ring sees growth
            cap[cols["growth_z_slow"] >= m.min_growth_z] = m.grown_change_users
        vouched &= cols["change_users"] <= cap
        if m.max_change_s > 0.0:  # an old change has had the sustain path's chance (and its share test)
            vouched &= cols["change_s"] <= m.max_change_s
        shares = cols.get("share_ratio", np.full_like(probability, np.inf))  # none reported: no test
        if m.recruit_share_ratio > 0.0:  # the older the change, the more it must have been passed on
            need = m.recruit_share_ratio * np.minimum(cols["change_s"] / max(d.sustain_s, 1.0), 1.0)
            vouched &= shares >= need
        if m.min_engaged_ratio > 0.0:  # views alone (a wishlist trickle) are no onset
            vouched &= cols.get("engaged_ratio", np.full_like(probability, np.inf)) >= m.min_engaged_ratio
        need_z = np.full_like(probability, m.min_growth_z)
        if m.growth_z_users > 0.0 and m.min_growth_z > 0.0:  # as much growth per user: z grows as sqrt(n)
            need_z *= np.sqrt(np.maximum(cols["change_users"] / m.growth_z_users, 1.0))
        shaped |= vouched & (np.maximum(cols["growth_z"], cols["growth_z_slow"]) >= need_z)
        if m.step_share_ratio > 0.0 and "share_ratio" in cols:  # a flat step passed on far more than a
            step = cols["change_s"] >= m.min_change_s  # burst or a spike is: a cascade that saturated
            shaped |= step & (cols["share_ratio"] >= m.step_share_ratio)
    shaped &= cols["change_s"] <= d.max_change_age_s  # creeping up for hours: a slow riser
    backed = (users >= self.cfg.trust.min_unique_users) | (cols["change_users"] >= d.min_change_users)
    ok = (cols["evidence"] >= 1.0) & backed & ~fading & shaped
    return np.asarray(ok & (cols["recent_lift"] >= d.min_recent_lift), np.bool_)


def activity_chance(chance, weight, sampled):
    """``trust.activity_chance`` as main (6cf2e65) computed it, in numpy."""
    m, k = weight.shape
    out = np.empty(sampled.shape)
    idx = np.clip(sampled - 1, 0, k - 1)
    for i in range(m):
        cum = np.cumsum(np.minimum(1.0, chance[:, None] * weight[i][None, :]), axis=1)  # [r, k]
        tot = np.take_along_axis(cum, idx[i][:, None], axis=1)[:, 0]
        out[i] = np.where(sampled[i] > 0, tot / np.maximum(sampled[i], 1), chance)
    return out


def feature_columns(
    reader, counts, global_counts, n_products, age_s, observed_s=math.inf, trust=None, fast=False
):
    """``FeatureReader.read`` as main (8f0cba5) computed it, in numpy (``reader``: the FeatureReader)."""
    from viraltrend.events import EVENT_TYPE_CODE
    from viraltrend.scoring import NO_SHARES, events_per_weight, half_life_label, share_ratio

    self = reader
    Columns = dict
    lam = math.log(2.0) / np.asarray(self.half_lives_s)
    w = np.asarray(self.type_weights)
    eng = np.einsum("mkh,k->mh", counts, w)  # weighted engagement, decayed count
    events = counts.sum(axis=1)  # unweighted event counts
    seen = max(observed_s, 1.0)
    norm = lam / -np.expm1(-lam * seen)  # -> lam once seen >> half-life
    rate_h = eng * norm * 3600.0  # per hour
    cfg = self.score
    i_mom, i_trend, i_base = (
        self._index(cfg.momentum_half_life_s),
        self._index(cfg.trend_half_life_s),
        self._index(cfg.baseline_half_life_s),
    )
    i_mid = min(i_trend + 1, i_base)
    floor_h = cfg.min_baseline_per_hour
    prior_h = cfg.global_baseline_factor * float(global_counts[:, i_base] @ w) * norm[i_base] * 3600.0
    prior_h /= max(n_products, 1)
    baseline_h = np.maximum(rate_h[:, i_base], max(floor_h, prior_h))
    # Poisson significance on unweighted events: the trend-window count vs its baseline expectation
    base_events_h = baseline_h * events_per_weight(eng, events, i_base)
    expected = base_events_h / 3600.0 / norm[i_trend]
    observed = events[:, i_trend]
    cols: Columns = {}
    for h, hl in enumerate(self.half_lives_s):
        cols[f"rate_{half_life_label(hl)}_per_h"] = rate_h[:, h]
    trend = half_life_label(self.half_lives_s[i_trend])
    for name in ("view", "like", "share", "add_to_cart", "purchase"):
        cols[f"{name}s_{trend}"] = counts[:, EVENT_TYPE_CODE[name], i_trend]
    cols["baseline_per_h"] = baseline_h
    cols["lift"] = rate_h[:, i_trend] / baseline_h
    cols["velocity"] = rate_h[:, i_trend] / np.maximum(rate_h[:, i_mid], floor_h)
    cols["momentum"] = rate_h[:, i_mom] / np.maximum(rate_h[:, i_trend], 1e-9)
    cols["acceleration"] = cols["velocity"] - rate_h[:, i_mid] / np.maximum(baseline_h, floor_h)
    cols["z"] = (observed - expected) / np.sqrt(expected + 1.0)
    views = counts[:, EVENT_TYPE_CODE["view"], i_trend]
    carts = counts[:, EVENT_TYPE_CODE["add_to_cart"], i_trend]
    cols["share_rate"] = counts[:, EVENT_TYPE_CODE["share"], i_trend] / np.maximum(views, 1.0)
    cols["cart_rate"] = carts / np.maximum(views, 1.0)
    cols["purchase_rate"] = counts[:, EVENT_TYPE_CODE["purchase"], i_trend] / np.maximum(carts, 1.0)
    cols["age_s"] = np.asarray(age_s, np.float64)
    if fast:
        mom = half_life_label(self.half_lives_s[i_mom])
        expected_mom = base_events_h / 3600.0 / norm[i_mom]
        cols[f"lift_{mom}"] = rate_h[:, i_mom] / baseline_h
        cols[f"z_{mom}"] = (events[:, i_mom] - expected_mom) / np.sqrt(expected_mom + 1.0)
    if trust is not None:
        raw = np.maximum(trust[:, 2], 1e-12)
        cols["unique_users"] = trust[:, 0]
        cols["events_per_user"] = trust[:, 2] / np.maximum(trust[:, 0], 1.0)
        cols["fresh_share"] = np.minimum(trust[:, 1] / raw, 1.0)
        buys = (
            counts[:, EVENT_TYPE_CODE["add_to_cart"], i_trend]
            + counts[:, EVENT_TYPE_CODE["purchase"], i_trend]
        )
        g = global_counts[:, i_base]
        global_conv = (g[EVENT_TYPE_CODE["add_to_cart"]] + g[EVENT_TYPE_CODE["purchase"]]) / max(
            float(g[EVENT_TYPE_CODE["view"]]), 1.0
        )
        cols["conversion_ratio"] = buys / np.maximum(views, 1.0) / max(global_conv, 1e-9)
        cols["expected_buys"] = views * global_conv  # main 8f0cba5 (trust.no_conversion_expected_buys)
        # recruitment: shares per view against the catalogue's; a stream without shares tells nothing
        ratio = share_ratio(counts, global_counts, i_trend, i_base)
        cols["share_ratio"] = ratio if ratio is not None else np.full(views.shape, NO_SHARES)
    return cols


# -- the detector's growth tests in numpy (references of viraltrend.kernels.change) ----------------
def _growth(bins: np.ndarray, usable: np.ndarray, newest: int) -> np.ndarray:
    """Trend of each row's ``usable`` bins ending at column ``newest``, as a z-score.

    The score test for a log-linear trend in Poisson counts: with ``j`` the bin index and ``c_j``
    its count, ``z = sum((j - mean j) c_j) / sqrt(mean c * sum((j - mean j)**2))``.  Positive when
    the counts grow, negative when they fade, 0 while fewer than four bins are usable.  It uses
    every bin (more power than comparing halves) and needs no model of the rate.

    >>> b = np.array([[0, 0, 2, 4, 8, 16], [9, 9, 9, 9, 9, 9], [0, 0, 16, 8, 4, 2]], np.float64)
    >>> _growth(b, np.array([4, 6, 4]), 5).round(2).tolist()
    [3.71, 0.0, -3.71]
    """
    u = np.minimum(usable, newest + 1)
    j = np.arange(bins.shape[1], dtype=np.float64)[None, :]
    inside = (j > newest - u[:, None]) & (j <= newest)
    n = np.maximum(u, 1).astype(np.float64)
    centre = (newest - (u - 1) / 2.0)[:, None]
    dev = np.where(inside, j - centre, 0.0)
    mean_count = (bins * inside).sum(axis=1) / n
    score = (dev * bins).sum(axis=1)
    var = mean_count * (dev**2).sum(axis=1)
    return np.where(u >= 4, score / np.sqrt(var + 1.0), 0.0)


def _growth_joint(
    fine: np.ndarray,
    coarse: np.ndarray,
    fine_usable: np.ndarray,
    c_zero: np.ndarray,
    tick: int,
    per: int,
) -> np.ndarray:
    """:func:`_growth`'s trend test over both rings as one series since the change point, as a z-score.

    The numpy form: :meth:`SequentialDetector.read` computes it with the compiled
    :func:`~viraltrend.kernels.change.growth_joint`, which gives these bits
    (``tests/kernels/test_change.py``).

    The coarse ring's whole bins after the change point's bin up to where the fine ring takes over
    (the first coarse bin the fine ring holds whole), then the fine ring's ticks from there on to
    the tick ending now (``fine_usable`` of them at most: the whole ticks after the change point).
    Each unit ``i`` has a width ``w_i`` (1 tick or ``per``), a centre ``t_i`` and a count ``c_i``;
    the score test for a log-linear trend in Poisson counts with exposures:
    ``z = sum(c_i (t_i - tbar)) / sqrt(N / W * sum(w_i (t_i - tbar)**2) + 1)`` with
    ``tbar = sum(w_i t_i) / W``, ``W = sum(w_i)``, ``N = sum(c_i)``.  Unlike the slow ring alone it
    reads the newest minutes (the current coarse bin while it is partial, the most users of a
    ramp) by tick as they come; unlike the fine ring alone it reads the whole change.
    0 while fewer than four units are usable.

    >>> fine = np.zeros((2, 18)); fine[0, 6:] = [1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 6, 7]
    >>> coarse = np.zeros((2, 24)); coarse[0, -6:] = [2, 3, 4, 8, 16, 19]  # bins 95-100
    >>> fine[1, :] = 5.0; coarse[1, :] = 30.0; coarse[1, -1] = 25.0  # flat (the current bin 5 ticks in)
    >>> _growth_joint(fine, coarse, np.array([17, 17]), np.array([0, 0]), 6 * 100 + 4, 6).round(2).tolist()
    [10.79, 0.0]
    """
    m, k = fine.shape
    n = coarse.shape[1]
    f0 = -(-(tick - k + 1) // per) * per  # first tick of the first coarse bin the fine ring holds whole
    nf = tick - f0 + 1
    c_now = tick // per
    n_fine = np.minimum(fine_usable, nf)
    jf = np.arange(k)[None, :]
    in_fine = jf >= k - n_fine[:, None]
    t_fine = (jf - (k - 1)).astype(np.float64) + 0.5  # tick centres, the tick ending now at 0.5
    last_c = f0 // per - 1  # the newest coarse bin before the fine ring's part
    col_last = n - 1 - (c_now - last_c)  # its column
    n_c = np.clip(last_c - c_zero, 0, col_last + 1)  # whole bins after the change point's, up to it
    jc = np.arange(n)[None, :]
    in_coarse = (jc <= col_last) & (jc > col_last - n_c[:, None])
    bin_of = c_now - (n - 1 - jc)  # the coarse bin held by each column
    t_coarse = (bin_of * per + per / 2.0 - tick).astype(np.float64)
    w = np.concatenate([np.where(in_fine, 1.0, 0.0), np.where(in_coarse, float(per), 0.0)], axis=1)
    t = np.concatenate([np.broadcast_to(t_fine, (m, k)), np.broadcast_to(t_coarse, (m, n))], axis=1)
    c = np.concatenate([fine * in_fine, coarse * in_coarse], axis=1)
    big_w = w.sum(axis=1)
    tbar = (w * t).sum(axis=1) / np.maximum(big_w, 1.0)
    dev = np.where(w > 0.0, t - tbar[:, None], 0.0)
    score = (c * dev).sum(axis=1)
    var = c.sum(axis=1) / np.maximum(big_w, 1.0) * (w * dev**2).sum(axis=1)
    units = n_fine + n_c
    return np.where(units >= 4, score / np.sqrt(var + 1.0), 0.0)


def tick_prelude(
    g_acc, lam, dt_s, t_g_acc, t_acc, t_lam, t_dt_s, channel, half_life, i_hour, i_base, norm_hour,
    norm_base, cycle_on, n_live, prior_factor, floor_min, clip_lo, clip_hi, new_users, stat, back, bins,
    coarse, per_coarse, last_tick, log_rho, rho_m1, tick, tick_s, acc, touched, w, observed_s, i_trend,
    i_base_s, min_baseline_h, global_factor, lift_mid, lift_k, z_mid, z_k, h, score_below, evidence_below,
    bound,
):  # fmt: skip
    """``prefilter._tick_prelude`` as the composition of its steps, each called on its own (perf24).

    The global figures, the daily-cycle factor and floor, the change detector's update from the new
    users and the screen of the touched products, in that order: ``(code, floor, cycle, screened,
    touched, kept, may score)``.  Each step is tested against its own reference elsewhere
    (``test_decay``, ``test_cusum``, ``test_prefilter``); this checks how the prelude chains them.
    """
    from viraltrend.kernels.columns import SORT_STACK
    from viraltrend.kernels.cusum import _update_from_users_into
    from viraltrend.kernels.decay import _global_figures_into
    from viraltrend.kernels.prefilter import _screen_touched_into

    def scratch(n, dtype=np.int64):
        return np.empty(n, dtype)

    # the engine's _TickBaseline.params: global figures, daily-cycle factor, floor (detect.py's formulas)
    g = np.empty(g_acc.shape[1], np.float64)
    users = _global_figures_into(g_acc, lam, dt_s, t_g_acc, t_lam, t_dt_s, channel, half_life, g)
    cycle = 1.0
    if cycle_on:
        rate_1h, rate_24h = g[i_hour] * norm_hour, g[i_base] * norm_base
        if not (rate_24h <= 0.0) and math.isfinite(rate_1h / rate_24h):
            cycle = rate_1h / rate_24h
            cycle = clip_lo if clip_lo > cycle else cycle  # min(max(r, lo), hi) as Python takes them
            cycle = clip_hi if clip_hi < cycle else cycle
    prior = prior_factor * users * norm_base / max(n_live, 1)
    floor = floor_min if floor_min > prior else prior  # max(prior, floor_min)
    empty = touched[:0].copy()
    if new_users.shape[0]:  # the change detector's update_from_users
        n = new_users.shape[0]
        code = _update_from_users_into(
            stat, back, bins, coarse, per_coarse, last_tick, new_users, t_acc, channel, half_life,
            t_lam[half_life], t_dt_s, norm_base, floor, cycle, log_rho, rho_m1, tick, tick_s, scratch(n),
            scratch(SORT_STACK), scratch(n), scratch(n), scratch(n, np.float64), scratch(n, np.float64),
        )  # fmt: skip
        if code:
            return code, floor, cycle, False, empty, empty, False
    n = touched.shape[0]
    uniq, kept = scratch(n), scratch(n)
    ok, m, n_kept, may_score = _screen_touched_into(
        acc, g_acc, lam, dt_s, touched, w, observed_s, n_live, i_trend, i_base_s, min_baseline_h,
        global_factor, lift_mid, lift_k, z_mid, z_k, stat, h, score_below, evidence_below, bound, scratch(n),
        scratch(SORT_STACK), uniq, scratch(n), scratch(n, np.int8), kept,
    )  # fmt: skip
    return 0, floor, cycle, ok, uniq[:m], kept[:n_kept], may_score


_FREE_ROW = 2**64 - 1  # hashtable's empty row of the slot table
_LOW32 = 0xFFFFFFFF
_INT64_MIN = -(2**63)


def _row_find_ref(rows: list[int], hash_of: list[int], h: int) -> int:
    """The slot table's row of hash ``h`` (linear probing on its low 32 bits), or the empty row."""
    mask, low = len(rows) - 1, h & _LOW32
    idx = low & mask
    while rows[idx] != _FREE_ROW:
        if rows[idx] >> 32 == low and hash_of[rows[idx] & _LOW32] == h:
            return idx
        idx = (idx + 1) & mask
    return idx


def _row_delete_ref(rows: list[int], idx: int) -> None:
    """Backward-shift deletion of row ``idx``: later rows of its run move up unless home lies between."""
    mask = len(rows) - 1
    hole = j = idx
    while True:
        j = (j + 1) & mask
        if rows[j] == _FREE_ROW:
            break
        home = (rows[j] >> 32) & mask
        if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole and home > j):
            rows[hole] = rows[j]
            hole = j
    rows[hole] = _FREE_ROW


def _vet_find_ref(keys: list[int], h: int) -> int:
    mask = len(keys) - 1
    idx = h & mask
    while keys[idx] != h and keys[idx] != 0:
        idx = (idx + 1) & mask
    return idx


def release_recycle_reference(
    rows, hash_of, prev_of, last_ms, high_water, cutoff_ms, vet_keys, vet_vals, vet_used, free, free_pos
):  # fmt: skip
    """``hashtable._release_recycle`` as plain loops over lists (copies of the arrays given).

    Slots with a hash and ``last_ms < cutoff_ms`` are released in ascending order: each one's row
    deleted (backward shift), ``prev_of`` (when kept) given its hash, the slot emptied; their hashes
    join the veterans (the map doubled before an insert that would make it more than 3/4 full); when
    the empty slots below ``high_water`` are not the free list's rest, they become the free list.
    Returns ``(slots, rows, hash_of, prev_of, last_ms, vet_keys, vet_vals, vet_used, free, free_pos)``.
    """
    rows, hash_of, prev_of, last_ms = (list(map(int, a)) for a in (rows, hash_of, prev_of, last_ms))
    vet_keys, vet_vals, free = list(map(int, vet_keys)), list(map(int, vet_vals)), list(map(int, free))
    gone = [s for s in range(high_water) if hash_of[s] != 0 and last_ms[s] < cutoff_ms]
    hashes = [hash_of[s] for s in gone]
    for s, h in zip(gone, hashes, strict=True):
        _row_delete_ref(rows, _row_find_ref(rows, hash_of, h))
        if prev_of:
            prev_of[s] = h
        hash_of[s] = 0
        last_ms[s] = _INT64_MIN
    for s, h in zip(gone, hashes, strict=True):
        if 4 * (vet_used + 1) > 3 * len(vet_keys):
            old = [(k, v) for k, v in zip(vet_keys, vet_vals, strict=True) if k != 0]
            vet_keys, vet_vals = [0] * (2 * len(vet_keys)), [-1] * (2 * len(vet_keys))
            for k, v in old:
                j = _vet_find_ref(vet_keys, k)
                vet_keys[j], vet_vals[j] = k, v
        j = _vet_find_ref(vet_keys, h)
        if vet_keys[j] == 0:
            vet_keys[j] = h
            vet_used += 1
        vet_vals[j] = s
    empty = [s for s in range(high_water) if hash_of[s] == 0]
    if len(empty) != len(free) - free_pos:
        free, free_pos = empty, 0
    return gone, rows, hash_of, prev_of, last_ms, vet_keys, vet_vals, vet_used, free, free_pos


def _scaled_reference(value: float, factor: float, exponent: float) -> float:
    """``value * exp(exponent)`` as ``decay._scaled_by`` computes it (``factor = exp(exponent)``)."""
    if value == 0.0:
        return 0.0
    r = value * factor
    tiny = 2.2250738585072014e-308
    if tiny <= factor < math.inf and tiny <= abs(r) < math.inf:
        return r
    m, e = math.frexp(value)
    y = 0.5 * (exponent + e * 0.6931471805599453)
    half = math.exp(y) if y < 709.0 else math.inf
    return m * half * half


def landmark_move(
    acc: np.ndarray, last_ts_ms: np.ndarray, never: int, lam: np.ndarray, dt_s: float
) -> np.ndarray:
    """A landmark move by ``dt_s`` seconds, plain Python: a copy of ``acc`` (rows x types x half-lives)
    whose rows with ``last_ts_ms != never`` (every row when ``last_ts_ms`` is empty) have each cell
    scaled by ``exp(-lam[h] * dt_s)`` cell by cell, stored in ``acc``'s dtype (perf26)."""
    out = acc.copy()
    x = [-float(v) * dt_s for v in lam]
    f = [math.exp(v) if v < 709.0 else math.inf for v in x]
    every = last_ts_ms.shape[0] == 0
    for j in range(acc.shape[0]):
        if not every and int(last_ts_ms[j]) == never:
            continue
        for k in range(acc.shape[1]):
            for h in range(acc.shape[2]):
                out[j, k, h] = _scaled_reference(float(acc[j, k, h]), f[h], x[h])
    return out
