"""Evaluation metrics (docs/method.md §6; paper Sec. 5 and supplementary).

Units: 3D inputs are in metres and 3D errors are returned in mm; 2D inputs and outputs are pixels
of the 256 × 256 crop. The hypotheses of an image are slot 0 = the mode (z = 0), then the random
samples. Every metric is one batched tensor expression (no Python loops over images, hypotheses
or joints), keeps the device of its inputs and works in their dtype; the exceptions run on the
CPU by scipy: `heatmap_wasserstein` (an exact assignment per (image, joint)) and
`perc_in_min_dist` (exact nearest mask pixels by a k-d tree).
The scores of a whole distribution (`energy_score`, `ball_coverage`) take the random samples
only, never the mode.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from torch import Tensor

from body.joints import (COCO17_NAMES, H36M_TO_LSP14, PELVIS_3DPW_H36M, PELVIS_EMDB_SMPL24,
                         SMPL_TO_COCO17)
from body.pixels import INSIDE_MASK_PX

MM_PER_M = 1000.0
PROTOCOLS = ("emdb", "3dpw")
COCO17_HIPS = (COCO17_NAMES.index("left_hip"), COCO17_NAMES.index("right_hip"))
RIGHT_PERSON_BOX_FRACTION = 0.1  # docs/method.md §6 "Right person"


# ---------------------------------------------------------------- distribution accuracy

def procrustes_align(pred: Tensor, gt: Tensor) -> Tensor:
    """Similarity Procrustes of pred onto gt, per sample (docs/method.md §6 "PA-MPJPE").

    pred, gt (..., J, 3). Finds s, R (a proper rotation, det R = +1: reflections are not allowed)
    and t minimising Σ_j ‖s R p_j + t − g_j‖² (Umeyama, batched SVD); returns s R p_j + t.
    """
    mu_p, mu_g = pred.mean(-2, keepdim=True), gt.mean(-2, keepdim=True)
    x, y = pred - mu_p, gt - mu_g
    k = x.transpose(-1, -2) @ y  # (..., 3, 3) = Σ_j x_j y_jᵀ
    u, s, vh = torch.linalg.svd(k)
    v = vh.transpose(-1, -2)
    # flip the axis of the smallest singular value when V Uᵀ would be a reflection
    d = torch.linalg.det(v @ u.transpose(-1, -2)).sign()
    d = torch.where(d == 0, torch.ones_like(d), d)
    z = torch.ones_like(s)
    z[..., -1] = d
    rot = (v * z[..., None, :]) @ u.transpose(-1, -2)  # V diag(z) Uᵀ
    var = x.square().sum((-1, -2)).clamp_min(torch.finfo(x.dtype).tiny)
    scale = (s * z).sum(-1) / var
    return scale[..., None, None] * (x @ rot.transpose(-1, -2)) + mu_g


def _mean_distance_mm(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean Euclidean distance over the point axis −2, metres in, mm out."""
    return torch.linalg.vector_norm(pred - gt, dim=-1).mean(-1) * MM_PER_M


def mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """MPJPE (docs/method.md §6): pred, gt (..., J, 3) in metres, already pelvis-centred by the
    caller (`body.joints.center_on_pelvis`); returns (...) mean joint error in mm."""
    return _mean_distance_mm(pred, gt)


def pa_mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """PA-MPJPE (docs/method.md §6): MPJPE (mm) after `procrustes_align` of each sample; (...)."""
    return _mean_distance_mm(procrustes_align(pred, gt), gt)


def pve(pred_verts: Tensor, gt_verts: Tensor) -> Tensor:
    """PVE (docs/method.md §6): pred_verts, gt_verts (..., V, 3) metres, pelvis-centred by the
    caller; returns (...) mean vertex error in mm."""
    return _mean_distance_mm(pred_verts, gt_verts)


def protocol_joints(verts: Tensor, regressor: Tensor, protocol: str) -> tuple[Tensor, Tensor]:
    """Evaluation joints and pelvis of SMPL vertices (docs/method.md §6, docs/formats.md
    "Body models").

    verts (..., 6890, 3); regressor (J_all, 6890). protocol 'emdb': the SMPL `J_regressor`
    (24 rows), joints = all 24, pelvis = mean of hips 1 and 2. protocol '3dpw':
    `J_regressor_h36m` (17 rows), pelvis = H36M joint 0, joints = `H36M_TO_LSP14` (14).
    Returns (joints (..., J, 3), pelvis (..., 1, 3)); centre with `joints - pelvis`.
    """
    rows = {"emdb": 24, "3dpw": 17}
    if protocol not in rows:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if regressor.shape != (rows[protocol], verts.shape[-2]):
        raise ValueError(f"protocol {protocol!r} needs a ({rows[protocol]}, {verts.shape[-2]}) "
                         f"regressor, got {tuple(regressor.shape)}")
    regressor = regressor.to(device=verts.device, dtype=verts.dtype)
    all_joints = torch.einsum("jv,...vc->...jc", regressor, verts)
    if protocol == "emdb":
        pelvis = all_joints[..., list(PELVIS_EMDB_SMPL24), :].mean(-2, keepdim=True)
        return all_joints, pelvis
    pelvis = all_joints[..., list(PELVIS_3DPW_H36M), :].mean(-2, keepdim=True)
    return all_joints[..., list(H36M_TO_LSP14), :], pelvis


def ground_truth_joints(verts: Tensor, fk_joints: Tensor, regressor: Tensor,
                        protocol: str) -> tuple[Tensor, Tensor]:
    """Evaluation joints and pelvis of the ground truth (docs/method.md §6), as `protocol_joints`.

    protocol 'emdb': the gendered SMPL's own 24 forward-kinematics joints `fk_joints` (..., 24, 3)
    (EMDB's official evaluation and the reference release), pelvis = mean of hips 1 and 2; the
    vertices and the regressor are not used. protocol '3dpw': `protocol_joints(verts, regressor)`.
    """
    if protocol != "emdb":
        return protocol_joints(verts, regressor, protocol)
    if fk_joints.shape[-2:] != (24, 3):
        raise ValueError(f"EMDB ground truth needs (..., 24, 3) SMPL joints, got "
                         f"{tuple(fk_joints.shape)}")
    return fk_joints, fk_joints[..., list(PELVIS_EMDB_SMPL24), :].mean(-2, keepdim=True)


def coco17_of_smpl_mesh(verts: Tensor, regressor: Tensor, vertex_ids: Tensor) -> Tensor:
    """COCO-17 joints of SMPL meshes (..., 6890, 3) as the reference release's evaluation takes
    them: the 24 joints of the SMPL `J_regressor` (24, 6890) on the mesh, then the 21 vertex joints
    `vertex_ids` (smplx's `vertex_joint_selector.extra_joints_idxs`), mapped by `SMPL_TO_COCO17`
    (shoulders … ankles from the regressor, nose, eyes and ears from vertices). (..., 17, 3)."""
    regressor = regressor.to(device=verts.device, dtype=verts.dtype)
    skeleton = torch.einsum("jv,...vc->...jc", regressor, verts)
    joints = torch.cat([skeleton, verts[..., vertex_ids.to(verts.device), :]], -2)
    return joints[..., list(SMPL_TO_COCO17), :]


def min_of_n(errors: Tensor) -> Tensor:
    """Best of N (docs/method.md §6 "minimum over 100 hypotheses"): errors (B, N) → (B,) minimum."""
    return errors.min(-1).values


def min_of_n_curve(errors: Tensor, ns: Sequence[int]) -> dict[int, float]:
    """Error against the number of hypotheses (docs/method.md §6, Fig. S1).

    errors (B, N_max), slot 0 = the mode (the first hypothesis). For each n in ns (1 ≤ n ≤ N_max)
    the mean over images of the minimum over the first n hypotheses; non-increasing in n.
    """
    n_max = errors.shape[-1]
    bad = [n for n in ns if not 1 <= n <= n_max]
    if bad:
        raise ValueError(f"every n must lie in [1, {n_max}], got {bad}")
    curve = errors.cummin(-1).values.mean(0)  # (N_max,)
    return {int(n): float(curve[n - 1]) for n in ns}


def center_on_mid_hip(coco: Tensor) -> Tensor:
    """COCO-17 joints (..., 17, 3) minus the mean of their two hips (the scores' root, as MPJPE's
    pelvis: the camera translation plays no part)."""
    return coco - coco[..., list(COCO17_HIPS), :].mean(-2, keepdim=True)


# ---------------------------------------------------------------- scores of the distribution

def energy_score(samples: Tensor, truth: Tensor) -> Tensor:
    """Energy score (docs/method.md §6 "Scores"), a proper scoring rule, in the unit of its inputs.

    samples (..., M, D) the M ≥ 2 random hypotheses of each case, truth (..., D). Unbiased form:
    ES = 1/M Σ_i ‖X_i − y‖ − 1/(2 M (M − 1)) Σ_{i≠j} ‖X_i − X_j‖ (the diagonal i = j is zero
    and the sum over i ≠ j is divided by the M (M − 1) ordered pairs). Returns (...).
    """
    m = samples.shape[-2]
    if m < 2:
        raise ValueError(f"the energy score needs at least 2 samples, got {m}")
    accuracy = torch.linalg.vector_norm(samples - truth[..., None, :], dim=-1).mean(-1)
    flat = samples.reshape(-1, m, samples.shape[-1])
    # exact distances: the matrix-product shortcut loses float32 digits for close samples
    pairs = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")
    sharpness = pairs.sum((-1, -2)).reshape(samples.shape[:-2]) / (2 * m * (m - 1))
    return accuracy - sharpness


def ball_coverage(samples: Tensor, truth: Tensor, qs: Sequence[float]) -> Tensor:
    """Whether the truth lies in the central q % region of the samples (docs/method.md §6
    "Scores"): the ball around the samples' mean whose radius is the q-th percentile (linear
    interpolation) of the samples' distances to that mean, boundary included.

    samples (..., M, D), truth (..., D), qs in (0, 100). Returns (len(qs), ...) bool; its mean
    over cases is the coverage, q / 100 for a calibrated forecast (up to O(1/M) because the mean
    is estimated from the same samples).
    """
    centre = samples.mean(-2)
    radii = torch.linalg.vector_norm(samples - centre[..., None, :], dim=-1)  # (..., M)
    levels = torch.tensor([q / 100 for q in qs], dtype=radii.dtype, device=radii.device)
    limits = torch.quantile(radii, levels, dim=-1)  # (Q, ...)
    return torch.linalg.vector_norm(truth - centre, dim=-1) <= limits


# ---------------------------------------------------------------- consistency and diversity

def keypoint_2d_error(pred_2d: Tensor, gt_2d: Tensor, visible: Tensor) -> tuple[Tensor, int]:
    """2DKP error (docs/method.md §6 "Consistency"): px distance pooled over every visible (image,
    hypothesis, joint) triple, as the reference release (not a mean of per-image means).

    pred_2d (B, N, 17, 2) projected hypotheses, gt_2d (B, 17, 2), visible (B, 17) bool (detector
    confidence > 0.5), all in 256-crop pixels. Returns (the mean, a 0-dim tensor, NaN when no
    joint is visible; the number of triples), so batches pool by weighting with the count.
    Invisible ground truth (which may hold NaN) does not reach the value.
    """
    dist = torch.linalg.vector_norm(pred_2d - gt_2d[:, None], dim=-1)  # (B, N, 17)
    vis = visible[:, None, :].expand_as(dist)
    count = int(vis.sum())
    total = torch.where(vis, dist, torch.zeros_like(dist)).sum()
    return (total / count if count else torch.full_like(total, torch.nan)), count


def right_person(det_px: Tensor, gt_px: Tensor, visible: Tensor, box_px: float,
                 fraction: float = RIGHT_PERSON_BOX_FRACTION) -> Tensor:
    """Crops whose detector found the right person (docs/method.md §6 "Right person"): the median
    (interpolated) of the detector's errors over its visible joints is at most `fraction` of the
    box size `box_px` (crop px). det_px, gt_px (B, 17, 2), visible (B, 17) bool → (B,) bool; a
    crop with no visible joint is not counted as right."""
    err = torch.linalg.vector_norm(det_px - gt_px, dim=-1)
    err = torch.where(visible, err, torch.full_like(err, torch.nan))
    return torch.nanquantile(err, 0.5, dim=-1) <= fraction * box_px


def spread_3d(joints: Tensor, joints_mask: Tensor) -> Tensor:
    """3DKP spread (docs/method.md §6 "Diversity"), a scalar in mm.

    joints (B, N, J, 3) metres, the N hypotheses of each image; joints_mask (B, J) bool selects
    the (image, joint) pairs (visible or invisible ones). For each selected pair, the mean
    distance of its N samples to their mean; then the mean over the pairs (NaN if none).
    """
    centre = joints.mean(1, keepdim=True)
    per_joint = torch.linalg.vector_norm(joints - centre, dim=-1).mean(1) * MM_PER_M  # (B, J)
    return per_joint[joints_mask].mean()


def heatmap_wasserstein(points_px: Tensor, heatmap_px: Tensor, joints: Tensor,
                        rng: np.random.Generator) -> Tensor:
    """2D Wasserstein-1 distance (px) between the hypotheses and the detector's heatmap
    distribution of each selected joint: the measure the paper's MMD claim rests on (Sec. 4.2).

    points_px (B, N, J, 2) projected random hypotheses; heatmap_px (B, J, M, 2) heatmap samples
    (M ≥ N); joints (B, J) bool. For each selected (image, joint), N of the M heatmap samples
    are drawn without replacement by `rng` and matched one-to-one to the N hypotheses by
    scipy's exact assignment: W1 of the two uniform N-point measures. Returns the (K,) distances
    of the K selected pairs, in order. Independent of the training MMD's kernel.
    """
    pts = points_px.detach().double().cpu().numpy()
    hm = heatmap_px.detach().double().cpu().numpy()
    n, m = pts.shape[1], hm.shape[2]
    if m < n:
        raise ValueError(f"need at least as many heatmap samples as hypotheses, got {m} < {n}")
    out = []
    for b, j in np.argwhere(joints.cpu().numpy()):
        target = hm[b, j, rng.choice(m, n, replace=False)]
        cost = np.linalg.norm(pts[b, :, j, None] - target[None], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        out.append(cost[rows, cols].mean())
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- plausibility

def mask_distance(points_px: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact distance (px) of points (..., 2) = (x, y) to the nearest pixel centre of a boolean
    mask (H, W); pixel (row r, column c) has its centre at (c, r) (cv2's raster, the crops'
    `crop_matrix`). Points outside the raster keep their true distance. An empty mask gives inf.
    """
    points = np.asarray(points_px, np.float64)
    centres = np.argwhere(mask)[:, ::-1].astype(np.float64)  # (K, 2) as (x, y)
    if len(centres) == 0:
        return np.full(points.shape[:-1], np.inf)
    dist, _ = cKDTree(centres).query(points.reshape(-1, 2))
    return dist.reshape(points.shape[:-1])


def perc_in_min_dist(points_px: Tensor, masks: Tensor | np.ndarray, selected: Tensor,
                     inside: float = INSIDE_MASK_PX) -> tuple[float, float, int]:
    """PercIn and MinDist (docs/method.md §6 "Plausibility", paper Table 2), as the reference
    release.

    points_px (B, N, J, 2) projected hypotheses (x, y) in 256-crop pixels, all N of them (the
    mode included); masks (B, H, W) bool person masks of the same crop; selected (B, J) bool the
    (image, joint) pairs that count (the invisible joints). Each point's `mask_distance` is exact
    from its sub-pixel position and true outside the crop; a point closer than `inside` to a mask
    pixel centre is inside and counts 0. Over the selected points: PercIn = % inside, MinDist =
    mean distance (px). Returns (PercIn, MinDist, number of points); (NaN, NaN, 0) when nothing is
    selected. An empty mask among the selected images raises ValueError: such images are not in
    the subset.
    """
    pts = points_px.detach().double().cpu().numpy()
    masks = masks.cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    sel = selected.cpu().numpy()
    dists = []
    for b in np.flatnonzero(sel.any(1)):
        if not masks[b].any():
            raise ValueError(f"empty person mask in image {b} of the batch: it cannot be in the "
                             "mask subset")
        dists.append(mask_distance(pts[b][:, sel[b]], masks[b]).ravel())
    if not dists:
        return float("nan"), float("nan"), 0
    d = np.concatenate(dists)
    is_in = d < inside
    return float(is_in.mean() * 100.0), float(np.where(is_in, 0.0, d).mean()), int(d.size)
