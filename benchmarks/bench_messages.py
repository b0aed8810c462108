"""Cost of building and encoding decision messages: typed Structs against the former dicts.

Builds ``--n`` decisions with 12 features each and a board snapshot of 20 items every 50
decisions, then encodes each as the sink does.  ``struct`` is today's path (the Struct built by
``messages.decision`` and encoded once); ``dict`` is the path before issue 12 (the same Struct
converted to a dict with ``msgspec.structs.asdict``, stamped by key, encoded).  Prints seconds
per million decisions for each, best of ``--repeat``; compare them only within one run.

    python benchmarks/bench_messages.py --n 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import time

import msgspec

from viraltrend.board import Member
from viraltrend.messages import ENCODER, board_snapshot, decision, stamp

FEATURES = {f"feature_{i}": i * 0.123456789 for i in range(12)}
MEMBERS = [
    Member(slot=i, product_id=f"p-{i:06d}", seller_id=f"s-{i}", category="beauty", score=0.5, since_ms=7)
    for i in range(20)
]


def build(i: int):  # noqa: ANN201 - a Decision
    return decision(
        "promote",
        product_id=f"p-{i:09d}",
        seller_id="s-88",
        category="beauty",
        rank=1 + i % 20,
        score=0.87654321,
        event_ts=1_764_253_200_000 + i,
        reasons=["scored_by_rule", "lift_x8.2", "growth_z_4.1"],
        features=FEATURES,
    )


def run(n: int, *, as_dict: bool, encode: bool = True) -> tuple[float, int]:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        m = build(i)
        if not encode:
            if i % 50 == 0:
                board_snapshot(i, enumerate(MEMBERS, start=1))
            continue
        if as_dict:
            d = msgspec.structs.asdict(m)
            d["emitted_at"] = 1
            total += len(ENCODER.encode(d))
        else:
            total += len(ENCODER.encode(stamp(m, 1)))
        if i % 50 == 0:
            snap = board_snapshot(i, enumerate(MEMBERS, start=1))
            if as_dict:
                s = msgspec.to_builtins(snap)
                s["emitted_at"] = 1
                total += len(ENCODER.encode(s))
            else:
                total += len(ENCODER.encode(stamp(snap, 1)))
    return time.perf_counter() - t0, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    best = {"build": float("inf"), "struct": float("inf"), "dict": float("inf")}
    sizes = {"build": 0}
    for _ in range(args.repeat):
        for name in ("build", "dict", "struct"):
            s, size = run(args.n, as_dict=name == "dict", encode=name != "build")
            best[name] = min(best[name], s)
            sizes[name] = size
    assert sizes["dict"] == sizes["struct"], sizes  # the same bytes either way
    per_m = {k: v * 1_000_000 / args.n for k, v in best.items()}
    build = per_m["build"]
    print(f"| path | s per 1M decisions (best of {args.repeat}) | after building | bytes |")
    print("|---|---|---|---|")
    print(f"| build only | {build:.2f} | - | - |")
    for name in ("dict", "struct"):
        print(f"| {name} | {per_m[name]:.2f} | {per_m[name] - build:.2f} | {sizes[name]:,} |")
    print(f"after building, struct / dict: {(per_m['struct'] - build) / (per_m['dict'] - build):.2f}")


if __name__ == "__main__":
    main()
