"""Normalised label rows: what every dataset reader returns, whatever the source format.

One row per person crop, camera frame, metres and pixels. The body is
`model(global_orient, body_pose, betas) + transl` for the row's body model (smplx's rule), with
`pose` = [global orient, body joints] as axis-angle: 22 joints for SMPL-X rows (training sets,
docs/method.md §1), 24 for SMPL rows (EMDB and 3DPW ground truth, gendered).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class LabelRows:
    body_model: str  # "smplx" or "smpl"
    image: np.ndarray  # (N,) str, image path relative to the dataset root
    mask: np.ndarray  # (N,) str, union person-mask path relative to the root, "" when none
    source: np.ndarray  # (N,) str, the row's origin in the source files (file:row or seq:frame)
    image_size: np.ndarray  # (N, 2) int32 W, H
    center: np.ndarray  # (N, 2) float32 px, person box centre
    scale: np.ndarray  # (N,) float32, box side / 200
    cam_int: np.ndarray  # (N, 3, 3) float32
    gender: np.ndarray  # (N,) str
    pose: np.ndarray  # (N, J, 3) float32 axis-angle, camera frame
    betas: np.ndarray  # (N, B) float32
    transl: np.ndarray  # (N, 3) float32
    kp2d_coco: np.ndarray  # (N, 17, 2) float32 ground-truth COCO-17 joints, px
    kp2d_body: np.ndarray  # (N, 24, 2) float32 the 24 body joints (2D loss / SMPL-24), px
    object_occluded: np.ndarray  # (N,) bool, part of the body hidden by an object

    def __len__(self) -> int:
        return len(self.image)

    def __post_init__(self) -> None:
        n = len(self.image)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "body_model" and len(value) != n:
                raise ValueError(f"label field '{f.name}' has {len(value)} rows, expected {n}")

    @classmethod
    def concat(cls, parts: list[LabelRows]) -> LabelRows:
        """The rows of all `parts` (of one body model), in order."""
        kinds = {p.body_model for p in parts}
        if len(kinds) != 1:
            raise ValueError(f"cannot concatenate rows of body models {sorted(kinds)}")
        return cls(kinds.pop(), *(np.concatenate([getattr(p, f.name) for p in parts])
                                  for f in fields(cls) if f.name != "body_model"))

    def select(self, keep: np.ndarray) -> LabelRows:
        """The rows where `keep` (bool mask or indices) holds."""
        return LabelRows(self.body_model, *(getattr(self, f.name)[keep]
                                            for f in fields(self) if f.name != "body_model"))

    def validate(self, where: str) -> None:
        """Refuse impossible values, naming `where` (the source) and the field."""
        numeric = ("center", "scale", "cam_int", "pose", "betas", "transl", "kp2d_coco",
                   "kp2d_body")
        for name in numeric:
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{where}: field '{name}' has non-finite values")
        if (self.scale <= 0).any():
            raise ValueError(f"{where}: field 'scale' has non-positive values")
        if (self.transl[:, 2] <= 0).any():
            raise ValueError(f"{where}: field 'transl' puts a body behind the camera")
