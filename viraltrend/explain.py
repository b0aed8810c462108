"""``viraltrend explain``: the story of one product, from a decisions file and (optionally) a trace.

Answers "why was this product promoted, or not?": every decision about it with its reasons
and the numbers behind the score, and, from a ``replay --trace`` CSV, its score curve (a
sparkline in the terminal, a PNG with ``--plot``), when it first crossed the promote
threshold, and its highest lift and significance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
from rich.console import Console
from rich.table import Table

from viraltrend.config import Config
from viraltrend.errors import InputError

__all__ = ["explain", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"
_KEY_FEATURES = (
    "evidence",
    "change_s",
    "growth_z",
    "growth_z_slow",
    "fade_z",
    "recent_lift",
    "lift",
    "z",
    "unique_users",
    "events_per_user",
    "fresh_share",
    "conversion_ratio",
    "share_ratio",
    "model_p",
    "model_vouched",
)


def sparkline(values: list[float], width: int = 60) -> str:
    """A one-line bar chart of ``values`` in [0, 1], resampled to ``width`` characters (max per bucket).

    >>> sparkline([0.0, 0.5, 1.0], width=3)
    '▁▅█'
    """
    if not values:
        return ""
    n = len(values)
    width = min(width, n)
    out = []
    for b in range(width):
        chunk = values[b * n // width : max((b + 1) * n // width, b * n // width + 1)]
        v = min(max(max(chunk), 0.0), 1.0)
        out.append(_BARS[min(int(v * (len(_BARS) - 1) + 0.5), len(_BARS) - 1)])
    return "".join(out)


def _utc(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _decisions(path: Path, product_id: str) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        msg = f"cannot read decisions file {path}: {exc.strerror}; pass the --out file of viraltrend replay"
        raise InputError(msg) from exc
    needle = msgspec.json.encode(product_id)
    out = []
    for line in lines:
        if needle in line:  # cheap pre-filter, then a real decode
            m = msgspec.json.decode(line)
            if m.get("product_id") == product_id:
                out.append(m)
    return out


def explain(
    product_id: str,
    decisions_path: str | Path,
    cfg: Config,
    *,
    trace_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    console: Console | None = None,
) -> int:
    """Print the story of ``product_id``; returns the exit code (0 found, 1 nothing known about it)."""
    console = console or Console()
    found = _decisions(Path(decisions_path), product_id)
    trace = None
    if trace_path is not None:
        try:
            trace = (
                pl.read_csv(trace_path, infer_schema_length=None)
                .filter(pl.col("product_id") == product_id)
                .sort("event_ts")
            )
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = f"cannot read trace {trace_path}: {exc}; pass the CSV written by replay --trace-out"
            raise InputError(msg) from exc
    if not found and (trace is None or trace.is_empty()):
        console.print(
            f"[yellow]{product_id}[/]: no decision and no trace rows. It never came close to the "
            f"promote threshold ({cfg.board.promote_threshold}); replay with --trace {product_id} to "
            "see its score over time."
        )
        return 1
    if found:
        t = Table(title=f"decisions about {product_id}")
        for col in ("event time (UTC)", "action", "rank", "score", "reasons"):
            t.add_column(col)
        for m in found:
            t.add_row(
                _utc(m["event_ts"]),
                m["action"],
                str(m.get("rank") or "-"),
                f"{m['score']:.3f}",
                ", ".join(m.get("reasons", [])),
            )
        console.print(t)
        first = next((m for m in found if m["action"] in ("promote", "block")), None)
        if first is not None and first.get("features"):
            f = first["features"]
            shown = {k: f[k] for k in _KEY_FEATURES if k in f}
            console.print(
                f"numbers behind the first {first['action']}: "
                + ", ".join(f"{k}={v:.3g}" for k, v in shown.items())
            )
    else:
        console.print(f"{product_id}: no decision was published about it.")
    if trace is not None and not trace.is_empty():
        scores = trace["score"].to_list()
        console.print(
            f"score over {len(scores)} ticks ({_utc(trace['event_ts'][0])} .. {_utc(trace['event_ts'][-1])}):"
        )
        console.print("  " + sparkline(scores))
        crossed = trace.filter(pl.col("score") >= cfg.board.promote_threshold)
        best = trace.sort("score", descending=True).row(0, named=True)
        console.print(
            f"highest score {best['score']:.3f} at {_utc(best['event_ts'])}"
            + (f" (lift {best['lift']:.1f}, z {best['z']:.1f})" if "lift" in best and "z" in best else "")
        )
        if cfg.detect.method == "sequential" and "evidence" in trace.columns:
            _sequential_story(console, trace, cfg)
        elif crossed.is_empty():
            bar = cfg.board.promote_threshold
            console.print(f"never reached the promote threshold {bar}: not promoted for that reason")
        else:
            console.print(
                f"first at or above the promote threshold at {_utc(crossed['event_ts'][0])}; "
                f"promotion waits board.confirm_s = {cfg.board.confirm_s:g} s with momentum held"
            )
        if plot_path is not None:
            _plot(trace, product_id, found, cfg, Path(plot_path))
            console.print(f"plot: {plot_path}")
    return 0


def _sequential_story(console: Console, trace: pl.DataFrame, cfg: Config) -> None:
    """The change test's side of the story: evidence over time, when it sufficed, what held it back."""
    d = cfg.detect
    evidence = trace["evidence"].to_list()
    console.print("change evidence (1 = the alarm threshold of detect.false_alarms_per_day):")
    console.print("  " + sparkline([min(e, 1.0) for e in evidence]))
    alarmed = trace.filter(pl.col("evidence") >= 1.0)
    if alarmed.is_empty():
        console.print(
            f"the evidence never reached the alarm threshold (highest {max(evidence):.2f}): its distinct "
            f"users never left its own baseline by enough for a budget of {d.false_alarms_per_day:g} false "
            "alarms per day per 100k products"
        )
        return
    console.print(f"evidence first sufficed at {_utc(alarmed['event_ts'][0])}")
    ready = trace.filter(pl.col("ready") > 0) if "ready" in trace.columns else alarmed.head(0)
    if not ready.is_empty():
        console.print(f"first ready for the board at {_utc(ready['event_ts'][0])}")
        return
    r = alarmed.sort("evidence", descending=True).row(0, named=True)
    long_bar = d.sustain_share_long_ratio or d.sustain_min_share_ratio  # the hourly share test's bar
    held = []
    if (
        r.get("unique_users", 0.0) < cfg.trust.min_unique_users
        and r.get("change_users", 0.0) < d.min_change_users
    ):
        held.append(
            f"{r['unique_users']:.1f} distinct users < trust.min_unique_users {cfg.trust.min_unique_users:g}"
            f" and {r.get('change_users', 0.0):.0f} since the change < detect.min_change_users"
            f" {d.min_change_users:g}"
        )
    if r.get("recent_lift", 0.0) < d.min_recent_lift:
        held.append(f"recent lift {r['recent_lift']:.1f} < detect.min_recent_lift {d.min_recent_lift:g}")
    accelerating = max(r.get("growth_z", 0.0), r.get("growth_z_slow", 0.0)) >= d.growth_z
    if d.joint_growth_z > 0.0:  # both rings as one series (detect.joint_growth_z)
        accelerating |= r.get("growth_z_joint", 0.0) >= d.joint_growth_z
    if min(r.get("growth_z", 0.0), r.get("growth_z_slow", 0.0), r.get("fade_z", 0.0)) <= -d.fade_z:
        held.append("fading (a growth z at or below -detect.fade_z)")
    elif not accelerating and r["change_s"] < d.sustain_s:
        held.append(
            f"neither accelerating (growth z < {d.growth_z:g}) nor sustained {d.sustain_s:g} s "
            f"(change {r['change_s']:.0f} s old): the shape of a spike"
        )
    elif (
        not accelerating
        and r.get("share_ratio", float("inf")) < d.sustain_min_share_ratio
        and r.get("sustain_share_ratio", 0.0) < long_bar
    ):
        long = ""
        if "sustain_share_ratio" in r:
            long = (
                f", and {r['sustain_share_ratio']:.2f}x over {d.sustain_share_half_life_s:g} s < "
                f"detect.sustain_share_long_ratio {long_bar:g}"
            )
        held.append(
            f"flat, and shared {r['share_ratio']:.2f}x the catalogue's per view < "
            f"detect.sustain_min_share_ratio {d.sustain_min_share_ratio:g}{long}: "
            "a level change recruiting nobody"
        )
    console.print(
        f"never ready; at its strongest evidence ({_utc(r['event_ts'])}): " + "; ".join(held or ["-"])
    )


def _plot(trace: pl.DataFrame, product_id: str, found: list[dict[str, Any]], cfg: Config, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        msg = "--plot needs matplotlib: pip install matplotlib (it comes with the dev extra)"
        raise InputError(msg) from exc
    hours = [(t - trace["event_ts"][0]) / 3_600_000 for t in trace["event_ts"].to_list()]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(hours, trace["score"].to_list(), label="score")
    if "evidence" in trace.columns:
        ax.plot(
            hours, [min(e, 1.1) for e in trace["evidence"].to_list()], label="change evidence (1 = alarm)"
        )
    ax.axhline(
        cfg.board.promote_threshold, color="green", linestyle="--", linewidth=0.8, label="promote threshold"
    )
    ax.axhline(
        cfg.board.demote_threshold, color="orange", linestyle="--", linewidth=0.8, label="demote threshold"
    )
    for m in found:
        if m["action"] in ("promote", "demote", "block"):
            x = (m["event_ts"] - trace["event_ts"][0]) / 3_600_000
            ax.axvline(
                x, color={"promote": "green", "demote": "orange", "block": "red"}[m["action"]], alpha=0.6
            )
            ax.text(x, 1.02, m["action"], rotation=90, fontsize=7, va="bottom")
    ax.set_xlabel(f"hours since {_utc(trace['event_ts'][0])} UTC")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.15)
    ax.set_title(f"{product_id}: score and decisions")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
