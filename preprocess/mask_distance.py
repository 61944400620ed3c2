"""Distance from heatmap samples to the union person mask (docs/method.md §2).

Semantics: the distance of an image point p is the Euclidean distance, in image pixels, from its
pixel round(p) (`body.pixels.nearest_pixel`: floor(p + 0.5)) to the nearest person
pixel; 0 on the mask, +inf when the image has no person pixel. Pixels outside the image are never
person pixels. A sample counts as outside the mask when its distance is > 0.71 px.

`DistanceField` computes it once per image with an exact Euclidean distance transform over the
image padded to cover the detector fields of view of the image's crops, then looks samples up.
Exact means every value is the float32 rounding of √(integer squared distance), the same bits
whatever the padding, the thread count or the CPU: OpenCV's own algorithm gives that, but with
one OpenCV thread it hands the work to Intel IPP, whose CPU-specific code does not (values off
by an ulp), so IPP is switched off around the call.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from body.pixels import nearest_pixel


def _covering_region(shape: tuple[int, int], bounds: tuple[float, float, float, float] | None
                     ) -> tuple[int, int, int, int]:
    """Integer pixel box [x0, x1) × [y0, y1) holding the image and round(p) of all p in bounds."""
    h, w = shape
    if bounds is None:
        return 0, 0, w, h
    bx0, by0, bx1, by1 = bounds
    if not bx0 <= bx1 or not by0 <= by1:
        raise ValueError(f"bounds must be (x0, y0, x1, y1) with x0 ≤ x1, y0 ≤ y1, got {bounds}")
    x0, y0, x1, y1 = (int(nearest_pixel(np.float64(v))) for v in (bx0, by0, bx1, by1))
    return min(0, x0), min(0, y0), max(w, x1 + 1), max(h, y1 + 1)


def _exact_distance_transform(background: np.ndarray) -> np.ndarray:
    """(rows, cols) float32 distance of each non-zero pixel to the nearest zero pixel."""
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        return cv2.distanceTransform(background, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    finally:
        cv2.ipp.setUseIPP(use_ipp)


@dataclass(frozen=True)
class DistanceField:
    """Exact distance to the nearest mask pixel at every integer pixel of a (padded) region."""

    origin: tuple[int, int]  # image pixel (x, y) of field[0, 0]
    field: np.ndarray        # (rows, cols) float32 distances in px, +inf if the mask is empty

    @classmethod
    def from_mask(cls, mask: np.ndarray,
                  bounds: tuple[float, float, float, float] | None = None) -> "DistanceField":
        """mask (H, W) bool, True = person. bounds (x0, y0, x1, y1) image px that must be covered
        (may extend beyond the image; the mask is empty there)."""
        mask = np.asarray(mask, dtype=bool)
        x0, y0, x1, y1 = _covering_region(mask.shape, bounds)
        if not mask.any():
            return cls((x0, y0), np.full((y1 - y0, x1 - x0), np.inf, np.float32))
        # distanceTransform measures, at each non-zero pixel, the distance to the nearest zero.
        background = np.ones((y1 - y0, x1 - x0), np.uint8)
        background[-y0:mask.shape[0] - y0, -x0:mask.shape[1] - x0] = ~mask
        return cls((x0, y0), _exact_distance_transform(background))

    def at(self, xy: np.ndarray) -> np.ndarray:
        """(...,) float32 distances for image points (..., 2). Points whose pixel lies outside the
        covered region (or that are not finite) raise ValueError: that is a caller bug."""
        xy = np.asarray(xy, dtype=np.float64)
        pixel = nearest_pixel(xy) - self.origin
        rows, cols = self.field.shape
        inside = np.isfinite(pixel).all(-1)
        inside &= (pixel >= 0).all(-1) & (pixel[..., 0] < cols) & (pixel[..., 1] < rows)
        if not inside.all():
            bad = xy[~inside][0]
            raise ValueError(f"point {bad} lies outside the region covered by the distance field "
                             f"(origin {self.origin}, {cols}×{rows} px)")
        pixel = pixel.astype(np.intp)
        return self.field[pixel[..., 1], pixel[..., 0]]
