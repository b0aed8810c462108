"""The checkpoint writer: saves checkpoints on a thread of its own, off the loop's hot path.

The loop (:mod:`viraltrend.stream.loop`) takes each due partition's state (a copy, between two
batches) and hands it over as a :class:`CheckpointJob`; the writer saves it to the store (delta
or full, hashing, checksums, files or changelog records) while the loop goes on polling.  The
loop commits a job's offsets only once :meth:`CheckpointWriter.poll` (or :meth:`wait`) returns
it done: an offset is still never committed before the state reflecting it is durable.  One job
at a time: while one is being written, the loop does not start another (the next one waits for
the following turn), so the writer never queues up state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from viraltrend.stream.checkpoint import Arrays, StateStore

__all__ = ["CheckpointJob", "CheckpointWriter"]

log = logging.getLogger("viraltrend.service")


@dataclass(slots=True)
class CheckpointJob:
    """The state of some partitions, each with the offset it reflects and its epoch."""

    store: StateStore
    items: list[tuple[int, Arrays, dict[str, Any], int, int]]  # (partition, arrays, meta, offset, epoch)
    started: float = field(default_factory=time.perf_counter)
    done: dict[int, int] = field(default_factory=dict)  # partition -> offset, once saved
    epochs: dict[int, int] = field(default_factory=dict)
    size: int = 0
    error: BaseException | None = None
    finished: float = 0.0

    def run(self) -> None:
        """Save every item in order; stop at the first error (kept in :attr:`error`)."""
        try:
            for p, arrays, meta, offset, epoch in self.items:
                self.size += self.store.save(p, arrays, meta, {p: offset}, epoch=epoch)
                self.done[p] = offset
                self.epochs[p] = epoch
        except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread, which raises it
            self.error = exc
        finally:
            self.items = []  # release the state copies at once
            self.finished = time.perf_counter()


class CheckpointWriter:
    """One background thread that runs :class:`CheckpointJob` s, one at a time."""

    def __init__(self) -> None:
        self._job: CheckpointJob | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """Whether a job was submitted and not yet collected by :meth:`poll` or :meth:`wait`."""
        return self._job is not None

    def submit(self, job: CheckpointJob) -> None:
        """Start writing ``job`` (the writer must not be :attr:`busy`)."""
        with self._cond:
            if self._job is not None:
                msg = "a checkpoint is already being written"
                raise RuntimeError(msg)
            self._job = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="viraltrend-checkpoint", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._job is None or self._job.finished):
                    self._cond.wait()
                if self._closed:
                    return
                job = self._job
            assert job is not None
            job.run()
            with self._cond:
                self._cond.notify_all()

    def poll(self) -> CheckpointJob | None:
        """The submitted job once it is finished (then the writer is free again), else None."""
        with self._cond:
            job = self._job
            if job is None or not job.finished:
                return None
            self._job = None
            return job

    def wait(self) -> CheckpointJob | None:
        """Block until the submitted job is finished and return it; None if there is none."""
        with self._cond:
            while self._job is not None and not self._job.finished:
                self._cond.wait()
            job, self._job = self._job, None
            return job

    def close(self) -> None:
        """Finish the job in progress (if any) and stop the thread; idempotent."""
        self.wait()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._closed = False  # a later submit starts a new thread
