"""`viraltrend run` starts fast: what only some paths need is imported where they need it.

A service subprocess is started dozens of times by the stream tests, and every start paid for
river (the online model, which pulls in ``scipy.stats``) and polars (the file decoder) before its
first log line: ~1 s on a quiet machine, several seconds on a loaded one.  river is now imported
on a thread while the consumer joins its group (the engine is built only once a partition is
assigned), and polars only by the file sources.
"""

from __future__ import annotations

import json
import subprocess
import sys

from viraltrend.config import load_config
from viraltrend.stream.loop import import_in_background

_LATE = ("river", "scipy.stats", "polars")


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(__import__('json').dumps([m for m in {_LATE!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_service_and_cli_modules_import_neither_river_nor_scipy_stats_nor_polars():
    assert _imported_after("import viraltrend.cli, viraltrend.stream.loop, viraltrend.engine") == []


def test_the_file_source_and_an_engine_with_the_model_still_import_what_they_use():
    assert _imported_after("from viraltrend.stream import FileSource") == ["polars"]
    engine = "from viraltrend.config import load_config\nfrom viraltrend.engine import Engine\n"
    assert _imported_after(engine + "Engine(load_config(None, environ={}))") == ["river", "scipy.stats"]


def test_the_background_import_brings_in_river_and_only_when_the_model_is_on():
    assert import_in_background(load_config(None, environ={"VIRALTREND_MODEL_ENABLED": "false"})) is None
    thread = import_in_background(load_config(None, environ={}))
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "river.linear_model" in sys.modules
