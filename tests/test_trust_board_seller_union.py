"""A board member whose users its seller's other hot products hold together leaves the board (trust24).

A ring boosting several products of one seller at once (market's funnel ring) has its first product
promoted while its siblings' audiences are young: each sibling shares a few of its sampled users, short
of every pairwise test.  ``trust.board_seller_union_evidence`` (6 by default since session 23; 0: off)
compares each board member with the *union* of its seller's other remembered audiences and exposes it
(``ring_member_of_seller_union_...``, an evicting refusal) once the count is that many powers of ten
beyond chance.
"""

from __future__ import annotations

import numpy as np

from tests.audience_helpers import add_users as _add
from tests.audience_helpers import guard_engine
from viraltrend.board import Member
from viraltrend.config import load_config
from viraltrend.trust import evicts

ON = {"trust": {"board_seller_union_evidence": 6.0}}
SIBLINGS = (9, 11, 12)


def _ring(overrides: dict, seller_of_member: int, siblings: tuple[int, ...] = SIBLINGS):
    """Product 3 on the board (40 ring accounts); each sibling of seller 1 holds 4 of them and 26 others."""
    engine = guard_engine(overrides, population=10_000)
    engine.seller_of[3] = seller_of_member
    for s in siblings:
        engine.seller_of[s] = 1
    slots = np.array([3, *siblings], np.int64)
    engine.sketches.watch(slots)
    ring = np.arange(100_000, 100_040)
    _add(engine, 3, ring)
    for i, s in enumerate(siblings):
        _add(
            engine,
            s,
            np.concatenate([ring[4 * i : 4 * i + 4], np.arange(200_000 + 100 * i, 200_026 + 100 * i)]),
        )
    engine.board.members[3] = Member(3, "p-3", f"s-{seller_of_member}", None, 1.0, 0)
    yes = np.ones(slots.size, np.bool_)
    no = np.zeros(slots.size, np.bool_)
    engine.audience_guard.track(60_000, slots, yes, yes, no, {"evidence": np.ones(slots.size)})
    return engine


def test_a_member_held_by_its_sellers_siblings_together_is_exposed():
    engine = _ring(ON, seller_of_member=1)
    reason = engine.guard.lockstep.get(3, "")
    # 12 of its 40 sampled users are in the union, 0.36 expected (3 x 30 of 10,000 active users each)
    assert reason.startswith("ring_member_of_seller_union_p-9_shared_12_expected_0.4_evidence_13."), reason
    assert evicts([reason])


def test_one_sibling_alone_is_not_enough():
    # the same member against one sibling: 4 shared, 0.12 expected, 3.9 powers of ten
    engine = _ring(ON, seller_of_member=1, siblings=(9,))
    assert 3 not in engine.guard.lockstep


def test_another_sellers_member_is_left_alone():
    engine = _ring(ON, seller_of_member=2)
    assert 3 not in engine.guard.lockstep


def test_on_by_default_and_off_at_zero():
    assert load_config(None, environ={}).trust.board_seller_union_evidence == 6.0
    assert _ring({}, seller_of_member=1).guard.lockstep.get(3, "").startswith("ring_member_of_seller_union_")
    engine = _ring({"trust": {"board_seller_union_evidence": 0.0}}, seller_of_member=1)
    assert 3 not in engine.guard.lockstep
