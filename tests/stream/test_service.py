"""The live service as it runs in production: real ``viraltrend run`` subprocesses, a real broker.

No mocks: events are produced to the embedded Tansu broker, the service is a subprocess of the
CLI, decisions and dead letters are read back from their topics, metrics are scraped over HTTP.
"""

from __future__ import annotations

import json
import signal

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.stream.services import (
    assert_accounted,
    assert_same_state,
    checkpointed_at,
    decisions,
    engine_over,
    finish,
    produce,
    read_topic,
    sample,
    samples,
    scrape,
    start_service,
    topics,
    wait_for,
)
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.replay import replay
from viraltrend.stream.broker import EmbeddedBroker, create_topics, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small(scenario_factory):
    directory = scenario_factory(**SMALL)
    lines = (directory / "events.ndjson").read_bytes().splitlines()
    want_path = directory / "replayed.ndjson"
    if not want_path.exists():
        replay([directory / "events.ndjson"], load_config(None, environ={}), out=want_path)
    want = [json.loads(x) for x in want_path.read_text().splitlines()]
    for w in want:
        w.pop("emitted_at")
    return lines, want


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_live_run_publishes_exactly_the_replay_decisions(broker, small, tmp_path, client):
    lines, want = small
    names = topics(broker.bootstrap_servers, f"live-{client}")
    produce(broker.bootstrap_servers, names["input"], lines)
    finish(
        start_service(broker.bootstrap_servers, names, tmp_path, env={"VIRALTREND_KAFKA_CLIENT": client}),
        tmp_path,
    )
    got = decisions(broker.bootstrap_servers, names["output"])
    assert got == want
    keys = {k for k, _ in read_topic(broker.bootstrap_servers, names["output"])}
    assert b"__board__" in keys


def test_bad_messages_go_to_the_dlq_with_reasons_and_good_ones_flow(broker, tmp_path):
    good = [
        json.dumps(
            {"ts": 1_764_000_000_000 + i, "type": "view", "product_id": f"p{i % 7}", "user_id": "u"}
        ).encode()
        for i in range(200)
    ]
    bad = {
        b"not json": "bad_json",
        b"[1,2]": "not_object",
        b'{"ts":1764000000000,"type":"view","user_id":"u"}': "missing_field",
        b'{"ts":"x","type":"view","product_id":"p","user_id":"u"}': "bad_ts",
        b'{"ts":1764000000000,"type":"wishlist","product_id":"p","user_id":"u"}': "unknown_event_type",
        b'{"ts":1764000000000,"type":"view","product_id":"p","user_id":"u","price":NaN}': "bad_number",
        b'{"ts":-5,"type":"view","product_id":"p","user_id":"u"}': "bad_ts",
        b'{"ts":99999999999999,"type":"view","product_id":"p","user_id":"u"}': "bad_ts",
        (
            '{"ts":1764000000000,"type":"view","product_id":"' + "x" * 5000 + '","user_id":"u"}'
        ).encode(): "bad_string",
        b'{"ts":1764000000000,"type":"view","product_id":"\xff\xfe","user_id":"u"}': "bad_utf8",
    }
    stream = []
    for i, raw in enumerate(bad):
        stream += good[i * 20 : (i + 1) * 20] + [raw]
    names = topics(broker.bootstrap_servers, "dlq")
    produce(broker.bootstrap_servers, names["input"], stream)
    port = free_port()
    proc = start_service(broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None)
    try:
        wait_for(
            lambda: len(read_topic(broker.bootstrap_servers, names["dlq"], timeout_s=10)) >= len(bad),
            what="dead letters",
        )
        text = scrape(port)
        assert sample(text, 'viraltrend_events_consumed_total{partition="0"}') == len(stream)
        assert sample(text, 'viraltrend_events_rejected_total{reason="bad_ts"}') == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    records = [json.loads(v) for _, v in read_topic(broker.bootstrap_servers, names["dlq"])]
    import base64

    got = {base64.b64decode(r["original_b64"]): r["reason"] for r in records}
    assert got == bad
    assert all(r["partition"] == 0 and r["offset"] >= 0 and r["detail"] for r in records)


def test_kill_9_then_restart_gives_the_board_of_an_uninterrupted_run(broker, small, tmp_path):
    lines, want = small
    names = topics(broker.bootstrap_servers, "crash")
    produce(broker.bootstrap_servers, names["input"], lines)
    slow = {"VIRALTREND_KAFKA_MAX_BATCH_EVENTS": "1500", "VIRALTREND_CHECKPOINT_INTERVAL_S": "0.3"}
    proc = start_service(broker.bootstrap_servers, names, tmp_path, env=slow, idle_s=None, store="local")
    ckpt = tmp_path / "ckpt" / f"g-{names['input']}" / f"{names['input']}-0" / "meta.json"

    def progressed() -> bool:
        offset = checkpointed_at(ckpt)  # the base's, or its latest delta's
        return 5_000 < offset < len(lines) - 5_000

    wait_for(progressed, what="a checkpoint in the middle of the stream")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    finish(start_service(broker.bootstrap_servers, names, tmp_path, env=slow, store="local"), tmp_path)
    got = decisions(broker.bootstrap_servers, names["output"])
    assert got[-1]["action"] == "board"
    assert got[-1] == want[-1], "the final board equals the uninterrupted run's"
    # at-least-once: every decision of the uninterrupted run was published, in order, maybe twice
    deduped = []
    for m in got:
        if m not in deduped[-200:] or m["action"] == "board":
            deduped.append(m)
    assert [m for m in want if m["action"] != "board"] == [m for m in deduped if m["action"] != "board"]


def test_sigterm_finishes_the_batch_checkpoints_commits_and_exits(broker, small, tmp_path):
    lines, _ = small
    names = topics(broker.bootstrap_servers, "term")
    produce(broker.bootstrap_servers, names["input"], lines[:5000])
    port = free_port()
    proc = start_service(
        broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None, store="local"
    )
    wait_for(lambda: _consumed(port) >= 5000, what="the service to consume the input")
    proc.send_signal(signal.SIGTERM)
    finish(proc, tmp_path, timeout_s=30)
    meta = tmp_path / "ckpt" / f"g-{names['input']}" / f"{names['input']}-0" / "meta.json"
    assert checkpointed_at(meta) == 5000
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=f"g-{names['input']}", enable_auto_commit=False
    )
    committed = consumer.committed(TopicPartition(names["input"], 0))
    consumer.close()
    assert committed == 5000


def _consumed(port: int) -> float:
    try:
        return sample(scrape(port), 'viraltrend_events_consumed_total{partition="0"}') or 0.0
    except OSError:
        return 0.0


def test_metrics_endpoint_serves_the_documented_metrics(broker, small, tmp_path):
    lines, _ = small
    names = topics(broker.bootstrap_servers, "metrics")
    produce(broker.bootstrap_servers, names["input"], lines[:20000])
    port = free_port()
    model_on = {"VIRALTREND_MODEL_ENABLED": "true", "VIRALTREND_CHECKPOINT_INTERVAL_S": "1"}
    proc = start_service(
        broker.bootstrap_servers, names, tmp_path, metrics_port=port, idle_s=None, env=model_on
    )
    try:
        wait_for(
            lambda: (
                _consumed(port) >= 20000
                and (sample(scrape(port), "viraltrend_model_labels_seen") or 0) > 0
                and sample(scrape(port), 'viraltrend_changelog_lag{partition="0"}') == 0
            ),
            what="consumption, delayed labels and a checkpoint of everything read",
        )
        text = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    for name in (
        "viraltrend_batch_duration_seconds_bucket",
        "viraltrend_end_to_end_latency_seconds_count",
        "viraltrend_tracked_products",
        "viraltrend_board_size",
        "viraltrend_broker_up",
        "viraltrend_last_checkpoint_timestamp_seconds",
        'viraltrend_board_changes_total{action="promote"}',
        'viraltrend_build_info{version="0.1.0"}',
        'viraltrend_events_rejected_total{reason="bad_json"}',
        "viraltrend_restore_duration_seconds_count",
        'viraltrend_rebalances_total{kind="assigned"}',
        "viraltrend_checkpoint_bytes",
        "viraltrend_board_publisher",
        "viraltrend_model_roc_auc",
        "viraltrend_model_log_loss",
        "viraltrend_model_precision",
        "viraltrend_model_warm",
        "viraltrend_products_evicted_over_cap",
    ):
        assert sample(text, name) is not None, name
    assert sample(text, "viraltrend_tracked_products") > 100
    ids = {
        k: sample(text, f'viraltrend_tracked_ids{{kind="{k}"}}')
        for k in ("products", "sellers", "users", "dedup")
    }
    assert ids["products"] == sample(text, "viraltrend_tracked_products")
    assert ids["sellers"] >= 1 and ids["users"] > 100 and ids["dedup"] > 100, ids
    assert sample(text, "viraltrend_broker_up") == 1.0
    assert sample(text, "viraltrend_assigned_partitions") == 1.0
    assert sample(text, "viraltrend_checkpoint_bytes") > 0
    assert 0.0 <= sample(text, "viraltrend_model_roc_auc") <= 1.0
    assert "product_id" not in text


def test_broker_outage_is_ridden_out_and_processing_resumes(small, tmp_path):
    """The broker goes away mid-stream and comes back: the state is that of an uninterrupted run.

    (Issue 12, item 10: this test once checked only that reading resumed, which lost state passes.)
    """
    lines, _ = small
    port = free_port()
    own = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log").start()
    try:
        names = topics(own.bootstrap_servers, "outage")
        produce(own.bootstrap_servers, names["input"], lines[:2000])
        mport = free_port()
        # local checkpoints: this memory-only broker forgets a changelog topic when it restarts
        proc = start_service(
            own.bootstrap_servers,
            names,
            tmp_path,
            metrics_port=mport,
            idle_s=None,
            store="local",
            env={"VIRALTREND_CHECKPOINT_INTERVAL_S": "1"},
        )
        meta = tmp_path / "ckpt" / f"g-{names['input']}" / f"{names['input']}-0" / "meta.json"
        # a checkpoint before the outage, so that the service must roll back to it and seek
        wait_for(lambda: checkpointed_at(meta) == 2000, what="a checkpoint before the outage")
        own.stop()
        wait_for(
            lambda: sample(scrape(mport), "viraltrend_broker_up") == 0.0, timeout_s=90, what="broker_up 0"
        )
        assert proc.poll() is None, "the service must not crash while the broker is away"
        own.start()
        # The memory-only broker forgot its topics and offsets (a real cluster keeps them): make
        # them again with the same records at the same offsets, then the rest of the stream.
        topics(own.bootstrap_servers, "outage")
        produce(own.bootstrap_servers, names["input"], lines[:5000])
        wait_for(
            lambda: sample(scrape(mport), "viraltrend_broker_up") == 1.0 and checkpointed_at(meta) == 5000,
            timeout_s=90,
            what="the stream's end checkpointed after the outage",
        )
        text = scrape(mport)
        proc.send_signal(signal.SIGTERM)
        finish(proc, tmp_path, timeout_s=30)
    finally:
        own.stop()
    assert sample(text, "viraltrend_broker_errors_total") >= 1
    assert_accounted(text)
    # Everything read before the outage was in the checkpoint, so nothing is read twice.  (The
    # state alone cannot tell: dedup and the lateness bound would reject a re-read as
    # duplicate or late, so the rejects must also be those of an uninterrupted run: none here.)
    assert sum(samples(text, "viraltrend_events_consumed_total").values()) == 5000
    assert sum(samples(text, "viraltrend_events_rejected_total").values()) == 0
    path = tmp_path / "first5000.ndjson"
    path.write_bytes(b"\n".join(lines[:5000]) + b"\n")
    assert_same_state(meta.parent.parent, names["input"], 5000, engine_over(path))


def test_blocklist_topic_blocks_a_trending_product_live(broker, scenario_factory, tmp_path):
    directory = scenario_factory(**SMALL)
    lines = (directory / "events.ndjson").read_bytes().splitlines()
    viral = json.loads((directory / "truth.json").read_text())["viral"][0]
    names = topics(broker.bootstrap_servers, "blocklist")
    blocklist = f"{names['input']}-blocklist"
    create_topics(broker.bootstrap_servers, {blocklist: 1}, compacted={blocklist})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    producer.send(blocklist, key=f"seller:{viral['seller_id']}".encode(), value=b"fake_reviews_elsewhere")
    producer.send(blocklist, key=b"seller:s-unblocked-later", value=b"x")
    producer.send(blocklist, key=b"seller:s-unblocked-later", value=None)
    producer.flush()
    producer.close()
    produce(broker.bootstrap_servers, names["input"], lines)
    finish(
        start_service(
            broker.bootstrap_servers, names, tmp_path, env={"VIRALTREND_TRUST_BLOCKLIST_TOPIC": blocklist}
        ),
        tmp_path,
    )
    got = [
        m
        for m in decisions(broker.bootstrap_servers, names["output"])
        if m.get("product_id") == viral["product_id"]
    ]
    assert [m["action"] for m in got][:1] == ["block"]
    assert "promote" not in [m["action"] for m in got]
    assert got[0]["reasons"][:2] == ["seller_blocked", "blocklist_reason:fake_reviews_elsewhere"]
