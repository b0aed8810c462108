r"""Product ids -> dense slots in a numba open-addressing table, with the names in one byte arena.

:class:`NameTable` does what :class:`~viraltrend.kernels.intern.Interner` does (same slots for the
same sequence of calls: new ids in first-seen order, released slots reused lowest first), without
a Python ``dict`` entry or ``str`` per product: a batch's ids are joined into one UTF-8 buffer
(``"\0".join``, one ``encode``), hashed in one numba pass (the 64-bit hash of
:func:`~viraltrend.kernels.hashtable.hash_ids`), and looked up in one compiled loop.

**Collisions never merge two products.**  A table row holds the low 32 bits of a hash and a slot;
a probe stops at a row only when those bits match *and* the slot's name bytes in the arena equal
the id's bytes, so two ids with the same hash (or the same low 32 bits) get two slots (the second
one's row lies further along the probe run).

**Memory.**  Per table row (at most 3/4 full): 8 bytes, ``hash_low32 << 32 | slot`` in one
``uint64`` (a probe reads one word); per slot: the start (4 bytes: ``int32`` while the arena is under
2 GiB, then ``int64``) and length (4) of its name in the arena, and the name's UTF-8 bytes.  No hash
per slot: :attr:`NameTable.hash_of` recomputes the hashes from the arena when asked (the engine asks
when it evicts over its cap).  Per-slot arrays
double up to ``limit`` (the engine's product cap) and stop there; the arena grows from ``calloc``
pages, so its unused tail takes no resident memory.  Released names leave holes in the arena,
squeezed out once they are more than half of it.

Examples
--------
>>> t = NameTable()
>>> t.intern(["p1", "p2", "p1"]).tolist()
[0, 1, 0]
>>> t.release([0]); t.intern(["p3"]).tolist(), t.name(0)
([0], 'p3')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.hashtable import _FNV_OFFSET, _FNV_PRIME, _finish, _row_rehash

__all__ = ["CountedNames", "NameTable"]

_FREE: Final = np.uint64(2**64 - 1)  # an empty row (no slot is 2**32 - 1)
_LOW: Final = np.uint64(0xFFFFFFFF)
_U64: TypeAlias = NDArray[np.uint64]
_I64: TypeAlias = NDArray[np.int64]
_I32: TypeAlias = NDArray[np.int32]
_U8: TypeAlias = NDArray[np.uint8]
_Int: TypeAlias = int | np.integer[Any]
#: Arena offsets a table's ``int32`` per-slot starts hold; an arena that would pass it widens them to int64.
_START32_MAX: int = 2**31 - 1


@njit(cache=True)
def _hashes(buf: _U8, starts: _I64, ends: _I64) -> _U64:
    """FNV-1a 64 of ``buf[starts[i]:ends[i]]``, finalised (``hash_ids``'s hash)."""
    out = np.empty(starts.shape[0], np.uint64)
    for i in range(starts.shape[0]):
        h = np.uint64(_FNV_OFFSET)
        for j in range(starts[i], ends[i]):
            h = (h ^ np.uint64(buf[j])) * np.uint64(_FNV_PRIME)
        out[i] = _finish(h)
    return out


@no_refcounts
def _same(arena: _U8, a0: _Int, alen: _Int, buf: _U8, b0: _Int, b1: _Int) -> bool:
    if alen != b1 - b0:
        return False
    for j in range(alen):
        if arena[a0 + j] != buf[b0 + j]:
            return False
    return True


@no_refcounts
def _find(
    rows: _U64, arena: _U8, start: _I64, length: _I32, h: np.uint64, buf: _U8, b0: _Int, b1: _Int
) -> _Int:
    """Row holding the id ``buf[b0:b1]`` of hash ``h``, or the empty row where it would go."""
    mask = rows.shape[0] - 1  # < 2**32: the low 32 bits of a row's hash give its home
    low = h & _LOW
    r = np.int64(low & np.uint64(mask))
    while rows[r] != _FREE:
        if rows[r] >> np.uint64(32) == low:
            s = np.int64(rows[r] & _LOW)
            if _same(arena, start[s], length[s], buf, b0, b1):
                return r
        r = (r + 1) & mask
    return r


@njit(cache=True)
def _grown_size(size: _Int, n: _Int, limit: _Int) -> _Int:
    """:func:`~viraltrend.kernels.decay.grown_capacity` (doubling, stopped at ``limit`` > 0)."""
    if n <= size:
        return size
    new = max(size, 1)
    while new < n:
        new *= 2
    if limit > 0:
        if size < limit and n <= limit < new:
            return limit
        if size >= limit:
            return max(n, size + max(size // 8, 1))
    return new


@njit(cache=True)
def _grow1(a: NDArray[Any], n: _Int, fill: Any, limit: _Int) -> NDArray[Any]:
    size = _grown_size(a.shape[0], n, limit)
    if size == a.shape[0]:
        return a
    out = np.full(size, fill, a.dtype)
    out[: a.shape[0]] = a
    return out


@no_refcounts
def _intern_run(
    rows: _U64, used: _Int, start: _I64, length: _I32, arena: _U8, arena_end: _Int, high_water: _Int,
    free: _I64, free_pos: _Int, buf: _U8, starts: _I64, ends: _I64, hashes: _U64, insert: bool,
    slots: _I64, i: _Int,
) -> tuple[_Int, _Int, _Int, _Int, _Int]:  # fmt: skip
    """:func:`_intern`'s steps from id ``i`` on, without reference counts, up to an id that grows an array.

    The same steps as :func:`_intern`'s loop for every id that needs no new array (the row table not
    rehashed, ``start``/``length``/``arena`` not grown); stops before the first one that does
    (nothing of it changed) or at the end.  Returns ``(i, used, arena_end, high_water, free_pos)``.
    perf23: the loop's references (the arrays it may regrow, carried round the loop, and
    ``_grow1``'s calls) were a quarter of a Taobao replay's ``NRT_incref`` calls.
    """
    n = hashes.shape[0]
    while i < n:
        h = hashes[i]
        r = _find(rows, arena, start, length, h, buf, starts[i], ends[i])
        if rows[r] != _FREE:
            slots[i] = np.int64(rows[r] & _LOW)
            i += 1
            continue
        if not insert:
            slots[i] = -1
            i += 1
            continue
        if 4 * (used + 1) > 3 * rows.shape[0]:
            break
        size = ends[i] - starts[i]
        if arena_end + size > arena.shape[0]:
            break
        if free_pos < free.shape[0]:
            s = free[free_pos]
            free_pos += 1
        else:
            if high_water + 1 > start.shape[0] or high_water + 1 > length.shape[0]:
                break  # _grow1 would grow them (it grows exactly when asked for more than the size)
            s = high_water
            high_water += 1
        b0 = starts[i]
        for j in range(size):
            arena[arena_end + j] = buf[b0 + j]
        rows[r] = ((h & _LOW) << np.uint64(32)) | np.uint64(s)
        used += 1
        start[s] = arena_end
        length[s] = size
        arena_end += size
        slots[i] = s
        i += 1
    return i, used, arena_end, high_water, free_pos


@njit(cache=True)
def _intern(
    rows: _U64, used: _Int, start: _I64, length: _I32, arena: _U8, arena_end: _Int,
    high_water: _Int, free: _I64, free_pos: _Int, buf: _U8, starts: _I64, ends: _I64, hashes: _U64,
    insert: bool, limit: _Int,
) -> tuple[_I64, _U64, _Int, _I64, _I32, _U8, _Int, _Int, _Int]:  # fmt: skip
    """Slot of each id ``buf[starts[i]:ends[i]]`` (hash ``hashes[i]``); new ones added if ``insert``, else -1.

    A new id takes ``free[free_pos]`` (ascending) or ``high_water``, and its bytes go to the end of
    the arena (grown by the caller beforehand).  Returns the slots and the (possibly regrown)
    arrays and counters.  The ids run in :func:`_intern_run` (no reference counts); where a new id
    needs an array grown, it stops, the arrays grow here and the run takes that id.
    """
    n = hashes.shape[0]
    slots = np.empty(n, np.int64)
    i: _Int = 0
    while True:
        i, used, arena_end, high_water, free_pos = _intern_run(
            rows, used, start, length, arena, arena_end, high_water, free, free_pos, buf, starts, ends,
            hashes, insert, slots, i,
        )  # fmt: skip
        if i >= n:
            break
        # id i is new and needs an array grown: those the run found short grow, then the run takes it
        if 4 * (used + 1) > 3 * rows.shape[0]:
            rows = _row_rehash(rows, 2 * rows.shape[0])  # the same row layout
        arena = _grow1(arena, arena_end + ends[i] - starts[i], np.uint8(0), 0)  # a no-op: the caller grew it
        if free_pos >= free.shape[0]:
            start = _grow1(start, high_water + 1, np.int64(0), limit)
            length = _grow1(length, high_water + 1, np.int32(-1), limit)
    return slots, rows, used, start, length, arena, arena_end, high_water, free_pos


@njit(cache=True)
def _release(rows: _U64, length: _I32, slots: _I64, hashes: _U64) -> tuple[_I64, _Int]:
    """Delete the rows of ``slots`` (their ids' hashes: ``hashes``); return the slots held and their bytes."""
    mask = rows.shape[0] - 1
    out = np.empty(slots.shape[0], np.int64)
    m = 0
    freed = 0
    for i in range(slots.shape[0]):
        s = slots[i]
        if length[s] < 0:
            continue  # already free
        r = np.int64(hashes[i] & np.uint64(mask))
        while rows[r] == _FREE or np.int64(rows[r] & _LOW) != s:
            r = (r + 1) & mask
        hole = r
        j = r
        while True:
            j = (j + 1) & mask
            if rows[j] == _FREE:
                break
            home = np.int64((rows[j] >> np.uint64(32)) & np.uint64(mask))
            if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole and home > j):
                rows[hole] = rows[j]
                hole = j
        rows[hole] = _FREE
        freed += length[s]
        length[s] = -1
        out[m] = s
        m += 1
    return out[:m], freed


@njit(cache=True)
def _compact(arena: _U8, start: _I64, length: _I32, high_water: _Int, out: _U8) -> _Int:
    """Copy the live names into ``out`` in slot order; ``start`` is updated in place."""
    end = 0
    for s in range(high_water):
        if length[s] >= 0:
            out[end : end + length[s]] = arena[start[s] : start[s] + length[s]]
            start[s] = end
            end += length[s]
    return end


def _encode(ids: Sequence[str]) -> tuple[_U8, _I64, _I64]:
    """The ids' UTF-8 in one buffer, with each id's start and end."""
    n = len(ids)
    joined = "\x00".join(ids).encode("utf-8", "surrogatepass")
    buf = np.frombuffer(joined, np.uint8)
    if joined.count(b"\x00") == n - 1:
        ends = np.empty(n, np.int64)
        ends[: n - 1] = np.flatnonzero(buf == 0)
        ends[n - 1] = buf.shape[0]
    else:  # an id holds a NUL: lengths per id
        sizes = np.fromiter((len(s.encode("utf-8", "surrogatepass")) for s in ids), np.int64, n)
        ends = np.cumsum(sizes + 1) - 1
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    return buf, starts, ends


def _one_layout(buf: _U8, starts: _I64, ends: _I64) -> tuple[_U8, _I64, _I64]:
    """``buf`` as a read-only view, ``starts``/``ends`` as contiguous int64: one compiled signature.

    The NDJSON decoder's buffer is read-only, the CSV decoder's writable, and a column may come as
    a strided view; each such difference compiles (or loads from the cache) another ``_intern`` and
    ``_hashes`` the first time it reaches them, in the middle of a replay (~0.05 s of the Taobao
    sample's).  Nothing is copied but a strided column.
    """
    if buf.flags.writeable:
        buf = buf.view()
        buf.flags.writeable = False
    return buf, np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(ends, np.int64)


class NameTable:
    """Product id -> dense slot, names kept in a byte arena; slots reused lowest first after release.

    ``limit``: per-slot arrays double up to it and then grow by an eighth (the engine passes its
    ``state.max_products``); None: they double.
    """

    def __init__(self, capacity: int = 1024, *, limit: int | None = None) -> None:
        cap = max(int(capacity), 1)
        rows = 2
        while 3 * rows < 4 * (cap + 1):  # room for ``capacity`` ids at most 3/4 full
            rows *= 2
        self.limit = int(limit) if limit else 0
        self._rows: _U64 = np.full(rows, _FREE, np.uint64)
        self._used = 0
        self._start: _I64 = np.zeros(cap, np.int32)  # arena offsets: int32 until the arena passes 2 GiB
        self._length: _I32 = np.full(cap, -1, np.int32)  # -1: a free slot
        self._arena: _U8 = np.zeros(16 * cap, np.uint8)
        self._arena_end = 0
        self._garbage = 0  # bytes of released names still in the arena
        self._high_water = 0
        self._free: _I64 = np.empty(0, np.int64)
        self._free_pos = 0

    def __len__(self) -> int:
        """Number of ids currently interned."""
        return self._used

    @property
    def high_water(self) -> int:
        """One past the highest slot ever handed out: arrays indexed by slot need this length."""
        return self._high_water

    @property
    def hash_of(self) -> _U64:
        """Each slot's id hash (0 for a free slot), uint64[high_water], recomputed from the arena."""
        hw = self._high_water
        start, length = self._start[:hw], self._length[:hw]
        with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
            out = _hashes(self._arena, start, start + np.maximum(length, 0))
        out[length < 0] = 0
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of every array owned (free rows and arena space included)."""
        arrays = (self._rows, self._start, self._length, self._arena, self._free)
        return int(sum(a.nbytes for a in arrays))

    def _run(self, ids: Sequence[str], *, insert: bool) -> _I64:
        n = len(ids)
        if n == 0:
            return np.empty(0, np.int64)
        if self._high_water + n >= 2**31:
            msg = f"the name table holds at most 2**31 - 1 slots; {self._high_water} are in use"
            raise OverflowError(msg)
        buf, starts, ends = _encode(ids)
        if int((ends - starts).max()) >= 2**31:
            msg = "an id is longer than 2**31 - 1 bytes"
            raise ValueError(msg)
        with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
            hashes = _hashes(buf, starts, ends)
        return self._run_spans(buf, starts, ends, hashes, insert=insert)

    def intern_spans(self, buf: _U8, starts: _I64, ends: _I64, hashes: _U64) -> _I64:
        """:meth:`intern` of the ids ``buf[starts[i]:ends[i]]`` (UTF-8) whose hashes are ``hashes``.

        ``hashes`` must be those of :func:`~viraltrend.kernels.hashtable.hash_ids` (a decoder that
        hashed the ids from the bytes gives them); no ``str`` is made.
        """
        n = starts.shape[0]
        if n == 0:
            return np.empty(0, np.int64)
        if self._high_water + n >= 2**31:
            msg = f"the name table holds at most 2**31 - 1 slots; {self._high_water} are in use"
            raise OverflowError(msg)
        return self._run_spans(buf, starts, ends, hashes, insert=True)

    def _fit_start(self, need: int) -> None:
        """Widen the per-slot starts to int64 before the arena passes what int32 holds (no offset wraps)."""
        if need > _START32_MAX and self._start.dtype != np.int64:
            self._start = self._start.astype(np.int64)

    def _run_spans(self, buf: _U8, starts: _I64, ends: _I64, hashes: _U64, *, insert: bool) -> _I64:
        buf, starts, ends = _one_layout(buf, starts, ends)
        hashes = np.ascontiguousarray(hashes, np.uint64)
        need = self._arena_end + int((ends - starts).sum())
        if insert:
            self._fit_start(need)
        if insert and need > self._arena.shape[0]:  # calloc'd: the unused tail takes no resident memory
            arena = np.zeros(max(2 * self._arena.shape[0], need), np.uint8)
            arena[: self._arena_end] = self._arena[: self._arena_end]
            self._arena = arena
        out = _intern(
            self._rows, np.int64(self._used), self._start, self._length, self._arena,
            np.int64(self._arena_end), np.int64(self._high_water), self._free, np.int64(self._free_pos),
            buf, starts, ends, hashes, insert, np.int64(self.limit),
        )  # fmt: skip
        slots = out[0]
        if insert:
            self._rows, used, self._start, self._length, self._arena, end, hw, fp = out[1:]
            self._used, self._arena_end, self._high_water, self._free_pos = (
                int(used),
                int(end),
                int(hw),
                int(fp),
            )
        return slots

    def intern(self, ids: Sequence[str]) -> _I64:
        """Return the slot of each id (``int64[n]``), adding ids not seen before (in first-seen order)."""
        return self._run(ids, insert=True)

    def lookup(self, ids: Iterable[str]) -> _I64:
        """Return the slot of each id, or -1 where it is not interned (adds nothing)."""
        return self._run(list(ids), insert=False)

    def name(self, slot: int) -> str:
        """Return the id held by ``slot``."""
        s = int(slot)
        if not 0 <= s < self._high_water or self._length[s] < 0:
            msg = f"slot {slot} is free; it holds no id"
            raise KeyError(msg)
        a = int(self._start[s])
        return self._arena[a : a + int(self._length[s])].tobytes().decode("utf-8", "surrogatepass")

    def names(self, slots: Iterable[int]) -> list[str]:
        """Return the ids held by ``slots``."""
        return [self.name(int(s)) for s in slots]

    def release(self, slots: Iterable[int]) -> None:
        """Forget the ids in ``slots``; the slots will be reused by later :meth:`intern` calls."""
        ask = np.unique(np.fromiter((int(s) for s in slots), np.int64))
        if ask.size == 0:
            return
        if ask[0] < 0 or ask[-1] >= self._high_water:
            msg = f"slots must be in [0, {self._high_water}), got {ask[0] if ask[0] < 0 else ask[-1]}"
            raise IndexError(msg)
        start = self._start[ask]
        with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
            hashes = _hashes(self._arena, start, start + np.maximum(self._length[ask], 0))
        gone, freed = _release(self._rows, self._length, ask, hashes)
        self._used -= int(gone.shape[0])
        self._garbage += int(freed)
        self._free = np.union1d(self._free[self._free_pos :], gone).astype(np.int64)
        self._free_pos = 0
        if self._garbage > max(self._arena_end - self._garbage, 1 << 16):
            out = np.zeros(max(2 * (self._arena_end - self._garbage), 64), np.uint8)
            end = _compact(self._arena, self._start, self._length, np.int64(self._high_water), out)
            self._arena, self._arena_end, self._garbage = out, int(end), 0

    def to_list(self) -> list[str | None]:
        """Plain data for a checkpoint: the id of every slot, None for free slots."""
        return [self.name(s) if self._length[s] >= 0 else None for s in range(self._high_water)]

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """Plain arrays for a checkpoint, the same whatever the table's history (its arena's layout).

        Keys: ``names`` uint8[...] (the UTF-8 of the live ids in slot order, zero-padded to a
        multiple of 64 bytes), ``length`` int32[high_water] (-1: a free slot), ``free`` int64[k]
        (the free slots still to hand out, in order) and ``meta`` int64[1] (the ids held).  What
        :meth:`to_list` says, without a Python object per id.
        """
        hw = self._high_water
        length = self._length[:hw].copy()
        total = int(length[length > 0].sum(dtype=np.int64))
        names = np.zeros(total + (-total % 64), np.uint8)
        _compact(self._arena, self._start[:hw].copy(), length, np.int64(hw), names)
        free = self._free[self._free_pos :].astype(np.int64)
        return {"names": names, "length": length, "free": free, "meta": np.array([self._used], np.int64)}

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return self.to_arrays(), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> NameTable:
        """:meth:`from_arrays` under this table's limit.

        From ``meta["products"]``, the names of a checkpoint written before the table was saved as
        arrays: :meth:`from_list`.
        """
        if "products" in meta:
            return type(self).from_list(meta["products"], limit=self.limit)
        return type(self).from_arrays(dict(arrays), limit=self.limit)

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]], *, limit: int | None = None) -> NameTable:
        """Rebuild from :meth:`to_arrays` output, in one compiled pass (ValueError if it does not fit)."""
        length = np.array(arrays["length"], np.int32)
        free = np.array(arrays["free"], np.int64)
        names = np.asarray(arrays["names"], np.uint8)
        used = int(np.asarray(arrays["meta"], np.int64)[0])
        hw = length.shape[0]
        live = np.flatnonzero(length >= 0)
        sizes = length[live].astype(np.int64)
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if ends.shape[0] else 0
        if (
            length.ndim != 1 or live.shape[0] != used or total > names.shape[0]
            or (free.shape[0] and (int(free.min()) < 0 or int(free.max()) >= hw))
        ):  # fmt: skip
            msg = "name table checkpoint arrays do not fit together; the checkpoint is corrupt"
            raise ValueError(msg)
        table = cls(capacity=max(hw, 1), limit=limit)
        table._high_water = hw
        table._free = live  # every slot starts free and the live ones are taken in order
        buf = np.ascontiguousarray(names[:total])
        starts = ends - sizes
        with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
            hashes = _hashes(buf, starts, ends)
        table._arena = np.zeros(max(table._arena.shape[0], total), np.uint8)
        table._fit_start(total)
        out = _intern(
            table._rows, np.int64(0), table._start, table._length, table._arena, np.int64(0), np.int64(hw),
            table._free, np.int64(0), buf, starts, ends, hashes, True, np.int64(table.limit),
        )  # fmt: skip
        if not np.array_equal(out[0], live):
            msg = "name table checkpoint holds the same id twice; the checkpoint is corrupt"
            raise ValueError(msg)
        table._rows, used_now, table._start, table._length, table._arena, end, _, _ = out[1:]
        table._used, table._arena_end = int(used_now), int(end)
        table._free, table._free_pos = free, 0
        return table

    @classmethod
    def from_list(cls, names: Sequence[str | None], *, limit: int | None = None) -> NameTable:
        """Rebuild a table from :meth:`to_list` output (ValueError if an id appears twice)."""
        table = cls(capacity=max(len(names), 1), limit=limit)
        live = [i for i, n in enumerate(names) if n is not None]
        held = [names[i] for i in live]
        table._high_water = len(names)
        # every slot starts free and the live ones are taken in order: give each its own slot
        table._free = np.asarray(live, np.int64)
        got = table.intern(held)  # type: ignore[arg-type]  # no None in held
        if got.tolist() != live:
            msg = "name table checkpoint holds the same id twice; the checkpoint is corrupt"
            raise ValueError(msg)
        free = np.setdiff1d(np.arange(len(names), dtype=np.int64), np.asarray(live, np.int64))
        table._free, table._free_pos = free, 0
        return table


class CountedNames:
    """Ids shared by products (sellers, categories): held while a product refers to them, then released.

    A :class:`NameTable` plus a reference count per slot: :meth:`hold` when a product takes the id,
    :meth:`drop` when the product lets go of it (it is released, or it takes another one); an id
    whose count falls to 0 is released at once and its slot reused lowest first.  So the table
    never holds more ids than there are live products, however many distinct ids the stream
    carries (issue 12: hostile seller and category ids).

    Examples
    --------
    >>> t = CountedNames()
    >>> a = t.intern(["s1", "s2"]); t.hold(a); len(t)
    2
    >>> t.drop(a[:1]); len(t), t.name(1)
    (1, 's2')
    """

    def __init__(self) -> None:
        self.table = NameTable(capacity=64)
        self.refs: _I32 = np.zeros(64, np.int32)  # products holding each id (< 2**31)
        self.released = 0  # ids released so far (a metric: ids the table did not keep)

    def __len__(self) -> int:
        """Number of ids currently held."""
        return len(self.table)

    @property
    def nbytes(self) -> int:
        """Bytes of every array owned."""
        return self.table.nbytes + int(self.refs.nbytes)

    def intern(self, ids: Sequence[str]) -> _I64:
        """Slots of ``ids`` (new ones added); call :meth:`hold` for the products that take them."""
        slots = self.table.intern(ids)
        self._grow_refs()
        return slots

    def intern_spans(self, buf: _U8, starts: _I64, ends: _I64) -> _I64:
        """:meth:`intern` of the ids ``buf[starts[i]:ends[i]]`` (UTF-8), with no ``str`` made."""
        buf, starts, ends = _one_layout(buf, starts, ends)
        with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
            hashes = _hashes(buf, starts, ends)
        slots = self.table.intern_spans(buf, starts, ends, hashes)
        self._grow_refs()
        return slots

    def _grow_refs(self) -> None:
        hw = self.table.high_water
        if hw > self.refs.shape[0]:
            refs = np.zeros(max(2 * self.refs.shape[0], hw), np.int32)
            refs[: self.refs.shape[0]] = self.refs
            self.refs = refs

    def hold(self, slots: _I64) -> None:
        """One more product refers to each of ``slots`` (repeats count each time)."""
        np.add.at(self.refs, slots, 1)

    def drop(self, slots: _I64) -> None:
        """One product fewer refers to each of ``slots`` (``-1``: none, ignored); release unheld ids."""
        slots = slots[slots >= 0]
        if slots.size == 0:
            return
        np.subtract.at(self.refs, slots, 1)
        gone = np.unique(slots[self.refs[slots] <= 0])
        if gone.size:
            self.refs[gone] = 0
            self.table.release(gone.tolist())
            self.released += int(gone.size)

    def name(self, slot: int) -> str:
        """The id held by ``slot``."""
        return self.table.name(slot)

    def to_list(self) -> list[str | None]:
        """Plain data for a checkpoint: the id of every slot, None for free slots (Interner's format)."""
        return self.table.to_list()

    @classmethod
    def from_list(cls, names: Sequence[str | None], column: NDArray[Any]) -> CountedNames:
        """Rebuild from :meth:`to_list` output and the products' column of slots (``-1``: none).

        The counts are those of ``column``; ids no product refers to (a checkpoint written before
        ids were released) are released here.
        """
        t = cls()
        t.table = NameTable.from_list(names)
        n = max(t.table.high_water, 64)
        held = np.asarray(column, np.int64)
        held = held[held >= 0]
        if held.size and int(held.max()) >= t.table.high_water:
            msg = "a product refers to a seller or category slot the checkpoint does not hold"
            raise ValueError(msg)
        t.refs = np.bincount(held, minlength=n).astype(np.int32)
        if any(names[i] is None for i in np.flatnonzero(t.refs).tolist()):
            msg = "a product refers to a seller or category slot the checkpoint does not hold"
            raise ValueError(msg)
        live = np.asarray([i for i, x in enumerate(names) if x is not None], np.int64)
        unheld = live[t.refs[live] == 0] if live.size else live
        if unheld.size:
            t.table.release(unheld.tolist())
        return t
