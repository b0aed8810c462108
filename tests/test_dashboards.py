"""The shipped Grafana dashboard and Prometheus example only name metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from viraltrend.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]


def exported_names() -> set[str]:
    text = generate_latest(Metrics(CollectorRegistry()).registry).decode()
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)}


def test_dashboard_queries_only_exported_metrics():
    dash = json.loads((ROOT / "config" / "grafana" / "viraltrend-dashboard.json").read_text())
    names = exported_names()
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"viraltrend_[a-z_]+", target["expr"]))
    base = {re.sub(r"_(bucket|count|sum|total)$", "", u) for u in used}
    assert base <= names | {n.removesuffix("_total") for n in names}, base - names
    assert len(dash["panels"]) >= 10


def test_prometheus_example_scrapes_the_metrics_path():
    text = (ROOT / "config" / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in text and "9108" in text
