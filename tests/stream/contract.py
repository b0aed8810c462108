"""The output contracts (``shared/contract/deals.md``, ``events.md``) as checks on the bytes written.

Written from the contract text, apart from :mod:`viraltrend.messages`: each check decodes a
message with the standard ``json`` module (so a value that is not UTF-8 JSON fails) and checks
its keys, their order and their types, as a subscriber would read them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

DECISION_FIELDS = (
    "schema",
    "action",
    "product_id",
    "seller_id",
    "category",
    "rank",
    "score",
    "event_ts",
    "emitted_at",
    "reasons",
    "features",
)
BOARD_FIELDS = ("schema", "action", "event_ts", "emitted_at", "items")
ITEM_FIELDS = ("rank", "product_id", "seller_id", "category", "score", "since_ts")
DEAD_LETTER_FIELDS = (
    "schema",
    "reason",
    "detail",
    "source_topic",
    "partition",
    "offset",
    "original",
    "original_b64",
    "rejected_at",
)
DEAD_LETTER_OPTIONAL = ("extra", "truncated", "original_size", "original_sha256")
ACTIONS = ("promote", "update", "demote", "block")
BOARD_KEY = b"__board__"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id(value: Any, most: int = 128) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= most


def check_deals_message(key: bytes | None, value: bytes, *, stamped: bool = True) -> dict[str, Any]:
    """One message of the deals topic, checked against ``deals.md``; returns it decoded.

    ``stamped``: ``emitted_at`` must be set (published), else it may be null.
    """
    m = json.loads(value.decode("utf-8"))
    assert isinstance(m, dict) and m.get("schema") == 1, m
    assert _int(m["event_ts"]) and m["event_ts"] >= 0, m
    assert _int(m["emitted_at"]) if stamped else (m["emitted_at"] is None or _int(m["emitted_at"])), m
    if m["action"] == "board":
        assert key is None or key == BOARD_KEY, key
        assert tuple(m) == BOARD_FIELDS, list(m)
        assert [item["rank"] for item in m["items"]] == list(range(1, len(m["items"]) + 1)), m
        for item in m["items"]:
            assert tuple(item) == ITEM_FIELDS, list(item)
            assert _id(item["product_id"]) and not item["product_id"].startswith("__"), item
            assert item["seller_id"] is None or _id(item["seller_id"]), item
            assert item["category"] is None or _id(item["category"], 64), item
            assert isinstance(item["score"], float) and 0.0 <= item["score"] <= 1.0, item
            assert _int(item["since_ts"]), item
        return m
    assert tuple(m) == DECISION_FIELDS, list(m)
    assert m["action"] in ACTIONS, m
    assert _id(m["product_id"]) and not m["product_id"].startswith("__"), m
    assert key is None or key == m["product_id"].encode("utf-8"), (key, m["product_id"])
    assert m["seller_id"] is None or _id(m["seller_id"]), m
    assert m["category"] is None or _id(m["category"], 64), m
    if m["action"] in ("demote", "block"):
        assert m["rank"] is None, m
    else:
        assert _int(m["rank"]) and m["rank"] >= 1, m
    assert isinstance(m["score"], float) and 0.0 <= m["score"] <= 1.0, m
    assert isinstance(m["reasons"], list) and all(isinstance(r, str) and r for r in m["reasons"]), m
    assert isinstance(m["features"], dict), m
    for name, x in m["features"].items():
        assert isinstance(name, str) and isinstance(x, int | float) and math.isfinite(x), (name, x)
    return m


def check_dead_letter(value: bytes, original: bytes | None = None) -> dict[str, Any]:
    """One dead letter (DLQ record or replay rejects-file line), checked against ``events.md``.

    It must hold the original bytes (whole, or when truncated a prefix with the full size and
    SHA-256), where it was read (source, partition, offset) and a one-line reason.  With
    ``original``, the bytes it holds must be those.
    """
    d = json.loads(value.decode("utf-8"))
    assert isinstance(d, dict) and d["schema"] == 1, d
    assert tuple(d)[: len(DEAD_LETTER_FIELDS)] == DEAD_LETTER_FIELDS, list(d)
    assert set(d) - set(DEAD_LETTER_FIELDS) <= set(DEAD_LETTER_OPTIONAL), list(d)
    assert _id(d["reason"], 64) and isinstance(d["detail"], str) and "\n" not in d["detail"], d
    assert isinstance(d["source_topic"], str) and _int(d["partition"]) and _int(d["offset"]), d
    assert _int(d["rejected_at"]), d
    held = base64.b64decode(d["original_b64"], validate=True)
    if d["original"] is not None:
        assert d["original"].encode("utf-8") == held, d
    if d.get("truncated"):
        assert d["truncated"] is True and _int(d["original_size"]) and d["original_size"] > len(held), d
        assert len(d["original_sha256"]) == 64, d
        if original is not None:
            assert original.startswith(held) and d["original_size"] == len(original), d
            assert d["original_sha256"] == hashlib.sha256(original).hexdigest(), d
    else:
        assert "original_size" not in d and "original_sha256" not in d, d
        if original is not None:
            assert held == original, (held[:200], original[:200])
    return d
