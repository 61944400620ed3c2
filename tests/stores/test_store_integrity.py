"""Store integrity: chunk checksums, verify over every array, the cached check of training and
eval, the lock of a store's writer."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import stores.verify as sv
from eval import examples
from stores.lock import StoreLock
from stores.schema import StoreError
from stores.store import DONE, Store
from stores.verify import record_path, require_verified, verify
from stores.context_cache import build_context_cache, cache_path, open_context_cache
from train.data import TrainingExamples


def _copy(stores, name, tmp_path):
    path = tmp_path / f"{name}.zarr"
    shutil.copytree(stores / f"{name}.zarr", path)
    return path


@pytest.fixture
def train_copy(precomputed, tmp_path):
    return _copy(precomputed[0], "synthetic-train", tmp_path)


def _flip_byte(file):
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x10
    file.write_bytes(bytes(data))


def _rewrite_same_bytes(file):
    data = file.read_bytes()
    file.write_bytes(data)
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_every_chunk_ends_in_its_crc32c(train_copy):
    import google_crc32c

    store = Store(train_copy)
    for name in ("labels/center", "labels/image", "detector/keypoints", DONE):
        data = store.chunk_file(name, 0).read_bytes()
        assert data[-4:] == np.uint32(google_crc32c.value(data[:-4])).tobytes(), name
        meta = json.loads((train_copy / name / "zarr.json").read_text())
        assert meta["codecs"][-1] == {"name": "crc32c"}


def test_flipped_bytes_in_keypoints_and_a_label_fail_verify_naming_the_chunks(train_copy):
    store = Store(train_copy)
    assert verify(train_copy).complete
    _flip_byte(store.chunk_file("detector/keypoints", 1))
    _flip_byte(store.chunk_file("labels/center", 2))
    report = verify(train_copy)
    assert not report.complete
    assert [(b.array, b.index) for b in report.bad] == [("detector/keypoints", 1),
                                                        ("labels/center", 2)]
    assert all("checksum" in b.problem for b in report.bad)
    text = str(report)
    assert "2 bad chunks" in text and "chunk 1 of 'detector/keypoints'" in text


def test_a_deleted_label_chunk_fails_verify(train_copy):
    Store(train_copy).chunk_file("labels/scale", 0).unlink()
    report = verify(train_copy)
    assert [(b.array, b.index, b.problem) for b in report.bad] == [
        ("labels/scale", 0, "has no chunk file")]
    assert not record_path(train_copy).exists()


def test_a_sample_index_past_the_last_heatmap_cell_fails_verify(train_copy):
    store = Store(train_copy, mode="r+")
    row = store.chunk_slice(1).start
    index = store.read("samples/index", slice(row, row + 1))
    index[0, 0, -1] = 3071  # the last cell of the 64 × 48 grid: still valid
    store.group["samples/index"][row:row + 1] = index
    assert verify(train_copy).complete
    index[0, 0, -1] = 3072
    store.group["samples/index"][row:row + 1] = index
    assert [(b.array, b.index, b.problem) for b in verify(train_copy).bad] == [
        ("samples/index", 1, "has an index outside the heatmap")]


def test_a_schema_v1_store_is_refused_in_one_line(train_copy):
    meta = json.loads((train_copy / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 1
    (train_copy / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="schema v1 store.*rerun precompute") as err:
        Store(train_copy)
    assert "\n" not in str(err.value)
    assert "schema v1" in verify(train_copy).problems[0]


def test_verification_is_cached_and_redone_when_a_chunk_changes(train_copy, monkeypatch):
    calls = []
    real, read = sv.verify, sv._read_chunk
    monkeypatch.setattr(sv, "verify", lambda path: calls.append(path) or real(path))
    store, signature = require_verified(train_copy)
    assert len(calls) == 1 and record_path(train_copy).exists()
    monkeypatch.setattr(sv, "_read_chunk", lambda *a: pytest.fail("a chunk was read"))
    assert require_verified(train_copy)[1] == signature  # the record is used: no chunk read
    assert len(calls) == 1
    # a rerun's summary changes the group's attributes only: the record stays current
    Store(train_copy, mode="r+").group.attrs["last_run"] = {"rows_written": 0}
    require_verified(train_copy)
    assert len(calls) == 1
    monkeypatch.setattr(sv, "_read_chunk", read)
    _rewrite_same_bytes(store.chunk_file("samples/value", 0))
    assert require_verified(train_copy)[1] != signature and len(calls) == 2
    _flip_byte(store.chunk_file("samples/value", 0))
    with pytest.raises(StoreError, match="chunk 0 of 'samples/value' does not decode"):
        require_verified(train_copy)
    assert len(calls) == 3


def test_training_refuses_a_store_with_a_missing_chunk_once_its_cache_is_current(train_copy):
    build_context_cache(train_copy, workers=1)
    TrainingExamples([train_copy])  # sound: accepted
    Store(train_copy).chunk_file("samples/mask_distance", 1).unlink()
    for build in (True, False):
        with pytest.raises(StoreError) as err:
            TrainingExamples([train_copy], build=build)
        message = str(err.value)
        assert str(train_copy) in message and "\n" not in message
        assert "chunk 1 of 'samples/mask_distance' has no chunk file" in message
    with pytest.raises(StoreError):
        open_context_cache(train_copy)


def test_the_context_cache_is_rebuilt_when_the_store_changes(train_copy):
    cache = build_context_cache(train_copy, workers=1)
    stamp = (cache / "zarr.json").stat().st_mtime_ns
    assert (build_context_cache(train_copy, workers=1) / "zarr.json").stat().st_mtime_ns == stamp
    _rewrite_same_bytes(Store(train_copy).chunk_file("samples/index", 0))
    with pytest.raises(ValueError, match="is stale"):
        open_context_cache(train_copy)
    build_context_cache(train_copy, workers=1)
    assert (cache_path(train_copy) / "zarr.json").stat().st_mtime_ns != stamp
    open_context_cache(train_copy)


def test_eval_refuses_an_incomplete_or_corrupt_test_store(precomputed, tmp_path):
    path = _copy(precomputed[0], "synthetic-test", tmp_path)
    store = Store(path, mode="r+")
    store.clear_done(1)
    with pytest.raises(StoreError, match=r"1 of \d+ row chunks not done") as err:
        examples.TestExamples(path, workers=1)
    assert str(path) in str(err.value)
    store.group[DONE][1] = 1
    _flip_byte(store.chunk_file("labels/kp2d_coco", 0))
    with pytest.raises(StoreError, match="chunk 0 of 'labels/kp2d_coco' does not decode"):
        examples.TestExamples(path, workers=1)


def test_a_held_lock_names_its_holder_and_a_stale_one_is_taken_over(tmp_path, capsys):
    store = tmp_path / "x.zarr"
    with StoreLock(store) as held:
        lock = json.loads(held.path.read_text())
        assert lock["pid"] == os.getpid()
        with pytest.raises(StoreError, match=f"held by host {lock['host']}, pid {os.getpid()}"):
            StoreLock(store).__enter__()
    assert not held.path.exists()  # released
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    held.path.write_text(json.dumps({**lock, "pid": dead.pid}))
    with StoreLock(store):
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock {held.path}" in capsys.readouterr().err
    held.path.write_text(json.dumps({**lock, "host": "elsewhere", "pid": dead.pid}))
    with pytest.raises(StoreError, match="held by host elsewhere"):  # never presumed dead
        StoreLock(store).__enter__()
