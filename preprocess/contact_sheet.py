"""A contact sheet of the synthetic world: detector crops with the union person mask, the
simulated detector's heatmaps and the ground-truth joints, so a person can look at the world."""
from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from body.cameras import DetectorCrop  # noqa: E402
from body.detector import CropRequest  # noqa: E402
from stores.images import read_image  # noqa: E402
from stores.labels import LabelRows  # noqa: E402
from synthetic.detector import SyntheticDetector  # noqa: E402

from .readers.bedlam import MASK_RULE  # noqa: E402
from .readers.occlusion import read_union_mask  # noqa: E402


def _tile(root: Path, rows: LabelRows, i: int, detector: SyntheticDetector) -> np.ndarray:
    crop = DetectorCrop(rows.center[i], rows.scale[i])
    image = read_image(root, rows.image[i])[:, :, ::-1]
    mask = read_union_mask(root, rows.mask[i], **MASK_RULE).astype(np.uint8) * 255
    rgb = crop.crop(image).astype(np.float32) / 255
    mask_crop = crop.crop(np.repeat(mask[:, :, None], 3, 2))[:, :, 0] > 127
    heat = detector(rgb[None], [CropRequest(root / rows.image[i], rows.center[i],
                                            float(rows.scale[i]))])[0]
    heat_up = cv2.resize(np.clip(heat, 0, 1).max(0), (rgb.shape[1], rgb.shape[0]))
    tile = rgb * 0.6
    tile[mask_crop] += np.array([0.0, 0.25, 0.0])  # union person mask in green
    tile += plt.cm.inferno(heat_up)[:, :, :3] * heat_up[:, :, None] * 0.8
    joints = crop.image_to_input(rows.kp2d_coco[i])
    tile = (np.clip(tile, 0, 1) * 255).astype(np.uint8).copy()
    for x, y in joints:
        cv2.circle(tile, (int(round(x)), int(round(y))), 2, (80, 200, 255), -1)
    return tile


def write_contact_sheet(root: Path, rows: LabelRows, out: Path, n: int = 24,
                        seed: int = 0) -> Path:
    """Write `out` (PNG): n crops, half of them object-occluded when there are enough."""
    rng = np.random.default_rng(seed)
    occluded, clear = np.flatnonzero(rows.object_occluded), np.flatnonzero(~rows.object_occluded)
    k = min(len(occluded), n // 2)
    picks = np.concatenate([rng.choice(occluded, k, replace=False),
                            rng.choice(clear, min(len(clear), n - k), replace=False)])
    detector = SyntheticDetector()
    tiles = [_tile(root, rows, int(i), detector) for i in picks]
    cols = 8
    rows_n = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(cols * 1.6, 2.1 * rows_n))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, tile, i in zip(np.ravel(axes), tiles, picks):
        ax.imshow(tile)
        ax.set_title(("occluded " if rows.object_occluded[i] else "") + f"#{i}", fontsize=6)
    fig.suptitle("SYNTHETIC world: detector crops, union person mask (green), simulated "
                 "heatmaps, ground-truth joints (blue)", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
