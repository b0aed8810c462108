"""A seeded, fast traffic simulator with ground truth, for demos, tests and benchmarks.

:func:`simulate` writes ``events.ndjson`` (the input contract, ``shared/contract/events.md``)
and ``truth.json`` (which products were made viral, steady or spiky, and when) for a
:class:`Scenario`.  The same scenario always gives byte-identical files.

The stream mixes four parts, plus optional attacks:

* base traffic: Zipf popularity over products, heavy-tailed sellers and users, six event
  types with realistic shares, timestamps following a daily cycle;
* viral products (mid/long tail, rank > 1000): from an onset, a self-exciting (Hawkes-like)
  process over 1 s bins with branching ratio slightly above 1, capped at a maximum rate and
  limited by a finite audience, so it ramps up within minutes, peaks and fades;
* steady distractors: the top-ranked products, busy all day with a gentle cycle only;
* spikes: a few hundred events on one product within 30-90 s, then nothing;
* attacks (all off by default), each on a mid/long-tail product with an onset in 15-75 % of
  the duration and a viral-like volume, so that raw counts look trending:

  - bot farm: 5-15 fresh accounts send all of a Hawkes-like ramp's views, likes and shares
    for 30-60 min;
  - click farm: hundreds to thousands of fresh accounts (never seen before the onset) send 1-3
    views, likes or shares each along such a ramp, and never add to cart or buy;
  - lockstep ring: a fresh seller's 3-5 products hit by the same 30-80 fresh accounts in the
    same 20 s windows every 45-90 s for about 45 min, the accounts joining over the first
    10-15 min (a ramp: rounds minutes apart would let the board's momentum check drop them);
  - banned viral: a product that really goes viral (the organic process, ordinary users) but
    whose seller is a fresh, banned seller (``truth["banned_sellers"]``).

Rates scale with the mean event rate ``R = n_events / duration_s``: a viral product starts
at ``0.015-0.03 R`` events/s, is capped at ``2-3.5 R`` (23-40 events/s in the default
scenario) and reaches an audience of 2-4 % of ``n_events``.  3 % of events arrive up to 30 s
late; duplicates and malformed lines can be mixed in for the dedup and dead-letter paths.
Attack events come out of the base budget like viral ones (at most 30 % of ``n_events`` in
all); without attacks the events file is byte-identical to the simulator before attacks.

Examples
--------
>>> import json, pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     result = simulate(Scenario(n_events=5_000, n_products=2_000, n_viral=1, seed=7), pathlib.Path(tmp))
...     first = json.loads(result.events_path.read_text().splitlines()[0])
>>> result.n_lines, first["event_id"], result.truth["attacks"]
(5000, 'e-0', [])
>>> sorted(result.truth)  # doctest: +NORMALIZE_WHITESPACE
['attacks', 'banned_sellers', 'n_duplicates', 'n_garbage', 'n_lines', 'scenario', 'spikes',
 'steady', 'viral']
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
from numba import njit
from numpy.typing import NDArray

from viraltrend.events import EVENT_TYPES

__all__ = ["Scenario", "SimulationResult", "simulate"]

#: Shares of view, like, comment, share, add_to_cart, purchase (the order of EVENT_TYPES).
_BASE_MIX: Final = (0.80, 0.08, 0.02, 0.03, 0.05, 0.02)
_VIRAL_MIX: Final = (0.58, 0.12, 0.04, 0.12, 0.09, 0.05)
_QUANTITY_TYPES: Final = ("add_to_cart", "purchase")
_LATE_FRACTION: Final = 0.03  # share of events delivered late ...
_MAX_LATE_MS: Final = 30_000  # ... by up to this much
_DUP_MAX_LAG_LINES: Final = 2_000  # a duplicate re-appears within this many lines of its original
_PEAK_HOUR_UTC: Final = 20.0  # the daily cycle peaks in the evening
_VIRAL_TAIL_RANK: Final = 1_000  # viral products come from beyond this rank
_CHUNK_LINES: Final = 500_000
_TS_MIN_MS: Final = 946_684_800_000  # 2000-01-01, start of the contract's valid range
_TS_MAX_MS: Final = 4_102_444_800_000  # 2100-01-01, its end
_MAX_DURATION_S: Final = 31 * 86_400.0
_GARBAGE_KINDS: Final = 9  # see _garble
#: Fake engagement: views, likes and shares only (bot and click farms); rings add a few comments.
_FAKE_MIX: Final = (0.62, 0.22, 0.0, 0.16, 0.0, 0.0)
_RING_MIX: Final = (0.60, 0.20, 0.05, 0.15, 0.0, 0.0)
_CLICK_FARM_PER_ACCOUNT: Final = (0.5, 0.3, 0.2)  # shares of accounts sending 1, 2, 3 events
_ATTACK_SHARE: Final = 0.3  # attacks take at most this share of n_events
_ATTACK_ONSET: Final = (0.15, 0.75)  # onsets uniform within this share of the duration
_RING_WINDOW_S: Final = 20  # a ring account hits every ring product within one such window ...
_RING_PERIOD_S: Final = (45.0, 90.0)  # ... once per round; rounds start this often
_MAX_RING_PRODUCTS: Final = 5


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything that determines a simulated stream; same scenario, same bytes.

    Attributes
    ----------
    n_events : int
        Unique events (lines before duplicates), viral, steady and spike events included.
    n_products : int
        Catalogue size; the weight of popularity rank ``r`` is ``(r + 1) ** -zipf_exponent``.
    n_viral, n_steady, n_spikes : int
        Products made viral, kept steadily popular (the top ranks), or given a one-off burst.
    seed : int
        Seeds every random draw.
    start_ts_ms : int
        Event time of the stream's start, epoch milliseconds (default 2025-11-27 00:00 UTC).
    duration_s : float
        Length of the stream in event time, 60 s to 31 days.
    zipf_exponent : float
        Exponent of the product popularity law.
    n_sellers, n_categories, n_users : int
        Sizes of the other id spaces (all heavy-tailed).
    daily_cycle_amplitude : float
        Global traffic follows ``1 + a * sin(...)`` over the UTC day, peaking at 20:00.
    duplicate_fraction : float
        Re-emit this fraction of events, same ``event_id`` and bytes, a few lines later.
    garbage_fraction : float
        Replace this fraction of lines with malformed input (dead-letter demo).
    n_bot_farms, n_click_farms, n_lockstep_rings, n_banned_viral : int
        Attacks on the trust guard (see the module docstring), listed in ``truth["attacks"]``:
        products pumped by a few accounts, by many fresh one-shot accounts, rings of 3-5
        products of one seller hit in lockstep, and really viral products of banned sellers.
    """

    n_events: int = 1_000_000
    n_products: int = 100_000
    n_viral: int = 5
    seed: int = 0
    start_ts_ms: int = 1_764_201_600_000
    duration_s: float = 86_400.0
    zipf_exponent: float = 1.1
    n_sellers: int = 5_000
    n_categories: int = 40
    n_users: int = 500_000
    n_steady: int = 5
    n_spikes: int = 10
    daily_cycle_amplitude: float = 0.5
    duplicate_fraction: float = 0.0
    garbage_fraction: float = 0.0
    n_bot_farms: int = 0
    n_click_farms: int = 0
    n_lockstep_rings: int = 0
    n_banned_viral: int = 0

    def __post_init__(self) -> None:
        _check_int("n_events", self.n_events, 1_000)
        for name in ("n_products", "n_sellers", "n_categories", "n_users"):
            _check_int(name, getattr(self, name), 1)
        for name in ("n_viral", "n_steady", "n_spikes", "seed", *_ATTACK_FIELDS):
            _check_int(name, getattr(self, name), 0)
        _check_int("start_ts_ms", self.start_ts_ms, _TS_MIN_MS)
        _check_float("duration_s", self.duration_s, 60.0, _MAX_DURATION_S)
        _check_float("zipf_exponent", self.zipf_exponent, 0.0, 10.0)
        for name in ("daily_cycle_amplitude", "duplicate_fraction", "garbage_fraction"):
            _check_float(name, getattr(self, name), 0.0, 1.0)
        attacked = self.n_bot_farms + self.n_click_farms + _MAX_RING_PRODUCTS * self.n_lockstep_rings
        attacked += self.n_banned_viral
        special = self.n_steady + self.n_viral + self.n_spikes + attacked
        if self.n_products < 2 * special:
            also = " + attacked products" if attacked else ""
            msg = (
                f"n_products must be >= 2 * (n_steady + n_viral + n_spikes{also}) = {2 * special}, "
                f"got {self.n_products}; raise n_products or lower the others"
            )
            raise ValueError(msg)
        if self.duplicate_fraction + self.garbage_fraction > 1.0:
            msg = (
                "duplicate_fraction + garbage_fraction must be <= 1, "
                f"got {self.duplicate_fraction} + {self.garbage_fraction}"
            )
            raise ValueError(msg)
        if self.start_ts_ms + self.duration_s * 1000.0 > _TS_MAX_MS:
            msg = f"start_ts_ms + duration_s must end before 2100-01-01, got start_ts_ms={self.start_ts_ms}"
            raise ValueError(msg)


_ATTACK_FIELDS: Final = ("n_bot_farms", "n_click_farms", "n_lockstep_rings", "n_banned_viral")


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"{name} must be an integer, got {type(value).__name__} {value!r}"
        raise ValueError(msg)
    if value < low:
        msg = f"{name} must be >= {low}, got {value}"
        raise ValueError(msg)


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        msg = f"{name} must be a number, got {type(value).__name__} {value!r}"
        raise ValueError(msg)
    if not (math.isfinite(value) and low <= value <= high):
        msg = f"{name} must be a finite number in [{low}, {high}], got {value}"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What :func:`simulate` wrote.

    Attributes
    ----------
    events_path, truth_path : Path
        ``out_dir/events.ndjson`` and ``out_dir/truth.json``.
    n_lines : int
        Lines in the events file: ``n_events + n_duplicates``.
    n_duplicates, n_garbage : int
        Re-emitted events, and malformed lines (replacing events, not added).
    truth : dict
        The content of ``truth.json``.
    """

    events_path: Path
    truth_path: Path
    n_lines: int
    n_duplicates: int
    n_garbage: int
    truth: dict[str, Any]


@njit(cache=True)
def _hawkes_counts(
    rng: np.random.Generator, n_bins: int, mu: float, branching: float, decay: float,
    max_rate: float, audience: float,
) -> NDArray[np.int64]:  # fmt: skip
    """Per-second counts int64[n_bins] of one self-exciting, audience-limited process.

    ``rate[k] = min(left * (mu + branching * (1 - decay) * sum_j<k counts[j] * decay**(k-1-j)),
    max_rate)``: the kernel weights sum to ``branching``, and ``left = 1 - (total / audience)**3``
    is the share of the audience not reached yet.  Stops once the audience is used up.
    """
    counts = np.zeros(n_bins, np.int64)
    excitation = 0.0
    total = 0.0
    gain = branching * (1.0 - decay)
    for k in range(n_bins):
        left = 1.0 - (total / audience) ** 3
        if left <= 0.0:
            break
        c = rng.poisson(min(left * (mu + gain * excitation), max_rate))
        counts[k] = c
        excitation = excitation * decay + c
        total += c
    return counts


@dataclass(slots=True)
class _World:
    """The catalogue: products by popularity rank and their JSON fragments, all length n_products."""

    rank_to_product: NDArray[np.int64]
    product_id: list[str]
    seller_id: list[str]
    category: list[str]
    price: list[float]
    head: pl.Series  # ,"product_id":"p-000123","user_id":"u-
    tail: pl.Series  # ","seller_id":"s-7","category":"c-3","price":12.99}


@dataclass(slots=True)
class _Parts:
    """Events under construction: relative ts (ms), product, type code, component (0: base), user.

    ``user`` is None for parts whose users are drawn later from the base population, else one
    user index per event (the attacks' fresh accounts).
    """

    ts_rel_ms: list[NDArray[np.int64]] = field(default_factory=list)
    product: list[NDArray[np.int64]] = field(default_factory=list)
    type_code: list[NDArray[np.int8]] = field(default_factory=list)
    component: list[NDArray[np.int32]] = field(default_factory=list)
    user: list[NDArray[np.int64] | None] = field(default_factory=list)

    def add(
        self, ts: NDArray[np.int64], product: Any, types: NDArray[np.int8], comp: int,
        user: NDArray[np.int64] | None = None,
    ) -> None:  # fmt: skip
        """Add events; ``product`` is one product index or one per event."""
        self.ts_rel_ms.append(ts)
        self.product.append(np.broadcast_to(np.asarray(product, np.int64), ts.shape))
        self.type_code.append(types)
        self.component.append(np.full(ts.shape[0], comp, np.int32))
        self.user.append(user)

    def fixed_users(self) -> NDArray[np.int64] | None:
        """One user per event, -1 where it is to be drawn from the base population; None if all are."""
        if all(u is None for u in self.user):
            return None
        return np.concatenate(
            [
                np.full(t.shape[0], -1, np.int64) if u is None else u
                for t, u in zip(self.ts_rel_ms, self.user, strict=True)
            ]
        )


def _draw_types(rng: np.random.Generator, n: int, mix: tuple[float, ...]) -> NDArray[np.int8]:
    cdf = np.cumsum(mix) / sum(mix)
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(mix) - 1).astype(np.int8)


def _second_widths_ms(s: Scenario) -> NDArray[np.int64]:
    """Length in ms of each 1 s bin of the stream (the last one may be shorter)."""
    duration_ms = round(s.duration_s * 1000.0)
    return np.minimum(1000, duration_ms - 1000 * np.arange(-(-duration_ms // 1000), dtype=np.int64))


def _cycle(s: Scenario, n_sec: int, amplitude: float) -> NDArray[np.float64]:
    """Relative intensity of each second, ``1 + amplitude * sin(...)`` over the UTC day."""
    tod_s = (s.start_ts_ms / 1000.0 + np.arange(n_sec) + 0.5) % 86_400.0
    out: NDArray[np.float64] = 1.0 + amplitude * np.sin(
        2.0 * np.pi * (tod_s / 3600.0 - _PEAK_HOUR_UTC + 6.0) / 24.0
    )
    return out


def _spread(
    rng: np.random.Generator, per_second: NDArray[np.int64], widths: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Relative ts (ms) of ``per_second[k]`` events uniform within second ``k``, in second order."""
    sec = np.repeat(np.arange(per_second.shape[0], dtype=np.int64), per_second)
    return sec * 1000 + (rng.random(sec.shape[0]) * widths[sec]).astype(np.int64)


def _make_world(s: Scenario, rng: np.random.Generator) -> _World:
    n = s.n_products
    seller = np.floor(s.n_sellers * rng.random(n) ** 3).astype(np.int64)  # a few sellers own many
    category = np.floor(s.n_categories * rng.random(n) ** 2).astype(np.int64)
    cents = np.maximum(49, np.round(rng.lognormal(np.log(2500.0), 0.9, n))).astype(np.int64)
    ids = pl.DataFrame({"p": np.arange(n), "s": seller, "c": category, "cents": cents}).select(
        product_id=pl.lit("p-") + pl.col("p").cast(pl.String).str.zfill(max(6, len(str(n - 1)))),
        seller_id=pl.lit("s-") + pl.col("s").cast(pl.String),
        category=pl.lit("c-") + pl.col("c").cast(pl.String),
        price=pl.concat_str(
            (pl.col("cents") // 100).cast(pl.String),
            pl.lit("."),
            (pl.col("cents") % 100).cast(pl.String).str.zfill(2),
        ),
    )
    head = pl.concat_str(pl.lit(',"product_id":"'), "product_id", pl.lit('","user_id":"u-'))
    tail = pl.concat_str(
        pl.lit('","seller_id":"'),
        "seller_id",
        pl.lit('","category":"'),
        "category",
        pl.lit('","price":'),
        "price",
        pl.lit("}"),
    )
    frags = ids.select(head.alias("head"), tail.alias("tail"))
    return _World(
        rank_to_product=rng.permutation(n).astype(np.int64),
        product_id=ids["product_id"].to_list(),
        seller_id=ids["seller_id"].to_list(),
        category=ids["category"].to_list(),
        price=(cents / 100.0).tolist(),
        head=frags["head"],
        tail=frags["tail"],
    )


def _add_viral(s: Scenario, world: _World, rng: np.random.Generator, parts: _Parts) -> list[dict[str, Any]]:
    """Hawkes-like ramps on mid/long-tail products (log-uniform rank beyond 1000)."""
    if s.n_viral == 0:
        return []
    widths = _second_widths_ms(s)
    ranks = np.arange(max(s.n_steady, min(_VIRAL_TAIL_RANK, s.n_products // 2)), s.n_products)
    weights = 1.0 / (ranks + 1.0)
    chosen = np.sort(rng.choice(ranks, size=s.n_viral, replace=False, p=weights / weights.sum()))
    audience = rng.uniform(0.02, 0.04, s.n_viral) * s.n_events
    audience *= min(1.0, 0.4 * s.n_events / audience.sum())  # at most 40 % of the stream is viral
    records = []
    for i, rank in enumerate(chosen.tolist()):
        onset_s = int(rng.uniform(0.1, 0.7) * s.duration_s)
        ts, params = _ramp(s, rng, widths, onset_s, widths.shape[0] - onset_s, float(audience[i]))
        product = int(world.rank_to_product[rank])
        parts.add(ts, product, _draw_types(rng, ts.shape[0], _VIRAL_MIX), 1 + i)
        records.append({"product": product, "rank": rank, "onset_rel_ms": onset_s * 1000, **params})
    return records


def _ramp(
    s: Scenario, rng: np.random.Generator, widths: NDArray[np.int64], onset_s: int, n_bins: int,
    audience: float,
) -> tuple[NDArray[np.int64], dict[str, float]]:  # fmt: skip
    """Relative ts (ms) of one viral-like ramp from ``onset_s`` for ``n_bins`` s, and its parameters."""
    mean_rate = s.n_events / s.duration_s
    branching = round(float(rng.uniform(1.15, 1.3)), 4)
    time_constant_s = round(float(rng.uniform(60.0, 100.0)), 2)
    max_rate = round(float(rng.uniform(2.0, 3.5) * mean_rate), 3)
    mu = float(rng.uniform(0.015, 0.03) * mean_rate)
    counts = _hawkes_counts(
        rng, n_bins, mu, branching, math.exp(-1.0 / time_constant_s), max_rate, max(audience, 1.0)
    )
    ts = _spread(rng, counts, widths[onset_s : onset_s + n_bins]) + onset_s * 1000
    params = {"branching_ratio": branching, "time_constant_s": time_constant_s, "max_rate_per_s": max_rate}
    return ts, params


def _add_spikes(
    s: Scenario, world: _World, rng: np.random.Generator, parts: _Parts, taken: list[int]
) -> list[dict[str, Any]]:
    """One-off bursts of a few hundred events within 30-90 s on random products beyond the head."""
    head = max(s.n_steady, min(_VIRAL_TAIL_RANK, s.n_products // 2) // 10)  # a burst must stand out
    candidates = np.setdiff1d(np.arange(head, s.n_products), np.array(taken, np.int64))
    ranks = np.sort(rng.choice(candidates, size=s.n_spikes, replace=False))
    sizes = rng.uniform(200, 600, s.n_spikes)
    sizes = np.round(sizes * min(1.0, 0.1 * s.n_events / max(sizes.sum(), 1.0))).astype(np.int64)
    duration_ms = round(s.duration_s * 1000.0)
    records = []
    for j, rank in enumerate(ranks.tolist()):
        width_ms = int(min(rng.uniform(30.0, 90.0), s.duration_s / 2) * 1000)
        start_ms = int(rng.uniform(0.05, 0.95) * (duration_ms - width_ms))
        ts = np.sort(start_ms + rng.integers(0, width_ms, sizes[j]))
        product = int(world.rank_to_product[rank])
        parts.add(ts, product, _draw_types(rng, ts.shape[0], _BASE_MIX), 1 + s.n_viral + j)
        records.append(
            {"product": product, "rank": rank, "start_rel_ms": start_ms, "duration_s": width_ms / 1000}
        )
    return records


def _add_attacks(
    s: Scenario, world: _World, rng: np.random.Generator, parts: _Parts, taken: list[int], first_comp: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Bot farms, click farms, lockstep rings and banned viral products on mid/long-tail products.

    Returns one record per attacked product (component ``first_comp`` onwards, in that order)
    and the banned sellers.  Attack accounts are fresh: user indices from ``n_users`` up, drawn
    at random from a range four times their number, so never seen in base traffic.
    """
    ring_size = rng.integers(3, _MAX_RING_PRODUCTS + 1, s.n_lockstep_rings)
    kinds = ["bot_farm"] * s.n_bot_farms + ["click_farm"] * s.n_click_farms
    kinds += ["lockstep_ring"] * int(ring_size.sum()) + ["banned_viral"] * s.n_banned_viral
    if not kinds:
        return [], []
    widths = _second_widths_ms(s)
    n_sec, duration_ms = widths.shape[0], round(s.duration_s * 1000.0)
    ranks = np.arange(max(s.n_steady, min(_VIRAL_TAIL_RANK, s.n_products // 2)), s.n_products)
    ranks = np.setdiff1d(ranks, np.array(taken, np.int64))
    weights = 1.0 / (ranks + 1.0)
    chosen = rng.choice(ranks, size=len(kinds), replace=False, p=weights / weights.sum()).tolist()
    volume = rng.uniform(0.02, 0.04, len(kinds)) * s.n_events  # like a viral product's audience
    volume *= min(1.0, _ATTACK_SHARE * s.n_events / volume.sum())
    records: list[dict[str, Any]] = []
    accounts: list[tuple[NDArray[np.int64], int]] = []  # (local account indices, owner) to map
    n_accounts: list[int] = []  # per owner: a farm, or a whole ring

    def onset() -> int:
        return int(rng.uniform(*_ATTACK_ONSET) * s.duration_s)

    def add(
        i: int, ts: NDArray[np.int64], types: NDArray[np.int8], user: Any, onset_s: int, **extra: Any
    ) -> None:
        product = int(world.rank_to_product[chosen[i]])
        parts.add(ts, product, types, first_comp + i, user)
        records.append({
            "kind": kinds[i], "product": product, "rank": chosen[i], "onset_rel_ms": onset_s * 1000,
            "comp": first_comp + i, **extra,
        })  # fmt: skip

    i = 0
    for _ in range(s.n_bot_farms):  # few accounts sharing a viral volume: hundreds of events each, or more
        onset_s, window_s = onset(), int(rng.uniform(30.0, 60.0) * 60)
        ts, _ = _ramp(s, rng, widths, onset_s, min(window_s, n_sec - onset_s), float(volume[i]))
        n_acc = int(rng.integers(5, 16))
        share = 0.5 / n_acc + 0.5 * rng.dirichlet(np.full(n_acc, 2.0))  # none below half the mean
        local = np.searchsorted(np.cumsum(share), rng.random(ts.shape[0]) * share.sum(), side="right")
        local = np.minimum(local, n_acc - 1).astype(np.int64)
        accounts.append((local, len(n_accounts)))
        n_accounts.append(n_acc)
        add(i, ts, _draw_types(rng, ts.shape[0], _FAKE_MIX), local, onset_s, duration_s=window_s)
        i += 1
    for _ in range(s.n_click_farms):  # many fresh accounts, 1-3 consecutive events each
        onset_s, window_s = onset(), int(rng.uniform(30.0, 60.0) * 60)
        ts, _ = _ramp(s, rng, widths, onset_s, min(window_s, n_sec - onset_s), float(volume[i]))
        per = 1 + rng.choice(3, size=max(ts.shape[0], 1), p=_CLICK_FARM_PER_ACCOUNT)
        n_acc = int(np.searchsorted(np.cumsum(per), ts.shape[0])) + 1
        local = np.repeat(np.arange(n_acc, dtype=np.int64), per[:n_acc])[: ts.shape[0]]
        accounts.append((local, len(n_accounts)))
        n_accounts.append(n_acc)
        add(i, ts, _draw_types(rng, ts.shape[0], _FAKE_MIX), local, onset_s, duration_s=window_s)
        i += 1
    for k, size in enumerate(ring_size.tolist()):  # every active account hits every product each round
        seller = f"s-{s.n_sellers + k}"
        onset_s, n_acc = onset(), int(rng.integers(30, 81))
        period_s, run_s = float(rng.uniform(*_RING_PERIOD_S)), float(rng.uniform(40.0, 50.0) * 60)
        n_rounds = int(run_s // period_s) + 1
        rel_s = np.arange(n_rounds) * period_s + rng.uniform(0, 5, n_rounds)
        starts_ms = np.round((onset_s + rel_s) * 1000).astype(np.int64)
        # Accounts join like a viral ramp: 3 at the onset, e-folding every 1.5-3 min, then all.
        joins_s = rng.uniform(90.0, 180.0) * np.log(np.maximum(rng.permutation(n_acc) + 1, 3) / 3.0)
        active = rel_s[:, None] >= joins_s[None, :]  # [round, account]
        per_hit = volume[i : i + size] / max(int(active.sum()), 1)  # mean events per account, round, product
        # With a small budget an account skips whole rounds, never single products of a round.
        turnout = min(1.0, float(per_hit.mean()))
        active &= rng.random(active.shape) < turnout
        shape = (n_rounds, n_acc, size)
        hits = (1 + rng.poisson(np.maximum(per_hit / turnout - 1.0, 0.0), shape)) * active[:, :, None]
        rnd, acc, prod = np.unravel_index(np.repeat(np.arange(hits.size), hits.ravel()), shape)
        ts = starts_ms[rnd] + rng.integers(0, _RING_WINDOW_S * 1000, rnd.shape[0])
        types = _draw_types(rng, ts.shape[0], _RING_MIX)
        n_accounts.append(n_acc)
        span_s = round((n_rounds - 1) * period_s + _RING_WINDOW_S, 1)
        for j in range(size):
            mine = (prod == j) & (ts < duration_ms)
            local = acc[mine].astype(np.int64)
            accounts.append((local, len(n_accounts) - 1))
            _set_seller(world, int(world.rank_to_product[chosen[i]]), seller)
            add(i, ts[mine], types[mine], local, onset_s, ring=k, duration_s=span_s)
            i += 1
    banned = []
    for j in range(s.n_banned_viral):  # the organic process, ordinary users, a banned seller
        onset_s = onset()
        ts, params = _ramp(s, rng, widths, onset_s, n_sec - onset_s, float(volume[i]))
        banned.append(f"s-{s.n_sellers + s.n_lockstep_rings + j}")
        _set_seller(world, int(world.rank_to_product[chosen[i]]), banned[-1])
        add(i, ts, _draw_types(rng, ts.shape[0], _VIRAL_MIX), None, onset_s, **params)
        i += 1
    if n_accounts:
        offsets = np.cumsum([0, *n_accounts])
        fresh = s.n_users + rng.choice(4 * int(offsets[-1]), size=int(offsets[-1]), replace=False)
        for ids, owner in accounts:
            ids[:] = fresh[offsets[owner] + ids]
    return records, banned


def _set_seller(world: _World, product: int, seller_id: str) -> None:
    """Give ``product`` to ``seller_id`` (in the truth and in every line of it)."""
    old = f'"seller_id":"{world.seller_id[product]}"'
    world.tail.scatter(product, world.tail[product].replace(old, f'"seller_id":"{seller_id}"', 1))
    world.seller_id[product] = seller_id


def _add_base(s: Scenario, world: _World, rng: np.random.Generator, parts: _Parts, n_base: int) -> None:
    """Zipf popularity; the daily cycle for most products, a gentle one for the steady top ranks."""
    widths = _second_widths_ms(s)
    p = np.arange(1, s.n_products + 1, dtype=np.float64) ** -s.zipf_exponent
    counts = rng.multinomial(n_base, p / p.sum())
    steady = (0, s.n_steady, s.daily_cycle_amplitude / 4)
    for lo, hi, amplitude in (steady, (s.n_steady, s.n_products, s.daily_cycle_amplitude)):
        product = np.repeat(world.rank_to_product[lo:hi], counts[lo:hi])
        rng.shuffle(product)
        w = _cycle(s, widths.shape[0], amplitude) * widths
        ts = _spread(rng, rng.multinomial(product.shape[0], w / w.sum()), widths)
        parts.add(ts, product, _draw_types(rng, ts.shape[0], _BASE_MIX), 0)


def _line_plan(
    rng: np.random.Generator, n: int, n_dup: int, n_garbage: int
) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """The unique event each line shows (int64[n + n_dup]) and the garbage kind per event (-1: none)."""
    picked = rng.choice(n, size=n_dup + n_garbage, replace=False) if n_dup + n_garbage else np.zeros(0, int)
    dup_src, garbage = np.sort(picked[:n_dup]), picked[n_dup:]
    where = np.minimum(dup_src + rng.integers(1, _DUP_MAX_LAG_LINES, n_dup), n)
    lines = np.insert(np.arange(n, dtype=np.int64), where, dup_src)
    kind = np.full(n, -1, np.int8)
    kind[garbage] = rng.integers(0, _GARBAGE_KINDS, n_garbage)
    return lines, kind


def _garble(lines: pl.Series, kind: NDArray[np.int8]) -> pl.Series:
    """Malformed versions of ``lines``, of nine kinds the dead-letter path must catch."""
    k, line = pl.col("kind"), pl.col("line")
    bad = (
        pl.when(k == 0).then(line.str.slice(0, line.str.len_chars() // 2))  # truncated: bad JSON
        .when(k == 1).then(pl.lit("[") + line + pl.lit("]"))  # JSON, not an object
        .when(k == 2).then(line.str.replace(r',"product_id":"[^"]*"', ""))  # a required field missing
        .when(k == 3).then(line.str.replace(r'"ts":(\d+)', '"ts":"${1}"'))  # ts as a string
        .when(k == 4).then(line.str.replace(r'"type":"[a-z_]+"', '"type":"wishlist"'))  # unknown type
        .when(k == 5).then(line.str.replace('"ts":', '"ts":-', literal=True))  # negative ts
        .when(k == 6).then(line.str.replace('"price":', '"price":-', literal=True))  # negative price
        .when(k == 7).then(line.str.replace(r'"user_id":"[^"]*"', '"user_id":""'))  # empty id
        .otherwise(pl.lit("GET /favicon.ico HTTP/1.1"))  # not JSON at all
    )  # fmt: skip
    return pl.DataFrame({"line": lines, "kind": kind}).select(bad.alias("line")).to_series()


def _format(df: pl.DataFrame, world: _World, type_frag: pl.Series) -> pl.Series:
    """One JSON line per row of ``df`` (eid, ts, t, p, u), no trailing newline."""
    return df.select(
        pl.concat_str(
            pl.lit('{"event_id":"e-'),
            pl.col("eid").cast(pl.String),
            pl.lit('","ts":'),
            pl.col("ts").cast(pl.String),
            pl.lit(type_frag).gather("t"),
            pl.lit(world.head).gather("p"),
            pl.col("u").cast(pl.String),
            pl.lit(world.tail).gather("p"),
        ).alias("line")
    ).to_series()


def simulate(
    scenario: Scenario, out_dir: Path, *, progress: Callable[[int, int], None] | None = None
) -> SimulationResult:
    """Write ``out_dir/events.ndjson`` and ``out_dir/truth.json`` for ``scenario``.

    Parameters
    ----------
    scenario : Scenario
        What to simulate; the files are a pure function of it.
    out_dir : Path
        Created if missing; the two files in it are overwritten.
    progress : callable, optional
        Called as ``progress(lines_written, n_lines)`` at the start and after each chunk.

    Returns
    -------
    SimulationResult
        Paths, line counts and the ground truth.
    """
    s = scenario
    rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(s.seed).spawn(6)]  # 5 before attacks
    world = _make_world(s, rngs[0])
    parts = _Parts()
    viral = _add_viral(s, world, rngs[1], parts)
    spikes = _add_spikes(s, world, rngs[2], parts, [v["rank"] for v in viral])
    taken = [x["rank"] for x in viral + spikes]
    attacks, banned = _add_attacks(s, world, rngs[5], parts, taken, 1 + len(viral) + len(spikes))
    _add_base(s, world, rngs[3], parts, s.n_events - sum(a.shape[0] for a in parts.ts_rel_ms))
    fixed_user = parts.fixed_users()

    rng = rngs[4]
    ts_rel = np.concatenate(parts.ts_rel_ms)
    late = rng.random(s.n_events) < _LATE_FRACTION
    delay = np.where(late, rng.integers(0, _MAX_LATE_MS + 1, s.n_events), 0)
    order = np.argsort(ts_rel + delay, kind="stable")  # arrival order
    ts_ms = ts_rel[order] + s.start_ts_ms
    product = np.concatenate(parts.product)[order]
    type_code = np.concatenate(parts.type_code)[order]
    component = np.concatenate(parts.component)[order]
    fixed_user = None if fixed_user is None else fixed_user[order]
    del ts_rel, late, delay, order, parts
    user = np.floor(s.n_users * rng.random(s.n_events) ** 2).astype(np.int64)
    if fixed_user is not None:
        np.copyto(user, fixed_user, where=fixed_user >= 0)
        del fixed_user
    n_dup, n_garbage = round(s.duplicate_fraction * s.n_events), round(s.garbage_fraction * s.n_events)
    lines, garbage_kind = _line_plan(rng, s.n_events, n_dup, n_garbage)
    n_lines = int(lines.shape[0])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path, truth_path = out_dir / "events.ndjson", out_dir / "truth.json"
    type_frag = pl.Series([f',"type":"{t}"' + ',"quantity":1' * (t in _QUANTITY_TYPES) for t in EVENT_TYPES])
    if progress is not None:
        progress(0, n_lines)
    with events_path.open("wb") as f:
        for lo in range(0, n_lines, _CHUNK_LINES):
            src = lines[lo : lo + _CHUNK_LINES]
            cols = {"eid": src, "ts": ts_ms[src], "t": type_code[src], "p": product[src], "u": user[src]}
            text = _format(pl.DataFrame(cols), world, type_frag)
            bad = np.flatnonzero(garbage_kind[src] >= 0)
            if bad.shape[0]:
                text = text.scatter(bad, _garble(text.gather(bad), garbage_kind[src[bad]]))
            text.to_frame().write_csv(f, include_header=False, quote_style="never")
            if progress is not None:
                progress(lo + src.shape[0], n_lines)

    valid = garbage_kind < 0
    truth = _truth(s, world, viral, spikes, ts_ms[valid], product[valid], component[valid])
    truth["attacks"] = _attack_rows(s, world, attacks, component[valid], user[valid])
    truth["banned_sellers"] = banned
    truth.update(n_lines=n_lines, n_duplicates=n_dup, n_garbage=n_garbage)
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return SimulationResult(events_path, truth_path, n_lines, n_dup, n_garbage, truth)


def _ids(world: _World, p: int, rank: int) -> dict[str, Any]:
    return {
        "product_id": world.product_id[p], "seller_id": world.seller_id[p],
        "category": world.category[p], "price": world.price[p], "rank": rank,
    }  # fmt: skip


def _attack_rows(
    s: Scenario, world: _World, attacks: list[dict[str, Any]], component: NDArray[np.int32],
    user: NDArray[np.int64],
) -> list[dict[str, Any]]:  # fmt: skip
    """``truth["attacks"]``: events and distinct accounts per attacked product (valid unique events)."""
    if not attacks:
        return []
    first, n_comp = attacks[0]["comp"], attacks[-1]["comp"] + 1
    mine = component >= first
    comp, who = component[mine].astype(np.int64), user[mine]
    by_component = np.bincount(comp, minlength=n_comp)
    span = int(who.max(initial=0)) + 1
    n_users = np.bincount(np.unique(comp * span + who) // span, minlength=n_comp)
    rows = []
    for a in attacks:
        extra = {k: v for k, v in a.items() if k not in ("kind", "product", "rank", "onset_rel_ms", "comp")}
        rows.append({
            "kind": a["kind"], **_ids(world, a["product"], a["rank"]),
            "onset_ts": s.start_ts_ms + a["onset_rel_ms"], "events": int(by_component[a["comp"]]),
            "accounts": int(n_users[a["comp"]]), **extra,
        })  # fmt: skip
    return rows


def _truth(
    s: Scenario, world: _World, viral: list[dict[str, Any]], spikes: list[dict[str, Any]],
    ts_ms: NDArray[np.int64], product: NDArray[np.int64], component: NDArray[np.int32],
) -> dict[str, Any]:  # fmt: skip
    """The ``truth.json`` document; counts are over the valid (non-garbage) unique events."""
    by_component = np.bincount(component, minlength=1 + len(viral) + len(spikes))
    per_product = np.bincount(product, minlength=s.n_products)

    def ids(p: int, rank: int) -> dict[str, Any]:
        return _ids(world, p, rank)

    viral_out = []
    for i, v in enumerate(viral):
        onset = s.start_ts_ms + v["onset_rel_ms"]
        mine = ts_ms[product == v["product"]]
        first = int(np.count_nonzero((mine >= onset) & (mine < onset + 600_000)))
        viral_out.append({
            **ids(v["product"], v["rank"]), "onset_ts": onset, "events": int(by_component[1 + i]),
            "events_first_10min": first, "branching_ratio": v["branching_ratio"],
            "time_constant_s": v["time_constant_s"], "max_rate_per_s": v["max_rate_per_s"],
        })  # fmt: skip
    steady = [(int(world.rank_to_product[rank]), rank) for rank in range(s.n_steady)]
    steady_out = [{**ids(p, rank), "events": int(per_product[p])} for p, rank in steady]
    spikes_out = [
        {
            **ids(x["product"], x["rank"]),
            "ts": s.start_ts_ms + x["start_rel_ms"],
            "duration_s": x["duration_s"],
            "events": int(by_component[1 + len(viral) + j]),
        }  # fmt: skip
        for j, x in enumerate(spikes)
    ]
    return {"scenario": dataclasses.asdict(s), "viral": viral_out, "steady": steady_out, "spikes": spikes_out}
