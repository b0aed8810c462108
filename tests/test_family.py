"""The scenario family (viraltrend.family): determinism, truth consistency, delivery, decodability."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from viraltrend.config import load_config
from viraltrend.family import ATTACK_KINDS, BUCKETS, FamilyScenario, bucket_of, simulate_family
from viraltrend.kernels.clock import EventClock
from viraltrend.stream.files import FileSource

# Seed 4 draws both an aged and a fresh attack at this size (asserted below, so a generator change that
# loses one of them fails loudly instead of silently testing less).
SMALL = FamilyScenario(
    seed=4, n_days=2, n_products=5_000, events_per_day=40_000, n_users=20_000, n_attacks=(4, 4)
)
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], pl.DataFrame]:
    out = tmp_path_factory.mktemp("family")
    result = simulate_family(SMALL, out)
    events = pl.read_ndjson(result.events_path).with_columns(
        uid=pl.col("user_id").str.slice(2).cast(pl.Int64)
    )
    return result.events_path, result.truth, events


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files_and_another_seed_does_not(small, tmp_path):
    path, _, _ = small
    again = simulate_family(SMALL, tmp_path / "again")
    assert _digest(again.events_path) == _digest(path)
    assert again.truth_path.read_bytes() == (path.parent / "truth.json").read_bytes()
    other = simulate_family(FamilyScenario(**{**_fields(SMALL), "seed": 5}), tmp_path / "other")
    assert _digest(other.events_path) != _digest(path)


def _fields(s: FamilyScenario) -> dict[str, Any]:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


def test_line_count_and_truth_sections(small):
    _, truth, events = small
    assert events.height == truth["n_lines"] == SMALL.n_days * SMALL.events_per_day
    assert truth["score_from_ts"] == SMALL.start_ts_ms + DAY_MS
    assert 6 <= len(truth["viral"]) <= 10
    assert 4 <= len(truth["spikes"]) <= 8 and 3 <= len(truth["bursts"]) <= 6
    assert 2 <= len(truth["slow_risers"]) <= 4 and 3 <= len(truth["steady"]) <= 5
    assert len({a["attack_id"] for a in truth["attacks"] if a["kind"] != "banned_viral"}) == 4


def test_viral_events_after_onset_match_the_truth(small):
    _, truth, events = small
    for v in truth["viral"]:
        mine = events.filter(pl.col("product_id") == v["product_id"])
        after = mine.filter(pl.col("ts") >= v["onset_ts"]).height
        assert after == v["events_after_onset"], v["product_id"]
        assert 0 < v["events"] <= after
        assert v["onset_ts"] >= truth["score_from_ts"]


def test_buckets_agree_with_doubling_times(small):
    _, truth, _ = small
    for v in truth["viral"]:
        assert 60 <= v["doubling_s"] <= 3600
        assert v["bucket"] == bucket_of(v["doubling_s"]) in BUCKETS
        want = "fast" if v["doubling_s"] <= 300 else "medium" if v["doubling_s"] <= 1200 else "slow"
        assert v["bucket"] == want


def test_every_attacked_product_is_in_the_events_with_its_seller(small):
    _, truth, events = small
    for a in truth["attacks"]:
        assert a["kind"] in (*ATTACK_KINDS, "banned_viral")
        mine = events.filter(pl.col("product_id") == a["product_id"])
        assert mine.height >= a["events"] > 0
        assert set(mine["seller_id"].unique()) == {a["seller_id"]}
    banned = {a["seller_id"] for a in truth["attacks"] if a["kind"] == "banned_viral"}
    assert banned == set(truth["banned_sellers"])


def test_aged_attack_accounts_appear_on_day_one_and_fresh_ones_not_before_the_attack(small):
    _, truth, events = small
    start = SMALL.start_ts_ms
    day_one = set(events.filter(pl.col("ts") < start + DAY_MS)["uid"].to_list())
    ages = set()
    for a in truth["attacks"]:
        if a["kind"] == "banned_viral":
            continue
        ages.add(a["account_age"])
        # attack accounts are the users beyond the population that hit the product
        accounts = events.filter(
            (pl.col("product_id") == a["product_id"]) & (pl.col("uid") >= SMALL.n_users)
        )["uid"].unique()
        assert accounts.len() == a["accounts"]
        if a["account_age"] == "aged":
            assert set(accounts.to_list()) <= day_one
        else:
            attack_start = min(
                b["onset_ts"] for b in truth["attacks"] if b.get("attack_id") == a["attack_id"]
            )
            seen = events.filter(pl.col("uid").is_in(accounts.implode()) & (pl.col("ts") < attack_start))
            assert seen.height == 0
    assert ages == {"aged", "fresh"}


def test_late_and_very_late_events_are_present(small):
    _, truth, events = small
    ts = events["ts"].to_numpy()
    lag_ms = np.maximum.accumulate(ts) - ts
    assert np.count_nonzero(lag_ms > 0) > 0.02 * ts.shape[0]  # out of order
    assert np.count_nonzero(lag_ms > 300_000) > 0  # beyond the default allowed lateness
    assert truth["late"]["n_late"] > 0.03 * ts.shape[0] * 0.8 and truth["late"]["n_very_late"] > 0


def test_decoder_accepts_every_line_and_the_clock_rejects_only_the_very_late(small):
    path, truth, _ = small
    decay = load_config(None, environ={}).decay
    clock = EventClock(
        tick_ms=round(decay.tick_s * 1000),
        allowed_lateness_ms=round(decay.allowed_lateness_s * 1000),
        max_future_ms=round(decay.max_future_s * 1000),
    )
    rejected, n_late, n = 0, 0, 0
    with FileSource([path], batch_size=50_000) as src:
        while not src.exhausted:
            batch, rejects = src.next_batch(50_000)
            rejected += len(rejects)
            n += len(batch)
            if len(batch):
                status = clock.advance(batch.ts_ms).status
                n_late += int(np.count_nonzero(status == 1))
                assert np.count_nonzero(status == 2) == 0  # no future events
    assert rejected == 0 and n == truth["n_lines"]
    very_late = truth["late"]["n_very_late"]
    assert 0.8 * very_late <= n_late <= very_late


def test_cli_simulate_family_writes_the_member_of_the_given_seed(tmp_path):
    import json

    from viraltrend.cli import main

    assert main(["simulate", "--family", "--seed", "1", "--family-seed", "7", "--out", str(tmp_path)]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["family"]["seed"] == 7
    assert truth["n_lines"] == FamilyScenario().n_days * FamilyScenario().events_per_day
    with (tmp_path / "events.ndjson").open() as f:
        assert sum(1 for _ in f) == truth["n_lines"]
