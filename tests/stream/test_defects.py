"""Smaller defects of the live service (issue 12, item 8): a silent fresh start, gauges after a revoke."""

from __future__ import annotations

import shutil

import pytest
from prometheus_client import CollectorRegistry

from tests.stream.services import finish, produce, start_service, topics
from tests.stream.test_accounting import good
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.metrics import Metrics
from viraltrend.stream.loop import Service


@pytest.mark.integration
def test_a_missing_checkpoint_behind_committed_offsets_is_a_loud_warning(broker, tmp_path):
    names = topics(broker.bootstrap_servers, "lost-checkpoint")
    produce(broker.bootstrap_servers, names["input"], [good(i) for i in range(300)])
    finish(start_service(broker.bootstrap_servers, names, tmp_path, store="local"), tmp_path)
    shutil.rmtree(tmp_path / "ckpt")  # the checkpoint is gone; the group's offsets (300) are not
    produce(broker.bootstrap_servers, names["input"], [good(i) for i in range(300, 400)])
    finish(
        start_service(broker.bootstrap_servers, names, tmp_path, store="local", log_name="again.log"),
        tmp_path,
    )
    log = (tmp_path / "again.log").read_text()
    warnings = [line for line in log.splitlines() if "NO CHECKPOINT" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0]
    assert "offset 300" in warnings[0] and "partition 0" in warnings[0]
    assert "NO CHECKPOINT" not in (tmp_path / "service.log").read_text()  # a first start from 0 is normal


def test_per_partition_gauges_go_away_with_the_partition():
    registry = CollectorRegistry()
    cfg = load_config(None, environ={})
    service = Service(cfg, metrics=Metrics(registry))
    service.engines.update({0: Engine(cfg), 1: Engine(cfg)})
    for p in ("0", "1"):
        service.metrics.consumer_lag.labels(partition=p).set(5)
        service.metrics.changelog_lag.labels(partition=p).set(7)
    service._drop({1})
    assert registry.get_sample_value("viraltrend_consumer_lag", {"partition": "1"}) is None
    assert registry.get_sample_value("viraltrend_changelog_lag", {"partition": "1"}) is None
    assert registry.get_sample_value("viraltrend_consumer_lag", {"partition": "0"}) == 5
