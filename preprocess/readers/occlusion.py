"""The object-occlusion flag: the projected ground-truth body against the union person mask.

Every body vertex that projects into the image lands on a person pixel of the union mask unless
something that is not a person hides it (people hiding each other stay inside the union). A row
is object-occluded when more than `threshold` of its in-image vertices fall off the mask (after a
3 × 3 dilation that absorbs rounding at the silhouette). Each mask is decoded once.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stores.images import read_image
from stores.masks import union_mask


def read_union_mask(root: Path, name: str, **rule) -> np.ndarray | None:
    """The union person mask stored in the image file `<root>/<name>` (in the labels' frame,
    `stores.images`), by the dataset's `rule` (union_mask); None when the file is missing or
    unreadable."""
    gray = read_image(root, name, cv2.IMREAD_GRAYSCALE)
    return None if gray is None else union_mask(gray, **rule)


def off_mask_fraction(uv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,) fraction of each body's in-image projected vertices (N, V, 2) off the dilated mask."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    h, w = mask.shape
    col, row = np.rint(uv[..., 0]).astype(int), np.rint(uv[..., 1]).astype(int)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    off = inside & ~grown[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
    return off.sum(1) / np.maximum(inside.sum(1), 1)
