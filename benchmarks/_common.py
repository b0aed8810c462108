"""Shared helpers for the benchmarks: environment, machine description, tables, RESULTS.md.

Import this module before numpy/numba/viraltrend: it points numba's on-disk cache at
``benchmarks/out/numba-cache`` (so a benchmark run writes nothing outside ``benchmarks/``)
and turns off ``.pyc`` writing for the same reason.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.dont_write_bytecode = True
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
RESULTS = BENCH_DIR / "RESULTS.md"
os.environ.setdefault("NUMBA_CACHE_DIR", str(OUT_DIR / "numba-cache"))
if str(BENCH_DIR.parent) not in sys.path:  # `python benchmarks/x.py` from anywhere finds viraltrend
    sys.path.insert(0, str(BENCH_DIR.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=200) if not sys.stdout.isatty() else Console()

_HEADER = """\
# Benchmark results

Benchmarks live outside the test run (tests never assert on wall time).  Every run below was
made on the machine it names; the load average is the 1/5/15-minute one read from
`/proc/loadavg` at the start and at the end of the run (the machine is shared: other work may
have been running).  Numbers are measured, never edited by hand.  Sections are appended by
`--record`; the newest is last.

| benchmark | what it measures | run it |
|---|---|---|
| `bench_kernels.py` | (a) `DecayedCounters.add` (numba, forward decay, 4 half-lives x 6 types) on seeded pre-decoded columns (default 10M Zipf events over 1M products, in 50k-event batches, after JIT warm-up), against a vectorised numpy version (`np.add.at` with the same exp weights) and a pure-Python dict loop (200k-event subset, extrapolated per event); bytes of state per product. (b) `decode_records` on 1M contract NDJSON lines against stdlib `json.loads` + a plain Python validation of the same fields, and against msgspec typed decoding alone (an upper bound). | `.venv/bin/python benchmarks/bench_kernels.py` (`--quick`: 10x smaller; `--events`, `--products`, `--lines`, `--record`) |
| `bench_replay.py` | `viraltrend.replay.replay` end to end (file -> decode -> engine -> decisions file) on a simulated day (default 2M events, 100k products, 5 viral, seed 1; cached in `benchmarks/out/`), default config: events/s, wall, peak RSS, bytes/product; detection quality against `truth.json` (onset-to-promotion minutes, precision, recall, steady/spike products promoted); the same decisions with batch sizes 10k / 50k / 200k and with tracing on; plots in `benchmarks/out/`. | `.venv/bin/python benchmarks/bench_replay.py` (`--quick`, `--events`, `--products`, `--viral`, `--seed`, `--profile`, `--record`) |
| `run_all.py` | both of the above, each in its own process, recorded here. | `.venv/bin/python benchmarks/run_all.py` (`--quick` passes through) |

Targets (from the brief): kernel update >= 20M events/s on one core with 1M products;
decode >= 1M events/s; replay end to end >= 1M events/s; <= 256 bytes per product; viral
products promoted within a few minutes of onset; steady and spike products never promoted.

Each replay run happens in a fresh child process, so its peak RSS (`VmHWM`) is its own.
The engine is under active development: replay figures follow its code at the time of the run
(each section gives a fingerprint of the `viraltrend/` sources; compare runs with equal ones).
"""  # noqa: E501


def loadavg() -> str:
    """The 1/5/15-minute load average, as in /proc/loadavg."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM, MB); reset by exec, unlike ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def source_fingerprint() -> str:
    """First 12 hex digits of a sha256 over the ``viraltrend/`` sources (path and bytes), in path order."""
    import hashlib

    h = hashlib.sha256()
    root = BENCH_DIR.parent / "viraltrend"
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, and the versions that matter, for the results file."""
    import msgspec
    import numba
    import numpy as np
    import polars as pl

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable)",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "polars": pl.__version__,
        "msgspec": msgspec.__version__,
    }


@dataclass
class Report:
    """Tables and notes of one benchmark run, printed with rich and written as markdown."""

    title: str
    argv: Sequence[str]
    started_utc: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    load_start: str = field(default_factory=loadavg)
    fingerprint: str = field(default_factory=lambda: source_fingerprint())
    parts: list[str] = field(default_factory=list)

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], notes: Sequence[str] = ()
    ) -> None:
        """Print a rich table and keep it as markdown."""
        t = Table(title=title, title_justify="left")
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*(str(x) for x in r))
        console.print(t)
        for n in notes:
            console.print(f"  [dim]{n}[/dim]")
        md = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        md += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
        if notes:
            md += [""] + [f"- {n}" for n in notes]
        self.parts.append("\n".join(md))

    def note(self, text: str) -> None:
        """Print a line and keep it as a markdown paragraph."""
        console.print(text)
        self.parts.append(text)

    def code(self, text: str, title: str) -> None:
        """Print a preformatted block and keep it as a fenced markdown block."""
        console.print(f"[bold]{title}[/bold]")
        console.print(text, markup=False, highlight=False)
        self.parts.append(f"**{title}**\n\n```\n{text.rstrip()}\n```")

    def record(self, path: Path = RESULTS, header: str | None = None) -> None:
        """Append this run, with the machine and the load average, to ``path`` (RESULTS.md).

        ``header`` starts the file when it does not exist yet (RESULTS.md's own by default).
        """
        m = machine()
        head = [
            f"## {self.title} — {self.started_utc}",
            "",
            f"- command: `{' '.join(['.venv/bin/python', *self.argv])}`",
            f"- machine: {m['cpu']}, {m['cores']}, {m['ram']} RAM, {m['os']}",
            f"- versions: Python {m['python']}, numpy {m['numpy']}, numba {m['numba']}, "
            f"polars {m['polars']}, msgspec {m['msgspec']}",
            f"- load average (1/5/15 min): {self.load_start} at start, {loadavg()} at end",
            f"- viraltrend sources: sha256 {self.fingerprint} at start",
            "",
        ]
        if not path.exists():
            path.write_text(_HEADER if header is None else header, encoding="utf-8")
        with path.open("a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(head) + "\n" + "\n\n".join(self.parts) + "\n")
        console.print(f"[green]appended to {path}[/green]")


def fmt_rate(x: float) -> str:
    """Events per second, human-scaled: 12.3M, 456k."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def verdict(ok: bool) -> str:
    """'met' or 'NOT met'."""
    return "met" if ok else "NOT met"
