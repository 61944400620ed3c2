import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import zarr

from body.cameras import DetectorCrop, crop_denormalize, crop_image, crop_matrix
from core.config import load_config
from stores.masks import union_mask
from stores.schema import KEPT
from stores.store import Store
from stores.context_cache import (
    build_context_cache, cache_path, context_matrix, decode_context, open_context_cache,
)
from train.augment import Augmentation, ScaleJitter, augment_box, photometric
from train.data import (
    ExampleSampler, ExampleSettings, TrainingExample, TrainingExamples, make_loader,
)
from train.inputs import denormalize_image

NO_AUGMENTATION = ExampleSettings(augment=Augmentation.disabled())


@pytest.fixture(scope="module")
def store(precomputed, tmp_path_factory):
    """A private copy of the small world's training store, with its context cache."""
    stores, _ = precomputed
    path = tmp_path_factory.mktemp("train_data") / "synthetic-train.zarr"
    shutil.copytree(stores / "synthetic-train.zarr", path)
    build_context_cache(path, workers=1, shard_rows=8)  # several shards
    return path


@pytest.fixture(scope="module")
def examples(store):
    return TrainingExamples([store])


def _frame(store, row):
    s = Store(store)
    labels = s.labels(slice(row, row + 1))
    root = s.attrs["root"]
    frame = cv2.imread(f"{root}/{labels.image[0]}", cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    gray = cv2.imread(f"{root}/{labels.mask[0]}", cv2.IMREAD_GRAYSCALE)
    return frame, union_mask(gray, **s.attrs["mask_rule"]), labels


def _kept(store):
    return np.flatnonzero(Store(store).read("status/reason") == KEPT)


def _boundary(mask):
    """Pixels whose 3 × 3 neighbourhood is not all one value."""
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(m, kernel) != cv2.erode(m, kernel)


def test_stores_record_the_mask_rule_of_their_format(precomputed):
    from preprocess.readers import FORMATS

    stores, _ = precomputed
    for name in ("synthetic-train", "synthetic-test"):
        store = Store(stores / f"{name}.zarr")
        assert store.attrs["mask_rule"] == FORMATS[store.attrs["format"]].mask_rule


def test_context_cache_equals_a_direct_crop_of_the_frame(store):
    cache = open_context_cache(store)
    assert cache.size == 280 and cache.crop_size == 224
    for row in _kept(store)[:6]:
        frame, mask, labels = _frame(store, row)
        c, s = labels.center[0].astype(np.float64), labels.scale[0].astype(np.float64)
        m = context_matrix(c, s, 224, 280)
        direct = cv2.warpAffine(frame, m, (280, 280), flags=cv2.INTER_LINEAR)
        direct_mask = cv2.warpAffine(mask.view(np.uint8), m, (280, 280),
                                     flags=cv2.INTER_NEAREST).astype(bool)
        got = cache.context(row)
        error = np.abs(got[..., :3].astype(int) - direct)  # JPEG q90: ≈ 4 on these noisy frames
        assert 0 < error.mean() < 6 and np.percentile(error, 99) < 40
        wrong = (got[..., 3] > 0) != direct_mask
        assert not (wrong & ~_boundary(direct_mask)).any()
        assert wrong.mean() < 0.01


UNDILATED = ExampleSettings(augment=Augmentation.disabled(), mask_dilation=0)


def test_unaugmented_example_equals_the_model_crop_of_the_frame(store):
    ds = TrainingExamples([store], UNDILATED)
    for k in range(5):
        ex = _fields(ds[k])
        frame, mask, labels = _frame(store, int(ex["row"]))
        c, s = labels.center[0].astype(np.float64), labels.scale[0].astype(np.float64)
        direct = crop_image(frame, c, s).astype(float)
        error = np.abs(np.rint(denormalize_image(ex["image"])) - direct)  # the cache's JPEG
        assert error.mean() < 6 and np.percentile(error, 99) < 40
        direct_mask = cv2.warpAffine(mask.view(np.uint8), crop_matrix(c, s), (224, 224),
                                     flags=cv2.INTER_NEAREST).astype(bool)
        wrong = ex["mask"].numpy() != direct_mask
        assert not (wrong & ~_boundary(direct_mask)).any()


def test_training_mask_is_dilated_three_times_by_3x3(store):
    """The default training mask is the crop mask dilated by a 3 × 3 kernel, 3 iterations
    (reference release): every pixel within Chebyshev distance 3 of a person pixel. By hand on
    the undilated crop: the dilation equals a 7 × 7 maximum filter."""
    dilated = TrainingExamples([store], NO_AUGMENTATION)
    plain = TrainingExamples([store], UNDILATED)
    assert NO_AUGMENTATION.mask_dilation == 3
    grown = 0
    for k in range(4):
        a, b = _fields(dilated[k])["mask"].numpy(), _fields(plain[k])["mask"].numpy()
        padded = np.pad(b, 3)
        window = np.lib.stride_tricks.sliding_window_view(padded, (7, 7)).any((-1, -2))
        np.testing.assert_array_equal(a, window)
        grown += int(a.sum() - b.sum())
    assert grown > 0


def test_direct_row_reads_equal_zarr_and_the_store(store):
    cache = open_context_cache(store)
    group = zarr.open_group(str(cache_path(store)), mode="r")
    rows, samples = group["context"][:], group["samples"][:]
    s = Store(store)
    index, distance = s.read("samples/index"), s.read("samples/mask_distance")
    for row in range(s.n_rows):
        np.testing.assert_array_equal(cache.context(row), decode_context(rows[row], 280))
        got_index, got_distance = cache.samples(row)
        np.testing.assert_array_equal(got_index, samples[row, 0])
        np.testing.assert_array_equal(got_index, index[row])
        np.testing.assert_array_equal(got_distance, distance[row])
    assert cache._arrays["context"].direct


def test_cache_is_rebuilt_when_the_store_fingerprint_changes(store, tmp_path):
    path = tmp_path / "copy.zarr"
    shutil.copytree(store, path)
    first = build_context_cache(path, workers=1)
    stamp = (first / "zarr.json").stat().st_mtime_ns
    assert build_context_cache(path, workers=1) == first  # current: kept as is
    assert (first / "zarr.json").stat().st_mtime_ns == stamp
    zarr.open_group(str(path), mode="r+").attrs["fingerprint"] = "changed"
    with pytest.raises(ValueError, match="stale"):
        open_context_cache(path)
    build_context_cache(path, workers=2)  # the process pool path
    cache = open_context_cache(path)
    assert cache.attrs["store_fingerprint"] == "changed"
    reference = open_context_cache(store)
    for row in _kept(store)[:4]:
        np.testing.assert_array_equal(cache.context(row), reference.context(row))
    assert not list(tmp_path.glob("*.building-*")) and not list(tmp_path.glob("*.old-*"))


def _fields(example) -> dict:
    """A TrainingExample's tensors by field name (the model input's, then the targets')."""
    return {**example.inputs._asdict(), **example.targets._asdict()}


def _assert_same(a, b):
    a, b = (_fields(x) if isinstance(x, TrainingExample) else x for x in (a, b))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def test_examples_depend_only_on_k(store, examples):
    _assert_same(examples[7], examples[7])
    _assert_same(examples[7], TrainingExamples([store])[7])
    cfg = load_config(["train.seed=0"])
    batches = []
    for workers in (0, 2):
        loader = make_loader([store], cfg, start=3, batch_size=4, workers=workers)
        it = iter(loader)
        batches.append([next(it), next(it)])
        del it, loader
    for a, b in zip(*batches):
        _assert_same(a, b)
    first = _fields(batches[0][0])
    assert first["image"].shape == (4, 3, 224, 224) and first["hm_samples"].shape == (4, 17, 25, 2)
    for j, k in enumerate(range(3, 7)):
        _assert_same({key: v[j] for key, v in first.items()}, examples[k])


_FORK_AFTER_OPENCV_AND_TORCH = """
import sys
import cv2, numpy as np, torch
from core.config import load_config
from train.data import make_loader
torch.set_num_threads(2)
a = torch.randn(1500, 1500)
for _ in range(3):
    (a @ a).sum()
    cv2.warpAffine(np.random.rand(1500, 1500, 3).astype(np.float32),
                   np.array([[1, 0.1, 5], [0.1, 1, 3]], np.float32), (1500, 1500))
loader = make_loader([sys.argv[1]], load_config(["train.seed=0"]), 0, batch_size=2, workers=1)
print(next(iter(loader)).inputs.image.shape[0])
"""


def test_workers_start_after_this_process_used_opencv_and_torch_threads(store):
    """A forked worker that resized OpenCV's thread pool after the parent had used it beside
    torch's threads hung for good (seen in benchmarks.diagnosis.pose_budget); a fresh process
    that does both first must still get its batch."""
    done = subprocess.run([sys.executable, "-c", _FORK_AFTER_OPENCV_AND_TORCH, str(store)],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "2"


def test_different_k_differ_in_augmentation(examples):
    epoch = len(examples)
    row = examples.locate(0)[1]
    again = next(k for k in range(epoch, 2 * epoch) if examples.locate(k)[1] == row)
    a, b = _fields(examples[0]), _fields(examples[again])
    assert int(a["row"]) == int(b["row"])
    assert not torch.equal(a["center"], b["center"]) or not torch.equal(a["scale"], b["scale"])
    assert not torch.equal(a["image"], b["image"])
    assert not torch.equal(a["hm_samples"], b["hm_samples"])
    # the detector ran once on the original box: its confidences are the same, its keypoints
    # are re-expressed in each augmented box (docs/method.md §5)
    assert not torch.equal(a["det_kp"][:, :2], b["det_kp"][:, :2])
    assert torch.equal(a["det_kp"][:, 2], b["det_kp"][:, 2])
    assert torch.equal(a["max_conf"], b["max_conf"])
    assert torch.equal(a["gt_pose6d"], b["gt_pose6d"])


def test_geometry_without_augmentation(store):
    ds = TrainingExamples([store], NO_AUGMENTATION)
    s = Store(store)
    labels = s.labels()
    det = s.read("detector/keypoints")
    for k in range(len(ds)):
        ex = _fields(ds[k])
        row = int(ex["row"])
        c = labels.center[row].astype(np.float64)
        sc = np.asarray(labels.scale[row], np.float64)
        np.testing.assert_allclose(ex["center"].numpy(), c, rtol=1e-6)
        np.testing.assert_allclose(float(ex["scale"]), sc, rtol=1e-6)
        coco = crop_denormalize(ex["gt_coco"].numpy().astype(np.float64), c, sc)
        np.testing.assert_allclose(coco, labels.kp2d_coco[row], atol=1e-3)
        kp = crop_denormalize(ex["det_kp"][:, :2].numpy().astype(np.float64), c, sc)
        np.testing.assert_allclose(kp, det[row, :, :2], atol=1e-3)
        np.testing.assert_array_equal(ex["max_conf"].numpy(), det[row, :, 2])
        assert float(ex["focal"]) == labels.cam_int[row, 0, 0]
        w, h = labels.image_size[row]
        f = labels.cam_int[row, 0, 0]
        np.testing.assert_allclose(ex["bbox_cond"].numpy(),
                                   [(c[0] - w / 2) / f, (c[1] - h / 2) / f, 200 * sc / f],
                                   rtol=1e-5)
        assert bool(ex["use_mask"]) == (labels.mask[row] != ""
                                        and not labels.object_occluded[row])


def test_heatmap_samples_lie_in_the_original_detector_view(store, examples):
    s = Store(store)
    labels = s.labels()
    distance = s.read("samples/mask_distance")
    for k in range(0, 3 * len(examples), 5):
        ex = _fields(examples[k])
        row = int(ex["row"])
        c, sc = ex["center"].numpy().astype(np.float64), ex["scale"].numpy().astype(np.float64)
        xy = crop_denormalize(ex["hm_samples"].numpy().astype(np.float64), c, sc)
        crop = DetectorCrop(labels.center[row].astype(np.float64),
                            np.asarray(labels.scale[row], np.float64))
        fraction = (xy - crop.origin) / crop.extent
        assert (fraction > -1e-4).all() and (fraction < 1 + 1e-4).all()
        # hm_inside is the stored distance test of the drawn samples
        inside = ex["hm_inside"].numpy()
        assert inside.sum() <= (distance[row] <= 0.71).sum()
        coco = ex["gt_coco"].numpy()
        np.testing.assert_array_equal(ex["gt_in_crop"].numpy(), (np.abs(coco) <= 1).all(-1))
        np.testing.assert_array_equal(ex["gt_in_fov"].numpy(),
                                      crop.contains(labels.kp2d_coco[row].astype(np.float64)))


def test_condition_is_in_the_augmented_box(store, examples):
    """The detector keypoints are normalised to the AUGMENTED box like the ground truth
    (reference release): det_kp = (det − c')/(100·s') with the example's own box (c', s'), so
    det_kp − gt_coco = (det − gt)/(100·s'). The old rule normalised them to the original box."""
    s = Store(store)
    labels, det = s.labels(), s.read("detector/keypoints").astype(np.float64)
    moved = 0
    for k in range(0, 2 * len(examples), 3):
        ex = _fields(examples[k])
        row = int(ex["row"])
        c, sc = ex["center"].numpy().astype(np.float64), float(ex["scale"])
        by_hand = (det[row, :, :2] - c) / (100 * sc)
        np.testing.assert_allclose(ex["det_kp"][:, :2].numpy(), by_hand, atol=1e-5)
        np.testing.assert_allclose(ex["det_kp"][:, :2].numpy() - ex["gt_coco"].numpy(),
                                   (det[row, :, :2] - labels.kp2d_coco[row]) / (100 * sc),
                                   atol=1e-5)
        moved += abs(sc - float(labels.scale[row])) > 1e-3 * sc
    assert moved > 0  # some boxes are jittered: the old rule would differ there


def test_gt_pose6d_is_the_first_two_rows_of_the_rotations(store, examples):
    from scipy.spatial.transform import Rotation

    ex = _fields(examples[2])
    pose = Store(store).read("labels/pose")[int(ex["row"])]
    rot = Rotation.from_rotvec(pose).as_matrix()
    np.testing.assert_allclose(ex["gt_pose6d"].numpy(), rot[:, :2].reshape(22, 6), atol=1e-5)
    assert ex["gt_betas"].shape == (11,) and ex["gt_body2d_valid"].all()


def test_truncation_halves_the_box_and_jitter_is_clipped():
    rng = np.random.default_rng(0)
    center, scale = np.array([300.0, 200.0]), 1.5
    cut = Augmentation(ScaleJitter(0.0, 1.0, 1.0), truncation_p=1.0)
    for _ in range(200):
        c, s = augment_box(rng, center, scale, cut)
        assert s == pytest.approx(scale / 2)
        assert c[0] == center[0] and abs(c[1] - center[1]) <= 200 * scale / 4
    jitter = Augmentation(truncation_p=0.0)
    factors = np.array([augment_box(rng, center, scale, jitter)[1] / scale for _ in range(2000)])
    assert factors.min() == pytest.approx(0.75) and factors.max() == pytest.approx(1.25)
    assert 0.1 < np.mean(factors == factors.min()) + np.mean(factors == factors.max()) < 0.5
    default = Augmentation.from_config(load_config([]).train)
    assert default == Augmentation()
    cuts = [augment_box(rng, center, scale, default)[1] < 0.75 * scale for _ in range(2000)]
    assert 0.15 < np.mean(cuts) < 0.25  # truncation with p = 0.2 (a half box is < 0.625 s)


def test_photometric_augmentation():
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert photometric(np.random.default_rng(0), image, p=0.0) is image
    changed = [photometric(np.random.default_rng(i), image, p=1.0) for i in range(8)]
    for out in changed:
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert not np.array_equal(out, image)
    again = photometric(np.random.default_rng(3), image, p=1.0)
    np.testing.assert_array_equal(again, changed[3])


def test_only_kept_rows_are_served(store, examples):
    kept = _kept(store)
    assert len(kept) < Store(store).n_rows  # the filter dropped some rows
    datasets, rows = examples.epoch_table(0)
    assert sorted(rows) == sorted(kept) and (datasets == 0).all()
    assert {int(_fields(examples[k])["row"]) for k in range(0, len(examples), 3)} <= set(kept)
    other = examples.epoch_table(1)[1]
    assert sorted(other) == sorted(kept) and not np.array_equal(other, rows)


def test_dataset_weights_change_the_mix(store, tmp_path):
    second = tmp_path / "second.zarr"
    shutil.copytree(store, second)
    build_context_cache(second, workers=1)
    only_first = TrainingExamples([store, second], weights=[1, 0], build=False)
    assert len(only_first) == 2 * len(_kept(store))
    for epoch in range(3):
        datasets, rows = only_first.epoch_table(epoch)
        assert (datasets == 0).all() and set(rows) <= set(_kept(store))
    assert {int(_fields(only_first[k])["dataset"]) for k in range(0, 40, 4)} == {0}
    uniform = TrainingExamples([store, second], build=False)
    datasets, _ = uniform.epoch_table(0)
    assert (datasets == 0).sum() == (datasets == 1).sum() == len(_kept(store))
    tilted = TrainingExamples([store, second], weights=[3, 1], build=False)
    datasets, _ = tilted.epoch_table(0)
    assert abs((datasets == 0).mean() - 0.75) < 0.05


def test_example_sampler_strides_over_ranks():
    it = iter(ExampleSampler(10, rank=1, world_size=3))
    assert [next(it) for _ in range(4)] == [11, 14, 17, 20]
    with pytest.raises(ValueError):
        ExampleSampler(0, rank=2, world_size=2)
