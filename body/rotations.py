"""Rotation conversions: axis-angle, rotation matrices and the 6D representation
(docs/method.md §3).

The 6D representation (Zhou et al.) is the first two ROWS of the rotation matrix, flattened as
[R00, R01, R02, R10, R11, R12]; decoding applies Gram-Schmidt to those rows.

All functions take torch tensors batched over any leading shape, keep device and dtype, and are
differentiable everywhere, including the zero rotation (Taylor branches replace the closed forms
there, so values stay exact and gradients finite).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_TAYLOR = 1e-6  # squared angle (or squared quaternion sine) below which Taylor series are used
_EPS = 1e-12  # norm floor of the Gram-Schmidt normalisations


def _skew(v: Tensor) -> Tensor:
    """Cross-product matrix [v]× of v (..., 3) -> (..., 3, 3)."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    rows = [zero, -z, y, z, zero, -x, -y, x, zero]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues' formula, (..., 3) -> (..., 3, 3).

    R = I + A·[aa]× + B·[aa]×² with A = sin θ / θ and B = (1 − cos θ) / θ² = ½·(sin(θ/2) / (θ/2))²
    (the half-angle form has no cancellation at small θ).
    """
    theta2 = (aa * aa).sum(-1)
    small = theta2 < _TAYLOR
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()  # safe: no sqrt'(0)
    a = torch.where(small, 1 - theta2 / 6 + theta2**2 / 120, torch.sin(theta) / theta)
    half_sinc = torch.sin(theta / 2) / (theta / 2)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2**2 / 720, 0.5 * half_sinc**2)
    k = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def _matrix_to_quaternion(R: Tensor) -> Tensor:
    """Unit quaternion (w, x, y, z) with w ≥ 0 of R (..., 3, 3) -> (..., 4).

    Row i of `candidates` equals 4·q_i·q. The row with the largest diagonal entry 4·q_i² (≥ 1
    for a rotation) is normalised, so no formula divides by a small component (near 0 or π).
    """
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = R.flatten(-2).unbind(-1)
    candidates = torch.stack([
        torch.stack([1 + r00 + r11 + r22, r21 - r12, r02 - r20, r10 - r01], dim=-1),
        torch.stack([r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20], dim=-1),
        torch.stack([r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21], dim=-1),
        torch.stack([r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22], dim=-1),
    ], dim=-2)
    best = candidates.diagonal(dim1=-2, dim2=-1).argmax(-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    q = F.normalize(candidates.gather(-2, index).squeeze(-2), dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Inverse of `axis_angle_to_matrix`, (..., 3, 3) -> (..., 3), angle in [0, π].

    Goes through the quaternion q = (cos θ/2, sin θ/2 · axis): aa = 2·atan2(|v|, w) / |v| · v.
    """
    q = _matrix_to_quaternion(R)
    w, v = q[..., 0], q[..., 1:]
    n2 = (v * v).sum(-1)
    small = n2 < _TAYLOR
    n = torch.where(small, torch.ones_like(n2), n2).sqrt()
    w_near_one = torch.where(small, w, torch.ones_like(w))  # keeps 1/w finite off the branch
    r = n2 / w_near_one**2
    taylor = 2 / w_near_one * (1 - r / 3 + r**2 / 5)  # 2·atan(n/w)/n
    factor = torch.where(small, taylor, 2 * torch.atan2(n, w) / n)
    return factor[..., None] * v


def matrix_to_rot6d(R: Tensor) -> Tensor:
    """First two rows of R, (..., 3, 3) -> (..., 6) = [R00, R01, R02, R10, R11, R12]
    (docs/method.md §3)."""
    return R[..., :2, :].flatten(-2)


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """Gram-Schmidt decoding of the 6D representation, (..., 6) -> (..., 3, 3) (docs/method.md §3).

    b1 = a1/|a1|, b2 = normalise(a2 − (b1·a2)·b1), b3 = b1 × b2; R has rows b1, b2, b3.
    """
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = F.normalize(a1, dim=-1, eps=_EPS)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=_EPS)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def axis_angle_to_rot6d(aa: Tensor) -> Tensor:
    """Axis-angle (..., 3) -> 6D (..., 6)."""
    return matrix_to_rot6d(axis_angle_to_matrix(aa))


def rot6d_to_axis_angle(x: Tensor) -> Tensor:
    """6D (..., 6) -> axis-angle (..., 3)."""
    return matrix_to_axis_angle(rot6d_to_matrix(x))
