"""The model's output: a posterior over the 22 SMPL-X joint rotations of each crop (zuko's shape,
docs/method.md §3), with the shape and camera of the HMR head and the projection of hypotheses.

`model(inputs)` computes the condition once; `mode()` is the pose at latent z = 0, `sample(n)`
draws n poses, `log_prob(pose6d)` is the flow's density, and `hypotheses(n)` gives the mode and
n samples (slot 0 the mode) through SMPL-X and the CLIFF camera into the crop. The shape/camera
head runs once per posterior, at the first projection (its dropout draws from the global torch
stream then, after the flow's latents).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from body.joints import NUM_BODY_JOINTS_SMPLX
from body.rotations import rot6d_to_matrix

if TYPE_CHECKING:
    from .inputs import ModelInput
    from .model import ProbabilisticHMR


@dataclass
class Hypotheses:
    """The model's output for B images and 1 + N hypotheses each (slot 0: the mode)."""

    pose6d: Tensor  # (B, 1+N, 22, 6)
    betas: Tensor  # (B, 11), shared by the hypotheses of an image
    cam: Tensor  # (B, 3) weak-perspective (s, tx, ty)
    transl: Tensor  # (B, 3) full-image camera translation (CLIFF)
    joints3d: Tensor  # (B, 1+N, 41, 3) camera frame: COCO-17 then the 24 2D-loss joints
    coco2d: Tensor  # (B, 1+N, 17, 2) projected, normalised to the crop
    body2d: Tensor  # (B, 1+N, 24, 2) projected, normalised to the crop
    # the mode's global orientation (B, 6) before `losses.detach_orientation` cut it from the
    # other terms (train/objective.py); None: nothing was cut, it is pose6d[:, 0, 0]
    uncut_mode_root6d: Tensor | None = None
    # the ground truth's joints (B, 41, 3), body frame, as joints3d without the translation; set
    # by train/objective.py when the mode's 3D keypoint loss needs them
    target_joints3d: Tensor | None = None

    @property
    def mode_root6d(self) -> Tensor:
        """(B, 6) the mode's global orientation, with its gradient (for the mode-orientation
        loss, which reaches it whatever the other terms cut)."""
        if self.uncut_mode_root6d is not None:
            return self.uncut_mode_root6d
        return self.pose6d[:, 0, 0]

    @property
    def rotmats(self) -> Tensor:
        return rot6d_to_matrix(self.pose6d)

    def _slots(self, index) -> Hypotheses:
        return replace(self, pose6d=self.pose6d[:, index], joints3d=self.joints3d[:, index],
                       coco2d=self.coco2d[:, index], body2d=self.body2d[:, index],
                       uncut_mode_root6d=self.mode_root6d)

    @property
    def mode(self) -> Hypotheses:
        """The mode alone: the per-hypothesis fields without their slot axis ((B, 22, 6), …)."""
        return self._slots(0)

    @property
    def samples(self) -> Hypotheses:
        """The N random hypotheses (slots 1..N): per-hypothesis fields (B, N, …)."""
        return self._slots(slice(1, None))


class PosePosterior:
    """p(pose | crop) of B crops: the flow conditioned on c, plus the head's shape and camera."""

    def __init__(self, model: ProbabilisticHMR, inputs: ModelInput, condition: Tensor) -> None:
        self.model, self.inputs, self.condition = model, inputs, condition
        self._shape_camera: tuple[Tensor, Tensor] | None = None

    @staticmethod
    def _poses(x: Tensor) -> Tensor:
        return x.unflatten(-1, (NUM_BODY_JOINTS_SMPLX, 6))

    def mode(self) -> Tensor:
        """(B, 22, 6): the pose at latent z = 0."""
        return self._poses(self.model.flow.mode(self.condition))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(B, n, 22, 6) random poses; `generator` (optional) on the condition's device."""
        return self._poses(self.model.flow.sample(self.condition, n, generator))

    def mode_and_samples(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(B, 1 + n, 22, 6): the mode first, then n samples, in one batched pass."""
        return self._poses(self.model.flow.sample_with_mode(self.condition, n, generator))

    def log_prob(self, pose6d: Tensor) -> Tensor:
        """The flow's exact log-density of poses (B, 22, 6) → (B,), or of H poses per crop
        (B, H, 22, 6) → (B, H) (each under its own crop's condition)."""
        x = pose6d.reshape(-1, NUM_BODY_JOINTS_SMPLX * 6)
        return self.model.flow.log_prob(x, self.condition).reshape(pose6d.shape[:-2])

    def shape_camera(self) -> tuple[Tensor, Tensor]:
        """(betas (B, 11), weak-perspective camera (B, 3)) of the HMR head, computed once."""
        if self._shape_camera is None:
            self._shape_camera = self.model.head(self.condition)
        return self._shape_camera

    def project(self, pose6d: Tensor) -> Hypotheses:
        """Hypotheses (B, H, 22, 6) through SMPL-X and the CLIFF camera into the crop."""
        betas, cam = self.shape_camera()
        return self.model.project(pose6d, betas, cam, self.inputs)

    def hypotheses(self, n: int, generator: torch.Generator | None = None) -> Hypotheses:
        """The mode and n samples (slot 0 the mode), projected."""
        return self.project(self.mode_and_samples(n, generator))
