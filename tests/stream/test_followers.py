"""The candidates and blocklist followers turn Kafka trouble into StreamError, which the loop rides out.

Before, kafka-python's own errors escaped them and ended the service during an outage whenever
the input had several partitions or a blocklist topic was set.
"""

from __future__ import annotations

import json
import signal
import socket

import pytest

from tests.stream.services import finish, produce, sample, scrape, start_service, topics, wait_for
from viraltrend.errors import StreamError
from viraltrend.stream.blocklist import BlocklistFollower
from viraltrend.stream.broker import EmbeddedBroker, create_topics, free_port
from viraltrend.stream.candidates import CandidatesFollower

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("follower", [CandidatesFollower, BlocklistFollower])
def test_a_follower_of_an_unreachable_broker_is_a_stream_error(follower):
    with pytest.raises(StreamError, match="127.0.0.1"):
        follower(f"127.0.0.1:{closed_port()}", "some-topic", {"bootstrap_timeout_ms": 2000})


@pytest.mark.parametrize("follower", [CandidatesFollower, BlocklistFollower])
def test_a_follower_of_a_missing_topic_is_a_stream_error(broker, follower):
    with pytest.raises(StreamError, match="does not exist"):
        follower(broker.bootstrap_servers, f"missing-{free_port()}", {})


def test_the_candidates_follower_raises_stream_errors_once_the_broker_is_gone(tmp_path):
    own = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    try:
        create_topics(own.bootstrap_servers, {"cands": 1}, compacted={"cands"})
        follower = CandidatesFollower(own.bootstrap_servers, "cands", {"request_timeout_ms": 2000})
        follower.catch_up(timeout_s=2)
        own.stop()
        for _ in range(3):
            follower.poll(timeout_ms=100)  # nothing to read is fine; only StreamError may come out
        with pytest.raises(StreamError, match="candidates topic"):
            follower.catch_up(timeout_s=1)
        follower.close()
    finally:
        own.stop()


def _up(port: int) -> float | None:
    try:
        return sample(scrape(port), "viraltrend_broker_up")
    except OSError:
        return None


def _metric(port: int, name: str) -> float:
    try:
        text = scrape(port)
    except OSError:
        return 0.0
    return sum(
        float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith((name + " ", name + "{"))
    )


def _errors(port: int) -> float:
    try:
        return sample(scrape(port), "viraltrend_broker_errors_total") or 0.0
    except OSError:
        return 0.0


def test_an_outage_with_two_partitions_and_a_blocklist_is_ridden_out(tmp_path):
    port = free_port()
    own = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log").start()
    try:
        names = topics(own.bootstrap_servers, "outage2", partitions=2)
        blocklist = f"{names['input']}-blocklist"
        create_topics(own.bootstrap_servers, {blocklist: 1}, compacted={blocklist})
        events = [
            json.dumps(
                {"ts": 1_764_000_000_000 + i, "type": "view", "product_id": f"p{i % 9}", "user_id": "u"}
            ).encode()
            for i in range(400)
        ]
        produce(own.bootstrap_servers, names["input"], events)
        mport = free_port()
        env = {"VIRALTREND_TRUST_BLOCKLIST_TOPIC": blocklist}
        proc = start_service(
            own.bootstrap_servers, names, tmp_path, metrics_port=mport, idle_s=None, store="local", env=env
        )
        wait_for(lambda: _metric(mport, "viraltrend_assigned_partitions") == 2, what="both partitions")
        wait_for(lambda: _metric(mport, "viraltrend_events_applied_total") >= 400, what="the events applied")
        own.stop()
        wait_for(lambda: _up(mport) == 0.0, timeout_s=90, what="broker_up 0")
        wait_for(  # several reconnection attempts, each building the followers again, have failed
            lambda: proc.poll() is not None or _errors(mport) >= 4, timeout_s=90, what="reconnection attempts"
        )
        assert proc.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
        own.start()  # memory-only: it forgot its topics (a real cluster keeps them)
        topics(own.bootstrap_servers, "outage2", partitions=2)
        create_topics(own.bootstrap_servers, {blocklist: 1}, compacted={blocklist})
        wait_for(lambda: _up(mport) == 1.0, timeout_s=90, what="broker_up 1 after the outage")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    finally:
        own.stop()
