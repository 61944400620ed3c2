"""The model's input (docs/method.md §3), built by ONE function for training and evaluation.

`ModelInput` holds what `ProbabilisticHMR` reads for a person crop: the ImageNet-normalised RGB
crop, the detector's 2D pose in crop coordinates, the CLIFF box condition and the box, focal
length and image size that the camera needs. `model_input` builds one example from the crop's
pixels and the store's row; the DataLoader's default collate stacks examples into a batch of
the same type (a NamedTuple), and `to_device` moves any nest of them.

2D coordinates are crop-normalised with `body.cameras.crop_normalize` to the box the model sees
([−1, 1] over the square box). Training targets (`train.data.TrainingTargets`) and evaluation
extras (`eval.examples.EvalExtras`) are their own objects beside this one.

Image normalisation: one lookup table per channel. Training and evaluation differ today in how
the table's entries are rounded (`Normalisation`): training computes them in float64 and rounds
to float32, evaluation in float32 arithmetic; the two agree to 1 ulp (≤ 2.4e-7) and differ in
about 60 % of the 256 entries. Both are kept, so that no number changes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, TypeVar

import cv2
import numpy as np
import torch
from torch import Tensor

from body.cameras import DetectorCrop, cliff_bbox_condition, crop_normalize

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

Normalisation = Literal["float64", "float32"]  # arithmetic of the lookup table (module doc)
_LUTS: dict[str, list[np.ndarray]] = {
    "float64": [((np.arange(256) / 255 - m) / sd).astype(np.float32)
                for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD)],
    "float32": [(np.arange(256, dtype=np.float32) / 255 - m) / sd
                for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD)],
}


class ModelInput(NamedTuple):
    """One crop (unbatched shapes) or a batch (a leading B) of the model's input."""

    image: Tensor  # (3, S, S) float32, ImageNet-normalised RGB
    det_kp: Tensor  # (17, 3) float32: detector x, y normalised to the box, confidence
    bbox_cond: Tensor  # (3,) float32: `cliff_bbox_condition` of the box
    center: Tensor  # (2,) float32, image px
    scale: Tensor  # () float32, box side / 200
    focal: Tensor  # () float32, px
    img_size: Tensor  # (2,) float32, (W, H)

    def select(self, index) -> ModelInput:
        """The crops `index` (a mask or indices) of a batch."""
        return ModelInput(*(t[index] for t in self))


def normalize_image(planes: Sequence[np.ndarray],
                    normalisation: Normalisation = "float64") -> np.ndarray:
    """R, G, B uint8 planes (S, S) -> (3, S, S) float32, ImageNet mean/std (one LUT per plane)."""
    out = np.empty((3,) + planes[0].shape, np.float32)
    for c, plane in enumerate(planes):
        cv2.LUT(plane, _LUTS[normalisation][c], dst=out[c])
    return out


def denormalize_image(image: Tensor) -> np.ndarray:
    """Inverse of the image normalisation: (3, S, S) -> (S, S, 3) float RGB 0–255."""
    x = image.detach().cpu().numpy().transpose(1, 2, 0)
    return (x * IMAGENET_STD + IMAGENET_MEAN) * 255


def crop_rgb(image: Tensor) -> np.ndarray:
    """(S, S, 3) RGB in [0, 1] of a normalised model crop (3, S, S), for matplotlib."""
    return np.clip(denormalize_image(image.float()) / 255, 0, 1)


def samples_to_crop(index: np.ndarray, detector: DetectorCrop, center: np.ndarray,
                    scale: np.ndarray) -> np.ndarray:
    """Stored heatmap samples (flat indices v·W + u of the detector's grid on `detector`'s box,
    (..., N)) -> heatmap pixel centres normalised to the box (center, scale), (..., N, 2)
    float64."""
    return crop_normalize(detector.index_to_image(index), center, scale)


def pose_condition_input(det: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """`det_kp` as c_P reads it: the detector's x, y (image px) normalised to the box (center,
    scale), then its confidence; det (..., 17, 3), center (..., 2), scale (...)."""
    return np.concatenate([crop_normalize(det[..., :2], center, scale), det[..., 2:]], -1)


def model_input(rgb: Sequence[np.ndarray], det: np.ndarray, center: np.ndarray,
                scale: np.ndarray, focal: np.floating, img_size: np.ndarray,
                normalisation: Normalisation = "float64") -> ModelInput:
    """The model's input for one crop of box (center (2,), scale ()) float64.

    rgb: the crop's R, G, B uint8 planes (S, S); det (17, 3) detector x, y (image px) and
    confidence; focal float32 (px); img_size (2,) float32 (W, H)."""
    det_kp = pose_condition_input(det, center, scale)
    w, h = img_size
    box = np.concatenate([cliff_bbox_condition(center, scale, w, h, focal), center,
                          [scale, focal], img_size]).astype(np.float32)
    return ModelInput(
        image=torch.from_numpy(normalize_image(rgb, normalisation)),
        det_kp=torch.from_numpy(det_kp.astype(np.float32)),
        bbox_cond=torch.from_numpy(box[0:3]),
        center=torch.from_numpy(box[3:5]),
        scale=torch.from_numpy(box[5:6].reshape(())),
        focal=torch.from_numpy(box[6:7].reshape(())),
        img_size=torch.from_numpy(box[7:9]),
    )


T = TypeVar("T")


def to_device(batch: T, device: torch.device | str, non_blocking: bool = False) -> T:
    """`batch` (a tensor or a NamedTuple nest of them, None kept) with every tensor on
    `device`."""
    if batch is None:
        return None
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    return type(batch)(*(to_device(x, device, non_blocking) for x in batch))
