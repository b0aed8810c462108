"""Bounded state (issue 11): RSS per tracked product, and RSS under a stream of random user ids.

Each part runs in a fresh child process (so its RSS is its own), with the default config, on
synthetic :class:`~viraltrend.events.EventBatch` columns fed to :class:`~viraltrend.engine.Engine`
directly (no decoding: the decoder holds no state).  The JIT is warmed on a tiny engine first;
the baseline is the child's resident set (``VmRSS``) after that warm-up and a ``gc.collect``.

1. **Products** (``--products``, default 10M): one event per product (``p-%08d``, sellers and
   categories from pools of 10k and 40, users from a pool of 1M), spread over 50 minutes of event
   time, in batches of 250k; then event time moves on 70 minutes with a trickle of events (one
   product) so every (user, product) pair leaves the caps window and the dedup window; nothing is
   evicted (one view stays above ``state.evict_below``).  Reported: ``VmRSS`` growth per tracked
   product, and the engine's own arrays per product (counters, trust counters, CUSUM, seller and
   category columns, the product name table).
2. **Random users** (``--events``, default 20M): a catalogue of 100k products (Zipf 1.1), every
   event from a new random 64-bit user id and with a random ``event_id``, 20M events over 8 hours
   of event time (about 700 events per second of event time).  ``VmRSS`` and the user state are
   sampled every 1M events: after the trust windows (``max(cap_window_s, fresh_window_s)``, one
   hour) idle users are released, so the live-user state should stop growing; the released
   users' hashes (*veterans*, kept so that a returning user is not fresh again) are shown apart.

Run: ``.venv/bin/python benchmarks/bench_state.py [--products N] [--events N] [--record]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import _common  # first: sets the numba cache dir before numba is imported  # noqa: I001
from _common import BENCH_DIR, Report

START_MS = 1_764_201_600_000
BATCH = 250_000

_CHILD = r"""
import gc, json, sys, time
import numpy as np
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.events import EventBatch

START_MS, BATCH = int(sys.argv[2]), int(sys.argv[3])
mode, n = sys.argv[1], int(sys.argv[4])
cfg = load_config(None, environ={}, overrides=json.loads(sys.argv[5]))


def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def batch(ts, types, pids, users, eids, sellers, cats):
    m = ts.shape[0]
    return EventBatch(ts_ms=ts, type_code=types, product_id=pids, user_id=users, event_id=eids,
                      seller_id=sellers, category=cats, price=np.full(m, np.nan),
                      quantity=np.ones(m, np.int64), partition=np.zeros(m, np.int32),
                      offset=np.arange(m, dtype=np.int64))


def arrays_report(engine, min_bytes=1 << 20):
    # Every numpy array the engine holds (>= 1 MiB), by attribute path: bytes allocated and resident.
    # Resident bytes: the array's pages present in memory, from /proc/self/pagemap (bit 63 of each
    # page's entry; calloc'd pages never written are not present).
    pagemap = open("/proc/self/pagemap", "rb")

    def resident(addr, nbytes):
        p0, p1 = addr // 4096, (addr + nbytes - 1) // 4096
        pagemap.seek(8 * p0)
        entries = np.frombuffer(pagemap.read(8 * (p1 - p0 + 1)), np.uint64)
        return int(((entries >> np.uint64(63)) & np.uint64(1)).sum()) * 4096

    found, seen = {}, set()

    def walk(obj, path, depth):
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.nbytes >= min_bytes:
                rss = resident(obj.__array_interface__["data"][0], obj.nbytes)
                found[path] = (int(obj.nbytes), int(rss), str(obj.dtype), list(obj.shape))
            return
        if isinstance(obj, (list, tuple)):
            for i, x in enumerate(obj[:64]):
                walk(x, f"{path}[{i}]", depth + 1)
            return
        d = getattr(obj, "__dict__", None)
        if d is None or not type(obj).__module__.startswith("viraltrend"):
            return
        for k, v in d.items():
            walk(v, f"{path}.{k}" if path else k, depth + 1)

    walk(engine, "", 0)
    return found


def user_state(e):
    u = e.users
    vet = u._vet_keys.nbytes + u._vet_vals.nbytes
    return {"users_live": len(u), "veterans": u.n_veterans, "user_table_b": u.nbytes - vet, "veterans_b": vet,
            "user_signals_b": e.user_signals.nbytes, "dedup_ids": len(e.dedup) if e.dedup else 0,
            "dedup_b": (e.dedup._current.nbytes + e.dedup._previous.nbytes) if e.dedup else 0}


warm = Engine(cfg)
rng = np.random.default_rng(7)
for k in range(3):
    m = 2000
    warm.process(batch(START_MS + k * 60_000 + np.arange(m, dtype=np.int64) * 10, np.zeros(m, np.int8),
                       [f"w{i % 300}" for i in range(m)], [f"u{i % 500}" for i in range(m)],
                       [f"e{k}-{i}" for i in range(m)], ["s"] * m, ["c"] * m))
del warm
gc.collect()
base = rss_mb()
engine = Engine(cfg)
out = {"mode": mode, "base_rss_mb": base}
t0 = time.perf_counter()
if mode == "products":
    sellers = [f"s-{i}" for i in range(10_000)]
    cats = [f"c-{i}" for i in range(40)]
    span = 50 * 60_000
    for a in range(0, n, BATCH):
        b = min(n, a + BATCH)
        m = b - a
        ts = START_MS + (np.arange(a, b, dtype=np.int64) * span) // n
        users = rng.integers(0, 1_000_000, m)
        engine.process(batch(ts, np.zeros(m, np.int8), [f"p-{i:08d}" for i in range(a, b)],
                             [f"u-{u}" for u in users.tolist()], [f"e-{i}" for i in range(a, b)],
                             [sellers[i % 10_000] for i in range(a, b)], [cats[i % 40] for i in range(a, b)]))
    end = START_MS + span
    for k in range(1, 71):  # 70 minutes more, one event a minute on one product: windows pass, ticks run
        t = end + k * 60_000
        engine.process(batch(np.array([t], np.int64), np.zeros(1, np.int8), ["p-00000000"], ["u-0"],
                             [f"t-{k}"], ["s-0"], ["c-0"]))
    gc.collect()
    e = engine
    out.update({
        "products": n, "tracked": e.tracked_products, "rss_mb": rss_mb(), "wall_s": time.perf_counter() - t0,
        "counters_b": e.counters.nbytes + e.trust_counters.nbytes, "cusum_b": e.detector.cusum.nbytes,
        "columns_b": e.seller_of.nbytes + e.category_of.nbytes, "names_b": e.products.nbytes,
        "capacity": e.counters.capacity, **user_state(e), "arrays": arrays_report(e),
    })
elif mode == "hostile":  # every product, seller, category, user and event id new and random
    hours = 8.0
    span = int(hours * 3_600_000)
    samples = []
    for a in range(0, n, BATCH):
        b = min(n, a + BATCH)
        m = b - a
        ts = START_MS + (np.arange(a, b, dtype=np.int64) * span) // n
        ids = rng.integers(0, 2**63, (5, m))
        engine.process(batch(ts, rng.choice(6, m, p=[0.7, 0.12, 0.05, 0.04, 0.06, 0.03]).astype(np.int8),
                             [f"p{x:x}" for x in ids[0].tolist()], [f"u{x:x}" for x in ids[1].tolist()],
                             [f"e{x:x}" for x in ids[2].tolist()], [f"s{x:x}" for x in ids[3].tolist()],
                             [f"c{x:x}" for x in ids[4].tolist()]))
        if b % 1_000_000 == 0 or b == n:
            gc.collect()
            e = engine
            samples.append({"events": b, "event_time_h": (int(ts[-1]) - START_MS) / 3.6e6, "rss_mb": rss_mb(),
                            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time(),
                            "tracked": e.tracked_products, "products_held": len(e.products),
                            "sellers": len(e.sellers), "categories": len(e.categories),
                            "evicted_over_cap": getattr(e.stats, "evicted_over_cap", 0),
                            "names_b": e.products.nbytes,
                            "id_tables_b": sum(getattr(t, "nbytes", 0) for t in (e.sellers, e.categories)),
                            "capacity": e.counters.capacity, **user_state(e)})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
    out["samples"] = samples
else:
    hours = 8.0
    span = int(hours * 3_600_000)
    zipf = 1.0 / np.arange(1, 100_001) ** 1.1
    zipf /= zipf.sum()
    samples = []
    for a in range(0, n, BATCH):
        b = min(n, a + BATCH)
        m = b - a
        ts = START_MS + (np.arange(a, b, dtype=np.int64) * span) // n
        prod = rng.choice(100_000, m, p=zipf)
        uid = rng.integers(0, 2**63, m)
        eid = rng.integers(0, 2**63, m)
        engine.process(batch(ts, rng.choice(6, m, p=[0.7, 0.12, 0.05, 0.04, 0.06, 0.03]).astype(np.int8),
                             [f"p-{i}" for i in prod.tolist()], [f"u{x:x}" for x in uid.tolist()],
                             [f"e{x:x}" for x in eid.tolist()], ["s-1"] * m, ["c-1"] * m))
        if b % 1_000_000 == 0 or b == n:
            gc.collect()
            u = engine.users
            vets = (u._vet_keys, u._vet_vals, u._old_keys, u._old_vals)
            per_user = u.nbytes - sum(a.nbytes for a in vets)
            samples.append({"events": b, "event_time_h": (int(ts[-1]) - START_MS) / 3.6e6, "rss_mb": rss_mb(),
                            "wall_s": time.perf_counter() - t0, "tracked": engine.tracked_products,
                            "per_user_b": per_user + engine.user_signals.first_seen_ms.nbytes,
                            "caps_rows": engine.user_signals.rows.shape[0], **user_state(engine)})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
    out["samples"] = samples
print(json.dumps(out))
"""


def child(
    mode: str, n: int, overrides: dict[str, object] | None = None, tree: Path | None = None
) -> dict[str, Any]:
    """Run one part in a fresh interpreter with PYTHONPATH at ``tree`` (this one); return its JSON."""
    env = {**_common.os.environ, "PYTHONPATH": str(tree or BENCH_DIR.parent)}
    cmd = [sys.executable, "-c", _CHILD, mode, str(START_MS), str(BATCH), str(n), json.dumps(overrides or {})]
    # cwd=tree: ``python -c`` puts the working directory first on sys.path, before PYTHONPATH
    cwd = tree or BENCH_DIR.parent
    done = subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.PIPE, text=True)  # noqa: S603
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _budget_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[object, ...]]:
    """Rows of the per-array budget: allocated and resident bytes per tracked product, before and after."""
    nb, na = int(before["tracked"]), int(after["tracked"])
    ab, aa = before["arrays"], after["arrays"]

    def cell(arrays: dict[str, Any], key: str, n: int) -> tuple[str, str, str]:
        if key not in arrays:
            return ("-", "-", "-")
        nbytes, rss, dtype, shape = arrays[key]
        res = f"{rss / n:.1f}" if rss >= 0 else "?"
        return (f"{dtype}{shape}", f"{nbytes / n:.1f}", res)

    rows: list[tuple[object, ...]] = []
    tot = [0.0, 0.0, 0.0, 0.0]
    for key in sorted(set(ab) | set(aa)):
        b, a = cell(ab, key, nb), cell(aa, key, na)
        rows.append((key, b[0], b[1], b[2], a[0], a[1], a[2]))
        for i, (arrays, n) in enumerate(((ab, nb), (aa, na))):
            if key in arrays:
                tot[2 * i] += arrays[key][0] / n
                tot[2 * i + 1] += max(arrays[key][1], 0) / n
    rows.append(
        (
            "**arrays >= 1 MiB, total**",
            "",
            f"{tot[0]:.0f}",
            f"{tot[1]:.0f}",
            "",
            f"{tot[2]:.0f}",
            f"{tot[3]:.0f}",
        )
    )
    return rows


def compare(report: Report, before: Path, products: int, events: int) -> None:
    """Parts 1 and 2 on ``before`` and on this tree, in one run, as before/after tables."""
    if products:
        rb = child("products", products, None, before)
        ra = child("products", products, None, None)
        grown = [
            (float(r["rss_mb"]) - float(r["base_rss_mb"])) * 2**20 / int(r["tracked"]) for r in (rb, ra)
        ]  # fmt: skip
        report.table(
            f"RSS per tracked product at {products:,} products, before ({before}) and after (this tree)",
            ["measure", "before", "after"],
            [
                ("VmRSS growth per tracked product (B)", f"{grown[0]:.0f}", f"{grown[1]:.0f}"),
                ("base RSS after the JIT warm-up (MB)", f"{rb['base_rss_mb']:.0f}",
                 f"{ra['base_rss_mb']:.0f}"),
                ("VmRSS at the end (MB)", f"{rb['rss_mb']:.0f}", f"{ra['rss_mb']:.0f}"),
                ("product slots allocated", f"{int(rb['capacity']):,}", f"{int(ra['capacity']):,}"),
                ("caps table (user signals) allocated (MB)", f"{rb['user_signals_b'] / 2**20:.0f}",
                 f"{ra['user_signals_b'] / 2**20:.0f}"),
                ("build seconds (wall, shared machine)", f"{rb['wall_s']:.0f}", f"{ra['wall_s']:.0f}"),
            ],
            ["target (issue 11): <= 320 bytes of RSS per tracked product at 10M products, id tables in"],
        )  # fmt: skip
        report.table(
            "Budget per tracked product: every array >= 1 MiB the engine holds (B per tracked product)",
            [
                "array",
                "before: dtype[shape]",
                "alloc",
                "resident",
                "after: dtype[shape]",
                "alloc",
                "resident",
            ],
            _budget_rows(rb, ra),
            [
                "resident: the array's pages present in /proc/self/pagemap (calloc'd pages never written "
                "cost nothing)",
            ],
        )
    if events:
        ub = child("users", events, None, before)
        ua = child("users", events, None, None)
        rows = []
        for sb, sa in zip(ub["samples"], ua["samples"], strict=True):  # type: ignore[call-overload]
            rows.append((
                f"{sa['events']:,}", f"{sa['event_time_h']:.1f}",
                f"{sb['rss_mb']:.0f}", f"{sa['rss_mb']:.0f}",
                f"{sa['users_live']:,}",
                f"{sb.get('per_user_b', 0) / max(sb['users_live'], 1):.0f}",
                f"{sa['per_user_b'] / max(sa['users_live'], 1):.0f}",
                f"{sb['user_signals_b'] / 2**20:.0f}", f"{sa['user_signals_b'] / 2**20:.0f}",
                f"{sb['veterans_b'] / 2**20:.0f}", f"{sa['veterans_b'] / 2**20:.0f}",
            ))  # fmt: skip
        report.table(
            f"RSS under {events:,} events with random user ids (100k products, 8 h), before and after",
            ["events", "event time h", "VmRSS MB before", "after", "users live", "B per live user before",
             "after", "caps table + first-seen MB before", "after", "veterans MB before", "after"],
            rows,
            [
                "B per live user: the user table (slot map, hash, previous hash, last time per slot) and the "
                "first-seen times, veterans apart; the caps table holds (user, product[, type]) entries",
                f"base RSS after the JIT warm-up {ub['base_rss_mb']:.0f} / {ua['base_rss_mb']:.0f} MB",
            ],
        )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run both parts and print (with ``--record``, append) the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--products", type=int, default=10_000_000, help="tracked products of part 1 (10M)")
    p.add_argument("--events", type=int, default=20_000_000, help="random-user events of part 2 (20M)")
    p.add_argument(
        "--hostile", type=int, default=0,
        help="part 3: events with random product, seller, category, user and event ids (20M: issue 12)",
    )  # fmt: skip
    p.add_argument(
        "--tree", default="", help="source tree of parts 1 and 3 (default: this one; e.g. a base checkout)"
    )
    p.add_argument("--max-products", type=int, default=0, help="state.max_products for part 3 (0: default)")
    p.add_argument(
        "--before", default="",
        help="a source tree to compare with: parts 1 and 2 run on it and on this tree, one after the other",
    )  # fmt: skip
    p.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    report = Report(
        title="Bounded state (issue 11)", argv=["benchmarks/bench_state.py", *(argv or sys.argv[1:])]
    )
    tree = Path(args.tree) if args.tree else None
    if args.before:
        compare(report, Path(args.before), args.products, args.events)
        args.products = args.events = 0
    if args.products:
        r = child("products", args.products, None, tree)
        n = int(r["tracked"])  # type: ignore[call-overload]
        grown = (float(r["rss_mb"]) - float(r["base_rss_mb"])) * 2**20  # type: ignore[arg-type]
        own = ("counters_b", "cusum_b", "columns_b", "names_b")
        users = ("user_table_b", "veterans_b", "user_signals_b", "dedup_b")
        per = {k: int(r[k]) / n for k in (*own, *users)}  # type: ignore[call-overload]
        report.table(
            f"RSS per tracked product ({n:,} tracked, default config, {float(r['wall_s']):.0f} s to build)",  # type: ignore[arg-type]
            ["measure", "bytes per tracked product"],
            [
                ("VmRSS growth (everything the engine holds)", f"{grown / n:.0f}"),
                (
                    "engine product arrays (counters, trust counters, CUSUM, columns, name table)",
                    f"{sum(per[k] for k in own):.0f}",
                ),  # fmt: skip
                *((f"  {k}", f"{per[k]:.1f}") for k in own),
                (
                    "user and dedup state (bounded by windows, not by products)",
                    f"{sum(per[k] for k in users):.0f}",
                ),
                *((f"  {k}", f"{per[k]:.1f}") for k in users),
            ],
            [
                f"base RSS after the JIT warm-up {float(r['base_rss_mb']):.0f} MB, at the end "  # type: ignore[arg-type]
                f"{float(r['rss_mb']):.0f} MB; array capacity {int(r['capacity']):,} slots (doubling growth)",  # type: ignore[call-overload, arg-type]
                "target (issue 11): <= 320 bytes of RSS per tracked product at 10M products, id tables in",
            ],
        )
    if args.events:
        r = child("users", args.events)
        rows = [
            (
                f"{s['events']:,}",
                f"{s['event_time_h']:.1f}",
                f"{s['rss_mb']:.0f}",
                f"{s['users_live']:,}",
                f"{s['user_table_b'] / 2**20:.1f}",
                f"{s['user_signals_b'] / 2**20:.1f}",
                f"{s['veterans']:,}",
                f"{s['veterans_b'] / 2**20:.1f}",
                f"{s['dedup_b'] / 2**20:.1f}",
                f"{s['wall_s']:.0f}",
            )  # fmt: skip
            for s in r["samples"]  # type: ignore[attr-defined]
        ]
        report.table(
            f"RSS under {args.events:,} events with random user ids (100k products, 8 h of event time)",
            [
                "events",
                "event time h",
                "VmRSS MB",
                "users live",
                "user table MB",
                "user signals MB",
                "veterans",
                "veterans MB",
                "dedup MB",
                "wall s",
            ],  # fmt: skip
            rows,
            [
                f"base RSS after the JIT warm-up {float(r['base_rss_mb']):.0f} MB"  # type: ignore[arg-type]
                "; every event is a new user and a new event_id",
                "target (issue 11): user state <= 64 B per active user, released after the trust windows; "
                "RSS flat once the windows are full",
            ],
        )
    if args.hostile:
        over = {"state": {"max_products": args.max_products}} if args.max_products else {}
        r = child("hostile", args.hostile, over, tree)
        rows = [
            (
                f"{s['events']:,}", f"{s['event_time_h']:.1f}", f"{s['rss_mb']:.0f}", f"{s['tracked']:,}",
                f"{s['products_held']:,}", f"{s['evicted_over_cap']:,}", f"{s['sellers']:,}",
                f"{s['categories']:,}", f"{s['names_b'] / 2**20:.0f}", f"{s['id_tables_b'] / 2**20:.0f}",
                f"{s['users_live']:,}", f"{s['veterans']:,}", f"{s['cpu_s']:.0f}",
            )
            for s in r["samples"]  # type: ignore[attr-defined]
        ]  # fmt: skip
        report.table(
            f"RSS under {args.hostile:,} events of hostile ids (every product, seller, category, user and "
            f"event id new and random; 8 h of event time; {over or 'default config'}; "
            f"sources {tree or 'this tree'})",
            [
                "events",
                "event time h",
                "VmRSS MB",
                "products live",
                "product ids held",
                "evicted over cap",
                "sellers held",
                "categories held",
                "product names MB",
                "seller+category MB",
                "users live",
                "veterans",
                "CPU s",
            ],  # fmt: skip
            rows,
            [f"base RSS after the JIT warm-up {float(r['base_rss_mb']):.0f} MB"],  # type: ignore[arg-type]
        )
    if args.record:
        report.record()
    Path(BENCH_DIR / "out").mkdir(exist_ok=True)


if __name__ == "__main__":
    main()
