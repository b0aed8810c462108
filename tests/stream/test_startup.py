"""`viraltrend run` starts and stops fast: imports where they are needed, a prompt metrics stop.

A service subprocess is started dozens of times by the stream tests, and every start paid for
river (the online model, which pulls in ``scipy.stats``) and polars (the file decoder) before its
first log line: ~1 s on a quiet machine, several seconds on a loaded one.  river is now imported
on a thread while the consumer joins its group (the engine is built only once a partition is
assigned), and polars only where a file source reads CSV or Parquet; an engine builds river at its
model's first use (perf27).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from prometheus_client import CollectorRegistry

from viraltrend.config import load_config
from viraltrend.metrics import serve_metrics, stop_metrics
from viraltrend.stream.loop import import_in_background

_LATE = ("river", "scipy.stats", "polars")


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(__import__('json').dumps([m for m in {_LATE!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_service_and_cli_modules_import_neither_river_nor_scipy_stats_nor_polars():
    assert _imported_after("import viraltrend.cli, viraltrend.stream.loop, viraltrend.engine") == []


def test_the_file_source_and_the_model_import_polars_and_river_only_when_they_use_them():
    """An NDJSON replay whose model never learns pays for neither (perf27); a CSV read and a model's
    first use still import what they need."""
    source = "from viraltrend.stream import FileSource\n"
    assert _imported_after(source) == []
    read_csv = """
import pathlib, tempfile
p = pathlib.Path(tempfile.mkdtemp()) / "e.csv"
p.write_text("ts,type,product_id,user_id\\n1700000000000,view,p1,u1\\n")
batch, rejects = FileSource([p]).next_batch(10)
assert len(batch) == 1 and not rejects
"""
    assert _imported_after(source + read_csv) == ["polars"]
    engine = """
from viraltrend.config import load_config
from viraltrend.engine import Engine
e = Engine(load_config(None, environ={}))
"""
    assert _imported_after(engine) == []
    assert _imported_after(engine + "e.model._parts()") == ["river", "scipy.stats"]


def test_the_background_import_brings_in_river_and_only_when_the_model_is_on():
    assert import_in_background(load_config(None, environ={"VIRALTREND_MODEL_ENABLED": "false"})) is None
    thread = import_in_background(load_config(None, environ={}))
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "river.linear_model" in sys.modules


def test_the_metrics_server_stops_at_once_not_at_its_next_poll():
    """``shutdown()`` alone waits for the server's 0.5 s poll; :func:`stop_metrics` wakes it."""
    took = []
    for _ in range(3):
        server, port = serve_metrics(CollectorRegistry(), host="127.0.0.1", port=0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200  # served; its loop now waits in a fresh 0.5 s poll
        t0 = time.perf_counter()
        stop_metrics(server)
        took.append(time.perf_counter() - t0)
    assert min(took) < 0.3, took
