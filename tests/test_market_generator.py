"""benchmarks/market.py, the fourth traffic generator: determinism, contract, truth consistent with events."""

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
from market import ATTACK_KINDS, HOUR_MS, write_market  # noqa: E402

from viraltrend.stream.files import FileSource  # noqa: E402

SMALL = {"events_per_day": 15_000, "n_products": 3_000, "n_users": 6_000}
ROLE_KEYS = ("viral", "spikes", "bursts", "slow_risers", "steady", "attacks")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], pl.DataFrame]:
    out = tmp_path_factory.mktemp("market")
    truth = write_market(7, out, **SMALL)
    return out, truth, pl.read_ndjson(out / "events.ndjson", infer_schema_length=None)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first_copies(df: pl.DataFrame) -> pl.DataFrame:
    """The events once each (a duplicate delivery repeats its event_id)."""
    return df.unique(subset="event_id", keep="first", maintain_order=True)


def test_same_seed_gives_identical_files_and_another_seed_does_not(small, tmp_path):
    out, truth, _ = small
    write_market(7, tmp_path / "again", **SMALL)
    write_market(8, tmp_path / "other", **SMALL)
    for name in ("events.ndjson", "truth.json"):
        assert _digest(out / name) == _digest(tmp_path / "again" / name)
        assert _digest(out / name) != _digest(tmp_path / "other" / name)
    assert json.loads((out / "truth.json").read_text()) == truth


def test_truth_has_the_keys_bench_family_reads_and_every_role(small):
    _, truth, _ = small
    for key in (*ROLE_KEYS, "banned_sellers", "crawlers"):
        assert isinstance(truth[key], list) and truth[key], key  # each role present
    assert {"n_days", "events_per_day", "n_products"} <= set(truth["family"])
    assert 5 <= len(truth["viral"]) <= 12
    for v in truth["viral"]:
        assert {"product_id", "seller_id", "bucket", "onset_ts", "doubling_s", "shape", "events"} <= set(v)
        want = "fast" if v["doubling_s"] <= 300 else "medium" if v["doubling_s"] <= 1200 else "slow"
        assert v["bucket"] == want
    assert {v["bucket"] for v in truth["viral"]} == {"fast", "medium", "slow"}
    assert {a["kind"] for a in truth["attacks"]} == set(ATTACK_KINDS)
    assert {s["kind"] for s in truth["spikes"]} == {"flash_sale", "restock"}
    assert {b["shape"] for b in truth["bursts"]} == {"influencer_mention"}
    pids = [
        x["product_id"]
        for k in ROLE_KEYS
        for x in truth[k]
        if not (k == "attacks" and x["kind"] == "banned_viral")  # also its own viral-style row nowhere else
    ]
    assert len(pids) == len(set(pids))  # every product has one role
    for a in truth["attacks"]:
        assert a["attack_id"] in truth["attack_accounts"]


def test_every_event_is_valid_by_the_contract(small):
    out, _, df = small
    n, rejected = 0, []
    with FileSource([out / "events.ndjson"], batch_size=10_000) as src:
        while not src.exhausted:
            batch, rejects = src.next_batch(10_000)
            n += len(batch)
            rejected += rejects
    assert rejected == [] and n == df.height
    assert set(df["type"].unique()) == {"view", "like", "comment", "share", "add_to_cart", "purchase"}
    assert (df["price"] >= 0).all() and df["ts"].min() > 1_700_000_000_000
    carts = df.filter(pl.col("type").is_in(["add_to_cart", "purchase"]))
    assert carts["quantity"].min() >= 1 and carts["quantity"].null_count() == 0
    for col in ("product_id", "user_id", "seller_id", "event_id"):
        lengths = df[col].str.len_chars()
        assert lengths.min() >= 1 and lengths.max() <= 128 and not df[col].str.starts_with("__").any()


def test_truth_counts_and_sellers_match_the_events(small):
    _, truth, df = small
    once = _first_copies(df)
    counts = dict(once.group_by("product_id").len().iter_rows())
    for key in ROLE_KEYS:
        for row in truth[key]:
            assert counts.get(row["product_id"], 0) >= max(row["events"], 1), (key, row)
    sellers = dict(df.select("product_id", "seller_id").unique().iter_rows())
    assert df.select("product_id", "seller_id").unique().height == len(sellers)  # one seller a product
    for row in truth["viral"] + truth["attacks"]:
        assert sellers[row["product_id"]] == row["seller_id"]
    (banned,) = truth["banned_sellers"]
    assert df.filter(pl.col("seller_id") == banned)["product_id"].n_unique() == 1


def test_viral_products_follow_a_bass_ramp_from_their_onset(small):
    _, truth, df = small
    once = _first_copies(df)
    for v in truth["viral"]:
        ts = once.filter(pl.col("product_id") == v["product_id"])["ts"].to_numpy()
        after = ((ts >= v["onset_ts"]) & (ts < v["onset_ts"] + 6 * HOUR_MS)).sum()
        before = ((ts < v["onset_ts"]) & (ts >= v["onset_ts"] - 6 * HOUR_MS)).sum()
        assert v["onset_ts"] >= truth["score_from_ts"]
        assert after > 5 * max(before, 1) and after >= 0.5 * v["events"], v
        # the first hour after the onset is quieter than the peak hour: a ramp, not a step
        hours = np.bincount((ts[ts >= v["onset_ts"]] - v["onset_ts"]) // (HOUR_MS // 4))
        if v["events"] >= 500 and v["bucket"] != "fast":
            assert hours[0] < hours.max() / 2, v


def test_the_attacks_use_their_accounts_and_evade_as_described(small):
    _, truth, df = small
    once = _first_copies(df)
    acc = truth["attack_accounts"]
    for aid, accounts in acc.items():
        attacked = [a for a in truth["attacks"] if a["attack_id"] == aid]
        if aid.startswith("banned_viral"):
            continue
        on = once.filter(pl.col("product_id").is_in([a["product_id"] for a in attacked]))
        on = on.filter(pl.col("user_id").is_in(accounts))
        assert on.height >= 0.95 * sum(a["events"] for a in attacked), aid
        onset = min(a["onset_ts"] for a in attacked)
        history = once.filter(pl.col("user_id").is_in(accounts) & (pl.col("ts") < onset))
        if aid.startswith("funnel_ring"):  # aged accounts: registered on day 1, browsing since
            assert history["user_id"].n_unique() >= 0.9 * len(accounts), aid
        if aid.startswith(("crowdturf", "slow_drip")):  # real users: most of them seen before
            assert history["user_id"].n_unique() >= 0.5 * len(accounts), aid
        if aid.startswith("bot_farm"):  # fresh: never seen before
            assert history.height == 0
        if aid.startswith(("funnel_ring", "rotating_ring")):  # the funnel: most buyers viewed first
            for a in attacked:
                ev = on.filter(pl.col("product_id") == a["product_id"])
                buyers = set(ev.filter(pl.col("type") == "purchase")["user_id"].to_list())
                viewers = set(ev.filter(pl.col("type") == "view")["user_id"].to_list())
                assert buyers and len(buyers & viewers) == len(buyers), a
                per_user = ev.filter(pl.col("type") == "view").group_by("user_id").len()["len"]
                assert per_user.mean() < 1.5  # each account once per product (a re-view at most)
    crowd = [a for a in truth["attacks"] if a["kind"] == "crowdturf"]
    onsets = sorted(a["onset_ts"] for a in crowd)
    assert len(crowd) >= 3 and max(np.diff(onsets)) > 6 * HOUR_MS  # staggered past the 6 h memory
    assert len({a["seller_id"] for a in crowd}) == len(crowd)


def test_delivery_faults_late_duplicates_and_skew(small):
    _, truth, df = small
    ts = df.filter(pl.col("user_id") != truth["skewed_user"])["ts"].to_numpy()
    behind = np.maximum.accumulate(ts) - ts
    assert 0.01 <= (behind > 0).mean() <= 0.2
    assert behind.max() >= 120_000  # offline uploads arrive minutes late
    n_dup = df.height - df["event_id"].n_unique()
    assert 0.003 * df.height <= n_dup <= 0.015 * df.height
    dups = df.filter(pl.col("event_id").is_duplicated())
    assert dups.unique().height == dups["event_id"].n_unique()  # a duplicate repeats the whole event
    ahead = df.filter(pl.col("user_id") == truth["skewed_user"])["ts"].to_numpy()
    assert ahead.size and ahead.max() > ts.min() + 2 * 24 * HOUR_MS - HOUR_MS  # stamped a day ahead


def test_the_daily_cycle_and_category_seasonality(small):
    _, truth, df = small
    base = df.filter(pl.col("ts") < truth["score_from_ts"])
    hours = np.bincount(((base["ts"].to_numpy() - base["ts"].min()) // HOUR_MS) % 24, minlength=24)
    assert hours.max() > 4 * max(hours.min(), 1)


def test_a_replay_gives_the_same_decisions_in_any_batch_split(small):
    """Duplicates, skewed clocks, late uploads, rings: decisions do not depend on where batches end."""
    from tests.conftest import read_events, run_engine

    out, _, _ = small
    events = read_events(out / "events.ndjson")
    _, whole = run_engine(events, [])
    _, split = run_engine(events, list(range(2_311, len(events), 2_311)))
    assert whole == split
    assert any(m["action"] in ("promote", "block") for m in whole)
