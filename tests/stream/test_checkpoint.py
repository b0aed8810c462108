"""Checkpoint encoding and the local-directory store: round trips, layout, refusal of corrupt data."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from tests.conftest import read_events, run_engine
from tests.test_engine import SMALL
from viraltrend.config import load_config
from viraltrend.engine import Engine
from viraltrend.errors import CheckpointError
from viraltrend.stream.checkpoint import (
    ChainPolicy,
    CheckpointStore,
    EncodedCheckpoint,
    LocalStore,
    StateStore,
    chain_offsets,
    decode_checkpoint,
    encode_checkpoint,
)

TOPIC = "events"


@pytest.fixture(scope="module")
def events(scenario_factory):
    return read_events(scenario_factory(**SMALL) / "events.ndjson")


def sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "f64": rng.normal(size=(50, 3)),
        "i64": rng.integers(-(2**62), 2**62, size=40, dtype=np.int64),
        "u8": rng.integers(0, 255, size=17, dtype=np.uint8),
        "flags": rng.random(9) > 0.5,
        "names": np.array(["p-1", "p-22", "ü"]),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def assert_arrays_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key, arr in want.items():
        assert got[key].dtype == arr.dtype, key
        np.testing.assert_array_equal(got[key], arr, err_msg=key)


# ----------------------------------------------------------------------------- shared encoding


def test_encoded_checkpoint_round_trips_through_a_blob():
    arrays = sample_arrays()
    blob = encode_checkpoint(arrays, {"clock_ms": 12, "ids": ["a"]}, {3: 99}).to_blob()
    encoded = EncodedCheckpoint.from_blob(blob, where="test", remedy="fix it")
    got, meta, offsets = decode_checkpoint(encoded, where="test", remedy="fix it")
    assert_arrays_equal(got, arrays)
    assert meta == {"clock_ms": 12, "ids": ["a"]}
    assert offsets == {3: 99}


def test_truncated_blob_is_refused_with_the_remedy():
    blob = encode_checkpoint(sample_arrays(), {}, {0: 1}).to_blob()
    with pytest.raises(CheckpointError, match="truncated.*delete it"):
        EncodedCheckpoint.from_blob(blob[:-1], where="here", remedy="delete it")


def test_blob_without_magic_is_refused():
    with pytest.raises(CheckpointError, match="bad magic"):
        EncodedCheckpoint.from_blob(b"PK\x03\x04 some zip", where="here", remedy="delete it")


def test_flipped_byte_in_a_blob_fails_the_checksum():
    blob = bytearray(encode_checkpoint(sample_arrays(), {}, {0: 1}).to_blob())
    blob[-100] ^= 0xFF  # inside the arrays
    encoded = EncodedCheckpoint.from_blob(bytes(blob), where="here", remedy="delete it")
    with pytest.raises(CheckpointError, match=r"arrays\.bin does not match its SHA-256"):
        decode_checkpoint(encoded, where="here", remedy="delete it")


def test_consistent_manifest_over_undecodable_arrays_is_refused():
    good = encode_checkpoint(sample_arrays(), {}, {0: 1})
    data = b"not an arrays file at all"
    manifest = json.loads(good.manifest)
    manifest["arrays.bin"] = [hashlib.sha256(data).hexdigest()]
    bad = EncodedCheckpoint(data=data, meta=good.meta, manifest=json.dumps(manifest).encode())
    with pytest.raises(CheckpointError, match="cannot be decoded"):
        decode_checkpoint(bad, where="here", remedy="delete it")


def sparse_arrays() -> dict[str, np.ndarray]:
    """Arrays the encoder stores sparse: an open-addressing table, counters with untouched cells."""
    rng = np.random.default_rng(3)
    rows = np.full((8192, 2), -1, np.int64)
    used = rng.choice(8192, 900, replace=False)
    rows[used] = rng.integers(0, 2**40, (900, 2))
    acc = np.zeros((2048, 6, 4))
    acc[rng.choice(2048, 300), rng.integers(0, 6, 300)] = rng.random((300, 4))
    acc[5, 0, 0], acc[6, 0, 0] = -0.0, np.nan
    return {"rows": rows, "acc": acc, "dense": rng.normal(size=4096), **sample_arrays()}


def test_sparse_arrays_round_trip_bit_for_bit_and_shrink_the_checkpoint():
    arrays = sparse_arrays()
    encoded = encode_checkpoint(arrays, {"v": 1}, {0: 1})
    raw_bytes = sum(a.nbytes for a in arrays.values())
    assert len(encoded.data) < 0.4 * raw_bytes  # the table and the counters are mostly fill
    header = json.loads(bytes(encoded.data[16 : 16 + int.from_bytes(encoded.data[8:16], "little")]))
    stored_sparse = {e[0] for e in header if len(e) == 6}
    assert stored_sparse == {"rows", "acc"}  # "dense" and the small ones stay raw
    got, meta, _ = decode_checkpoint(encoded, where="here", remedy="delete it")
    assert_arrays_equal(got, arrays)
    for key, arr in arrays.items():
        assert got[key].tobytes() == arr.tobytes(), key  # -0.0 and NaN bits included
    assert got["rows"].flags.writeable and got["acc"].flags.c_contiguous


def test_sparse_arrays_decoded_on_threads_are_the_same(monkeypatch):
    from viraltrend.stream import checkpoint

    arrays = sparse_arrays()
    encoded = encode_checkpoint(arrays, {}, {0: 1})
    monkeypatch.setattr(checkpoint, "_DECODE_THREADED_BYTES", 0)  # the path of large checkpoints
    got, _, _ = decode_checkpoint(encoded, where="here", remedy="x")
    for key, arr in arrays.items():
        assert got[key].tobytes() == arr.tobytes(), key


@pytest.mark.parametrize("sparse", [False, True])
def test_a_local_store_writes_raw_arrays_unless_told_to_write_them_sparse(tmp_path, sparse):
    arrays = sparse_arrays()
    store = LocalStore(tmp_path, TOPIC, sparse=sparse)
    store.save(0, arrays, {"v": 1}, {0: 3})
    data = (store.path(0) / "arrays.bin").read_bytes()
    manifest = json.loads((store.path(0) / "manifest.json").read_text())
    # raw: format 2, which viraltrend before sparse arrays reads too (and a load maps it, reading nothing)
    assert (manifest["format"], data[:8]) == (
        (3, b"VTARR\x00\x03\x00") if sparse else (2, b"VTARR\x00\x02\x00")
    )
    assert (len(data) < 0.4 * sum(a.nbytes for a in arrays.values())) == sparse
    got, meta, offsets = LocalStore(tmp_path, TOPIC).load(0)
    assert_arrays_equal(got, arrays)
    assert (meta, offsets) == ({"v": 1}, {0: 3})


def _arrays_bin_format_2(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays.bin`` as main wrote it before sparse arrays (format 2): every array raw, 64-aligned."""
    entries, offset, bodies = [], 0, []
    for key, arr in arrays.items():
        entries.append([key, arr.dtype.str, list(arr.shape), offset])
        pad = -arr.nbytes % 64
        bodies.append(np.ascontiguousarray(arr).tobytes() + bytes(pad))
        offset += arr.nbytes + pad
    header = json.dumps(entries, separators=(",", ":")).encode()
    head = b"VTARR\x00\x02\x00" + len(header).to_bytes(8, "little") + header
    return head + bytes(-len(head) % 64) + b"".join(bodies)


@pytest.mark.parametrize("verified", [False, True])
def test_format_2_checkpoints_written_before_sparse_arrays_still_load(tmp_path, verified):
    arrays = sparse_arrays()
    data = _arrays_bin_format_2(arrays)
    meta = json.dumps({"format": 2, "offsets": {"0": 5}, "saved_at_ms": 0, "state": {"v": 1}}).encode()
    parts = [hashlib.sha256(data[i : i + 32 * 2**20]).hexdigest() for i in range(0, len(data), 32 * 2**20)]
    manifest = json.dumps({"format": 2, "arrays.bin": parts, "meta.json": hashlib.sha256(meta).hexdigest()})
    encoded = EncodedCheckpoint(data=data, meta=meta, manifest=manifest.encode())
    got, state, offsets = decode_checkpoint(encoded, where="here", remedy="x", verified=verified)
    assert_arrays_equal(got, arrays)
    assert (state, offsets) == ({"v": 1}, {0: 5})
    path = tmp_path / "events-0"
    path.mkdir()
    for name, body in (("arrays.bin", data), ("meta.json", meta), ("manifest.json", manifest.encode())):
        (path / name).write_bytes(body)
    assert_arrays_equal(LocalStore(tmp_path, TOPIC).load(0)[0], arrays)


def test_a_checkpoint_of_a_newer_format_is_refused_naming_the_formats_read():
    good = encode_checkpoint(sample_arrays(), {}, {0: 1})
    manifest = dict(json.loads(good.manifest), format=4)
    bad = EncodedCheckpoint(data=good.data, meta=good.meta, manifest=json.dumps(manifest).encode())
    with pytest.raises(CheckpointError, match=r"has format 4, this version reads formats 1 to 3.*delete it"):
        decode_checkpoint(bad, where="here", remedy="delete it")


def _with_entry(encoded: EncodedCheckpoint, key: str, field: int, value: object) -> EncodedCheckpoint:
    """``encoded`` with one field of one entry of its arrays.bin header changed, checksums made to match."""
    data = bytes(encoded.data)
    n = int.from_bytes(data[8:16], "little")
    body = data[16 + n + (-(16 + n) % 64) :]
    entries = json.loads(data[16 : 16 + n])
    next(e for e in entries if e[0] == key)[field] = value
    header = json.dumps(entries, separators=(",", ":")).encode()
    head = data[:8] + len(header).to_bytes(8, "little") + header
    data = head + bytes(-len(head) % 64) + body
    parts = [hashlib.sha256(data[i : i + 32 * 2**20]).hexdigest() for i in range(0, len(data), 32 * 2**20)]
    manifest = dict(json.loads(encoded.manifest), **{"arrays.bin": parts})
    return EncodedCheckpoint(data=data, meta=encoded.meta, manifest=json.dumps(manifest).encode())


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        (5, 10**6, "cannot be sparse"),
        (5, 3, "selects"),
        (1, "<c16", "cannot be sparse"),
        (2, [9000, 2], "selects more elements"),
    ],
)
def test_a_sparse_entry_that_does_not_fit_its_bytes_is_refused_even_under_matching_checksums(
    field, value, why
):
    good = encode_checkpoint(sparse_arrays(), {}, {0: 1})
    bad = _with_entry(good, "rows", field, value)
    with pytest.raises(CheckpointError, match=f"cannot be decoded.*{why}.*delete it"):
        decode_checkpoint(bad, where="here", remedy="delete it")


def test_object_arrays_are_refused_on_save():
    with pytest.raises(CheckpointError, match="dtype object"):
        encode_checkpoint({"bad": np.array([{"a": 1}], dtype=object)}, {}, {})


# ------------------------------------------------------------------------------- LocalStore


def test_local_store_is_a_state_store(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    assert isinstance(store, StateStore)
    assert store.describe == f"directory {tmp_path}"


def test_restored_engine_continues_exactly_like_an_uninterrupted_one(events, tmp_path):
    cfg = load_config(None, environ={})
    _, want = run_engine(events, [])
    first = Engine(cfg)
    cut = len(events) // 2
    got, _ = first.process(events.take(np.arange(cut)))
    store = LocalStore(tmp_path, TOPIC)
    arrays, meta = first.state()
    store.save(0, arrays, meta, {0: cut})
    arrays2, meta2, offsets = store.load(0)
    assert offsets == {0: cut}
    second = Engine.restore(cfg, arrays2, meta2)
    more, _ = second.process(events.take(np.arange(cut, len(events))))
    assert got + more + second.finish() == want


def test_checkpoint_is_plain_json_and_raw_arrays_named_after_topic_and_partition(events, tmp_path):
    engine, _ = run_engine(events.take(np.arange(1000)), [])
    LocalStore(tmp_path, TOPIC).save(2, *engine.state(), {2: 1000})
    meta = json.loads((tmp_path / "events-2" / "meta.json").read_text())
    assert meta["offsets"] == {"2": 1000}
    data = (tmp_path / "events-2" / "arrays.bin").read_bytes()
    assert data.startswith(b"VTARR") and b'"counters.acc"' in data[:4096]


def test_format_1_npz_checkpoints_still_load(tmp_path):
    arrays = sample_arrays()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz = buf.getvalue()
    meta = json.dumps({"format": 1, "offsets": {"0": 5}, "saved_at_ms": 0, "state": {"v": 1}}).encode()
    path = tmp_path / "events-0"
    path.mkdir()
    (path / "arrays.npz").write_bytes(npz)
    (path / "meta.json").write_bytes(meta)
    manifest = {
        "format": 1,
        "arrays.npz": hashlib.sha256(npz).hexdigest(),
        "meta.json": hashlib.sha256(meta).hexdigest(),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    got, state, offsets = LocalStore(tmp_path, TOPIC).load(0)
    assert_arrays_equal(got, arrays)
    assert (state, offsets) == ({"v": 1}, {0: 5})


def test_local_store_loads_checkpoints_written_by_name(tmp_path):
    arrays = sample_arrays()
    CheckpointStore(tmp_path).save("events-3", arrays, {"k": 1}, {3: 7})
    got, meta, offsets = LocalStore(tmp_path, TOPIC).load(3)
    assert_arrays_equal(got, arrays)
    assert (meta, offsets) == ({"k": 1}, {3: 7})


def test_second_save_replaces_the_first(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, {"x": np.arange(3)}, {"v": 1}, {0: 10})
    store.save(0, {"x": np.arange(5)}, {"v": 2}, {0: 20})
    arrays, meta, offsets = store.load(0)
    assert arrays["x"].tolist() == [0, 1, 2, 3, 4]
    assert (meta, offsets) == ({"v": 2}, {0: 20})
    assert store.last_load_bytes > 0


def test_checkpoint_left_between_the_renames_is_loaded(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, {"x": np.arange(3)}, {"v": 1}, {0: 10})
    store.path(0).rename(store.path(0).with_name("events-0.old"))  # crash after the first rename
    assert store.load(0)[2] == {0: 10}


def test_corrupted_checkpoint_is_refused(events, tmp_path):
    engine, _ = run_engine(events.take(np.arange(1000)), [])
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, *engine.state(), {0: 1000})
    path = store.path(0) / "arrays.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256.*Move the directory away"):
        store.load(0)


def test_checkpoint_with_a_missing_file_is_refused(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, {"x": np.arange(3)}, {}, {0: 1})
    (store.path(0) / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="unreadable.*move the directory away"):
        store.load(0)


def test_checkpoint_with_a_garbled_manifest_is_refused(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, {"x": np.arange(3)}, {}, {0: 1})
    (store.path(0) / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json is unreadable"):
        store.load(0)


def test_checkpoint_from_other_half_lives_is_refused(events, tmp_path):
    engine, _ = run_engine(events.take(np.arange(1000)), [])
    arrays, meta = engine.state()
    other = load_config(
        None,
        environ={},
        overrides={
            "decay": {"half_lives_s": [60.0, 300.0, 86400.0]},
            "score": {"baseline_half_life_s": 86400.0},
            "detect": {"sustain_share_half_life_s": 0.0},  # it names a half-life these counters lack
        },
    )
    with pytest.raises(CheckpointError, match="delete the checkpoint directory"):
        Engine.restore(other, arrays, meta)


def test_missing_checkpoint_is_none(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    assert store.load(0) is None
    assert store.last_load_bytes == 0
    assert CheckpointStore(tmp_path).load("nothing") is None


def test_a_save_interrupted_while_only_old_holds_the_checkpoint_keeps_it(tmp_path, monkeypatch):
    """A crash between the renames leaves only ``.old``; the next save must not delete it first."""
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, sample_arrays(), {"v": "A"}, {0: 10})
    final = tmp_path / "events-0"
    final.rename(tmp_path / "events-0.old")  # the state a crash between the two renames leaves
    assert store.load(0)[1] == {"v": "A"}
    real_rename = type(final).rename

    def crash_on_the_last_rename(self, target):
        if str(self).endswith(".tmp"):
            msg = "crash (simulated) before the new checkpoint is in place"
            raise OSError(msg)
        return real_rename(self, target)

    monkeypatch.setattr(type(final), "rename", crash_on_the_last_rename)
    with pytest.raises(OSError, match="simulated"):
        store.save(0, sample_arrays(), {"v": "B"}, {0: 20})
    monkeypatch.undo()
    assert store.load(0)[1:] == ({"v": "A"}, {0: 10})
    store.save(0, sample_arrays(), {"v": "B"}, {0: 20})
    assert store.load(0)[1:] == ({"v": "B"}, {0: 20})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-0"]


def test_a_local_save_fsyncs_the_directory_after_renaming(tmp_path, monkeypatch):
    import os

    synced_dirs: list[str] = []
    real_fsync = os.fsync

    def record(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isdir(path):
            synced_dirs.append(path)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, sample_arrays(), {}, {0: 1})
    store.save(0, sample_arrays(), {}, {0: 2})
    assert str(tmp_path) in synced_dirs


# ------------------------------------------------------------------------------ incremental


def big_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "rows": rng.normal(size=(50_000, 6)),  # 48 B rows: one block holds 2
        "ids": rng.integers(0, 2**62, size=200_000, dtype=np.int64),  # 8 B rows: 8 a block
        "table": np.zeros((40_000, 3), np.int64),
        "small": np.arange(7),
        "names": np.array(["p-1", "p-22"]),
    }


def _delta_bytes(n_changed: int, tmp_path, name: str) -> int:
    store = LocalStore(tmp_path / name, TOPIC)
    arrays, meta = big_arrays(), {"clock": 1}
    store.save(0, arrays, meta, {0: 1})
    rng = np.random.default_rng(n_changed)
    rows = rng.choice(arrays["rows"].shape[0], n_changed, replace=False)
    arrays["rows"][rows] += 1.0
    arrays["ids"][rng.choice(arrays["ids"].shape[0], n_changed, replace=False)] ^= 1
    arrays["table"][rng.choice(arrays["table"].shape[0], n_changed, replace=False), 2] = 9
    size = store.save(0, arrays, meta, {0: 2})
    assert store.last_save[0] == 1  # a delta
    return size


def test_delta_bytes_follow_the_rows_that_changed_not_the_state(tmp_path):
    full = LocalStore(tmp_path / "full", TOPIC).save(0, big_arrays(), {"clock": 1}, {0: 1})
    few, many = _delta_bytes(100, tmp_path, "few"), _delta_bytes(1_000, tmp_path, "many")
    assert 6 * few < many < 12 * few  # ten times the rows changed: about ten times the bytes
    assert many < full / 20
    # per changed row and array, at most one block (64 bytes here) and its index, plus the fixed part
    assert many < 1_000 * 3 * (96 + 4) + 8_000


def test_engine_delta_grows_with_the_events_between_checkpoints(events, tmp_path):
    cfg = load_config(None, environ={})
    sizes = []
    for n in (300, 3_000):
        engine = Engine(cfg)
        engine.process(events.take(np.arange(10_000)))
        store = LocalStore(tmp_path / str(n), TOPIC)
        full = store.save(0, *engine.state(), {0: 10_000})
        engine.process(events.take(np.arange(10_000, 10_000 + n)))
        sizes.append(store.save(0, *engine.state(), {0: 10_000 + n}))
        assert store.last_save[0] == 1
    few, many = sizes
    assert few < many < full
    assert many > 3 * few  # ten times the events: several times the bytes (the fixed part aside)


def test_chain_is_compacted_after_max_deltas(tmp_path):
    store = LocalStore(tmp_path, TOPIC, policy=ChainPolicy(max_deltas=3))
    arrays = big_arrays()
    seqs = []
    for k in range(9):
        arrays["small"][0] = k
        store.save(0, arrays, {"k": k}, {0: k})
        seqs.append(store.last_save[0])
    assert seqs == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-0"]  # the old deltas are gone
    got, meta, offsets = LocalStore(tmp_path, TOPIC).load(0)
    assert_arrays_equal(got, arrays)
    assert (meta, offsets) == ({"k": 8}, {0: 8})


def test_chain_is_compacted_once_its_deltas_outweigh_the_ratio(tmp_path):
    store = LocalStore(tmp_path, TOPIC, policy=ChainPolicy(max_deltas=100, max_chain_ratio=0.3))
    arrays = big_arrays()
    store.save(0, arrays, {}, {0: 0})
    seqs = []
    for k in range(1, 5):
        arrays["rows"][: 10_000 * k] += 1.0  # each delta about a fifth of the base, then more
        store.save(0, arrays, {}, {0: k})
        seqs.append(store.last_save[0])
    assert seqs[0] == 1 and 0 in seqs  # a delta, then a full checkpoint once the chain is too heavy
    assert_arrays_equal(LocalStore(tmp_path, TOPIC).load(0)[0], arrays)


def test_not_incremental_writes_full_checkpoints(tmp_path):
    store = LocalStore(tmp_path, TOPIC, policy=ChainPolicy(incremental=False))
    for k in range(3):
        store.save(0, big_arrays(), {}, {0: k})
        assert store.last_save[0] == 0


def _chain(tmp_path, n_deltas: int = 3) -> tuple[LocalStore, dict[str, np.ndarray]]:
    store = LocalStore(tmp_path, TOPIC)
    arrays = big_arrays()
    store.save(0, arrays, {"k": 0}, {0: 0})
    for k in range(1, n_deltas + 1):
        arrays["rows"][k] += 1
        store.save(0, arrays, {"k": k}, {0: k})
    return store, arrays


def test_corrupted_delta_is_refused_naming_it_and_the_way_back(tmp_path):
    store, _ = _chain(tmp_path)
    path = tmp_path / "events-0.delta-000002" / "arrays.bin"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=r"events-0\.delta-000002.*does not match its SHA-256.*every later delta"
    ):
        LocalStore(tmp_path, TOPIC).load(0)


def test_truncated_delta_is_refused(tmp_path):
    _chain(tmp_path)
    path = tmp_path / "events-0.delta-000003" / "arrays.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"events-0\.delta-000003.*does not match its SHA-256"):
        LocalStore(tmp_path, TOPIC).load(0)


def test_moving_a_bad_delta_away_restores_the_checkpoint_before_it(tmp_path):
    _chain(tmp_path)
    (tmp_path / "events-0.delta-000002").rename(tmp_path / "moved-away")
    arrays, meta, offsets = LocalStore(tmp_path, TOPIC).load(0)
    assert (meta, offsets) == ({"k": 1}, {0: 1})
    want = big_arrays()
    want["rows"][1] += 1
    assert_arrays_equal(arrays, want)


def test_a_delta_that_does_not_fit_its_base_is_refused(tmp_path):
    _chain(tmp_path, n_deltas=1)
    base = tmp_path / "events-0"
    meta = json.loads((base / "meta.json").read_bytes())
    # a base of the same chain with an array of another shape: the delta's blocks do not fit
    arrays, state, _ = LocalStore(tmp_path, TOPIC).load(0)
    arrays = dict(arrays)
    arrays["rows"] = np.zeros((1, 6))  # the delta holds blocks past its end
    state["__chain__"] = meta["state"]["__chain__"]
    CheckpointStore(tmp_path / "other").save("events-0", arrays, state, {0: 0})
    for name in ("arrays.bin", "meta.json", "manifest.json"):
        (base / name).write_bytes((tmp_path / "other" / "events-0" / name).read_bytes())
    with pytest.raises(CheckpointError, match="does not fit the checkpoint before it"):
        LocalStore(tmp_path, TOPIC).load(0)


def test_deltas_of_an_older_base_are_ignored(tmp_path):
    _chain(tmp_path)
    stale = {p.name: p.read_bytes() for p in (tmp_path / "events-0.delta-000001").iterdir()}
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, {"x": np.arange(3)}, {"v": "new"}, {0: 50})  # a new base: the old deltas go
    again = tmp_path / "events-0.delta-000001"  # a crash left one of them behind
    again.mkdir()
    for name, data in stale.items():
        (again / name).write_bytes(data)
    arrays, meta, offsets = LocalStore(tmp_path, TOPIC).load(0)
    assert arrays["x"].tolist() == [0, 1, 2]
    assert (meta, offsets) == ({"v": "new"}, {0: 50})


@pytest.mark.parametrize("kept", [("meta.json",), ("meta.json", "manifest.json"), ("arrays.bin",), ()])
def test_a_delta_of_an_older_base_left_half_deleted_is_ignored(tmp_path, kept):
    """A kill while a new base's old deltas are deleted can leave a delta directory with only some
    of its files (seen under ``kill -9``: only ``meta.json``); the new base still loads."""
    _chain(tmp_path)
    LocalStore(tmp_path, TOPIC).save(0, {"x": np.arange(3)}, {"v": "new"}, {0: 50})
    _chain(tmp_path / "old")  # an older chain's delta, deleted part way
    again = tmp_path / "events-0.delta-000001"
    again.mkdir()
    for name in kept:
        (again / name).write_bytes((tmp_path / "old" / "events-0.delta-000001" / name).read_bytes())
    arrays, meta, offsets = LocalStore(tmp_path, TOPIC).load(0)
    assert arrays["x"].tolist() == [0, 1, 2]
    assert (meta, offsets) == ({"v": "new"}, {0: 50})
    assert chain_offsets(tmp_path / "events-0") == {0: 50}


@pytest.mark.parametrize("name", ["arrays.bin", "meta.json", "manifest.json"])
def test_a_delta_of_its_own_chain_missing_a_file_is_still_refused(tmp_path, name):
    _chain(tmp_path)
    (tmp_path / "events-0.delta-000002" / name).unlink()
    with pytest.raises(CheckpointError, match=r"events-0\.delta-000002"):
        LocalStore(tmp_path, TOPIC).load(0)


def test_chain_offsets_reads_the_latest_delta(tmp_path):
    _chain(tmp_path)
    assert chain_offsets(tmp_path / "events-0") == {0: 3}
    assert chain_offsets(tmp_path / "events-9") is None


def test_a_save_after_a_load_starts_a_new_base(tmp_path):
    store, _ = _chain(tmp_path)
    store.load(0)
    store.save(0, big_arrays(), {}, {0: 9})
    assert store.last_save[0] == 0


def test_engine_state_shares_no_memory_with_the_engine(events):
    """The writer thread saves a state while the engine goes on: state() must hand out copies."""
    engine, _ = run_engine(events.take(np.arange(5_000)), [])
    arrays, meta = engine.state()
    frozen = ({k: v.copy() for k, v in arrays.items()}, json.dumps(meta, sort_keys=True))
    engine.process(events.take(np.arange(5_000, 12_000)))
    for k, v in frozen[0].items():
        assert np.array_equal(arrays[k], v, equal_nan=v.dtype.kind == "f"), k
    assert json.dumps(meta, sort_keys=True) == frozen[1]


def test_an_array_grown_at_its_end_is_written_as_its_new_blocks(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    arrays = big_arrays()
    store.save(0, arrays, {}, {0: 0})
    arrays["ids"] = np.concatenate(
        [arrays["ids"], np.arange(1_000, dtype=np.int64)]
    )  # a high-water mark grew
    arrays["table"] = arrays["table"][:30_001]  # ... or one was cut
    arrays["table"][5, 1] = 77
    size = store.save(0, arrays, {}, {0: 1})
    assert store.last_save[0] == 1 and size < 30_000
    assert_arrays_equal(LocalStore(tmp_path, TOPIC).load(0)[0], arrays)


def test_a_table_that_rotated_is_written_as_moved(tmp_path):
    store = LocalStore(tmp_path, TOPIC)
    arrays = big_arrays()
    arrays["previous"] = np.zeros((4096, 3), np.int64)
    store.save(0, arrays, {}, {0: 0})
    arrays["previous"], arrays["table"] = (
        arrays["table"],
        np.zeros((1024, 3), np.int64),
    )  # current -> previous
    arrays["previous"][3, 0] = 5
    size = store.save(0, arrays, {}, {0: 1})
    assert size < 40_000  # not the 960 kB of the moved table
    assert_arrays_equal(LocalStore(tmp_path, TOPIC).load(0)[0], arrays)


def test_an_engine_restored_from_a_loaded_checkpoint_works_in_its_arrays_and_continues_exactly(
    events, tmp_path
):
    """copy=False (what the service does with a store's checkpoint): no copy of the state, same run."""
    cfg = load_config(None, environ={})
    _, want = run_engine(events, [])
    first = Engine(cfg)
    cut = len(events) // 2
    got, _ = first.process(events.take(np.arange(cut)))
    store = LocalStore(tmp_path, TOPIC)
    store.save(0, *first.state(), {0: cut})
    arrays, meta, _ = store.load(0)
    second = Engine.restore(cfg, arrays, meta, copy=False)
    assert np.shares_memory(second.counters.acc, arrays["counters.acc"])  # adopted, not copied
    more, _ = second.process(events.take(np.arange(cut, len(events))))
    assert got + more + second.finish() == want
    again = LocalStore(tmp_path, TOPIC).load(0)[0]  # the file is not written through
    np.testing.assert_array_equal(again["counters.acc"], first.state()[0]["counters.acc"])
