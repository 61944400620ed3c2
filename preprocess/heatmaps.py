"""Heatmap post-processing of stage one (docs/method.md §2): multinomial samples and the DARK-UDP
pose.

Everything works on batches of COCO heatmaps (B, J, H, W) on their own device and returns heatmap
coordinates (column u, row v); `body.cameras.DetectorCrop.heatmap_to_image` maps them to image
pixels. Row i of a batch depends only on its own heatmaps (and uniforms), never on the batch, and
on x86 CPUs its bits do not depend on the instruction set or the thread count either: no matrix
product (BLAS sums in an order chosen by shape and CPU), sums written out in a fixed order, logs
from `fixed_math` (stores/README.md, "Writing and resuming").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from body.cameras import DetectorCrop
from core import fixed_math
from core.seeding import stable_seed


def row_uniforms(seed: int, dataset: str, rows: Sequence[int], joints: int = 17,
                 samples: int = 150) -> np.ndarray:
    """(B, joints, samples) float64 uniforms in [0, 1); row i's block depends only on
    (seed, dataset, i) (docs/method.md §2): one Philox stream keyed by `stable_seed` per row."""
    blocks = [np.random.Generator(np.random.Philox(key=stable_seed(seed, dataset, int(i))))
              .random((joints, samples)) for i in rows]
    return np.stack(blocks) if blocks else np.zeros((0, joints, samples))


_ROWS_PER_BLOCK = 16  # (16, 17, 3072) float64 CDFs: 7 MB


@dataclass
class HeatmapSamples:
    """Multinomial samples of a batch of heatmaps (docs/method.md §2)."""

    index: torch.Tensor  # (B, J, S) int64 flat pixel index v·W + u, sorted ascending per joint
    value: torch.Tensor  # (B, J, S) float32 raw heatmap value at each sample


def _sampling_cdf(heatmaps: torch.Tensor, min_value: float) -> torch.Tensor:
    """(B, J, H·W) float64 cumulative weights: values < min_value (negatives included) count 0,
    an all-zero heatmap counts 1 everywhere (uniform). The 3072 float32 weights of a 64×48 map,
    when in [2⁻¹⁶, 2) (min_value = 0.05 in every profile), are multiples of 2⁻³⁹ summing below
    2¹³: every partial sum is exact in float64, whatever order the additions take."""
    maps = heatmaps.flatten(-2).float()
    cdf = torch.where(maps >= min_value, maps, 0.0).double().cumsum(-1)
    empty = cdf[..., -1] == 0
    if empty.any():
        cdf[empty] = torch.arange(1, maps.shape[-1] + 1, dtype=cdf.dtype, device=cdf.device)
    return cdf


def sample_heatmaps(heatmaps: torch.Tensor, uniforms: torch.Tensor,
                    min_value: float = 0.05) -> HeatmapSamples:
    """Draw S samples with replacement per joint from heatmaps (B, J, H, W) (docs/method.md §2).

    Each heatmap is a multinomial over its pixels (weights as in `_sampling_cdf`); sample s of
    joint j is the inverse CDF of uniforms[b, j, s] (B, J, S). The samples of each joint are
    returned sorted by pixel index: the multiset is the information, and sorted stores compress.
    Rows go through in blocks of `_ROWS_PER_BLOCK`, whose CDFs stay in the CPU cache.
    """
    if len(heatmaps) > _ROWS_PER_BLOCK:
        parts = [sample_heatmaps(heatmaps[i:i + _ROWS_PER_BLOCK],
                                 uniforms[i:i + _ROWS_PER_BLOCK], min_value)
                 for i in range(0, len(heatmaps), _ROWS_PER_BLOCK)]
        return HeatmapSamples(index=torch.cat([p.index for p in parts]),
                              value=torch.cat([p.value for p in parts]))
    cdf = _sampling_cdf(heatmaps, min_value)
    total = cdf[..., -1:]
    targets = uniforms.to(device=cdf.device, dtype=cdf.dtype) * total
    # u·total may round up to total; the largest float below it still selects a positive pixel.
    targets = torch.minimum(targets, torch.nextafter(total, torch.zeros_like(total)))
    index = torch.searchsorted(cdf, targets.contiguous(), right=True).sort(-1).values
    value = heatmaps.flatten(-2).float().gather(-1, index)
    return HeatmapSamples(index=index, value=value)


def _gaussian_kernel(size: int) -> list[float]:
    """size float64 taps of the normalised Gaussian; sigma = 0.3·((size − 1)/2 − 1) + 0.8, the
    rule of cv2.getGaussianKernel for sigma ≤ 0 (cv2 uses fixed tables for size ≤ 9 instead)."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = fixed_math.exp(-(x * x) / (2 * sigma * sigma)).tolist()
    total = math.fsum(taps)  # correctly rounded
    return [t / total for t in taps]


def _blur_taps(values: torch.Tensor, kernel: list[float], dim: int) -> torch.Tensor:
    """Σ_k kernel[k]·values[..., i + k, ...] along `dim` for every i with a full window: the
    terms added one by one in the order of k (never a BLAS product)."""
    n = values.shape[dim] - len(kernel) + 1
    acc = kernel[0] * values.narrow(dim, 0, n)
    for k, tap in enumerate(kernel[1:], 1):
        acc = acc + tap * values.narrow(dim, k, n)
    return acc


def _blurred_log_patch(heatmaps: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                       size: int) -> torch.Tensor:
    """(B, J, 3, 3) float64 log of the Gaussian-blurred heatmaps (zero outside the map, clamped
    to ≥ 1e-10) at the 3 × 3 pixels around (u, v) (B, J, 1). Only these nine values of the blur
    enter the Newton step, so only they are computed (from a (size + 2)² window, in float64, the
    separable blur as explicit ordered sums); DARK's rescale of the blurred map to the original
    maximum adds a constant to the log and cancels."""
    h, w = heatmaps.shape[-2:]
    r = size // 2 + 1
    kernel = _gaussian_kernel(size)
    span = torch.arange(-r, r + 1, device=heatmaps.device)
    rows = v[..., None] + span[:, None]  # (B, J, 2r+1, 1)
    cols = u[..., None] + span[None, :]  # (B, J, 1, 2r+1)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
    window = heatmaps.flatten(-2).gather(-1, index.flatten(-2)).unflatten(-1, inside.shape[-2:])
    window = torch.where(inside, window.double(), 0.0)
    # rows v−1..v+1, columns u−1..u+1
    patch = _blur_taps(_blur_taps(window, kernel, -1), kernel, -2)
    return fixed_math.log(patch.clamp_min(1e-10))


def _newton_offset(logs: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                   h: int, w: int) -> torch.Tensor:
    """(B, J, 2) float64 Newton step −H⁻¹·∇ from central differences of a 3 × 3 log patch
    (B, J, 3, 3); zero at the border and where the Hessian is not negative definite (which
    includes singular); clamped to ±1 px."""
    interior = ((u > 0) & (u < w - 1) & (v > 0) & (v < h - 1)).squeeze(-1)
    f = logs
    dx, dy = (f[..., 1, 2] - f[..., 1, 0]) / 2, (f[..., 2, 1] - f[..., 0, 1]) / 2
    dxx = f[..., 1, 2] - 2 * f[..., 1, 1] + f[..., 1, 0]
    dyy = f[..., 2, 1] - 2 * f[..., 1, 1] + f[..., 0, 1]
    dxy = (f[..., 2, 2] - f[..., 2, 0] - f[..., 0, 2] + f[..., 0, 0]) / 4
    det = dxx * dyy - dxy * dxy
    valid = interior & (dxx < 0) & (det > 0)
    safe_det = torch.where(valid, det, torch.ones_like(det))
    offset = torch.stack([dxy * dy - dyy * dx, dxy * dx - dxx * dy], -1) / safe_det[..., None]
    return torch.where(valid[..., None], offset, torch.zeros_like(offset)).clamp(-1, 1)


def decode_dark_udp(heatmaps: torch.Tensor,
                    blur_kernel: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Highest-likelihood 2D pose of heatmaps (B, J, H, W), DARK-UDP (docs/method.md §2).

    Argmax per joint (first one on ties); its raw value is the max confidence. Refinement: one
    Newton step on the log of the blurred heatmap (`_blurred_log_patch`, clamped to ≥ 1e-10) at
    the argmax.
    Returns ((B, J, 2) float32 heatmap coordinates (u, v), (B, J) float32 max confidence).
    """
    h, w = heatmaps.shape[-2:]
    if (h, w) != DetectorCrop.HEATMAP_SHAPE:
        raise ValueError(f"heatmaps must be {DetectorCrop.HEATMAP_SHAPE[0]}×"
                         f"{DetectorCrop.HEATMAP_SHAPE[1]} (DetectorCrop), got {h}×{w}")
    flat = heatmaps.flatten(-2)
    index = flat.argmax(-1, keepdim=True)
    conf = flat.gather(-1, index).squeeze(-1).float()
    peak = DetectorCrop.index_to_heatmap(index).long()  # (B, J, 1, 2), exact integers
    u, v = peak[..., 0], peak[..., 1]
    offset = _newton_offset(_blurred_log_patch(heatmaps, u, v, blur_kernel), u, v, h, w)
    uv = torch.cat([u, v], -1).double() + offset
    return uv.float(), conf
