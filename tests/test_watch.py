"""BoardWatcher and watch() on the embedded broker, fed deals-contract messages made here (no mocks)."""

from __future__ import annotations

import io
import json
import time

import pytest
from kafka import KafkaProducer
from rich.console import Console

# The broker fixtures live in tests/stream/conftest.py; imported here they give this module its own broker.
from tests.stream.conftest import broker, topic_factory  # noqa: F401
from viraltrend.errors import StreamError
from viraltrend.watch import BoardWatcher, watch

T = 1_764_253_200_000  # 2025-11-27 14:20:00 UTC
MIN = 60_000


def item(
    rank: int, pid: str, score: float, since: int, seller: str = "s-1", category: str = "beauty"
) -> dict:
    return {"rank": rank, "product_id": pid, "seller_id": seller, "category": category, "score": score,
            "since_ts": since}  # fmt: skip


def board(ts: int, *items: dict) -> tuple[bytes, dict]:
    return b"__board__", {
        "schema": 1,
        "action": "board",
        "event_ts": ts,
        "emitted_at": 1,
        "items": list(items),
    }


def decision(
    action: str,
    pid: str,
    ts: int,
    rank: int | None = None,
    score: float = 0.5,
    reasons: tuple[str, ...] = ("test",),
    seller: str = "s-1",
    category: str = "beauty",
) -> tuple[bytes, dict]:
    value = {"schema": 1, "action": action, "product_id": pid, "seller_id": seller, "category": category}
    value |= {"rank": rank, "score": score, "event_ts": ts, "emitted_at": 1, "reasons": list(reasons)}
    return pid.encode(), value | {"features": {"lift": 3.0}}


def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, dict | bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    for key, value in messages:
        producer.send(topic, key=key, value=value if isinstance(value, bytes) else json.dumps(value).encode())
    producer.flush(timeout=30)
    producer.close()


def follow(bootstrap: str, topic: str, count: int, **kwargs) -> BoardWatcher:
    watcher = BoardWatcher(bootstrap, topic, **kwargs)
    deadline = time.monotonic() + 20
    while watcher.messages < count and time.monotonic() < deadline:
        watcher.poll(200)
    assert watcher.messages == count
    return watcher


STORY = [
    board(
        T, item(1, "p-1", 0.9, T - 10 * MIN), item(2, "p-2", 0.8, T - 5 * MIN, seller="s-2", category="home")
    ),
    decision("promote", "p-3", T + MIN, rank=1, score=0.95, reasons=("scored_by_rule", "velocity_5m_x8.2")),
    decision("update", "p-1", T + MIN, rank=2, score=0.88, reasons=("rank_changed",)),
    decision(
        "demote", "p-2", T + MIN, score=0.3, reasons=("score_below_0.4",), seller="s-2", category="home"
    ),
    decision("block", "p-9", T + 2 * MIN, score=0.97, reasons=("seller_blocked",), seller="s-9"),
]
EXPECTED = [item(1, "p-3", 0.95, T + MIN), item(2, "p-1", 0.88, T - 10 * MIN)]
TRUTH = {"viral": [{"product_id": "p-3", "onset_ts": T - 3 * MIN}], "attacks": [{"seller_id": "s-9"}]}


@pytest.fixture
def story_topic(broker, topic_factory) -> str:  # noqa: F811
    topic = topic_factory(partitions=3, compacted=True)
    publish(broker.bootstrap_servers, topic, STORY)
    return topic


@pytest.mark.integration
def test_watcher_applies_the_snapshot_then_the_decisions_after_it(broker, story_topic):  # noqa: F811
    with follow(broker.bootstrap_servers, story_topic, len(STORY)) as watcher:
        assert watcher.board == EXPECTED
        assert dict(watcher.counts) == {"board": 1, "promote": 1, "update": 1, "demote": 1, "block": 1}
        assert watcher.event_ts_ms == T + 2 * MIN
        newest, *rest = [m["product_id"] for m in watcher.recent]
        assert newest == "p-9" and sorted(rest) == ["p-2", "p-3"]  # p-2 and p-3: same event time


@pytest.mark.integration
def test_a_snapshot_read_late_keeps_later_decisions_and_ignores_earlier_ones(broker, topic_factory):  # noqa: F811
    topic = topic_factory(partitions=1)
    publish(broker.bootstrap_servers, topic, [
        decision("promote", "p-3", T + MIN, rank=2, score=0.7),  # after the snapshot: applied on top
        decision("demote", "p-1", T - MIN),  # before it: already part of the snapshot, ignored
        board(T, item(1, "p-1", 0.9, T - 10 * MIN)),
        decision("update", "p-1", T, rank=1, score=0.1),  # at the snapshot's time: included in it
    ])  # fmt: skip
    with follow(broker.bootstrap_servers, topic, 4) as watcher:
        assert [(r["product_id"], r["rank"], r["score"]) for r in watcher.board] == [
            ("p-1", 1, 0.9),
            ("p-3", 2, 0.7),
        ]


@pytest.mark.integration
def test_recent_feed_keeps_the_newest_decisions_without_updates(broker, topic_factory):  # noqa: F811
    topic = topic_factory(partitions=1)
    messages = [decision("promote", f"p-{i}", T + i * MIN, rank=1) for i in range(6)]
    messages += [decision("update", "p-5", T + 9 * MIN, rank=1), (b"junk", b"not json")]
    publish(broker.bootstrap_servers, topic, messages)
    with follow(broker.bootstrap_servers, topic, len(messages), recent=3) as watcher:
        assert [m["product_id"] for m in watcher.recent] == ["p-5", "p-4", "p-3"]
        assert watcher.counts["invalid"] == 1 and watcher.counts["update"] == 1


@pytest.mark.integration
def test_render_prints_the_board_the_decisions_and_the_truth(broker, story_topic):  # noqa: F811
    with follow(broker.bootstrap_servers, story_topic, len(STORY)) as watcher:
        console = Console(file=io.StringIO(), width=120)
        console.print(watcher.render(TRUTH, extra_status="fed 1,234 events"))
    text = console.file.getvalue()
    expected = ["p-3", "p-1", "p-9", "viral +5m", "seller_blocked", "velocity_5m_x8.2", "fed 1,234 events"]
    expected += ["2025-11-27 14:22:00 UTC", "14:21:00", "viral on board 1"]
    for part in expected:
        assert part in text, part
    assert "p-2 " not in text.split("recent decisions")[0]  # demoted: gone from the table


@pytest.mark.integration
def test_watch_on_a_pipe_prints_summaries_and_the_final_board(broker, story_topic, tmp_path):  # noqa: F811
    truth_path = tmp_path / "truth.json"
    truth_path.write_text(json.dumps(TRUTH))
    console = Console(file=io.StringIO(), width=120)  # not a terminal: no Live display
    watcher = watch(
        broker.bootstrap_servers,
        story_topic,
        duration_s=1.5,
        truth_path=truth_path,
        extra_status=lambda: "metrics at http://x",
        console=console,
        plain_interval_s=0.5,
    )
    text = console.file.getvalue()
    assert watcher.board == EXPECTED
    assert text.count("event time 2025-11-27 14:22:00 UTC") >= 2  # summaries, then the final board
    assert "metrics at http://x" in text and "viral +5m" in text and "\x1b[" not in text


@pytest.mark.integration
def test_watching_a_missing_topic_is_a_stream_error_naming_it(broker):  # noqa: F811
    with pytest.raises(StreamError, match="no-such-deals-topic"):
        BoardWatcher(broker.bootstrap_servers, "no-such-deals-topic")
