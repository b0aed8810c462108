"""Checkpoints: an engine's state plus the offsets it reflects, as plain data, never pickles.

Three layers:

- :func:`encode_checkpoint` / :func:`decode_checkpoint` turn ``(arrays, meta, offsets)`` into an
  :class:`EncodedCheckpoint` (``arrays.npz`` bytes, ``meta.json`` bytes and a ``manifest.json``
  with the SHA-256 of both) and back, verifying every checksum; :meth:`EncodedCheckpoint.to_blob`
  and :meth:`EncodedCheckpoint.from_blob` pack the three into one self-describing byte string for
  stores that keep bytes rather than files (:mod:`viraltrend.stream.changelog`).  Arrays are read
  with ``allow_pickle=False`` and ``dtype=object`` arrays are refused on save.
- :class:`StateStore`: what the service needs of a store, one checkpoint per input partition.
- :class:`LocalStore`: a :class:`StateStore` in a local directory, for a single machine.  One
  directory per checkpoint (``<input_topic>-<partition>``) holding ``arrays.npz``, ``meta.json``
  and ``manifest.json``; written to a temporary directory and renamed into place, so a crash
  mid-write leaves the previous one intact.  :class:`CheckpointStore` is the same layout
  addressed by name (the older API).

A checkpoint that does not match its manifest, or cannot be decoded, is refused with
:class:`~viraltrend.errors.CheckpointError` saying where it is and what to do.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError

__all__ = [
    "Arrays",
    "CheckpointStore",
    "EncodedCheckpoint",
    "Loaded",
    "LocalStore",
    "StateStore",
    "decode_checkpoint",
    "encode_checkpoint",
]

#: Named numpy arrays of numbers (no ``dtype=object``).
Arrays: TypeAlias = dict[str, NDArray[Any]]
#: What a store's ``load`` returns: ``(arrays, state meta, offsets by input partition)``.
Loaded: TypeAlias = tuple[Arrays, dict[str, Any], dict[int, int]]

_FORMAT: Final = 1
_NPZ: Final = "arrays.npz"
_META: Final = "meta.json"
_MANIFEST: Final = "manifest.json"
_BLOB_MAGIC: Final = b"VTCKPT\x00\x01"  # "viraltrend checkpoint", blob layout 1
_LENGTHS: Final = struct.Struct(">QQQ")  # manifest, meta, npz lengths (big-endian uint64)
_DECODE_ERRORS: Final = (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ shared encoding


@dataclass(frozen=True, slots=True)
class EncodedCheckpoint:
    """A checkpoint as bytes: the contents of ``arrays.npz``, ``meta.json`` and ``manifest.json``.

    Attributes
    ----------
    npz : bytes
        The arrays, as written by :func:`numpy.savez`.
    meta : bytes
        UTF-8 JSON: ``{"format", "offsets", "saved_at_ms", "state"}``.
    manifest : bytes
        UTF-8 JSON: ``{"format", "arrays.npz": sha256, "meta.json": sha256}``.
    """

    npz: bytes
    meta: bytes
    manifest: bytes

    @property
    def nbytes(self) -> int:
        """Size of the state proper (``npz`` plus ``meta``), as the stores report it."""
        return len(self.npz) + len(self.meta)

    def to_blob(self) -> bytes:
        """Pack the three parts into one byte string: magic, three lengths, then the parts."""
        lengths = _LENGTHS.pack(len(self.manifest), len(self.meta), len(self.npz))
        return b"".join((_BLOB_MAGIC, lengths, self.manifest, self.meta, self.npz))

    @classmethod
    def from_blob(cls, blob: bytes, *, where: str, remedy: str) -> EncodedCheckpoint:
        """Unpack :meth:`to_blob`'s output (checksums are checked by :func:`decode_checkpoint`).

        Parameters
        ----------
        blob : bytes
            The packed checkpoint.
        where : str
            Where it came from, for error messages (``"changelog topic T partition 3"``).
        remedy : str
            What the user should do if it is refused, appended to error messages.

        Raises
        ------
        CheckpointError
            If the magic bytes or the lengths do not fit.
        """
        head = len(_BLOB_MAGIC) + _LENGTHS.size
        if len(blob) < head or not blob.startswith(_BLOB_MAGIC):
            msg = f"checkpoint in {where} is not a viraltrend checkpoint blob (bad magic bytes); {remedy}"
            raise CheckpointError(msg)
        n_manifest, n_meta, n_npz = _LENGTHS.unpack_from(blob, len(_BLOB_MAGIC))
        if head + n_manifest + n_meta + n_npz != len(blob):
            msg = (
                f"checkpoint in {where} is truncated or padded: its header announces "
                f"{head + n_manifest + n_meta + n_npz} bytes, found {len(blob)}; {remedy}"
            )
            raise CheckpointError(msg)
        view = memoryview(blob)
        manifest = bytes(view[head : head + n_manifest])
        meta = bytes(view[head + n_manifest : head + n_manifest + n_meta])
        npz = bytes(view[head + n_manifest + n_meta :])
        return cls(npz=npz, meta=meta, manifest=manifest)


def encode_checkpoint(arrays: Arrays, meta: dict[str, Any], offsets: dict[int, int]) -> EncodedCheckpoint:
    """Serialise a checkpoint: arrays to npz, meta and offsets to JSON, SHA-256 of both.

    Parameters
    ----------
    arrays : dict of str to ndarray
        The engine's arrays; numbers only.
    meta : dict
        JSON-serialisable state (ids, board, clock, ...), stored under ``"state"``.
    offsets : dict of int to int
        Per input partition, the offset of the next event to read.

    Returns
    -------
    EncodedCheckpoint

    Raises
    ------
    CheckpointError
        If an array has ``dtype=object`` (it could only be stored by pickling).
    """
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
            "offsets": {str(p): int(o) for p, o in offsets.items()},
            "saved_at_ms": int(time.time() * 1000),
            "state": meta,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    manifest = json.dumps({"format": _FORMAT, _NPZ: _sha256(npz), _META: _sha256(meta_bytes)})
    return EncodedCheckpoint(npz=npz, meta=meta_bytes, manifest=manifest.encode("utf-8"))


def decode_checkpoint(encoded: EncodedCheckpoint, *, where: str, remedy: str) -> Loaded:
    """Verify ``encoded`` against its manifest and decode it (never unpickling anything).

    Parameters
    ----------
    encoded : EncodedCheckpoint
        The three parts, as read back.
    where : str
        Where the checkpoint came from, for error messages (a path, or topic and partition).
    remedy : str
        What the user should do if it is refused, appended to error messages.

    Returns
    -------
    tuple
        ``(arrays, state meta, offsets by input partition)``.

    Raises
    ------
    CheckpointError
        If the manifest is unreadable, a checksum does not match, or the data cannot be decoded.
    """
    try:
        manifest = json.loads(encoded.manifest)
        if not isinstance(manifest, dict):
            msg = "manifest.json is not a JSON object"
            raise ValueError(msg)
    except ValueError as exc:
        msg = f"checkpoint {where}: manifest.json is unreadable ({exc}); {remedy}"
        raise CheckpointError(msg) from exc
    if manifest.get("format") != _FORMAT:
        msg = (
            f"checkpoint {where} has format {manifest.get('format')!r}, this version reads format "
            f"{_FORMAT}; {remedy}"
        )
        raise CheckpointError(msg)
    for fname, data in ((_NPZ, encoded.npz), (_META, encoded.meta)):
        if manifest.get(fname) != _sha256(data):
            msg = (
                f"checkpoint {where}: {fname} does not match its SHA-256 in manifest.json (corrupt or "
                f"tampered); refusing to load it. {remedy}"
            )
            raise CheckpointError(msg)
    try:
        with np.load(io.BytesIO(encoded.npz), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(encoded.meta)
        state = meta["state"]
        offsets = {int(p): int(o) for p, o in meta["offsets"].items()}
        if not isinstance(state, dict):
            msg = f"'state' is a {type(state).__name__}, not an object"
            raise TypeError(msg)
    except _DECODE_ERRORS as exc:
        msg = f"checkpoint {where} cannot be decoded ({type(exc).__name__}: {exc}); {remedy}"
        raise CheckpointError(msg) from exc
    return arrays, state, offsets


# --------------------------------------------------------------------------------- the protocol


@runtime_checkable
class StateStore(Protocol):
    """Where the service keeps one checkpoint per input partition.

    Implementations: :class:`LocalStore` (a directory) and
    :class:`viraltrend.stream.changelog.ChangelogStore` (a compacted Kafka topic).
    """

    @property
    def describe(self) -> str:
        """Where checkpoints go, for logs: ``"directory X"``, ``"changelog topic T"``."""
        ...

    def save(
        self,
        partition: int,
        arrays: Arrays,
        meta: dict[str, Any],
        offsets: dict[int, int],
        *,
        epoch: int = 0,
    ) -> int:
        """Store the checkpoint of input ``partition`` durably, replacing the previous one.

        When this returns, :meth:`load` (by this or any other process) returns this checkpoint;
        a crash during the call leaves the previous one loadable.  Returns the bytes written.
        ``epoch``: the consumer-group generation in which the caller got the partition; a store
        shared by several workers ignores checkpoints of a superseded epoch (fencing).
        """
        ...

    def load(self, partition: int) -> Loaded | None:
        """Return the latest checkpoint of input ``partition``, or None if it has none.

        Raises :class:`~viraltrend.errors.CheckpointError` if it is corrupt or undecodable.
        """
        ...

    def close(self) -> None:
        """Release clients and files; idempotent."""
        ...


# ---------------------------------------------------------------------------- local directories


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (new files, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_dir(final: Path, encoded: EncodedCheckpoint) -> None:
    """Write ``encoded`` as three files in directory ``final``, atomically by rename.

    At every step a complete checkpoint is on disk, in ``final`` or in ``final.old`` (which
    :func:`_load_dir` reads when ``final`` is missing): ``.old`` is deleted only while ``final``
    holds a complete checkpoint, and every rename is made durable (fsync of the directory).
    """
    parent = final.parent
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write(tmp / _NPZ, encoded.npz)
    _write(tmp / _META, encoded.meta)
    _write(tmp / _MANIFEST, encoded.manifest)
    _fsync_dir(tmp)
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.exists():  # a crash between the renames below: .old is the latest
        old.rename(final)
        _fsync_dir(parent)
    shutil.rmtree(old, ignore_errors=True)  # final (if any) is complete: .old is a spare copy
    if final.exists():
        final.rename(old)
        _fsync_dir(parent)
    tmp.rename(final)
    _fsync_dir(parent)
    shutil.rmtree(old, ignore_errors=True)


def _load_dir(path: Path) -> tuple[Loaded, int] | None:
    """Read, verify and decode the checkpoint directory ``path``; also return its size in bytes."""
    if not path.exists():
        old = path.with_name(path.name + ".old")  # a crash between the two renames of _save_dir()
        if not old.exists():
            return None
        path = old
    remedy = "Move the directory away to start that partition fresh"
    try:
        encoded = EncodedCheckpoint(
            npz=(path / _NPZ).read_bytes(),
            meta=(path / _META).read_bytes(),
            manifest=(path / _MANIFEST).read_bytes(),
        )
    except OSError as exc:
        msg = f"checkpoint {path} is unreadable ({exc}); {remedy.lower()}"
        raise CheckpointError(msg) from exc
    return decode_checkpoint(encoded, where=str(path), remedy=remedy), encoded.nbytes


class LocalStore:
    """A :class:`StateStore` in a local directory: one sub-directory per input partition.

    Parameters
    ----------
    directory : str or Path
        Created if missing.  Checkpoint of partition ``p`` goes to ``<directory>/<input_topic>-<p>``
        (the layout of :class:`CheckpointStore`, so existing checkpoints load).
    input_topic : str
        The topic whose partitions the checkpoints belong to.

    Examples
    --------
    >>> import tempfile
    >>> store = LocalStore(tempfile.mkdtemp(), "engagement-events")
    >>> store.save(0, {"x": np.arange(3)}, {"clock_ms": 5}, {0: 42}) > 0
    True
    >>> arrays, meta, offsets = store.load(0)
    >>> arrays["x"].tolist(), meta, offsets
    ([0, 1, 2], {'clock_ms': 5}, {0: 42})
    >>> store.load(1) is None
    True
    """

    def __init__(self, directory: str | Path, input_topic: str) -> None:
        self.directory = Path(directory)
        self.input_topic = input_topic
        self.directory.mkdir(parents=True, exist_ok=True)
        #: Bytes read by the last :meth:`load` (0 when it found nothing).
        self.last_load_bytes = 0

    @property
    def describe(self) -> str:
        """``"directory <path>"``, for logs."""
        return f"directory {self.directory}"

    def path(self, partition: int) -> Path:
        """The directory holding the checkpoint of input ``partition``."""
        return self.directory / _safe_name(f"{self.input_topic}-{partition}")

    def save(
        self,
        partition: int,
        arrays: Arrays,
        meta: dict[str, Any],
        offsets: dict[int, int],
        *,
        epoch: int = 0,  # noqa: ARG002 - one machine, one worker: nothing to fence
    ) -> int:
        """Write the checkpoint of ``partition`` atomically; return its size in bytes."""
        encoded = encode_checkpoint(arrays, meta, offsets)
        _save_dir(self.path(partition), encoded)
        return encoded.nbytes

    def load(self, partition: int) -> Loaded | None:
        """Return ``(arrays, state meta, offsets)`` of ``partition``, or None if it has none.

        Raises
        ------
        CheckpointError
            If a file is missing, does not match the manifest's checksum, or cannot be decoded.
        """
        self.last_load_bytes = 0
        found = _load_dir(self.path(partition))
        if found is None:
            return None
        loaded, self.last_load_bytes = found
        return loaded

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"LocalStore({str(self.directory)!r}, {self.input_topic!r})"


class CheckpointStore:
    """Named checkpoints under ``directory`` (the older, name-addressed API of :class:`LocalStore`).

    ``CheckpointStore(d).save(f"{topic}-{p}", ...)`` writes what ``LocalStore(d, topic).save(p, ...)``
    writes; prefer :class:`LocalStore`, which implements :class:`StateStore`.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, arrays: Arrays, meta: dict[str, Any], offsets: dict[int, int]) -> int:
        """Write checkpoint ``name`` atomically; returns its size in bytes."""
        encoded = encode_checkpoint(arrays, meta, offsets)
        _save_dir(self.directory / _safe_name(name), encoded)
        return encoded.nbytes

    def load(self, name: str) -> Loaded | None:
        """Return (arrays, state meta, offsets) of checkpoint ``name``, or None if there is none.

        Raises
        ------
        CheckpointError
            If a file is missing or does not match the manifest's checksum.
        """
        found = _load_dir(self.directory / _safe_name(name))
        return None if found is None else found[0]
