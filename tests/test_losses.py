"""Tests of train/losses.py against hand computations and loop-based float64 references."""
import math
import time

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from body.joints import COCO17_HIGHLY_ARTICULATED
from body.pixels import near_mask
from body.rotations import matrix_to_rot6d
from core.config import load_config
from train.losses import (LOSS_NAMES, betas_loss, camera_loss, imq_kernel, keypoints_2d_loss,
                          keypoints_2d_samples_loss, mask_loss, mmd_loss, mmd_targets, nll_loss,
                          orth_loss, supervised_2d_joints, total_loss)

SCALES = (0.05, 0.20, 0.90)


# ---------------------------------------------------------------- kernel and MMD

def phi(p, q, scales=SCALES):
    """Paper Eq. 8 for one pair of points, in plain Python."""
    d2 = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2
    return sum(a * a / (a * a + d2) for a in scales)


def mmd_reference(pred, target, weight, unbiased):
    """Paper Eq. 4 by explicit loops over images, joints and sample pairs; the mean of w · MMD²
    over all (image, joint) pairs."""
    pred, target, weight = pred.tolist(), target.tolist(), weight.tolist()
    total = pairs = 0.0
    for b in range(len(pred)):
        for k in range(len(pred[b])):
            x, y = pred[b][k], target[b][k]
            n, m = len(x), len(y)
            if unbiased:
                xx = sum(phi(x[i], x[j]) for i in range(n) for j in range(n) if i != j)
                yy = sum(phi(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
                xx, yy = xx / (n * (n - 1)), yy / (m * (m - 1))
            else:
                xx = sum(phi(x[i], x[j]) for i in range(n) for j in range(n)) / n**2
                yy = sum(phi(y[i], y[j]) for i in range(m) for j in range(m)) / m**2
            xy = sum(phi(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
            total += weight[b][k] * (xx + yy - 2 * xy)
            pairs += 1
    return total / pairs


def test_imq_kernel_by_hand():
    a = torch.tensor([[0.0, 0.0], [0.1, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.3, 0.4]], dtype=torch.float64)
    k = imq_kernel(a, b)
    assert k.shape == (2, 1)
    expected0 = 0.0025 / (0.0025 + 0.25) + 0.04 / (0.04 + 0.25) + 0.81 / (0.81 + 0.25)
    d2 = 0.2**2 + 0.4**2
    expected1 = 0.0025 / (0.0025 + d2) + 0.04 / (0.04 + d2) + 0.81 / (0.81 + d2)
    torch.testing.assert_close(k[:, 0], torch.tensor([expected0, expected1], dtype=torch.float64))
    # coincident points: one per scale; other scales; leading dimensions broadcast
    assert imq_kernel(a, a)[0, 0].item() == pytest.approx(3.0)
    assert imq_kernel(a, b, scales=(1.0,))[0, 0].item() == pytest.approx(1 / 1.25)
    assert imq_kernel(torch.rand(4, 3, 5, 2), torch.rand(3, 7, 2)).shape == (4, 3, 5, 7)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_double_loop(unbiased):
    g = torch.Generator().manual_seed(3)
    pred = torch.rand(3, 17, 6, 2, generator=g, dtype=torch.float64) * 2 - 1
    target = torch.rand(3, 17, 5, 2, generator=g, dtype=torch.float64) * 0.6 - 0.3
    weight = torch.rand(3, 17, generator=g, dtype=torch.float64)
    weight[weight < 0.3] = 0
    value = mmd_loss(pred, target, weight, SCALES, unbiased=unbiased)
    assert value.shape == ()
    assert value.item() == pytest.approx(mmd_reference(pred, target, weight, unbiased), rel=1e-10)


def phi_d2(d2, scales=SCALES):
    return sum(a * a / (a * a + d2) for a in scales)


def test_mmd_is_the_mean_over_all_image_joint_pairs():
    """By hand: one joint of 17 has pred {(0, 0)} × 2 against target {(0.3, 0.4)} × 2
    (d² = 0.25), MMD² = 3 + 3 − 2φ(0.25) under both estimators; the other 16 pairs are 0, 8 of
    them with weight 0. Reference release: the mean over the 17 pairs (the old Σw·MMD/Σw gave
    the same value divided by 9)."""
    pred = torch.zeros(1, 17, 2, 2, dtype=torch.float64)
    target = torch.zeros(1, 17, 2, 2, dtype=torch.float64)
    target[0, 3] = torch.tensor([0.3, 0.4], dtype=torch.float64)
    weight = torch.ones(1, 17, dtype=torch.float64)
    weight[0, 8:] = 0
    expected = (6 - 2 * phi_d2(0.25)) / 17
    for unbiased in (True, False):
        value = mmd_loss(pred, target, weight, unbiased=unbiased)
        assert value.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mmd_loss(pred[:, :, :1], target, weight)


def test_mmd_identical_sets_biased_is_zero_and_grows_with_separation():
    pts = torch.rand(2, 17, 25, 2) * 0.4
    weight = torch.ones(2, 17)
    assert mmd_loss(pts, pts.clone(), weight, unbiased=False).abs().item() < 1e-6
    values = [mmd_loss(pts + shift, pts, weight, unbiased=flag).item()
              for flag in (True, False) for shift in (0.0, 0.05, 0.2, 0.6)]
    for per_estimator in (values[:4], values[4:]):
        assert all(a < b for a, b in zip(per_estimator, per_estimator[1:]))


def test_mmd_ignores_nan_targets_of_zero_weight_joints_and_has_gradient():
    pred = (torch.rand(2, 17, 5, 2) * 2 - 1).requires_grad_()
    target = torch.rand(2, 17, 5, 2)
    weight = torch.ones(2, 17)
    target[1, 4] = float("nan")
    weight[1, 4] = 0
    value = mmd_loss(pred, target, weight)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(pred.grad).all()
    assert pred.grad[1, 4].abs().max() == 0 and pred.grad.abs().max() > 0


# ---------------------------------------------------------------- MMD targets

ARTICULATED = set(COCO17_HIGHLY_ARTICULATED)
# (joint, max_conf, GT in the detector's field of view, GT in the augmented crop,
#  expected target is the heatmap samples, expected weight)
TARGET_CASES = [
    (9, 0.40, True, True, True, 1.0),      # articulated, invisible, in view: samples, penalised
    (8, 0.30, False, True, False, 1.0),    # articulated, uncertain, outside the field of view:
                                           # GT, still penalised (old rule: weight 0)
    (10, 0.90, True, True, False, 1.0),    # confident: GT repeated
    (7, 0.70, True, True, False, 1.0),     # max_conf < 0.7 is strict
    (13, 0.15, True, True, False, 1.0),    # min_conf boundary: 0.15 is not > 0.15
    (14, 0.16, True, True, True, 1.0),     # just above min_conf
    (16, 0.05, True, True, False, 1.0),    # below min_conf: GT, articulated so still penalised
    (15, 0.40, True, False, False, 0.0),   # GT outside the augmented crop: weight 0
    (4, 0.60, False, True, False, 1.0),    # outside the field of view, in the crop: GT, weight 1
    (0, 0.30, True, True, False, 0.0),     # not articulated and invisible: weight 0
    (5, 0.50, True, True, False, 1.0),     # not articulated, max_conf 0.5 is visible
    (6, 0.60, False, True, False, 1.0),    # not articulated, uncertain, out of view: GT, weight 1
    (11, 0.95, False, False, False, 0.0),  # not articulated, GT outside the crop
]


def test_mmd_targets_rule():
    m = 6
    gt = torch.rand(1, 17, 2) * 2 - 1
    samples = torch.rand(1, 17, m, 2) * 2 - 1
    conf = torch.full((1, 17), 0.9)
    in_fov = torch.ones(1, 17, dtype=torch.bool)
    in_crop = torch.ones(1, 17, dtype=torch.bool)
    for joint, c, fov, crop, _, _ in TARGET_CASES:
        conf[0, joint], in_fov[0, joint], in_crop[0, joint] = c, fov, crop
    target, weight = mmd_targets(gt, samples, conf, in_fov, in_crop, uncertain_conf=0.7,
                                 min_conf=0.15, invisible_conf=0.5)
    assert target.shape == (1, 17, m, 2) and weight.shape == (1, 17)
    for joint, _, _, _, use_samples, w in TARGET_CASES:
        assert (joint in ARTICULATED) == (joint in (7, 8, 9, 10, 13, 14, 15, 16))
        # slot 0 is always the ground truth (reference release), the rest samples or GT
        torch.testing.assert_close(target[0, joint, 0], gt[0, joint], msg=f"joint {joint}")
        expected = samples[0, joint, 1:] if use_samples else gt[0, joint].expand(m - 1, 2)
        torch.testing.assert_close(target[0, joint, 1:], expected, msg=f"joint {joint}")
        assert weight[0, joint].item() == w, f"joint {joint}"
    # joints untouched by the table are confident, in view: GT, weight 1
    rest = sorted(set(range(17)) - {case[0] for case in TARGET_CASES})
    torch.testing.assert_close(target[0, rest], gt[0, rest, None].expand(-1, m, 2))
    assert (weight[0, rest] == 1).all()


def test_mmd_targets_thresholds_are_parameters():
    gt, samples = torch.zeros(1, 17, 2), torch.ones(1, 17, 3, 2)
    conf, inside = torch.full((1, 17), 0.75), torch.ones(1, 17, dtype=torch.bool)
    target, _ = mmd_targets(gt, samples, conf, inside, inside, uncertain_conf=0.8)
    assert (target[0, 9, 1:] == 1).all() and (target[0, 0] == 0).all()
    _, weight = mmd_targets(gt, samples, conf, inside, inside, invisible_conf=0.8)
    assert weight[0, 0] == 0 and weight[0, 9] == 1


def test_mmd_rule_by_hand():
    """Targets, weights and normalisation together, one image. Every joint's prediction is its
    GT (MMD² 0) except: joint 8 (articulated, uncertain, GT outside the field of view but in the
    crop) has pred {(0, 0)} × 2 against its GT (0.3, 0.4): target GT, weight 1, MMD² 6 − 2φ;
    joint 9 (articulated, uncertain, in view) has GT (0, 0), pred {(0, 0)} × 2 and samples
    {(0.3, 0.4)} × 2: target {GT, sample}, so MMD² = 1.5 − φ/2 biased, 0 unbiased. The total is
    the mean over 17 joints. (The old rule: joint 8 weight 0, joint 9's target two samples,
    the sum divided by 16 weights.)"""
    gt = torch.zeros(1, 17, 2, dtype=torch.float64)
    gt[0, 8] = torch.tensor([0.3, 0.4], dtype=torch.float64)
    samples = torch.zeros(1, 17, 2, 2, dtype=torch.float64)
    samples[0, 9] = torch.tensor([0.3, 0.4], dtype=torch.float64)
    conf = torch.full((1, 17), 0.9, dtype=torch.float64)
    conf[0, 8] = conf[0, 9] = 0.4
    in_fov = torch.ones(1, 17, dtype=torch.bool)
    in_fov[0, 8] = False
    in_crop = torch.ones(1, 17, dtype=torch.bool)
    pred = gt[:, :, None].expand(1, 17, 2, 2).clone()
    pred[0, 8] = 0.0
    target, weight = mmd_targets(gt, samples, conf, in_fov, in_crop)
    assert (weight == 1).all()
    phi = phi_d2(0.25)
    biased = mmd_loss(pred, target, weight, unbiased=False).item()
    unbiased = mmd_loss(pred, target, weight, unbiased=True).item()
    assert biased == pytest.approx((6 - 2 * phi + 1.5 - phi / 2) / 17, rel=1e-12)
    assert unbiased == pytest.approx((6 - 2 * phi) / 17, rel=1e-12)


# ---------------------------------------------------------------- mask loss

def mask_reference(pred, max_conf, hm, hm_inside, gt, gt_in_crop, mask, use_mask,
                   invisible_conf=0.5):
    """Brute force, the reference release's rule: loops over images and points; a point is on the
    mask when some mask pixel centre (x = column, y = row) is within 0.71 px of it, searched over
    ALL mask pixels; the sum of nearest-candidate L1 distances over penalised points / (B × N)."""
    B, K, N, _ = pred.shape
    H, W = mask.shape[1:]
    total, count = 0.0, 0
    for b in range(B):
        centres = [(j, i) for i in range(H) for j in range(W) if mask[b, i, j]]
        if not use_mask[b] or not centres:
            continue
        cands = [hm[b, k, s].tolist() for k in range(K) for s in range(hm.shape[2])
                 if hm_inside[b, k, s]]
        cands += [gt[b, k].tolist() for k in range(K)]
        for k in range(K):
            if not (max_conf[b, k] < invisible_conf or not gt_in_crop[b, k]):
                continue
            for s in range(N):
                x, y = pred[b, k, s].tolist()
                u, v = (x + 1) * W / 2, (y + 1) * H / 2
                if not (0 <= u <= W - 1 and 0 <= v <= H - 1):
                    continue
                if min(math.hypot(u - cu, v - cv) for cu, cv in centres) <= 0.71:
                    continue
                total += min(abs(x - cx) + abs(y - cy) for cx, cy in cands)
                count += 1
    return total / (B * N), count


def blob_masks(rng, b, h, w):
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((b, h, w), bool)
    for i in range(b):
        for _ in range(3):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, w / 3)
            masks[i] |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    return torch.from_numpy(masks)


def mask_inputs(seed=0, b=4, n=6, m=5, h=16, w=20, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    mask = blob_masks(rng, b, h, w)
    pred = torch.from_numpy(rng.uniform(-1.3, 1.3, (b, 17, n, 2))).to(dtype)
    max_conf = torch.from_numpy(rng.uniform(0, 1, (b, 17))).to(dtype)
    hm = torch.from_numpy(rng.uniform(-1, 1, (b, 17, m, 2))).to(dtype)
    hm_inside = torch.from_numpy(rng.uniform(size=(b, 17, m)) < 0.4)
    gt = torch.from_numpy(rng.uniform(-1.1, 1.1, (b, 17, 2))).to(dtype)
    gt_in_crop = (gt.abs() <= 1).all(-1)
    use_mask = torch.tensor([True, True, False, True][:b])
    return pred, max_conf, hm, hm_inside, gt, gt_in_crop, mask, use_mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_loss_matches_brute_force(seed):
    args = mask_inputs(seed)
    expected, count = mask_reference(*args)
    assert count > 10  # the case is not vacuous
    value = mask_loss(*args)
    assert value.shape == () and value.dtype == torch.float64
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_mask_loss_boundary_pixels_and_crop_edges():
    """Points on pixel centres, half-pixel edges and the crop border."""
    args = list(mask_inputs(5))
    w = args[6].shape[-1]
    edges = torch.tensor([-1.0, -0.5, 0.0, 0.1, 0.5, 1 - 2 / w, 1 - 1 / w, 1.0],
                         dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(edges, edges, indexing="ij"), -1).reshape(-1, 2)
    args[0] = grid[None, None].expand(4, 17, -1, 2).contiguous()
    assert mask_loss(*args).item() == pytest.approx(mask_reference(*args)[0], rel=1e-12)


def _one_pixel_case(points_px, size=8, conf=0.3, in_crop=True):
    """B = 1, one invisible joint, the given points (crop px) as its N samples; mask: the one
    pixel (row 2, column 2); the only candidate the GT at crop px (2, 2) (all heatmap samples
    outside the mask), other joints visible."""
    n = len(points_px)
    to_norm = lambda p: 2 * torch.as_tensor(p, dtype=torch.float64) / size - 1  # noqa: E731
    pred = torch.zeros(1, 17, n, 2, dtype=torch.float64)
    pred[0, 9] = to_norm(points_px)
    max_conf = torch.full((1, 17), 0.9, dtype=torch.float64)
    max_conf[0, 9] = conf
    hm = torch.zeros(1, 17, 3, 2, dtype=torch.float64)
    hm_inside = torch.zeros(1, 17, 3, dtype=torch.bool)
    gt = to_norm([2.0, 2.0]).expand(1, 17, 2).clone()
    gt_in_crop = torch.ones(1, 17, dtype=torch.bool)
    gt_in_crop[0, 9] = in_crop
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, 2, 2] = True
    return pred, max_conf, hm, hm_inside, gt, gt_in_crop, mask, torch.ones(1, dtype=torch.bool)


def test_mask_loss_pixel_convention_and_normalisation_by_hand():
    """Mask pixel (row 2, col 2) has its centre at crop px (2, 2). Points (crop px):
    (1.6, 2) is 0.4 px from it: on the mask (the old floor((x + 1)·W/2) put it in column 1, off);
    (2.8, 2) is 0.8 px away: off (old: column 2, on); (2.5, 2.5) is 0.707 px away: on;
    (7.5, 2) is beyond the last pixel centre 7: outside the raster (old: inside [0, 8]);
    (5, 2) is off: penalised. Penalised: (2.8, 2) and (5, 2), L1 to the GT (2, 2) = 0.8 and
    3 px = 0.2 and 0.75 in normalised units; the sum over B × N = 1 × 5 points."""
    pts = [[1.6, 2.0], [2.8, 2.0], [2.5, 2.5], [7.5, 2.0], [5.0, 2.0]]
    value = mask_loss(*_one_pixel_case(pts))
    assert value.item() == pytest.approx((0.2 + 0.75) / 5, rel=1e-12)


def test_mask_loss_gt_outside_the_crop_counts_as_invisible():
    """A confident joint (0.9) whose GT lies outside the augmented crop is penalised like an
    invisible one (reference release); inside the crop it is not."""
    pts = [[5.0, 2.0], [2.0, 2.0]]
    assert mask_loss(*_one_pixel_case(pts, conf=0.9, in_crop=True)).item() == 0
    value = mask_loss(*_one_pixel_case(pts, conf=0.9, in_crop=False))
    assert value.item() == pytest.approx(0.75 / 2, rel=1e-12)


def test_mask_loss_zero_without_mask_or_invisible_joints():
    pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask = mask_inputs(0)
    assert mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask).item() > 0
    no_mask = torch.zeros_like(use_mask)
    assert mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, mask, no_mask).item() == 0
    visible = torch.full_like(max_conf, 0.5)  # 0.5 is visible: invisible means < 0.5
    all_in = torch.ones_like(in_crop)
    assert mask_loss(pred, visible, hm, hm_inside, gt, all_in, mask, use_mask).item() == 0
    # an image whose crop holds no mask pixel is not penalised (reference: no valid mask)
    empty = torch.zeros_like(mask)
    assert mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, empty, use_mask).item() == 0


def test_mask_loss_ignores_points_outside_the_crop():
    pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask = mask_inputs(0)
    mask = torch.zeros_like(mask)
    mask[:, 0, 0] = True  # every in-crop point away from the corner pixel is off the person
    max_conf = torch.zeros_like(max_conf)  # every joint invisible
    use_mask = torch.ones_like(use_mask)
    outside = pred.sign() * (1.01 + pred.abs())  # |x|, |y| > 1
    outside[..., 1] = pred[..., 1] * 0.5  # only x out of the crop
    args = (hm, hm_inside, gt, in_crop, mask, use_mask)
    assert mask_loss(outside, max_conf, *args).item() == 0
    inside = outside.clone()
    inside[1, 3, 2] = torch.tensor([0.2, -0.3], dtype=inside.dtype)
    gt[1, 3] = torch.tensor([0.25, -0.1], dtype=gt.dtype)  # nearest candidate of the point
    hm_inside = torch.zeros_like(hm_inside)  # no heatmap sample inside the mask
    args = (hm, hm_inside, gt, in_crop, mask, use_mask)
    value = mask_loss(inside, max_conf, *args)
    expected, count = mask_reference(inside, max_conf, *args)
    assert count == 1 and value.item() == pytest.approx(expected)
    assert expected <= (0.05 + 0.2) / (4 * 6) + 1e-12


def test_mask_loss_gradient_reaches_pred_only():
    pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask = mask_inputs(1)
    pred.requires_grad_()
    hm.requires_grad_()
    gt.requires_grad_()
    max_conf.requires_grad_()
    value = mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask)
    value.backward()
    assert hm.grad is None and gt.grad is None and max_conf.grad is None
    _, count = mask_reference(pred.detach(), max_conf.detach(), hm.detach(), hm_inside,
                              gt.detach(), in_crop, mask, use_mask)
    penalised = pred.grad.abs().sum(-1) > 0
    assert penalised.sum().item() == count
    # d/dp of |p − t|₁ / (B·N) is sign(p − t) / (B·N) on each penalised coordinate
    b, _, n, _ = pred.shape
    assert torch.allclose(pred.grad[penalised].abs(), torch.full((count, 2), 1.0 / (b * n),
                                                                 dtype=torch.float64))


def test_mask_loss_image_without_any_candidate_adds_nothing():
    pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask = mask_inputs(2)
    base = mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask)
    gt_nan, hm_nan = gt.clone(), hm.clone()
    gt_nan[3] = float("nan")
    hm_nan[3] = float("nan")
    no_cands = hm_inside.clone()
    no_cands[3] = False
    value = mask_loss(pred, max_conf, hm_nan, no_cands, gt_nan, in_crop, mask, use_mask)
    restricted = use_mask.clone()
    restricted[3] = False
    assert torch.isfinite(value) and torch.isfinite(base)
    assert value.item() == pytest.approx(
        mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, mask, restricted).item())


def test_mask_loss_large_mask_is_a_lookup():
    """H = W = 2048: nothing of size B × points × H·W is built (that would be 4 × 425 × 4.2 M
    distances, ~28 GB in float32). The loss reads the mask at the 4 pixel centres around each
    point (`body.pixels.near_mask`) and its only pairwise array is points × candidates,
    (4, 425, 442), independent of the mask size; so this runs in well under a second."""
    b, side = 4, 2048
    pred, max_conf, hm, hm_inside, gt, in_crop, _, _ = mask_inputs(0, b=b, n=25, m=25,
                                                                   dtype=torch.float32)
    mask = torch.zeros(b, side, side, dtype=torch.bool)
    mask[:, 512:1536, 700:1300] = True
    use_mask = torch.ones(b, dtype=torch.bool)
    pred.requires_grad_()
    start = time.perf_counter()
    value = mask_loss(pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask)
    value.backward()
    elapsed = time.perf_counter() - start
    assert torch.isfinite(value) and value.item() > 0
    assert elapsed < 5.0, elapsed


def test_near_mask_is_a_search_over_all_pixel_centres():
    """body.pixels.near_mask against the brute-force minimum distance to every mask pixel
    centre, on random points around pixel edges, corners and the raster border."""
    rng = np.random.default_rng(4)
    mask = blob_masks(rng, 3, 9, 11)
    pts = torch.from_numpy(rng.uniform(-1.5, 12.5, (3, 400, 2)))
    pts[:, :100] = pts[:, :100].round() + 0.5  # pixel corners: 0.707 px from 4 centres
    got = near_mask(pts, mask, 0.71)
    for b in range(3):
        centres = np.argwhere(mask[b].numpy())[:, ::-1]  # (x = column, y = row)
        d = np.linalg.norm(pts[b].numpy()[:, None] - centres[None], axis=-1).min(1)
        np.testing.assert_array_equal(got[b].numpy(), d <= 0.71)
    assert got.any() and not got.all()


# ---------------------------------------------------------------- the simple terms

def test_orth_loss():
    R = torch.from_numpy(Rotation.random(2 * 3 * 22, random_state=0).as_matrix())
    rot6d = matrix_to_rot6d(R).reshape(2, 3, 22, 6)
    assert orth_loss(rot6d).item() == pytest.approx(0.0, abs=1e-20)
    assert orth_loss(rot6d * 1.1).item() > 0
    assert orth_loss(rot6d + 0.01 * torch.randn_like(rot6d)).item() > 0


def test_orth_loss_by_hand():
    """Mode rows (2, 0, 0), (0, 1, 0): A·Aᵀ − I = diag(3, 0), entries² (9, 0, 0, 0), mean 2.25.
    One of 3 samples has rows (1, 1, 0), (0, 0, 1): diag(1, 0), mean 0.25; the samples' mean is
    0.25 / 3. Reference: mode mean + samples mean (the old rule, Σ entries averaged over all 4
    slots, gave (9 + 1) / 4)."""
    eye = [1.0, 0, 0, 0, 1, 0]
    x = torch.tensor([[2.0, 0, 0, 0, 1, 0], eye, [1.0, 1, 0, 0, 0, 1], eye])[None, :, None]
    assert orth_loss(x).item() == pytest.approx(2.25 + 0.25 / 3)
    assert orth_loss(x[:, :1]).item() == pytest.approx(2.25)  # the mode alone


def test_camera_loss_by_hand():
    s = torch.tensor([0.0, 0.1, -0.05])
    expected = (1 + math.exp(-2.0) + math.exp(1.0)) / 3
    assert camera_loss(s, 10.0).item() == pytest.approx(expected, rel=1e-6)
    assert camera_loss(s, scale_factor=5.0).item() == pytest.approx(
        (1 + math.exp(-1.0) + math.exp(0.5)) / 3, rel=1e-6)


def test_nll_loss_scaling():
    log_prob = torch.tensor([-132.0, -264.0])
    assert nll_loss(log_prob).item() == pytest.approx(1.5)
    assert nll_loss(log_prob, dim=66).item() == pytest.approx(3.0)
    assert nll_loss(-log_prob).item() == pytest.approx(-1.5)


def test_betas_loss_by_hand():
    pred = torch.zeros(2, 11)
    gt = torch.zeros(2, 11)
    gt[0, :3] = torch.tensor([1.0, 2.0, 2.0])  # 9
    gt[1, 10] = 1.0  # 1
    assert betas_loss(pred, gt).item() == pytest.approx(5.0)


def test_keypoints_2d_loss_by_hand():
    """Σ |pred − gt| over valid joints × coordinates, divided by B = 2 (reference release; the
    old mean over the 4 valid coordinates gave half of this)."""
    pred = torch.zeros(2, 24, 2, requires_grad=True)
    gt = torch.full((2, 24, 2), float("nan"))
    valid = torch.zeros(2, 24, dtype=torch.bool)
    gt[0, 0], valid[0, 0] = torch.tensor([0.5, -0.5]), True
    gt[1, 7], valid[1, 7] = torch.tensor([0.1, 0.3]), True
    value = keypoints_2d_loss(pred, gt, valid)
    assert value.item() == pytest.approx((0.5 + 0.5 + 0.1 + 0.3) / 2)
    value.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~valid] == 0).all() and (pred.grad[valid].abs() == 0.5).all()
    none_valid = torch.zeros_like(valid)
    assert keypoints_2d_loss(pred, gt, none_valid).item() == 0
    # every coordinate of one image off by 0.1: 24 × 2 × 0.1 = 4.8, 48 × the mean
    full = keypoints_2d_loss(torch.zeros(1, 24, 2), torch.full((1, 24, 2), 0.1),
                             torch.ones(1, 24, dtype=torch.bool))
    assert full.item() == pytest.approx(4.8, rel=1e-6)


def test_total_loss_weighting_and_unknown_names():
    weights = load_config().loss_weights
    assert set(weights) == set(LOSS_NAMES)
    terms = {name: torch.tensor(float(i + 1)) for i, name in enumerate(LOSS_NAMES)}
    expected = sum(float(weights[name]) * (i + 1) for i, name in enumerate(LOSS_NAMES))
    assert total_loss(terms, weights).item() == pytest.approx(expected, rel=1e-6)
    partial = {"mmd": torch.tensor(2.0), "nll": torch.tensor(3.0)}
    assert total_loss(partial, {"mmd": 0.05, "nll": 0.1, "mask": 9.0}).item() == \
        pytest.approx(0.4)
    with pytest.raises(KeyError, match="mmdd"):
        total_loss({"mmdd": torch.tensor(1.0), "nll": torch.tensor(1.0)}, weights)


# ---------------------------------------------------------------- Table S2 sample supervision

def test_keypoints_2d_samples_loss_against_loops():
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 17, 4, 2, generator=g, dtype=torch.float64)
    gt = torch.randn(2, 17, 2, generator=g, dtype=torch.float64)
    conf = torch.rand(2, 17, generator=g, dtype=torch.float64)
    in_view = torch.rand(2, 17, generator=g) > 0.2  # GT in the crop
    gt[~in_view] = float("nan")  # never reaches the value
    for visible_only in (False, True):
        w = supervised_2d_joints(in_view, conf, visible_only, 0.5)
        total = count = 0.0
        for b in range(2):
            for k in range(17):
                if in_view[b, k] and (not visible_only or conf[b, k] >= 0.5):
                    for n in range(4):
                        for c in range(2):
                            total += abs(float(pred[b, k, n, c] - gt[b, k, c]))
                            count += 1
        expected = total / count
        got = keypoints_2d_samples_loss(pred, gt, w)
        assert got.item() == pytest.approx(expected, rel=1e-12)
    assert supervised_2d_joints(in_view, conf, True).sum() < in_view.sum()
