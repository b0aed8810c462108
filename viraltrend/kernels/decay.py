"""Forward-decayed event counts per (product slot, event type, half-life).

Forward decay (Cormode et al., ICDE 2009) keeps an exponentially decayed sum without sweeping
the stored values as time passes.  With ``lam = ln 2 / half_life_s`` the decayed count at ``now`` is::

    C(now) = sum_i w_i * exp(-lam * (now - t_i))
           = exp(-lam * (now - L)) * sum_i w_i * exp(lam * (t_i - L))

for any *landmark* ``L``.  The second sum does not depend on ``now``: it is the accumulator we
store (``acc``).  Adding an event is one ``exp`` and one addition, whatever its timestamp (late and
out-of-order events included), and a read multiplies by ``exp(-lam * (now - L))``.

The price is the growth of ``exp(lam * (t - L))`` as event time moves away from the landmark.
Before a batch whose newest event would make ``lam_max * (t - L)`` exceed ``renorm_exponent``
(300 by default: accumulators stay below ~1e130 per unit weight, far from the ~1e308 limit),
the landmark moves forward to that event's time, rounded down to a whole second, and every
accumulator is multiplied by ``exp(-lam * shift)``: an O(capacity) sweep, about once every 36 hours
of event time with a 5-minute shortest half-life.  Reads are unchanged by it up to rounding;
contributions below the smallest double (~1e-308 at the landmark's scale) vanish.  Timestamps are
epoch ms (``int64``); kernels use seconds from the landmark, ``(ts_ms - landmark_ms) / 1000.0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError
from viraltrend.kernels._checks import check_range, column, owned
from viraltrend.kernels._jit import no_refcounts

__all__ = ["F32_RENORM_EXPONENT", "PREFETCH_DISTANCE", "RENORM_EXPONENT", "DecayedCounters", "grown_capacity"]

#: Largest ``lam_max * (t - landmark)`` exponent allowed in an accumulator before the landmark moves.
RENORM_EXPONENT: Final = 300.0
#: Largest renormalisation exponent for float32 accumulators: ``exp(60)`` leaves ``exp(28)`` (1e12) of
#: weight below float32's ``3.4e38`` (``exp(88.7)``).
F32_RENORM_EXPONENT: Final = 60.0
#: Events ahead whose cells :func:`_add_events` prefetches (best of 4..24 on a 2-core AMD EPYC VM).
PREFETCH_DISTANCE: Final = 8
_MAX_ABS_TS_MS: Final = 2**53  # |ts_ms| bound: differences of two times stay exact in int64 and float64
_INT64_MAX: Final = int(np.iinfo(np.int64).max)
_INT64_MIN: Final = int(np.iinfo(np.int64).min)
_Scalar = TypeVar("_Scalar", bound=np.generic)
_ROW0: Final = np.zeros(1, np.int64)  # the one row of the global accumulator, as slots
_EVERY_ROW: Final = np.zeros(0, np.int64)  # _decay_live_rows_flat: no times, every row

if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]

    def _prefetch(array: NDArray[np.generic], index: int | np.integer[Any]) -> None:
        """Do nothing: without the JIT there is no cache to warm."""

    def _prefetch_2d(array: NDArray[np.generic], row: int | np.integer[Any], col: int) -> None:
        """Do nothing: without the JIT there is no cache to warm."""

else:

    @intrinsic
    def _prefetch(typingctx: object, array: types.Array, index: types.Integer) -> tuple[object, object]:
        """Ask the CPU to fetch ``array[index]`` (1-D) into cache for writing (``llvm.prefetch``).

        A prefetch never faults and retires at once, so cache misses of events a few places ahead
        overlap with the work on this one: with 1M products (160 MB of state) updates run ~3x faster.
        """

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)  # mangles p0 or p0i8
            ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
            builder.call(fn, [ptr, i32(1), i32(3), i32(1)])  # write, keep in all levels, data
            return context.get_dummy_value()

        return types.void(array, index), codegen

    @intrinsic
    def _prefetch_2d(
        typingctx: object, array: types.Array, row: types.Integer, col: types.Integer
    ) -> tuple[object, object]:
        """``_prefetch`` of ``array[row, col]``, a 2-D array of any layout (the address by its strides)."""

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            r = context.cast(builder, args[1], signature.args[1], types.intp)
            c = context.cast(builder, args[2], signature.args[2], types.intp)
            ptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
                context, builder, aryty, ary, [r, c], wraparound=False
            )
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(array, row, col), codegen


@no_refcounts
def _add_events(
    acc: NDArray[np.float64], global_acc: NDArray[np.float64],
    first_ts_ms: NDArray[np.int64], last_ts_ms: NDArray[np.int64],
    slot: NDArray[np.int64], type_code: NDArray[np.int8], ts_ms: NDArray[np.int64],
    weight: NDArray[np.float64],
    lam: NDArray[np.float64], landmark_ms: np.int64, prefetch_distance: int,
) -> None:  # fmt: skip
    """Add events in order (serial: slots repeat); indices and exponents checked by the caller.

    ``v = weight[i] * exp(lam[h] * (ts_ms[i] - landmark_ms) / 1000)`` is added to
    ``acc[slot[i], type_code[i], h]`` and ``global_acc[type_code[i], h]``; the slot's first and
    last times are updated (unless ``first_ts_ms`` is empty: counters kept without times).  The
    cells of event ``i + prefetch_distance`` are prefetched (0: off).
    Arrays: ``acc`` float64[capacity, n_types, n_hl], ``global_acc`` float64[n_types, n_hl],
    ``first_ts_ms`` and ``last_ts_ms`` int64[capacity], ``slot`` int64[n], ``type_code`` int8[n],
    ``ts_ms`` int64[n], ``weight`` float64[n], ``lam`` float64[n_hl] (1/s).
    """
    n = slot.shape[0]
    n_types = acc.shape[1]
    n_hl = lam.shape[0]
    flat = acc.reshape(-1)
    times = first_ts_ms.shape[0] > 0
    for i in range(n):
        ahead = i + prefetch_distance
        if prefetch_distance > 0 and ahead < n:
            cell = (slot[ahead] * n_types + type_code[ahead]) * n_hl
            _prefetch(flat, cell)
            _prefetch(flat, cell + n_hl - 1)  # the cell may straddle two cache lines
            if times:
                _prefetch(first_ts_ms, slot[ahead])
                _prefetch(last_ts_ms, slot[ahead])
        s = slot[i]
        k = type_code[i]
        t = ts_ms[i]
        w = weight[i]
        t_s = (t - landmark_ms) / 1000.0
        for h in range(n_hl):
            v = w * math.exp(lam[h] * t_s)
            acc[s, k, h] += v
            global_acc[k, h] += v
        if times:
            if t < first_ts_ms[s]:
                first_ts_ms[s] = t
            if t > last_ts_ms[s]:
                last_ts_ms[s] = t


@njit(cache=True)
def _first_bad(
    slot: NDArray[np.int64], type_code: NDArray[np.int8], ts_ms: NDArray[np.int64],
    weight: NDArray[np.float64], capacity: int, n_types: int, max_abs_ts_ms: int,
) -> tuple[int, int]:  # fmt: skip
    """(index of the first event with a value out of range or a weight not finite, or -1; max ts_ms)."""
    ts_max = ts_ms[0]
    for i in range(slot.shape[0]):
        if (
            not 0 <= slot[i] < capacity
            or not 0 <= type_code[i] < n_types
            or not -max_abs_ts_ms <= ts_ms[i] <= max_abs_ts_ms
            or not math.isfinite(weight[i])
        ):
            return i, ts_max
        ts_max = max(ts_max, ts_ms[i])
    return -1, ts_max


@njit(cache=True)
def _exp(x: float) -> float:
    """``exp(x)``, or inf from 709 up (near the double limit; without the JIT math.exp would raise)."""
    return math.exp(x) if x < 709.0 else math.inf


@njit(cache=True)
def _scaled(value: float, exponent: float) -> float:
    """Return ``value * exp(exponent)`` with no overflow in between, inf * 0 or NaN.

    The plain product when ``exp(exponent)`` and the product are normal doubles; otherwise the
    exponents are combined: ``value = m * 2**e`` (``frexp``), result ``m * exp(exponent + e ln 2)``.
    """
    if value == 0.0:
        return 0.0
    factor = _exp(exponent)
    r = value * factor
    if 2.2250738585072014e-308 <= factor < math.inf and 2.2250738585072014e-308 <= abs(r) < math.inf:
        return r
    m, e = math.frexp(value)
    half = _exp(0.5 * (exponent + e * 0.6931471805599453))
    return m * half * half


@njit(cache=True)
def _scaled_by(value: float, factor: float, exponent: float) -> float:
    """``_scaled(value, exponent)`` given ``factor = _exp(exponent)``, computed once per tick.

    The same steps: 0 for 0, the plain product when the factor and the product are normal, else
    ``_scaled`` itself (so the same bits, with one ``exp`` per half-life instead of per value).
    """
    if value == 0.0:
        return 0.0
    r = value * factor
    if 2.2250738585072014e-308 <= factor < math.inf and 2.2250738585072014e-308 <= abs(r) < math.inf:
        return r
    return _scaled(value, exponent)


@njit(cache=True)
def _decay_rows(
    acc: NDArray[np.float64], slots: NDArray[np.int64], lam: NDArray[np.float64], dt_s: float,
    out: NDArray[np.float64],
) -> None:  # fmt: skip
    """Set ``out[j, k, h] = acc[slots[j], k, h] * exp(-lam[h] * dt_s)`` (``dt_s`` may be < 0).

    ``acc`` float64[capacity, n_types, n_hl], ``slots`` int64[m], ``lam`` float64[n_hl], ``out``
    float64[m, n_types, n_hl]; ``out`` may be ``acc`` itself when ``slots`` is ``arange(capacity)``.
    """
    n_hl = acc.shape[2]
    x = np.empty(n_hl, np.float64)
    f = np.empty(n_hl, np.float64)
    for h in range(n_hl):  # one exp per half-life: _scaled's own steps given its factor
        x[h] = -lam[h] * dt_s
        f[h] = _exp(x[h])
    for j in range(slots.shape[0]):
        for k in range(acc.shape[1]):
            for h in range(n_hl):
                out[j, k, h] = _scaled_by(acc[slots[j], k, h], f[h], x[h])


@njit(cache=True)
def _decay_live_rows(
    acc: NDArray[np.float64], last_ts_ms: NDArray[np.int64], never: int, lam: NDArray[np.float64], dt_s: float
) -> None:  # fmt: skip
    """``_decay_rows(acc, arange(capacity), lam, dt_s, acc)`` on the rows with ``last_ts_ms != never``.

    The others hold zeros (cleared, or never written), which ``_decay_rows`` leaves zero: the same
    array, bit for bit, without reading the rows no event reached.  The cell-by-cell reference that
    :func:`_decay_live_rows_flat` (the landmark move's kernel) is tested against.
    """
    n_hl = acc.shape[2]
    x = np.empty(n_hl, np.float64)
    f = np.empty(n_hl, np.float64)
    for h in range(n_hl):
        x[h] = -lam[h] * dt_s
        f[h] = _exp(x[h])
    for j in range(acc.shape[0]):
        if last_ts_ms[j] == never:
            continue
        for k in range(acc.shape[1]):
            for h in range(n_hl):
                acc[j, k, h] = _scaled_by(acc[j, k, h], f[h], x[h])


@njit(cache=True)
def _decay_live_rows_flat(
    acc: NDArray[np.float64], last_ts_ms: NDArray[np.int64], never: int, lam: NDArray[np.float64], dt_s: float
) -> None:  # fmt: skip
    """:func:`_decay_live_rows` (every row when ``last_ts_ms`` is empty), bit for bit, row by row.

    ``acc`` C-contiguous.  A landmark move is O(live rows) and memory-bound; the cell-by-cell
    form branches per cell (``_scaled_by``) and does not vectorise.  Here a row's cells are first
    scaled as plain products while one flag notes whether any nonzero cell's product is not a
    normal double (or the factor itself is not): such a row, rare, takes ``_scaled_by``'s own steps
    cell by cell; the others store the products plus ``+0.0`` (a nonzero normal product is itself,
    a zero cell's ``+-0.0`` product becomes ``+0.0``, as ``_scaled_by`` returns for 0 and -0.0).  So
    every cell gets exactly ``_scaled_by``'s value.  The rows are indexed in the flat array (no
    view per row: a move of the trust counters' 6-cell rows took ~30 % longer with one).
    """
    n_types, n_hl = acc.shape[1], acc.shape[2]
    m = n_types * n_hl
    x = np.empty(n_hl, np.float64)
    f = np.empty(n_hl, np.float64)
    normal = True
    for h in range(n_hl):
        x[h] = -lam[h] * dt_s
        f[h] = _exp(x[h])
        normal = normal and 2.2250738585072014e-308 <= f[h] < math.inf
    fc = np.empty(m, np.float64)  # per cell of a row (k, h): its half-life's factor and exponent
    xc = np.empty(m, np.float64)
    for k in range(n_types):
        for h in range(n_hl):
            fc[k * n_hl + h] = f[h]
            xc[k * n_hl + h] = x[h]
    if acc.itemsize == 4 and _f32_plain(f):
        _decay_f32_rows(acc, last_ts_ms, never, fc)
        return
    flat = acc.reshape(-1)
    every = last_ts_ms.shape[0] == 0
    for j in range(acc.shape[0]):
        if not every and last_ts_ms[j] == never:
            continue
        b = j * m
        odd = not normal
        for c in range(m):
            v = np.float64(flat[b + c])
            a = abs(v * fc[c])
            odd |= (v != 0.0) & ((a < 2.2250738585072014e-308) | (a >= math.inf) | (a != a))
        if odd:
            for c in range(m):
                flat[b + c] = _scaled_by(np.float64(flat[b + c]), fc[c], xc[c])
        else:
            for c in range(m):
                flat[b + c] = np.float64(flat[b + c]) * fc[c] + 0.0


_F32_TINY: Final = float(np.finfo(np.float32).smallest_subnormal)  # 2**-149, float32's least nonzero
_DBL_MIN: Final = 2.2250738585072014e-308  # float64's least normal


@njit(cache=True)
def _f32_plain(f: NDArray[np.float64]) -> bool:
    """Whether every finite nonzero float32 times each factor of ``f`` is a normal, finite double.

    Each factor normal and at most 1 (a move forwards), and ``2**-149`` times it at least the least
    normal double (rounding is monotonic, so every larger magnitude's product is too; float32's
    largest times a factor <= 1 is finite).  Then :func:`_decay_f32_rows` applies.
    """
    for h in range(f.shape[0]):
        if not (_DBL_MIN <= f[h] <= 1.0 and f[h] * _F32_TINY >= _DBL_MIN):
            return False
    return True


@njit(cache=True)
def _decay_f32_rows(
    acc: NDArray[np.floating[Any]], last_ts_ms: NDArray[np.int64], never: int, fc: NDArray[np.float64]
) -> None:  # fmt: skip
    """:func:`_decay_live_rows_flat`'s rows for float32 cells when :func:`_f32_plain` holds: the same bits.

    Every cell takes the plain product plus ``+0.0``, with no per-row flag.  It is ``_scaled_by``'s
    value: a zero cell gives ``+0.0`` both ways; a finite nonzero one a normal finite product, which
    ``_scaled_by`` returns as is (:func:`_f32_plain`); an infinite one ``+-inf`` both ways (``_scaled``
    keeps it: ``frexp(inf)`` is inf); a NaN one the same quiet NaN both ways (a product, ``frexp`` and
    the sum keep the operand's payload).  ``tests/kernels/test_decay_move.py`` checks every inf and
    NaN bit pattern of float32.  perf26: a Taobao move of the counters' 34k live rows ~0.6x the
    flagged loop's CPU (a flag per row, four float comparisons per cell, kept the loop scalar).
    """
    m = fc.shape[0]
    flat = acc.reshape(-1)
    every = last_ts_ms.shape[0] == 0
    for j in range(acc.shape[0]):
        if not every and last_ts_ms[j] == never:
            continue
        b = j * m
        for c in range(m):
            flat[b + c] = np.float64(flat[b + c]) * fc[c] + 0.0


def live_rows(live: NDArray[np.int64] | None, capacity: int) -> NDArray[np.int64]:
    """``live`` as a move's row mask for ``capacity`` rows: ``_EVERY_ROW`` unless it covers them."""
    if live is None or live.dtype != np.int64 or live.ndim != 1 or live.shape[0] < capacity:
        return _EVERY_ROW
    return live


def _require(ok: bool, msg: str) -> None:
    """Raise ValueError(msg) unless ``ok``."""
    if not ok:
        raise ValueError(msg)


def _column(name: str, values: object, dtype: type[_Scalar], n: int | None = None) -> NDArray[_Scalar]:
    """Check a 1-D array column of ``dtype`` (length ``n``, like ``slot``); make it contiguous."""
    return column(name, values, dtype, n, like="slot")


_check_range = check_range


def grown_capacity(capacity: int, n_slots: int, limit: int | None = None) -> int:
    """Capacity for ``n_slots`` slots grown from ``capacity``: doubled, but never past ``limit`` for nothing.

    Doubling alone can leave up to half of the slots unused (10M products in 16.8M slots); arrays
    filled with a sentinel pay for every slot in resident memory.  So a doubling that would pass
    ``limit`` (the engine's ``state.max_products``) while ``n_slots`` fits under it stops at
    ``limit``; past ``limit`` (one tick's new products before the cap evicts) the capacity grows by
    an eighth at a time.
    """
    if n_slots <= capacity:
        return capacity
    new = max(capacity, 1)
    while new < n_slots:
        new *= 2
    if limit is not None and limit > 0:
        if capacity < limit and n_slots <= limit < new:
            return int(limit)
        if capacity >= limit:
            return int(max(n_slots, capacity + max(capacity // 8, 1)))
    return int(new)


class DecayedCounters:
    """Forward-decayed counts per (product slot, event type, half-life), with a global total.

    Parameters
    ----------
    half_lives_s : sequence of float
        Half-lives in seconds, each finite and > 0.
    n_types : int
        Number of event types (``type_code`` values are ``0 .. n_types - 1``, at most 127).
    capacity : int
        Initial number of product slots; grows with :meth:`ensure_capacity`.
    renorm_exponent : float
        Largest ``lam_max * (t - landmark)`` kept in an accumulator before the landmark moves.
    times : bool
        Keep each slot's first and last event time (False: ``first_ts_ms`` and ``last_ts_ms`` are
        empty arrays, 16 bytes per slot saved, for counters whose times nobody reads).

    Attributes
    ----------
    acc, global_acc : float64[capacity, n_types, n_hl], float64[n_types, n_hl]
        Accumulators scaled to the landmark, per slot and over all products (kept by :meth:`clear`).
    first_ts_ms, last_ts_ms : int64[capacity]
        Earliest and latest event time per slot; INT64 max / INT64 min when the slot is unused
        (length 0 with ``times=False``).

    Examples
    --------
    >>> import numpy as np
    >>> c = DecayedCounters(half_lives_s=[60.0], n_types=1, capacity=4)
    >>> c.add(np.array([2], np.int64), np.array([0], np.int8), np.array([0], np.int64), np.array([1.0]))
    >>> float(c.read(np.array([2], np.int64), now_ms=60_000)[0, 0, 0])
    0.5
    """

    def __init__(
        self, *, half_lives_s: Sequence[float], n_types: int = 6, capacity: int = 1024,
        renorm_exponent: float = RENORM_EXPONENT, times: bool = True,
        dtype: type[np.floating[Any]] = np.float64,
    ) -> None:  # fmt: skip
        hl = np.asarray(half_lives_s, dtype=np.float64)
        ok = hl.ndim == 1 and hl.shape[0] > 0 and bool(np.all(np.isfinite(hl) & (hl > 0)))
        _require(ok, f"half_lives_s must be a non-empty sequence of finite numbers > 0, got {half_lives_s!r}")
        _require(1 <= n_types <= 127, f"n_types must be in [1, 127] (type_code is int8), got {n_types}")
        _require(capacity >= 1, f"capacity must be >= 1, got {capacity}")
        _require(0 < renorm_exponent <= 600, f"renorm_exponent must be in (0, 600], got {renorm_exponent}")
        kind = np.dtype(dtype)
        _require(kind in (np.float64, np.float32), f"dtype must be float64 or float32, got {dtype!r}")
        limit = F32_RENORM_EXPONENT if kind == np.float32 else 600
        _require(renorm_exponent <= limit, f"renorm_exponent must be <= {limit} for {kind} accumulators")
        self.half_lives_s: tuple[float, ...] = tuple(float(x) for x in hl)
        self.n_types = int(n_types)
        self.renorm_exponent = float(renorm_exponent)
        self._lam: NDArray[np.float64] = math.log(2.0) / hl
        self._lam_max = float(self._lam.max())
        self._next_rebase: tuple[int, int] | None = None  # (landmark, next_rebase_ms()) for that landmark
        self.dtype = np.dtype(dtype)  # of the per-slot accumulators; the global ones are float64
        self.acc: NDArray[np.float64] = np.zeros((capacity, n_types, hl.shape[0]), self.dtype)
        self.global_acc: NDArray[np.float64] = np.zeros((n_types, hl.shape[0]), np.float64)
        self.times = bool(times)
        n_times = capacity if self.times else 0
        self.first_ts_ms: NDArray[np.int64] = np.full(n_times, _INT64_MAX, np.int64)
        self.last_ts_ms: NDArray[np.int64] = np.full(n_times, _INT64_MIN, np.int64)
        self._landmark_ms: int | None = None

    @property
    def capacity(self) -> int:
        """Number of product slots currently allocated."""
        return int(self.acc.shape[0])

    @property
    def landmark_ms(self) -> int | None:
        """The landmark (epoch ms, a whole second), or None before the first event."""
        return self._landmark_ms

    @property
    def nbytes_per_slot(self) -> int:
        """Bytes of state per product slot: accumulators plus first and last timestamps (if kept)."""
        return int(self.acc[0].nbytes + (16 if self.times else 0))

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays owned, unused slots included."""
        return int(sum(a.nbytes for a in (self.acc, self.global_acc, self.first_ts_ms, self.last_ts_ms)))

    def ensure_capacity(self, n_slots: int, limit: int | None = None) -> None:
        """Make slots ``0 .. n_slots - 1`` valid, new rows empty; capacity by :func:`grown_capacity`."""
        if n_slots <= self.capacity:
            return
        old, new = self.capacity, grown_capacity(self.capacity, n_slots, limit)
        acc = np.zeros((new, *self.acc.shape[1:]), self.dtype)  # calloc: unused rows take no RSS
        acc[:old] = self.acc
        self.acc = acc
        if self.times:
            first = np.full(new, _INT64_MAX, np.int64)
            last = np.full(new, _INT64_MIN, np.int64)
            first[:old], last[:old] = self.first_ts_ms, self.last_ts_ms
            self.first_ts_ms, self.last_ts_ms = first, last

    def add(
        self, slot: NDArray[np.int64], type_code: NDArray[np.int8], ts_ms: NDArray[np.int64],
        weight: NDArray[np.float64],
    ) -> None:  # fmt: skip
        """Add a batch of weighted events, in any time order (late ones included).

        ``slot`` int64[n] in ``[0, capacity)``, ``type_code`` int8[n] in ``[0, n_types)``, ``ts_ms``
        int64[n] epoch ms with ``|ts_ms| <= 2**53``, ``weight`` float64[n] finite.  A wrong dtype
        raises TypeError, a wrong length or value ValueError, and then nothing is added.
        """
        slot = _column("slot", slot, np.int64)
        n = slot.shape[0]
        type_code = _column("type_code", type_code, np.int8, n)
        ts_ms = _column("ts_ms", ts_ms, np.int64, n)
        weight = _column("weight", weight, np.float64, n)
        if n == 0:
            return
        bad = _first_bad(slot, type_code, ts_ms, weight, self.capacity, self.n_types, _MAX_ABS_TS_MS)
        if bad[0] >= 0:  # one compiled pass; the first bad value of the first column that has one
            _check_range("slot", slot, 0, self.capacity, "; call ensure_capacity(max(slot) + 1) first")
            _check_range("type_code", type_code, 0, self.n_types)
            _check_range("ts_ms", ts_ms, -_MAX_ABS_TS_MS, _MAX_ABS_TS_MS + 1, " (epoch milliseconds)")
            msg = f"weight must be finite, got {weight[~np.isfinite(weight)][0]}"
            raise ValueError(msg)
        if self._landmark_ms is None:
            self._landmark_ms = (int(ts_ms[0]) // 1000) * 1000
        ts_max = int(bad[1])
        if self._lam_max * (ts_max - self._landmark_ms) / 1000.0 > self.renorm_exponent:
            self._move_landmark((ts_max // 1000) * 1000)
        _add_events(
            self.acc, self.global_acc, self.first_ts_ms, self.last_ts_ms,
            slot, type_code, ts_ms, weight, self._lam, np.int64(self._landmark_ms), PREFETCH_DISTANCE,
        )  # fmt: skip

    def rebase(self, now_ms: int, live: NDArray[np.int64] | None = None) -> bool:
        """Move the landmark to ``now_ms`` (whole seconds) once it is half-way to the renormalisation limit.

        The engine calls this at event-time ticks, so landmark moves (and their rounding) happen
        at the same points whatever the batching; :meth:`add` then never needs to move it
        itself.  Returns True if it moved.

        ``live`` (counters kept without times only): another counter's ``last_ts_ms`` whose
        never-written rows (``INT64_MIN``) hold ``+0.0`` in every cell here too; the move skips them
        (it would leave them ``+0.0``: the same bits).  The caller vouches for that; ignored when
        shorter than the capacity.
        """
        if self._landmark_ms is None:
            return False
        new = (int(now_ms) // 1000) * 1000
        if (
            new <= self._landmark_ms
            or self._lam_max * (new - self._landmark_ms) / 1000.0 <= self.renorm_exponent / 2
        ):
            return False
        self._move_landmark(new, live)
        return True

    def next_rebase_ms(self) -> int | None:
        """The earliest ``now_ms`` at which :meth:`rebase` would move the landmark (None: none before an add).

        :meth:`rebase` at any earlier ``now_ms`` returns False and changes nothing.
        """
        landmark = self._landmark_ms
        if landmark is None:
            return None
        cached = self._next_rebase
        if cached is not None and cached[0] == landmark:
            return cached[1]
        half = self.renorm_exponent / 2

        def moves(new: int) -> bool:  # rebase's own test, for new a whole second
            return new > landmark and self._lam_max * (new - landmark) / 1000.0 > half

        new = landmark + (int(half / self._lam_max) + 1) * 1000
        while new - 1000 > landmark and moves(new - 1000):
            new -= 1000
        while not moves(new):
            new += 1000
        self._next_rebase = (landmark, new)
        return new

    def _move_landmark(self, new_landmark_ms: int, live: NDArray[np.int64] | None = None) -> None:
        """Move the landmark to ``new_landmark_ms``, rescale the accumulators (``live``: :meth:`rebase`)."""
        assert self._landmark_ms is not None and new_landmark_ms > self._landmark_ms
        shift_s = (new_landmark_ms - self._landmark_ms) / 1000.0
        # row by row, the bits of _decay_live_rows / _decay_rows (a row never written stays zero);
        # acc is always C-contiguous (np.zeros when grown, a C-order copy when restored: owned)
        live = self.last_ts_ms if self.times else live_rows(live, self.capacity)
        _decay_live_rows_flat(self.acc, live, _INT64_MIN, self._lam, shift_s)
        glob = self.global_acc[np.newaxis]
        _decay_rows(glob, np.zeros(1, np.int64), self._lam, shift_s, glob)
        self._landmark_ms = new_landmark_ms

    def clear(self, slots: NDArray[np.int64]) -> None:
        """Zero ``slots`` (int64[m]) and reset their sentinels for reuse; global totals keep them."""
        slots = _column("slots", slots, np.int64)
        _check_range("slots", slots, 0, self.capacity)
        self.acc[slots] = 0.0
        if self.times:
            self.first_ts_ms[slots] = _INT64_MAX
            self.last_ts_ms[slots] = _INT64_MIN

    @property
    def lam(self) -> NDArray[np.float64]:
        """Decay rates ``ln 2 / half_life_s`` (1/s), float64[n_hl]; read-only use."""
        return self._lam

    def dt_s(self, now_ms: int) -> float:
        """Seconds from the landmark to ``now_ms``: a read decays ``acc`` by ``exp(-lam * dt_s)``."""
        return self._dt_s(now_ms)

    def _dt_s(self, now_ms: int) -> float:
        """Return ``now - landmark`` in seconds, after checking ``now_ms``."""
        if type(now_ms) is int:  # the engine's ticks: the checks below, without the isinstance calls
            if not -_MAX_ABS_TS_MS <= now_ms <= _MAX_ABS_TS_MS:
                msg = f"now_ms must be in [{-_MAX_ABS_TS_MS}, {_MAX_ABS_TS_MS + 1}), got {now_ms}"
                raise ValueError(msg)
            return (now_ms - (self._landmark_ms or 0)) / 1000.0
        if isinstance(now_ms, bool) or not isinstance(now_ms, int | np.integer):
            msg = f"now_ms must be an int (epoch milliseconds), got {type(now_ms).__name__}"
            raise TypeError(msg)
        if not -_MAX_ABS_TS_MS <= now_ms <= _MAX_ABS_TS_MS:
            msg = f"now_ms must be in [{-_MAX_ABS_TS_MS}, {_MAX_ABS_TS_MS + 1}), got {now_ms}"
            raise ValueError(msg)
        return (int(now_ms) - (self._landmark_ms or 0)) / 1000.0

    def read(self, slots: NDArray[np.int64], now_ms: int) -> NDArray[np.float64]:
        """Return the decayed counts of ``slots`` (int64[m]) at ``now_ms``, float64[m, n_types, n_hl].

        Accurate to rounding for ``now_ms`` at or after the landmark; a read before it scales up
        and reads ``inf`` where the true value exceeds the double range (never NaN).
        """
        slots = _column("slots", slots, np.int64)
        _check_range("slots", slots, 0, self.capacity)
        out = np.empty((slots.shape[0], *self.acc.shape[1:]), np.float64)
        _decay_rows(self.acc, slots, self._lam, self._dt_s(now_ms), out)
        return out

    def read_global(self, now_ms: int) -> NDArray[np.float64]:
        """Return the decayed counts over all products at ``now_ms``, float64[n_types, n_hl]."""
        out = np.empty_like(self.global_acc)
        _decay_rows(self.global_acc[None], _ROW0, self._lam, self._dt_s(now_ms), out[None])
        return out

    def to_arrays(self, *, copy: bool = True) -> dict[str, NDArray[np.generic]]:
        """Return the state as plain numpy arrays for a checkpoint (copies; copy=False: views of big ones).

        Keys: ``acc``, ``global_acc``, ``first_ts_ms``, ``last_ts_ms`` (int64[0] without times),
        ``landmark_ms`` (int64[1]), ``landmark_set`` (bool[1]) and ``half_lives_s`` (float64[n_hl],
        checked on restore).
        """
        cp = np.copy if copy else np.ndarray.view  # a view: owndata False, so a caller tells it from a copy
        return {"acc": cp(self.acc), "global_acc": self.global_acc.copy(),
                "first_ts_ms": cp(self.first_ts_ms), "last_ts_ms": cp(self.last_ts_ms),
                "landmark_ms": np.array([self._landmark_ms or 0], np.int64),
                "landmark_set": np.array([self._landmark_ms is not None], np.bool_),
                "half_lives_s": np.array(self.half_lives_s, np.float64)}  # fmt: skip

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_arrays` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return dict(self.to_arrays(copy=copy)), {}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> DecayedCounters:
        """:meth:`from_arrays` in these counters' layout, ``narrow_at_ms`` from ``meta`` (if there)."""
        return type(self).from_arrays(
            arrays, half_lives_s=self.half_lives_s, renorm_exponent=self.renorm_exponent, times=self.times,
            dtype=self.dtype.type, narrow_at_ms=meta.get("narrow_at_ms"),
        )  # fmt: skip

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, NDArray[np.generic]], *, half_lives_s: Sequence[float],
        renorm_exponent: float = RENORM_EXPONENT, times: bool = True,
        dtype: type[np.floating[Any]] = np.float64, narrow_at_ms: int | None = None,
    ) -> DecayedCounters:  # fmt: skip
        """Rebuild counters from :meth:`to_arrays` output, exactly; CheckpointError if they do not fit.

        ``narrow_at_ms``: float32 counters from a float64 checkpoint, not exactly: the landmark first
        moves (in float64, as :meth:`rebase` moves it) to that time, at or after every event counted
        (whole seconds), so every cell fits float32, then the cells are rounded to float32.  Without
        it such a checkpoint is refused by name.

        With ``times=False`` the times of a checkpoint written with them (before the counters kept
        none) are dropped; with ``times=True`` a checkpoint without them is refused.
        """
        acc = arrays.get("acc")
        n_hl = len(half_lives_s)
        kind = np.dtype(dtype)
        if narrow_at_ms is not None and kind == np.float32 and acc is not None and acc.dtype == np.float64:
            wide = cls.from_arrays(arrays, half_lives_s=half_lives_s, times=times)
            at = (int(narrow_at_ms) // 1000) * 1000
            if wide._landmark_ms is not None and at > wide._landmark_ms:
                wide._move_landmark(at)
            out = cls(
                half_lives_s=half_lives_s, n_types=wide.n_types, capacity=1,
                renorm_exponent=renorm_exponent, times=times, dtype=np.float32,
            )  # fmt: skip
            out.acc = wide.acc.astype(np.float32)  # every event at or before the landmark: cells <= weights
            out.global_acc, out.first_ts_ms = wide.global_acc, wide.first_ts_ms
            out.last_ts_ms = wide.last_ts_ms
            out._landmark_ms = wide._landmark_ms
            return out
        if acc is None or acc.dtype != kind or acc.ndim != 3 or acc.shape[0] < 1:
            got = "missing" if acc is None else f"{acc.dtype}{list(acc.shape)}"
            msg = f"decay checkpoint array 'acc' must be {kind}[capacity, n_types, n_hl], got {got}"
            if acc is not None and acc.dtype in (np.float32, np.float64) and acc.dtype != kind:
                msg += (
                    f": the checkpoint was written with {acc.dtype} accumulators and this version keeps "
                    f"{kind} ones; restore it with the version that wrote it, or delete it and start afresh"
                )
            raise CheckpointError(msg)
        capacity, n_types = acc.shape[:2]
        want: dict[str, tuple[Any, tuple[int, ...]]]
        want = {"acc": (kind.type, (capacity, n_types, n_hl)), "global_acc": (np.float64, (n_types, n_hl)),
                "first_ts_ms": (np.int64, (capacity,)), "last_ts_ms": (np.int64, (capacity,)),
                "landmark_ms": (np.int64, (1,)), "landmark_set": (np.bool_, (1,)),
                "half_lives_s": (np.float64, (n_hl,))}  # fmt: skip
        if not times:
            for key in ("first_ts_ms", "last_ts_ms"):  # none kept, or an older checkpoint's
                a = arrays.get(key)
                if a is not None and a.shape in ((0,), (capacity,)):
                    want[key] = (np.int64, a.shape)
        for key, (kind_of, shape) in want.items():
            a = arrays.get(key)
            if a is None or a.dtype != kind_of or a.shape != shape:
                got = "missing" if a is None else f"{a.dtype}{list(a.shape)}"
                msg = f"decay checkpoint array {key!r} must be {np.dtype(kind_of)}{list(shape)}, got {got}"
                raise CheckpointError(msg)
        if not np.array_equal(arrays["half_lives_s"], np.asarray(half_lives_s, np.float64)):
            msg = (
                f"decay checkpoint has half_lives_s {arrays['half_lives_s'].tolist()}, the "
                f"configuration has {list(half_lives_s)}; restore with the half-lives it was written with"
            )
            raise CheckpointError(msg)
        out = cls(
            half_lives_s=half_lives_s,
            n_types=n_types,
            capacity=1,
            renorm_exponent=renorm_exponent,
            times=times,
            dtype=kind.type,
        )
        out.acc = owned(acc, kind.type)  # a copy, unless the caller hands the arrays over
        out.global_acc = owned(arrays["global_acc"], np.float64)
        if times:
            out.first_ts_ms = owned(arrays["first_ts_ms"], np.int64)
            out.last_ts_ms = owned(arrays["last_ts_ms"], np.int64)
        out._landmark_ms = int(arrays["landmark_ms"][0]) if bool(arrays["landmark_set"][0]) else None
        return out


@no_refcounts
def _global_figures_into(
    g_acc: NDArray[np.float64], lam: NDArray[np.float64], dt_s: float, t_acc: NDArray[np.float64],
    t_lam: NDArray[np.float64], t_dt_s: float, channel: int, half_life: int, out: NDArray[np.float64],
) -> float:  # fmt: skip
    """The global counters' sums over types into ``out`` (float64[n_hl]); returns the trust figure.

    No allocation: the body of :func:`global_figures` (the compiled tick loop calls it at every tick).
    """
    for h in range(g_acc.shape[1]):
        out[h] = _scaled(g_acc[0, h], -lam[h] * dt_s)
    for k in range(1, g_acc.shape[0]):  # row by row, as numpy's sum over axis 0 adds them
        for h in range(g_acc.shape[1]):
            out[h] += _scaled(g_acc[k, h], -lam[h] * dt_s)
    return _scaled(t_acc[channel, half_life], -t_lam[half_life] * t_dt_s)


def global_figures(
    counters: DecayedCounters, trust: DecayedCounters, now_ms: int, *, channel: int, half_life: int
) -> tuple[NDArray[np.float64], float]:
    """``counters.read_global(now_ms).sum(axis=0)`` and ``trust.read_global(now_ms)[channel, half_life]``.

    Bit for bit (the same ``_scaled``, the types added in row order as numpy adds them), in one
    compiled call: the engine reads both at every tick that updates its change detector.
    """
    if not (0 <= channel < trust.n_types and 0 <= half_life < trust.global_acc.shape[1]):
        msg = f"channel {channel} or half_life {half_life} outside the trust counters"
        raise ValueError(msg)
    sums = np.empty(counters.global_acc.shape[1], np.float64)
    value = _global_figures_into(
        counters.global_acc, counters.lam, counters.dt_s(now_ms), trust.global_acc, trust.lam,
        trust.dt_s(now_ms), int(channel), int(half_life), sums,
    )  # fmt: skip
    return sums, float(value)
