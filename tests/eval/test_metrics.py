"""Tests of eval/metrics.py against hand cases and an independent scipy Procrustes oracle."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import wasserstein_distance

from body.joints import H36M_TO_LSP14
from eval.metrics import (INSIDE_MASK_PX, coco17_of_smpl_mesh, ground_truth_joints,
                          heatmap_wasserstein, keypoint_2d_error, mask_distance, min_of_n,
                          min_of_n_curve, mpjpe, pa_mpjpe, perc_in_min_dist, procrustes_align,
                          protocol_joints, pve, spread_3d)


# ---------------------------------------------------------------- Procrustes

def oracle_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """scipy's proper-rotation Kabsch, scale and translation by hand (float64)."""
    mp, mg = pred.mean(0), gt.mean(0)
    x, y = pred - mp, gt - mg
    rot, _ = Rotation.align_vectors(y, x)  # rotation mapping x onto y, det +1
    xr = rot.apply(x)
    scale = (xr * y).sum() / (x * x).sum()
    return scale * xr + mg


def test_procrustes_matches_scipy_oracle():
    rng = np.random.default_rng(1)
    pred, gt = rng.normal(size=(2, 5, 14, 3)), rng.normal(size=(2, 5, 14, 3))
    got = procrustes_align(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    for i in range(2):
        for k in range(5):
            np.testing.assert_allclose(got[i, k], oracle_align(pred[i, k], gt[i, k]), atol=1e-8)
    expected = np.array([[np.linalg.norm(oracle_align(p, g) - g, axis=-1).mean() * 1000
                          for p, g in zip(pr, gr)] for pr, gr in zip(pred, gt)])
    np.testing.assert_allclose(pa_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy(),
                               expected, atol=1e-8)


def test_similarity_transform_has_zero_pa_mpjpe():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(4, 24, 3))
    rot = Rotation.random(4, random_state=3).as_matrix()
    pred = 0.7 * np.einsum("bij,bvj->bvi", rot, gt) + np.array([0.3, -1.0, 2.0])
    pred, gt = torch.from_numpy(pred), torch.from_numpy(gt)
    assert torch.allclose(pa_mpjpe(pred, gt), torch.zeros(4, dtype=torch.float64), atol=1e-8)
    assert (mpjpe(pred, gt) > 100).all()


def test_reflection_is_not_allowed():
    rng = np.random.default_rng(4)
    gt = rng.normal(size=(17, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    got = procrustes_align(torch.from_numpy(mirrored), torch.from_numpy(gt)).numpy()
    np.testing.assert_allclose(got, oracle_align(mirrored, gt), atol=1e-8)
    assert pa_mpjpe(torch.from_numpy(mirrored), torch.from_numpy(gt)) > 1.0
    # the map pred → aligned is a proper similarity: its linear part has positive determinant
    x, y = mirrored - mirrored.mean(0), got - got.mean(0)
    linear = np.linalg.lstsq(x, y, rcond=None)[0]
    assert np.linalg.det(linear) > 0


def test_procrustes_float32_and_degenerate_input():
    gt = torch.randn(3, 14, 3)
    pred = gt @ torch.linalg.qr(torch.randn(3, 3)).Q.T
    assert pa_mpjpe(pred, gt).dtype == torch.float32
    out = procrustes_align(torch.zeros(14, 3), gt[0])  # all points equal: aligns to gt's mean
    assert torch.isfinite(out).all()
    assert torch.allclose(out, gt[0].mean(0).expand(14, 3), atol=1e-6)


# ---------------------------------------------------------------- MPJPE, PVE

def test_mpjpe_and_pve_hand_cases():
    gt = torch.randn(2, 3, 14, 3, dtype=torch.float64)
    pred = gt + torch.tensor([0.003, 0.004, 0.0], dtype=torch.float64)
    assert torch.allclose(mpjpe(pred, gt), torch.full((2, 3), 5.0, dtype=torch.float64))
    verts = torch.zeros(1, 4, 3)
    off = torch.tensor([[[0.001, 0, 0], [0, 0.002, 0], [0, 0, 0.003], [0, 0, 0]]])
    assert torch.allclose(pve(verts + off, verts), torch.tensor([1.5]))


# ---------------------------------------------------------------- protocol joints

def test_protocol_joints_emdb_and_3dpw():
    verts = torch.randn(2, 5, 6890, 3, dtype=torch.float64)
    reg24 = torch.rand(24, 6890, dtype=torch.float32)
    joints, pelvis = protocol_joints(verts, reg24, "emdb")
    full = torch.einsum("jv,bnvc->bnjc", reg24.double(), verts)
    assert joints.shape == (2, 5, 24, 3) and pelvis.shape == (2, 5, 1, 3)
    assert torch.allclose(joints, full)
    assert torch.allclose(pelvis[..., 0, :], (full[..., 1, :] + full[..., 2, :]) / 2)

    reg17 = torch.rand(17, 6890, dtype=torch.float64)
    joints, pelvis = protocol_joints(verts, reg17, "3dpw")
    full = torch.einsum("jv,bnvc->bnjc", reg17, verts)
    assert joints.shape == (2, 5, 14, 3)
    assert torch.allclose(joints, full[..., list(H36M_TO_LSP14), :])
    assert torch.allclose(pelvis[..., 0, :], full[..., 0, :])

    with pytest.raises(ValueError):
        protocol_joints(verts, reg17, "emdb")
    with pytest.raises(ValueError):
        protocol_joints(verts, reg24, "h36m")


def test_emdb_ground_truth_is_the_fk_joints_not_a_regressor_on_the_vertices():
    """EMDB (official code, reference release): the gendered SMPL's own 24 FK joints, pelvis =
    mean of the hips of those joints; the vertices and the regressor play no part."""
    verts = torch.zeros(2, 6890, 3, dtype=torch.float64)  # a regressor on these gives 0
    reg24 = torch.rand(24, 6890, dtype=torch.float64)
    fk = torch.arange(2 * 24 * 3, dtype=torch.float64).reshape(2, 24, 3)
    joints, pelvis = ground_truth_joints(verts, fk, reg24, "emdb")
    assert torch.equal(joints, fk)
    np.testing.assert_allclose(pelvis[0, 0].numpy(), [4.5, 5.5, 6.5])  # ((3,4,5) + (6,7,8)) / 2
    old, _ = protocol_joints(verts, reg24.float(), "emdb")  # today's rule: all zeros
    assert not torch.allclose(old, joints)
    reg17 = torch.rand(17, 6890, dtype=torch.float64)
    v = torch.randn(2, 6890, 3, dtype=torch.float64)
    for a, b in zip(ground_truth_joints(v, fk, reg17, "3dpw"), protocol_joints(v, reg17, "3dpw")):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        ground_truth_joints(verts, fk[:, :22], reg24, "emdb")


def test_coco17_of_the_smpl_mesh_regressor_joints_and_face_vertices():
    """COCO-17 as the reference release projects it: shoulders … ankles from the SMPL regressor
    on the (converted) mesh, nose/eyes/ears from the smplx vertex ids."""
    verts = torch.randn(3, 2, 6890, 3, dtype=torch.float64)
    reg = torch.zeros(24, 6890, dtype=torch.float64)
    reg[16, 100] = reg[16, 200] = 0.5  # left shoulder = mean of vertices 100 and 200
    reg[8, 7] = 1.0  # right ankle = vertex 7
    ids = torch.arange(1000, 1021)  # nose 1000, r-eye 1001, l-eye 1002, r-ear 1003, l-ear 1004
    coco = coco17_of_smpl_mesh(verts, reg, ids)
    assert coco.shape == (3, 2, 17, 3)
    torch.testing.assert_close(coco[..., 0, :], verts[..., 1000, :])
    torch.testing.assert_close(coco[..., 1, :], verts[..., 1002, :])  # COCO 1 = left eye
    torch.testing.assert_close(coco[..., 4, :], verts[..., 1003, :])  # COCO 4 = right ear
    torch.testing.assert_close(coco[..., 5, :], (verts[..., 100, :] + verts[..., 200, :]) / 2)
    torch.testing.assert_close(coco[..., 16, :], verts[..., 7, :])


# ---------------------------------------------------------------- best of N

def test_min_of_n_and_curve():
    errors = torch.rand(50, 100, dtype=torch.float64) * 100
    assert torch.equal(min_of_n(errors), errors.min(1).values)
    ns = [1, 2, 5, 10, 50, 100]
    curve = min_of_n_curve(errors, ns)
    assert list(curve) == ns
    values = [curve[n] for n in ns]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert curve[1] == pytest.approx(float(errors[:, 0].mean()))
    assert curve[100] == pytest.approx(float(min_of_n(errors).mean()))
    assert curve[5] == pytest.approx(float(errors[:, :5].min(1).values.mean()))
    with pytest.raises(ValueError):
        min_of_n_curve(errors, [0])
    with pytest.raises(ValueError):
        min_of_n_curve(errors, [101])


# ---------------------------------------------------------------- consistency, diversity

def test_keypoint_2d_error_pools_all_visible_triples():
    """Pooled over (image, hypothesis, joint) triples as the reference release: an image with
    3 visible joints weighs 3× one with 1 (a mean of per-image means would not)."""
    gt = torch.zeros(3, 17, 2)
    gt[0, 5:] = torch.nan  # invisible ground truth may be NaN
    pred = torch.zeros(3, 2, 17, 2)
    pred[0, :, 0] = torch.tensor([3.0, 4.0])   # 5 px
    pred[0, :, 1] = torch.tensor([6.0, 8.0])   # 10 px
    pred[0, 1, 2] = torch.tensor([0.0, 9.0])   # hypothesis 1: 9 px
    pred[0, :, 10] = 1000.0                    # invisible: ignored
    pred[1, :, 4] = torch.tensor([0.0, 30.0])  # image 1: one visible joint, 30 px
    visible = torch.zeros(3, 17, dtype=torch.bool)
    visible[0, :3] = True
    visible[1, 4] = True                       # image 2: nothing visible
    mean, count = keypoint_2d_error(pred, gt, visible)
    # image 0: (5 + 10 + 0) + (5 + 10 + 9), image 1: 30 + 30 → 99 / 8 triples
    assert count == 8 and float(mean) == pytest.approx(99 / 8)
    per_image_first = (15 / 3 + 24 / 3) / 2 / 2 + 30 / 2  # the old mean of per-image means
    assert float(mean) != pytest.approx(per_image_first)
    mean, count = keypoint_2d_error(pred[:, :1], gt, visible)
    assert count == 4 and float(mean) == pytest.approx(45 / 4)
    mean, count = keypoint_2d_error(pred, gt, torch.zeros(3, 17, dtype=torch.bool))
    assert count == 0 and math.isnan(float(mean))


def test_spread_3d():
    base = torch.randn(3, 1, 14, 3, dtype=torch.float64)
    mask = torch.ones(3, 14, dtype=torch.bool)
    assert spread_3d(base.expand(3, 100, 14, 3), mask) == pytest.approx(0.0, abs=1e-9)
    d = torch.tensor([0.010, 0.0, 0.0], dtype=torch.float64)
    two = torch.cat([base + d, base - d], 1)
    assert spread_3d(two, mask) == pytest.approx(10.0)
    # only selected pairs count: one joint with spread 30 mm, the others 10 mm
    two[:, :, 0] = base[:, :, 0] + torch.stack([3 * d, -3 * d])
    sel = torch.zeros(3, 14, dtype=torch.bool)
    sel[:, 0] = True
    assert spread_3d(two, sel) == pytest.approx(30.0)
    sel[0, 1] = True
    assert spread_3d(two, sel) == pytest.approx((3 * 30 + 10) / 4)


# ---------------------------------------------------------------- plausibility

def brute_distance(points, mask):
    """min over all mask pixel centres (c, r) of the distance to each point (the oracle)."""
    centres = np.argwhere(mask)[:, ::-1].astype(float)
    return np.linalg.norm(points[:, None] - centres[None], axis=-1).min(1)


def test_mask_distance_is_exact_from_the_sub_pixel_point():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(12, 9)) < 0.15
    mask[3:6, 2:4] = True
    points = rng.uniform(-20, 30, size=(500, 2))  # many outside the raster
    np.testing.assert_allclose(mask_distance(points, mask), brute_distance(points, mask),
                               rtol=1e-12)
    assert np.isinf(mask_distance(points[:2], np.zeros((4, 4), bool))).all()


def square_mask(size=256, lo=100, hi=140):
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True  # pixel centres 100 … 139 in x and y
    return mask


def test_perc_in_min_dist_square_mask():
    mask = square_mask()
    pts = torch.tensor([[120.0, 120.0],    # on a centre: 0
                        [139.6, 100.2],    # 0.63 from centre (139, 100): inside, counts 0
                        [142.4, 120.0],    # 3.4 px right of the last column 139 (rounding: 3)
                        [120.0, 96.6],     # 3.4 px above row 100 (rounding: 3)
                        [130.0, 120.0]],   # visible joint: never counted
                       dtype=torch.float64)
    points = torch.zeros(2, 2, 5, 2, dtype=torch.float64)
    points[:] = pts
    points[1, 1, 0] = torch.tensor([142.0, 142.0], dtype=torch.float64)  # 3√2 from (139, 139)
    selected = torch.tensor([[True, True, True, True, False], [True, False, False, False, False]])
    perc, mind, n = perc_in_min_dist(points, np.stack([mask, mask]), selected)
    dists = [0, 0, 3.4, 3.4] * 2 + [0, 3 * math.sqrt(2)]
    assert n == 10 and perc == pytest.approx(100.0 * 5 / 10)
    assert mind == pytest.approx(sum(dists) / 10, rel=1e-9)
    perc, mind, n = perc_in_min_dist(points, np.stack([mask, mask]),
                                     torch.zeros(2, 5, dtype=torch.bool))
    assert math.isnan(perc) and math.isnan(mind) and n == 0


def test_a_point_outside_the_crop_keeps_its_true_distance():
    """The old rule read the clamped border pixel: a point 80 px left of a mask that touches the
    crop's left edge counted as inside with distance 0."""
    mask = np.zeros((256, 256), bool)
    mask[100:140, 0:40] = True
    points = torch.tensor([[[[-80.0, 120.0]], [[-0.5, 120.0]]]])  # (1, 2, 1, 2)
    perc, mind, n = perc_in_min_dist(points, mask[None], torch.ones(1, 1, dtype=torch.bool))
    assert n == 2 and perc == pytest.approx(50.0)  # -0.5 is 0.5 from centre (0, 120): inside
    assert mind == pytest.approx(80.0 / 2)


def test_inside_is_within_0_71_px_of_a_mask_pixel_centre():
    """Exact sub-pixel distance, not the pixel floor(p + 0.5): (10.55, 10) rounds to the empty
    pixel (11, 10) (old: 1 px, outside) but is 0.55 px from the mask centre (10, 10)."""
    mask = np.zeros((32, 32), bool)
    mask[10, 10] = True
    pts = torch.tensor([[10.55, 10.0], [10.45, 10.45], [10.5, 10.52], [10.0, 12.0]],
                       dtype=torch.float64)
    perc, mind, n = perc_in_min_dist(pts[None, :, None], mask[None],
                                     torch.ones(1, 1, dtype=torch.bool))
    # distances 0.55, 0.636 (inside: 0), 0.721 (outside, kept), 2
    far = math.hypot(0.5, 0.52)
    assert far > INSIDE_MASK_PX and n == 4
    assert perc == pytest.approx(50.0) and mind == pytest.approx((far + 2.0) / 4)


def test_perc_in_min_dist_rejects_an_empty_mask():
    with pytest.raises(ValueError, match="empty person mask"):
        perc_in_min_dist(torch.ones(1, 2, 1, 2), np.zeros((1, 8, 8), bool),
                         torch.ones(1, 1, dtype=torch.bool))


# ---------------------------------------------------------------- heatmap distribution distance

def test_heatmap_wasserstein_matches_scipy_on_a_line():
    """Points on a horizontal line: the 2D W1 of equal-size sets is scipy's 1D distance."""
    rng = np.random.default_rng(3)
    n = 12
    pts = np.zeros((2, n, 3, 2))
    hm = np.zeros((2, 3, n, 2))
    pts[..., 0] = rng.normal(size=(2, n, 3)) * 5
    hm[..., 0] = rng.normal(size=(2, 3, n)) * 5 + 2
    pts[..., 1] = hm[..., 1] = 7.0
    joints = torch.tensor([[True, False, True], [False, True, False]])
    got = heatmap_wasserstein(torch.from_numpy(pts), torch.from_numpy(hm), joints,
                              np.random.default_rng(0))
    expected = [wasserstein_distance(pts[b, :, j, 0], hm[b, j, :, 0])
                for b, j in ((0, 0), (0, 2), (1, 1))]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_heatmap_wasserstein_shift_and_subsampling():
    rng = np.random.default_rng(4)
    hm = torch.from_numpy(rng.normal(size=(1, 1, 40, 2)))
    same = hm[:, :, :40].permute(0, 2, 1, 3)  # N = M: the matching is exact
    shifted = same + torch.tensor([3.0, 4.0], dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.bool)
    assert heatmap_wasserstein(same, hm, one, rng).item() == pytest.approx(0, abs=1e-12)
    assert heatmap_wasserstein(shifted, hm, one, rng).item() == pytest.approx(5.0, abs=1e-9)
    assert heatmap_wasserstein(same[:, :10], hm, one, rng).item() > 0  # 10 of the 40 drawn
    with pytest.raises(ValueError, match="at least as many heatmap samples"):
        heatmap_wasserstein(same, hm[:, :, :5], one, rng)
