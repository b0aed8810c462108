"""`viraltrend explain`'s account of a product the change test alarmed on but never made ready."""

from __future__ import annotations

import io

import polars as pl
from rich.console import Console

from viraltrend.config import load_config
from viraltrend.explain import _sequential_story


def _story(**row: float) -> str:
    cfg = load_config(None, environ={})
    base = {
        "event_ts": 1_700_000_000_000,
        "evidence": 3.0,
        "ready": 0.0,
        "unique_users": 40.0,
        "change_users": 40.0,
        "recent_lift": 10.0,
        "growth_z": 0.0,
        "growth_z_slow": 0.0,
        "fade_z": 0.0,
        "change_s": cfg.detect.sustain_s + 600.0,
        "share_ratio": 0.5,
    }
    base.update(row)
    out = io.StringIO()
    _sequential_story(Console(file=out, width=400), pl.DataFrame([base]), cfg)
    return out.getvalue()


def test_a_flat_change_recruiting_nobody_names_both_share_windows():
    text = _story(sustain_share_ratio=1.5)
    assert "a level change recruiting nobody" in text
    assert "1.50x over 3600 s < detect.sustain_share_long_ratio 4" in text


def test_a_flat_change_shared_over_the_hour_is_not_called_a_level_change():
    assert "recruiting nobody" not in _story(sustain_share_ratio=5.0)
