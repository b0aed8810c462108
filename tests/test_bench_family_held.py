"""bench_family's row "poisson_z held to today's precision": the knobs come from the calibration file, per
generator, and a generator without a calibration fails loudly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_family as bf  # noqa: E402

from viraltrend.config import load_config  # noqa: E402


def test_the_held_row_takes_its_knobs_per_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = tmp_path / "held.json"
    held.write_text(
        json.dumps({"agents": {"z": 24.0, "confirm_s": 1200.0}, "family": {"z": 8, "confirm_s": 240}})
    )
    monkeypatch.setattr(bf, "HELD_PATH", held)
    row = bf.method_by_label()[bf.HELD_LABEL]
    assert row.per_generator is not None and not row.default
    base = load_config(None, environ={})
    for generator, z, confirm_s in (("agents", 24.0, 1200.0), ("family", 8.0, 240.0)):
        m = row.per_generator(generator)
        cfg = bf.config_for(m, base, {"banned_sellers": ["s1"]})
        assert cfg.board.confirm_s == confirm_s
        assert cfg.detect.method == "confirm" and not cfg.model.enabled  # the poisson_z row's board
        assert "s1" in cfg.trust.blocked_sellers
        assert m.scorer is not None
        assert m.scorer(cfg).z_full == pytest.approx(z / bf.PROMOTE_AT)
    with pytest.raises(SystemExit, match="no poisson_z calibration for 'foreign'"):
        row.per_generator("foreign")


def test_the_committed_calibration_names_its_seeds_and_both_rows() -> None:
    held = json.loads(bf.HELD_PATH.read_text())
    for generator in ("family", "foreign", "agents"):
        c = held[generator]
        assert c["z"] > 0 and c["confirm_s"] >= 0
        lo = 100 if generator == "family" else 101
        assert int(c["tuning_seeds"].split("-")[0]) >= lo  # tuning seeds, never evaluation seeds
        t, h = c["today_tuning"]["precision"], c["held_tuning"]["precision"]
        if c["reached"]:
            assert h[0] * t[1] >= t[0] * h[1]  # held precision >= today's on the same seeds


def test_the_paired_table_compares_the_same_products() -> None:
    def viral(pid: str, bucket: str) -> dict[str, object]:
        return {"product_id": pid, "bucket": bucket, "onset_ts": 1_000, "doubling_s": 60.0, "shape": "x",
                "events": 500}  # fmt: skip

    truth = {"viral": [viral("a", "fast"), viral("b", "fast"), viral("c", "fast"), viral("d", "slow")],
             "spikes": [], "bursts": [], "slow_risers": [], "steady": [], "attacks": []}  # fmt: skip
    runs = {
        "today": {"first_promote": {"a": 61_000, "b": 200_000, "d": 5_000, "x": 9}},
        "poisson_z": {"first_promote": {"a": 121_000, "b": 100_000, "c": 50_000, "d": 500}},
    }
    rows = bf.paired({7: {"truth": truth, "runs": runs}}, [7], "today", "poisson_z")
    fast, slow = rows["fast"], rows["slow"]
    assert (fast["both"], fast["earlier"], fast["later"], fast["same"]) == (2, 1, 1, 0)
    assert sorted(fast["diffs"]) == [-60.0, 100.0]
    assert (fast["only_ours"], fast["only_theirs"]) == (0, 1)  # c: only the baseline promoted it
    assert (slow["both"], slow["only_ours"]) == (0, 1)  # the baseline's promotion of d came before onset
