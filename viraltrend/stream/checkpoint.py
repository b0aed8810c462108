"""Checkpoints: an engine's state plus the offsets it reflects, as plain files, never pickles.

One directory per checkpoint name (``<topic>-<partition>``) holding ``arrays.npz`` (numpy
arrays, loaded with ``allow_pickle=False``), ``meta.json`` (ids, board, clock, offsets) and
``manifest.json`` (SHA-256 of both).  A checkpoint is written to a temporary directory and
renamed into place, so a crash mid-write leaves the previous one intact; one whose files do not
match their manifest is refused with :class:`~viraltrend.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError

__all__ = ["CheckpointStore"]

_FORMAT = 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class CheckpointStore:
    """Saves and loads named checkpoints under ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.directory / safe

    def save(
        self, name: str, arrays: dict[str, NDArray[Any]], meta: dict[str, Any], offsets: dict[int, int]
    ) -> int:
        """Write a checkpoint atomically; returns its size in bytes."""
        for key, arr in arrays.items():
            if arr.dtype == object:
                msg = f"array {key!r} has dtype object; checkpoints hold plain numbers only"
                raise CheckpointError(msg)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
        npz = buf.getvalue()
        meta_bytes = json.dumps(
            {
                "format": _FORMAT,
                "offsets": {str(p): o for p, o in offsets.items()},
                "saved_at_ms": int(time.time() * 1000),
                "state": meta,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        manifest = json.dumps(
            {"format": _FORMAT, "arrays.npz": _sha256(npz), "meta.json": _sha256(meta_bytes)}
        )
        final = self._path(name)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write(tmp / "arrays.npz", npz)
        _write(tmp / "meta.json", meta_bytes)
        _write(tmp / "manifest.json", manifest.encode("utf-8"))
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return len(npz) + len(meta_bytes)

    def load(self, name: str) -> tuple[dict[str, NDArray[Any]], dict[str, Any], dict[int, int]] | None:
        """Return (arrays, state meta, offsets) of checkpoint ``name``, or None if there is none.

        Raises
        ------
        CheckpointError
            If a file is missing or does not match the manifest's checksum.
        """
        path = self._path(name)
        if not path.exists():
            old = path.with_name(path.name + ".old")  # a crash between the two renames of save()
            if not old.exists():
                return None
            path = old
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            npz = (path / "arrays.npz").read_bytes()
            meta_bytes = (path / "meta.json").read_bytes()
        except (OSError, ValueError) as exc:
            msg = f"checkpoint {path} is unreadable ({exc}); move it away to start that partition fresh"
            raise CheckpointError(msg) from exc
        for fname, data in (("arrays.npz", npz), ("meta.json", meta_bytes)):
            if manifest.get(fname) != _sha256(data):
                msg = (
                    f"checkpoint {path}: {fname} does not match its SHA-256 in manifest.json (corrupt or "
                    "tampered); refusing to load it. Move the directory away to start that partition fresh"
                )
                raise CheckpointError(msg)
        try:
            with np.load(io.BytesIO(npz), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(meta_bytes)
        except (ValueError, zipfile.BadZipFile) as exc:
            msg = f"checkpoint {path} cannot be decoded: {exc}"
            raise CheckpointError(msg) from exc
        return arrays, meta["state"], {int(p): int(o) for p, o in meta["offsets"].items()}
