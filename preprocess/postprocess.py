"""Stage one's computation after the detector, as one pure function (docs/method.md §2).

`postprocess` turns the detector heatmaps of some rows into what the store keeps of them: the
DARK-UDP 2D pose with max confidences, the multinomial heatmap samples with their values, each
sample's distance to the union person mask, and (training sets) the filter's reason codes. It
reads no file and keeps no state: `chunk_task` calls it on a chunk's rows, the post-processing
benchmark times it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from body.cameras import DetectorCrop
from stores.labels import LabelRows
from stores.masks import union_mask
from stores.schema import KEPT

from .filtering import filter_reasons
from .heatmaps import decode_dark_udp, row_uniforms, sample_heatmaps
from .mask_distance import DistanceField
from .settings import MethodSettings


@dataclass(frozen=True)
class RowResults:
    """The stored outputs of B rows, in the store's dtypes."""

    keypoints: np.ndarray       # (B, 17, 3) float32 image x, y and max confidence
    index: np.ndarray           # (B, 17, S) uint16 flat heatmap index of each sample
    value: np.ndarray           # (B, 17, S) float16 heatmap value at each sample
    mask_distance: np.ndarray   # (B, 17, S) float16 image px to the union mask, inf: no mask
    reason: np.ndarray          # (B,) uint8 filter reason (KEPT on test sets)


def postprocess(heatmaps: torch.Tensor, rows: LabelRows, masks: dict[str, np.ndarray],
                settings: MethodSettings, row_ids: np.ndarray) -> RowResults:
    """Results of B rows from their heatmaps (B, 17, 64, 48), on the heatmaps' device.

    rows: the B rows' labels; masks: mask image name → decoded grey image, for every non-empty
    `rows.mask`; row_ids: (B,) the rows' indices in their store, which key their random streams.
    """
    n, s = len(rows), settings.samples
    crop = DetectorCrop(rows.center.astype(np.float64), rows.scale.astype(np.float64))
    keypoints = detector_keypoints(heatmaps, crop)
    uniforms = torch.from_numpy(row_uniforms(settings.seed, settings.dataset, row_ids,
                                             samples=s)).to(heatmaps.device)
    drawn = sample_heatmaps(heatmaps, uniforms, settings.min_heatmap_value)
    index = drawn.index.cpu().numpy()
    points = crop.index_to_image(index.reshape(n, 17 * s))
    distance = mask_distances(rows.mask, points, masks, settings.mask_rule).reshape(n, 17, s)
    reason = np.full(n, KEPT, np.uint8)
    if settings.split == "train":
        reason = filter_reasons(keypoints, rows.kp2d_coco, rows.scale, rows.image_size,
                                settings.filter)
    return RowResults(keypoints, index.astype(np.uint16),
                      drawn.value.cpu().numpy().astype(np.float16),
                      distance.astype(np.float16), reason.astype(np.uint8))


def detector_keypoints(heatmaps: torch.Tensor, crop: DetectorCrop) -> np.ndarray:
    """(B, 17, 3) float32 image x, y and max confidence of heatmaps (B, 17, 64, 48) of the boxes
    of `crop`: the DARK-UDP pose, the store's `detector/keypoints`."""
    uv, conf = decode_dark_udp(heatmaps)
    xy = crop.heatmap_to_image(uv.double().cpu().numpy())
    return np.concatenate([xy, conf.cpu().numpy()[..., None]], -1).astype(np.float32)


def mask_distances(names: np.ndarray, points: np.ndarray, masks: dict[str, np.ndarray],
                   rule: dict) -> np.ndarray:
    """(B, P) float32 distances of each row's points (B, P, 2) to its union mask (row b's mask
    image `names[b]`, "" for none: inf): one exact distance transform per mask image, covering
    all its rows' points."""
    out = np.full(points.shape[:2], np.inf, np.float32)
    for name in np.unique(names[names != ""]):
        sel = np.flatnonzero(names == name)
        lo, hi = points[sel].min((0, 1)), points[sel].max((0, 1))
        field = DistanceField.from_mask(union_mask(masks[name], **rule),
                                        bounds=(lo[0] - 1, lo[1] - 1, hi[0] + 1, hi[1] + 1))
        out[sel] = field.at(points[sel])
    return out
