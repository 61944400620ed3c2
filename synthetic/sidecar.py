"""The scene side-car of the synthetic world: what the simulated detector perceives of a scene.

`<image stem>.synthetic_scene.npz` next to each synthetic image (docs/synthetic_world.md). The
world generator writes it, the `synthetic` detector backend reads it; nothing else does, and real
datasets have no such file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from body.joints import COCO17_NAMES

SIDECAR_SUFFIX = ".synthetic_scene.npz"
NUM_JOINTS = len(COCO17_NAMES)

# coco_state values
VISIBLE, SELF_OCCLUDED, PERSON_OCCLUDED, OBJECT_OCCLUDED, OUTSIDE_IMAGE = range(5)


def sidecar_path(image_path: Path) -> Path:
    """`<image stem>.synthetic_scene.npz` next to the image."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + SIDECAR_SUFFIX)


def write_sidecar(image_path: Path, image_size: tuple[int, int], coco_xy: np.ndarray,
                  coco_state: np.ndarray, person_map: np.ndarray) -> Path:
    """Write the side-car of `image_path`: image size (W, H), every person's projected COCO
    joints (P, 17, 2), their states (P, 17) and the person map (H, W)."""
    path = sidecar_path(image_path)
    np.savez_compressed(path, image_size=np.asarray(image_size, np.int32),
                        coco_xy=coco_xy.astype(np.float32), coco_state=coco_state.astype(np.int8),
                        person_map=person_map.astype(np.int8))
    return path


@dataclass(frozen=True)
class Scene:
    """One scene side-car (docs/synthetic_world.md)."""

    image_size: np.ndarray   # (2,) W, H
    coco_xy: np.ndarray      # (P, 17, 2) float64 image px
    coco_state: np.ndarray   # (P, 17) int
    person_map: np.ndarray   # (H, W) int8, −1 background/objects

    @classmethod
    def load(cls, path: Path) -> "Scene":
        try:
            with np.load(path) as f:
                scene = cls(np.asarray(f["image_size"]).astype(np.int64),
                            np.asarray(f["coco_xy"], dtype=np.float64).reshape(-1, NUM_JOINTS, 2),
                            np.asarray(f["coco_state"]).astype(np.int64).reshape(-1, NUM_JOINTS),
                            np.asarray(f["person_map"]))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no scene side-car; the 'synthetic' detector only runs on images of the "
                "synthetic world (make data DATASET=synthetic)") from None
        bad = ~np.isfinite(scene.coco_xy).all(-1)   # e.g. behind the camera: far outside
        scene.coco_xy[bad] = -1e4
        scene.coco_state[bad] = OUTSIDE_IMAGE
        if scene.coco_xy.shape[0] != scene.coco_state.shape[0]:
            raise ValueError(f"{path}: coco_xy and coco_state disagree on the number of people")
        if tuple(scene.person_map.shape) != (int(scene.image_size[1]), int(scene.image_size[0])):
            raise ValueError(f"{path}: person_map {scene.person_map.shape} is not H×W of "
                             f"image_size {tuple(scene.image_size)}")
        return scene

    @property
    def num_people(self) -> int:
        return self.coco_xy.shape[0]
