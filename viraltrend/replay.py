"""Replay: run the engine over files of events and write every decision, deterministically.

This is what ``viraltrend replay`` runs.  Files are read in the order given (or, with
``sort=True``, loaded whole and stably sorted by ``ts``), in batches, through the same
:class:`~viraltrend.engine.Engine` the live service uses.  The same input gives the same
decisions (apart from ``emitted_at``) whatever the batch size.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from viraltrend.config import Config
from viraltrend.engine import Engine, Scorer
from viraltrend.events import EventBatch, Reject
from viraltrend.messages import FRAMING_BYTES
from viraltrend.stream.files import FileSource
from viraltrend.stream.sinks import DecisionFile, RejectsFile

__all__ = ["ReplaySummary", "replay"]

Progress = Callable[[int, int, int], None]  # (bytes_read, total_bytes, events)


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did: counts, speed, and the board at the end."""

    files: list[str]
    events_read: int = 0
    events_valid: int = 0
    events_applied: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    products_tracked: int = 0
    state_bytes: int = 0
    bytes_per_product: float = 0.0
    ticks: int = 0
    wall_s: float = 0.0
    events_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    watermark_ms: int | None = None
    board: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for ``--summary-json``."""
        return asdict(self)


#: Events per read of a file replayed with ``sort`` (it is loaded whole before the sort anyway).
_SORT_READ_EVENTS = 1_000_000


def _sorted_batches(
    source: FileSource, batch_size: int, on_rejects: Callable[[list[Reject]], None]
) -> list[EventBatch]:
    parts = []
    while not source.exhausted:
        batch, rejects = source.next_batch(source.batch_size)  # replay() made it read large batches
        on_rejects(rejects)
        parts.append(batch)
    whole = EventBatch.concat(parts)
    if (np.diff(whole.ts_ms) < 0).any():  # a stable sort of sorted times is the identity
        whole.ids  # noqa: B018  # spans and hashes first (the engine reads them): take() moves no strings
        order = np.argsort(whole.ts_ms, kind="stable")  # each batch taken from it: one copy, not two
        return [whole.take(order[i : i + batch_size]) for i in range(0, len(whole), batch_size)]
    return [
        whole.take(np.arange(i, min(i + batch_size, len(whole)))) for i in range(0, len(whole), batch_size)
    ]


def replay(
    paths: Sequence[str | Path],
    cfg: Config,
    *,
    out: str | Path,
    rejects_out: str | Path | None = None,
    batch_size: int = 50_000,
    file_format: str = "auto",
    sort: bool = False,
    trace: Sequence[str] = (),
    trace_out: str | Path | None = None,
    scorer: Scorer | None = None,
    progress: Progress | None = None,
) -> ReplaySummary:
    """Replay ``paths`` through a fresh engine, writing decisions to ``out``.

    Parameters
    ----------
    paths
        Event files (NDJSON, CSV, Parquet, or the Taobao CSV with ``file_format="taobao"``).
    out
        Decisions file (NDJSON, the deals contract), ending with the final board snapshot.
    rejects_out
        Where refused records go, none written if None: one dead-letter record per line, the same
        :class:`~viraltrend.messages.DeadLetter` as the live DLQ's (original bytes, reason, file,
        line number), truncated with its full size and SHA-256 past ``kafka.max_message_bytes``.
    sort
        Load everything and sort stably by ``ts`` first (for files not in event-time order).
    trace, trace_out
        Products whose feature/score time series is written as CSV to ``trace_out``.
    """
    engine = Engine(cfg, scorer=scorer, trace_products=tuple(trace))
    summary = ReplaySummary(files=[str(p) for p in paths])
    rejected: dict[str, int] = {}
    t0 = time.perf_counter()
    # sorted input is loaded whole: read in large batches (fewer batches to decode and concatenate;
    # the same events, rejects and order)
    read_size = max(batch_size, _SORT_READ_EVENTS) if sort else batch_size
    source = FileSource(paths, format=file_format, batch_size=read_size)  # type: ignore[arg-type]
    with _startup_frozen(), source, DecisionFile(out) as decisions:
        limit = cfg.kafka.max_message_bytes - FRAMING_BYTES  # what the DLQ would hold
        rejects_file = RejectsFile(rejects_out, max_bytes=limit) if rejects_out is not None else None

        def on_rejects(rejects: list[Reject]) -> None:
            for r in rejects:
                rejected[r.reason] = rejected.get(r.reason, 0) + 1
            if rejects_file is not None:
                rejects_file.write(rejects)

        def batches() -> Any:
            if sort:
                yield from _sorted_batches(source, batch_size, on_rejects)
                return
            while not source.exhausted:
                batch, rejects = source.next_batch(batch_size)
                on_rejects(rejects)
                yield batch

        try:
            for batch in batches():
                summary.events_valid += len(batch)
                messages, late = engine.process(batch)
                if rejects_file is not None:
                    rejects_file.write(late)
                decisions.write(messages)
                if progress is not None:
                    progress(source.bytes_read, source.total_bytes, summary.events_valid)
            decisions.write(engine.finish())
        finally:
            if rejects_file is not None:
                rejects_file.close()
    summary.wall_s = time.perf_counter() - t0
    if trace_out is not None:
        _write_trace(engine.trace_rows, trace_out)
    stats = engine.stats
    for reason, n in stats.rejected.items():
        rejected[reason] = rejected.get(reason, 0) + n
    summary.rejected = dict(sorted(rejected.items()))
    summary.events_read = summary.events_valid + sum(
        n for r, n in rejected.items() if r not in engine_reasons()
    )
    summary.events_applied = stats.events_applied
    summary.decisions = dict(sorted(stats.decisions.items()))
    summary.products_tracked = engine.tracked_products
    summary.state_bytes = engine.state_bytes
    summary.bytes_per_product = float(engine.bytes_per_product)
    summary.ticks = stats.ticks
    summary.events_per_s = summary.events_read / summary.wall_s if summary.wall_s > 0 else 0.0
    summary.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    summary.watermark_ms = engine.clock.watermark_ms if stats.events_applied else None
    wm = engine.clock.watermark_ms
    if stats.events_applied and wm is not None:
        summary.board = msgspec.to_builtins(engine.board.snapshot(wm).entries)
    if engine.model is not None:
        summary.model = engine.model.metrics()
    return summary


@contextlib.contextmanager
def _startup_frozen() -> Iterator[None]:
    """While a replay runs, the objects alive at its start are left out of the collector's walks.

    Those are mostly the imports' (numba, llvmlite, polars, scikit-learn: ~180k objects), which
    every full collection walks; the Taobao sample's replay triggered one (97 ms of its ~1 s of
    CPU).  ``gc.freeze()`` moves them to the permanent generation at no cost, and
    ``gc.unfreeze()`` hands them back at the end, so garbage among them is collected later as
    before (nothing leaks).  A caller that froze objects itself (the live service's startup) keeps
    them frozen: then this does nothing.  The decisions do not depend on it.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def engine_reasons() -> frozenset[str]:
    """Reasons decided by the engine after decoding (those events were counted as valid)."""
    return frozenset({"duplicate", "late", "future_ts"})


def _write_trace(rows: list[dict[str, Any]], path: str | Path) -> None:
    """The traced rows as CSV; a key that comes late (``model_p`` once the model is warm) is empty before."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if rows:  # every row read for the schema: polars >= 2.2 refuses a key its first 100 rows lack
        import polars as pl  # lazy: an untraced replay of NDJSON never needs polars

        pl.DataFrame(rows, infer_schema_length=None).write_csv(path)
    else:
        Path(path).write_text("event_ts,product_id,score\n", encoding="utf-8")
