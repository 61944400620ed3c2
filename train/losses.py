"""Stage-two losses (docs/method.md §4; paper Sec. 4.2-4.4, Eq. 4-8).

Conventions of the inputs. All 2D coordinates are normalised to the model crop, [−1, 1] over the
square box, x horizontal (columns) and y vertical (rows). B images; the hypotheses of an image
are slot 0 = the mode (z = 0) and slots 1..N = random flow samples. COCO-17 joint order is
`body.joints.COCO17_NAMES`.

Every loss is one batched tensor expression over batch × joints × samples (no Python loops over
them), keeps the device and dtype of its inputs and returns a scalar. `total_loss` combines the
terms with the weights of `pipelines.yaml` `loss_weights`, whose names are `LOSS_NAMES`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from body.joints import COCO17_HIGHLY_ARTICULATED
from body.pixels import INSIDE_MASK_PX, crop_to_pixels, inside_raster, near_mask
from body.rotations import rot6d_to_matrix

# The names of the terms and of their weights (pipelines.yaml `loss_weights`).
LOSS_NAMES = ("nll", "betas", "keypoints_2d", "keypoints_2d_samples", "orth", "camera", "mmd",
              "mask", "orientation_mode", "body_pose_mode", "keypoints_3d_mode")

# Defaults: the paper's values, also in pipelines.yaml `losses` (the caller passes the config's).
MMD_KERNEL_SCALES = (0.05, 0.20, 0.90)
NUM_COCO = 17


def nll_loss(log_prob: Tensor, dim: int = 132) -> Tensor:
    """NLL of the ground-truth pose per dimension (docs/method.md §4 "NLL", paper Eq. 5).

    −mean(log_prob) / dim, with log_prob (B,) = log p(θ̂ + ε | c) of the flattened 22 × 6 = 132-D
    ground-truth 6D pose. The caller adds the Gaussian noise ε (std `losses.nll_noise`) first.
    """
    return -log_prob.mean() / dim


def betas_loss(pred_betas: Tensor, gt_betas: Tensor) -> Tensor:
    """Shape loss on the mode (docs/method.md §4 "β", paper Eq. 5): mean over images of ‖β − β̂‖².

    pred_betas, gt_betas (B, 11); the squared error is summed over the betas.
    """
    return (pred_betas - gt_betas).square().sum(-1).mean()


def rotation_mode_loss(pred6d: Tensor, gt6d: Tensor) -> Tensor:
    """ProHMR's parameter losses on the mode (docs/method.md §4, "the mode's parameters"; off in
    the paper): mean over images of ‖R − R̂‖²_F, the squared error summed over the 9 entries of
    every rotation matrix and over the joints, = 4 (1 − cos θ) per joint θ apart (8 when turned
    around). Its `GLOBAL_ORIENT_MODE` on the global orientation, `BODY_POSE_MODE` on the 21 body
    joints.

    pred6d, gt6d (B, 6) one rotation per image, or (B, J, 6): the mode's and the ground truth's.
    """
    diff = rot6d_to_matrix(pred6d) - rot6d_to_matrix(gt6d)
    return diff.square().flatten(1).sum(-1).mean()


def keypoints_3d_mode_loss(pred_joints: Tensor, gt_joints: Tensor, root: int = 0) -> Tensor:
    """ProHMR's 3D keypoint loss on the mode (`KEYPOINTS_3D_MODE`; off in the paper): L1 of the
    root-centred joints, SUMMED over the joints × 3 coordinates, mean over images (ProHMR's
    normalisation; metres).

    pred_joints, gt_joints (B, J, 3) in one frame; `root` the joint both are centred on.
    """
    pred = pred_joints - pred_joints[:, root:root + 1]
    gt = gt_joints - gt_joints[:, root:root + 1]
    return (pred - gt).abs().sum((-1, -2)).mean()


def keypoints_2d_loss(pred_body2d_mode: Tensor, gt_body2d: Tensor, valid: Tensor) -> Tensor:
    """L1 reprojection loss of the mode only (docs/method.md §4 "2D", paper Eq. 6).

    pred_body2d_mode (B, J, 2) projected joints of slot 0 (J = 24, the reference's, or 29 with
    the face joints: `objective.mode_2d_joints`); gt_body2d (B, J, 2); valid (B, J) bool.
    |pred − gt| SUMMED over the valid joints × 2 coordinates, divided by B (the reference
    release's normalisation, which the paper's weight 1e-2 goes with; a mean over the 48
    coordinates would be 48× weaker). Invalid ground truth (which may hold NaN) never reaches
    the value or the gradient.
    """
    v = valid[..., None]
    gt = torch.where(v, gt_body2d, torch.zeros_like(gt_body2d))
    err = (pred_body2d_mode - gt).abs() * v
    return err.sum() / pred_body2d_mode.shape[0]


def keypoints_2d_samples_loss(pred_coco_samples: Tensor, gt_coco: Tensor, weight: Tensor) -> Tensor:
    """L1 of the random hypotheses to the ground-truth COCO joints: the 2D-all (ProHMR) and
    2D-vis (HuManiFlow) supervision of the paper's Table S2, off in the paper's model.

    pred_coco_samples (B, 17, N, 2); gt_coco (B, 17, 2); weight (B, 17), 1 for the supervised
    joints (all joints in the crop, or only the visible ones: `supervised_2d_joints`). Mean of
    |pred − gt| over the supervised joints × samples × 2 coordinates (0 when none is).
    """
    gt = torch.where(weight[..., None] > 0, gt_coco, torch.zeros_like(gt_coco))
    err = (pred_coco_samples - gt[:, :, None]).abs().sum(-1).mean(-1)  # (B, 17)
    return (weight * err).sum() / (2 * weight.sum()).clamp_min(1)


def supervised_2d_joints(gt_in_crop: Tensor, max_conf: Tensor, visible_only: bool,
                         visible_conf: float = 0.5) -> Tensor:
    """(B, 17) weights of `keypoints_2d_samples_loss`: joints whose ground truth lies in the
    augmented crop, and with detector confidence ≥ visible_conf when visible_only (2D-vis)."""
    keep = gt_in_crop & (max_conf >= visible_conf) if visible_only else gt_in_crop
    return keep.to(max_conf.dtype)


def orth_loss(pred_pose6d: Tensor) -> Tensor:
    """Orthonormality of the 6D rotations (docs/method.md §4 "orth", paper Sec. 4.4, ProHMR).

    pred_pose6d (B, 1 + N, J, 6): the two ROWS A (2 × 3) of each rotation (body/rotations.py),
    slot 0 the mode, slots 1..N the random samples. The mean over all entries of (A·Aᵀ − I₂)² of
    the mode PLUS the same mean over the samples (two terms of equal weight, the reference
    release's rule; a mode-only input gives the mode's term alone).
    """
    a = pred_pose6d.unflatten(-1, (2, 3))
    eye = torch.eye(2, dtype=a.dtype, device=a.device)
    err = (a @ a.transpose(-1, -2) - eye).square()  # (B, 1 + N, J, 2, 2)
    mode = err[:, 0].mean()
    return mode + err[:, 1:].mean() if err.shape[1] > 1 else mode


def camera_loss(cam_scale: Tensor, scale_factor: float = 10.0) -> Tensor:
    """Keeps the weak-perspective scale positive (docs/method.md §4 "camera"): mean(exp(−f·s)²).

    cam_scale (B,) or any shape; f = `losses.camera_scale_factor` (10).
    """
    return torch.exp(-scale_factor * cam_scale).square().mean()


def _highly_articulated(device: torch.device) -> Tensor:
    """(17,) bool: the COCO joints whose MMD target may be heatmap samples (docs/method.md §4)."""
    flags = torch.zeros(NUM_COCO, dtype=torch.bool, device=device)
    flags[list(COCO17_HIGHLY_ARTICULATED)] = True
    return flags


def mmd_sample_joints(max_conf: Tensor, gt_in_fov: Tensor, gt_in_crop: Tensor,
                      uncertain_conf: float = 0.7, min_conf: float = 0.15) -> Tensor:
    """(B, 17) bool: the joints whose MMD target is their heatmap samples (`mmd_targets`):
    highly articulated, min_conf < max_conf < uncertain_conf, ground truth in the detector's
    field of view and in the augmented crop."""
    uncertain = (max_conf > min_conf) & (max_conf < uncertain_conf)
    return _highly_articulated(max_conf.device) & uncertain & gt_in_fov & gt_in_crop


def mmd_targets(gt_coco: Tensor, hm_samples: Tensor, max_conf: Tensor, gt_in_fov: Tensor,
                gt_in_crop: Tensor, uncertain_conf: float = 0.7, min_conf: float = 0.15,
                invisible_conf: float = 0.5) -> tuple[Tensor, Tensor]:
    """Target sets and weights of the joint-wise MMD (docs/method.md §4 "MMD", paper Sec. 4.2, 5).

    gt_coco (B, 17, 2); hm_samples (B, 17, M, 2) heatmap samples; max_conf (B, 17) detector
    maximum confidence; gt_in_fov (B, 17) bool, the ground truth lies in the detector's field of
    view (central 75 % of the ORIGINAL box); gt_in_crop (B, 17) bool, it lies in the AUGMENTED
    crop [−1, 1]².

    Target of joint k: its heatmap samples iff k is highly articulated AND
    min_conf < max_conf < uncertain_conf AND gt_in_fov AND gt_in_crop, otherwise the ground-truth
    joint; slot 0 of every target is the ground-truth joint (reference release). Weight 0 only for
    a joint that is not highly articulated and invisible (max_conf < invisible_conf) and for a
    joint outside the augmented crop; else 1. The field of view never zeroes a weight.

    Returns target (B, 17, M, 2) and weight (B, 17) in the dtype of hm_samples.
    """
    articulated = _highly_articulated(max_conf.device)
    use_samples = mmd_sample_joints(max_conf, gt_in_fov, gt_in_crop, uncertain_conf, min_conf)
    gt = gt_coco[:, :, None, :].expand_as(hm_samples)
    target = torch.where(use_samples[..., None, None], hm_samples, gt).clone()
    target[:, :, 0] = gt_coco
    ignored = (~articulated & (max_conf < invisible_conf)) | ~gt_in_crop
    return target, (~ignored).to(hm_samples.dtype)


def imq_kernel(a: Tensor, b: Tensor, scales: Sequence[float] = MMD_KERNEL_SCALES) -> Tensor:
    """Mixture of inverse multiquadrics (paper Eq. 8) for all pairs of two point sets.

    a (..., P, 2), b (..., Q, 2) -> (..., P, Q): Σ_s s² / (s² + ‖a_p − b_q‖²). Leading dimensions
    broadcast. The squared distance is formed from differences (no ‖a‖² + ‖b‖² − 2ab
    cancellation), so coincident points give exactly len(scales) and finite gradients.
    """
    d2 = (a[..., :, None, :] - b[..., None, :, :]).square().sum(-1)
    s2 = torch.as_tensor(scales, dtype=d2.dtype, device=d2.device).square()
    return (s2 / (s2 + d2[..., None])).sum(-1)


def mmd_loss(pred: Tensor, target: Tensor, weight: Tensor,
             scales: Sequence[float] = MMD_KERNEL_SCALES, unbiased: bool = True) -> Tensor:
    """Joint-wise squared MMD between flow samples and targets (docs/method.md §4, paper Eq. 4, 8).

    pred (B, 17, N, 2) projected COCO joints of the N random samples (mode excluded); target
    (B, 17, M, 2) from `mmd_targets`; weight (B, 17). Per image and joint

        MMD² = mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 mean_{i,j} k(x_i, y_j)

    with the IMQ kernel k of `imq_kernel`. unbiased=True (the paper's Eq. 4, default) excludes
    the diagonal of the two within-set terms (needs N, M ≥ 2); unbiased=False is the reference
    release's biased estimator (all pairs in every term). Result: mean of w · MMD² over all B × 17
    (image, joint) pairs, zero-weight pairs counting as 0 (reference release). Targets of
    zero-weight joints (which may hold NaN) are replaced by 0 and cannot leak.
    """
    n, m = pred.shape[-2], target.shape[-2]
    if unbiased and min(n, m) < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per set, got {n} and {m}")
    target = torch.where(weight[..., None, None] > 0, target, torch.zeros_like(target))
    kxx = imq_kernel(pred, pred, scales)  # (B, 17, N, N)
    kyy = imq_kernel(target, target, scales)  # (B, 17, M, M)
    kxy = imq_kernel(pred, target, scales)  # (B, 17, N, M)
    if unbiased:
        xx = (kxx.sum((-1, -2)) - kxx.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
        yy = (kyy.sum((-1, -2)) - kyy.diagonal(dim1=-2, dim2=-1).sum(-1)) / (m * (m - 1))
    else:
        xx, yy = kxx.mean((-1, -2)), kyy.mean((-1, -2))
    mmd = xx + yy - 2 * kxy.mean((-1, -2))
    return (weight * mmd).mean()


_FAR = 1e6  # normalised crop units: farther than any real point


def mask_loss(pred_coco_samples: Tensor, max_conf: Tensor, hm_samples: Tensor,
              hm_inside: Tensor, gt_coco: Tensor, gt_in_crop: Tensor, mask: Tensor,
              use_mask: Tensor, invisible_conf: float = 0.5,
              inside_px: float = INSIDE_MASK_PX, skip_gt_off_mask: bool = False,
              skip: Tensor | None = None) -> Tensor:
    """Penalises samples of invisible joints that land off the person (docs/method.md §4, Sec. 4.3).

    pred_coco_samples (B, 17, N, 2) projected COCO joints of the N random samples; max_conf
    (B, 17); hm_samples (B, 17, M, 2) and hm_inside (B, 17, M) bool (sample inside the union
    mask); gt_coco (B, 17, 2); gt_in_crop (B, 17) bool, the ground truth lies in the augmented
    crop; mask (B, S, S) bool, the crop-aligned (dilated) training mask; use_mask (B,) bool.

    A point is penalised when its joint is invisible (max_conf < invisible_conf, or its ground
    truth outside the crop), it lies inside the mask raster (pixel coordinates in [0, S − 1],
    `body.pixels`) but no mask pixel centre is within inside_px of it, and its image has a
    non-empty mask and use_mask. With `skip_gt_off_mask` a joint whose ground truth lies in the
    crop but off the mask (hidden by an object, not by a person) is not penalised either
    (docs/diagnosis.md §6; the reference release skips only whole object-occluded examples).
    `skip` (B, 17) bool, optional: joints never penalised (e.g. those whose MMD target is their
    heatmap samples, `mmd_sample_joints`; docs/diagnosis.md §11).
    Its loss is the L1 distance to the L1-closest candidate of its
    image: all the image's heatmap samples inside the mask (of every joint) plus its 17
    ground-truth COCO joints (the reference release's rule; non-finite ones are dropped).
    Result: the sum over penalised points divided by B × N (reference release). Gradients reach
    pred only.

    Memory and time: the mask is read by 4 gathers per point (`body.pixels.near_mask`), never
    compared with all its pixels; candidate distances are computed, without autograd, for the
    penalised points only (P × (17·M + 17), P ≤ B·17·N: typically a few % of the points), so
    nothing grows with H·W beyond the mask itself.
    """
    b, k, n, _ = pred_coco_samples.shape
    pred = pred_coco_samples.reshape(b, k * n, 2)
    with torch.no_grad():
        h, w = mask.shape[-2:]

        def pixels(points: Tensor) -> Tensor:
            return torch.stack([crop_to_pixels(points[..., 0], w),
                                crop_to_pixels(points[..., 1], h)], -1)

        px = pixels(pred.detach())
        in_raster = inside_raster(px, h, w)
        on_mask = near_mask(px, mask, inside_px)
        invisible = (max_conf < invisible_conf) | ~gt_in_crop
        if skip_gt_off_mask:  # hidden by an object: the ground truth is in the crop, off the mask
            invisible &= ~(gt_in_crop & gt_coco.isfinite().all(-1) &
                           ~near_mask(pixels(gt_coco), mask, inside_px))
        if skip is not None:
            invisible &= ~skip
        invisible = invisible[:, :, None].expand(b, k, n).reshape(b, k * n)
        has_mask = use_mask & mask.flatten(1).any(1)
        image, point = (invisible & in_raster & ~on_mask & has_mask[:, None]).nonzero(
            as_tuple=True)

        candidates = torch.cat([hm_samples.reshape(b, -1, 2), gt_coco], 1).detach().to(pred.dtype)
        valid = torch.cat([hm_inside.reshape(b, -1), torch.ones_like(gt_coco[..., 0], dtype=bool)],
                          1) & candidates.isfinite().all(-1)
        # invalid candidates are moved far away rather than masked: one (P, C, 2) array
        candidates = torch.where(valid[..., None], candidates, torch.full_like(candidates, _FAR))
        mine = candidates[image]  # (P, C, 2): each penalised point's image's candidates
        nearest_dist, nearest = (pred.detach()[image, point, None] - mine).abs().sum(-1).min(-1)
        found = nearest_dist < _FAR  # an image without any candidate adds nothing
        nearest_xy = mine[torch.arange(len(image), device=pred.device), nearest]
    l1 = (pred[image, point] - nearest_xy).abs().sum(-1)
    return torch.where(found, l1, torch.zeros_like(l1)).sum() / (b * n)


def total_loss(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Σ weight · term over the names in `terms` (docs/method.md §4 table; paper Sec. 4.4, overall
    loss).

    weights: e.g. pipelines.yaml `loss_weights`; names are `LOSS_NAMES`. A term without a weight
    raises KeyError naming it (a weight without a term is allowed: the term is switched off).
    """
    unknown = sorted(name for name in terms if name not in weights)
    if unknown:
        raise KeyError(f"loss terms without a weight: {unknown} (weights: {sorted(weights)})")
    if not terms:
        raise ValueError("total_loss needs at least one term")
    return sum(float(weights[name]) * term for name, term in terms.items())
