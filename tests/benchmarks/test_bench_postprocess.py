import os

import cv2
import numpy as np
import pytest

from benchmarks import postprocess as pp
from preprocess.readers import read_bedlam
from stores.masks import union_mask
from stores.store import Store

ROWS, CHUNK = 12, 6


@pytest.fixture(scope="module")
def inputs(small_world, body_models, tmp_path_factory):
    root = small_world / "bedlam"
    rows = read_bedlam(root, body_models, train_fraction=1.0)
    rows = rows.select(np.arange(ROWS))
    return pp.prepare_inputs(root, rows, tmp_path_factory.mktemp("bench_inputs"), CHUNK)


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    """Both sides on the bench's own 2-process pool."""
    work = tmp_path_factory.mktemp("bench_runs")
    store = pp.create_store(inputs, work / "ours.zarr")
    reference = work / "reference"
    reference.mkdir()
    ours_times = pp.timed_runs(pp.OursJob, inputs, store.path)
    (reference_seconds,) = pp.timed_runs(pp.ReferenceJob, inputs, reference)
    return store.path, reference, ours_times, reference_seconds


def test_reference_writes_one_float32_150x17x4_file_per_row(inputs, runs):
    _, reference, _, _ = runs
    heat = np.load(inputs.heat_path)
    assert len(list(reference.glob("*.npy.gz"))) == ROWS
    for row in range(ROWS):
        samples = pp.read_reference(reference, row)
        assert samples.shape == (150, 17, 4) and samples.dtype == np.float32
        assert np.isfinite(samples[..., :3]).all()
        assert (samples[..., 3] >= 0).all()
        # thresholded sampling: no sample below 0.05 unless the map fell back to uniform
        fallback = heat[row].reshape(17, -1).max(1) < 0.05
        assert (samples[:, ~fallback, 2] >= 0.05).all()


def test_reference_argmax_and_max_conf_agree_with_ours(inputs, runs):
    store = Store(runs[0])
    keypoints = store.read("detector/keypoints")
    rows = inputs.rows
    heat = np.load(inputs.heat_path)
    mask_rule = inputs.settings.mask_rule
    for i in range(ROWS):
        gray = cv2.imread(str(inputs.root / rows.mask[i]), cv2.IMREAD_GRAYSCALE)
        mask_xy = np.argwhere(union_mask(gray, **mask_rule))[:, ::-1].astype(np.float64)
        samples, ref = pp.reference_row(heat[i], rows.center[i].astype(np.float64),
                                        float(rows.scale[i]), mask_xy)
        np.testing.assert_array_equal(keypoints[i, :, 2], ref[:, 2])  # max conf
        side = 200.0 * float(rows.scale[i])
        pixel = np.array([0.75 * side / 47, side / 63])  # one heatmap pixel in image px
        off = np.abs(keypoints[i, :, :2] - ref[:, :2]) / pixel
        assert (off <= 1 + 1e-4).all()  # refinement moves at most one heatmap pixel


def test_byte_figure_comes_from_the_files_on_disk(runs):
    store_path, reference, _, _ = runs
    ours = sum(os.path.getsize(os.path.join(d, f)) for name in pp.SAMPLE_ARRAYS
               for d, _, files in os.walk(store_path / name) for f in files if f != "zarr.json")
    ref = sum(p.stat().st_size for p in reference.glob("*.npy.gz"))
    assert ours > 0 and ref > 0
    figure = pp.bytes_figure(store_path, reference, ROWS)
    assert figure["value"] == round(ours / ROWS, 1)
    assert figure["reference_bytes_per_crop"] == round(ref / ROWS, 1)
    assert figure["met"] == (ours / ref <= 0.25)
    assert "float16" in figure["equal_information"] and "float32" in figure["equal_information"]


def test_speed_figure(runs):
    _, _, ours_times, reference_seconds = runs
    assert len(ours_times) == 1 and ours_times[0] > 0 and reference_seconds > 0
    figure = pp.speed_figure([1.0, 2.0, 3.0], 100.0, rows=4000)
    assert figure["value"] == 2000 and figure["speedup"] == 50 and figure["met"]
    assert not pp.speed_figure([2.0], 100.0, rows=3000)["met"]  # 1500 crops/s
