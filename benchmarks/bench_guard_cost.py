"""The trust guard's cost per 1M events: engine time with the guard on and off, in the same run.

Runs a fresh :class:`~viraltrend.engine.Engine` (JIT warmed first) over cached scenario-family
files (``bench_family``'s ``benchmarks/out/family/seed-N-quick``, generated if missing) under the
rows ``today`` and ``today, guard off`` of :mod:`bench_family`, and prints per 1M events the
engine's wall seconds and ``Engine.guard_s`` (time inside the guard: audience sampling per event,
audience memory and checks per tick).  The guard-off row still samples and remembers audiences
(only the thresholds are off), so ``guard_s`` is the guard's whole cost and the difference in
engine seconds between the rows is noise.

Run: ``.venv/bin/python benchmarks/bench_guard_cost.py [--seeds 100-101]`` (tuning seeds by default).
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401, I001  # first: sets the numba cache dir before numba is imported
from _common import console, loadavg
from bench_detection import load_batches
from bench_family import BATCH, config_for, generated, method_by_label, parse_seeds

from viraltrend.config import load_config
from viraltrend.engine import Engine

ROWS = ("today", "today, guard off")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="100-101", help="scenario-family seeds (quick), default 100-101")
    args = ap.parse_args(argv)
    base = load_config(None, environ={})
    console.print(f"load average at start: {loadavg()}")
    for label in ROWS:
        wall = guard = events = 0.0
        for seed in parse_seeds(args.seeds):
            path, truth = generated(seed, True)
            cfg = config_for(method_by_label()[label], base, truth)
            batches = load_batches(path, BATCH)
            Engine(cfg).process(batches[0])  # warm the JIT
            engine = Engine(cfg)
            t0 = time.perf_counter()
            for batch in batches:
                engine.process(batch)
            wall += time.perf_counter() - t0
            guard += engine.guard_s
            events += engine.stats.events_in
        per_m = 1e6 / max(events, 1.0)
        console.print(
            f"{label}: {events:,.0f} events, engine {wall * per_m:.1f} s per 1M, "
            f"guard {guard * per_m:.2f} s per 1M ({100 * guard / max(wall, 1e-9):.1f} % of the engine)"
        )
    console.print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
