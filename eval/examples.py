"""Test examples: the un-augmented model crop of every row of a test store, with what the
model's condition and the metrics need (crops come from the store's context cache, so no full
frame is decoded)."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from body.cameras import DetectorCrop, crop_matrix
from stores.context_cache import build_context_cache, context_to_crop, open_context_cache
from stores.store import Store
from train.inputs import ModelInput, model_input, samples_to_crop

EVAL_CROP = 256  # 2D metrics are in the pixels of a 256 crop (docs/method.md §6)


def to_eval_px(points: torch.Tensor) -> torch.Tensor:
    """Crop-normalised points ([−1, 1]², any leading shape) → pixels of the `EVAL_CROP` crop."""
    return (points + 1) * EVAL_CROP / 2


def crop_from_context(context: np.ndarray, to_context: np.ndarray, center: np.ndarray,
                      scale: np.floating, crop_size: int) -> np.ndarray:
    """The (S, S, 3) uint8 model crop of a box (center, scale) from its context crop (C, C, ≥3)
    (RGB first) cut with the image → context map `to_context` (2, 3)."""
    crop = context_to_crop(crop_matrix(center, scale, crop_size), to_context)
    return cv2.warpAffine(np.ascontiguousarray(context[..., :3]), crop, (crop_size,) * 2,
                          flags=cv2.INTER_LINEAR)


def eval_input(rgb: np.ndarray, det: np.ndarray, center: np.ndarray, scale: np.floating,
               focal: np.floating, img_size: np.ndarray) -> ModelInput:
    """The un-augmented `ModelInput` of a test crop rgb (S, S, 3) uint8, with the detector's pose
    det (17, 3) image px + confidence (`model_input`)."""
    # evaluation's image table is computed in float32 (train.inputs, "Image normalisation")
    return model_input(cv2.split(rgb), det, center, np.asarray(scale), focal, img_size,
                       normalisation="float32")


class EvalExtras(NamedTuple):
    """What the metrics need beside the model's input, for one test crop (or a batch)."""

    mask256: torch.Tensor  # (256, 256) bool crop of the union person mask
    has_mask: torch.Tensor  # () bool
    hm_samples: torch.Tensor  # (17, 150, 2) float32 the stored heatmap samples, crop coordinates
    row: torch.Tensor  # () int64


class TestExample(NamedTuple):
    """One test crop (or a collated batch): the model's input and the metrics' extras."""

    inputs: ModelInput
    extras: EvalExtras


class TestExamples(Dataset):
    """Row i of a test store as a `TestExample`: the un-augmented crop's `ModelInput` (the
    builder training uses) and the `EvalExtras` (heatmap samples in crop coordinates, [−1, 1],
    heatmap pixel centres)."""

    def __init__(self, store_path: str | Path, crop_size: int = 224,
                 context_factor: float = 1.25, workers: int = 2) -> None:
        # refuses (StoreError, one line) a store that is not complete and verified
        build_context_cache(store_path, crop_size, context_factor, workers=workers)
        self.store = Store(store_path)
        self.cache_path = Path(store_path)
        self.crop_size = crop_size
        r = self.store.read
        self.center = r("labels/center").astype(np.float64)
        self.scale = r("labels/scale").astype(np.float64)
        self.focal = r("labels/cam_int")[:, 0, 0].astype(np.float32)
        self.img_size = r("labels/image_size").astype(np.float32)
        self.det = r("detector/keypoints").astype(np.float64)
        self.has_mask = r("labels/mask") != ""
        self._cache = None

    def __len__(self) -> int:
        return self.store.n_rows

    def __getitem__(self, i: int) -> TestExample:
        if self._cache is None:
            self._cache = open_context_cache(self.cache_path)
        context = self._cache.context(i)  # (C, C, 4): RGB and the 0/1 union mask
        c, s = self.center[i], self.scale[i]
        to_context = self._cache.matrix(c, s)
        rgb = crop_from_context(context, to_context, c, s, self.crop_size)
        crop256 = context_to_crop(crop_matrix(c, s, EVAL_CROP), to_context)
        mask256 = cv2.warpAffine(np.ascontiguousarray(context[..., 3]), crop256,
                                 (EVAL_CROP,) * 2, flags=cv2.INTER_NEAREST) > 0
        index, _ = self._cache.samples(i)
        hm = samples_to_crop(index, DetectorCrop(c, np.asarray(s)), c, s)
        inputs = eval_input(rgb, self.det[i], c, s, self.focal[i], self.img_size[i])
        return TestExample(inputs, EvalExtras(
            mask256=torch.from_numpy(mask256),
            has_mask=torch.tensor(bool(self.has_mask[i])),
            hm_samples=torch.from_numpy(hm.astype(np.float32)),
            row=torch.tensor(i),
        ))
