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
import mmap
import os
import secrets
import shutil
import struct
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError
from viraltrend.kernels import sparse
from viraltrend.stream.incremental import DeltaTracker, apply_delta

__all__ = [
    "Arrays",
    "ChainPolicy",
    "Chains",
    "CheckpointStore",
    "EncodedCheckpoint",
    "Fence",
    "Loaded",
    "LocalStore",
    "SavePlan",
    "StateStore",
    "apply_chain",
    "chain_offsets",
    "decode_checkpoint",
    "encode_checkpoint",
]

#: Bytes as read or written: a checkpoint's parts are views, not copies, where they can be.
Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap
#: Called by a save right before the one write that makes it visible; raises to abort the save.
Fence: TypeAlias = Callable[[], None]
#: Named numpy arrays of numbers (no ``dtype=object``).
Arrays: TypeAlias = dict[str, NDArray[Any]]
#: What a store's ``load`` returns: ``(arrays, state meta, offsets by input partition)``.
Loaded: TypeAlias = tuple[Arrays, dict[str, Any], dict[int, int]]

_FORMAT: Final = 3  # arrays.bin, arrays raw or sparse; format 2 (raw only) and 1 (arrays.npz) still read
_FORMAT_RAW: Final = 2
_FORMAT_NPZ: Final = 1
_NPZ: Final = "arrays.npz"
_ARRAYS: Final = "arrays.bin"
_ARRAYS_MAGIC: Final = b"VTARR\x00\x03\x00"
_ARRAYS_MAGIC_2: Final = b"VTARR\x00\x02\x00"
_SPARSE_MIN_BYTES: Final = 4096  # smaller arrays are stored raw
_SPARSE_MAX_SHARE: Final = 0.75  # sparse only if it keeps at most this share of the bytes
_DECODE_THREADED_BYTES: Final = 64 * 1024 * 1024  # sparse arrays decoded on two threads past this
_U64: Final = struct.Struct("<Q")
_ALIGN: Final = 64
_REMEDY: Final = "Move the directory away to start that partition fresh"
_CHAIN_KEY: Final = "__chain__"  # in a checkpoint's state: {"id": base id, "seq": 0 base, 1.. delta}
_SHA_PART: Final = 32 * 1024 * 1024  # the manifest holds the SHA-256 of each part: checked two at a time
_META: Final = "meta.json"
_MANIFEST: Final = "manifest.json"
_BLOB_MAGIC: Final = b"VTCKPT\x00\x01"  # "viraltrend checkpoint", blob layout 1
_LENGTHS: Final = struct.Struct(">QQQ")  # manifest, meta, npz lengths (big-endian uint64)
_DECODE_ERRORS: Final = (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile)


def _sha256(data: Buffer) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ shared encoding


def _pad(n: int) -> int:
    return -n % _ALIGN


def _sparse_plan(arr: NDArray[Any]) -> tuple[int, int] | None:
    """``(fill, values)`` if ``arr`` is stored sparse (:mod:`viraltrend.kernels.sparse`), else None.

    Sparse when it saves at least a quarter of the bytes: most of a checkpoint's bytes are the
    unused capacity of tables and counter cells never touched.
    """
    if arr.nbytes < _SPARSE_MIN_BYTES:
        return None
    raw = sparse.raw_view(arr)
    if raw is None:
        return None
    fill = sparse.choose_fill(raw)
    sample = sparse.sample(raw)
    if np.count_nonzero(sample != sample.dtype.type(fill)) > _SPARSE_MAX_SHARE * sample.shape[0]:
        return None  # dense: not worth a counting pass
    n_values = sparse.count_values(raw, fill)
    if sparse.encoded_nbytes(raw.shape[0], n_values, arr.dtype.itemsize) > _SPARSE_MAX_SHARE * arr.nbytes:
        return None
    return fill, n_values


def _pack_arrays(arrays: Arrays, *, sparse_ok: bool = True) -> tuple[list[Buffer], int]:
    """``arrays.bin``: magic, header length, JSON header of the entries, then their bytes; its format.

    Format 3 when an array is stored sparse (only if ``sparse_ok``), else format 2 (every array
    raw), which viraltrend before format 3 also reads.

    An entry is ``[name, dtype, shape, offset]`` for an array stored raw, and ``[name, dtype,
    shape, offset, fill, values]`` for one stored sparse (its mask at ``offset``, then, at the
    next multiple of 64, its ``values`` elements that differ from ``fill``).  Each part starts
    at a multiple of 64 bytes, so :func:`_unpack_arrays` returns aligned views of raw arrays
    into the buffer it reads, copying nothing.
    """
    entries: list[list[Any]] = []
    bodies: list[list[Buffer]] = []
    offset = 0
    for key, arr in arrays.items():
        plan = _sparse_plan(arr) if sparse_ok else None
        if plan is None:
            data = np.ascontiguousarray(arr)
            entries.append([key, arr.dtype.str, list(arr.shape), offset])
            body: list[Buffer] = [data.reshape(-1).view(np.uint8).data if data.size else b""]
        else:
            raw = sparse.raw_view(arr)
            assert raw is not None
            mask, values = sparse.encode(raw, plan[0], plan[1])
            entries.append([key, arr.dtype.str, list(arr.shape), offset, plan[0], plan[1]])
            body = [mask.data, bytes(_pad(mask.nbytes)), values.view(np.uint8).data]
        size = sum(len(memoryview(b).cast("B")) for b in body)
        body.append(bytes(_pad(size)))
        bodies.append(body)
        offset += size + _pad(size)
    fmt = _FORMAT if any(len(e) == 6 for e in entries) else _FORMAT_RAW
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    head = (_ARRAYS_MAGIC if fmt == _FORMAT else _ARRAYS_MAGIC_2) + _U64.pack(len(header)) + header
    parts: list[Buffer] = [head + bytes(_pad(len(head)))]
    for body in bodies:
        parts.extend(body)
    return parts, fmt


def _view(view: memoryview, key: str, dtype: np.dtype[Any], count: int, start: int) -> NDArray[Any]:
    if start + count * dtype.itemsize > len(view):
        msg = f"array {key!r} runs past the end of arrays.bin"
        raise ValueError(msg)
    return np.frombuffer(view, dtype, count, start)


def _unpack_arrays(buf: Buffer) -> Arrays:
    """The arrays in ``buf``; ValueError if it is malformed.

    Raw arrays are views of ``buf`` (writable when ``buf`` is); sparse ones are decoded into new
    memory.  Reads format 2 (raw entries only) and format 3.
    """
    view = memoryview(buf)
    magic = bytes(view[: len(_ARRAYS_MAGIC)])
    if magic not in (_ARRAYS_MAGIC, _ARRAYS_MAGIC_2):
        msg = "arrays.bin does not start with its magic bytes"
        raise ValueError(msg)
    (n,) = _U64.unpack_from(view, len(_ARRAYS_MAGIC))
    start = len(_ARRAYS_MAGIC) + _U64.size
    entries = json.loads(bytes(view[start : start + n]))
    base = start + n + _pad(start + n)
    out: Arrays = {}
    jobs: list[tuple[NDArray[np.uint8], NDArray[Any], int, NDArray[Any]]] = []  # sparse ones, decoded last
    for entry in entries:
        if len(entry) not in ((4, 6) if magic == _ARRAYS_MAGIC else (4,)):
            msg = f"an entry of arrays.bin has {len(entry)} fields"
            raise ValueError(msg)
        key, dtype_str, shape, offset = entry[:4]
        dtype = np.dtype(dtype_str)
        if dtype.hasobject:
            msg = f"array {key!r} has dtype object"
            raise ValueError(msg)
        count = int(np.prod(shape, dtype=np.int64))
        if len(entry) == 4:
            out[str(key)] = _view(view, key, dtype, count, base + offset).reshape(shape)
            continue
        fill, n_values = int(entry[4]), int(entry[5])
        raw_type = sparse.RAW_TYPES.get(dtype.itemsize)
        if raw_type is None or not 0 <= n_values <= count:
            msg = f"array {key!r} of dtype {dtype} cannot be sparse with {n_values} values"
            raise ValueError(msg)
        n_mask = (count + 7) // 8
        mask = _view(view, key, np.dtype(np.uint8), n_mask, base + offset)
        values = _view(view, key, np.dtype(raw_type), n_values, base + offset + n_mask + _pad(n_mask))
        arr = np.empty(shape, dtype)
        jobs.append((mask, values, fill, arr.reshape(-1).view(raw_type)))
        out[str(key)] = arr
    if sum(job[3].nbytes for job in jobs) < _DECODE_THREADED_BYTES:
        for job in jobs:
            sparse.decode(*job)
    else:  # the kernel frees the GIL: two arrays at a time (the largest first)
        jobs.sort(key=lambda job: -job[3].nbytes)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda job: sparse.decode(*job), jobs))
    return out


def _part_shas(data: Buffer) -> list[str]:
    """SHA-256 of each :data:`_SHA_PART` bytes of ``data``, two at a time (hashlib frees the GIL)."""
    view = memoryview(data).cast("B")
    parts = [view[i : i + _SHA_PART] for i in range(0, len(view), _SHA_PART)] or [view]
    if len(parts) == 1:
        return [_sha256(parts[0])]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(_sha256, parts))


@dataclass(frozen=True, slots=True)
class EncodedCheckpoint:
    """A checkpoint as bytes: the contents of ``arrays.bin``, ``meta.json`` and ``manifest.json``.

    Attributes
    ----------
    data : bytes-like
        The arrays (:func:`_pack_arrays`); in a format-1 checkpoint, ``arrays.npz``.
    meta : bytes
        UTF-8 JSON: ``{"format", "offsets", "saved_at_ms", "state"}``.
    manifest : bytes
        UTF-8 JSON: ``{"format", "arrays.bin": [sha256 of each 32 MiB], "meta.json": sha256}``.
    """

    data: Buffer
    meta: bytes
    manifest: bytes

    @property
    def nbytes(self) -> int:
        """Size of the state proper (``data`` plus ``meta``), as the stores report it."""
        return len(self.data) + len(self.meta)

    def to_blob(self) -> bytes:
        """Pack the three parts into one byte string: magic, three lengths, then the parts."""
        lengths = _LENGTHS.pack(len(self.manifest), len(self.meta), len(self.data))
        return b"".join((_BLOB_MAGIC, lengths, self.manifest, self.meta, self.data))

    @classmethod
    def from_blob(cls, blob: Buffer, *, where: str, remedy: str) -> EncodedCheckpoint:
        """Unpack :meth:`to_blob`'s output (checksums are checked by :func:`decode_checkpoint`).

        The parts are views of ``blob`` (no copy).

        Parameters
        ----------
        blob : bytes-like
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
        view = memoryview(blob)
        head = len(_BLOB_MAGIC) + _LENGTHS.size
        if len(view) < head or bytes(view[: len(_BLOB_MAGIC)]) != _BLOB_MAGIC:
            msg = f"checkpoint in {where} is not a viraltrend checkpoint blob (bad magic bytes); {remedy}"
            raise CheckpointError(msg)
        n_manifest, n_meta, n_data = _LENGTHS.unpack_from(view, len(_BLOB_MAGIC))
        if head + n_manifest + n_meta + n_data != len(view):
            msg = (
                f"checkpoint in {where} is truncated or padded: its header announces "
                f"{head + n_manifest + n_meta + n_data} bytes, found {len(view)}; {remedy}"
            )
            raise CheckpointError(msg)
        manifest = bytes(view[head : head + n_manifest])
        meta = bytes(view[head + n_manifest : head + n_manifest + n_meta])
        return cls(data=view[head + n_manifest + n_meta :], meta=meta, manifest=manifest)


def _check_plain(arrays: Arrays) -> None:
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            msg = f"array {key!r} has dtype object; checkpoints hold plain numbers only"
            raise CheckpointError(msg)


def encode_checkpoint(
    arrays: Arrays, meta: dict[str, Any], offsets: dict[int, int], *, sparse: bool = True
) -> EncodedCheckpoint:
    """Serialise a checkpoint: arrays raw or sparse, meta and offsets to JSON, SHA-256 of both.

    Parameters
    ----------
    arrays : dict of str to ndarray
        The engine's arrays; numbers only.
    meta : dict
        JSON-serialisable state (ids, board, clock, ...), stored under ``"state"``.
    offsets : dict of int to int
        Per input partition, the offset of the next event to read.
    sparse : bool
        Store the arrays that are mostly one value sparse (format 3: fewer bytes to move, but
        decoded into new memory on load).  False: every array raw (format 2), so a local load
        maps them without reading them.

    Returns
    -------
    EncodedCheckpoint

    Raises
    ------
    CheckpointError
        If an array has ``dtype=object`` (it could only be stored by pickling).
    """
    _check_plain(arrays)
    parts, fmt = _pack_arrays(arrays, sparse_ok=sparse)
    data = b"".join(parts)
    meta_bytes = json.dumps(
        {
            "format": fmt,
            "offsets": {str(p): int(o) for p, o in offsets.items()},
            "saved_at_ms": int(time.time() * 1000),
            "state": meta,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    manifest = json.dumps({"format": fmt, _ARRAYS: _part_shas(data), _META: _sha256(meta_bytes)})
    return EncodedCheckpoint(data=data, meta=meta_bytes, manifest=manifest.encode("utf-8"))


def decode_checkpoint(
    encoded: EncodedCheckpoint, *, where: str, remedy: str, verified: bool = False
) -> Loaded:
    """Verify ``encoded`` against its manifest and decode it (never unpickling anything).

    The arrays stored raw are views of ``encoded.data`` (writable when it is a writable buffer),
    the sparse ones new arrays.  Reads formats 3 and 2 (``arrays.bin``) and 1 (``arrays.npz``).

    Parameters
    ----------
    encoded : EncodedCheckpoint
        The three parts, as read back.
    where : str
        Where the checkpoint came from, for error messages (a path, or topic and partition).
    remedy : str
        What the user should do if it is refused, appended to error messages.
    verified : bool
        True when the caller has already checked every byte of ``encoded`` against checksums
        written with it (the changelog's SHA-256 of each chunk, from its header): the manifest's
        own checksums are then not computed again.  The manifest's format is checked either way.

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
    fmt = manifest.get("format")
    if fmt not in (_FORMAT, _FORMAT_RAW, _FORMAT_NPZ):
        msg = (
            f"checkpoint {where} has format {fmt!r}, this version reads formats 1 to {_FORMAT} (a "
            f"checkpoint written by a newer viraltrend?); {remedy}"
        )
        raise CheckpointError(msg)
    data_name = _NPZ if fmt == _FORMAT_NPZ else _ARRAYS
    if not verified:
        data_ok = (
            manifest.get(_NPZ) == _sha256(encoded.data)
            if fmt == _FORMAT_NPZ
            else manifest.get(_ARRAYS) == _part_shas(encoded.data)
        )
        for fname, ok in ((data_name, data_ok), (_META, manifest.get(_META) == _sha256(encoded.meta))):
            if not ok:
                msg = (
                    f"checkpoint {where}: {fname} does not match its SHA-256 in manifest.json (corrupt or "
                    f"tampered); refusing to load it. {remedy}"
                )
                raise CheckpointError(msg)
    try:
        if fmt != _FORMAT_NPZ:
            arrays = _unpack_arrays(encoded.data)
        else:
            with np.load(io.BytesIO(encoded.data), allow_pickle=False) as z:
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
        fence: Fence | None = None,
    ) -> int:
        """Store the checkpoint of input ``partition`` durably, replacing the previous one.

        When this returns, :meth:`load` (by this or any other process) returns this checkpoint;
        a crash during the call leaves the previous one loadable.  Returns the bytes written.
        ``epoch``: the consumer-group generation in which the caller got the partition; a store
        shared by several workers ignores checkpoints of a superseded epoch (fencing).
        ``fence``: called right before the one write that makes this checkpoint visible (after
        everything else is written); whatever it raises aborts the save, the previous checkpoint
        staying the latest one (the writer checks there that the worker still owns the partition).
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


def _write(path: Path, data: Buffer) -> None:
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


def _save_dir(final: Path, encoded: EncodedCheckpoint, fence: Fence | None = None) -> None:
    """Write ``encoded`` as three files in directory ``final``, atomically by rename.

    At every step a complete checkpoint is on disk, in ``final`` or in ``final.old`` (which
    :func:`_load_dir` reads when ``final`` is missing): ``.old`` is deleted only while ``final``
    holds a complete checkpoint, and every rename is made durable (fsync of the directory).
    """
    parent = final.parent
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write(tmp / _ARRAYS, encoded.data)
    _write(tmp / _META, encoded.meta)
    _write(tmp / _MANIFEST, encoded.manifest)
    _fsync_dir(tmp)
    if fence is not None:  # the renames below make it visible
        fence()
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


def _map_private(path: Path) -> Buffer:
    """The bytes of ``path`` as a private copy-on-write mapping: writable, and read without a copy.

    The arrays decoded from it are views of the page cache until written (a delta written onto
    them copies only the pages it touches).  Stores never rewrite a checkpoint file in place (a
    new one is renamed over it), so the mapping stays valid while the arrays live.
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return bytearray()
        return mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)


def _load_dir(path: Path, remedy: str = _REMEDY) -> tuple[Loaded, int] | None:
    """Read, verify and decode the checkpoint directory ``path``; also return its size in bytes."""
    if not path.exists():
        old = path.with_name(path.name + ".old")  # a crash between the two renames of _save_dir()
        if not old.exists():
            return None
        path = old
    try:
        data_file = path / _ARRAYS if (path / _ARRAYS).exists() else path / _NPZ  # format 1: npz
        encoded = EncodedCheckpoint(
            data=_map_private(data_file),
            meta=(path / _META).read_bytes(),
            manifest=(path / _MANIFEST).read_bytes(),
        )
    except OSError as exc:
        msg = f"checkpoint {path} is unreadable ({exc}); {remedy[0].lower()}{remedy[1:]}"
        raise CheckpointError(msg) from exc
    return decode_checkpoint(encoded, where=str(path), remedy=remedy), encoded.nbytes


# ------------------------------------------------------------------------------ chains of deltas


@dataclass(frozen=True, slots=True)
class ChainPolicy:
    """When a store writes a delta and when a new full checkpoint (compaction).

    Attributes
    ----------
    incremental : bool
        False: every checkpoint is full (the format before deltas).
    max_deltas : int
        Deltas on one base before the next checkpoint is full again.
    max_chain_ratio : float
        A full checkpoint as soon as the deltas of the chain add up to more than this fraction of
        the base's bytes (a restore then reads at most ``1 + ratio`` times a full checkpoint).
        Both are counted as the arrays' bytes in memory, before the sparse encoding of a save.
    """

    incremental: bool = True
    max_deltas: int = 30
    max_chain_ratio: float = 0.5


@dataclass(slots=True)
class _Chain:
    chain_id: str
    seq: int  # deltas written on the base so far
    base_bytes: int
    chain_bytes: int
    tracker: DeltaTracker


@dataclass(frozen=True, slots=True)
class SavePlan:
    """What one save writes: a base (``seq == 0``) or delta ``seq`` of chain ``chain_id``."""

    arrays: Arrays
    meta: dict[str, Any]
    chain_id: str
    seq: int
    changed_blocks: int = 0
    total_blocks: int = 0
    state_bytes: int = 0  #: bytes of ``arrays`` in memory (the measure of the chain policy)


class Chains:
    """The chain of each partition as its store last wrote it; decides base or delta per save."""

    def __init__(self, policy: ChainPolicy | None = None) -> None:
        self.policy = policy or ChainPolicy()
        self._chains: dict[int, _Chain] = {}

    def plan(self, partition: int, arrays: Arrays, meta: dict[str, Any]) -> SavePlan:
        """The next save of ``partition``: a delta on its chain, or a new base.  Call :meth:`done` after."""
        _check_plain(arrays)
        chain = self._chains.get(partition)
        pol = self.policy
        if pol.incremental and chain is not None and chain.seq < pol.max_deltas:
            delta = chain.tracker.delta(arrays, meta)
            if chain.chain_bytes + delta.nbytes <= pol.max_chain_ratio * chain.base_bytes:
                chain.seq += 1
                state = {**delta.meta, _CHAIN_KEY: {"id": chain.chain_id, "seq": chain.seq}}
                return SavePlan(
                    delta.arrays,
                    state,
                    chain.chain_id,
                    chain.seq,
                    delta.changed_blocks,
                    delta.total_blocks,
                    delta.nbytes,
                )
        self._chains.pop(partition, None)
        chain_id = secrets.token_hex(8)
        tracker = DeltaTracker()
        if pol.incremental:
            tracker.reset(arrays, meta)
        self._chains[partition] = _Chain(chain_id, 0, 0, 0, tracker)
        state_bytes = sum(int(a.nbytes) for a in arrays.values())
        return SavePlan(
            arrays, {**meta, _CHAIN_KEY: {"id": chain_id, "seq": 0}}, chain_id, 0, state_bytes=state_bytes
        )

    def done(self, partition: int, plan: SavePlan) -> None:
        """``plan`` was written durably: its bytes count towards its chain."""
        chain = self._chains.get(partition)
        if chain is None or chain.chain_id != plan.chain_id:
            return
        if plan.seq == 0:
            chain.base_bytes = plan.state_bytes
        else:
            chain.chain_bytes += plan.state_bytes

    def forget(self, partition: int) -> None:
        """The next save of ``partition`` is a base (after a failed save, or a load)."""
        self._chains.pop(partition, None)


def _split_chain(state: dict[str, Any], where: str, remedy: str) -> tuple[str | None, int]:
    """Remove the chain stamp from a decoded state; ``(chain id, seq)``, ``(None, 0)`` if unstamped."""
    stamp = state.pop(_CHAIN_KEY, None)
    if stamp is None:
        return None, 0
    try:
        return str(stamp["id"]), int(stamp["seq"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"checkpoint {where} has an unreadable chain stamp {stamp!r}; {remedy}"
        raise CheckpointError(msg) from exc


def apply_chain(base: Loaded, deltas: list[tuple[Loaded, str]], *, remedy: str) -> Loaded:
    """Replay ``deltas`` (each with where it came from) in order onto ``base``; the latest offsets win."""
    arrays, state, offsets = base
    for (d_arrays, d_state, d_offsets), where in deltas:
        try:
            apply_delta(arrays, state, d_arrays, d_state)
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"delta checkpoint {where} does not fit the checkpoint before it ({exc}); {remedy}"
            raise CheckpointError(msg) from exc
        offsets = d_offsets
    return arrays, state, offsets


def _delta_path(base: Path, seq: int) -> Path:
    return base.with_name(f"{base.name}.delta-{seq:06d}")


def _load_chain(base: Path) -> tuple[Loaded, int, int] | None:
    """Load the checkpoint directory ``base`` and apply its deltas; ``(loaded, bytes, deltas)``."""
    found = _load_dir(base)
    if found is None:
        return None
    loaded, size = found
    chain_id, _ = _split_chain(loaded[1], str(base), _REMEDY)
    deltas: list[tuple[Loaded, str]] = []
    seq = 1
    while chain_id is not None:
        path = _delta_path(base, seq)
        remedy = (
            f"Move {path.name} and every later delta of {base.name} away to restore the state as "
            "of the checkpoint before it (the input is re-read from there), or move all of "
            f"{base.name}* away to start that partition fresh"
        )
        # Missing, or left from an older base (a crash before or while its deltas were deleted,
        # which can leave a delta directory holding only some of its files): the chain ends here.
        # The stamp is read from the JSON alone so such a leftover is never read as a checkpoint.
        stamp = _read_stamp(path)
        if stamp != (chain_id, seq):
            later = _read_stamp(_delta_path(base, seq + 1))
            if stamp is None and path.exists() and later == (chain_id, seq + 1):
                msg = (  # a delta of this very chain, damaged
                    f"checkpoint {path} has no readable {_META}, yet later deltas of its chain "
                    f"follow it; {remedy}"
                )
                raise CheckpointError(msg)
            break
        got = _load_dir(path, remedy)
        if got is None:
            break
        d_chain, d_seq = _split_chain(got[0][1], str(path), remedy)
        if d_chain != chain_id or d_seq != seq:
            break
        deltas.append((got[0], str(path)))
        size += got[1]
        seq += 1
    return apply_chain(loaded, deltas, remedy=_REMEDY), size, len(deltas)


def _read_meta(path: Path) -> tuple[str | None, int, dict[int, int]] | None:
    """``(chain id, seq, offsets)`` from the ``meta.json`` in ``path`` alone; None if unreadable."""
    try:
        meta = json.loads((path / _META).read_bytes())
        stamp = meta["state"].get(_CHAIN_KEY) or {}
        offsets = {int(p): int(o) for p, o in meta["offsets"].items()}
        return stamp.get("id"), int(stamp.get("seq", 0)), offsets
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _read_stamp(path: Path) -> tuple[str | None, int] | None:
    """The chain stamp ``(id, seq)`` of the checkpoint directory ``path``; None if unreadable."""
    got = _read_meta(path)
    return None if got is None else got[:2]


def chain_offsets(base: Path) -> dict[int, int] | None:
    """The offsets of the latest checkpoint in directory ``base`` and its deltas, from the JSON only.

    Cheap (no arrays read, no checksum checked): for monitoring and tests.  None if there is none.
    """
    got = _read_meta(base)
    if got is None:
        return None
    chain_id, _, offsets = got
    seq = 1
    while chain_id is not None:
        delta = _read_meta(_delta_path(base, seq))
        if delta is None or delta[0] != chain_id or delta[1] != seq:
            break
        offsets = delta[2]
        seq += 1
    return offsets


def _drop_deltas(base: Path) -> None:
    for stale in base.parent.glob(f"{base.name}.delta-*"):  # the old chain's deltas
        shutil.rmtree(stale, ignore_errors=True)


class LocalStore:
    """A :class:`StateStore` in a local directory: one sub-directory per input partition.

    Parameters
    ----------
    directory : str or Path
        Created if missing.  Checkpoint of partition ``p`` goes to ``<directory>/<input_topic>-<p>``
        (the layout of :class:`CheckpointStore`, so existing checkpoints load), and the deltas on
        it to ``<input_topic>-<p>.delta-<seq>`` (``seq`` = 1, 2, ...), each stamped with the id
        of the base it applies to.
    input_topic : str
        The topic whose partitions the checkpoints belong to.
    policy : ChainPolicy, optional
        When to write a delta and when a full checkpoint (compaction).
    sparse : bool
        Store the arrays that are mostly one value sparse (format 3).  Off by default: a local
        load maps a raw ``arrays.bin`` copy-on-write and reads a page only when it is used,
        faster than decoding every array into new memory (a sparse file is a third of the bytes
        to write and keep, though).

    A save writes either a full checkpoint (a new base, then the deltas of the old one are
    deleted) or the next delta; each is written to a temporary directory and renamed into place.
    A load reads the base and applies its deltas in order, stopping at the first one missing or
    stamped with another base (left by a crash between a new base and the deletion of the old
    deltas).  Every part is checked against its SHA-256 manifest.

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

    def __init__(
        self,
        directory: str | Path,
        input_topic: str,
        *,
        policy: ChainPolicy | None = None,
        sparse: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.sparse = sparse
        self.input_topic = input_topic
        self.directory.mkdir(parents=True, exist_ok=True)
        self.chains = Chains(policy)
        #: Bytes read by the last :meth:`load` (0 when it found nothing).
        self.last_load_bytes = 0
        #: Deltas applied by the last :meth:`load`.
        self.last_load_deltas = 0
        #: The last save: ``(seq, bytes)``, seq 0 for a full checkpoint.
        self.last_save: tuple[int, int] = (0, 0)

    @property
    def describe(self) -> str:
        """``"directory <path>"``, for logs."""
        return f"directory {self.directory}"

    def path(self, partition: int) -> Path:
        """The directory holding the (base) checkpoint of input ``partition``."""
        return self.directory / _safe_name(f"{self.input_topic}-{partition}")

    def save(
        self,
        partition: int,
        arrays: Arrays,
        meta: dict[str, Any],
        offsets: dict[int, int],
        *,
        epoch: int = 0,  # noqa: ARG002 - one machine, one worker: nothing to fence
        fence: Fence | None = None,
    ) -> int:
        """Write the next checkpoint of ``partition`` (a delta or a full one) atomically; return its bytes."""
        plan = self.chains.plan(partition, arrays, meta)
        base = self.path(partition)
        try:
            encoded = encode_checkpoint(plan.arrays, plan.meta, offsets, sparse=self.sparse)
            if plan.seq == 0:
                _save_dir(base, encoded, fence)
                _drop_deltas(base)
            else:
                _save_dir(_delta_path(base, plan.seq), encoded, fence)
        except BaseException:
            self.chains.forget(partition)
            raise
        self.chains.done(partition, plan)
        self.last_save = (plan.seq, encoded.nbytes)
        return encoded.nbytes

    def load(self, partition: int) -> Loaded | None:
        """Return ``(arrays, state meta, offsets)`` of ``partition``, or None if it has none.

        Raises
        ------
        CheckpointError
            If a file is missing, does not match the manifest's checksum, or cannot be decoded.
        """
        self.last_load_bytes = self.last_load_deltas = 0
        self.chains.forget(partition)  # the next save starts a new chain
        found = _load_chain(self.path(partition))
        if found is None:
            return None
        loaded, self.last_load_bytes, self.last_load_deltas = found
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
        encoded = encode_checkpoint(arrays, meta, offsets, sparse=False)
        _save_dir(self.directory / _safe_name(name), encoded)
        _drop_deltas(self.directory / _safe_name(name))
        return encoded.nbytes

    def load(self, name: str) -> Loaded | None:
        """Return (arrays, state meta, offsets) of checkpoint ``name``, or None if there is none.

        Raises
        ------
        CheckpointError
            If a file is missing or does not match the manifest's checksum.
        """
        found = _load_chain(self.directory / _safe_name(name))
        return None if found is None else found[0]
