"""``make demo`` / ``make test`` pick the first Python >= 3.11 on the PATH (issue 12, item 5)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")

#: A fake interpreter: answers the version check with the given exit status.
FAKE = "#!/bin/sh\nexit {status}\n"


def fake_path(tmp_path: Path, interpreters: dict[str, int]) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, status in interpreters.items():
        path = bin_dir / name
        path.write_text(FAKE.format(status=status))
        path.chmod(0o755)
    return str(bin_dir)  # only the fakes: make runs recipes with /bin/sh, whose test and echo are builtins


def make(
    tmp_path: Path, interpreters: dict[str, int], *, dry_run: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": fake_path(tmp_path, interpreters)}
    env.pop("PYTHON", None)
    args = [str(MAKE), "-C", str(ROOT), "-W", "pyproject.toml", f"VENV={tmp_path / 'venv'}", "setup"]
    return subprocess.run(
        args[:1] + (["-n"] if dry_run else []) + args[1:], env=env, capture_output=True, text=True
    )


def chosen(out: str) -> str:
    """The interpreter of the ``<python> -m venv <dir>`` line that ``make -n`` printed."""
    [line] = [x for x in out.splitlines() if " -m venv " in x]
    return line.split()[0]


@pytest.mark.parametrize(
    "interpreters, want",
    [
        ({"python3.13": 0, "python3.12": 0, "python3.11": 0, "python3": 0}, "python3.13"),
        ({"python3.13": 127, "python3.12": 0, "python3.11": 0}, "python3.12"),  # a pyenv shim without 3.13
        ({"python3.12": 1, "python3.11": 0, "python3": 0}, "python3.11"),  # 1: the version is too old
        ({"python3": 0}, "python3"),
    ],
)
def test_the_first_python_of_at_least_3_11_on_the_path_is_used(tmp_path, interpreters, want):
    result = make(tmp_path, interpreters)
    assert result.returncode == 0, result.stderr
    assert chosen(result.stdout) == want


def test_no_suitable_python_stops_with_what_to_do(tmp_path):
    result = make(tmp_path, {"python3": 1}, dry_run=False)
    assert result.returncode != 0
    assert "no Python >= 3.11 on the PATH" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_an_explicit_python_wins(tmp_path):
    env = {**os.environ, "PATH": fake_path(tmp_path, {"python3.13": 0})}
    args = [
        str(MAKE),
        "-n",
        "-C",
        str(ROOT),
        "-W",
        "pyproject.toml",
        f"VENV={tmp_path / 'v'}",
        "PYTHON=/opt/py/bin/python3",
        "setup",
    ]
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    assert chosen(result.stdout) == "/opt/py/bin/python3"
