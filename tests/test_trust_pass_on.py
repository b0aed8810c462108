"""Buyers who do not pass the product on: a ready candidate whose shares fall far short of its buys."""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import guard_engine
from viraltrend.events import EVENT_TYPE_CODE
from viraltrend.trust import short_evidence, soft_refusal

T0 = 1_772_000_000_000
SHARE, CART, PURCHASE, VIEW = (EVENT_TYPE_CODE[k] for k in ("share", "add_to_cart", "purchase", "view"))


def _events(engine, slot: int, counts: dict[int, int], *, start: int, span_ms: int) -> None:
    """``counts`` events of each type on ``slot``, spread evenly over ``span_ms`` from ``start``."""
    for code, n in counts.items():
        ts = start + np.linspace(0, span_ms, n, endpoint=False).astype(np.int64)
        engine.counters.add(np.full(n, slot, np.int64), np.full(n, code, np.int8), ts, np.ones(n, np.float64))


def _engine(overrides: dict | None = None):
    engine = guard_engine(overrides, population=10_000)
    # the catalogue: a day of traffic on product 15 with one share per four carts and purchases
    _events(engine, 15, {VIEW: 8000, SHARE: 200, CART: 600, PURCHASE: 200}, start=T0, span_ms=86_400_000)
    return engine


def test_short_evidence_is_the_poisson_lower_tail():
    ev = short_evidence(np.array([0.0, 1.0, 6.0, 12.0]), np.array([4.6, 12.0, 6.0, 6.0]))
    assert ev[0] == np.float64(4.6 / np.log(10.0))  # P(X = 0) = exp(-4.6): 2 powers of ten
    assert 3.0 < ev[1] < 4.0 and ev[2] == 0.0 and ev[3] == 0.0


def test_a_crowd_that_buys_and_shares_nothing_is_held_a_trend_that_shares_is_not():
    engine = _engine()
    now = T0 + 86_400_000
    start = now - 1_800_000  # half an hour of each
    _events(engine, 1, {VIEW: 60, CART: 25, PURCHASE: 12, SHARE: 1}, start=start, span_ms=1_800_000)
    _events(engine, 2, {VIEW: 60, CART: 25, PURCHASE: 12, SHARE: 15}, start=start, span_ms=1_800_000)
    _events(engine, 3, {VIEW: 60, SHARE: 0}, start=start, span_ms=1_800_000)  # no buys: nothing expected
    engine.guard.held = {}
    engine._passed_on(now, np.array([1, 2, 3], np.int64))
    assert set(engine.guard.held) == {1}
    reason = engine.guard.held[1]
    assert reason.startswith("held_not_passed_on_") and "_shares_of_" in reason and "_evidence_" in reason
    assert soft_refusal([reason])  # held back, never a block by itself
    # the guard's check refuses it with that reason
    feats = {"unique_users": np.array([40.0]), "fresh_share": np.array([0.0])}
    feats["conversion_ratio"] = np.array([3.0])
    assert engine.guard.check("p-1", "s-1", 1, feats, 0) == [reason]
    assert engine.guard.check("p-2", "s-2", 2, feats, 0) is None


def test_off_and_already_refused_products_keep_their_own_reason():
    engine = _engine({"trust": {"pass_on_contrast": 0.0}})
    now = T0 + 86_400_000
    _events(engine, 1, {VIEW: 60, CART: 25, PURCHASE: 12}, start=now - 1_800_000, span_ms=1_800_000)
    engine.guard.held = {}
    engine._passed_on(now, np.array([1], np.int64))
    assert engine.guard.held == {}
    engine = _engine()
    _events(engine, 1, {VIEW: 60, CART: 25, PURCHASE: 12}, start=now - 1_800_000, span_ms=1_800_000)
    engine.guard.held = {1: "held_seller_sibling_p-2_11_of_50_sampled"}
    engine._passed_on(now, np.array([1], np.int64))
    assert engine.guard.held == {1: "held_seller_sibling_p-2_11_of_50_sampled"}
