"""A handful of events with ``ts`` in 2099 are rejected as ``future_ts`` and end nothing.

Before the quorum rule, two such events confirmed a jump of the watermark to 2099: every later
event of the partition was ``late``, and the checkpoint kept the jump.  Replay and live.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.stream.services import decisions, finish, produce, read_topic, start_service, topics
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.replay import replay

YEAR_2099_MS = 4_070_908_800_000  # 2099-01-01


def far(i: int) -> bytes:
    obj = {
        "event_id": f"far-{i}",
        "ts": YEAR_2099_MS + i,
        "type": "share",
        "product_id": "p-far",
        "user_id": "u",
    }
    return json.dumps(obj).encode()


@pytest.fixture(scope="module")
def streams(scenario_factory, tmp_path_factory):
    """The small scenario as is, and with two events of 2099 in its middle (lines n/2+1, n/2+2)."""
    directory = scenario_factory(**SMALL)
    lines = (directory / "events.ndjson").read_bytes().splitlines()
    middle = len(lines) // 2
    poisoned = [*lines[:middle], far(0), far(1), *lines[middle:]]
    out = tmp_path_factory.mktemp("far")
    (out / "clean.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    (out / "poisoned.ndjson").write_bytes(b"\n".join(poisoned) + b"\n")
    return out, lines, poisoned, middle


def _decisions(path):
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        r.pop("emitted_at")
    return rows


@pytest.mark.parametrize("batch_size", [50_000, 7_777])
def test_two_events_in_2099_are_the_only_rejects_of_a_replay(streams, batch_size):
    out, lines, _, middle = streams
    cfg = load_config(None, environ={})
    clean = replay([out / "clean.ndjson"], cfg, out=out / f"clean-{batch_size}.ndjson", batch_size=batch_size)
    summary = replay(
        [out / "poisoned.ndjson"],
        cfg,
        out=out / f"poisoned-{batch_size}.ndjson",
        rejects_out=out / f"rejects-{batch_size}.ndjson",
        batch_size=batch_size,
    )
    assert summary.rejected == {**clean.rejected, "future_ts": clean.rejected.get("future_ts", 0) + 2}
    assert summary.events_applied == clean.events_applied == len(lines) - sum(clean.rejected.values())
    rejects = [json.loads(x) for x in (out / f"rejects-{batch_size}.ndjson").read_text().splitlines()]
    assert [(r["reason"], r["offset"]) for r in rejects if r["reason"] == "future_ts"] == [
        ("future_ts", middle + 1),
        ("future_ts", middle + 2),
    ]
    future = [r for r in rejects if r["reason"] == "future_ts"]
    assert [r["original"].encode() for r in future] == [far(0), far(1)]  # the lines as written
    assert {r["source_topic"] for r in future} == {str(out / "poisoned.ndjson")}
    assert _decisions(out / f"poisoned-{batch_size}.ndjson") == _decisions(out / f"clean-{batch_size}.ndjson")


@pytest.mark.integration
def test_two_events_in_2099_are_the_only_dead_letters_of_a_live_run(broker, streams, tmp_path):
    out, _, poisoned, _ = streams
    replay([out / "clean.ndjson"], load_config(None, environ={}), out=out / "want.ndjson")
    want = _decisions(out / "want.ndjson")
    names = topics(broker.bootstrap_servers, "far-future")
    produce(broker.bootstrap_servers, names["input"], poisoned)
    finish(start_service(broker.bootstrap_servers, names, tmp_path), tmp_path)
    dead = [json.loads(v) for _, v in read_topic(broker.bootstrap_servers, names["dlq"])]
    assert [d["reason"] for d in dead] == ["future_ts", "future_ts"]
    assert [base64.b64decode(d["original_b64"]) for d in dead] == [far(0), far(1)]  # as produced
    assert {(d["source_topic"], d["partition"]) for d in dead} == {(names["input"], 0)}
    assert decisions(broker.bootstrap_servers, names["output"]) == want
