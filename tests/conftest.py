"""Shared fixtures: small simulated scenarios, cached per session, and an engine runner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from viraltrend.config import Config, load_config
from viraltrend.engine import Engine
from viraltrend.events import EventBatch
from viraltrend.simulate import Scenario, simulate
from viraltrend.stream.files import FileSource

# rich wraps error messages at the terminal width (80 columns without a terminal), and tests look
# for file paths in them: pytest-xdist's temporary paths (``.../popen-gw0/...``) are long enough
# to be cut.  Set before any test imports the CLI, and inherited by the CLI subprocesses.
os.environ["COLUMNS"] = "400"


@pytest.fixture(scope="session")
def scenario_factory(tmp_path_factory) -> Callable[..., Path]:
    """Simulate a scenario once per session per set of arguments; returns its directory."""
    made: dict[tuple, Path] = {}

    def make(**kwargs: Any) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            out = tmp_path_factory.mktemp("scenario")
            simulate(Scenario(**kwargs), out)
            made[key] = out
        return made[key]

    return make


def read_events(path: Path) -> EventBatch:
    with FileSource([path], batch_size=1_000_000) as src:
        parts = []
        while not src.exhausted:
            batch, _ = src.next_batch(1_000_000)
            parts.append(batch)
    return EventBatch.concat(parts)


def run_engine(
    events: EventBatch, cuts: list[int], cfg: Config | None = None, **kwargs: Any
) -> tuple[Engine, list[dict]]:
    """Run a fresh engine over ``events`` cut at ``cuts``; return it and its messages (no emitted_at)."""
    engine = Engine(cfg or load_config(None, environ={}), **kwargs)
    bounds = sorted({0, len(events), *[c for c in cuts if 0 < c < len(events)]})
    out: list[dict] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        msgs, _ = engine.process(events.take(np.arange(a, b)))
        out += msgs
    out += engine.finish()
    return engine, out


def truth(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "truth.json").read_text())
