"""bench_service's attribution helpers: CPU per thread diffed by thread id, py-spy stacks by component."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_service as bs  # noqa: E402


def test_thread_table_diffs_by_thread_id_and_names_each_thread_at_the_end():
    before = {"10": ("thread", 5.0), "11": ("kafka-io", 1.0)}  # named only at the end: still diffed
    after = {"10": ("MainThread", 7.0), "11": ("kafka-io", 1.5), "12": ("writer", 0.25)}
    table = bs.thread_table(before, after, 1_000_000)
    assert table == (
        "MainThread: 2.00 s, 2.00 µs/event; kafka-io: 0.50 s, 0.50 µs/event; writer: 0.25 s, 0.25 µs/event"
    )


def test_thread_cpu_reads_every_thread_of_a_live_process():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()
    try:
        got = bs.thread_cpu(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert str(worker.native_id) in got and str(threading.get_native_id()) in got
    assert all(cpu >= 0 for _, cpu in got.values())


def test_components_attribute_busy_samples_per_component_and_thread():
    main = "thread (1): MainThread;run (loop.py:1);Service.step (loop.py:2)"
    raw = "\n".join(
        [
            f"{main};Service._run_engines (loop.py:3) 300",
            f"{main};KafkaSource.next_batch (k.py:9) 100",
            "thread (2): viraltrend-checkpoint;run (writer.py:1) 50",
        ]
    )
    table = bs.components(raw, 100_000, 100)
    lines = {line.split("  ")[0].strip(): line.split() for line in table.splitlines() if line.strip()}
    assert lines["engine"][-2:] == ["3.00", "30.00"]
    assert lines["source: poll (kafka-python)"][-2:] == ["1.00", "10.00"]
    assert lines["checkpoint: writer thread"][-2:] == ["0.50", "5.00"]
    main_thread = next(v for k, v in lines.items() if k.startswith("thread (1)"))
    assert main_thread[-2:] == ["4.00", "40.00"]
