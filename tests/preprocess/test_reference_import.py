"""`import-reference`: the reference release's files into our stores.

The release-layout files are written by `preprocess.reference_export` from the synthetic
world's precomputed stores, then imported back: the round trip must be exact (labels, detector,
samples, masks, flags, reasons), the store verified, a killed import resumed to the same bytes.
"""
import gzip
import io
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from body.cameras import DetectorCrop
from core.cli import run_cli
from core.config import load_config
from core.errors import BadFileError
from preprocess.__main__ import main as preprocess_main
from preprocess.reference_export import export_reference
from preprocess.reference_import import ImportSource, import_reference
from preprocess.reference_release import row_samples
from stores.__main__ import main as stores_main
from stores.labels import LabelRows
from stores.schema import result_specs
from stores.store import Store
from stores.verify import verify

RESULTS = [spec.name for spec in result_specs(150)]


def _cfg(out, *extra):
    return load_config([f"paths.stores={out}", "precompute.chunk_rows=8", *extra])


@pytest.fixture(scope="module")
def release(precomputed, small_world, tmp_path_factory):
    """The synthetic train (BEDLAM layout) and test (EMDB layout) stores as release files."""
    stores, _ = precomputed
    out = tmp_path_factory.mktemp("release")
    bedlam = small_world / "bedlam" / "images" / "synthetic_a"
    emdb = small_world / "emdb"
    files = {
        "train": dict(store=stores / "synthetic-train.zarr", layout="bedlam",
                      images=bedlam / "png", masks=bedlam / "masks", root=small_world / "bedlam"),
        "test": dict(store=stores / "synthetic-test.zarr", layout="emdb", images=emdb,
                     masks=emdb, root=emdb),
    }
    for split, f in files.items():
        f["npz"], f["samples"] = out / f"{split}.npz", out / "heatmap_samples" / split
        export_reference(f["store"], f["npz"], f["samples"], f["images"], f["layout"], f["masks"])
    return files


def _import(f, out, name, npz=None, **kw):
    source = ImportSource.checked(npz or f["npz"], f["samples"], f["images"], f["masks"],
                                  f["layout"], root=f["root"])
    summary = import_reference(_cfg(out, *kw.pop("overrides", [])), name, source, **kw)
    return Store(summary["store"]), summary


def _assert_round_trip(original: Store, imported: Store, npz_name: str):
    a, b = original.labels(), imported.labels()
    assert a.body_model == b.body_model
    for f in fields(LabelRows):
        if f.name not in ("body_model", "source"):
            np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)
    assert list(b.source) == [f"{npz_name}:{i}" for i in range(len(b))]
    for name in RESULTS:
        np.testing.assert_array_equal(original.read(name), imported.read(name), err_msg=name)
    assert imported.attrs["root"] == original.attrs["root"]
    assert imported.attrs["mask_rule"] == original.attrs["mask_rule"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip_is_exact_and_verified(release, tmp_path, split):
    f = release[split]
    store, summary = _import(f, tmp_path, f"ref-{split}")
    original = Store(f["store"])
    _assert_round_trip(original, store, f["npz"].name)
    # the synthetic world holds what the release lacks only as defaults of absent keys: none here
    assert summary["defaults"] == {} and summary["rows_written"] == original.n_rows
    assert verify(store.path).complete
    assert run_cli(stores_main, ["verify", str(store.path)]) == 0
    if split == "train":  # the wrong-person filter has work and decides as precompute did
        reasons = store.read("status/reason")
        assert (reasons >= 10).any() and (reasons == 0).any()


def test_valid_emdb_mask_selects_the_mask_subset(release, tmp_path):
    """Rows with valid_emdb_mask = 0 get no mask (has_mask False in eval: out of the PercIn /
    MinDist subset, Table 2) and infinite sample distances; the others keep theirs."""
    f = release["test"]
    data = dict(np.load(f["npz"]))
    had = data["valid_emdb_mask"] == 1
    assert had.sum() >= 2
    drop = np.flatnonzero(had)[::2]
    data["valid_emdb_mask"][drop] = 0
    npz = tmp_path / "emdb_p1_occl.npz"
    np.savez(npz, **data)
    store, _ = _import(f, tmp_path, "ref-occl", npz=npz)
    has_mask = store.read("labels/mask") != ""
    np.testing.assert_array_equal(has_mask, data["valid_emdb_mask"] == 1)
    distance = store.read("samples/mask_distance")
    assert np.isinf(distance[drop]).all()
    keep = np.flatnonzero(has_mask)
    np.testing.assert_array_equal(distance[keep], Store(f["store"]).read(
        "samples/mask_distance")[keep])


def test_missing_required_key_is_one_line(release, tmp_path, capsys):
    f = release["train"]
    data = {k: v for k, v in np.load(f["npz"]).items() if k != "vitpose"}
    npz = tmp_path / "no_vitpose.npz"
    np.savez(npz, **data)
    code = run_cli(preprocess_main, [
        "import-reference", "--npz", str(npz), "--samples", str(f["samples"]),
        "--images", str(f["images"]), "--masks", str(f["masks"]), "--name", "x",
        f"paths.stores={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(npz) in err and "'vitpose'" in err
    assert not (tmp_path / "x.zarr").exists()


def test_missing_optional_keys_take_documented_defaults(release, tmp_path):
    """No object_occlusion: every row occluded (no mask loss); no cam_int: the image-diagonal
    focal; vitpose confidences above 1 are clipped, its (y, x) columns swapped."""
    f = release["train"]
    absent = ("object_occlusion", "cam_int")
    data = {k: v for k, v in np.load(f["npz"]).items() if k not in absent}
    data["vitpose"][0, 3, 2] = 1.7
    npz = tmp_path / "bare.npz"
    np.savez(npz, **data)
    store, summary = _import(f, tmp_path, "ref-bare", npz=npz)
    assert set(summary["defaults"]) == {"object_occlusion", "cam_int"}
    assert store.read("labels/object_occluded").all()
    w, h = store.read("labels/image_size")[0]
    assert store.read("labels/cam_int")[0, 0, 0] == pytest.approx(np.hypot(w, h))
    det = store.read("detector/keypoints")
    assert det[0, 3, 2] == 1.0
    np.testing.assert_array_equal(det[1:, :, :2], data["vitpose"][1:, :, [1, 0]])


def test_killed_import_resumes_to_the_same_bytes(release, tmp_path, monkeypatch):
    f = release["train"]
    whole, _ = _import(f, tmp_path / "whole", "ref")
    real_write = Store.write_chunk
    calls = []

    def crash_on_third(self, index, results):
        calls.append(index)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while converting the third chunk
        real_write(self, index, results)

    monkeypatch.setattr(Store, "write_chunk", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _import(f, tmp_path / "killed", "ref")
    monkeypatch.setattr(Store, "write_chunk", real_write)
    half = Store(tmp_path / "killed" / "ref.zarr")
    assert half.done().sum() == 2 and not verify(half.path).complete
    done_files = {half.chunk_file(name, c): half.chunk_file(name, c).stat().st_mtime_ns
                  for name in RESULTS for c in (0, 1)}
    store, summary = _import(f, tmp_path / "killed", "ref")
    assert summary["chunks_run"] == whole.n_chunks - 2
    for name in RESULTS + ["status/chunk_done"]:
        np.testing.assert_array_equal(store.read(name), whole.read(name), err_msg=name)
    for chunk in range(store.n_chunks):  # identical chunk files, byte for byte
        for name in RESULTS:
            assert store.chunk_file(name, chunk).read_bytes() == \
                whole.chunk_file(name, chunk).read_bytes()
    assert all(p.stat().st_mtime_ns == t for p, t in done_files.items())  # never rewritten
    assert verify(store.path).complete


def _sample_file(path: Path, raw: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, raw.astype(np.float32))
    with gzip.GzipFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def test_row_samples_by_hand(tmp_path):
    """300 samples: a seeded subset of 150 of them, sorted by index per joint; off-grid samples
    are measured (residual) so the importer can refuse them."""
    center, scale = np.array([100.0, 80.0]), 0.9
    crop = DetectorCrop(center, scale)
    rng = np.random.default_rng(0)
    index = rng.integers(0, DetectorCrop.HEATMAP_CELLS, (300, 17))
    xy = crop.index_to_image(index.T).transpose(1, 0, 2)  # (300, 17, 2)
    raw = np.concatenate([xy, (index / 3072.0)[..., None], np.full((300, 17, 1), 2.5)], -1)
    path = _sample_file(tmp_path / "0000000.npy.gz", raw)
    got = row_samples(path, center, scale, 150, True, (0, "t", 0))
    again = row_samples(path, center, scale, 150, True, (0, "t", 0))
    np.testing.assert_array_equal(got.index, again.index)
    assert got.residual < 1e-3 and (np.diff(got.index.astype(int), axis=1) >= 0).all()
    for j in range(17):  # a sub-multiset of the file's samples of that joint, values attached
        file_counts = np.bincount(index[:, j], minlength=3072)
        assert (np.bincount(got.index[j], minlength=3072) <= file_counts).all()
        np.testing.assert_allclose(got.value[j], got.index[j] / 3072.0, rtol=1e-3)
    assert (got.mask_distance == np.float16(2.5)).all()
    no_mask = row_samples(path, center, scale, 150, False, (0, "t", 0))
    assert np.isinf(no_mask.mask_distance).all()
    step = crop.extent[0] / 47  # image px per heatmap column
    shifted = raw.copy()
    shifted[..., 0] += 0.3 * step
    off = row_samples(_sample_file(tmp_path / "0000001.npy.gz", shifted), center, scale, 150,
                      True, (0, "t", 1))
    assert off.residual == pytest.approx(0.3, abs=1e-3)
    with pytest.raises(BadFileError, match=r"\(S ≥ 150, 17, 4\)"):
        row_samples(_sample_file(tmp_path / "0000002.npy.gz", raw[:100]), center, scale, 150,
                    True, (0, "t", 2))
