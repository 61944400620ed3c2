"""Tests of preprocess/mask_distance.py against a brute-force float64 oracle."""
import cv2
import numpy as np
import pytest

from preprocess.mask_distance import DistanceField


def brute_force(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """min over person pixels q of ‖round(p) − q‖ (halves up), float64; inf for an empty mask."""
    q = np.argwhere(mask)[:, ::-1].astype(np.float64)  # (M, 2) as (x, y)
    if len(q) == 0:
        return np.full(xy.shape[:-1], np.inf)
    p = np.floor(xy + 0.5)
    return np.sqrt(((p[..., None, :] - q) ** 2).sum(-1)).min(-1)


def blobs(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """A mask of `count` random discs."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(count):
        cx, cy, r = rng.uniform(0, shape[1]), rng.uniform(0, shape[0]), rng.uniform(1, 8)
        mask |= (x - cx) ** 2 + (y - cy) ** 2 <= r ** 2
    return mask


def masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    single = np.zeros((30, 40), bool)
    single[12, 17] = True
    border = np.zeros((30, 40), bool)
    border[0, 5:9] = border[29, 39] = border[10:14, 0] = True
    return {"blobs": blobs(rng, (36, 52), 4), "many_blobs": blobs(rng, (40, 30), 12),
            "single": single, "border": border, "noise": rng.random((25, 33)) < 0.02,
            "full": np.ones((10, 12), bool)}


@pytest.mark.parametrize("name", list(masks()))
def test_matches_brute_force(name):
    mask = masks()[name]
    h, w = mask.shape
    rng = np.random.default_rng(1)
    bounds = (-15.3, -9.8, w + 12.6, h + 20.1)
    xy = rng.uniform(bounds[:2], bounds[2:], size=(3, 400, 2))
    field = DistanceField.from_mask(mask, bounds)
    dist = field.at(xy)
    assert dist.shape == (3, 400) and dist.dtype == np.float32
    np.testing.assert_allclose(dist, brute_force(mask, xy), rtol=1e-5)
    corners = np.array([[bounds[0], bounds[1]], [bounds[2], bounds[3]]])
    np.testing.assert_allclose(field.at(corners), brute_force(mask, corners), rtol=1e-5)


def test_whole_field_matches_brute_force_without_bounds():
    mask = blobs(np.random.default_rng(2), (24, 31), 3)
    y, x = np.mgrid[:24, :31]
    xy = np.stack([x, y], -1).astype(np.float64)
    np.testing.assert_allclose(DistanceField.from_mask(mask).at(xy), brute_force(mask, xy),
                               rtol=1e-5)


def test_rounding_to_the_nearest_pixel():
    mask = np.zeros((10, 10), bool)
    mask[5, 5] = True
    field = DistanceField.from_mask(mask)
    xy = np.array([[5.49, 4.51], [5.5, 5.0], [4.5, 5.0], [3.2, 5.1]])
    np.testing.assert_allclose(field.at(xy), [0, 1, 0, 2])


def test_points_on_mask_pixels_are_at_zero():
    mask = blobs(np.random.default_rng(3), (30, 30), 3)
    q = np.argwhere(mask)[:, ::-1] + np.random.default_rng(4).uniform(-0.49, 0.49, (mask.sum(), 2))
    assert (DistanceField.from_mask(mask).at(q) == 0).all()


def test_empty_mask_is_infinitely_far():
    field = DistanceField.from_mask(np.zeros((20, 30), bool), (-5.0, -5.0, 40.0, 25.0))
    assert np.isposinf(field.at(np.array([[0.0, 0.0], [-5.0, 24.9], [39.0, 10.0]]))).all()


@pytest.mark.parametrize("point", [[-5.6, 3.0], [3.0, -5.6], [40.5, 3.0], [3.0, 25.5],
                                   [np.nan, 3.0], [np.inf, 3.0]])
@pytest.mark.parametrize("empty", [False, True])
def test_points_outside_the_covered_region_raise(point, empty):
    mask = np.zeros((20, 30), bool)
    mask[10, 10] = not empty
    field = DistanceField.from_mask(mask, (-5.0, -5.0, 40.0, 25.0))
    field.at(np.array([[-5.4, -5.4], [40.4, 25.4]]))  # the rounded edges are covered
    with pytest.raises(ValueError):
        field.at(np.array([[1.0, 1.0], point]))


def test_bounds_inside_the_image_still_cover_the_image():
    mask = np.zeros((20, 30), bool)
    mask[2, 3] = True
    field = DistanceField.from_mask(mask, (10.0, 10.0, 15.0, 15.0))
    assert field.field.shape == (20, 30) and field.origin == (0, 0)
    np.testing.assert_allclose(field.at(np.array([12.0, 12.0])), np.hypot(9, 10), rtol=1e-6)


def test_invalid_bounds_raise():
    with pytest.raises(ValueError):
        DistanceField.from_mask(np.ones((5, 5), bool), (10.0, 0.0, 5.0, 5.0))


@pytest.mark.parametrize("threads", [1, 2])
def test_field_is_the_rounded_exact_distance_bit_for_bit(threads):
    """Every value is float32(√(integer squared distance)) for any OpenCV thread count (with one
    thread OpenCV used Intel IPP, whose AVX-512 code is an ulp off) and any padding."""
    rng = np.random.default_rng(3)
    mask = rng.random((240, 320)) < 0.0005
    mask[100:130, 40:52] = True
    yy, xx = np.mgrid[-40:280, -60:380]
    q = np.argwhere(mask)
    d2 = np.min([(yy - y) ** 2 + (xx - x) ** 2 for y, x in q], 0)
    expected = np.sqrt(d2.astype(np.float64)).astype(np.float32)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        wide = DistanceField.from_mask(mask, (-60, -40, 379, 279))
        tight = DistanceField.from_mask(mask, (-3, -2, 330, 250))
    finally:
        cv2.setNumThreads(previous)
    xy = np.stack([xx, yy], -1).astype(np.float64)
    got = wide.at(xy)
    assert got.tobytes() == expected.tobytes(), f"{(got != expected).sum()} values differ"
    inner = (xx >= -3) & (xx <= 330) & (yy >= -2) & (yy <= 250)
    assert tight.at(xy[inner]).tobytes() == expected[inner].tobytes()
