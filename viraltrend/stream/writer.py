"""The checkpoint writer: saves checkpoints on a thread of its own, off the loop's hot path.

The loop (:mod:`viraltrend.stream.loop`) takes each due partition's state (a copy, between two
batches) and hands it over as a :class:`CheckpointJob`; the writer saves it to the store (delta
or full, hashing, checksums, files or changelog records) while the loop goes on polling.  The
loop commits a job's offsets only once :meth:`CheckpointWriter.poll` (or :meth:`wait`) returns
it done: an offset is still never committed before the state reflecting it is durable.  One job
at a time: while one is being written, the loop does not start another (the next one waits for
the following turn), so the writer never queues up state.

**Ownership.**  A worker may lose a partition while its save is in flight: frozen (a long pause,
SIGSTOP) until the group evicts it, or the partition lost in a rebalance.  A save landing after
that comes from a superseded state and would follow the new owner's checkpoints.  So each save
is checked twice against :attr:`CheckpointJob.owns` (does this worker still hold partition ``p``
in epoch ``e``, with its group session alive?):

- before it starts, on the writer thread (a cheap early exit);
- right before the one write that makes it visible (the changelog's header record, the rename of
  a local checkpoint directory), through the store's ``fence`` callback.  There the writer thread
  asks the loop's thread and waits: the loop answers at its next turn (:meth:`poll`) or while it
  waits (:meth:`wait`), runs the check itself, and on a yes waits until that save returned.  So
  the visible write happens while the loop's thread stands still right after a membership check,
  exactly as when the loop writes the checkpoint itself: a worker frozen anywhere in a turn finds,
  when it thaws, its session expired before anything of its becomes visible.

A save whose ownership was lost is dropped (:attr:`CheckpointJob.dropped`), not an error: the
loop's own membership check rolls it back, and its offsets are never committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from viraltrend.errors import StreamError
from viraltrend.stream.checkpoint import Arrays, StateStore

__all__ = ["CheckpointJob", "CheckpointWriter", "OwnershipLost"]

log = logging.getLogger("viraltrend.service")

#: ``owns(partition, epoch)``: whether this worker still holds the partition in that epoch.
Owns = Callable[[int, int], bool]


class OwnershipLost(StreamError):  # noqa: N818 - a condition, not a failure of the store
    """Raised by a save's fence: this worker no longer owns the partition; the save is dropped."""


@dataclass(slots=True)
class CheckpointJob:
    """The state of some partitions, each with the offset it reflects and its epoch.

    ``owns`` (optional) is checked before each save and right before the write that makes it
    visible; ``before_visible`` (optional, the fault suite's freeze) runs after that check passed.
    """

    store: StateStore
    items: list[tuple[int, Arrays, dict[str, Any], int, int]]  # (partition, arrays, meta, offset, epoch)
    owns: Owns | None = None
    before_visible: Callable[[], None] | None = None
    started: float = field(default_factory=time.perf_counter)
    done: dict[int, int] = field(default_factory=dict)  # partition -> offset, once saved
    epochs: dict[int, int] = field(default_factory=dict)
    dropped: dict[int, int] = field(default_factory=dict)  # partition -> offset: ownership lost, not saved
    size: int = 0
    error: BaseException | None = None
    finished: float = 0.0

    def check(self, partition: int, epoch: int) -> bool:
        """The check at the visible write (on the loop's thread); then the ``before_visible`` hook."""
        if self.owns is not None and not self.owns(partition, epoch):
            return False
        if self.before_visible is not None:
            self.before_visible()
        return True

    def run(self, ask: Owns | None = None, saved: Callable[[], None] | None = None) -> None:
        """Save every item in order; stop at the first error (kept in :attr:`error`).

        ``ask(partition, epoch)`` answers the fence right before a save becomes visible; by
        default :meth:`check`, here (the caller is the loop's thread).  ``saved()`` is called
        after each save returned or raised.
        """
        fence_check = ask if ask is not None else self.check
        try:
            for p, arrays, meta, offset, epoch in self.items:
                if self.owns is not None and not self.owns(p, epoch):
                    self._drop(p, offset, epoch, "before the save")
                    continue

                def fence(p: int = p, epoch: int = epoch) -> None:
                    if not fence_check(p, epoch):
                        msg = f"partition {p} (epoch {epoch}) is no longer this worker's"
                        raise OwnershipLost(msg)

                try:
                    self.size += self.store.save(p, arrays, meta, {p: offset}, epoch=epoch, fence=fence)
                except OwnershipLost:
                    self._drop(p, offset, epoch, "right before it became visible")
                    continue
                finally:
                    if saved is not None:
                        saved()
                self.done[p] = offset
                self.epochs[p] = epoch
        except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread, which raises it
            self.error = exc
        finally:
            self.items = []  # release the state copies at once
            self.finished = time.perf_counter()

    def _drop(self, p: int, offset: int, epoch: int, when: str) -> None:
        self.dropped[p] = offset
        log.warning(
            "checkpoint of partition %d at offset %d dropped %s: this worker no longer owns it in epoch %d",
            p,
            offset,
            when,
            epoch,
        )


@dataclass(slots=True)
class _Fence:
    """A save waiting at its fence: the question to the loop's thread and its answer."""

    partition: int
    epoch: int
    answer: bool | None = None
    saved: bool = False  # the save returned (or raised) after a yes


class CheckpointWriter:
    """One background thread that runs :class:`CheckpointJob` s, one at a time.

    The loop's thread must call :meth:`poll` every turn (or :meth:`wait`): that is where a save
    waiting at its fence gets its ownership checked (see the module docstring).
    """

    def __init__(self) -> None:
        self._job: CheckpointJob | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._fence: _Fence | None = None

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
            job.run(ask=self._ask, saved=self._saved)
            with self._cond:
                self._cond.notify_all()

    def _ask(self, partition: int, epoch: int) -> bool:
        """On the writer thread, at a save's fence: wait for the loop's thread to check ownership."""
        fence = _Fence(partition, epoch)
        with self._cond:
            self._fence = fence
            self._cond.notify_all()
            while fence.answer is None:
                self._cond.wait()
            if not fence.answer:
                self._fence = None
            return fence.answer

    def _saved(self) -> None:
        """On the writer thread, after each save: release the loop's thread waiting for it."""
        with self._cond:
            if self._fence is not None:
                self._fence.saved = True
                self._fence = None
            self._cond.notify_all()

    def _serve(self) -> None:
        """On the loop's thread: answer a save waiting at its fence, and on a yes wait until it is saved.

        Called with ``self._cond`` held.
        """
        fence, job = self._fence, self._job
        if fence is None or fence.answer is not None or job is None:
            return
        ok = False
        self._cond.release()
        try:
            ok = job.check(fence.partition, fence.epoch)
        finally:
            self._cond.acquire()
            fence.answer = ok
            self._cond.notify_all()
        if ok:  # the visible write happens now, while this thread waits (as if it wrote it)
            while not fence.saved and self._fence is fence:
                self._cond.wait()

    def poll(self) -> CheckpointJob | None:
        """Answer a save waiting at its fence; the submitted job once it is finished, else None."""
        with self._cond:
            self._serve()
            job = self._job
            if job is None or not job.finished:
                return None
            self._job = None
            return job

    def wait(self) -> CheckpointJob | None:
        """Block until the submitted job is finished (answering its fences) and return it; None if none."""
        with self._cond:
            while self._job is not None and not self._job.finished:
                self._serve()
                if not self._job.finished and (self._fence is None or self._fence.answer is not None):
                    self._cond.wait(1.0)  # woken by a fence, a save or the job's end
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
