"""A ring exposed later: only by a sibling that passes its own tests (trust14).

On market tuning seeds 142-161 (and trust13's 121-140) every ``ring_member_of_`` removal of an attack came
from a sibling refused only for its overlap, while the three organic removals (two viral slow ramps, one
flash sale) came from flash sales that never converted (``no_conversion``) and shared deal hunters with
the board member: a product refused on its own figures is no proof that the product it overlaps is a ring.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.audience_helpers import signature as _signature
from viraltrend.config import load_config


def _exposed(conversion: float) -> tuple[str, str]:
    from viraltrend.board import Member
    from viraltrend.engine import Engine

    rng = np.random.default_rng(5)
    engine = Engine(load_config(None, environ={}))
    engine.products.intern([f"p-{i}" for i in range(12)])
    engine._grow(16)
    ring = np.arange(200_000, 200_250)
    engine.audiences.remember(np.array([0], np.int64), np.array([-1], np.int64),
                              _signature(rng.choice(ring, 120, replace=False)), now_ms=0)  # fmt: skip
    engine.board.members[0] = Member(
        slot=0, product_id="p-0", seller_id=None, category=None, score=1.0, since_ms=0
    )
    users = rng.choice(ring, 120, replace=False).astype(np.int64)
    engine.sketches.watch(np.array([9], np.int64))
    engine.sketches.update(np.full(users.size, 9, np.int64), users)
    one = np.array([True])
    feats = {
        "evidence": np.ones(1), "unique_users": np.array([60.0]), "fresh_share": np.zeros(1),
        "conversion_ratio": np.array([conversion]), "change_s": np.array([1200.0]),
        "events_per_user": np.ones(1),
    }  # fmt: skip
    engine.audience_guard.track(60_000, np.array([9], np.int64), one, one, one, feats)
    return engine.guard.lockstep.get(9, ""), engine.guard.lockstep.get(0, "")


@pytest.mark.parametrize(("conversion", "exposes"), [(1.0, True), (0.0, False)])
def test_only_a_sibling_refused_for_its_overlap_alone_exposes_a_board_member(conversion, exposes):
    refused, exposed = _exposed(conversion)
    assert refused.startswith("lockstep_with_p-0_"), refused  # refused as a ring member either way
    assert exposed.startswith("ring_member_of_p-9_shared_") is exposes, exposed
