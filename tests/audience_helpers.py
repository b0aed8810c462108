"""Shared set-ups of the trust tests: the audience signature of given users, and a small engine whose
guard methods are called directly (16 products, 8 sellers, a given user population)."""

from __future__ import annotations

from typing import Any

import numpy as np

from viraltrend.config import load_config
from viraltrend.kernels.audience import AudienceSketches


def signature(users: Any, k: int = 256) -> np.ndarray:
    """The ``k``-slot audience signature (uint64[1, k]) of a product whose users are ``users``."""
    sk = AudienceSketches(k=k)
    sk.watch(np.array([0], np.int64))
    users = np.asarray(users, np.int64)
    sk.update(np.zeros(users.size, np.int64), users)
    return sk.signatures(np.array([0], np.int64))


def guard_engine(overrides: dict | None = None, *, population: int) -> Any:
    """A default engine with 16 products and 8 sellers interned, and ``population`` users seen."""
    from viraltrend.engine import Engine

    engine = Engine(load_config(None, environ={}, overrides=overrides or {}))
    engine.products.intern([f"p-{i}" for i in range(16)])
    engine.sellers.intern([f"s-{i}" for i in range(8)])
    engine._grow(16)
    engine._population = population
    return engine


def add_users(engine: Any, slot: int, users: Any) -> None:
    """Events of ``users`` on product ``slot``, as the engine's audience samples see them."""
    users = np.asarray(users, np.int64)
    engine.sketches.update(np.full(users.size, slot, np.int64), users)
