"""The detector contract every 2D pose detector backend shares (docs/method.md §2,
docs/formats.md "ViTPose"): the crop request and the `Detector` protocol.

A backend is a callable that turns a batch of 256×192 detector inputs (`DetectorCrop.crop`) into
17 COCO heatmaps of 64×48 on the UDP grid of `body.cameras.DetectorCrop`, which alone defines
both sizes (`DetectorCrop.INPUT_SHAPE`, `DetectorCrop.HEATMAP_SHAPE`). Each input comes with
its `CropRequest`, which says where it was cut from: real detectors ignore it, the simulated
detector of the synthetic world (`synthetic/detector.py`) reads only it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

NUM_JOINTS = 17


@dataclass(frozen=True, eq=False)
class CropRequest:
    """Where one detector input comes from: a person box in a full image.

    `eq=False`: requests hold arrays, so they compare (and hash) by identity.
    """

    image_path: Path      # the full image the crop comes from
    center: np.ndarray    # (2,) px, the person box centre
    scale: float          # box side / 200

    def __post_init__(self):
        center = np.asarray(self.center, dtype=np.float64).reshape(2)
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "scale", float(self.scale))


@runtime_checkable
class Detector(Protocol):
    """A top-down COCO-17 heatmap detector."""

    name: str

    def __call__(self, crops: np.ndarray, requests: Sequence[CropRequest]) -> np.ndarray:
        """crops (B, 256, 192, 3) uint8 RGB detector inputs (DetectorCrop.crop) → heatmaps
        (B, 17, 64, 48) float32."""
        ...
