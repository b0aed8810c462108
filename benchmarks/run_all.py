"""Run every benchmark, each in its own process, and append the results to benchmarks/RESULTS.md.

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--no-record]``.  Arguments after
``--`` are ignored; pass options to one benchmark by running it directly.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import _common  # noqa: F401  # first: numba cache dir, sys.path
from _common import BENCH_DIR, console, loadavg

BENCHMARKS = ("bench_kernels.py", "bench_replay.py", "bench_scaleout.py")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10x smaller workloads")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    extra = (["--quick"] if args.quick else []) + ([] if args.no_record else ["--record"])
    failed = []
    for name in BENCHMARKS:
        console.rule(f"{name}  (load average {loadavg()})")
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(BENCH_DIR / name), *extra])
        console.print(f"{name}: exit {rc}, {time.perf_counter() - t0:.0f} s")
        if rc:
            failed.append(name)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
