"""Plain-Python references for the kernels: dicts, loops and math.exp, obvious over fast."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

__all__ = ["Events", "clock_reference", "decayed_counts", "decayed_global", "random_events"]

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
) -> tuple[list[int], list[tuple[int, int]], int | None]:
    """Run the event clock one event at a time.

    Returns (status per event: 0 accepted / 1 late / 2 future, ticks as (fires before event i,
    tick time) in order, watermark after the last event).  ``first_limit_ms`` is the future
    limit used while no event has been accepted (None: no limit).
    """
    statuses: list[int] = []
    ticks: list[tuple[int, int]] = []
    jump: int | None = None
    for i, ts in enumerate(ts_list):
        if watermark_ms is None:
            if first_limit_ms is not None and ts > first_limit_ms:
                statuses.append(2)
            else:
                statuses.append(0)
                watermark_ms = ts
            continue
        if ts > watermark_ms + max_future_ms:
            if jump is not None and abs(ts - jump) <= max_future_ms:
                jump = None
            else:
                jump = ts
                statuses.append(2)
                continue
        elif ts < watermark_ms - lateness_ms:
            statuses.append(1)
            continue
        else:
            jump = None
        statuses.append(0)
        if ts > watermark_ms:
            crossed = [k * tick_ms for k in range(watermark_ms // tick_ms + 1, ts // tick_ms + 1)]
            if len(crossed) > max_ticks_per_gap:
                crossed = crossed[: max_ticks_per_gap - 1] + crossed[-1:]
            ticks.extend((i, t) for t in crossed)
            watermark_ms = ts
    return statuses, ticks, watermark_ms
