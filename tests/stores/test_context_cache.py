"""The context cache's encoded rows (JPEG RGB + packed mask): exact mask, deterministic decoding,
size per row, rebuilds of old-format caches, no complete-looking cache after a failed build."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import stores.context_cache as cc
from stores.context_cache import (
    JPEG_LIBRARY, build_context_cache, cache_path, decode_context, encode_context,
    open_context_cache, row_width,
)

ROOT = Path(__file__).resolve().parents[2]
# sha256[:16] of the encoded row and of its decoding for `_image()`, with the JPEG library this
# was pinned with (opencv-python-headless 5.0's bundled libjpeg-turbo)
PINNED = {"build-libjpeg-turbo (ver 3.1.2-70)": ("6a4e8c7c51a794dc", "1c361d75528a1301")}


def _image(size=40):
    y, x = np.mgrid[:size, :size]
    bgr = np.stack([(x * 6) % 256, (y * 5) % 256, ((x * y) // 3) % 256], -1).astype(np.uint8)
    return bgr, ((x - 18) ** 2 + (y - 21) ** 2 < 150).astype(np.uint8)


def _digests(size=40):
    bgr, mask = _image(size)
    row = encode_context(bgr, mask)
    return (hashlib.sha256(row.tobytes()).hexdigest()[:16],
            hashlib.sha256(decode_context(row, size).tobytes()).hexdigest()[:16])


def test_round_trip_mask_exact_rgb_is_the_jpeg_of_the_crop():
    rng = np.random.default_rng(3)
    for size in (13, 40):  # 169 mask bits: not a whole number of bytes
        bgr, _ = _image(size)
        mask = (rng.random((size, size)) < 0.4).astype(np.uint8)
        row = encode_context(bgr, mask)
        assert row.shape == (4 + -(-size * size // 8) + 3 * size * size + 2048,)
        got = decode_context(row, size)
        np.testing.assert_array_equal(got[..., 3], mask)
        jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cc.JPEG_QUALITY])[1]
        assert int(row[:4].view("<u4")[0]) == jpeg.size
        np.testing.assert_array_equal(got[..., :3], cv2.imdecode(jpeg, 1)[..., ::-1])
    assert not decode_context(np.zeros(row_width(9), np.uint8), 9).any()  # a row not kept


def test_decoding_is_bit_identical_across_simd_paths_and_pinned():
    """Fresh processes with libjpeg-turbo's SIMD switches and one OpenCV thread give the same
    bytes (the wheel's build has no SIMD code: then they must agree trivially); on the pinned
    library version, the pinned bytes: the check that holds across machines."""
    here = _digests()
    code = ("import sys; sys.path.insert(0, 'tests/stores'); "
            "import test_context_cache as t; print(*t._digests())")
    for env in ({"JSIMD_FORCENONE": "1", "OPENCV_FOR_THREADS_NUM": "1"},
                {"JSIMD_FORCESSE2": "1"}):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, text=True,
                             capture_output=True, env={**os.environ, **env}).stdout.split()
        assert tuple(out) == here, env
    if JPEG_LIBRARY not in PINNED:
        pytest.skip(f"no pinned digests for {JPEG_LIBRARY}")
    assert here == PINNED[JPEG_LIBRARY]


@pytest.fixture(scope="module")
def store(precomputed, tmp_path_factory):
    stores, _ = precomputed
    path = tmp_path_factory.mktemp("context_cache") / "synthetic-train.zarr"
    shutil.copytree(stores / "synthetic-train.zarr", path)
    return path


def test_a_row_takes_under_30_kb(store):
    path = build_context_cache(store, workers=1)
    rows = open_context_cache(store).rows
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert total / rows < 30_000
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    assert attrs["cache_version"] == 2 and attrs["jpeg_quality"] == cc.JPEG_QUALITY
    assert attrs["jpeg_library"] == JPEG_LIBRARY


def test_a_version_1_cache_is_rebuilt_not_misread(store):
    path = build_context_cache(store, workers=1)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["cache_version"] = 1
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="stale"):
        open_context_cache(store)
    build_context_cache(store, workers=1)
    assert open_context_cache(store).attrs["cache_version"] == 2


def test_a_failed_build_leaves_no_cache(store, monkeypatch):
    shutil.rmtree(cache_path(store))
    real = cc._build_shard

    def crash_on_second_shard(*args):
        if args[2] == 1:
            raise OSError("killed")
        return real(*args)

    monkeypatch.setattr(cc, "_build_shard", crash_on_second_shard)
    with pytest.raises(OSError, match="killed"):
        build_context_cache(store, workers=1, shard_rows=8)
    assert not cache_path(store).exists()
    with pytest.raises(FileNotFoundError, match="no context cache"):
        open_context_cache(store)
    monkeypatch.setattr(cc, "_build_shard", real)
    build_context_cache(store, workers=1, shard_rows=8)
    assert not list(store.parent.glob("*.building-*"))
