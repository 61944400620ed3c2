"""One stage-one task: detector, heatmap samples and mask distances for one store chunk.

Runs on a Dask worker. It reads its rows' labels from the store, decodes each image and mask once,
crops, runs the worker's detector (loaded once per process), post-processes on the device, writes
its whole chunk and returns only a small summary. Row i's samples depend only on (seed, dataset,
i), so the result is the same for any worker count, batch size or rerun.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from body.cameras import DetectorCrop
from body.detector import CropRequest
from stores.images import read_image
from stores.labels import LabelRows
from stores.schema import (
    KEPT, SKIP_IMAGE_MISSING, SKIP_IMAGE_UNREADABLE, SKIP_LABEL_INVALID, SKIP_MASK_MISSING,
    SKIP_MASK_UNREADABLE,
)
from stores.store import Store

from .detectors import make_detector
from .postprocess import postprocess
from .settings import ChunkSettings, DetectorSpec

_DETECTORS: dict[str, object] = {}


def worker_detector(spec: DetectorSpec):
    """The worker process's detector for `spec`, built on first use."""
    key = json.dumps(asdict(spec), sort_keys=True)
    if key not in _DETECTORS:
        _DETECTORS[key] = make_detector(spec.name, **spec.options)
    return _DETECTORS[key]


def _read(root: Path, name: str, flags: int, missing: int, unreadable: int
          ) -> tuple[np.ndarray | None, int]:
    if not (root / name).is_file():
        return None, missing
    image = read_image(root, name, flags)
    return (image, KEPT) if image is not None else (None, unreadable)


def _invalid_labels(rows: LabelRows) -> np.ndarray:
    finite = (np.isfinite(rows.center).all(1) & np.isfinite(rows.scale)
              & np.isfinite(rows.kp2d_coco).all((1, 2)))
    return ~finite | ~(rows.scale > 0)


def process_chunk(store_path: str, dataset_root: str, index: int, settings: ChunkSettings
                  ) -> dict:
    """Compute and write chunk `index`; returns {chunk, rows, reasons, seconds}."""
    start = time.perf_counter()
    torch.set_num_threads(settings.runtime.threads)
    store = Store(store_path, mode="r+")
    sl = store.chunk_slice(index)
    rows = store.labels(sl)
    n, s = len(rows), settings.method.samples
    root = Path(dataset_root)
    reasons = np.where(_invalid_labels(rows), SKIP_LABEL_INVALID, KEPT).astype(np.uint8)
    images, masks = {}, {}
    for i in np.flatnonzero(reasons == KEPT):
        name = rows.image[i]
        if name not in images:
            images[name] = _read(root, name, cv2.IMREAD_COLOR, SKIP_IMAGE_MISSING,
                                 SKIP_IMAGE_UNREADABLE)
        reasons[i] = images[name][1]
        if reasons[i] == KEPT and rows.mask[i]:
            if rows.mask[i] not in masks:
                masks[rows.mask[i]] = _read(root, rows.mask[i], cv2.IMREAD_GRAYSCALE,
                                            SKIP_MASK_MISSING, SKIP_MASK_UNREADABLE)
            reasons[i] = masks[rows.mask[i]][1]
    keypoints = np.zeros((n, 17, 3), np.float32)
    index_out = np.zeros((n, 17, s), np.uint16)
    value_out = np.zeros((n, 17, s), np.float16)
    dist_out = np.full((n, 17, s), np.inf, np.float16)
    ok = np.flatnonzero(reasons == KEPT)
    if len(ok):
        heat = _detect(rows, ok, root, images, settings)
        heat_t = torch.from_numpy(heat).to(torch.device(settings.runtime.device))
        loaded = {name: image for name, (image, reason) in masks.items() if reason == KEPT}
        out = postprocess(heat_t, rows.select(ok), loaded, settings.method, sl.start + ok)
        keypoints[ok], index_out[ok], value_out[ok] = out.keypoints, out.index, out.value
        dist_out[ok], reasons[ok] = out.mask_distance, out.reason
    store.write_chunk(index, {"detector/keypoints": keypoints, "samples/index": index_out,
                              "samples/value": value_out, "samples/mask_distance": dist_out,
                              "status/reason": reasons})
    codes, counts = np.unique(reasons, return_counts=True)
    return {"chunk": index, "rows": n, "reasons": dict(zip(codes.tolist(), counts.tolist())),
            "seconds": time.perf_counter() - start}


def _detect(rows: LabelRows, ok: np.ndarray, root: Path, images: dict,
            settings: ChunkSettings) -> np.ndarray:
    detector = worker_detector(settings.method.detector)
    heat = []
    batch = settings.runtime.batch_size
    for start in range(0, len(ok), batch):
        part = ok[start:start + batch]
        crops = np.stack([DetectorCrop(rows.center[i].astype(np.float64), float(rows.scale[i]))
                          .crop(images[rows.image[i]][0][:, :, ::-1]) for i in part])
        requests = [CropRequest(root / rows.image[i], rows.center[i].astype(np.float64),
                                float(rows.scale[i])) for i in part]
        heat.append(np.asarray(detector(crops, requests), np.float32))
    return np.concatenate(heat)
