"""The global board merge: a pure function of the partitions' members, whatever their order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.board import Member
from viraltrend.config import BoardConfig
from viraltrend.merge import BoardMerger
from viraltrend.messages import decision


def member(pid: str, score: float, seller: str | None = None, category: str | None = None) -> Member:
    return Member(slot=-1, product_id=pid, seller_id=seller, category=category, score=score, since_ms=1000)


def ids(members: list[Member]) -> list[str]:
    return [m.product_id for m in members]


def test_select_ranks_by_score_then_id_under_size_and_caps():
    cfg = BoardConfig(size=3, max_per_seller=1, max_per_category=2)
    merger = BoardMerger(cfg)
    chosen = merger.select(
        [
            member("b", 0.9, "s1", "c1"),
            member("a", 0.9, "s2", "c1"),  # ties on score: product_id decides
            member("c", 0.8, "s1", "c2"),  # second of seller s1: skipped
            member("d", 0.7, "s3", "c1"),  # third of category c1: skipped
            member("e", 0.6, "s4", "c3"),
            member("f", 0.5, "s5", "c3"),  # board full
        ]
    )
    assert ids(chosen) == ["a", "b", "e"]


members_st = st.lists(
    st.tuples(
        st.integers(0, 30),
        st.floats(0.0, 1.0, allow_nan=False),
        st.sampled_from(["s1", "s2", "s3", None]),
        st.sampled_from(["c1", "c2", None]),
    ),
    max_size=40,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(members_st, st.integers(0, 2**32 - 1))
def test_the_merged_board_does_not_depend_on_the_order_members_arrive_in(rows, seed):
    cfg = BoardConfig(size=5, max_per_seller=2, max_per_category=3)
    ms = [member(f"p{i:02d}", s, seller, cat) for i, s, seller, cat in rows]
    shuffled = ms[:]
    random.Random(seed).shuffle(shuffled)
    first, second = BoardMerger(cfg), BoardMerger(cfg)
    assert first.merge(ms, 5000, {}) == second.merge(shuffled, 5000, {})
    assert first.snapshot(5000) == second.snapshot(5000)
    chosen = first.select(ms)
    assert len(chosen) <= cfg.size
    for key in ("seller_id", "category"):
        counts: dict[str, int] = {}
        for m in chosen:
            value = getattr(m, key)
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        cap = cfg.max_per_seller if key == "seller_id" else cfg.max_per_category
        assert all(n <= cap for n in counts.values())


def test_merge_emits_the_changes_and_one_snapshot_and_reuses_partition_reasons():
    merger = BoardMerger(BoardConfig(size=2))
    promote = decision(
        "promote",
        product_id="a",
        seller_id="s",
        category="c",
        rank=1,
        score=0.9,
        event_ts=900,
        reasons=["lift_x9"],
        features={"lift": 9.0},
    )
    out = merger.merge([member("a", 0.9), member("b", 0.8)], 1000, {"a": promote})
    assert [(m["action"], m.get("product_id"), m.get("rank")) for m in out] == [
        ("promote", "a", 1),
        ("promote", "b", 2),
        ("board", None, None),
    ]
    assert out[0]["reasons"] == ["lift_x9"] and out[0]["features"] == {"lift": 9.0}
    assert out[1]["reasons"] == ["entered_merged_board"]
    assert merger.merge([member("a", 0.9), member("b", 0.8)], 1010, {}) == [], "no change, no message"
    out = merger.merge([member("c", 0.95), member("a", 0.9), member("b", 0.8)], 1020, {})
    assert [(m["action"], m.get("product_id"), m.get("rank")) for m in out] == [
        ("demote", "b", None),
        ("promote", "c", 1),
        ("update", "a", 2),
        ("board", None, None),
    ]
    assert out[0]["reasons"] == ["displaced_in_merge"]
    assert [item["product_id"] for item in out[-1]["items"]] == ["c", "a"]


def test_reset_adopts_a_board_silently():
    merger = BoardMerger(BoardConfig(size=2))
    merger.reset([member("a", 0.9), member("b", 0.8)])
    assert merger.merge([member("a", 0.9), member("b", 0.8)], 1000, {}) == []
    assert [i["product_id"] for i in merger.snapshot(1000)["items"]] == ["a", "b"]
