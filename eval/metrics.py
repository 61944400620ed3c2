"""Evaluation metrics (SPEC.md §6; paper Sec. 5 and supplementary).

Units: 3D inputs are in metres and 3D errors are returned in mm; 2D inputs and outputs are pixels
of the 256 × 256 crop. The hypotheses of an image are slot 0 = the mode (z = 0), then the random
samples. Every metric is one batched tensor expression (no Python loops over images, hypotheses
or joints), keeps the device of its inputs and works in their dtype; the exception is
`heatmap_wasserstein`, an exact assignment per (image, joint) by scipy on the CPU.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from body.joints import H36M_TO_LSP14, PELVIS_3DPW_H36M, PELVIS_EMDB_SMPL24

MM_PER_M = 1000.0
PROTOCOLS = ("emdb", "3dpw")
# A projected sample lies inside the person mask when its distance is ≤ this (px; SPEC.md §2, §6).
INSIDE_MASK_PX = 0.71


# ---------------------------------------------------------------- distribution accuracy

def procrustes_align(pred: Tensor, gt: Tensor) -> Tensor:
    """Similarity Procrustes of pred onto gt, per sample (SPEC.md §6 "PA-MPJPE").

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
    """MPJPE (SPEC.md §6): pred, gt (..., J, 3) in metres, already pelvis-centred by the caller
    (`body.joints.center_on_pelvis`); returns (...) mean joint error in mm."""
    return _mean_distance_mm(pred, gt)


def pa_mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """PA-MPJPE (SPEC.md §6): MPJPE (mm) after `procrustes_align` of each sample; (...)."""
    return _mean_distance_mm(procrustes_align(pred, gt), gt)


def pve(pred_verts: Tensor, gt_verts: Tensor) -> Tensor:
    """PVE (SPEC.md §6): pred_verts, gt_verts (..., V, 3) metres, pelvis-centred by the caller;
    returns (...) mean vertex error in mm."""
    return _mean_distance_mm(pred_verts, gt_verts)


def protocol_joints(verts: Tensor, regressor: Tensor, protocol: str) -> tuple[Tensor, Tensor]:
    """Evaluation joints and pelvis of SMPL vertices (SPEC.md §6, FORMATS.md "Body models").

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


def min_of_n(errors: Tensor) -> Tensor:
    """Best of N (SPEC.md §6 "minimum over 100 hypotheses"): errors (B, N) → (B,) minimum."""
    return errors.min(-1).values


def min_of_n_curve(errors: Tensor, ns: Sequence[int]) -> dict[int, float]:
    """Error against the number of hypotheses (SPEC.md §6, Fig. S1).

    errors (B, N_max), slot 0 = the mode (the first hypothesis). For each n in ns (1 ≤ n ≤ N_max)
    the mean over images of the minimum over the first n hypotheses; non-increasing in n.
    """
    n_max = errors.shape[-1]
    bad = [n for n in ns if not 1 <= n <= n_max]
    if bad:
        raise ValueError(f"every n must lie in [1, {n_max}], got {bad}")
    curve = errors.cummin(-1).values.mean(0)  # (N_max,)
    return {int(n): float(curve[n - 1]) for n in ns}


# ---------------------------------------------------------------- consistency and diversity

def keypoint_2d_error(pred_2d: Tensor, gt_2d: Tensor, visible: Tensor) -> Tensor:
    """2DKP error (SPEC.md §6 "Consistency"): mean px distance over the visible joints.

    pred_2d (B, N, 17, 2) projected hypotheses, gt_2d (B, 17, 2), visible (B, 17) bool (detector
    confidence > 0.5), all in 256-crop pixels. Returns (B, N); rows of images without any visible
    joint are NaN (drop them with `torch.nanmean` or `~torch.isnan`). Invisible ground truth (which
    may hold NaN) does not reach the value.
    """
    dist = torch.linalg.vector_norm(pred_2d - gt_2d[:, None], dim=-1)  # (B, N, 17)
    vis = visible[:, None, :].expand_as(dist)
    total = torch.where(vis, dist, torch.zeros_like(dist)).sum(-1)
    count = vis.sum(-1).to(dist.dtype)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, torch.nan))


def spread_3d(joints: Tensor, joints_mask: Tensor) -> Tensor:
    """3DKP spread (SPEC.md §6 "Diversity"), a scalar in mm.

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

def _stack_fields(distance_fields: Sequence[np.ndarray] | Tensor, device) -> Tensor:
    if isinstance(distance_fields, Tensor):
        return distance_fields.to(device)
    return torch.as_tensor(np.stack([np.asarray(f) for f in distance_fields]), device=device)


def perc_in_min_dist(points_px: Tensor, distance_fields: Sequence[np.ndarray] | Tensor,
                     invisible: Tensor, outside: float = INSIDE_MASK_PX) -> tuple[float, float]:
    """PercIn and MinDist (SPEC.md §6 "Plausibility", paper Table 2).

    points_px (B, N, J, 2) projected samples (x, y) in 256-crop pixels; distance_fields (B, H, W)
    per-image exact distance (px) to the person mask at each crop pixel; invisible (B, J) bool.
    A point reads the field at its pixel floor(p + 0.5) (as `preprocess.mask_distance`), clipped
    into the field. Over every sample of every invisible joint: PercIn = % with distance
    ≤ `outside`, MinDist = mean distance (px). (NaN, NaN) when no joint is invisible; a
    non-finite distance (an empty mask) raises ValueError: such images are not in the subset.
    """
    fields = _stack_fields(distance_fields, points_px.device)
    b, h, w = fields.shape
    pixel = torch.floor(points_px.detach() + 0.5)
    col = pixel[..., 0].clamp(0, w - 1).long()  # (B, N, J)
    row = pixel[..., 1].clamp(0, h - 1).long()
    image = torch.arange(b, device=fields.device)[:, None, None].expand_as(col)
    dist = fields[image, row, col]  # (B, N, J)
    dist = dist[invisible[:, None, :].expand_as(dist)].double()
    if dist.numel() == 0:
        return float("nan"), float("nan")
    if not torch.isfinite(dist).all():
        raise ValueError("non-finite mask distance (empty person mask?) among invisible joints")
    return float((dist <= outside).double().mean() * 100.0), float(dist.mean())
