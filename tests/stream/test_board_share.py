"""The board publisher's caught-up snapshot is the board every partition's state gives.

Found by ``test_scale_out.py::test_kill_9_of_a_worker_mid_stream_loses_and_double_counts_nothing``
(intermittent, "timed out waiting for the survivor": its last board had the reference's products,
ranks and times, one score from one tick earlier).  After a failover the survivor replays the
dead worker's partitions behind the newest watermark (its own partitions hold it).  A score that
moves at a later tick of such a partition by less than ``board.update_min_score_delta`` at an
unchanged rank is no ``update``, so no merge publishes a snapshot; the caught-up (idle) snapshot
was published only when the merged event time moved, which it does not, so the last board kept
the score of the tick before.  Whether that happens depends on where the replay's batches split
(a boundary between a partition's last decision and its last tick), hence the intermittence.
No broker here: the publisher's merge driven batch by batch, split at many points.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from kafka.partitioner.default import murmur2

from tests.conftest import read_events
from viraltrend.board import Member
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.messages import BoardSnapshot, Message
from viraltrend.stream.scaleout import BoardShare


class _Clock:
    def __init__(self, wm: int) -> None:
        self.watermark_ms: int | None = wm


class _Board:
    def __init__(self, members: list[Member]) -> None:
        self.members = {m.slot: m for m in members}


class _Engine:
    """What the merge reads of a partition's engine: its board's members and its watermark."""

    def __init__(self, wm: int, members: list[Member]) -> None:
        self.clock = _Clock(wm)
        self.board = _Board(members)


class _NullSink:
    """The candidates this worker shares go nowhere (it holds every partition)."""

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        pass


def _member(slot: int, pid: str, score: float) -> Member:
    return Member(slot=slot, product_id=pid, seller_id=None, category=None, score=score, since_ms=0)


def _last_snapshot(published: list[Message]) -> BoardSnapshot:
    return [m for m in published if isinstance(m, BoardSnapshot)][-1]


def test_a_score_change_behind_the_newest_watermark_reaches_the_caught_up_snapshot():
    cfg = load_config(None, environ={})
    a, b = _member(0, "a", 0.90), _member(0, "b", 0.70)
    engines = {0: _Engine(10_000, [a]), 1: _Engine(9_000, [b])}
    share = BoardShare(cfg, engines, {})  # type: ignore[arg-type]  # the merge reads clocks and boards only
    published = share.merge({})  # both promoted, with a snapshot at the newest watermark
    assert [i.score for i in _last_snapshot(published).entries] == [0.90, 0.70]
    assert share.idle_snapshot() is None  # nothing new since
    # partition 1 catches up behind partition 0: a later tick moves b's score by less than
    # update_min_score_delta, and no decision says so
    b.score = 0.69
    engines[1].clock.watermark_ms = 9_990
    published += share.merge({})
    idle = share.idle_snapshot()
    assert idle is not None, "the caught-up publisher kept the board of an earlier tick"
    published.append(idle)
    assert _last_snapshot(published) == share.final_board()[-1]
    assert [i.score for i in idle.entries] == [0.90, 0.69]
    assert share.idle_snapshot() is None  # once


# the scale-out tests' scenario (tests/stream/test_scale_out.py), cut where they cut it
SCENARIO = dict(
    n_events=60_000, n_products=2_000, n_viral=6, n_steady=3, n_spikes=4, duration_s=7200.0, seed=5
)
CUT_S = 4800
PARTITIONS = 4
BATCH = 500  # VIRALTREND_KAFKA_MAX_BATCH_EVENTS of the kill -9 test


@pytest.fixture(scope="module")
def partitioned(scenario_factory):
    """The scenario's events split as the Kafka producer's partitioner splits them by product."""
    directory = scenario_factory(**SCENARIO)
    truth = json.loads((directory / "truth.json").read_text())
    events = read_events(directory / "events.ndjson")
    cut = truth["scenario"]["start_ts_ms"] + CUT_S * 1000
    events = events.take(np.arange(int(np.argmax(events.ts_ms >= cut))))
    part = np.array([(murmur2(p.encode()) & 0x7FFFFFFF) % PARTITIONS for p in events.product_id])
    return [events.take(np.flatnonzero(part == p)) for p in range(PARTITIONS)]


def test_the_survivors_caught_up_board_is_the_final_one_wherever_its_replay_splits(partitioned):
    """A survivor of a kill -9: its own partitions done, the dead worker's replayed after.

    Partitions 0 and 1 are read to their ends first (the newest event of all is in partition 1);
    partitions 2 and 3 are restored from a checkpoint ``REPLAY`` events before their ends and
    replayed in batches of ``BATCH`` events whose first batch is ``phase`` events long: every
    ``phase`` puts the batch boundaries elsewhere.  Each batch is merged as the publisher's turn
    does; once caught up, the last board published must be the board the partitions' states
    give (the one the shutdown publishes, and the one an uninterrupted run ends with).
    """
    cfg = load_config(None, environ={})
    replay = 700
    done = {}
    for p in (0, 1):
        done[p] = Engine(cfg)
        done[p].process(partitioned[p])
    checkpoints = {}
    for p in (2, 3):
        engine = Engine(cfg)
        engine.process(partitioned[p].take(np.arange(len(partitioned[p]) - replay)))
        checkpoints[p] = engine.state()
    stale = []
    for phase in range(10, BATCH, 10):
        engines = {**done, **{p: Engine.restore(cfg, *checkpoints[p]) for p in (2, 3)}}
        share = BoardShare(cfg, engines, {})
        published = share.merge({})
        for p in (2, 3):
            events = partitioned[p]
            bounds = [*range(len(events) - replay + phase, len(events), BATCH), len(events)]
            lo = len(events) - replay
            for hi in bounds:  # the loop's turn: the engine, then the scale-out turn (merge)
                msgs, _ = engines[p].process(events.take(np.arange(lo, hi)))
                share.record(p, msgs)
                published += share.turn(msgs, {p}, _NullSink(), {p: hi})  # type: ignore[arg-type]
                lo = hi
        idle = share.idle_snapshot()
        if idle is not None:
            published.append(idle)
        want = share.final_board()[-1]
        if _last_snapshot(published) != want:
            stale.append((phase, _last_snapshot(published), want))
    assert not stale, f"{len(stale)} split(s) left a stale board, the first: {stale[0]}"
