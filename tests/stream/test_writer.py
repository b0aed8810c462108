"""The checkpoint writer thread: jobs run off the caller's thread, one at a time, errors handed back."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.errors import CheckpointError
from viraltrend.metrics import Metrics
from viraltrend.stream.checkpoint import LocalStore
from viraltrend.stream.loop import Service
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


class FenceGatedStore(LocalStore):
    """A LocalStore whose saves stop right before they become visible (at the fence) until the gate opens."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.at_fence = threading.Event()

    def save(self, *args, fence=None, **kwargs) -> int:
        def gated() -> None:
            self.at_fence.set()
            assert self.gate.wait(10)
            if fence is not None:
                fence()

        return super().save(*args, fence=gated, **kwargs)


def test_a_save_whose_partition_was_lost_in_flight_is_dropped_before_it_becomes_visible(tmp_path):
    """The frozen-worker case, deterministic: the save is written up to its last step, then the
    worker loses the partition (its session expired while it was frozen), then the save resumes."""
    store = FenceGatedStore(tmp_path, "in")
    owner = {"ok": True}
    checks: list[str] = []

    def owns(p: int, epoch: int) -> bool:
        checks.append(threading.current_thread().name)
        return owner["ok"] and (p, epoch) == (0, 3)

    writer = CheckpointWriter()
    writer.submit(CheckpointJob(store, [(0, {"x": np.arange(5)}, {"v": 1}, 7, 3)], owns=owns))
    assert store.at_fence.wait(10)  # everything written but the rename that makes it visible
    owner["ok"] = False  # evicted while the save was in flight
    store.gate.set()
    job = writer.wait()  # the loop's thread answers the fence: no longer the owner
    assert job is not None and job.error is None
    assert job.done == {} and job.dropped == {0: 7}
    assert LocalStore(tmp_path, "in").load(0) is None  # nothing visible: the previous state stays
    # checked on the writer thread before the save, on the loop's (this) thread at the fence
    assert checks == ["viraltrend-checkpoint", threading.current_thread().name]
    writer.close()


def test_a_save_becomes_visible_only_once_the_loops_thread_checked_ownership(tmp_path):
    """The writer waits at the fence for the loop's next turn (poll), which checks and lets it write."""
    store = FenceGatedStore(tmp_path, "in")
    store.gate.set()
    writer = CheckpointWriter()
    writer.submit(CheckpointJob(store, [(0, {"x": np.arange(5)}, {"v": 1}, 7, 3)], owns=lambda p, e: True))
    assert store.at_fence.wait(10)
    time.sleep(0.3)
    assert writer.busy and LocalStore(tmp_path, "in").load(0) is None  # waits for the loop's answer
    job = writer.poll()  # the loop's turn: answers yes, waits for the visible write, collects the job
    assert job is not None and job.done == {0: 7} and job.dropped == {}
    assert LocalStore(tmp_path, "in").load(0)[2] == {0: 7}
    writer.close()


def test_a_save_is_dropped_before_it_starts_when_the_partition_is_already_lost(tmp_path):
    store = GatedStore(tmp_path, "in")
    store.gate.set()
    writer = CheckpointWriter()
    writer.submit(CheckpointJob(store, [(0, {"x": np.arange(5)}, {}, 7, 3)], owns=lambda p, e: False))
    job = writer.wait()
    assert job.dropped == {0: 7} and job.done == {} and store.threads == []  # save never called
    writer.close()


def test_a_worker_evicted_while_its_changelog_save_is_in_flight_never_makes_it_visible(broker, tmp_path):
    """The scale-out fault test's case, in process and deterministic, on the real broker.

    The service hands a checkpoint to its writer; the writer sends the chunks, then stops (the
    process frozen) before the header; meanwhile the group session expires.  When the save goes
    on, the loop's next turn answers its fence: no header is ever written, nothing is committed.
    """
    from prometheus_client import CollectorRegistry

    from tests.stream.services import produce, service_env, topics
    from tests.stream.test_accounting import good
    from tests.stream.test_delivery import committed
    from viraltrend.config import load_config
    from viraltrend.errors import StreamError
    from viraltrend.metrics import Metrics
    from viraltrend.stream.changelog import ChangelogStore, create_changelog_topic
    from viraltrend.stream.kafka_io import KafkaSource
    from viraltrend.stream.loop import Service

    names = topics(broker.bootstrap_servers, f"evicted-in-flight-{time.time_ns() % 10**9}")
    group = f"g-{names['input']}"
    produce(broker.bootstrap_servers, names["input"], [good(i) for i in range(500)])
    create_changelog_topic(broker.bootstrap_servers, f"{group}.state", 1)

    class Source(KafkaSource):
        expired = False

        def session_expired(self) -> bool:
            return self.expired or super().session_expired()

    class Store(ChangelogStore):
        at_gate = threading.Event()
        gate = threading.Event()

        def _send(self, partition, records, what):
            super()._send(partition, records, what)
            if what == "chunks" and not self.gate.is_set():
                self.at_gate.set()  # chunks acknowledged, the header not sent: frozen here
                assert self.gate.wait(30)

    env = service_env(
        broker.bootstrap_servers, names, group, checkpoint_background="true", checkpoint_interval_s="0.001"
    )
    service = Service(
        load_config(None, environ=env), metrics=Metrics(CollectorRegistry()), source_factory=Source
    )
    service.store = Store(broker.bootstrap_servers, f"{group}.state", names["input"], partitions=1)
    service.connect()
    try:
        deadline = time.monotonic() + 60
        while not Store.at_gate.is_set():
            assert time.monotonic() < deadline, "no checkpoint was handed to the writer"
            service.step()
        assert service.writer.busy
        service._source.expired = True  # the group evicted this worker while it was frozen
        Store.gate.set()  # thawed: the writer goes on to its fence
        raised = None
        for _ in range(100):  # the next turn answers the fence (no); the loop's own check fails one
            try:
                service.step()
            except StreamError as exc:
                raised = exc
                break
        service._recover()  # what the loop does next
        fresh = ChangelogStore(broker.bootstrap_servers, f"{group}.state", names["input"], partitions=1)
        try:
            assert fresh.load(0) is None  # chunks only: no header, so no checkpoint
        finally:
            fresh.close()
        assert committed(broker.bootstrap_servers, group, names["input"]) is None
        assert raised is not None and "no group heartbeat" in str(raised)
    finally:
        Store.gate.set()
        service.close()


def test_a_finished_checkpoint_shows_its_bytes_no_later_than_its_lag_of_zero(tmp_path):
    """The metrics server scrapes from its own thread while the loop commits a finished checkpoint's
    offsets (a broker round trip): whenever the lag reads 0, the checkpoint's bytes are already set
    (CI once scraped ``changelog_lag 0`` beside ``checkpoint_bytes 0`` during that commit)."""
    cfg = load_config(None, environ={})
    metrics = Metrics(CollectorRegistry())
    service = Service(cfg, metrics=metrics)
    service.partitions.engines[0] = Engine(cfg)
    service.partitions.epochs[0] = 3
    metrics.changelog_lag.labels(partition="0").set(500)
    seen: list[tuple[float, float]] = []

    class Source:  # what the commit sees is what a scrape during it would see
        def commit(self, offsets: dict[int, int]) -> None:
            lag = metrics.registry.get_sample_value("viraltrend_changelog_lag", {"partition": "0"})
            seen.append((lag, metrics.registry.get_sample_value("viraltrend_checkpoint_bytes")))

    service._source = Source()  # type: ignore[assignment]
    job = CheckpointJob(LocalStore(tmp_path, "events"), [], done={0: 500}, epochs={0: 3}, size=4321)
    service._complete(job)
    assert seen == [(0.0, 4321.0)]
    assert service.partitions.checkpointed[0] == 500
