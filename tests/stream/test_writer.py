"""The checkpoint writer thread: jobs run off the caller's thread, one at a time, errors handed back."""

from __future__ import annotations

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
