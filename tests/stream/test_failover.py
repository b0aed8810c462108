"""Publisher failover (issue 12, item 5): changes decided between the last publish and the failover.

Two workers share a two-partition topic; the one holding input partition 0 publishes the merged
board.  It is frozen (SIGSTOP) while the other worker reads the second half of the stream and
shares its partition's new board on the candidates topic, then killed (-9): the survivor takes
partition 0 over and becomes the publisher.  Before, it adopted the merge of the restored boards
silently, so the products that entered the board while the old publisher was frozen were never
promoted.  Now it starts from the last board published on the output topic, so applying the
published promote / demote messages in order gives the final snapshot's products.

Tansu elects no new group leader when its leader leaves, so the frozen worker must not be the
leader: the leader starts first, alone, and reads with librdkafka, whose member ids sort after
kafka-python's, so the range assignor gives partition 0 to the other worker.
"""

from __future__ import annotations

import json
import signal

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.stream.services import decisions, finish, produce, sample, scrape, start_service, topics, wait_for
from tests.stream.test_scale_out import CUT_S, SCENARIO, _before
from viraltrend.stream.broker import free_port

pytestmark = pytest.mark.integration


def _gauge(port: int, name: str) -> float | None:
    try:
        return sample(scrape(port), name)
    except OSError:
        return None


def _committed_all(bootstrap: str, group: str, topic: str, partition: int) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, partition)
        end = consumer.end_offsets([tp])[tp]
        return (consumer.committed(tp) or 0) >= end
    finally:
        consumer.close()


def replayed_members(messages: list[dict]) -> set[str]:
    """The board a subscriber holds after applying the promote / demote messages in order."""
    board: set[str] = set()
    for m in messages:
        if m["action"] == "promote":
            board.add(m["product_id"])
        elif m["action"] in ("demote", "block"):
            board.discard(m["product_id"])
    return board


def test_a_new_publisher_publishes_what_the_old_one_decided_but_never_published(
    broker, scenario_factory, tmp_path
):
    directory = scenario_factory(**SCENARIO)
    truth = json.loads((directory / "truth.json").read_text())
    lines = _before(
        (directory / "events.ndjson").read_bytes().splitlines(),
        truth["scenario"]["start_ts_ms"] + CUT_S * 1000,
    )
    half = len(lines) // 2
    bootstrap = broker.bootstrap_servers
    # the reference: one worker over the whole stream
    ref = topics(bootstrap, "fo-ref", partitions=2)
    produce(bootstrap, ref["input"], lines)
    finish(start_service(bootstrap, ref, tmp_path, log_name="ref.log"), tmp_path, log_name="ref.log")
    want = decisions(bootstrap, ref["output"])
    assert want[-1]["action"] == "board" and want[-1]["items"]

    names = topics(bootstrap, "fo", partitions=2)
    produce(bootstrap, names["input"], lines[:half])
    group = f"g-{names['input']}"
    env = {"VIRALTREND_CHECKPOINT_INTERVAL_S": "0.5"}
    ports = {"leader": free_port(), "other": free_port()}
    # The leader reads with librdkafka (member id "rdkafka-<uuid>"), the other with kafka-python
    # ("kafka-python-<uuid>"): the range assignor gives partition 0 to the first member id in order.
    leader = start_service(
        bootstrap,
        names,
        tmp_path,
        idle_s=None,
        metrics_port=ports["leader"],
        env={**env, "VIRALTREND_KAFKA_CLIENT": "confluent"},
        log_name="leader.log",
    )
    wait_for(lambda: _gauge(ports["leader"], "viraltrend_assigned_partitions") == 2, what="the leader")
    other = start_service(
        bootstrap, names, tmp_path, idle_s=None, metrics_port=ports["other"], env=env, log_name="other.log"
    )
    wait_for(
        lambda: (
            _gauge(ports["leader"], "viraltrend_assigned_partitions") == 1
            and _gauge(ports["other"], "viraltrend_assigned_partitions") == 1
        ),
        timeout_s=60,
        what="the partitions shared",
    )
    assert _gauge(ports["other"], "viraltrend_board_publisher") == 1.0, "the other worker holds partition 0"
    wait_for(lambda: _committed_all(bootstrap, group, names["input"], 0), what="the first half published")
    published_before = decisions(bootstrap, names["output"])
    other.send_signal(signal.SIGSTOP)  # the publisher freezes: it merges and publishes nothing more
    try:
        produce(bootstrap, names["input"], lines[half:])
        wait_for(
            lambda: _committed_all(bootstrap, group, names["input"], 1),
            timeout_s=120,
            what="partition 1 read to its end while the publisher is frozen",
        )
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(timeout=10)
    wait_for(lambda: _gauge(ports["leader"], "viraltrend_board_publisher") == 1.0, what="the failover")
    wait_for(lambda: _committed_all(bootstrap, group, names["input"], 0), timeout_s=120, what="partition 0")
    leader.send_signal(signal.SIGTERM)
    finish(leader, tmp_path, timeout_s=60, log_name="leader.log")
    got = decisions(bootstrap, names["output"])
    final = got[-1]
    assert final["action"] == "board"
    assert final["items"] == want[-1]["items"]  # the board of one uninterrupted worker
    on_board = {item["product_id"] for item in final["items"]}
    frozen_board = [m for m in published_before if m["action"] == "board"]
    entered = on_board - {item["product_id"] for item in (frozen_board[-1]["items"] if frozen_board else [])}
    assert entered, "the test needs products that entered the board after the last publish"
    # a subscriber applying the published changes holds the final board: nothing was left unpublished
    assert replayed_members(got) == on_board
