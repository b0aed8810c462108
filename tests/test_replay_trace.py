"""The trace CSV keeps a column that only later rows carry (the model's probability once it is warm)."""

from __future__ import annotations

import polars as pl

from viraltrend.replay import _write_trace


def test_a_key_first_seen_after_many_rows_is_a_column(tmp_path):
    rows = [{"event_ts": i, "product_id": "p-1", "score": 0.5} for i in range(300)]
    rows += [{"event_ts": 300 + i, "product_id": "p-1", "score": 0.9, "model_p": 0.25 * i} for i in range(3)]
    path = tmp_path / "trace.csv"
    _write_trace(rows, path)
    frame = pl.read_csv(path, infer_schema_length=None)
    assert frame.columns == ["event_ts", "product_id", "score", "model_p"]
    assert frame.height == 303
    assert frame["model_p"].null_count() == 300
    assert frame["model_p"].drop_nulls().to_list() == [0.0, 0.25, 0.5]


def test_no_rows_still_write_a_header(tmp_path):
    path = tmp_path / "trace.csv"
    _write_trace([], path)
    assert path.read_text(encoding="utf-8").startswith("event_ts,product_id,score")
