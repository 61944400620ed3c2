"""Tests of eval/metrics.py against hand cases and an independent scipy Procrustes oracle."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt
from scipy.spatial.transform import Rotation
from scipy.stats import wasserstein_distance

from body.joints import H36M_TO_LSP14
from eval.metrics import (heatmap_wasserstein, keypoint_2d_error, min_of_n, min_of_n_curve,
                          mpjpe, pa_mpjpe, perc_in_min_dist, procrustes_align, protocol_joints,
                          pve, spread_3d)


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

def test_keypoint_2d_error_counts_visible_joints_only():
    gt = torch.zeros(2, 17, 2)
    gt[0, 5:] = torch.nan  # invisible ground truth may be NaN
    pred = torch.zeros(2, 3, 17, 2)
    pred[0, :, 0] = torch.tensor([3.0, 4.0])  # 5 px
    pred[0, :, 1] = torch.tensor([6.0, 8.0])  # 10 px
    pred[0, 1, 2] = torch.tensor([0.0, 9.0])  # hypothesis 1: 9 px
    pred[0, :, 10] = 1000.0                   # invisible: ignored
    visible = torch.zeros(2, 17, dtype=torch.bool)
    visible[0, :3] = True
    err = keypoint_2d_error(pred, gt, visible)
    assert err.shape == (2, 3)
    assert torch.allclose(err[0], torch.tensor([5.0, 8.0, 5.0]))
    assert torch.isnan(err[1]).all()  # no visible joint


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

def square_field(size=256, lo=100, hi=140):
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True
    return distance_transform_edt(~mask).astype(np.float32)


def test_perc_in_min_dist_square_mask():
    field = square_field()
    pts = torch.tensor([[120.0, 120.0],    # inside: 0
                        [139.4, 100.2],    # rounds to (139, 100), inside: 0
                        [142.0, 120.0],    # 3 px right of the last column 139
                        [120.0, 96.6],     # rounds to row 97: 3 px above
                        [130.0, 120.0]])   # visible joint below: never counted
    points = torch.zeros(2, 2, 5, 2)
    points[:] = pts
    points[1, 1, 0] = torch.tensor([142.0, 142.0])  # 3√2 from the corner (139, 139)
    invisible = torch.tensor([[True, True, True, True, False], [True, False, False, False, False]])
    perc, mind = perc_in_min_dist(points, [field, field], invisible)
    # image 0: 2 × (0, 0, 3, 3); image 1: (0, 3√2)
    dists = [0, 0, 3, 3] * 2 + [0, 3 * math.sqrt(2)]
    assert perc == pytest.approx(100.0 * 5 / 10)
    assert mind == pytest.approx(sum(dists) / 10, rel=1e-6)
    # tensor fields, clipping into the field, the threshold and the empty selection
    far = torch.full((1, 1, 1, 2), -50.0)  # clipped to pixel (0, 0): distance to (100, 100)
    perc, mind = perc_in_min_dist(far, torch.from_numpy(field)[None], torch.ones(1, 1, dtype=bool))
    assert perc == 0.0 and mind == pytest.approx(100 * math.sqrt(2), rel=1e-6)
    perc, _ = perc_in_min_dist(points, [field, field], invisible, outside=3.0)
    assert perc == pytest.approx(90.0)
    perc, mind = perc_in_min_dist(points, [field, field], torch.zeros(2, 5, dtype=torch.bool))
    assert math.isnan(perc) and math.isnan(mind)


def test_perc_in_min_dist_rejects_empty_mask():
    field = np.full((8, 8), np.inf, np.float32)
    with pytest.raises(ValueError):
        perc_in_min_dist(torch.ones(1, 2, 1, 2), [field], torch.ones(1, 1, dtype=torch.bool))


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
