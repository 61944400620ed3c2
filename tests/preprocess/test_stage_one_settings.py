"""Stage one's typed settings and its pure post-processing (preprocess/settings, postprocess)."""
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest
import torch

from body.cameras import DetectorCrop
from core.config import load_config
from preprocess.postprocess import postprocess
from preprocess.readers import read_bedlam
from preprocess.settings import method_settings, stage_one_settings
from stores.schema import KEPT

SOURCES = {"processed_labels/a.npz": "ab" * 32}
# the fingerprints the code before typed settings gave (a plain dict of the same keys)
EARLIER = {"synthetic-train": "e51d51a44696360d", "synthetic-test": "b1928885c664829a",
           "synthetic-agora": "e0d9a875f3f975ab", "synthetic-3dpw-train": "6e48e2ed5f60433b",
           "synthetic-3dpw-test": "6d401a2437f084fd"}


def _fingerprint(overrides=(), name="synthetic-train"):
    return stage_one_settings(load_config(overrides), name).method.fingerprint(SOURCES, 10, 256)


@pytest.mark.parametrize("name", list(EARLIER))
def test_fingerprints_of_existing_stores_are_unchanged(name):
    assert _fingerprint(name=name) == EARLIER[name]


def test_runtime_knobs_keep_the_fingerprint_method_settings_change_it():
    base = _fingerprint()
    for knob in ("precompute.batch_size=3", "precompute.device=cuda",
                 "cluster.threads_per_worker=4"):
        assert _fingerprint([knob]) == base, knob
    for method in ("sampling.seed=1", "sampling.min_heatmap_value=0.1",
                   "conventions.visible_conf=0.6", "filter.min_visible_joints=8",
                   "precompute.detector.options.sigma=3"):
        assert _fingerprint([method]) != base, method


def test_settings_are_frozen_and_split_method_from_runtime():
    settings = stage_one_settings(load_config(["precompute.batch_size=3"]), "synthetic-test")
    assert settings.runtime.batch_size == 3 and settings.method.split == "test"
    assert settings.method.mask_rule == {} and settings.method.filter.visible_conf == 0.5
    with pytest.raises(FrozenInstanceError):
        settings.method.seed = 1


def test_postprocess_of_a_one_pixel_heatmap_by_hand(small_world, body_models):
    """All mass on pixel (u, v) = (10, 20): every sample is that pixel, the pose is its image
    point (no refinement on a symmetric peak), and the mask distance is the distance from the
    rounded point to the one person pixel, by hand."""
    rows = read_bedlam(small_world / "bedlam", body_models, train_fraction=1.0).select([0])
    rows.mask = np.array(["m.png"])
    heat = torch.zeros(1, 17, 64, 48)
    heat[:, :, 20, 10] = 0.8
    crop = DetectorCrop(rows.center.astype(np.float64), rows.scale.astype(np.float64))
    x, y = crop.heatmap_to_image(np.array([[10.0, 20.0]]))[0, 0]
    gray = np.full((int(y) + 40, int(x) + 40), 255, np.uint8)
    gray[int(y) + 30, int(x) + 5] = 0  # the person pixel (bedlam masks: people dark)
    settings = replace(method_settings(load_config(), "synthetic-train"), split="test")
    out = postprocess(heat, rows, {"m.png": gray}, settings, np.array([0]))
    assert (out.index == 20 * 48 + 10).all() and out.index.dtype == np.uint16
    assert (out.value == np.float16(0.8)).all()
    np.testing.assert_allclose(out.keypoints[0, :, :2], np.tile([x, y], (17, 1)), rtol=1e-6)
    assert (out.keypoints[0, :, 2] == np.float32(0.8)).all() and (out.reason == KEPT).all()
    px, py = np.floor(x + 0.5), np.floor(y + 0.5)
    expected = np.hypot(px - (int(x) + 5), py - (int(y) + 30))
    assert out.mask_distance.dtype == np.float16
    np.testing.assert_allclose(out.mask_distance.astype(np.float64), expected, rtol=2 ** -10)
