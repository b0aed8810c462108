from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from viraltrend.board import Board, Candidates
from viraltrend.config import BoardConfig

CFG = BoardConfig(
    size=3,
    promote_threshold=0.8,
    demote_threshold=0.4,
    confirm_s=60.0,
    min_dwell_s=300.0,
    max_per_seller=2,
    max_per_category=3,
    replace_margin=0.05,
    min_momentum=0.9,
)


def cands(rows):
    """rows: (slot, product, seller, category, score[, momentum])."""
    return Candidates(
        slot=np.array([r[0] for r in rows], np.int64),
        product_id=[r[1] for r in rows],
        seller_id=[r[2] for r in rows],
        category=[r[3] for r in rows],
        score=np.array([r[4] for r in rows], np.float64),
        features={
            "momentum": np.array([r[5] if len(r) > 5 else 1.0 for r in rows]),
            "lift": np.array([10.0] * len(rows)),
            "velocity": np.ones(len(rows)),
            "z": np.ones(len(rows)),
        },
    )


def actions(msgs):
    return [(m["action"], m["product_id"]) for m in msgs]


def promoted_board(cfg=CFG, rows=((1, "p1", "s1", "c1", 0.9),)):
    b = Board(cfg)
    b.step(0, cands(rows))
    b.step(60_000, cands(rows))
    return b


def test_candidate_is_promoted_only_after_confirm_time():
    b = Board(CFG)
    assert b.step(0, cands([(1, "p1", "s1", "c1", 0.9)])) == []
    assert b.step(30_000, cands([(1, "p1", "s1", "c1", 0.9)])) == []
    msgs = b.step(60_000, cands([(1, "p1", "s1", "c1", 0.9)]))
    assert actions(msgs) == [("promote", "p1")]
    assert msgs[0]["rank"] == 1 and msgs[0]["event_ts"] == 60_000 and msgs[0]["schema"] == 1


def test_fading_momentum_resets_the_wait():
    b = Board(CFG)
    b.step(0, cands([(1, "p1", "s1", "c1", 0.9)]))
    b.step(30_000, cands([(1, "p1", "s1", "c1", 0.9, 0.5)]))  # burst fading
    assert b.step(60_000, cands([(1, "p1", "s1", "c1", 0.9)])) == []


def test_member_between_thresholds_stays_on_board():
    b = promoted_board()
    assert actions(b.step(900_000, cands([(1, "p1", "s1", "c1", 0.5)]))) == [("update", "p1")]
    assert 1 in b.members


def test_member_below_demote_threshold_leaves_after_dwell():
    b = promoted_board()
    msgs = b.step(400_000, cands([(1, "p1", "s1", "c1", 0.1)]))
    assert actions(msgs) == [("demote", "p1")]
    assert msgs[0]["rank"] is None and msgs[0]["reasons"] == ["score_below_0.4"]


def test_member_is_not_demoted_before_min_dwell():
    b = promoted_board()
    b.step(120_000, cands([(1, "p1", "s1", "c1", 0.1)]))
    assert 1 in b.members


def test_seller_cap_keeps_third_product_of_a_seller_off():
    rows = [(1, "p1", "s1", "c1", 0.95), (2, "p2", "s1", "c2", 0.9), (3, "p3", "s1", "c3", 0.85)]
    b = promoted_board(rows=rows)
    assert sorted(m.product_id for m in b.members.values()) == ["p1", "p2"]


def test_full_board_displaces_weakest_served_member_by_margin():
    rows = [(1, "p1", "s1", "c1", 0.95), (2, "p2", "s2", "c1", 0.9), (3, "p3", "s3", "c2", 0.85)]
    b = promoted_board(rows=rows)
    newcomer = [*rows, (4, "p4", "s4", "c3", 0.99)]
    b.step(400_000, cands(newcomer))
    msgs = b.step(460_000, cands(newcomer))
    assert ("demote", "p3") in actions(msgs) and ("promote", "p4") in actions(msgs)
    assert sorted(m.product_id for m in b.members.values()) == ["p1", "p2", "p4"]


def test_close_score_does_not_displace():
    rows = [(1, "p1", "s1", "c1", 0.95), (2, "p2", "s2", "c1", 0.9), (3, "p3", "s3", "c2", 0.85)]
    b = promoted_board(rows=rows)
    newcomer = [*rows, (4, "p4", "s4", "c3", 0.87)]
    b.step(400_000, cands(newcomer))
    b.step(460_000, cands(newcomer))
    assert 4 not in b.members


def test_blocked_seller_gets_one_block_and_never_a_promote():
    b = Board(CFG, guard=lambda cand, i: ["seller_blocked"] if cand.seller_id[i] == "bad" else None)
    row = [(1, "p1", "bad", "c1", 0.95)]
    first = b.step(0, cands(row))
    later = b.step(60_000, cands(row)) + b.step(120_000, cands(row))
    assert actions(first) == [("block", "p1")] and first[0]["reasons"][0] == "seller_blocked"
    assert later == []


def test_ties_are_broken_by_product_id():
    rows = [(1, "pb", "s1", "c1", 0.9), (2, "pa", "s2", "c2", 0.9)]
    b = promoted_board(rows=rows)
    assert [m.product_id for m in b.ranked()] == ["pa", "pb"]


def test_rank_change_sends_update():
    rows = [(1, "p1", "s1", "c1", 0.9), (2, "p2", "s2", "c2", 0.85)]
    b = promoted_board(rows=rows)
    msgs = b.step(120_000, cands([(1, "p1", "s1", "c1", 0.82), (2, "p2", "s2", "c2", 0.95)]))
    assert sorted(actions(msgs)) == [("update", "p1"), ("update", "p2")]
    assert {m["product_id"]: m["rank"] for m in msgs} == {"p1": 2, "p2": 1}


def test_board_state_round_trips_through_plain_data():
    b = promoted_board()
    b2 = Board(CFG)
    b2.load_dict(b.to_dict())
    assert b2.snapshot(1) == b.snapshot(1)


def test_snapshot_lists_members_by_rank():
    rows = [(1, "p1", "s1", "c1", 0.85), (2, "p2", "s2", "c2", 0.95)]
    snap = promoted_board(rows=rows).snapshot(99)
    assert snap["action"] == "board" and [i["product_id"] for i in snap["items"]] == ["p2", "p1"]
    assert [i["rank"] for i in snap["items"]] == [1, 2]


def test_bigger_board_admits_more():
    rows = [(i, f"p{i}", f"s{i}", f"c{i}", 0.9) for i in range(5)]
    b = promoted_board(cfg=dataclasses.replace(CFG, size=5), rows=rows)
    assert len(b.members) == 5


@pytest.mark.parametrize(
    ("reason", "leaves"),
    [
        ("seller_blocked:fraud", True),  # a live blocklist change
        ("ring_member_of_p9_shared_90%", True),  # a later sibling of the same audience exposed the ring
        ("no_conversion_x0.10_28_users", False),  # judged at promotion; a member is not re-judged on it
    ],
)
def test_member_refused_while_on_the_board_leaves_with_a_block_only_for_a_blocklist_or_ring(reason, leaves):
    refused = set()
    b = Board(CFG, guard=lambda cand, i: [reason] if cand.seller_id[i] in refused else None)
    row = [(1, "p1", "s1", "c1", 0.95)]
    b.step(0, cands(row))
    b.step(60_000, cands(row))
    refused.add("s1")
    msgs = b.step(70_000, cands(row))
    if leaves:
        assert actions(msgs) == [("block", "p1")] and msgs[0]["rank"] is None and reason in msgs[0]["reasons"]
        assert not b.members
    else:
        assert ("block", "p1") not in actions(msgs) and 1 in b.members


def model_cands(rows, *, scored_by="model", probability=0.95):
    c = cands(rows)
    c.scored_by = scored_by
    c.probability = np.full(len(rows), probability)
    return c


def fast_board():
    return Board(CFG, model_confirm_s=20.0, fast_track_probability=0.9)


def test_warm_model_candidate_waits_only_the_model_confirm_time():
    b = fast_board()
    row = [(1, "p1", "s1", "c1", 0.9)]
    assert b.step(0, model_cands(row)) == []
    assert b.step(10_000, model_cands(row)) == []
    msgs = b.step(20_000, model_cands(row))
    assert actions(msgs) == [("promote", "p1")]
    assert msgs[0]["reasons"][0] == "scored_by_model" and "fast_track_confirm_20s" in msgs[0]["reasons"]


def test_rule_scored_candidate_keeps_the_board_confirm_time_on_a_fast_track_board():
    b = fast_board()
    row = [(1, "p1", "s1", "c1", 0.9)]
    for t in (0, 20_000, 40_000):
        assert b.step(t, model_cands(row, scored_by="rule")) == []
    assert actions(b.step(60_000, model_cands(row, scored_by="rule"))) == [("promote", "p1")]


def test_model_candidate_below_the_fast_track_probability_waits_the_board_confirm_time():
    b = fast_board()
    row = [(1, "p1", "s1", "c1", 0.9)]
    for t in (0, 20_000, 40_000):
        assert b.step(t, model_cands(row, probability=0.85)) == []
    msgs = b.step(60_000, model_cands(row, probability=0.85))
    assert actions(msgs) == [("promote", "p1")]
    assert not any(r.startswith("fast_track") for r in msgs[0]["reasons"])


def test_fading_momentum_resets_the_model_fast_track_wait_too():
    b = fast_board()
    b.step(0, model_cands([(1, "p1", "s1", "c1", 0.9)]))
    b.step(10_000, model_cands([(1, "p1", "s1", "c1", 0.9, 0.5)]))  # burst fading
    assert b.step(20_000, model_cands([(1, "p1", "s1", "c1", 0.9)])) == []
    assert actions(b.step(40_000, model_cands([(1, "p1", "s1", "c1", 0.9)]))) == [("promote", "p1")]


def test_without_a_model_confirm_time_the_model_waits_like_the_rule():
    b = Board(CFG)  # the engine passes model_confirm_s only when [model] is enabled
    row = [(1, "p1", "s1", "c1", 0.9)]
    assert b.step(0, model_cands(row)) == [] and b.step(20_000, model_cands(row)) == []
    assert actions(b.step(60_000, model_cands(row))) == [("promote", "p1")]


@pytest.mark.parametrize("sequential", [False, True])
def test_a_block_holds_for_block_hold_s_even_when_the_guard_relents(sequential):
    """A hard refusal at one tick and none at the next: no promote until block_hold_s has passed."""
    refusing = {"on": True}
    cfg = dataclasses.replace(CFG, confirm_s=0.0, block_hold_s=600.0)
    guard = lambda cand, i: ["recycled_audience_2.6"] if refusing["on"] else None  # noqa: E731
    b = Board(cfg, guard=guard, sequential=sequential)
    rows = [(1, "p1", "s1", "c1", 0.9)]

    def step(t_s):
        c = cands(rows)
        c.ready = np.array([True])
        return actions(b.step(t_s * 1000, c))

    assert step(0) == [("block", "p1")]
    refusing["on"] = False  # the figure dips under its threshold at the next tick
    assert step(10) == []
    assert step(590) == []
    assert 1 in b.watched_slots()  # scored while held (and never evicted under it)
    restored = Board(cfg, guard=b.guard, sequential=sequential)
    restored.load_dict(b.to_dict())  # the hold survives a checkpoint
    b = restored
    assert step(600) == [("promote", "p1")]
    assert b.blocked_until == {}


def test_no_block_hold_lets_the_relenting_guard_promote_at_once():
    refusing = {"on": True}
    cfg = dataclasses.replace(CFG, confirm_s=0.0, block_hold_s=0.0)
    guard = lambda cand, i: ["recycled_audience_2.6"] if refusing["on"] else None  # noqa: E731
    b = Board(cfg, guard=guard, sequential=True)
    c = cands([(1, "p1", "s1", "c1", 0.9)])
    c.ready = np.array([True])
    assert actions(b.step(0, c)) == [("block", "p1")]
    refusing["on"] = False
    assert actions(b.step(10_000, c)) == [("promote", "p1")]
