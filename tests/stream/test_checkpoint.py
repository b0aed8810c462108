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
    CheckpointStore,
    EncodedCheckpoint,
    LocalStore,
    StateStore,
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
