"""Incremental checkpoints: what changed in a state since the last checkpoint, as plain data.

A chain is a full checkpoint (the *base*) followed by *deltas*.  :class:`DeltaTracker` keeps, per
array of the last checkpoint written, a 64-bit hash of every block of :data:`BLOCK_BYTES` bytes
(in C order, so a block is part of a row or a few rows), and of every top-level key of the JSON
state.  :meth:`DeltaTracker.delta` compares a new state with them and returns a delta holding
only

- for an array of the same dtype and shape: the indices of the blocks whose hash changed and
  those blocks' bytes (``<name>@idx`` uint32/int64, ``<name>@data`` uint64 words);
- an array that grew or shrank along its first axis: its new shape, and the blocks that differ
  (the bytes before the end stay in place in C order);
- an array that is new or changed shape or dtype, but shares most blocks with an array of the last
  checkpoint (a generation of tables that rotated: ``current`` became ``previous``): that array's
  name and the blocks that differ from it;
- another array that is new, changed shape or dtype, or cannot be cut into 8-byte words: whole;
- the names of arrays that are gone; the JSON keys that changed (whole) and those gone.

So a delta's bytes follow the rows that changed, whatever the state's size.  :func:`apply_delta`
replays a delta onto the arrays and state of the checkpoint before it (in place where it can).
The change test is exact up to 64-bit hash collisions of one block against its own previous
contents (about ``2**-64`` per changed block).  Nothing here knows the engine: a component that
rewrites all its rows (a landmark shift, a rehash) makes a large delta, and the store then writes
a new base (compaction) instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["BLOCK_BYTES", "Delta", "DeltaTracker", "apply_delta", "delta_meta_key"]

Arrays: TypeAlias = dict[str, NDArray[Any]]
#: Bytes hashed as one block: the hashes cost 1/8 of the state's memory.
BLOCK_BYTES: Final = 64
_SEP: Final = "@"  # <name>@idx, <name>@data: the parts of a changed array (names never hold it)
_WHOLE_BELOW: Final = 4096  # arrays smaller than this (bytes) go whole into every delta that changes them
_P1: Final = 0x9E3779B185EBCA87  # xxhash64's primes
_P2: Final = 0xC2B2AE3D27D4EB4F
_P3: Final = 0x165667B19E3779F9


def delta_meta_key() -> str:
    """The key of a delta's own description in its JSON state."""
    return "__delta__"


@njit(cache=True)
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True)
def _block_hashes(words: NDArray[np.uint64], block_words: int) -> NDArray[np.uint64]:
    """uint64[n_blocks]: an xxhash64-style hash of each ``block_words`` words (the last may be short)."""
    n = words.shape[0]
    n_blocks = (n + block_words - 1) // block_words
    out = np.empty(n_blocks, np.uint64)
    for b in range(n_blocks):
        h = np.uint64(_P3) + np.uint64(b)
        end = min(n, (b + 1) * block_words)
        for i in range(b * block_words, end):
            h ^= _rotl(words[i] * np.uint64(_P2), 31) * np.uint64(_P1)
            h = _rotl(h, 27) * np.uint64(_P1) + np.uint64(_P3)
        h ^= h >> np.uint64(33)
        h *= np.uint64(_P2)
        h ^= h >> np.uint64(29)
        out[b] = h
    return out


@njit(cache=True)
def _gather(words: NDArray[np.uint64], blocks: NDArray[np.int64], block_words: int) -> NDArray[np.uint64]:
    """The words of ``blocks`` (sorted), one after the other (the array's last block may be short)."""
    n = words.shape[0]
    total = 0
    for k in range(blocks.shape[0]):
        total += min(n, (blocks[k] + 1) * block_words) - blocks[k] * block_words
    out = np.empty(total, np.uint64)
    j = 0
    for k in range(blocks.shape[0]):
        for i in range(blocks[k] * block_words, min(n, (blocks[k] + 1) * block_words)):
            out[j] = words[i]
            j += 1
    return out


@njit(cache=True)
def _scatter(
    words: NDArray[np.uint64], blocks: NDArray[np.int64], block_words: int, data: NDArray[np.uint64]
) -> int:
    """Write :func:`_gather`'s ``data`` back into ``words``; the words used (-1: a block out of range)."""
    n = words.shape[0]
    j = 0
    for k in range(blocks.shape[0]):
        a = blocks[k] * block_words
        if blocks[k] < 0 or a >= n:
            return -1
        for i in range(a, min(n, a + block_words)):
            if j >= data.shape[0]:
                return -1
            words[i] = data[j]
            j += 1
    return j


def _block_words(arr: NDArray[Any]) -> int:
    """Words (uint64) per block of ``arr``'s bytes, 0 if they cannot be cut into words.

    Blocks run over the array's bytes in C order, whatever its rows: a row of 512 KiB (the
    activity sketch's) changes a block, not the row.
    """
    if arr.ndim == 0 or arr.nbytes == 0 or arr.nbytes % 8 or arr.dtype.hasobject:
        return 0
    return BLOCK_BYTES // 8


def _words(arr: NDArray[Any]) -> NDArray[np.uint64]:
    flat = np.ascontiguousarray(arr).reshape(-1)
    return flat.view(np.uint8).view(np.uint64)


def _json_key_hash(value: Any) -> bytes:
    return hashlib.blake2b(
        json.dumps(value, separators=(",", ":"), sort_keys=True).encode(), digest_size=16
    ).digest()


@dataclass(slots=True)
class _Seen:
    dtype: str
    shape: tuple[int, ...]
    block_words: int
    hashes: NDArray[np.uint64] | None  # None: kept whole (a digest of its bytes in `digest`)
    digest: bytes = b""


@dataclass(slots=True)
class Delta:
    """What :meth:`DeltaTracker.delta` found: arrays and JSON state to write, and their measure."""

    arrays: Arrays
    meta: dict[str, Any]
    changed_blocks: int = 0
    total_blocks: int = 0
    whole: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of the delta's arrays."""
        return sum(int(a.nbytes) for a in self.arrays.values())


class DeltaTracker:
    """Hashes of the last checkpoint written of one partition; see the module docstring."""

    def __init__(self) -> None:
        self._arrays: dict[str, _Seen] = {}
        self._meta: dict[str, bytes] = {}

    @staticmethod
    def _see(arr: NDArray[Any]) -> _Seen:
        bw = _block_words(arr) if arr.nbytes >= _WHOLE_BELOW else 0
        if bw:
            return _Seen(arr.dtype.str, arr.shape, bw, _block_hashes(_words(arr), bw))
        digest = hashlib.blake2b(np.ascontiguousarray(arr).view(np.uint8).tobytes(), digest_size=16).digest()
        return _Seen(
            arr.dtype.str, arr.shape, 0, None, digest + arr.dtype.str.encode() + repr(arr.shape).encode()
        )

    def _blocks_of(
        self, name: str, now: _Seen, old: _Seen | None
    ) -> tuple[str, NDArray[np.intp], bool] | None:
        """How to write array ``name`` as blocks: ``(source array, changed blocks, resized)``, or None.

        From its own previous version (same layout, or grown or cut at the end), or, when that
        changed in most blocks, from the array of the last checkpoint it shares most blocks with.
        """
        assert now.hashes is not None
        best: tuple[str, NDArray[np.intp], bool] | None = None
        if old is not None and old.hashes is not None and old.dtype == now.dtype:
            if old.shape == now.shape:
                best = (name, np.flatnonzero(now.hashes != old.hashes), False)
            elif len(old.shape) == len(now.shape) and old.shape[1:] == now.shape[1:]:
                # grown or cut at the end (C order): the bytes before stay where they were
                n = min(old.hashes.shape[0], now.hashes.shape[0]) - 1  # the last old block may be partial
                same = np.zeros(now.hashes.shape[0], np.bool_)
                same[:n] = now.hashes[:n] == old.hashes[:n]
                best = (name, np.flatnonzero(~same), True)
        if best is None or 2 * best[1].shape[0] > now.hashes.shape[0]:
            source, other = self._moved_from(now)  # e.g. a generation of tables that rotated
            if other is not None and other.hashes is not None:
                diff = np.flatnonzero(now.hashes != other.hashes)
                if best is None or diff.shape[0] < best[1].shape[0]:
                    best = (source, diff, False)
        return best

    def _moved_from(self, now: _Seen) -> tuple[str, _Seen | None]:
        """The array of the last checkpoint, of ``now``'s layout, sharing most blocks with it."""
        best, best_same = "", 0
        assert now.hashes is not None
        for name, old in self._arrays.items():
            if old.hashes is not None and old.dtype == now.dtype and old.shape == now.shape:
                same = int(np.count_nonzero(old.hashes == now.hashes))
                if same > best_same:
                    best, best_same = name, same
        if 2 * best_same <= now.hashes.shape[0]:
            return "", None
        return best, self._arrays[best]

    def reset(self, arrays: Arrays, meta: dict[str, Any]) -> None:
        """Remember ``arrays`` and ``meta`` as the last checkpoint written (a base)."""
        self._arrays = {k: self._see(v) for k, v in arrays.items()}
        self._meta = {k: _json_key_hash(v) for k, v in meta.items()}

    def delta(self, arrays: Arrays, meta: dict[str, Any]) -> Delta:
        """The delta from the last checkpoint to ``(arrays, meta)``, which becomes the last one.

        The returned ``meta`` holds the changed JSON keys and, under :func:`delta_meta_key`, the
        layout: ``{"blocks": {name: block_words}, "moved": {name: source}, "resized": {name: shape},
        "removed": [...], "meta_removed": [...]}``: ``blocks`` lists every array given as changed
        blocks (maybe none) of itself or, when ``moved`` names a source, of that array of the
        checkpoint before; ``resized`` ones are first grown or cut to their new shape.
        """
        out: Arrays = {}
        blocks: dict[str, int] = {}
        changed = total = 0
        whole: list[str] = []
        moved: dict[str, str] = {}
        resized: dict[str, list[int]] = {}
        seen: dict[str, _Seen] = {}
        for name, arr in arrays.items():
            if _SEP in name:
                msg = f"array name {name!r} holds {_SEP!r}, which incremental checkpoints reserve"
                raise ValueError(msg)
            now = self._see(arr)
            seen[name] = now
            old = self._arrays.get(name)
            plan = self._blocks_of(name, now, old) if now.hashes is not None else None
            if plan is not None:
                source, diff, resize = plan
                assert now.hashes is not None
                total += now.hashes.shape[0]
                changed += diff.shape[0]
                if 2 * diff.shape[0] * BLOCK_BYTES > arr.nbytes:  # most of it changed: cheaper whole
                    out[name] = np.ascontiguousarray(arr)
                    whole.append(name)
                    continue
                if source != name:
                    moved[name] = source
                if resize:
                    resized[name] = list(now.shape)
                if diff.shape[0]:
                    idx_dtype = np.uint32 if now.hashes.shape[0] < 2**32 else np.int64
                    out[f"{name}{_SEP}idx"] = diff.astype(idx_dtype)
                    out[f"{name}{_SEP}data"] = _gather(_words(arr), diff.astype(np.int64), now.block_words)
                blocks[name] = now.block_words
            elif not (
                old is not None and old.hashes is None and old.shape == now.shape and old.digest == now.digest
            ):
                out[name] = np.ascontiguousarray(arr)
                whole.append(name)
        removed = sorted(set(self._arrays) - set(arrays))
        meta_out: dict[str, Any] = {}
        meta_seen = {k: _json_key_hash(v) for k, v in meta.items()}
        for k, h in meta_seen.items():
            if self._meta.get(k) != h:
                meta_out[k] = meta[k]
        meta_out[delta_meta_key()] = {
            "blocks": blocks,
            "moved": moved,
            "resized": resized,
            "removed": removed,
            "meta_removed": sorted(set(self._meta) - set(meta)),
        }
        self._arrays, self._meta = seen, meta_seen
        return Delta(out, meta_out, changed, total, whole)


def apply_delta(arrays: Arrays, meta: dict[str, Any], d_arrays: Arrays, d_meta: dict[str, Any]) -> None:
    """Replay delta ``(d_arrays, d_meta)`` onto the previous checkpoint's ``arrays`` and ``meta``.

    Changes ``arrays`` (its arrays in place where the delta holds blocks of them) and ``meta``.

    Raises
    ------
    ValueError
        If the delta does not fit the arrays it is applied to (a chain out of order).
    """
    info = d_meta.get(delta_meta_key())
    if not isinstance(info, dict):
        msg = f"not a delta: its state has no {delta_meta_key()!r}"
        raise ValueError(msg)
    moved = info.get("moved", {})
    sources = {name: arrays.get(src) for name, src in moved.items()}  # as they were before the delta
    sources = {name: None if a is None else np.array(a, order="C") for name, a in sources.items()}
    for name in info["removed"]:
        arrays.pop(name, None)
    for name, bw in info["blocks"].items():
        target = sources[name] if name in moved else arrays.get(name)
        if target is None:
            msg = f"the delta changes blocks of array {name!r}, which the checkpoint before it does not hold"
            raise ValueError(msg)
        shape = info.get("resized", {}).get(name)
        if shape is not None:  # grown or cut at the end: keep the bytes before
            grown = np.zeros(tuple(int(x) for x in shape), target.dtype)
            keep = min(grown.nbytes, target.nbytes)
            grown.reshape(-1).view(np.uint8)[:keep] = (
                np.ascontiguousarray(target).reshape(-1).view(np.uint8)[:keep]
            )
            target = grown
        if not target.flags.writeable or not target.flags.c_contiguous:
            target = np.array(target, order="C")
        arrays[name] = target
        if f"{name}{_SEP}idx" not in d_arrays:  # moved, unchanged
            continue
        idx = np.asarray(d_arrays[f"{name}{_SEP}idx"]).astype(np.int64)
        data = np.asarray(d_arrays[f"{name}{_SEP}data"], np.uint64)
        if target.nbytes % 8 or int(bw) < 1:
            msg = f"array {name!r} cannot take blocks of {bw} words"
            raise ValueError(msg)
        used = _scatter(_words(target), idx, int(bw), data)
        if used != data.shape[0]:
            msg = f"the delta's blocks of array {name!r} do not fit it ({used} of {data.shape[0]} words used)"
            raise ValueError(msg)
    for name, arr in d_arrays.items():
        if _SEP not in name:
            arrays[name] = arr
    for k in info["meta_removed"]:
        meta.pop(k, None)
    meta.update({k: v for k, v in d_meta.items() if k != delta_meta_key()})
