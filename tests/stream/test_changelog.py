"""ChangelogStore against the real embedded broker: chunked round trips, replacement, tombstones, refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from viraltrend.errors import CheckpointError, ConfigError, StreamError
from viraltrend.stream.broker import EmbeddedBroker, describe_topic
from viraltrend.stream.changelog import HEADER_FORMAT, ChangelogStore, FencedError, create_changelog_topic
from viraltrend.stream.checkpoint import StateStore

pytestmark = pytest.mark.integration

INPUT = "engagement-events"
CHUNK = 16_384  # small chunks, so that every test state needs several


def sample_arrays(seed: int = 0, n: int = 4000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "counters.acc": rng.normal(size=(n, 3)),  # float64, 96 kB at n=4000
        "slots": rng.integers(-(2**62), 2**62, size=n, dtype=np.int64),
        "small": rng.integers(-100, 100, size=n, dtype=np.int32),
        "bytes": rng.integers(0, 255, size=n, dtype=np.uint8),
        "flags": rng.random(n) > 0.5,
        "f32": rng.random((7, 5)).astype(np.float32),
        "names": np.array([f"p-{i}" for i in range(50)]),
        "empty": np.zeros(0, dtype=np.int64),
    }


def assert_arrays_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key, arr in want.items():
        assert got[key].dtype == arr.dtype, key
        assert got[key].shape == arr.shape, key
        np.testing.assert_array_equal(got[key], arr, err_msg=key)


def read_partition(bootstrap: str, topic: str, partition: int) -> list[tuple[str, bytes | None]]:
    """Every (key, value) record of ``topic``/``partition``, in order (an independent raw reader)."""
    tp = TopicPartition(topic, partition)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out: list[tuple[str, bytes | None]] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500).get(tp, [])
            out += [(r.key.decode(), r.value) for r in batch]
            high = consumer.highwater(tp)
            if not batch and high is not None and consumer.position(tp) >= high:
                return out
    finally:
        consumer.close(autocommit=False)
    pytest.fail(f"could not read {topic}/{partition} to its end")


def produce(bootstrap: str, topic: str, partition: int, records: list[tuple[str, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4_000_000)
    for key, value in records:
        producer.send(topic, key=key.encode(), value=value, partition=partition)
    producer.flush(timeout=30)
    producer.close()


def header(records: list[tuple[str, bytes | None]], name: str) -> dict:
    """The latest header record of checkpoint ``name``."""
    values = [v for k, v in records if k == name]
    assert values and values[-1] is not None
    return json.loads(values[-1])


@pytest.fixture
def changelog(broker: EmbeddedBroker, topic_factory: Callable[..., str]) -> Callable[..., str]:
    """``changelog(partitions=1)``: a new compacted topic for checkpoints."""

    def make(partitions: int = 1) -> str:
        return topic_factory(partitions, compacted=True)

    return make


@pytest.fixture(params=["kafka-python", "confluent"])
def store_factory(
    broker: EmbeddedBroker, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ChangelogStore]]:
    """``store_factory(topic, partitions=1, **options)``: a ChangelogStore closed at teardown.

    Every test runs with both readers of the changelog (kafka-python, librdkafka).
    """
    made: list[ChangelogStore] = []

    def make(topic: str, partitions: int = 1, **options: object) -> ChangelogStore:
        options.setdefault("max_chunk_bytes", CHUNK)
        options.setdefault("reader", request.param)
        store = ChangelogStore(broker.bootstrap_servers, topic, INPUT, partitions=partitions, **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_round_trip_of_a_chunked_checkpoint(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    arrays = sample_arrays()
    meta = {"clock_ms": 1_764_253_200_123, "board": [{"product_id": "p-1", "score": 2.5}], "ü": "ok"}
    written = store.save(0, arrays, meta, {0: 12345})
    got, got_meta, offsets = store.load(0)
    assert_arrays_equal(got, arrays)
    assert got_meta == meta
    assert offsets == {0: 12345}
    head = header(read_partition(broker.bootstrap_servers, topic, 0), f"{INPUT}-0")
    assert head["format"] == HEADER_FORMAT
    assert head["n_chunks"] == len(head["chunks"]) > 3
    assert head["total_bytes"] > 3 * CHUNK
    assert written > head["total_bytes"]
    assert head["offsets"] == {"0": 12345}


def test_a_sparse_state_round_trips_in_fewer_bytes_than_raw(broker, changelog, store_factory):
    rng = np.random.default_rng(1)
    rows = np.full((16_384, 2), -1, np.int64)  # an open-addressing table, a tenth full
    rows[rng.choice(16_384, 1_600, replace=False)] = rng.integers(0, 2**40, (1_600, 2))
    acc = np.zeros((4_096, 6, 4))  # counter cells, most never touched
    acc[rng.choice(4_096, 500), rng.integers(0, 6, 500)] = rng.random((500, 4))
    acc[1, 0, 0], acc[2, 0, 0] = -0.0, np.nan
    arrays = {"users.rows": rows, "counters.acc": acc, **sample_arrays()}
    sizes = {}
    for sparse in (True, False):
        topic = changelog()
        sizes[sparse] = store_factory(topic, sparse=sparse).save(0, arrays, {"v": 1}, {0: 1})
        got, meta, _ = store_factory(topic).load(0)
        for key, arr in arrays.items():
            assert got[key].dtype == arr.dtype and got[key].tobytes() == arr.tobytes(), key
        assert meta == {"v": 1}
    assert sizes[True] < 0.5 * sizes[False]


def test_loaded_arrays_are_aligned_in_memory(changelog, store_factory):
    """Raw arrays are views of the loaded blob: placed so that they start at multiples of 64 bytes."""
    topic = changelog()
    for v in range(3):  # meta of another length each time: the arrays' offset in the blob moves
        store_factory(topic).save(0, sample_arrays(seed=v), {"v": "x" * v}, {0: v})
        got, meta, _ = store_factory(topic).load(0)
        assert meta == {"v": "x" * v}
        assert all(a.ctypes.data % 64 == 0 for a in got.values() if a.size), v


def test_store_implements_the_state_store_protocol(changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    assert isinstance(store, StateStore)
    assert topic in store.describe


def test_second_save_replaces_the_first(changelog, store_factory):
    store = store_factory(changelog())
    store.save(0, sample_arrays(seed=1), {"v": 1}, {0: 10})
    second = sample_arrays(seed=2, n=3000)
    store.save(0, second, {"v": 2}, {0: 20})
    got, meta, offsets = store.load(0)
    assert_arrays_equal(got, second)
    assert (meta, offsets) == ({"v": 2}, {0: 20})


def test_old_chunks_are_tombstoned_after_the_new_header(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    store.save(0, sample_arrays(seed=1), {"v": 1}, {0: 10})
    store.save(0, sample_arrays(seed=2), {"v": 2}, {0: 20})
    records = read_partition(broker.bootstrap_servers, topic, 0)
    name = f"{INPUT}-0"
    first, second = (json.loads(v) for k, v in records if k == name and v is not None)
    old_keys = {f"{name}/{first['seq']}/{i}" for i in range(first["n_chunks"])}
    new_keys = {f"{name}/{second['seq']}/{i}" for i in range(second["n_chunks"])}
    assert second["seq"] > first["seq"]
    last_header = max(i for i, (k, _) in enumerate(records) if k == name)
    tombstones = {k for k, v in records[last_header + 1 :] if v is None}
    assert tombstones == old_keys
    assert not any(v is None for k, v in records if k in new_keys)


def test_partitions_are_independent(changelog, store_factory):
    store = store_factory(changelog(3), partitions=3)
    a, c = sample_arrays(seed=10, n=500), sample_arrays(seed=30, n=900)
    store.save(0, a, {"p": 0}, {0: 100})
    store.save(2, c, {"p": 2}, {2: 300})
    store.save(0, a, {"p": 0, "again": True}, {0: 101})
    assert store.load(1) is None
    got_a, meta_a, off_a = store.load(0)
    got_c, meta_c, off_c = store.load(2)
    assert_arrays_equal(got_a, a)
    assert_arrays_equal(got_c, c)
    assert (meta_a, off_a) == ({"p": 0, "again": True}, {0: 101})
    assert (meta_c, off_c) == ({"p": 2}, {2: 300})


def test_partition_with_nothing_loads_none(changelog, store_factory):
    store = store_factory(changelog())
    assert store.load(0) is None
    assert store.last_load_records == 0


def test_fresh_store_restores_what_another_one_wrote(broker, changelog, store_factory):
    topic = changelog(2)
    writer = store_factory(topic, partitions=2)
    arrays = sample_arrays(seed=5)
    writer.save(1, arrays, {"from": "machine-a"}, {1: 777})
    writer.close()
    reader = store_factory(topic, partitions=2)  # "another machine": knows nothing of the writer
    got, meta, offsets = reader.load(1)
    assert_arrays_equal(got, arrays)
    assert (meta, offsets) == ({"from": "machine-a"}, {1: 777})
    records = read_partition(broker.bootstrap_servers, topic, 1)
    assert reader.last_load_records == len(records)
    assert reader.last_load_bytes == sum(len(v) for _, v in records if v is not None)


def test_fresh_store_saving_first_tombstones_the_previous_chunks(broker, changelog, store_factory):
    topic = changelog()
    store_factory(topic).save(0, sample_arrays(seed=1), {"v": 1}, {0: 10})
    store_factory(topic).save(0, sample_arrays(seed=2), {"v": 2}, {0: 20})  # never loaded first
    records = read_partition(broker.bootstrap_servers, topic, 0)
    name = f"{INPUT}-0"
    first = json.loads(next(v for k, v in records if k == name))
    live = {k: v for k, v in records}  # what compaction keeps: the latest value per key
    assert all(live[f"{name}/{first['seq']}/{i}"] is None for i in range(first["n_chunks"]))
    assert store_factory(topic).load(0)[1] == {"v": 2}


def test_crash_before_the_header_leaves_the_previous_checkpoint(broker, changelog, store_factory):
    topic = changelog()
    arrays = sample_arrays(seed=1)
    store_factory(topic).save(0, arrays, {"v": 1}, {0: 10})
    name = f"{INPUT}-0"
    orphans = [(f"{name}/7/{i}", b"half-written chunk") for i in range(3)]
    produce(broker.bootstrap_servers, topic, 0, orphans)  # chunks of a save that died before its header
    survivor = store_factory(topic)
    got, meta, offsets = survivor.load(0)
    assert_arrays_equal(got, arrays)
    assert (meta, offsets) == ({"v": 1}, {0: 10})
    survivor.save(0, arrays, {"v": 2}, {0: 20})
    live = dict(read_partition(broker.bootstrap_servers, topic, 0))
    assert all(live[key] is None for key, _ in orphans)
    assert header(list(live.items()), name)["seq"] > 7


def test_corrupted_chunk_is_refused(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    store.save(0, sample_arrays(), {"v": 1}, {0: 10})
    seq = header(read_partition(broker.bootstrap_servers, topic, 0), f"{INPUT}-0")["seq"]
    produce(broker.bootstrap_servers, topic, 0, [(f"{INPUT}-0/{seq}/1", b"\x00" * CHUNK)])
    with pytest.raises(CheckpointError, match=rf"chunk .*/{seq}/1.* does not match its SHA-256") as info:
        store_factory(topic).load(0)
    assert topic in str(info.value) and "partition 0" in str(info.value)
    assert "tombstone" in str(info.value)


@pytest.mark.parametrize("how", ["truncated", "foreign"])
def test_a_truncated_or_foreign_chunk_is_refused(broker, changelog, store_factory, how):
    topic = changelog()
    store = store_factory(topic)
    store.save(0, sample_arrays(), {"v": 1}, {0: 10})
    records = read_partition(broker.bootstrap_servers, topic, 0)
    seq = header(records, f"{INPUT}-0")["seq"]
    chunk = dict(records)[f"{INPUT}-0/{seq}/1"]
    assert chunk is not None
    if how == "truncated":
        value = chunk[:-1]
    else:  # a chunk of another checkpoint, of the same length
        other = changelog()
        store_factory(other).save(0, sample_arrays(seed=5), {"v": 2}, {0: 10})
        value = dict(read_partition(broker.bootstrap_servers, other, 0))[f"{INPUT}-0/{seq}/1"]
        assert value is not None and len(value) == len(chunk) and value != chunk
    produce(broker.bootstrap_servers, topic, 0, [(f"{INPUT}-0/{seq}/1", value)])
    with pytest.raises(CheckpointError, match=rf"chunk .*/{seq}/1.* does not match its SHA-256.*tombstone"):
        store_factory(topic).load(0)


def test_a_header_whose_total_bytes_disagree_with_its_chunks_is_refused(broker, changelog, store_factory):
    topic = changelog()
    store_factory(topic).save(0, sample_arrays(), {"v": 1}, {0: 10})
    name = f"{INPUT}-0"
    last = header(read_partition(broker.bootstrap_servers, topic, 0), name)
    produce(broker.bootstrap_servers, topic, 0, [(name, json.dumps(dict(last, total_bytes=7)).encode())])
    with pytest.raises(CheckpointError, match="add up to .* bytes, not the header's total_bytes=7"):
        store_factory(topic).load(0)


def test_a_wider_window_reads_only_the_records_before_the_ones_already_read(broker, changelog, store_factory):
    topic = changelog()
    writer = store_factory(topic)
    for i in range(6):
        writer.save(0, sample_arrays(seed=i), {"v": i}, {0: i})
    total = len(read_partition(broker.bootstrap_servers, topic, 0))
    reader = store_factory(topic)
    read_offsets: list[int] = []
    inner = reader._read_confluent if reader.reader == "confluent" else reader._read

    def counting(*args, **kwargs):
        for record in inner(*args, **kwargs):
            read_offsets.append(record[2])
            yield record

    reader._read = reader._read_confluent = counting  # type: ignore[method-assign]
    assert reader.load(0)[1] == {"v": 5}
    assert len(read_offsets) > 64  # the first window did not hold the checkpoint: it was widened
    assert len(read_offsets) == len(set(read_offsets)) == reader.last_load_records <= total


def test_header_pointing_to_missing_chunks_is_refused(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    store.save(0, sample_arrays(), {"v": 1}, {0: 10})
    name = f"{INPUT}-0"
    forged = dict(header(read_partition(broker.bootstrap_servers, topic, 0), name), seq=99)
    produce(broker.bootstrap_servers, topic, 0, [(name, json.dumps(forged).encode())])
    with pytest.raises(CheckpointError, match=rf"chunk '{name}/99/0' .* is missing") as info:
        store.load(0)
    assert topic in str(info.value)


def test_unreadable_header_is_refused(broker, changelog, store_factory):
    topic = changelog()
    produce(broker.bootstrap_servers, topic, 0, [(f"{INPUT}-0", b"{this is not json")])
    with pytest.raises(CheckpointError, match="header .* is unreadable"):
        store_factory(topic).load(0)


def test_tombstoned_header_starts_the_partition_fresh(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    store.save(0, sample_arrays(), {"v": 1}, {0: 10})
    produce(broker.bootstrap_servers, topic, 0, [(f"{INPUT}-0", None)])  # the remedy the errors give
    assert store.load(0) is None


def test_default_chunk_size_carries_a_multi_megabyte_state(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic, max_chunk_bytes=900_000)
    arrays = {"acc": np.random.default_rng(3).normal(size=(100_000, 3))}  # 2.4 MB
    store.save(0, arrays, {}, {0: 1})
    assert_arrays_equal(store_factory(topic).load(0)[0], arrays)
    assert header(read_partition(broker.bootstrap_servers, topic, 0), f"{INPUT}-0")["n_chunks"] == 3


def test_object_arrays_are_refused_before_anything_is_written(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    with pytest.raises(CheckpointError, match="dtype object"):
        store.save(0, {"bad": np.array([None, 1], dtype=object)}, {}, {0: 1})
    assert read_partition(broker.bootstrap_servers, topic, 0) == []


def test_partition_outside_the_input_topic_is_a_value_error(changelog, store_factory):
    store = store_factory(changelog(2), partitions=2)
    with pytest.raises(ValueError, match=r"partition must be in \[0, 2\)"):
        store.load(2)


def test_changelog_with_another_partition_count_is_refused(broker, changelog):
    with pytest.raises(ConfigError, match="has 2 partitions but the input topic .* has 3"):
        ChangelogStore(broker.bootstrap_servers, changelog(2), INPUT, partitions=3)


def test_changelog_that_is_not_compacted_is_refused(broker, topic_factory):
    with pytest.raises(ConfigError, match="cleanup.policy=delete"):
        ChangelogStore(broker.bootstrap_servers, topic_factory(1), INPUT, partitions=1)


def test_missing_changelog_topic_is_a_stream_error(broker):
    with pytest.raises(StreamError, match="does not exist"):
        ChangelogStore(broker.bootstrap_servers, "no-such-changelog", INPUT, partitions=1)


def test_create_changelog_topic_makes_a_compacted_topic_once(broker, request):
    topic = f"state-{request.node.name[-20:]}-{time.monotonic_ns()}"
    assert create_changelog_topic(broker.bootstrap_servers, topic, 3) is True
    assert create_changelog_topic(broker.bootstrap_servers, topic, 3) is False
    info = describe_topic(broker.bootstrap_servers, topic)
    assert info.partitions == 3
    assert info.configs["cleanup.policy"] == "compact"
    with ChangelogStore(broker.bootstrap_servers, topic, INPUT, partitions=3) as store:
        store.save(1, {"x": np.arange(4)}, {}, {1: 4})
        assert store.load(1)[2] == {1: 4}


def test_a_load_reads_the_last_checkpoints_not_the_whole_changelog(broker, changelog, store_factory):
    """Tansu never compacts (and Kafka compacts late): a restore must not replay every old save."""
    topic = changelog()
    writer = store_factory(topic)
    saves = 25
    for i in range(saves):
        writer.save(0, sample_arrays(seed=i), {"v": i}, {0: i})
    total = len(read_partition(broker.bootstrap_servers, topic, 0))
    reader = store_factory(topic)
    got, meta, offsets = reader.load(0)
    assert_arrays_equal(got, sample_arrays(seed=saves - 1))
    assert (meta, offsets) == ({"v": saves - 1}, {0: saves - 1})
    per_save = total / saves
    assert reader.last_load_records <= 4 * per_save, (reader.last_load_records, total)


def test_a_load_reads_hardly_any_chunk_of_the_saves_before_the_latest(broker, changelog, store_factory):
    """Once the latest header is read, the window grows by what is missing, not four times."""
    topic = changelog()
    writer = store_factory(topic)
    for i in range(4):
        writer.save(0, sample_arrays(seed=i, n=16_000), {"v": i}, {0: i})  # about 45 chunks each
    one_save = writer.last_save[1]
    reader = store_factory(topic)
    assert reader.load(0)[1] == {"v": 3}
    assert reader.last_load_bytes < 1.2 * one_save, (reader.last_load_bytes, one_save)


def test_a_save_after_a_windowed_load_leaves_only_its_own_chunks_live(broker, changelog, store_factory):
    topic = changelog()
    writer = store_factory(topic)
    for i in range(10):
        writer.save(0, sample_arrays(seed=i), {"v": i}, {0: i})
    name = f"{INPUT}-0"
    # a save that died between its header and its tombstones: the chunks before it stay live
    records = read_partition(broker.bootstrap_servers, topic, 0)
    last = header(records, name)
    forged_chunks = [(f"{name}/{last['seq'] + 1}/{i}", b"x") for i in range(2)]
    forged = dict(last, seq=last["seq"] + 1, n_chunks=2, chunks=[])
    produce(broker.bootstrap_servers, topic, 0, [*forged_chunks, (name, json.dumps(forged).encode())])
    survivor = store_factory(topic)
    survivor.save(0, sample_arrays(seed=99), {"v": 99}, {0: 99})
    live = {k: v for k, v in read_partition(broker.bootstrap_servers, topic, 0)}
    newest = header(list(live.items()), name)
    mine = {f"{name}/{newest['seq']}/{i}" for i in range(newest["n_chunks"])}
    still = {k for k, v in live.items() if k.startswith(name + "/") and v is not None}
    assert still == mine  # the forged save's chunks and the ones it left live are tombstoned
    assert store_factory(topic).load(0)[1] == {"v": 99}


# ---------------------------------------------------------------------------- fencing (issue 12, item 8)


def test_a_superseded_writer_can_no_longer_overwrite_the_new_owners_checkpoint(
    broker, changelog, store_factory
):
    """An evicted worker (epoch 1) saves after the partition's new owner (epoch 2) took over.

    Its checkpoint is ignored by every later load, its chunk keys differ from the new owner's
    (interleaved writes corrupt nothing), and the new owner's next save still goes through.
    """
    topic = changelog()
    old, new = store_factory(topic), store_factory(topic)
    old.save(0, sample_arrays(1), {"who": "old"}, {0: 100}, epoch=1)
    assert new.load(0)[1] == {"who": "old"}  # the new owner restores what the old one saved
    new.save(0, sample_arrays(2), {"who": "new"}, {0: 200}, epoch=2)
    old.save(0, sample_arrays(3), {"who": "zombie"}, {0: 150}, epoch=1)  # evicted, but not told yet
    arrays, meta, offsets = store_factory(topic).load(0)
    assert (meta, offsets) == ({"who": "new"}, {0: 200})
    assert_arrays_equal(arrays, sample_arrays(2))
    records = read_partition(broker.bootstrap_servers, topic, 0)
    name = f"{INPUT}-0"
    heads = [json.loads(v) for k, v in records if k == name and v is not None]
    assert [h["epoch"] for h in heads] == [1, 2, 1]
    keys = [{f"{name}/{h['seq']}/{i}" for i in range(h["n_chunks"])} for h in heads]
    assert not keys[1] & keys[2]  # the zombie wrote none of the new owner's chunk keys
    new.save(0, sample_arrays(4), {"who": "new, again"}, {0: 300}, epoch=2)
    assert store_factory(topic).load(0)[1:] == ({"who": "new, again"}, {0: 300})


def test_a_writer_that_saw_a_newer_epoch_refuses_to_save(changelog, store_factory):
    topic = changelog()
    new = store_factory(topic)
    new.save(0, sample_arrays(1), {"who": "new"}, {0: 10}, epoch=5)
    late = store_factory(topic)
    assert late.load(0)[1] == {"who": "new"}
    with pytest.raises(FencedError, match=r"epoch 4: .* a save of epoch 5, a newer owner"):
        late.save(0, sample_arrays(2), {"who": "late"}, {0: 5}, epoch=4)
    assert store_factory(topic).load(0)[1] == {"who": "new"}


def test_a_superseded_writer_interleaving_its_chunks_corrupts_nothing(broker, changelog, store_factory):
    """Chunks of both writers interleave record by record: the newer epoch's checkpoint loads.

    Without epochs in the keys, both writers used the same seq, so the later chunks replaced the
    earlier writer's under the same keys and its header failed its checksums.
    """
    topic = changelog()
    old, new = store_factory(topic), store_factory(topic)
    old.save(0, sample_arrays(1), {"who": "old"}, {0: 100}, epoch=1)
    new.load(0)
    new.save(0, sample_arrays(2), {"who": "new"}, {0: 200}, epoch=2)
    name = f"{INPUT}-0"
    records = read_partition(broker.bootstrap_servers, topic, 0)
    new_head = json.loads([v for k, v in records if k == name][-1])
    # the zombie's next save, as it would come: seq one past its last, its chunks after the header
    zombie_seq = json.loads([v for k, v in records if k == name][0])["seq"] + 1
    produce(
        broker.bootstrap_servers,
        topic,
        0,
        [(f"{name}/{zombie_seq}/{i}", b"zombie") for i in range(new_head["n_chunks"])],
    )
    arrays, meta, _ = store_factory(topic).load(0)
    assert meta == {"who": "new"}
    assert_arrays_equal(arrays, sample_arrays(2))


# ------------------------------------------------------------------------------ incremental


def test_a_chain_of_deltas_restores_the_latest_state_and_reads_no_chunk_twice(
    broker, changelog, store_factory
):
    topic = changelog()
    store = store_factory(topic)
    arrays = {"big": np.arange(200_000, dtype=np.int64), "small": np.arange(3)}
    sizes = [store.save(0, arrays, {"v": 0}, {0: 0})]
    for k in range(1, 4):
        arrays["big"][k * 1000] = -k
        sizes.append(store.save(0, arrays, {"v": k}, {0: k}))
    assert store.last_save[0] == 3 and max(sizes[1:]) < sizes[0] / 50  # deltas, a few blocks each
    fresh = store_factory(topic)
    got, meta, offsets = fresh.load(0)
    assert fresh.last_load_deltas == 3
    np.testing.assert_array_equal(got["big"], arrays["big"])
    assert (meta, offsets) == ({"v": 3}, {0: 3})


def test_a_corrupted_delta_chunk_is_refused(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    arrays = {"big": np.arange(200_000, dtype=np.int64)}
    store.save(0, arrays, {"v": 0}, {0: 0})
    arrays["big"][7] = -1
    store.save(0, arrays, {"v": 1}, {0: 1})
    head = header(read_partition(broker.bootstrap_servers, topic, 0), f"{INPUT}-0")
    assert len(head["chain"]) == 1  # a delta on one base
    produce(broker.bootstrap_servers, topic, 0, [(f"{INPUT}-0/{head['seq']}/0", b"\x00" * 100)])
    with pytest.raises(
        CheckpointError, match=rf"chunk .*/{head['seq']}/0.* does not match its SHA-256"
    ) as info:
        store_factory(topic).load(0)
    assert "tombstone" in str(info.value)


def test_a_save_after_a_load_writes_a_new_base_and_tombstones_the_old_chain(broker, changelog, store_factory):
    topic = changelog()
    store = store_factory(topic)
    arrays = {"big": np.arange(200_000, dtype=np.int64)}
    store.save(0, arrays, {}, {0: 0})
    arrays["big"][0] = 5
    store.save(0, arrays, {}, {0: 1})
    other = store_factory(topic)
    other.load(0)
    other.save(0, arrays, {}, {0: 2})
    assert other.last_save[0] == 0
    records = read_partition(broker.bootstrap_servers, topic, 0)
    head = header(records, f"{INPUT}-0")
    assert head["chain"] == []
    live = {}
    for key, value in records:
        live[key] = value
    chunks = {k for k, v in live.items() if k != f"{INPUT}-0" and v is not None}
    assert all(
        k.startswith(f"{INPUT}-0/{head['seq']}/") for k in chunks
    )  # the old chain's chunks are tombstoned
