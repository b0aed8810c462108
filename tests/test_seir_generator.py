"""benchmarks/seir.py, the fifth traffic generator: determinism per seed, the truth keys, the contract."""

from __future__ import annotations

import doctest
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import seir  # noqa: E402
from seir import write_seir  # noqa: E402

from viraltrend.stream.files import FileSource  # noqa: E402

SMALL = {"events_per_day": 15_000, "n_products": 3_000, "n_users": 6_000}
ROLE_KEYS = ("viral", "spikes", "bursts", "slow_risers", "steady", "attacks")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], pl.DataFrame]:
    out = tmp_path_factory.mktemp("seir")
    truth = write_seir(7, out, **SMALL)
    return out, truth, pl.read_ndjson(out / "events.ndjson", infer_schema_length=None)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files_and_another_seed_does_not(small, tmp_path):
    out, truth, _ = small
    write_seir(7, tmp_path / "again", **SMALL)
    write_seir(8, tmp_path / "other", **SMALL)
    for name in ("events.ndjson", "truth.json"):
        assert _digest(out / name) == _digest(tmp_path / "again" / name)
        assert _digest(out / name) != _digest(tmp_path / "other" / name)
    assert json.loads((out / "truth.json").read_text()) == truth


def test_truth_has_the_keys_bench_family_reads_and_every_role(small):
    _, truth, df = small
    assert {"n_days", "events_per_day", "n_products"} <= set(truth["family"])  # bench_family's report
    for key in (*ROLE_KEYS, "banned_sellers"):
        assert isinstance(truth[key], list) and truth[key], key
    assert (
        isinstance(truth["score_from_ts"], int)
        and truth["start_ts"] < truth["score_from_ts"] < truth["end_ts"]
    )
    for v in truth["viral"]:
        assert {"product_id", "bucket", "onset_ts", "doubling_s", "shape", "events"} <= set(v)
        want = "fast" if v["doubling_s"] <= 300 else "medium" if v["doubling_s"] <= 1200 else "slow"
        assert v["bucket"] == want
        assert v["onset_ts"] >= truth["score_from_ts"]
    assert {v["bucket"] for v in truth["viral"]} == {"fast", "medium", "slow"}
    for key in ("spikes", "bursts", "slow_risers"):
        assert all({"product_id", "onset_ts", "events"} <= set(x) for x in truth[key])
    assert {s["kind"] for s in truth["spikes"]} == {"flash", "restock"}
    kinds = {a["kind"] for a in truth["attacks"]}
    assert "banned_viral" in kinds and kinds <= {
        "farm",
        "fresh_ring",
        "aged_ring",
        "camouflaged_ring",
        "banned_viral",
    }
    for a in truth["attacks"]:
        assert {"product_id", "kind", "attack_id", "onset_ts", "events"} <= set(a)
        if a["kind"] != "banned_viral":  # the product's audience holds the ring's accounts
            on_it = set(df.filter(pl.col("product_id") == a["product_id"])["user_id"].to_list())
            assert on_it & set(truth["attack_accounts"][a["attack_id"]])
    pids = [x["product_id"] for k in ROLE_KEYS for x in truth[k]]
    assert len(pids) == len(set(pids))  # every product has one role
    banned = df.filter(pl.col("seller_id").is_in(truth["banned_sellers"]))["product_id"].unique().to_list()
    assert banned == [a["product_id"] for a in truth["attacks"] if a["kind"] == "banned_viral"]


def test_every_event_is_valid_by_the_contract_with_duplicates_and_late_ones(small):
    out, truth, df = small
    n = 0
    with FileSource([out / "events.ndjson"], batch_size=10_000) as src:
        while not src.exhausted:
            batch, rejects = src.next_batch(10_000)
            assert not rejects
            n += len(batch)
    assert n == truth["n_events"] == df.height
    assert df["event_id"].n_unique() < df.height  # duplicate deliveries
    ts = df["ts"].to_numpy()
    assert (ts[1:] < ts[:-1]).sum() > 0.01 * df.height  # out of order (arrival order, late events)
    viral = {v["product_id"]: v for v in truth["viral"]}
    first = df.unique(subset="event_id", keep="first")
    for pid, v in viral.items():
        mine = first.filter(pl.col("product_id") == pid)
        assert (
            mine.height >= v["events"] * 0.95
        )  # its epidemic's events (a few clipped at the end), plus base
        assert mine.filter(pl.col("ts") >= v["onset_ts"] - 120_000).height >= v["events"] * 0.95


def test_it_runs_without_the_taobao_file(tmp_path):
    truth = write_seir(7, tmp_path, **SMALL, taobao=tmp_path / "missing.csv.gz")
    assert truth["base_stats"] == "built-in"
    assert {v["bucket"] for v in truth["viral"]} == {"fast", "medium", "slow"}


def test_the_module_doctest():
    assert doctest.testmod(seir).failed == 0
