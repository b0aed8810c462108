"""`viraltrend run` freezes the objects alive after startup (gc.freeze), so full collections skip them."""

from __future__ import annotations

import re

from tests.stream.services import finish, produce, start_service, topics


def test_the_service_freezes_its_startup_objects_and_still_runs_to_completion(broker, tmp_path):
    lines = [
        b'{"ts":%d,"type":"view","product_id":"p%d","user_id":"u%d"}' % (1_764_000_000_000 + i, i % 5, i)
        for i in range(50)
    ]
    names = topics(broker.bootstrap_servers, "gc-freeze")
    produce(broker.bootstrap_servers, names["input"], lines)
    finish(start_service(broker.bootstrap_servers, names, tmp_path, idle_s=2.0), tmp_path)
    log = (tmp_path / "service.log").read_text()
    frozen = re.search(r"gc: (\d+) objects alive after startup frozen", log)
    assert frozen is not None, log[-2000:]
    assert int(frozen.group(1)) > 10_000  # the imports' objects (numba, kafka-python, ...), not a handful
    assert log.index("gc: ") < log.index("assigned partitions")  # before the first batch
