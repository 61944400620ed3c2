"""Our stores are plain Zarr v3: only codecs of the v3 specification, and a second
implementation (tensorstore) reads every numeric array exactly as zarr-python does."""
import json

import numpy as np
import pytest
import zarr

ts = pytest.importorskip("tensorstore")

# the codecs of the Zarr v3 core specification (and its crc32c / sharding extensions)
V3_CODECS = {"bytes", "blosc", "gzip", "zstd", "crc32c", "transpose", "sharding_indexed",
             "vlen-utf8"}


def _arrays(root):
    for meta in sorted(root.rglob("zarr.json")):
        doc = json.loads(meta.read_text())
        if doc.get("node_type") == "array":
            yield meta.parent, doc


def _codec_names(codecs):
    for codec in codecs:
        yield codec["name"]
        inner = codec.get("configuration", {})
        yield from _codec_names(inner.get("codecs", []) + inner.get("index_codecs", []))


@pytest.mark.parametrize("name", ["synthetic-train", "synthetic-test"])
def test_every_array_uses_only_v3_specification_codecs(precomputed, name):
    stores, _ = precomputed
    seen = set()
    for path, doc in _arrays(stores / f"{name}.zarr"):
        names = set(_codec_names(doc["codecs"]))
        assert names <= V3_CODECS, f"{path}: codecs {sorted(names - V3_CODECS)} outside Zarr v3"
        seen |= names
    assert {"bytes", "blosc", "crc32c"} <= seen


def test_tensorstore_reads_the_stored_arrays_identically(precomputed):
    stores, _ = precomputed
    root = stores / "synthetic-train.zarr"
    group = zarr.open_group(root, mode="r")
    checked = []
    for path, doc in _arrays(root):
        if doc["data_type"] == "string":
            continue  # variable-length strings: tensorstore's zarr3 driver has no such dtype
        key = path.relative_to(root).as_posix()
        theirs = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}},
                         open=True, read=True).result().read().result()
        ours = group[key][...]
        assert theirs.dtype == ours.dtype and theirs.shape == ours.shape, key
        np.testing.assert_array_equal(theirs, ours, err_msg=key)
        checked.append(key)
    assert {"samples/index", "samples/value", "samples/mask_distance",
            "detector/keypoints"} <= set(checked)
