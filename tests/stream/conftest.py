"""Fixtures for stream tests: one embedded Kafka-protocol broker per session, topic and source factories."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.stream.services import STARTED
from viraltrend.events import EventBatch, Reject
from viraltrend.stream.broker import EmbeddedBroker
from viraltrend.stream.kafka_io import KafkaSource, create_topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker for the whole session; failing to start it is an error, never a skip."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path)
    embedded.start()  # raises StreamError with the binary and its log tail
    yield embedded
    embedded.stop()


@pytest.fixture(autouse=True)
def _reap_services():
    """A test that fails half-way must not leave its service running: kill what is still alive."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def topic_factory(broker: EmbeddedBroker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Make a new topic with a unique name: ``topic_factory(partitions=1, compacted=False)``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]

    def make(partitions: int = 1, *, compacted: bool = False) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        create_topics(broker.bootstrap_servers, {name: partitions}, compacted={name} if compacted else set())
        return name

    return make


@pytest.fixture
def source_factory(broker: EmbeddedBroker) -> Iterator[Callable[..., KafkaSource]]:
    """Make a :class:`KafkaSource` on the session broker, closed at teardown.

    ``source_factory(topic, group_id=None, **options)``; a unique group when ``group_id`` is None.
    """
    made: list[KafkaSource] = []

    def make(topic: str, *, group_id: str | None = None, **options: object) -> KafkaSource:
        group = group_id if group_id is not None else f"g-{uuid.uuid4().hex[:8]}"
        source = KafkaSource(broker.bootstrap_servers, topic, group_id=group, **options)  # type: ignore[arg-type]
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def drain(
    source: KafkaSource, count: int, *, timeout_s: float = 20.0, max_events: int = 10_000
) -> tuple[EventBatch, list[Reject]]:
    """Call ``next_batch`` until ``count`` records (events plus rejects) came, or fail after ``timeout_s``."""
    batches: list[EventBatch] = []
    rejects: list[Reject] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < count:
        if time.monotonic() > deadline:
            pytest.fail(f"got {seen} of {count} records within {timeout_s} s")
        batch, bad = source.next_batch(max_events)
        batches.append(batch)
        rejects.extend(bad)
        seen += len(batch) + len(bad)
    return EventBatch.concat(batches), rejects
