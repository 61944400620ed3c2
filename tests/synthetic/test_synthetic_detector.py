"""Tests of preprocess/detectors: the simulated ViTPose on hand-made synthetic scenes."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from body.cameras import DetectorCrop, box_from_keypoints
from body.joints import COCO17_NAMES
from preprocess.detectors import CropRequest, Detector, SyntheticDetector, make_detector
from synthetic.detector import render_gaussians
from synthetic.sidecar import sidecar_path

W, H = 640, 360
J = {name: k for k, name in enumerate(COCO17_NAMES)}
LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16),
         (5, 6), (11, 12), (5, 11), (6, 12))


def stick_figure(x: float, y_feet: float, height: float, arm_out: float = 0.0) -> np.ndarray:
    """COCO-17 joints (17, 2) of a person facing the camera (their left on the image right)."""
    u = height / 8.0
    pts = {
        "nose": (0, 7.5), "left_eye": (0.15, 7.65), "right_eye": (-0.15, 7.65),
        "left_ear": (0.35, 7.55), "right_ear": (-0.35, 7.55),
        "left_shoulder": (0.8, 6.6), "right_shoulder": (-0.8, 6.6),
        "left_elbow": (1.0, 5.2), "right_elbow": (-1.0 - arm_out, 5.2),
        "left_wrist": (1.1, 3.9), "right_wrist": (-1.1 - 2 * arm_out, 4.2 + arm_out),
        "left_hip": (0.5, 4.0), "right_hip": (-0.5, 4.0),
        "left_knee": (0.6, 2.0), "right_knee": (-0.6, 2.0),
        "left_ankle": (0.65, 0.1), "right_ankle": (-0.65, 0.1),
    }
    return np.array([[x + u * pts[n][0], y_feet - u * pts[n][1]] for n in COCO17_NAMES])


def paint(person_map: np.ndarray, xy: np.ndarray, index: int, height: float):
    """Paint a person's limbs, torso and head into the map (later people cover earlier ones)."""
    thick = max(2, int(height / 16))
    torso = xy[[5, 6, 12, 11]].round().astype(np.int32)
    cv2.fillPoly(person_map, [torso], index)
    for a, b in LIMBS:
        cv2.line(person_map, tuple(xy[a].round().astype(int)), tuple(xy[b].round().astype(int)),
                 index, thick)
    cv2.circle(person_map, tuple(xy[0].round().astype(int)), int(height / 14), index, -1)


def write_scene(path: Path, people, states, objects=()):
    """Write an (empty) image path's side-car; people = [(xy, height)], objects = rectangles."""
    person_map = np.full((H, W), -1, np.int16)
    for index, (xy, height) in enumerate(people):
        paint(person_map, xy, index, height)
    for x0, y0, x1, y1 in objects:
        person_map[y0:y1, x0:x1] = -1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # the pixels are never read
    np.savez(sidecar_path(path), image_size=np.array([W, H], np.int32),
             coco_xy=np.array([xy for xy, _ in people], np.float32).reshape(-1, 17, 2),
             coco_state=np.asarray(states, np.int8), person_map=person_map.astype(np.int8))
    return path


def request_for(path, xy):
    center, scale = box_from_keypoints(xy)
    return CropRequest(path, center, scale)


def true_uv(request: CropRequest, xy: np.ndarray) -> np.ndarray:
    return DetectorCrop(request.center, np.asarray(request.scale)).image_to_heatmap(xy)


def argmax_uv(hm: np.ndarray) -> np.ndarray:
    """(column, row) of each heatmap's maximum, (..., 2)."""
    flat = hm.reshape(hm.shape[:-2] + (-1,)).argmax(-1)
    return np.stack([flat % hm.shape[-1], flat // hm.shape[-1]], -1).astype(float)


def half_max_pixels(hm: np.ndarray) -> np.ndarray:
    """Pixels above half the maximum, per heatmap: a scale-free breadth measure."""
    top = hm.max((-1, -2), keepdims=True)
    return (hm > top / 2).sum((-1, -2))


@pytest.fixture()
def street(tmp_path):
    """Two people apart. Person 0: left knee behind an object (right knee visible), left elbow
    self-occluded, left ankle behind 'someone', right arm out of the image. Person 1: all seen."""
    a = stick_figure(80, 330, 240, arm_out=0.8)
    b = stick_figure(450, 320, 220)
    state_a = np.zeros(17, np.int8)
    state_a[J["left_knee"]] = 3
    state_a[J["left_elbow"]] = 1
    state_a[J["left_ankle"]] = 2
    state_a[J["left_wrist"]] = 1
    outside = (a[:, 0] < 0) | (a[:, 0] >= W)
    state_a[outside] = 4
    assert state_a[J["right_wrist"]] == 4 and a[J["right_wrist"], 0] < 0
    knee = a[J["left_knee"]].round().astype(int)
    path = write_scene(tmp_path / "street" / "png" / "seq_000000" / "seq_000000_0000.png",
                       [(a, 240), (b, 220)], [state_a, np.zeros(17, np.int8)],
                       objects=[(knee[0] - 12, knee[1] - 12, knee[0] + 12, knee[1] + 12)])
    return path, (a, b), (state_a, np.zeros(17, np.int8))


@pytest.fixture()
def crowd(tmp_path):
    """Person A mostly hidden behind a larger person B standing in front, slightly to the side."""
    a = stick_figure(300, 300, 230)
    b = stick_figure(322, 345, 290)
    state_a = np.full(17, 2, np.int8)
    state_a[[J["left_ear"], J["left_eye"]]] = 0
    path = write_scene(tmp_path / "crowd" / "png" / "seq_000001" / "seq_000001_0000.png",
                       [(a, 230), (b, 290)], [state_a, np.zeros(17, np.int8)])
    return path, (a, b)


def test_interface_and_registry():
    det = make_detector("synthetic", seed=3)
    assert isinstance(det, SyntheticDetector) and isinstance(det, Detector)
    assert det.name == "synthetic" and det.seed == 3
    with pytest.raises(ValueError, match="synthetic"):
        make_detector("nope")


def test_shape_dtype_and_floor(street):
    path, (a, b), _ = street
    requests = [request_for(path, a), request_for(path, b)]
    crops = np.zeros((2, 256, 192, 3), np.uint8)
    hm = SyntheticDetector()(crops, requests)
    assert hm.shape == (2, 17, 64, 48) and hm.dtype == np.float32
    assert hm.min() > -0.02 and hm.max() <= 1.0
    assert SyntheticDetector()(None, []).shape == (0, 17, 64, 48)
    with pytest.raises(ValueError):
        SyntheticDetector()(crops[:1], requests)


def test_visible_joints_are_sharp_and_exact(street):
    path, people, states = street
    det = SyntheticDetector(seed=1)
    for xy, state in zip(people, states):
        request = request_for(path, xy)
        hm = det(None, [request])[0]
        uv = true_uv(request, xy)
        seen = state == 0
        assert seen.sum() >= 11
        peaks = hm[seen].max((-1, -2))
        assert peaks.min() >= 0.75 and peaks.max() <= 1.0
        err = np.abs(argmax_uv(hm[seen]) - uv[seen])
        assert err.max() <= 1.0, err


def test_hidden_joints_are_weak_and_broad(street):
    path, (a, _), (state_a, _) = street
    request = request_for(path, a)
    for seed in range(5):
        hm = SyntheticDetector(seed=seed)(None, [request])[0]
        hidden = state_a > 0
        assert set(state_a[hidden]) == {1, 2, 3, 4}
        peaks = hm[hidden].max((-1, -2))
        assert peaks.max() < 0.5 and peaks.min() > 0.1
        breadth = half_max_pixels(hm)
        # a σ = 2 Gaussian has ~17 pixels above half its maximum
        assert breadth[~hidden].max() <= 25
        assert breadth[hidden].min() > 25 and np.median(breadth[hidden]) > 40


def test_left_right_confusion(street):
    path, (a, _), (state_a, _) = street
    request = request_for(path, a)
    knee_l, knee_r = J["left_knee"], J["right_knee"]
    assert state_a[knee_l] == 3 and state_a[knee_r] == 0
    uv_r = true_uv(request, a)[knee_r]
    rows, cols = np.mgrid[:64, :48]
    near = (cols - uv_r[0]) ** 2 + (rows - uv_r[1]) ** 2 <= 4.0 ** 2
    for seed in range(5):
        hm = SyntheticDetector(seed=seed)(None, [request])[0, knee_l]
        p = np.where(hm >= 0.05, hm, 0.0)  # what the sampler keeps (docs/method.md §2)
        assert p[near].sum() / p.sum() > 0.1
        assert hm[near].max() > 0.4 * hm.max()


def test_wrong_person_when_the_intended_one_is_hidden(crowd):
    path, (a, b) = crowd
    request = request_for(path, a)
    hm = SyntheticDetector()(None, [request])[0]
    found = argmax_uv(hm)
    uv_a, uv_b = true_uv(request, a), true_uv(request, b)
    in_view = DetectorCrop(request.center, np.asarray(request.scale)).contains(b)
    assert in_view.sum() >= 13  # B's feet stand below A's box
    err_b = np.linalg.norm(found - uv_b, axis=-1)[in_view]
    err_a = np.linalg.norm(found - uv_a, axis=-1)[in_view]
    assert np.all(err_b <= 1.5) and np.median(err_a) > 4
    # B is seen: a confident wrong detection; its truncated feet are not
    peaks = hm.max((-1, -2))
    assert peaks[in_view].min() > 0.75 and peaks[~in_view].max() < 0.5
    # the same box on B: B as well
    hm_b = SyntheticDetector()(None, [request_for(path, b)])[0]
    found_b = argmax_uv(hm_b)
    assert np.linalg.norm(found_b - true_uv(request_for(path, b), b), axis=-1).max() <= 1.5


def test_nobody_in_the_box(street):
    path, _, _ = street
    request = CropRequest(path, np.array([280.0, 80.0]), 0.4)  # empty sky between the people
    hm = SyntheticDetector()(None, [request])[0]
    assert hm.max() < 0.2
    assert half_max_pixels(hm).min() > 60
    empty = write_scene(path.with_name("empty.png"), [], np.zeros((0, 17)))
    hm = SyntheticDetector()(None, [CropRequest(empty, np.array([320.0, 180.0]), 1.5)])[0]
    assert hm.max() < 0.2


def test_deterministic_across_batches_and_seeds(street, crowd, tmp_path_factory):
    (p1, (a, b), _), (p2, (c, d)) = street, crowd
    requests = [request_for(p1, a), request_for(p1, b), request_for(p2, c), request_for(p2, d),
                CropRequest(p1, np.array([100.0, 200.0]), 1.1)]
    full = SyntheticDetector(seed=7)(None, requests)
    reverse = SyntheticDetector(seed=7)(None, requests[::-1])[::-1]
    small_cache = SyntheticDetector(seed=7, cache_size=1)
    split = np.concatenate([small_cache(None, requests[i::2]) for i in (0, 1)])
    order = [0, 2, 4, 1, 3]
    np.testing.assert_array_equal(full, reverse)
    np.testing.assert_array_equal(full[order], split)
    # the randomness follows the request, not the object
    again = SyntheticDetector(seed=7)(None, [CropRequest(Path(str(p1)), *box_from_keypoints(a))])
    np.testing.assert_array_equal(full[:1], again)
    # nor on where the data root lies (the last 4 path components key it)
    moved = tmp_path_factory.mktemp("elsewhere") / p1.relative_to(p1.parents[3])
    moved.parent.mkdir(parents=True)
    shutil.copy(sidecar_path(p1), sidecar_path(moved))
    np.testing.assert_array_equal(
        full[:1], SyntheticDetector(seed=7)(None, [CropRequest(moved, *box_from_keypoints(a))]))
    other = SyntheticDetector(seed=8)(None, requests[:1])[0]
    _, _, (state_a, _) = street
    hidden = state_a > 0
    assert not np.allclose(other[hidden], full[0, hidden], atol=1e-3)


def test_missing_sidecar_is_explained(tmp_path):
    request = CropRequest(tmp_path / "real.jpg", np.array([10.0, 10.0]), 1.0)
    with pytest.raises(FileNotFoundError, match="synthetic"):
        SyntheticDetector()(None, [request])


def test_non_finite_joints_count_as_outside(tmp_path):
    xy = stick_figure(320, 330, 240)
    path = write_scene(tmp_path / "a" / "b" / "c" / "nan.png", [(xy, 240)], [np.zeros(17)])
    scene = dict(np.load(sidecar_path(path)))
    scene["coco_xy"][0, J["left_ankle"]] = np.nan  # e.g. behind the camera
    np.savez(sidecar_path(path), **scene)
    hm = SyntheticDetector()(None, [request_for(path, xy)])[0]
    assert np.isfinite(hm).all() and hm[J["left_ankle"]].max() < 0.5
    assert hm[J["right_ankle"]].max() > 0.75


def test_mixture_equals_a_direct_sum_of_gaussians():
    """render_gaussians (mode-by-mode outer products) against the formula on every pixel."""
    rng = np.random.default_rng(4)
    mu = rng.uniform([-5, -5], [52, 68], (17, 6, 2))
    sigma, weight = rng.uniform(1.5, 8, (17, 6)), rng.uniform(0, 1, (17, 6))
    weight[:, 4] = 0.0   # a mode unused by every joint
    weight[3, :2] = 0.0  # modes unused by one joint only
    v, u = np.mgrid[0:64, 0:48]
    d2 = (u - mu[..., 0, None, None]) ** 2 + (v - mu[..., 1, None, None]) ** 2
    expected = (weight[..., None, None] * np.exp(-d2 / (2 * sigma[..., None, None] ** 2))).sum(1)
    got = render_gaussians(mu, sigma, weight)
    assert got.dtype == np.float32 and got.shape == (17, 64, 48)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30)


def test_floor_is_the_bilinear_upsampling_of_the_coarse_grid():
    noise = 0.005
    u = np.random.default_rng(5).random((17, 16, 12), dtype=np.float32)
    coarse = noise * (4 * u.astype(np.float64) ** 3 - 0.5)
    rows, cols = np.linspace(0, 15, 64), np.linspace(0, 11, 48)
    by_rows = np.stack([[np.interp(rows, np.arange(16), c[:, k]) for k in range(12)]
                        for c in coarse], 0).transpose(0, 2, 1)             # (17, 64, 12)
    expected = np.stack([[np.interp(cols, np.arange(12), r) for r in m] for m in by_rows])
    got = SyntheticDetector(noise=noise).floor(u)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
