"""Seeded, network-free, clock-free event sets for the benchmarks.

Two shapes of the same synthetic traffic:

* :func:`event_columns`: pre-decoded columns, what the kernels take (``slot`` int64[n] Zipf or
  uniform over ``n_products``, ``type_code`` int8[n], ``ts_ms`` int64[n] increasing with a
  small jitter, so a few events are out of order, ``weight`` float64[n] of ones);
* :func:`ndjson_lines`: contract NDJSON records (bytes, no newline), what the decoder takes.

The same arguments always give the same arrays and bytes; nothing reads the clock or the
network.  Popularity rank ``r`` has weight ``(r + 1) ** -zipf_exponent`` and ranks are
shuffled over slots, so hot products are not neighbours in memory.

Examples
--------
>>> cols = event_columns(1_000, 100, seed=3)
>>> len(cols), cols.slot.dtype, cols.type_code.dtype, bool((cols.slot < 100).all())
(1000, dtype('int64'), dtype('int8'), True)
>>> ndjson_lines(2, 10, seed=3) == ndjson_lines(2, 10, seed=3)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from viraltrend.events import EVENT_TYPES

__all__ = ["EVENT_TYPES", "START_TS_MS", "TYPE_MIX", "EventColumns", "event_columns", "ndjson_lines"]

#: Shares of each type in base traffic (the simulator's mix).
TYPE_MIX: Final = (0.80, 0.08, 0.02, 0.03, 0.05, 0.02)
#: 2025-11-27T00:00:00Z, the simulator's default start.
START_TS_MS: Final = 1_764_201_600_000

Distribution = Literal["zipf", "uniform"]


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Pre-decoded events, columns of equal length n.

    ``slot`` int64[n], ``type_code`` int8[n], ``ts_ms`` int64[n], ``weight`` float64[n].
    """

    slot: NDArray[np.int64]
    type_code: NDArray[np.int8]
    ts_ms: NDArray[np.int64]
    weight: NDArray[np.float64]
    n_products: int

    def __len__(self) -> int:
        return int(self.slot.shape[0])

    def head(self, n: int) -> EventColumns:
        """The first ``n`` events."""
        return EventColumns(
            self.slot[:n], self.type_code[:n], self.ts_ms[:n], self.weight[:n], self.n_products
        )

    def batches(self, size: int) -> list[EventColumns]:
        """Consecutive slices of at most ``size`` events (views, no copies)."""
        return [
            EventColumns(
                self.slot[i : i + size],
                self.type_code[i : i + size],
                self.ts_ms[i : i + size],
                self.weight[i : i + size],
                self.n_products,
            )
            for i in range(0, len(self), size)
        ]


def _slots(
    rng: np.random.Generator, n: int, n_products: int, dist: Distribution, zipf_exponent: float
) -> NDArray[np.int64]:
    if dist == "uniform":
        return rng.integers(0, n_products, n, dtype=np.int64)
    if dist != "zipf":
        msg = f"dist must be 'zipf' or 'uniform', got {dist!r}"
        raise ValueError(msg)
    cdf = np.cumsum(np.arange(1, n_products + 1, dtype=np.float64) ** -zipf_exponent)
    cdf /= cdf[-1]
    rank = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), n_products - 1)
    product_of_rank = rng.permutation(n_products).astype(np.int64)
    return product_of_rank[rank]


def event_columns(
    n_events: int,
    n_products: int,
    *,
    dist: Distribution = "zipf",
    zipf_exponent: float = 1.1,
    duration_s: float = 86_400.0,
    jitter_ms: int = 2_000,
    seed: int = 0,
) -> EventColumns:
    """Build ``n_events`` events over ``n_products`` products spread evenly over ``duration_s``.

    ``ts_ms`` is ``START_TS_MS`` plus an even grid over ``duration_s`` plus a uniform jitter in
    ``[-jitter_ms, jitter_ms]``: increasing on the whole, slightly out of order locally.
    """
    if n_events < 1 or n_products < 1:
        msg = f"n_events and n_products must be >= 1, got {n_events} and {n_products}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    slot = _slots(rng, n_events, n_products, dist, zipf_exponent)
    mix = np.cumsum(TYPE_MIX)
    type_code = np.minimum(
        np.searchsorted(mix / mix[-1], rng.random(n_events), side="right"), len(TYPE_MIX) - 1
    ).astype(np.int8)
    grid = (np.arange(n_events, dtype=np.float64) * (duration_s * 1000.0 / n_events)).astype(np.int64)
    ts_ms = START_TS_MS + grid + rng.integers(-jitter_ms, jitter_ms + 1, n_events, dtype=np.int64)
    return EventColumns(slot, type_code, ts_ms, np.ones(n_events, np.float64), n_products)


def ndjson_lines(
    n_events: int,
    n_products: int,
    *,
    dist: Distribution = "zipf",
    n_users: int = 500_000,
    n_sellers: int = 5_000,
    n_categories: int = 40,
    seed: int = 0,
) -> list[bytes]:
    """Contract NDJSON records like the simulator's (event_id, ts, type, ids, seller, category, price).

    ``add_to_cart`` and ``purchase`` events also carry a ``quantity``.  All records are valid.
    """
    cols = event_columns(n_events, n_products, dist=dist, seed=seed)
    rng = np.random.default_rng(seed + 1)
    seller_of = rng.integers(0, n_sellers, n_products).tolist()
    category_of = rng.integers(0, n_categories, n_products).tolist()
    price_of = [f"{c / 100:.2f}" for c in rng.integers(100, 20_000, n_products).tolist()]
    user = rng.integers(0, n_users, n_events).tolist()
    quantity = rng.integers(1, 4, n_events).tolist()
    out = []
    for i, (p, k, t, u, q) in enumerate(
        zip(cols.slot.tolist(), cols.type_code.tolist(), cols.ts_ms.tolist(), user, quantity, strict=True)
    ):
        qty = f',"quantity":{q}' if k >= 4 else ""
        out.append(
            f'{{"event_id":"e-{i}","ts":{t},"type":"{EVENT_TYPES[k]}","product_id":"p-{p:07d}",'
            f'"user_id":"u-{u}","seller_id":"s-{seller_of[p]}","category":"c-{category_of[p]}",'
            f'"price":{price_of[p]}{qty}}}'.encode()
        )
    return out
