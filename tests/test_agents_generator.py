"""benchmarks/agents.py, the third traffic generator: determinism, truth consistent with the events."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from agents import HOUR_MS, write_agents  # noqa: E402

from viraltrend.stream.files import FileSource  # noqa: E402

SMALL = {"events_per_day": 15_000, "n_products": 3_000, "n_users": 6_000}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], pl.DataFrame]:
    out = tmp_path_factory.mktemp("agents")
    truth = write_agents(5, out, **SMALL)
    return out, truth, pl.read_ndjson(out / "events.ndjson")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files_and_another_seed_does_not(small, tmp_path):
    out, truth, _ = small
    write_agents(5, tmp_path / "again", **SMALL)
    write_agents(6, tmp_path / "other", **SMALL)
    for name in ("events.ndjson", "truth.json"):
        assert _digest(out / name) == _digest(tmp_path / "again" / name)
        assert _digest(out / name) != _digest(tmp_path / "other" / name)
    assert json.loads((out / "truth.json").read_text()) == truth


def test_truth_has_the_keys_bench_family_reads(small):
    _, truth, _ = small
    for key in ("viral", "spikes", "bursts", "slow_risers", "steady", "attacks", "banned_sellers"):
        assert isinstance(truth[key], list), key
    assert {"n_days", "events_per_day", "n_products"} <= set(truth["family"])
    for v in truth["viral"]:
        assert {"product_id", "bucket", "onset_ts", "doubling_s", "shape", "events"} <= set(v)
        want = "fast" if v["doubling_s"] <= 300 else "medium" if v["doubling_s"] <= 1200 else "slow"
        assert v["bucket"] == want
    assert {a["kind"] for a in truth["attacks"]} == {
        "aged_ring",
        "camouflaged_ring",
        "slow_drip",
        "bot_farm",
        "banned_viral",
    }
    assert [s["kind"] for s in truth["steady"]].count("price_drop") == 1
    # every product has one role
    pids = [
        x["product_id"]
        for k in ("viral", "spikes", "bursts", "slow_risers", "steady", "attacks")
        for x in truth[k]
        if not (k == "attacks" and x["kind"] == "banned_viral")
    ]
    assert len(pids) == len(set(pids))


def test_every_truth_product_occurs_with_its_seller_and_counts(small):
    _, truth, df = small
    counts = dict(df.group_by("product_id").len().iter_rows())
    for key in ("viral", "spikes", "bursts", "slow_risers", "steady", "attacks"):
        for row in truth[key]:
            assert counts.get(row["product_id"], 0) >= max(1, min(row["events"], 100)), (key, row)
            assert counts[row["product_id"]] >= row["events"], (key, row)  # base traffic on top
    sellers = dict(df.select("product_id", "seller_id").unique().iter_rows())
    for row in truth["viral"] + truth["attacks"]:
        assert sellers[row["product_id"]] == row["seller_id"]
    banned = truth["banned_sellers"]
    assert banned and df.filter(pl.col("seller_id").is_in(banned))["product_id"].n_unique() == 1


def test_viral_onsets_precede_the_bulk_of_their_events(small):
    _, truth, df = small
    assert len(truth["viral"]) >= 6
    for v in truth["viral"]:
        ts = df.filter(pl.col("product_id") == v["product_id"])["ts"].to_numpy()
        assert ts.min() <= v["onset_ts"] or (ts == v["onset_ts"]).any()
        after = ((ts >= v["onset_ts"]) & (ts < v["onset_ts"] + 6 * HOUR_MS)).sum()
        before = ((ts < v["onset_ts"]) & (ts >= v["onset_ts"] - 6 * HOUR_MS)).sum()
        assert (ts == v["onset_ts"]).any()  # the creator's share is the first cascade event
        assert after >= 300 and after > 5 * before, v
        assert v["onset_ts"] >= truth["score_from_ts"]
        assert np.median(ts[ts >= v["onset_ts"]]) > v["onset_ts"]


def test_attack_accounts_exist_and_act_on_the_attacked_products(small):
    _, truth, df = small
    for aid, accounts in truth["attack_accounts"].items():
        attacked = [a["product_id"] for a in truth["attacks"] if a["attack_id"] == aid]
        assert attacked, aid
        if aid.startswith("banned_viral"):
            continue
        on = df.filter(pl.col("product_id").is_in(attacked) & pl.col("user_id").is_in(accounts))
        assert on["user_id"].n_unique() >= 0.5 * min(len(accounts), on.height), aid
        assert on.height >= 0.9 * sum(a["events"] for a in truth["attacks"] if a["attack_id"] == aid)
        if aid.startswith("aged_ring"):  # browsed organically before the attack
            onset = min(a["onset_ts"] for a in truth["attacks"] if a["attack_id"] == aid)
            history = df.filter(pl.col("user_id").is_in(accounts) & (pl.col("ts") < onset))
            assert history["user_id"].n_unique() >= 0.5 * len(accounts)
        if aid.startswith("slow_drip"):  # each account acts once or twice on the boosted products
            per = on.group_by("user_id").len()["len"]
            assert per.max() <= 4 and per.mean() <= 2.0


def test_late_events_are_out_of_order_and_at_most_two_minutes_late(small):
    _, truth, df = small
    ts = df["ts"].to_numpy()
    behind = np.maximum.accumulate(ts) - ts
    assert 0.01 <= (behind > 0).mean() <= 0.06
    assert behind.max() <= 120_000
    assert 0.02 <= truth["late_share"] <= 0.05
    assert df["event_id"].n_unique() == df.height


def test_the_file_decodes_under_the_event_contract(small):
    out, _, df = small
    n, rejected = 0, 0
    with FileSource([out / "events.ndjson"], batch_size=10_000) as src:
        while not src.exhausted:
            batch, rejects = src.next_batch(10_000)
            n += len(batch)
            rejected += len(rejects)
    assert rejected == 0 and n == df.height
    assert set(df["type"].unique()) == {"view", "like", "comment", "share", "add_to_cart", "purchase"}


def test_the_daily_cycle_has_a_quiet_night(small):
    _, truth, df = small
    base = df.filter(pl.col("ts") < truth["score_from_ts"])  # the warm-up: sessions only
    hours = np.bincount(((base["ts"].to_numpy() - base["ts"].min()) // HOUR_MS) % 24, minlength=24)
    assert hours.max() > 4 * max(hours.min(), 1)


def test_a_replay_of_agents_traffic_gives_the_same_decisions_in_any_batch_split(small):
    """Late events, sessions that repeat users, rings: the decisions do not depend on where batches end.

    The batch-split tests elsewhere run the family's own scenarios; this is another shape of stream.
    (At this size it does not reach the co-audience population bug of d5d8b9e, which needed the
    full-size agents file; test_engine_hot_path pins that one.)
    """
    from tests.conftest import read_events, run_engine

    out, _, _ = small
    events = read_events(out / "events.ndjson")
    _, whole = run_engine(events, [])
    _, split = run_engine(events, list(range(1_237, len(events), 1_237)))
    assert whole == split
    assert any(m["action"] in ("promote", "block") for m in whole)  # the guard and the board had work
