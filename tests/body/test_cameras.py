"""Tests of body/cameras.py: hand-computed cases, round trips, cv2/scipy oracles, numpy = torch."""
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from body.cameras import (DetectorCrop, box_from_keypoints, box_to_xyxy, cliff_bbox_condition,
                          crop_denormalize, crop_image, crop_matrix, crop_normalize,
                          default_focal, intrinsics, perspective_projection,
                          weak_perspective_to_translation, xyxy_to_box)


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (..., N, 2) by affine matrices (..., 2, 3)."""
    return points @ m[..., :2].swapaxes(-1, -2) + m[..., None, :, 2]


def random_boxes(rng: np.random.Generator, n: int):
    return rng.uniform(100, 500, size=(n, 2)), rng.uniform(0.5, 2.0, size=n)


def dot_image(x: int, y: int, shape=(480, 640)) -> np.ndarray:
    img = np.zeros(shape + (3,), np.float32)
    img[y, x] = 1.0
    return img


def brightest_pixel(img: np.ndarray) -> np.ndarray:
    row, col = np.unravel_index(img[..., 0].argmax(), img.shape[:2])
    return np.array([col, row], float)


# --- boxes ---------------------------------------------------------------------------------

def test_xyxy_to_box_by_hand():
    center, scale = xyxy_to_box(np.array([10.0, 20.0, 110.0, 60.0]))
    np.testing.assert_allclose(center, [60, 40])
    np.testing.assert_allclose(scale, 100 / 200 * 1.2)
    np.testing.assert_allclose(box_to_xyxy(np.array([100.0, 50.0]), np.array(1.0)),
                               [0, -50, 200, 150])


def test_xyxy_round_trip():
    center, scale = random_boxes(np.random.default_rng(0), 5)
    center2, scale2 = xyxy_to_box(box_to_xyxy(center, scale), rescale=1.0)
    np.testing.assert_allclose(center2, center)
    np.testing.assert_allclose(scale2, scale)


def test_box_from_keypoints_by_hand():
    kp = np.array([[[5.0, 10.0, 1.0], [45.0, 30.0, 0.3], [25.0, 90.0, 0.9]]])  # (1, 3, 3)
    center, scale = box_from_keypoints(kp)
    np.testing.assert_allclose(center, [[25, 50]])
    np.testing.assert_allclose(scale, [80 / 200 * 1.2])


# --- model crop ------------------------------------------------------------------------------

def test_crop_normalize_by_hand_and_round_trip():
    center, scale = np.array([100.0, 50.0]), np.array(1.0)
    pts = np.array([[0.0, -50.0], [200.0, 150.0], [150.0, 50.0]])
    np.testing.assert_allclose(crop_normalize(pts, center, scale), [[-1, -1], [1, 1], [0.5, 0]])
    rng = np.random.default_rng(1)
    centers, scales = random_boxes(rng, 4)
    pts = rng.uniform(0, 600, size=(4, 7, 2))
    back = crop_denormalize(crop_normalize(pts, centers, scales), centers, scales)
    np.testing.assert_allclose(back, pts)


def test_crop_matrix_matches_crop_normalize():
    rng = np.random.default_rng(2)
    centers, scales = random_boxes(rng, 4)
    pts = rng.uniform(0, 600, size=(4, 7, 2))
    mapped = apply_affine(crop_matrix(centers, scales), pts)
    np.testing.assert_allclose(mapped, (crop_normalize(pts, centers, scales) + 1) * 224 / 2)
    # the box's left/top edge goes to 0, its right/bottom edge to size
    m = crop_matrix(np.array([100.0, 50.0]), np.array(1.0), size=224)
    np.testing.assert_allclose(apply_affine(m, np.array([[0.0, -50.0], [200.0, 150.0]])),
                               [[0, 0], [224, 224]], atol=1e-9)


def test_crop_image_puts_dot_where_crop_matrix_says():
    center, scale, dot = np.array([300.0, 220.0]), np.array(1.3), (341, 187)
    crop = crop_image(dot_image(*dot), center, scale)
    assert crop.shape == (224, 224, 3)
    expected = apply_affine(crop_matrix(center, scale), np.array([dot], float))[0]
    assert np.abs(brightest_pixel(crop) - expected).max() <= 0.5


# --- detector crop ---------------------------------------------------------------------------

def test_detector_heatmap_corners_by_hand():
    crop = DetectorCrop(np.array([100.0, 50.0]), np.array(1.0))  # b = 200, field 150 × 200
    uv = np.array([[0.0, 0.0], [47.0, 63.0], [23.5, 31.5]])
    np.testing.assert_allclose(crop.heatmap_to_image(uv), [[25, -50], [175, 150], [100, 50]])
    ij = np.array([[0.0, 0.0], [191.0, 255.0]])
    np.testing.assert_allclose(crop.input_to_image(ij), [[25, -50], [175, 150]])
    # one heatmap step is S_w/47 wide and S/63 high
    np.testing.assert_allclose(crop.heatmap_to_image(np.array([[1.0, 1.0]])),
                               [[25 + 150 / 47, -50 + 200 / 63]])


def test_detector_round_trips_batched():
    rng = np.random.default_rng(3)
    crop = DetectorCrop(*random_boxes(rng, 4))
    uv = rng.uniform(0, 47, size=(4, 9, 2))
    np.testing.assert_allclose(crop.image_to_heatmap(crop.heatmap_to_image(uv)), uv)
    xy = rng.uniform(0, 600, size=(4, 9, 2))
    np.testing.assert_allclose(crop.input_to_image(crop.image_to_input(xy)), xy)
    # heatmap and input grids span the same field: heatmap (47, 63) is input (191, 255)
    corner = np.array([[47.0, 63.0]])
    np.testing.assert_allclose(crop.image_to_input(crop.heatmap_to_image(corner)),
                               np.broadcast_to([[191.0, 255.0]], (4, 1, 2)))


def test_detector_contains():
    crop = DetectorCrop(np.array([100.0, 50.0]), np.array(1.0))
    xy = np.array([[25.0, -50.0], [175.0, 150.0], [100.0, 50.0],
                   [24.9, 50.0], [175.1, 50.0], [100.0, -50.1], [100.0, 150.1]])
    assert crop.contains(xy).tolist() == [True] * 3 + [False] * 4


def test_grid_sizes_are_the_papers():
    assert DetectorCrop.INPUT_SHAPE == (256, 192) and DetectorCrop.HEATMAP_SHAPE == (64, 48)
    assert DetectorCrop.HEATMAP_CELLS == 3072


def test_heatmap_index_round_trip_over_every_cell():
    index = np.arange(3072)
    rows, cols = np.unravel_index(index, (64, 48))  # numpy's C order: the oracle of v·W + u
    uv = DetectorCrop.index_to_heatmap(index)
    assert uv.dtype == np.float64 and uv.shape == (3072, 2)
    np.testing.assert_array_equal(uv, np.stack([cols, rows], -1))
    back = DetectorCrop.heatmap_to_index(uv)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, index)
    as_torch = DetectorCrop.index_to_heatmap(torch.arange(3072))
    assert as_torch.dtype == torch.float32
    np.testing.assert_array_equal(as_torch.numpy(), uv)
    back_t = DetectorCrop.heatmap_to_index(as_torch)
    assert back_t.dtype == torch.int64 and torch.equal(back_t, torch.arange(3072))


def test_store_dtype_indices_decode_like_int64():
    index = np.array([[0, 47, 48, 3071]], np.uint16)  # samples/index is uint16 in the stores
    uv = DetectorCrop.index_to_heatmap(index)
    assert uv.dtype == np.float64 and uv.shape == (1, 4, 2)
    np.testing.assert_array_equal(uv[0], [[0, 0], [47, 0], [0, 1], [47, 63]])


def test_heatmap_to_index_rounds_to_the_nearest_cell_and_clips():
    uv = np.array([[1.4, 2.6], [0.5, 0.0], [1.5, 0.0], [-3.0, 70.0], [50.2, -1.0]])
    # (1, 3); half to even: 0 and 2; clipped to (0, 63) and (47, 0)
    np.testing.assert_array_equal(DetectorCrop.heatmap_to_index(uv),
                                  [3 * 48 + 1, 0, 2, 63 * 48, 47])
    np.testing.assert_array_equal(DetectorCrop.heatmap_to_index(torch.from_numpy(uv)).numpy(),
                                  [3 * 48 + 1, 0, 2, 63 * 48, 47])


def test_corner_cells_land_on_the_field_of_view_corners():
    crop = DetectorCrop(np.array([100.0, 50.0]), np.array(1.0))  # field 150 × 200 from (25, −50)
    index = np.array([0, 47, 63 * 48, 3071, 48 + 1])
    expected = [[25, -50], [175, -50], [25, 150], [175, 150], [25 + 150 / 47, -50 + 200 / 63]]
    xy = crop.index_to_image(index)
    assert xy.dtype == np.float64
    np.testing.assert_allclose(xy, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(crop.image_to_index(xy), index)
    # a point off a pixel centre goes to the nearest one
    nudged = np.array(expected) + [[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [0.4, -0.4]]
    np.testing.assert_array_equal(crop.image_to_index(nudged), index)


def test_index_to_image_torch_equals_numpy_for_float64_boxes():
    rng = np.random.default_rng(8)
    centers, scales = random_boxes(rng, 3)
    index = rng.integers(0, 3072, (3, 17 * 5))
    as_numpy = DetectorCrop(centers, scales).index_to_image(index)
    crop_t = DetectorCrop(torch.from_numpy(centers), torch.from_numpy(scales))
    as_torch = crop_t.index_to_image(torch.from_numpy(index))
    assert as_torch.dtype == torch.float64 and as_torch.shape == (3, 85, 2)
    np.testing.assert_array_equal(as_torch.numpy(), as_numpy)  # bit for bit
    back = crop_t.image_to_index(as_torch)
    assert back.dtype == torch.int64 and torch.equal(back, torch.from_numpy(index))


def test_input_matrix_matches_image_to_input():
    rng = np.random.default_rng(4)
    crop = DetectorCrop(*random_boxes(rng, 4))
    xy = rng.uniform(0, 600, size=(4, 9, 2))
    m = crop.input_matrix()
    assert m.shape == (4, 2, 3)
    np.testing.assert_allclose(apply_affine(m, xy), crop.image_to_input(xy))


@pytest.mark.parametrize("center,scale,dot", [((300.0, 220.0), 1.1, (310, 205)),
                                              ((420.0, 260.0), 0.6, (401, 300))])
def test_crop_puts_dot_where_image_to_input_says(center, scale, dot):
    crop = DetectorCrop(np.array(center), np.array(scale))
    patch = crop.crop(dot_image(*dot))
    assert patch.shape == (256, 192, 3)
    expected = crop.image_to_input(np.array([dot], float))[0]
    assert np.abs(brightest_pixel(patch) - expected).max() <= 0.5


def test_crop_equals_bilinear_sampling_at_input_to_image():
    y, x = np.mgrid[0:240, 0:320]
    img = (np.sin(x / 9.0) + np.cos(y / 13.0) + x / 320).astype(np.float32)
    crop = DetectorCrop(np.array([150.0, 110.0]), np.array(1.1))  # field reaches past the image
    patch = crop.crop(img)
    j, i = np.mgrid[0:256, 0:192]
    xy = crop.input_to_image(np.stack([i, j], -1).reshape(-1, 2).astype(float))
    expected = map_coordinates(img, [xy[:, 1], xy[:, 0]], order=1, cval=0.0).reshape(256, 192)
    inside = (xy[:, 0] <= 319) & (xy[:, 1] >= 0) & (xy[:, 1] <= 239)
    assert 0 < inside.mean() < 1
    inside = inside.reshape(256, 192)
    np.testing.assert_allclose(patch[inside], expected[inside], atol=2e-3)
    outside = ((xy[:, 0] > 320) | (xy[:, 1] < -1) | (xy[:, 1] > 240)).reshape(256, 192)
    assert (patch[outside] == 0).all()


def test_crop_rejects_batched_boxes():
    crop = DetectorCrop(np.zeros((2, 2)), np.ones(2))
    with pytest.raises(ValueError):
        crop.crop(np.zeros((10, 10, 3), np.float32))


# --- cameras ---------------------------------------------------------------------------------

def test_cliff_bbox_condition_and_focal_by_hand():
    assert default_focal(300.0, 400.0) == 500.0
    c = cliff_bbox_condition(np.array([400.0, 300.0]), np.array(1.5), 1000.0, 500.0, 1000.0)
    np.testing.assert_allclose(c, [-0.1, 0.05, 0.3])


def test_weak_perspective_to_translation_by_hand():
    t = weak_perspective_to_translation(np.array([0.8, 0.1, -0.2]), np.array([400.0, 300.0]),
                                        np.array(1.5), 1000.0, 500.0, 1000.0)
    sb = 0.8 * 300  # s·b
    np.testing.assert_allclose(t, [0.1 - 200 / sb, -0.2 + 100 / sb, 2000 / sb])


def test_translation_reproduces_weak_perspective_image():
    """Derivation: u = f·(X + t_x)/t_z + W/2 with f/t_z = s·b/2 gives, for X_z = 0,
    u = c_x + s·(X_x + tx)·b/2: the weak-perspective image in crop-normalised units s·(X + t)
    mapped back by crop_denormalize. The origin lands at c + s·(tx, ty)·b/2."""
    rng = np.random.default_rng(5)
    centers, scales = random_boxes(rng, 4)
    cam = np.column_stack([rng.uniform(0.5, 1.5, 4), rng.uniform(-0.3, 0.3, (4, 2))])
    img_w, img_h = np.array([640.0, 800.0, 1920.0, 500.0]), np.array([480.0, 600.0, 1080, 900])
    focal = default_focal(img_w, img_h)
    t = weak_perspective_to_translation(cam, centers, scales, img_w, img_h, focal)
    points = np.concatenate([rng.normal(0, 0.5, (4, 6, 2)), np.zeros((4, 6, 1))], -1)
    points[:, 0] = 0  # the origin
    image = perspective_projection(points + t[:, None], intrinsics(focal, img_w, img_h))
    weak = crop_denormalize(cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:]),
                            centers, scales)
    np.testing.assert_allclose(image, weak)
    origin_image = centers + cam[:, :1] * cam[:, 1:] * (200 * scales[:, None]) / 2
    np.testing.assert_allclose(image[:, 0], origin_image)


def test_intrinsics_and_projection_by_hand():
    K = intrinsics(1000.0, 640.0, 480.0)
    np.testing.assert_allclose(K, [[1000, 0, 320], [0, 1000, 240], [0, 0, 1]])
    pts = np.array([[0.1, -0.2, 2.0], [0.0, 0.0, 5.0]])
    np.testing.assert_allclose(perspective_projection(pts, K), [[370, 140], [320, 240]])
    Ks = intrinsics(np.array([500.0, 800.0]), 640.0, np.array([480.0, 360.0]))
    assert Ks.shape == (2, 3, 3)
    np.testing.assert_allclose(Ks[1], [[800, 0, 320], [0, 800, 180], [0, 0, 1]])


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(6)
    centers, scales = random_boxes(rng, 3)
    pts = rng.uniform(0, 600, size=(3, 5, 2))
    cam = np.column_stack([rng.uniform(0.5, 1.5, 3), rng.uniform(-0.3, 0.3, (3, 2))])
    pts3d = np.concatenate([rng.normal(0, 1, (3, 5, 2)), rng.uniform(3, 6, (3, 5, 1))], -1)

    def run(c, s, p, k, p3):
        det = DetectorCrop(c, s)
        K = intrinsics(1000.0 + 0 * s, 640.0, 480.0)
        return [box_to_xyxy(c, s), *xyxy_to_box(box_to_xyxy(c, s)), *box_from_keypoints(p),
                crop_normalize(p, c, s), crop_denormalize(p, c, s),
                det.heatmap_to_image(p), det.image_to_heatmap(p), det.input_to_image(p),
                det.image_to_input(p), det.contains(p), cliff_bbox_condition(c, s, 640, 480, 900.0),
                weak_perspective_to_translation(k, c, s, 640.0, 480.0, 900.0), K,
                perspective_projection(p3, K)]

    as_numpy = run(centers, scales, pts, cam, pts3d)
    as_torch = run(*(torch.from_numpy(a) for a in (centers, scales, pts, cam, pts3d)))
    for a, b in zip(as_numpy, as_torch, strict=True):
        assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12)
