"""The pixel convention of masks and rasters, one home for training, stage one and evaluation.

- Pixel (row i, column j) of a raster has its centre at the point (x = j, y = i) (cv2's
  convention, as `body.cameras` for images and `body.raster` for rendered masks).
- The pixel of a point p is its nearest pixel centre, floor(p + 0.5) (halves round up).
- A point lies inside a raster of H × W pixels when 0 ≤ x ≤ W − 1 and 0 ≤ y ≤ H − 1 (between
  the first and the last pixel centre).
- A point lies on a mask when some mask pixel centre is within `INSIDE_MASK_PX` = 0.71 px of the
  exact point (≈ √(0.5² + 0.5²): a point anywhere in a mask pixel's square is on the mask).
- Crop-normalised coordinates x ∈ [−1, 1] (`body.cameras.crop_normalize`) map to the pixels of
  a size × size crop as u = (x + 1)·size/2, the map of `body.cameras.crop_matrix`.

Functions take numpy arrays or torch tensors and return the same kind, except `near_mask`
(torch, batched).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

# the library default of the rule; runs read `conventions.inside_mask_px` of pipelines.yaml, which
# a test keeps equal to it
INSIDE_MASK_PX = 0.71


def nearest_pixel(points: Array) -> Array:
    """The pixel (column, row) of points (..., 2) in pixel coordinates: floor(p + 0.5), float."""
    return (torch if isinstance(points, torch.Tensor) else np).floor(points + 0.5)


def crop_to_pixels(points: Array, size: int) -> Array:
    """Crop-normalised points (..., 2) -> pixel coordinates of the size × size crop."""
    return (points + 1) * (size / 2)


def inside_raster(points_px: Array, height: int, width: int) -> Array:
    """(...,) bool: points (..., 2) in pixel coordinates lie in [0, W − 1] × [0, H − 1]."""
    x, y = points_px[..., 0], points_px[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def near_mask(points_px: torch.Tensor, mask: torch.Tensor,
              radius: float = INSIDE_MASK_PX) -> torch.Tensor:
    """(B, P) bool: a pixel centre of mask (B, H, W) bool lies within `radius` px of the point.

    points_px (B, P, 2) in pixel coordinates. O(points): a centre within radius < 1 is one of the
    4 lattice points around the point, so 4 lookups replace a search over all mask pixels.
    Pixels outside the raster are off the mask; non-finite points are off the mask.
    """
    if not 0 <= radius < 1:
        raise ValueError(f"near_mask needs a radius in [0, 1) px, got {radius}")
    b, h, w = mask.shape
    p = torch.nan_to_num(points_px.detach(), nan=-2.0, posinf=-2.0, neginf=-2.0)
    p = p.clamp(-2.0, float(max(h, w)) + 1)  # far points: still off the raster, no overflow
    base = p.floor()
    flat = mask.reshape(b, h * w)
    hit = torch.zeros(p.shape[:-1], dtype=torch.bool, device=p.device)
    for dx in (0.0, 1.0):
        for dy in (0.0, 1.0):
            corner = base + torch.tensor([dx, dy], dtype=p.dtype, device=p.device)
            col, row = corner[..., 0], corner[..., 1]
            on_raster = (col >= 0) & (col <= w - 1) & (row >= 0) & (row <= h - 1)
            index = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).long()
            close = (p - corner).square().sum(-1) <= radius * radius
            hit |= on_raster & close & flat.gather(1, index)
    return hit
