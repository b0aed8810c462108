"""The command line as a user runs it: real subprocesses of ``python -m viraltrend``."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.integration


def vt(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "viraltrend", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        msg = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        raise AssertionError(msg)
    return proc


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    vt(
        "simulate",
        "--events",
        "60000",
        "--products",
        "5000",
        "--viral",
        "2",
        "--hours",
        "6",
        "--seed",
        "5",
        "--garbage",
        "0.01",
        "--duplicates",
        "0.01",
        "--out",
        str(out),
    )
    return out


def strip(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        assert isinstance(r.pop("emitted_at"), int)
    return rows


def test_help_explains_every_subcommand():
    out = vt("--help").stdout
    for word in ("simulate", "replay", "explain", "run", "demo"):
        assert word in out
    assert "--trace" in vt("replay", "--help").stdout


def test_simulate_writes_events_and_truth(simulated):
    truth = json.loads((simulated / "truth.json").read_text())
    assert len(truth["viral"]) == 2
    assert truth["n_lines"] == len((simulated / "events.ndjson").read_text().splitlines())


def test_replay_writes_decisions_rejects_summary_and_trace(simulated, tmp_path):
    truth = json.loads((simulated / "truth.json").read_text())
    viral = truth["viral"][0]["product_id"]
    proc = vt(
        "replay",
        str(simulated / "events.ndjson"),
        "--out",
        str(tmp_path / "d.ndjson"),
        "--summary-json",
        str(tmp_path / "s.json"),
        "--trace",
        viral,
        "--no-progress",
        env={"VIRALTREND_DEDUP_WINDOW_S": "7200"},
    )  # the simulator re-sends up to ~15 min later
    assert "replay summary" in proc.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rejected"]["duplicate"] == truth["n_duplicates"]
    assert (
        sum(n for r, n in summary["rejected"].items() if r not in ("duplicate", "late", "future_ts"))
        == truth["n_garbage"]
    )
    rejects = [json.loads(x) for x in (tmp_path / "d.rejects.ndjson").read_text().splitlines()]
    assert {r["reason"] for r in rejects} and all(r["offset"] >= 1 and r["detail"] for r in rejects)
    decisions = strip(tmp_path / "d.ndjson")
    assert decisions[-1]["action"] == "board"
    trace = pl.read_csv(tmp_path / "d.trace.csv")
    assert {"event_ts", "product_id", "score"} <= set(trace.columns)
    assert trace["product_id"].unique().to_list() == [viral]


def test_replay_is_byte_identical_whatever_the_batch_size(simulated, tmp_path):
    vt(
        "replay",
        str(simulated / "events.ndjson"),
        "--out",
        str(tmp_path / "a.ndjson"),
        "--batch-size",
        "777",
        "--no-progress",
    )
    vt(
        "replay",
        str(simulated / "events.ndjson"),
        "--out",
        str(tmp_path / "b.ndjson"),
        "--batch-size",
        "100000",
        "--no-progress",
    )
    assert strip(tmp_path / "a.ndjson") == strip(tmp_path / "b.ndjson")


def test_bad_config_is_one_clear_error_and_exit_2(simulated, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[board]\nsize = 0\nsizee = 3\n")
    proc = vt("replay", str(simulated / "events.ndjson"), "--config", str(bad), "--no-progress", check=False)
    assert proc.returncode == 2
    assert "board.size must be >= 1" in proc.stderr and "did you mean 'size'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_input_file_says_which(tmp_path):
    proc = vt(
        "replay",
        str(tmp_path / "nope.ndjson"),
        "--no-progress",
        "--out",
        str(tmp_path / "d.ndjson"),
        check=False,
    )
    assert proc.returncode == 2 and "nope.ndjson" in proc.stderr and "Traceback" not in proc.stderr


def test_taobao_sample_replays_with_sort(tmp_path):
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "taobao_userbehavior_sample.csv.gz"
    if not data.exists():
        pytest.skip("shared/data is not beside this checkout")
    vt(
        "replay",
        str(data),
        "--format",
        "taobao",
        "--sort",
        "--out",
        str(tmp_path / "t.ndjson"),
        "--summary-json",
        str(tmp_path / "t.json"),
        "--no-progress",
    )
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["events_read"] == 84_475
    assert summary["events_applied"] > 84_000


def test_sort_replays_an_unsorted_gzipped_taobao_file_that_is_otherwise_late(tmp_path):
    """Runs on any checkout (the real sample above needs ../shared/data): rows two days out of order."""
    rng = random.Random(7)
    behaviors = ("pv", "fav", "cart", "buy")
    t0 = 1_511_544_070
    rows = [
        (u, rng.randrange(50), rng.choice(behaviors), t0 + rng.randrange(2 * 86_400)) for u in range(3000)
    ]
    path = tmp_path / "unsorted.csv.gz"
    with gzip.open(path, "wt") as out:
        out.writelines(f"{u},{p},{p % 7},{b},{ts}\n" for u, p, b, ts in rows)
    summaries = {}
    for flag in ("--sort", None):
        summary = tmp_path / f"{flag}.json"
        args = [
            str(path),
            "--format",
            "taobao",
            "--out",
            str(tmp_path / "d.ndjson"),
            "--summary-json",
            str(summary),
        ]
        vt("replay", *args, *([flag] if flag else []), "--no-progress")
        summaries[flag] = json.loads(summary.read_text())
    assert summaries["--sort"]["events_read"] == summaries[None]["events_read"] == 3000
    assert summaries["--sort"]["events_applied"] == 3000  # sorted first: nothing is late
    assert summaries[None]["events_applied"] < 2000  # as read: most rows are hours behind the watermark


def test_explain_tells_the_story_of_a_promoted_product(simulated, tmp_path):
    viral = json.loads((simulated / "truth.json").read_text())["viral"][0]["product_id"]
    vt(
        "replay",
        str(simulated / "events.ndjson"),
        "--out",
        str(tmp_path / "d.ndjson"),
        "--trace",
        viral,
        "--no-progress",
    )
    out = vt(
        "explain",
        viral,
        "--from",
        str(tmp_path / "d.ndjson"),
        "--trace",
        str(tmp_path / "d.trace.csv"),
        "--plot",
        str(tmp_path / "story.png"),
    ).stdout
    out = " ".join(out.split())  # rich wraps lines at the terminal width
    assert "promote" in out and "evidence=" in out and "growth_z=" in out and "lift=" in out
    assert "evidence first sufficed at" in out and "first ready for the board at" in out
    assert (tmp_path / "story.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_of_an_unknown_product_says_why_nothing_is_known(simulated, tmp_path):
    vt("replay", str(simulated / "events.ndjson"), "--out", str(tmp_path / "d.ndjson"), "--no-progress")
    proc = vt("explain", "p-nope", "--from", str(tmp_path / "d.ndjson"), check=False)
    assert proc.returncode == 1 and "never came close to the promote threshold" in " ".join(
        proc.stdout.split()
    )
