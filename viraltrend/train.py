"""Train: a replay that only learns, writing the online model to start warm from.

This is what ``viraltrend train FILE... --out model.json`` runs.  The files go through the same
:class:`~viraltrend.engine.Engine` as a replay (``model.enabled`` forced on), so the model learns
exactly what it would have learned live: delayed labels on every touched product, one horizon
later, from the engine's own counters.  No decision is written; the model is saved as plain
JSON by :func:`~viraltrend.model.save_model`, and ``--model FILE`` (``model.checkpoint``) on
``replay``, ``run`` and ``demo`` starts warm from it.  With ``model.checkpoint`` set, training
continues from that model.  Files are one stream when each continues the previous one in event time;
a file that starts before the last one ended (another day of the same shop replayed, another
scenario) is a separate stream: a fresh engine, the same model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from viraltrend.config import Config
from viraltrend.engine import Engine, model_features
from viraltrend.model import OnlineModel, save_model
from viraltrend.stream.files import FileSource

__all__ = ["TrainSummary", "train"]

Progress = Callable[[int, int, int], None]  # (bytes_read, total_bytes, events)


@dataclass(slots=True)
class TrainSummary:
    """What a training run did: events, the model's progressive metrics, where it was written."""

    files: list[str]
    out: str
    features: list[str] = field(default_factory=list)
    streams: int = 1
    events_valid: int = 0
    wall_s: float = 0.0
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def train(
    paths: Sequence[str | Path],
    cfg: Config,
    *,
    out: str | Path,
    batch_size: int = 50_000,
    file_format: str = "auto",
    progress: Progress | None = None,
) -> TrainSummary:
    """Learn the online model from ``paths`` (in the order given) and write it to ``out``.

    Parameters
    ----------
    paths
        Event files (NDJSON, CSV, Parquet, or the Taobao CSV with ``file_format="taobao"``), in
        event-time order.
    cfg
        The configuration; ``model.enabled`` is forced on.  ``model.checkpoint``, if set, is the
        model to continue from.
    out
        The model file (JSON), written atomically at the end.
    progress
        Called after each batch with ``(bytes_read, total_bytes, events)``.
    """
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, enabled=True))
    engine = Engine(cfg)
    model = engine.model
    assert model is not None
    summary = TrainSummary(files=[str(p) for p in paths], out=str(out), features=list(model_features(cfg)))
    lateness_ms = round(cfg.decay.allowed_lateness_s * 1000)
    total = sum(Path(p).stat().st_size for p in paths if Path(p).is_file())
    done = 0
    t0 = time.perf_counter()
    for path in paths:
        source = FileSource([path], format=file_format, batch_size=batch_size)  # type: ignore[arg-type]
        first = True
        with source:
            while not source.exhausted:
                batch, _ = source.next_batch(batch_size)
                wm = engine.clock.watermark_ms
                if first and len(batch) and wm is not None and int(batch.ts_ms.min()) < wm - lateness_ms:
                    engine = _fresh_engine(cfg, model)  # another stream (it starts before this one's end)
                    summary.streams += 1
                first = first and not len(batch)
                summary.events_valid += len(batch)
                engine.process(batch)  # decisions are dropped: training only learns
                if progress is not None:
                    progress(
                        done + source.bytes_read, max(total, done + source.total_bytes), summary.events_valid
                    )
            done += source.total_bytes
    save_model(model, out)
    summary.wall_s = time.perf_counter() - t0
    summary.model = model.metrics()
    return summary


def _fresh_engine(cfg: Config, model: OnlineModel) -> Engine:
    """A new engine (empty state, empty label buffer) that goes on training ``model``."""
    engine = Engine(cfg)
    engine.model = engine.scorer = model
    return engine
