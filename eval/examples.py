"""Test examples: the un-augmented model crop of every row of a test store, with what the
model's condition and the metrics need (crops come from the store's context cache, so no full
frame is decoded)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from body.cameras import DetectorCrop, cliff_bbox_condition, crop_matrix, crop_normalize
from stores.store import Store
from train.context_cache import build_context_cache, open_context_cache
from train.data import IMAGENET_MEAN, IMAGENET_STD, context_to_crop

EVAL_CROP = 256  # 2D metrics are in the pixels of a 256 crop (docs/method.md §6)


class TestExamples(Dataset):
    """Row i of a test store: `image` (3, S, S), `det_kp` (17, 3) in crop coordinates,
    `bbox_cond`, `center`, `scale`, `focal`, `img_size`, `mask256` (256, 256) bool crop of the
    union person mask, `has_mask`, `hm_samples` (17, S, 2) the stored heatmap samples in crop
    coordinates ([−1, 1], heatmap pixel centres), `row`."""

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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._cache is None:
            self._cache = open_context_cache(self.cache_path)
        context = self._cache.context(i)  # (C, C, 4): RGB and the 0/1 union mask
        c, s = self.center[i], self.scale[i]
        to_context = self._cache.matrix(c, s)
        crop = context_to_crop(crop_matrix(c, s, self.crop_size), to_context)
        rgb = cv2.warpAffine(np.ascontiguousarray(context[..., :3]), crop, (self.crop_size,) * 2,
                             flags=cv2.INTER_LINEAR)
        crop256 = context_to_crop(crop_matrix(c, s, EVAL_CROP), to_context)
        mask256 = cv2.warpAffine(np.ascontiguousarray(context[..., 3]), crop256,
                                 (EVAL_CROP,) * 2, flags=cv2.INTER_NEAREST) > 0
        det = self.det[i]
        det_kp = np.concatenate([crop_normalize(det[None, :, :2], c[None], np.array([s]))[0],
                                 det[:, 2:]], 1)
        index, _ = self._cache.samples(i)
        uv = np.stack([index % DetectorCrop.HEATMAP_HW[1], index // DetectorCrop.HEATMAP_HW[1]],
                      -1).astype(np.float64)
        hm = crop_normalize(DetectorCrop(c, np.asarray(s)).heatmap_to_image(uv), c, s)
        w, h = self.img_size[i]
        image_t = (rgb.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
        return {
            "image": torch.from_numpy(image_t.transpose(2, 0, 1).copy()),
            "det_kp": torch.from_numpy(det_kp.astype(np.float32)),
            "bbox_cond": torch.from_numpy(cliff_bbox_condition(
                c, np.float64(s), np.float64(w), np.float64(h), np.float64(self.focal[i]))
                .astype(np.float32)),
            "center": torch.from_numpy(c.astype(np.float32)),
            "scale": torch.tensor(s, dtype=torch.float32),
            "focal": torch.tensor(self.focal[i]),
            "img_size": torch.from_numpy(self.img_size[i]),
            "mask256": torch.from_numpy(mask256),
            "has_mask": torch.tensor(bool(self.has_mask[i])),
            "hm_samples": torch.from_numpy(hm.astype(np.float32)),
            "row": torch.tensor(i),
        }
