"""Camera and crop conventions (docs/method.md §2-§3).

Conventions
-----------
- Image coordinates are pixels, x right, y down, pixel centres at integers (cv2's convention).
- A person box is (center (..., 2) px, scale (...)): a square of side b = 200·scale around the
  centre (HMR/CLIFF). From a tight box, or from projected joints (BEDLAM-CLIFF rule):
  center = box middle, scale = max side / 200 · 1.2.
- Model crop, 224×224 (docs/method.md §3): crop-normalised coordinates 2·(p − c)/b span [−1, 1] over
  the square box. The crop pixel map sends the box's left/top edge to 0 and its right/bottom edge
  to `size`: u = (crop_normalize(p) + 1)·size/2.
- Detector crop and heatmap (docs/method.md §2): `DetectorCrop`, the only place that knows that
  grid.
- Full-image camera (docs/method.md §3, CLIFF): K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]] with
  f = √(W² + H²) when unknown; the weak-perspective crop camera (s, tx, ty) becomes the
  translation t = [tx + 2(cx − W/2)/(s·b), ty + 2(cy − H/2)/(s·b), 2f/(s·b)].
- Shapes: points are (..., N, 2); box arrays (..., 2) and (...) broadcast as (..., 1, 2).

Coordinate functions take numpy arrays or torch tensors (box arrays must be arrays, not python
scalars; do not mix the two libraries in one call) and return the same kind. Functions that build
cv2 affine matrices or warp images work in numpy.
"""
from __future__ import annotations

from typing import Union

import cv2
import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]
Scalar = Union[float, Array]


def _xp(*values: object):
    """The array library of the inputs: torch if any is a tensor, else numpy."""
    return torch if any(isinstance(v, torch.Tensor) for v in values) else np


def _stack(parts: list) -> Array:
    """Broadcast the parts (arrays, tensors or scalars) to one shape; stack on a new last axis."""
    tensors = [p for p in parts if isinstance(p, torch.Tensor)]
    if tensors:
        ref = tensors[0]
        parts = [p if isinstance(p, torch.Tensor)
                 else torch.as_tensor(p, dtype=ref.dtype, device=ref.device) for p in parts]
        return torch.stack(torch.broadcast_tensors(*parts), dim=-1)
    return np.stack(np.broadcast_arrays(*parts), axis=-1)


def _scale_xy(points: Array, sx: Scalar, sy: Scalar) -> Array:
    """Multiply the x and y columns of points (..., 2) by sx and sy."""
    return _stack([points[..., 0] * sx, points[..., 1] * sy])


def _diagonal_affine(gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(..., 2, 3) affine matrices of u = gain·x + offset per axis, from (..., 2) gains/offsets."""
    m = np.zeros(gain.shape[:-1] + (2, 3))
    m[..., 0, 0], m[..., 1, 1] = gain[..., 0], gain[..., 1]
    m[..., :, 2] = offset
    return m


def box_to_xyxy(center: Array, scale: Array) -> Array:
    """Corners (..., 4) = [x0, y0, x1, y1] of the square box of side 200·scale."""
    half = 100 * scale
    cx, cy = center[..., 0], center[..., 1]
    return _stack([cx - half, cy - half, cx + half, cy + half])


def xyxy_to_box(xyxy: Array, rescale: float = 1.2) -> tuple[Array, Array]:
    """(center (..., 2), scale (...)) of a box [x0, y0, x1, y1]; scale = max side/200 · rescale."""
    x0, y0, x1, y1 = (xyxy[..., k] for k in range(4))
    center = _stack([(x0 + x1) / 2, (y0 + y1) / 2])
    scale = _xp(xyxy).maximum(x1 - x0, y1 - y0) / 200 * rescale
    return center, scale


def box_from_keypoints(kp: Array, rescale: float = 1.2) -> tuple[Array, Array]:
    """Box around keypoints (..., N, ≥2) by the BEDLAM-CLIFF rule (max side / 200 · rescale)."""
    xp = _xp(kp)
    xy = kp[..., :2]
    return xyxy_to_box(xp.concatenate([xp.amin(xy, -2), xp.amax(xy, -2)], -1), rescale)


def crop_normalize(points: Array, center: Array, scale: Array) -> Array:
    """Image points (..., N, 2) -> model-crop coordinates 2·(p − c)/b, [−1, 1] over the box."""
    return (points - center[..., None, :]) / (100 * scale[..., None, None])


def crop_denormalize(points: Array, center: Array, scale: Array) -> Array:
    """Inverse of `crop_normalize`: c + p·b/2."""
    return center[..., None, :] + points * (100 * scale[..., None, None])


def crop_matrix(center: Array, scale: Array, size: int = 224) -> np.ndarray:
    """Affine image -> crop-pixel map (..., 2, 3): u = (crop_normalize(p) + 1)·size/2 (numpy)."""
    center, scale = np.asarray(center, dtype=float), np.asarray(scale, dtype=float)
    gain = np.repeat((size / (200 * scale))[..., None], 2, axis=-1)
    return _diagonal_affine(gain, size / 2 - gain * center)


def crop_image(img: np.ndarray, center: Array, scale: Array, size: int = 224) -> np.ndarray:
    """The size×size model crop of one box (bilinear, zero border)."""
    return cv2.warpAffine(img, crop_matrix(center, scale, size), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class DetectorCrop:
    """The pose detector's crop and heatmap grid for person boxes (docs/method.md §2).

    Field of view: height S = b and width S_w = 0.75·b (the central 75 % of the square box's
    width), centred on the box centre. UDP grid: the first and last pixel centres of the 256×192
    input and of the 64×48 heatmap lie on the field of view's edges, so a grid of n pixels has the
    step extent/(n − 1): heatmap column u ↔ x = cx − S_w/2 + u·S_w/47,
    row v ↔ y = cy − S/2 + v·S/63.

    Attributes: `origin` (..., 2), the top-left corner of the field of view, and `extent`
    (..., 2) = (S_w, S), same library as the box.
    """

    INPUT_SHAPE = (256, 192)   # (rows, columns) of a detector input
    HEATMAP_SHAPE = (64, 48)   # (rows, columns) of one joint's heatmap
    HEATMAP_CELLS = HEATMAP_SHAPE[0] * HEATMAP_SHAPE[1]  # flat indices run over 0 … 3071
    ASPECT = 0.75  # width / height of the field of view

    def __init__(self, center: Array, scale: Array):
        side = 200 * scale
        self.extent = _stack([self.ASPECT * side, side])
        self.origin = center - self.extent / 2

    def _fraction(self, xy: Array) -> Array:
        """Image points -> place in the field of view: 0 at its top-left, 1 at its bottom-right."""
        return (xy - self.origin[..., None, :]) / self.extent[..., None, :]

    def _to_grid(self, xy: Array, hw: tuple[int, int]) -> Array:
        return _scale_xy(self._fraction(xy), hw[1] - 1, hw[0] - 1)

    def _from_grid(self, grid: Array, hw: tuple[int, int]) -> Array:
        fraction = _scale_xy(grid, 1 / (hw[1] - 1), 1 / (hw[0] - 1))
        return self.origin[..., None, :] + fraction * self.extent[..., None, :]

    def heatmap_to_image(self, uv: Array) -> Array:
        """Heatmap pixels (column u, row v) (..., N, 2) -> image points (..., N, 2)."""
        return self._from_grid(uv, self.HEATMAP_SHAPE)

    def image_to_heatmap(self, xy: Array) -> Array:
        """Image points (..., N, 2) -> heatmap pixels (column, row) (..., N, 2)."""
        return self._to_grid(xy, self.HEATMAP_SHAPE)

    @classmethod
    def index_to_heatmap(cls, index: Array) -> Array:
        """Flat heatmap indices v·W + u (...) -> heatmap pixels (column u, row v) (..., 2):
        float64 for numpy, float32 for torch. The stores persist heatmap samples this way."""
        width = cls.HEATMAP_SHAPE[1]
        if isinstance(index, torch.Tensor):
            return torch.stack([index % width, torch.div(index, width, rounding_mode="floor")],
                               -1).float()
        index = np.asarray(index, np.int64)
        return np.stack([index % width, index // width], -1).astype(np.float64)

    @classmethod
    def heatmap_to_index(cls, uv: Array) -> Array:
        """Heatmap pixels (column, row) (..., 2) -> flat index v·W + u of the nearest pixel
        (rounded half to even, clipped to the grid); int64."""
        h, w = cls.HEATMAP_SHAPE
        lib = _xp(uv)
        u = lib.clip(lib.round(uv[..., 0]), 0, w - 1)
        v = lib.clip(lib.round(uv[..., 1]), 0, h - 1)
        index = v * w + u
        return index.long() if lib is torch else index.astype(np.int64)

    def index_to_image(self, index: Array) -> Array:
        """Flat heatmap indices (..., N) -> image points (..., N, 2) (the pixel centres), in the
        box's dtype (a float64 box gives the float64 points of numpy, torch alike)."""
        uv = self.index_to_heatmap(index)
        if isinstance(uv, torch.Tensor) and isinstance(self.origin, torch.Tensor):
            uv = uv.to(self.origin.dtype)
        return self.heatmap_to_image(uv)

    def image_to_index(self, xy: Array) -> Array:
        """Image points (..., N, 2) -> flat index (..., N) of the nearest heatmap pixel."""
        return self.heatmap_to_index(self.image_to_heatmap(xy))

    def input_to_image(self, ij: Array) -> Array:
        """Detector-input pixels (column i, row j) (..., N, 2) -> image points (..., N, 2)."""
        return self._from_grid(ij, self.INPUT_SHAPE)

    def image_to_input(self, xy: Array) -> Array:
        """Image points (..., N, 2) -> detector-input pixels (column, row) (..., N, 2)."""
        return self._to_grid(xy, self.INPUT_SHAPE)

    def contains(self, xy: Array) -> Array:
        """Boolean (..., N): the image point lies in the field of view (edges included)."""
        fraction = self._fraction(xy)
        return (fraction >= 0).all(-1) & (fraction <= 1).all(-1)

    def input_matrix(self) -> np.ndarray:
        """Affine image -> detector-input map (..., 2, 3) for cv2.warpAffine (numpy)."""
        h, w = self.INPUT_SHAPE
        origin, extent = np.asarray(self.origin, dtype=float), np.asarray(self.extent, dtype=float)
        gain = np.array([w - 1, h - 1]) / extent
        return _diagonal_affine(gain, -gain * origin)

    def crop(self, img: np.ndarray) -> np.ndarray:
        """The 256×192 detector input of a single box (bilinear, zero border)."""
        m = self.input_matrix()
        if m.shape != (2, 3):
            raise ValueError(f"crop() needs a single box, got boxes of shape {m.shape[:-2]}")
        h, w = self.INPUT_SHAPE
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def default_focal(img_w: Scalar, img_h: Scalar) -> Scalar:
    """Focal length when unknown: the image diagonal √(W² + H²) (docs/method.md §3)."""
    return (img_w**2 + img_h**2) ** 0.5


def cliff_bbox_condition(center: Array, scale: Array, img_w: Scalar, img_h: Scalar,
                         focal: Scalar) -> Array:
    """CLIFF box condition c_B (..., 3) = [(cx − W/2)/f, (cy − H/2)/f, b/f] (docs/method.md §3)."""
    return _stack([(center[..., 0] - img_w / 2) / focal,
                   (center[..., 1] - img_h / 2) / focal,
                   200 * scale / focal])


def weak_perspective_to_translation(cam: Array, center: Array, scale: Array, img_w: Scalar,
                                    img_h: Scalar, focal: Scalar) -> Array:
    """Crop camera (s, tx, ty) (..., 3) -> full-image camera translation (..., 3)
    (docs/method.md §3).

    t = [tx + 2(cx − W/2)/(s·b), ty + 2(cy − H/2)/(s·b), 2f/(s·b)]: with K from `intrinsics`, a
    point X with X_z = 0 projects to c + s·(X_xy + (tx, ty))·b/2, its weak-perspective image.
    """
    s, tx, ty = cam[..., 0], cam[..., 1], cam[..., 2]
    sb = s * 200 * scale
    return _stack([tx + 2 * (center[..., 0] - img_w / 2) / sb,
                   ty + 2 * (center[..., 1] - img_h / 2) / sb,
                   2 * focal / sb])


def intrinsics(focal: Scalar, img_w: Scalar, img_h: Scalar) -> Array:
    """Camera matrices (..., 3, 3) K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]] (docs/method.md §3)."""
    f, zero, one = focal, 0 * focal, 0 * focal + 1
    k = _stack([f, zero, img_w / 2, zero, f, img_h / 2, zero, zero, one])
    return k.reshape(k.shape[:-1] + (3, 3))


def perspective_projection(points: Array, K: Array) -> Array:
    """Pinhole projection of camera-frame points (..., N, 3) with K (..., 3, 3) -> (..., N, 2)."""
    h = points @ K.swapaxes(-1, -2)
    return h[..., :2] / h[..., 2:]
