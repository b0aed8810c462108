"""Kernel and decoder throughput, against baselines run in the same process.

(a) ``DecayedCounters.add`` (numba) on pre-decoded columns, fed in batches like the engine
    feeds it, against a vectorised numpy implementation of the same update (``np.add.at``
    with the same exp weights, same landmark rule, same first/last timestamps) and a
    pure-Python dict loop (on a subset, extrapolated per event).  All three end in the same
    state: the benchmark checks that they agree before printing a number.
(b) ``decode_records`` on contract NDJSON lines, against stdlib ``json.loads`` plus a plain
    Python validation of the same fields into the same columns, and against msgspec typed
    decoding alone (no columns: an upper bound for any msgspec-based decoder).

Run: ``.venv/bin/python benchmarks/bench_kernels.py [--quick] [--events N] [--products P] [--record]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import _common  # first: sets the numba cache dir before numba is imported  # noqa: I001
import numpy as np
import workloads
from _common import Report, fmt_rate, peak_rss_mb, verdict
from numpy.typing import NDArray

from viraltrend.config import load_config
from viraltrend.events import EVENT_TYPE_CODE, EVENT_TYPES
from viraltrend.kernels import decay
from viraltrend.kernels.decay import RENORM_EXPONENT, DecayedCounters
from viraltrend.stream import decode as decode_mod
from viraltrend.stream.decode import TS_MAX_MS, TS_MIN_MS, decode_records

N_TYPES = len(EVENT_TYPES)


# ---------------------------------------------------------------------------------------- (a)
def _fresh_counters(half_lives_s: Sequence[float], capacity: int) -> DecayedCounters:
    c = DecayedCounters(half_lives_s=half_lives_s, n_types=N_TYPES, capacity=capacity)
    c.acc[...] = 0.0  # fault the pages in now: a running engine's state is resident
    return c


def run_numba(
    cols: workloads.EventColumns, half_lives_s: Sequence[float], batch: int, mode: str = "add"
) -> tuple[float, int, float, DecayedCounters]:
    """Feed ``cols`` in batches; return (seconds, landmark moves, seconds of batches that moved it, state).

    ``mode``: ``"add"`` the public method (validation included); ``"kernel"`` the private
    ``_add_events`` kernel alone (landmark rule kept); ``"kernel-noprefetch"`` the same with
    software prefetch off.
    """
    c = _fresh_counters(half_lives_s, cols.n_products)
    parts = cols.batches(batch)
    lam = math.log(2.0) / np.asarray(half_lives_s, np.float64)
    moves, move_s = 0, 0.0
    gc.disable()
    t_start = time.perf_counter()
    for b in parts:
        before = c.landmark_ms
        t0 = time.perf_counter()
        if mode == "add":
            c.add(b.slot, b.type_code, b.ts_ms, b.weight)
        else:
            if c._landmark_ms is None:
                c._landmark_ms = (int(b.ts_ms[0]) // 1000) * 1000
            ts_max = int(b.ts_ms.max())
            if lam.max() * (ts_max - c._landmark_ms) / 1000.0 > RENORM_EXPONENT:
                c._move_landmark((ts_max // 1000) * 1000)
            distance = decay.PREFETCH_DISTANCE if mode == "kernel" else 0
            decay._add_events(
                c.acc,
                c.global_acc,
                c.first_ts_ms,
                c.last_ts_ms,
                b.slot,
                b.type_code,
                b.ts_ms,
                b.weight,
                lam,
                np.int64(c._landmark_ms),
                distance,
            )
        if before is not None and c.landmark_ms != before:
            moves += 1
            move_s += time.perf_counter() - t0
    elapsed = time.perf_counter() - t_start
    gc.enable()
    return elapsed, moves, move_s, c


class NumpyCounters:
    """The same forward-decayed update, vectorised with numpy (``np.add.at`` scatters in order)."""

    def __init__(self, half_lives_s: Sequence[float], n_types: int, capacity: int) -> None:
        self.lam = math.log(2.0) / np.asarray(half_lives_s, np.float64)
        n_hl = self.lam.shape[0]
        self.acc = np.zeros((capacity, n_types, n_hl))
        self.acc[...] = 0.0
        self.global_acc = np.zeros((n_types, n_hl))
        self.first_ts_ms = np.full(capacity, np.iinfo(np.int64).max, np.int64)
        self.last_ts_ms = np.full(capacity, np.iinfo(np.int64).min, np.int64)
        self.landmark_ms: int | None = None
        self._h = np.arange(n_hl, dtype=np.int64)

    def add(
        self,
        slot: NDArray[np.int64],
        type_code: NDArray[np.int8],
        ts_ms: NDArray[np.int64],
        weight: NDArray[np.float64],
    ) -> None:
        if self.landmark_ms is None:
            self.landmark_ms = (int(ts_ms[0]) // 1000) * 1000
        ts_max = int(ts_ms.max())
        if self.lam.max() * (ts_max - self.landmark_ms) / 1000.0 > RENORM_EXPONENT:
            new = (ts_max // 1000) * 1000
            factor = np.exp(-self.lam * ((new - self.landmark_ms) / 1000.0))
            self.acc *= factor
            self.global_acc *= factor
            self.landmark_ms = new
        n_hl = self.lam.shape[0]
        t_s = (ts_ms - self.landmark_ms) / 1000.0
        v = (weight[:, None] * np.exp(t_s[:, None] * self.lam)).ravel()  # float64[n * n_hl]
        k = type_code.astype(np.int64)
        cell = ((slot * self.acc.shape[1] + k) * n_hl)[:, None] + self._h
        np.add.at(self.acc.reshape(-1), cell.ravel(), v)
        np.add.at(self.global_acc.reshape(-1), (k[:, None] * n_hl + self._h).ravel(), v)
        np.minimum.at(self.first_ts_ms, slot, ts_ms)
        np.maximum.at(self.last_ts_ms, slot, ts_ms)


def run_numpy(
    cols: workloads.EventColumns, half_lives_s: Sequence[float], batch: int
) -> tuple[float, NumpyCounters]:
    c = NumpyCounters(half_lives_s, N_TYPES, cols.n_products)
    parts = cols.batches(batch)
    gc.disable()
    t0 = time.perf_counter()
    for b in parts:
        c.add(b.slot, b.type_code, b.ts_ms, b.weight)
    elapsed = time.perf_counter() - t0
    gc.enable()
    return elapsed, c


def python_dict_add(
    state: dict[str, Any],
    slot: list[int],
    type_code: list[int],
    ts_ms: list[int],
    weight: list[float],
    lam: list[float],
    landmark_ms: int,
) -> None:
    """Pure Python: dicts keyed by (slot, type) and slot, ``math.exp`` per event and half-life."""
    acc, glob, first, last = state["acc"], state["global"], state["first"], state["last"]
    exp = math.exp
    n_hl = len(lam)
    for s, k, t, w in zip(slot, type_code, ts_ms, weight, strict=True):
        t_s = (t - landmark_ms) / 1000.0
        cell = acc.get((s, k))
        if cell is None:
            cell = acc[(s, k)] = [0.0] * n_hl
        g = glob[k]
        for h in range(n_hl):
            v = w * exp(lam[h] * t_s)
            cell[h] += v
            g[h] += v
        f = first.get(s)
        if f is None or t < f:
            first[s] = t
        last_t = last.get(s)
        if last_t is None or t > last_t:
            last[s] = t


def _new_dict_state(n_hl: int) -> dict[str, Any]:
    return {"acc": {}, "global": [[0.0] * n_hl for _ in range(N_TYPES)], "first": {}, "last": {}}


def run_python(
    cols: workloads.EventColumns, half_lives_s: Sequence[float]
) -> tuple[float, dict[str, Any], int]:
    """Return (seconds, state, landmark_ms); the subset is short enough that no landmark move is due."""
    lam = [math.log(2.0) / h for h in half_lives_s]
    landmark_ms = (int(cols.ts_ms[0]) // 1000) * 1000
    span_exp = max(lam) * (int(cols.ts_ms.max()) - landmark_ms) / 1000.0
    assert span_exp <= RENORM_EXPONENT, "python subset too long for a fixed landmark"
    args = (cols.slot.tolist(), cols.type_code.tolist(), cols.ts_ms.tolist(), cols.weight.tolist())
    state = _new_dict_state(len(lam))
    gc.disable()
    t0 = time.perf_counter()
    python_dict_add(state, *args, lam, landmark_ms)
    elapsed = time.perf_counter() - t0
    gc.enable()
    return elapsed, state, landmark_ms


def python_bytes_per_product(cols: workloads.EventColumns, half_lives_s: Sequence[float]) -> float:
    """Bytes the dict state allocates per distinct product (tracemalloc, a separate untimed run)."""
    lam = [math.log(2.0) / h for h in half_lives_s]
    landmark_ms = (int(cols.ts_ms[0]) // 1000) * 1000
    args = (cols.slot.tolist(), cols.type_code.tolist(), cols.ts_ms.tolist(), cols.weight.tolist())
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    state = _new_dict_state(len(lam))
    python_dict_add(state, *args, lam, landmark_ms)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / max(len(state["first"]), 1)


def _check_python_agrees(
    cols: workloads.EventColumns, half_lives_s: Sequence[float], state: dict[str, Any]
) -> bool:
    c = _fresh_counters(half_lives_s, cols.n_products)
    c.add(cols.slot, cols.type_code, cols.ts_ms, cols.weight)
    keys = list(state["acc"])
    got = c.acc[[s for s, _ in keys], [k for _, k in keys]]
    want = np.array([state["acc"][key] for key in keys])
    first = np.array([state["first"][s] for s in state["first"]])
    return bool(np.allclose(got, want, rtol=1e-9, atol=0.0)) and bool(
        np.array_equal(c.first_ts_ms[list(state["first"])], first)
    )


def _agree(a: DecayedCounters, b: NumpyCounters) -> bool:
    scale = float(np.abs(a.acc).max()) or 1.0
    return (
        a.landmark_ms == b.landmark_ms
        and bool(np.allclose(a.acc, b.acc, rtol=1e-9, atol=1e-12 * scale))
        and bool(np.allclose(a.global_acc, b.global_acc, rtol=1e-9))
        and bool(np.array_equal(a.first_ts_ms, b.first_ts_ms))
        and bool(np.array_equal(a.last_ts_ms, b.last_ts_ms))
    )


def _repeat(fn: Callable[[], tuple[float, Any]], repeats: int) -> tuple[list[float], Any]:
    times: list[float] = []
    out = None
    for _ in range(repeats):
        out = None  # free the previous state before building the next
        gc.collect()
        out = fn()
        times.append(out[0])
    return times, out


def bench_counters(args: argparse.Namespace, report: Report) -> None:
    half_lives = load_config(None).decay.half_lives_s
    n, p = args.events, args.products
    _common.console.print(
        f"[bold]building workload[/bold]: {n:,} Zipf events over {p:,} products (seed {args.seed})"
    )
    cols = workloads.event_columns(n, p, dist="zipf", seed=args.seed)
    # warm the JIT (and numba's disk cache) on a tiny workload before anything is timed
    warm = workloads.event_columns(10_000, 1_000, seed=99)
    for mode in ("add", "kernel", "kernel-noprefetch"):
        run_numba(warm, half_lives, 1_000, mode)
    NumpyCounters(half_lives, N_TYPES, 1_000).add(warm.slot, warm.type_code, warm.ts_ms, warm.weight)

    rows: list[tuple[str, int, list[float], str, float | None]] = []  # name, events, times, note, bytes
    excl: dict[str, list[float]] = {}  # numba rows: events/s of the batches that did not move the landmark
    nbytes = DecayedCounters(half_lives_s=half_lives, n_types=N_TYPES, capacity=1).nbytes_per_slot
    numba_state = None

    def numba_row(label: str, c: workloads.EventColumns, mode: str, note: str) -> None:
        nonlocal numba_state
        runs: list[tuple[float, int, float]] = []

        def once() -> tuple[float, Any]:
            elapsed, moves, move_s, state = run_numba(c, half_lives, args.batch, mode)
            runs.append((elapsed, moves, move_s))
            return elapsed, state

        times, out = _repeat(once, args.repeats)
        if numba_state is None:
            numba_state = out[1]
        moves = runs[-1][1]
        excl[label] = [(len(c) - m * args.batch) / (t - ms) for t, m, ms in runs]
        move_note = f"{moves} landmark moves ({statistics.median(r[2] for r in runs):.3f} s in those batches)"
        rows.append((label, len(c), times, f"{note}; {move_note}" if note else move_note, nbytes))

    numba_row("numba DecayedCounters.add (public, validated)", cols, "add", "")
    numba_row("numba _add_events kernel only", cols, "kernel", "diagnostic: no input validation")
    numba_row(
        "numba _add_events, prefetch off", cols, "kernel-noprefetch", "diagnostic: no validation, no prefetch"
    )
    gc.collect()

    np_times, np_out = _repeat(lambda: run_numpy(cols, half_lives, args.batch), max(1, args.repeats - 2))
    numpy_state = np_out[1]
    agree_np = _agree(numba_state, numpy_state)
    rows.append(
        (
            "numpy np.add.at (vectorised)",
            n,
            np_times,
            f"same final state as numba: {'yes' if agree_np else 'NO'}",
            numpy_state.acc[0].nbytes + 16,
        )
    )
    del numpy_state, np_out
    numba_state = None
    gc.collect()

    sub = cols.head(min(args.python_events, n))
    py_times, py_out = _repeat(lambda: run_python(sub, half_lives), max(1, args.repeats - 2))
    agree_py = _check_python_agrees(sub, half_lives, py_out[1])
    py_bytes = python_bytes_per_product(sub, half_lives)
    rows.append(
        (
            "pure Python dicts",
            len(sub),
            py_times,
            f"{len(sub):,}-event subset, extrapolated per event; "
            f"agrees with numba: {'yes' if agree_py else 'NO'}",
            py_bytes,
        )
    )
    del py_out
    gc.collect()

    if not args.no_uniform:
        ucols = workloads.event_columns(n, p, dist="uniform", seed=args.seed)
        del cols
        gc.collect()
        numba_row(
            "numba DecayedCounters.add, uniform slots",
            ucols,
            "add",
            "cache-hostile: all products equally likely",
        )
        del ucols
        gc.collect()

    numpy_rate = n / statistics.median(np_times)
    table = []
    for name, events, ts, note, b in rows:
        med, best = events / statistics.median(ts), events / min(ts)
        ex = fmt_rate(statistics.median(excl[name])) if name in excl else ""
        table.append(
            (
                name,
                f"{events:,}",
                fmt_rate(med),
                fmt_rate(best),
                ex,
                f"{med / numpy_rate:.2f}x",
                "n/a" if b is None else f"{b:.0f}",
                note,
            )
        )
    every_h = RENORM_EXPONENT / (math.log(2) / min(half_lives)) / 3600
    public = n / statistics.median(rows[0][2])
    public_ex = statistics.median(excl[rows[0][0]])
    report.table(
        f"(a) decayed-counter update: {n:,} events over {p:,} products (Zipf 1.1, one simulated day), "
        f"half-lives {list(half_lives)} s x {N_TYPES} types, batches of {args.batch:,}",
        (
            "method",
            "events",
            "events/s (median)",
            "events/s (best)",
            "excl. landmark moves",
            "vs numpy",
            "bytes/product",
            "notes",
        ),
        table,
        notes=[
            f"median and best of {args.repeats} runs (numpy and Python: {max(1, args.repeats - 2)}); "
            "state pages faulted in before timing; JIT warmed on a separate small workload",
            f"target >= 20M events/s on one core with 1M products"
            f"{'' if p == 1_000_000 else f' (this run: {p:,} products, not the target workload)'}: "
            f"{verdict(public >= 20e6)} "
            f"({fmt_rate(public)}/s, public add, Zipf; {fmt_rate(public_ex)}/s over the batches that did not "
            "move the landmark)",
            "a landmark move rescales all capacity x types x half-lives accumulators (O(capacity)); with the "
            f"60 s half-life it is due every ~{every_h:.1f} h "
            f"of event time: {rows[0][3].split('; ')[-1]} in this simulated day",
            f"target <= 256 bytes/product: {verdict(nbytes <= 256)} (nbytes_per_slot = {nbytes}: "
            f"{N_TYPES} types x {len(half_lives)} half-lives x 8 B + first/last ts 16 B)",
            "Python dict bytes/product: tracemalloc of the dict state / distinct products in the subset",
        ],
    )


# ---------------------------------------------------------------------------------------- (b)
_LIMITS = {
    "product_id": 128,
    "user_id": 128,
    "event_id": 128,
    "seller_id": 128,
    "category": 64,
    "video_id": 128,
    "creator_id": 128,
}
_OPTIONAL = ("event_id", "seller_id", "category", "video_id", "creator_id")
_INT64_MAX = 2**63 - 1


def stdlib_decode(raw: Sequence[bytes]) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """``json.loads`` + plain Python checks of the contract fields into the same columns as decode_records."""
    ts_l: list[int] = []
    code_l: list[int] = []
    pid: list[str] = []
    uid: list[str] = []
    opt: dict[str, list[str | None]] = {k: [] for k in ("event_id", "seller_id", "category")}
    price_l: list[float] = []
    qty_l: list[int] = []
    rejects: list[tuple[int, str]] = []
    loads, codes, isfinite = json.loads, EVENT_TYPE_CODE, math.isfinite
    for i, line in enumerate(raw):
        try:
            obj = loads(line)
        except (ValueError, UnicodeDecodeError):
            rejects.append((i, "bad_json"))
            continue
        if type(obj) is not dict:
            rejects.append((i, "not_object"))
            continue
        ts = obj.get("ts")
        if type(ts) is not int or not TS_MIN_MS <= ts <= TS_MAX_MS:
            rejects.append((i, "bad_ts"))
            continue
        t = obj.get("type")
        code = codes.get(t) if type(t) is str else None
        if code is None:
            rejects.append((i, "unknown_event_type"))
            continue
        p, u = obj.get("product_id"), obj.get("user_id")
        if type(p) is not str or not 1 <= len(p) <= 128 or type(u) is not str or not 1 <= len(u) <= 128:
            rejects.append((i, "bad_string"))
            continue
        bad = False
        for name in _OPTIONAL:
            v = obj.get(name)
            if v is not None and (type(v) is not str or not 1 <= len(v) <= _LIMITS[name]):
                bad = True
                break
        if bad:
            rejects.append((i, "bad_string"))
            continue
        price = obj.get("price")
        if price is None:
            price = math.nan
        elif type(price) not in (int, float) or not isfinite(price) or price < 0:
            rejects.append((i, "bad_number"))
            continue
        q = obj.get("quantity")
        if q is None:
            q = 1
        elif type(q) is not int or not 1 <= q <= _INT64_MAX:
            rejects.append((i, "bad_number"))
            continue
        ts_l.append(ts)
        code_l.append(code)
        pid.append(p)
        uid.append(u)
        for name, col in opt.items():
            col.append(obj.get(name))
        price_l.append(float(price))
        qty_l.append(q)
    n = len(ts_l)
    cols = {
        "ts_ms": np.fromiter(ts_l, np.int64, n),
        "type_code": np.fromiter(code_l, np.int8, n),
        "product_id": pid,
        "user_id": uid,
        **opt,
        "price": np.fromiter(price_l, np.float64, n),
        "quantity": np.fromiter(qty_l, np.int64, n),
    }
    return cols, rejects


def _msgspec_decoder() -> Any:
    """The engine's own typed decoder when it exposes one, else a mirror of the contract schema."""
    found = getattr(decode_mod, "_DECODER", None)
    if found is not None:
        return found
    from typing import Annotated, Literal

    import msgspec
    from msgspec import Meta

    Id = Annotated[str, Meta(min_length=1, max_length=128)]

    class Event(msgspec.Struct, frozen=True, gc=False):
        ts: Annotated[int, Meta(ge=TS_MIN_MS, le=TS_MAX_MS)]
        type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
        product_id: Id
        user_id: Id
        event_id: Id | None = None
        seller_id: Id | None = None
        category: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
        price: Annotated[float, Meta(ge=0.0)] | None = math.nan
        quantity: Annotated[int, Meta(ge=1)] | None = 1
        video_id: Id | None = None
        creator_id: Id | None = None

    return msgspec.json.Decoder(Event)


def bench_decode(args: argparse.Namespace, report: Report) -> None:
    n = args.lines
    _common.console.print(f"[bold]building workload[/bold]: {n:,} contract NDJSON lines (seed {args.seed})")
    lines = workloads.ndjson_lines(n, args.products, seed=args.seed)
    mb = sum(map(len, lines)) / 1e6
    dec = _msgspec_decoder()
    warm = lines[:20_000]
    decode_records(warm)
    stdlib_decode(warm)
    list(map(dec.decode, warm))

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    results: dict[str, list[float]] = {}
    outs: dict[str, Any] = {}
    for name, fn in (
        ("decode_records (msgspec + columns)", lambda: decode_records(lines)),
        ("stdlib json.loads + Python validation", lambda: stdlib_decode(lines)),
        ("msgspec typed decode alone (upper bound)", lambda: list(map(dec.decode, lines))),
    ):
        times = []
        for _ in range(args.repeats if "stdlib" not in name else max(1, args.repeats - 2)):
            outs.pop(name, None)
            dt, out = timed(fn)
            times.append(dt)
            outs[name] = out
        results[name] = times
    batch, rejects = outs["decode_records (msgspec + columns)"]
    cols, std_rejects = outs["stdlib json.loads + Python validation"]
    agree = (
        not rejects
        and not std_rejects
        and len(batch) == n
        and np.array_equal(batch.ts_ms, cols["ts_ms"])
        and np.array_equal(batch.type_code, cols["type_code"])
        and batch.product_id == cols["product_id"]
        and batch.user_id == cols["user_id"]
        and batch.seller_id == cols["seller_id"]
        and np.array_equal(batch.quantity, cols["quantity"])
        and np.allclose(batch.price, cols["price"], equal_nan=True)
    )
    outs.clear()
    base = n / statistics.median(results["stdlib json.loads + Python validation"])
    rows = []
    for name, times in results.items():
        med = n / statistics.median(times)
        rows.append(
            (
                name,
                f"{n:,}",
                fmt_rate(med),
                fmt_rate(n / min(times)),
                f"{med / base:.2f}x",
                f"{mb / statistics.median(times):.0f}",
            )
        )
    dr = n / statistics.median(results["decode_records (msgspec + columns)"])
    report.table(
        f"(b) decoding {n:,} contract NDJSON lines ({mb:.0f} MB, all valid, ~{mb * 1e6 / n:.0f} B/line)",
        ("method", "lines", "events/s (median)", "events/s (best)", "vs stdlib json", "MB/s"),
        rows,
        notes=[
            f"median and best of {args.repeats} runs (stdlib: {max(1, args.repeats - 2)}); "
            "one call over all lines",
            f"decode_records and the stdlib baseline give the same columns: {'yes' if agree else 'NO'}",
            f"target decode >= 1M events/s: {verdict(dr >= 1e6)} ({fmt_rate(dr)}/s)",
            "msgspec alone = the engine's typed msgspec Decoder mapped over the lines; "
            "structs not turned into columns",
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_000_000, help="events for the kernel benchmark (10M)")
    ap.add_argument("--products", type=int, default=1_000_000, help="distinct products (1M)")
    ap.add_argument("--lines", type=int, default=1_000_000, help="NDJSON lines for the decode benchmark (1M)")
    ap.add_argument(
        "--batch", type=int, default=50_000, help="events per add() call (replay's default batch)"
    )
    ap.add_argument("--python-events", type=int, default=200_000, help="subset for the pure-Python baseline")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per method (baselines: 2 fewer)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--part", choices=("all", "kernels", "decode"), default="all")
    ap.add_argument("--no-uniform", action="store_true", help="skip the uniform-slots row")
    ap.add_argument("--quick", action="store_true", help="10x smaller workloads, for a fast check")
    ap.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.events //= 10
        args.products //= 10
        args.lines //= 10
        args.python_events //= 10
        args.repeats = min(args.repeats, 3)
    report = Report(
        "bench_kernels", ["benchmarks/bench_kernels.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.part in ("all", "kernels"):
        bench_counters(args, report)
    if args.part in ("all", "decode"):
        bench_decode(args, report)
    report.note(f"peak RSS of the benchmark process: {peak_rss_mb():.0f} MB")
    if args.record:
        report.record()


if __name__ == "__main__":
    main()
