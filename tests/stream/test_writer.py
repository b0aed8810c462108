"""The checkpoint writer thread: jobs run off the caller's thread, one at a time, errors handed back."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from viraltrend.errors import CheckpointError
from viraltrend.stream.checkpoint import LocalStore
from viraltrend.stream.writer import CheckpointJob, CheckpointWriter


class GatedStore(LocalStore):
    """A LocalStore whose saves wait until the test opens the gate, and record their thread."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.threads: list[str] = []

    def save(self, *args, **kwargs) -> int:
        self.threads.append(threading.current_thread().name)
        assert self.gate.wait(10)
        return super().save(*args, **kwargs)


def _job(store, offset: int = 7) -> CheckpointJob:
    return CheckpointJob(store, [(0, {"x": np.arange(5)}, {"v": 1}, offset, 3)])


def test_a_job_is_written_on_the_writer_thread_and_collected_once_done(tmp_path):
    store = GatedStore(tmp_path, "in")
    writer = CheckpointWriter()
    writer.submit(_job(store))
    assert writer.busy and writer.poll() is None  # still waiting at the gate: the caller goes on
    with pytest.raises(RuntimeError, match="already being written"):
        writer.submit(_job(store))
    store.gate.set()
    job = writer.wait()
    assert job is not None and job.error is None
    assert job.done == {0: 7} and job.epochs == {0: 3} and job.size > 0
    assert store.threads == ["viraltrend-checkpoint"]
    assert not writer.busy and writer.poll() is None
    assert LocalStore(tmp_path, "in").load(0)[2] == {0: 7}
    writer.close()


def test_an_error_of_the_writer_is_handed_back_with_nothing_done(tmp_path):
    store = LocalStore(tmp_path, "in")
    writer = CheckpointWriter()
    writer.submit(CheckpointJob(store, [(0, {"bad": np.array([{}], dtype=object)}, {}, 1, 0)]))
    job = writer.wait()
    assert job is not None and isinstance(job.error, CheckpointError) and job.done == {}
    assert store.load(0) is None
    writer.close()


def test_close_finishes_the_job_in_progress(tmp_path):
    store = GatedStore(tmp_path, "in")
    writer = CheckpointWriter()
    writer.submit(_job(store, offset=11))
    threading.Timer(0.2, store.gate.set).start()
    writer.close()
    assert LocalStore(tmp_path, "in").load(0)[2] == {0: 11}
    writer.submit(_job(store, offset=12))  # a closed writer starts a new thread when given work
    assert writer.wait().done == {0: 12}
    writer.close()


def test_the_loops_snapshot_is_a_copy_in_buffers_reused_from_one_checkpoint_to_the_next(scenario_factory):
    """Service._snapshot: the writer saves it while the engine goes on, so nothing may be shared."""
    from types import SimpleNamespace

    from tests.conftest import read_events
    from tests.test_engine import SMALL
    from viraltrend.config import load_config
    from viraltrend.engine import Engine
    from viraltrend.stream.loop import Service

    events = read_events(scenario_factory(**SMALL) / "events.ndjson")
    engine = Engine(load_config(None, environ={}))
    engine.process(events.take(np.arange(6_000)))
    fake = SimpleNamespace(_buffers={})
    arrays, meta = Service._snapshot(fake, 0, engine)
    want = engine.state()
    first = {k: arrays[k] for k in fake._buffers[0]}
    assert "counters.acc" in first and "users.rows" in first and "detect.stat" in first
    engine.process(events.take(np.arange(6_000, 12_000)))  # the engine goes on while the writer saves
    for k, v in want[0].items():
        assert np.array_equal(arrays[k], v, equal_nan=v.dtype.kind == "f"), k
    assert meta == json.loads(json.dumps(want[1]))
    again, _ = Service._snapshot(fake, 0, engine)  # the next checkpoint: the same buffers, new contents
    assert all(again[k] is first[k] for k in first if again[k].shape == first[k].shape)
    for k, v in engine.state()[0].items():
        assert np.array_equal(again[k], v, equal_nan=v.dtype.kind == "f"), k
