"""Partition lifecycle (issue 12, item 3): restore outside kafka-python's rebalance callback.

kafka-python runs its rebalance listener on its IO thread, the one that also sends the group
heartbeats: a restore inside it that lasts longer than ``session_timeout_ms`` (6 s by default) gets the
worker evicted, which starts another rebalance, and another restore.  The source now only pauses
a newly assigned partition in the callback; the restore runs on the caller's thread and the
partition is resumed after it.  Real broker, real ``viraltrend run`` subprocesses.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.stream.conftest import drain
from tests.stream.services import (
    SESSION_TIMEOUT_MS,
    decisions,
    finish,
    produce,
    read_topic,
    samples,
    scrape,
    service_env,
    start_service,
    topics,
    wait_for,
)
from viraltrend.config import load_config
from viraltrend.replay import replay
from viraltrend.stream.broker import INTERNAL_TOPIC_CONFIGS, describe_topic, free_port
from viraltrend.stream.partitions import RESTORE_DELAY_ENV

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


def event(i: int) -> bytes:
    obj = {
        "event_id": f"e-{i}",
        "ts": T0 + i * 500,
        "type": "view",
        "product_id": f"p{i % 11}",
        "user_id": f"u{i}",
    }
    return json.dumps(obj).encode()


def test_on_assign_runs_on_the_callers_thread_then_the_partition_is_resumed(
    broker, topic_factory, source_factory
):
    topic = topic_factory(1)
    produce(broker.bootstrap_servers, topic, [event(i) for i in range(50)])
    threads: list[int] = []
    source = source_factory(topic, on_assign=lambda parts: threads.append(threading.get_ident()))
    batch, rejects = drain(source, 50)
    assert len(batch) == 50 and not rejects
    assert threads == [threading.get_ident()]  # not kafka-python's IO thread, which heartbeats
    assert not source._consumer.paused()  # resumed after the restore


def _counts(port: int, name: str) -> dict[str, float]:
    try:
        return samples(scrape(port), name)
    except OSError:
        return {}


#: The slow restore: 1.5 group sessions, as it was at the default 6 s session (9 s).
RESTORE_S = 1.5 * int(SESSION_TIMEOUT_MS) / 1000


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_a_restore_longer_than_the_session_timeout_keeps_the_worker_in_the_group(broker, tmp_path, client):
    """A restore of 1.5 sessions (4.5 s; the services' session is 3 s): one assignment, no eviction,
    the board of one run.

    librdkafka heartbeats on its own threads and calls the hook on the polling thread anyway.
    """
    first, second = [event(i) for i in range(1500)], [event(i) for i in range(1500, 3000)]
    path = tmp_path / "all.ndjson"
    path.write_bytes(b"\n".join(first + second) + b"\n")
    replay([path], load_config(None, environ={}), out=tmp_path / "want.ndjson")
    want = [json.loads(x) for x in (tmp_path / "want.ndjson").read_text().splitlines()]
    for w in want:
        w.pop("emitted_at")
    names = topics(broker.bootstrap_servers, f"longrestore-{client}")
    produce(broker.bootstrap_servers, names["input"], first)
    finish(
        start_service(broker.bootstrap_servers, names, tmp_path, idle_s=2.0, log_name="first.log"),
        tmp_path,
        log_name="first.log",
    )
    produce(broker.bootstrap_servers, names["input"], second)
    port = free_port()
    proc = start_service(
        broker.bootstrap_servers,
        names,
        tmp_path,
        idle_s=None,
        metrics_port=port,
        env={RESTORE_DELAY_ENV: f"{RESTORE_S:g}", "VIRALTREND_KAFKA_CLIENT": client},
        log_name="slow.log",
    )
    try:
        wait_for(
            lambda: sum(_counts(port, "viraltrend_events_applied_total").values()) >= len(second),
            timeout_s=90,
            what="the second half applied after the slow restore",
        )
        rebalances = _counts(port, "viraltrend_rebalances_total")
        broker_errors = _counts(port, "viraltrend_broker_errors_total")
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=60, log_name="slow.log")
    log = (tmp_path / "slow.log").read_text()
    assert f"the restore lasts {RESTORE_S:g} s longer" in log  # the fault was injected
    assert f'"session_timeout_ms": {SESSION_TIMEOUT_MS}' in log  # ... 1.5 times this service's session
    assert rebalances == {"assigned": 1.0, "revoked": 0.0, "lost": 0.0}, log[-3000:]
    assert broker_errors == {"": 0.0}
    # Before, kafka-python said so itself: the restore blocked its IO thread and the heartbeats.
    # (Tansu then let the lone member stay; a Kafka cluster evicts it and rebalances again.)
    assert "Sync listeners block the consumer event loop" not in log
    assert "Heartbeat session expired" not in log
    got = decisions(broker.bootstrap_servers, names["output"])
    assert got[-1] == want[-1]  # the final board of an uninterrupted run


def test_internal_topics_get_explicit_cleanup_and_segment_settings(broker, tmp_path):
    names = topics(broker.bootstrap_servers, "internal", partitions=2)
    produce(broker.bootstrap_servers, names["input"], [event(i) for i in range(20)])
    finish(start_service(broker.bootstrap_servers, names, tmp_path, idle_s=1.0), tmp_path)
    group = f"g-{names['input']}"
    for topic in (f"{group}.state", f"{group}.candidates"):
        configs = describe_topic(broker.bootstrap_servers, topic).configs
        assert configs["cleanup.policy"] == "compact", topic
        assert configs["retention.ms"] == "-1", topic
        for key, value in INTERNAL_TOPIC_CONFIGS.items():
            assert configs.get(key) == value, (topic, key)


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_checkpoints_are_stamped_with_the_group_generation_that_owns_them(broker, tmp_path, client):
    """Fencing: each owner of a partition stamps its checkpoints with its group generation.

    A later owner's generation is higher, so a load ignores what an evicted owner writes after it
    (the store's side is tested in test_changelog).
    """
    names = topics(broker.bootstrap_servers, f"epochs-{client}")
    env = {"VIRALTREND_KAFKA_CLIENT": client}
    group = f"g-{names['input']}"
    epochs = []
    for run in range(2):
        produce(broker.bootstrap_servers, names["input"], [event(i) for i in range(run * 50, run * 50 + 50)])
        log_name = f"run{run}.log"
        finish(
            start_service(broker.bootstrap_servers, names, tmp_path, env=env, log_name=log_name),
            tmp_path,
            log_name=log_name,
        )
        heads = [
            json.loads(v)
            for k, v in read_topic(broker.bootstrap_servers, f"{group}.state")
            if k == f"{names['input']}-0".encode() and v is not None
        ]
        assert heads[-1]["offsets"] == {"0": run * 50 + 50}
        epochs.append(heads[-1]["epoch"])
    assert epochs[0] < epochs[1], epochs  # (Tansu numbers generations from 0)


def _connected_service(broker, names, tmp_path, extra=None):  # type: ignore[no-untyped-def]
    """An in-process :class:`Service` on ``names``' topics (local checkpoints), connected."""
    from prometheus_client import CollectorRegistry

    from viraltrend.metrics import Metrics
    from viraltrend.stream.loop import Service

    env = service_env(
        broker.bootstrap_servers,
        names,
        f"g-{names['input']}",
        checkpoint_store="local",
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    service = Service(
        load_config(None, environ={**env, **(extra or {})}), metrics=Metrics(CollectorRegistry())
    )
    service.connect()
    return service


@pytest.mark.parametrize("session_ms", [2500, None])
def test_the_configured_session_timeout_reaches_the_consumer(broker, tmp_path, session_ms):
    """``kafka.session_timeout_ms`` sets the group session of the worker's consumer (default 6 s)."""
    names = topics(broker.bootstrap_servers, f"session{session_ms}")
    extra = {} if session_ms is None else {"VIRALTREND_KAFKA_SESSION_TIMEOUT_MS": str(session_ms)}
    service = _connected_service(broker, names, tmp_path, extra)
    try:
        consumer = service._source._consumer  # type: ignore[union-attr]
        assert consumer.config["session_timeout_ms"] == (session_ms or 6000)
        assert service._source._session_timeout_s == (session_ms or 6000) / 1000  # type: ignore[union-attr]
    finally:
        service.shutdown()


def test_idle_is_zero_while_a_batch_is_in_hand(broker, tmp_path):
    """``Service.idle_s`` (the demo's "the board settled") does not count a batch's processing as idle.

    On a cold numba cache a batch's first engine call compiles for a minute; the demo used to end
    meanwhile and show an empty board.
    """
    names = topics(broker.bootstrap_servers, "idle-busy")
    produce(broker.bootstrap_servers, names["input"], [event(i) for i in range(20)])
    service = _connected_service(broker, names, tmp_path)
    seen: list[float] = []
    run_engines = service._run_engines

    def slow_engines(batch, rejects):  # type: ignore[no-untyped-def]
        service._last_record_at -= 3600  # as if the batch had been in hand for an hour
        seen.append(service.idle_s)
        return run_engines(batch, rejects)

    service._run_engines = slow_engines  # type: ignore[method-assign]
    try:
        for _ in range(1000):  # until a batch with records has been processed
            if service.step() > 0 and seen:
                break
        assert seen and seen[0] == 0.0
        assert 0.0 <= service.idle_s < 60  # done: idle counts from the batch's end

        def failing_engines(batch, rejects):  # type: ignore[no-untyped-def]
            msg = "engine failed mid-batch"
            raise RuntimeError(msg)

        service._run_engines = failing_engines  # type: ignore[method-assign]
        produce(broker.bootstrap_servers, names["input"], [event(i) for i in range(20, 30)])
        with pytest.raises(RuntimeError, match="mid-batch"):
            for _ in range(1000):
                service.step()
        service._recover()  # what the loop does after a failed step
        time.sleep(0.05)
        assert service.idle_s > 0.0  # a failed batch is not in hand for ever
    finally:
        service.shutdown()


def test_shutdown_saves_once_and_leaving_the_group_saves_nothing_again(broker, tmp_path):
    """SIGTERM's path: the final checkpoint, then closing the consumer leaves the group, which
    revokes the partitions; that revoke used to save the same state a second time (hashing and
    writing it all again) right before the process exited.  The final checkpoint and commit hold.
    """
    from viraltrend.stream.checkpoint import LocalStore

    names = topics(broker.bootstrap_servers, "shutdown-once")
    produce(broker.bootstrap_servers, names["input"], [event(i) for i in range(20)])
    service = _connected_service(broker, names, tmp_path, {"VIRALTREND_CHECKPOINT_INTERVAL_S": "3600"})
    assert service.store is not None
    saves: list[int] = []
    save = service.store.save

    def counted(partition, *args, **kwargs):  # type: ignore[no-untyped-def]
        saves.append(partition)
        return save(partition, *args, **kwargs)

    service.store.save = counted  # type: ignore[method-assign]
    try:
        read = 0
        for _ in range(1000):  # until every record was read and applied
            read += service.step()
            if read >= 20:
                break
        assert read == 20 and saves == []  # no checkpoint due before the shutdown
    finally:
        service.shutdown()
    assert saves == [0]
    loaded = LocalStore(tmp_path / "ckpt" / f"g-{names['input']}", names["input"]).load(0)
    assert loaded is not None and loaded[2] == {0: 20}
    group = f"g-{names['input']}"
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        assert consumer.committed(TopicPartition(names["input"], 0)) == 20
    finally:
        consumer.close()


def test_an_idle_exit_waits_while_the_broker_still_holds_input(broker, tmp_path):
    """Polls that come back empty (a starved broker's slow fetch) do not end a run with input left.

    The service exits after 1 s without records (``exit_when_idle_s``); its source returns nothing
    for 3 s after its first 100 records although 300 more wait on the broker.  The idle exit asks the
    broker for the lag first and reads on: every record is consumed and committed.  CI once ended
    a service this way before it had read the stream's last minutes (load 5-7, 2 cores).
    """
    from prometheus_client import CollectorRegistry

    from tests.stream.test_accounting import good
    from tests.stream.test_delivery import committed
    from viraltrend.events import EventBatch
    from viraltrend.metrics import Metrics
    from viraltrend.stream.kafka_io import KafkaSource
    from viraltrend.stream.loop import Service, ServiceOptions

    names = topics(broker.bootstrap_servers, f"idle-exit-{time.time_ns() % 10**9}")
    group = f"g-{names['input']}"
    produce(broker.bootstrap_servers, names["input"], [good(i) for i in range(400)])

    class StarvedSource(KafkaSource):
        stalled_until: float | None = None
        stalled_polls = 0

        def next_batch(self, max_events):
            if self.stalled_until is not None and time.monotonic() < self.stalled_until:
                type(self).stalled_polls += 1
                time.sleep(self.poll_timeout_ms / 1000)
                return EventBatch.empty(), []
            batch, rejects = super().next_batch(max_events)
            if len(batch) and self.stalled_until is None:  # after the first 100 records
                type(self).stalled_until = time.monotonic() + 3.0
            return batch, rejects

    env = service_env(
        broker.bootstrap_servers,
        names,
        group,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        kafka_max_batch_events="100",
    )
    metrics = Metrics(CollectorRegistry())
    service = Service(
        load_config(None, environ=env),
        metrics=metrics,
        source_factory=StarvedSource,
        options=ServiceOptions(exit_when_idle_s=1.0),
    )
    service.run()
    consumed = sum(
        s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "viraltrend_events_consumed_total"
    )
    assert consumed == 400
    assert StarvedSource.stalled_polls >= 5, "the source must have stalled past the idle limit"
    assert committed(broker.bootstrap_servers, group, names["input"]) == 400
