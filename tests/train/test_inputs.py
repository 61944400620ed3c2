from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from stores.paths import resolve_store, store_path
from train.augment import Augmentation
from train.data import ExampleSettings, TrainingExamples
from train.inputs import (IMAGENET_MEAN, IMAGENET_STD, ModelInput, model_input, normalize_image,
                          to_device)


def test_store_path_rule_and_resolution(tmp_path):
    assert store_path(tmp_path, "emdb") == tmp_path / "emdb.zarr"
    assert resolve_store("emdb", tmp_path) == tmp_path / "emdb.zarr"
    assert resolve_store("/x/other.zarr", tmp_path) == Path("/x/other.zarr")
    (tmp_path / "folder").mkdir()
    assert resolve_store(tmp_path / "folder", "/nowhere") == tmp_path / "folder"


def test_normalisation_tables_reproduce_training_and_evaluation_arithmetic():
    """"float64" is training's table (float64, rounded once), "float32" evaluation's per-pixel
    float32 arithmetic; they differ by at most 1 ulp."""
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    planes = [v, v[::-1], v.T]
    train = normalize_image(planes, "float64")
    evaluation = normalize_image(planes, "float32")
    rgb = np.stack(planes, -1)
    by_hand32 = ((rgb.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    by_hand64 = ((rgb / 255 - IMAGENET_MEAN.astype(np.float64)) / IMAGENET_STD.astype(np.float64)
                 ).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(evaluation, by_hand32)
    np.testing.assert_array_equal(train, by_hand64)
    assert (train != evaluation).any() and np.abs(train - evaluation).max() <= 2.4e-7


def test_model_input_by_hand_and_collate_keeps_the_type():
    center, scale = np.array([300.0, 200.0]), np.asarray(1.5)
    det = np.array([[300.0, 200.0, 0.9], [450.0, 50.0, 0.2]] + [[300.0, 200.0, 0.5]] * 15)
    planes = [np.full((8, 8), 255, np.uint8)] * 3
    x = model_input(planes, det, center, scale, np.float32(1000.0),
                    np.array([640.0, 360.0], np.float32))
    np.testing.assert_allclose(x.det_kp[:2].numpy(), [[0, 0, 0.9], [1, -1, 0.2]], atol=1e-7)
    # c_B = [(cx − W/2)/f, (cy − H/2)/f, b/f], b = 200·scale
    np.testing.assert_allclose(x.bbox_cond.numpy(), [-20 / 1000, 20 / 1000, 300 / 1000],
                               rtol=1e-6)
    assert x.scale.shape == () and x.focal.shape == () and x.image.shape == (3, 8, 8)
    np.testing.assert_allclose(x.image[:, 0, 0].numpy(), (1 - IMAGENET_MEAN) / IMAGENET_STD,
                               rtol=1e-6)
    batch = default_collate([x, x])
    assert type(batch) is ModelInput and batch.det_kp.shape == (2, 17, 3)
    assert batch.scale.shape == (2,)
    assert type(to_device(batch, "cpu")) is ModelInput
    assert torch.equal(batch.select(torch.tensor([False, True])).center, x.center[None])


def test_training_and_evaluation_build_the_same_input_for_an_unaugmented_crop(precomputed):
    """One builder: a training example without augmentation and the test example of the same
    row agree on every input field (the image to the tables' 1 ulp), and the training heatmap
    samples are among the row's stored ones."""
    from eval.examples import TestExamples

    stores, _ = precomputed
    store = stores / "synthetic-train.zarr"
    train = TrainingExamples([store], ExampleSettings(augment=Augmentation.disabled()))
    test = TestExamples(store, 224, 1.25, workers=1)
    for k in range(3):
        ex = train[k]
        row = int(ex.targets.row)
        other = test[row]
        for name in ("det_kp", "bbox_cond", "center", "scale", "focal", "img_size"):
            a, b = getattr(ex.inputs, name), getattr(other.inputs, name)
            assert a.dtype == b.dtype and torch.equal(a, b), name
        assert (ex.inputs.image - other.inputs.image).abs().max() <= 2.4e-7
        ours = ex.targets.hm_samples.numpy()[:, :, None]  # (17, 25, 1, 2)
        stored = other.extras.hm_samples.numpy()[:, None]  # (17, 1, 150, 2)
        assert (ours == stored).all(-1).any(-1).all()
