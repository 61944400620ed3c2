"""train/losses.py: the mask loss against a brute-force float64 reference and hand cases."""
import math
import time

import numpy as np
import pytest
import torch

from body.pixels import near_mask
from core.config import load_config
from train.losses import mask_loss


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


def test_mask_loss_can_skip_joints_whose_ground_truth_is_off_the_mask():
    """`skip_gt_off_mask`: joint 9's GT at crop px (5, 5), in the crop but off the one-pixel mask
    (an object hides it). Its sample at (5, 4) is off the mask; the nearest candidate is that GT,
    1 px = 0.25 normalised away, so the paper's rule penalises it by 0.25 (B × N = 1) and the
    option not at all. Joints whose GT is on the mask, or outside the crop, are penalised as
    before."""
    pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask = _one_pixel_case([[5.0, 4.0]])
    gt[0, 9] = 2 * torch.tensor([5.0, 5.0], dtype=torch.float64) / 8 - 1
    args = (pred, max_conf, hm, hm_inside, gt, in_crop, mask, use_mask)
    assert mask_loss(*args).item() == pytest.approx(0.25, rel=1e-12)
    assert mask_loss(*args, skip_gt_off_mask=True).item() == 0
    pts = [[1.6, 2.0], [2.8, 2.0], [2.5, 2.5], [7.5, 2.0], [5.0, 2.0]]
    assert mask_loss(*_one_pixel_case(pts), skip_gt_off_mask=True).item() == pytest.approx(
        (0.2 + 0.75) / 5, rel=1e-12)
    outside = _one_pixel_case([[5.0, 2.0], [2.0, 2.0]], conf=0.9, in_crop=False)
    outside[4][0, 9] = 2 * torch.tensor([5.0, 5.0], dtype=torch.float64) / 8 - 1
    assert mask_loss(*outside, skip_gt_off_mask=True).item() == pytest.approx(
        mask_loss(*outside).item(), rel=1e-12) and mask_loss(*outside).item() > 0


def test_mask_loss_skips_the_joints_it_is_told_to():
    """`skip`: the by-hand case above (0.95 / 5) loses joint 9's penalty when joint 9 is
    skipped, and keeps it when another joint is."""
    args = _one_pixel_case([[1.6, 2.0], [2.8, 2.0], [2.5, 2.5], [7.5, 2.0], [5.0, 2.0]])
    skip = torch.zeros(1, 17, dtype=torch.bool)
    skip[0, 3] = True
    assert mask_loss(*args, skip=skip).item() == pytest.approx((0.2 + 0.75) / 5, rel=1e-12)
    skip[0, 9] = True
    assert mask_loss(*args, skip=skip).item() == 0


def test_the_option_spares_exactly_the_mmd_sample_joints():
    """`losses.mask_skip_mmd_samples`: off, nothing is spared; on, the articulated uncertain
    joints in view (here the left wrist, 9, at confidence 0.3) and no others."""
    from types import SimpleNamespace

    from train.objective import mask_skipped_joints
    conf = torch.full((1, 17), 0.9)
    conf[0, [0, 9]] = 0.3  # the nose is uncertain too, but not highly articulated
    inside = torch.ones(1, 17, dtype=torch.bool)
    targets = SimpleNamespace(max_conf=conf, gt_in_fov=inside, gt_in_crop=inside)
    lc = load_config(["profile=synthetic"]).losses
    assert not lc.mask_skip_mmd_samples and mask_skipped_joints(targets, lc) is None
    lc.mask_skip_mmd_samples = True
    assert mask_skipped_joints(targets, lc)[0].nonzero().flatten().tolist() == [9]


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
