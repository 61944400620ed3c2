"""Reading a dataset's frames and mask images as its labels see them.

Part of the store contract: every stage decodes a row's image and mask through `read_image`.
BEDLAM stores the frames of its `closeup` scenes rotated: the PNG (and its mask) is 1280 × 720
but the labels refer to the frame turned 90° clockwise (720 × 1280, docs/formats.md). A file
whose name (relative to the dataset root, as the store records it) has a path component
containing `closeup` is turned on load; no other dataset names its files so.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

TURNED_MARK = "closeup"


def is_turned(name: str | Path) -> bool:
    """Whether the image or mask `name` (relative to its dataset root) is stored rotated."""
    return any(TURNED_MARK in part for part in Path(name).parts)


def turned_size(name: str | Path, size: tuple[int, int]) -> tuple[int, int]:
    """The (W, H) the labels see of a file whose header says `size` (W, H)."""
    return (size[1], size[0]) if is_turned(name) else size


def frame_size(root: str | Path, name: str | Path) -> tuple[int, int] | None:
    """(W, H) of `<root>/<name>` in the labels' frame, from the image header only (turned when
    `is_turned(name)`); None when the file is missing or unreadable."""
    try:
        with Image.open(Path(root) / name) as img:
            return turned_size(name, img.size)
    except (OSError, UnidentifiedImageError):
        return None


def read_image(root: str | Path, name: str | Path, flags: int = cv2.IMREAD_COLOR
               ) -> np.ndarray | None:
    """`<root>/<name>` decoded by `cv2.imread(flags)` in the labels' frame (turned 90° clockwise
    when `is_turned(name)`); None when the file is missing or unreadable."""
    image = cv2.imread(str(Path(root) / name), flags)
    if image is not None and is_turned(name):
        image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    return image
