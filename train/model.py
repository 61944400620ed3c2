"""The model of stage two (docs/method.md §3, paper Sec. 3–4): a frozen image backbone, the 2D-pose
and bounding-box conditions, the conditional normalizing flow over 22 SMPL-X joint rotations (6D),
an HMR-style iterative shape/camera head, SMPL-X joints through the fast path, and the CLIFF
camera that projects them into the full image and back into the crop."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from body.cameras import crop_normalize, intrinsics, perspective_projection, \
    weak_perspective_to_translation
from body.fast_joints import FastJoints
from body.joints import NUM_BODY_JOINTS_SMPLX, SMPLX_2D_LOSS_JOINTS, SMPLX_TO_COCO17
from body.models import load_smplx
from body.rotations import rot6d_to_matrix

from .backbones import TrainedBackbone, freeze, make_backbone
from .flow import ConditionalFlow

POSE_DIM = NUM_BODY_JOINTS_SMPLX * 6  # 132
NUM_BETAS = 11
MEAN_CAMERA = (0.9, 0.0, 0.0)  # weak-perspective (s, tx, ty) the head starts from


@dataclass
class Hypotheses:
    """The model's output for B images and 1 + N hypotheses each (slot 0: the mode)."""

    pose6d: torch.Tensor  # (B, 1+N, 22, 6)
    betas: torch.Tensor  # (B, 11), shared by the hypotheses of an image
    cam: torch.Tensor  # (B, 3) weak-perspective (s, tx, ty)
    transl: torch.Tensor  # (B, 3) full-image camera translation (CLIFF)
    joints3d: torch.Tensor  # (B, 1+N, 41, 3) camera frame: COCO-17 then the 24 2D-loss joints
    coco2d: torch.Tensor  # (B, 1+N, 17, 2) projected, normalised to the crop
    body2d: torch.Tensor  # (B, 1+N, 24, 2) projected, normalised to the crop
    log_prob_gt: torch.Tensor | None  # (B,) flow log-density of the (noised) ground truth

    @property
    def rotmats(self) -> torch.Tensor:
        return rot6d_to_matrix(self.pose6d)


class PoseCondition(nn.Module):
    """c_P: MLP 51 → 512 → ReLU → 256 on the detector's 17 × (x, y, conf) (docs/method.md §3)."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(),
                                 nn.Linear(sizes[1], sizes[2]))

    def forward(self, det_kp: torch.Tensor) -> torch.Tensor:
        return self.net(det_kp.flatten(1))


class ShapeCameraHead(nn.Module):
    """HMR iterative regressor (docs/method.md §3): [features, β, cam] → 1024 → dropout → 1024 →
    dropout → residual (β, cam), 3 iterations from the mean parameters. Linear layers without
    activations in between, as in HMR and the reference release."""

    def __init__(self, features: int, hidden: int, iterations: int, dropout: float) -> None:
        super().__init__()
        self.iterations = iterations
        self.net = nn.Sequential(nn.Linear(features + NUM_BETAS + 3, hidden), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.Dropout(dropout),
                                 nn.Linear(hidden, NUM_BETAS + 3))
        nn.init.xavier_uniform_(self.net[-1].weight, gain=0.01)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("mean", torch.tensor([0.0] * NUM_BETAS + list(MEAN_CAMERA)))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.mean.expand(len(features), -1)
        for _ in range(self.iterations):
            params = params + self.net(torch.cat([features, params], 1))
        return params[:, :NUM_BETAS], params[:, NUM_BETAS:]


class ProbabilisticHMR(nn.Module):
    """Image + detector 2D pose + box → a distribution over SMPL-X body poses, shape, camera."""

    def __init__(self, cfg: DictConfig, body_models: str) -> None:
        super().__init__()
        m = cfg.model
        backbone = make_backbone(m.backbone, **m.backbone_options)
        self.backbone = freeze(backbone) if m.freeze_backbone else TrainedBackbone(backbone)
        features = self.backbone.out_features
        self.use_pose_condition, self.use_bbox_condition = m.use_pose_condition, \
            m.use_bbox_condition
        # absent when switched off, so DDP never sees parameters without gradients
        self.pose_condition = PoseCondition(tuple(m.pose_mlp)) if self.use_pose_condition \
            else None
        cond = features + (m.pose_mlp[-1] if self.use_pose_condition else 0) + \
            (3 if self.use_bbox_condition else 0)
        self.flow = ConditionalFlow(POSE_DIM, cond, m.flow_blocks, m.flow_hidden, m.soft_clamp,
                                    m.flow_dropout, m.coupling == "nice")
        self.head = ShapeCameraHead(cond, m.regressor_hidden, m.regressor_iterations,
                                    m.regressor_dropout)
        self.body = FastJoints(load_smplx(body_models, num_betas=NUM_BETAS),
                               list(SMPLX_TO_COCO17) + list(SMPLX_2D_LOSS_JOINTS))
        self.nll_noise = cfg.losses.nll_noise

    def conditions(self, batch: dict) -> torch.Tensor:
        """The condition c = [c_I, c_P, c_B] with the parts the Table 3 switches keep; the flow
        and the shape/camera head both read it (the ProHMR row: image features only)."""
        parts = [self.backbone(batch["image"])]
        if self.pose_condition is not None:
            parts.append(self.pose_condition(batch["det_kp"]))
        if self.use_bbox_condition:
            parts.append(batch["bbox_cond"])
        return torch.cat(parts, 1)

    def forward(self, batch: dict, samples: int, generator: torch.Generator | None = None,
                with_log_prob: bool = True) -> Hypotheses:
        cond = self.conditions(batch)
        pose = self.flow.sample_with_mode(cond, samples, generator)  # (B, 1+N, 132)
        log_prob = None
        if with_log_prob and "gt_pose6d" in batch:
            gt = batch["gt_pose6d"].flatten(1)
            noise = torch.randn(gt.shape, generator=generator, device=gt.device, dtype=gt.dtype)
            log_prob = self.flow.log_prob(gt + self.nll_noise * noise, cond)
        betas, cam = self.head(cond)
        return self.project(pose.unflatten(-1, (NUM_BODY_JOINTS_SMPLX, 6)), betas, cam, batch,
                            log_prob)

    def project(self, pose6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor, batch: dict,
                log_prob: torch.Tensor | None = None) -> Hypotheses:
        """Joints of every hypothesis, through the CLIFF camera into the crop
        (docs/method.md §3)."""
        b, h = pose6d.shape[:2]
        rot = rot6d_to_matrix(pose6d).flatten(0, 1)
        joints = self.body(betas.repeat_interleave(h, 0), rot).unflatten(0, (b, h))
        width, height = batch["img_size"][:, 0], batch["img_size"][:, 1]
        transl = weak_perspective_to_translation(cam, batch["center"], batch["scale"], width,
                                                 height, batch["focal"])
        k = intrinsics(batch["focal"], width, height)
        joints = joints + transl[:, None, None]
        uv = perspective_projection(joints.flatten(1, 2), k).unflatten(1, (h, -1))
        crop = crop_normalize(uv, batch["center"][:, None], batch["scale"][:, None])
        return Hypotheses(pose6d, betas, cam, transl, joints, crop[:, :, :17], crop[:, :, 17:],
                          log_prob)
