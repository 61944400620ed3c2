"""The model of stage two (docs/method.md §3, paper Sec. 3–4): a frozen image backbone, the 2D-pose
and bounding-box conditions, the conditional normalizing flow over 22 SMPL-X joint rotations (6D),
an HMR-style iterative shape/camera head, SMPL-X joints through the fast path, and the CLIFF
camera that projects them into the full image and back into the crop."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from body.cameras import crop_normalize, intrinsics, perspective_projection, \
    weak_perspective_to_translation
from body.fast_joints import FastJoints
from body.joints import NUM_BODY_JOINTS_SMPLX, SMPLX_2D_LOSS_JOINTS, SMPLX_TO_COCO17
from body.models import load_smplx
from body.rotations import rot6d_to_matrix
from core.config import upgrade_saved_config

from .backbones import TrainedBackbone, freeze, image_features, make_backbone
from .checkpoint import CheckpointError, read_checkpoint
from .checkpoints_external import load_reference_checkpoint
from .flow import make_flow
from .inputs import ModelInput
from .posterior import Hypotheses, PosePosterior

POSE_DIM = NUM_BODY_JOINTS_SMPLX * 6  # 132
NUM_BETAS = 11
MEAN_CAMERA = (0.9, 0.0, 0.0)  # weak-perspective (s, tx, ty) the head starts from


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
    """Image + detector 2D pose + box → a distribution over SMPL-X body poses, shape, camera:
    `model(inputs)` is a `PosePosterior`."""

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
        self.flow = make_flow(m.coupling, POSE_DIM, cond, m.flow_blocks, m.flow_hidden,
                              m.soft_clamp, m.flow_dropout)
        self.head = ShapeCameraHead(cond, m.regressor_hidden, m.regressor_iterations,
                                    m.regressor_dropout)
        self.body = FastJoints(load_smplx(body_models, num_betas=NUM_BETAS),
                               list(SMPLX_TO_COCO17) + list(SMPLX_2D_LOSS_JOINTS))

    def conditions(self, inputs: ModelInput, features: torch.Tensor | None = None) -> torch.Tensor:
        """The condition c = [c_I, c_P, c_B] with the parts the Table 3 switches keep; the flow
        and the shape/camera head both read it (the ProHMR row: image features only).
        `features`: c_I already computed by the frozen backbone (`train.data.CollateExamples`),
        else None (computed here by `image_features`)."""
        if features is None:
            features = image_features(self.backbone, inputs.image)
        parts = [features]
        if self.pose_condition is not None:
            parts.append(self.pose_condition(inputs.det_kp))
        if self.use_bbox_condition:
            parts.append(inputs.bbox_cond)
        return torch.cat(parts, 1)

    def forward(self, inputs: ModelInput, features: torch.Tensor | None = None) -> PosePosterior:
        """The posterior over the body poses of the crops (train/posterior.py); `features` as in
        `conditions`."""
        return PosePosterior(self, inputs, self.conditions(inputs, features))

    def project(self, pose6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor,
                inputs: ModelInput) -> Hypotheses:
        """Joints of every hypothesis, through the CLIFF camera into the crop
        (docs/method.md §3)."""
        b, h = pose6d.shape[:2]
        rot = rot6d_to_matrix(pose6d).flatten(0, 1)
        joints = self.body(betas.repeat_interleave(h, 0), rot).unflatten(0, (b, h))
        width, height = inputs.img_size[:, 0], inputs.img_size[:, 1]
        transl = weak_perspective_to_translation(cam, inputs.center, inputs.scale, width,
                                                 height, inputs.focal)
        k = intrinsics(inputs.focal, width, height)
        joints = joints + transl[:, None, None]
        uv = perspective_projection(joints.flatten(1, 2), k).unflatten(1, (h, -1))
        crop = crop_normalize(uv, inputs.center[:, None], inputs.scale[:, None])
        return Hypotheses(pose6d, betas, cam, transl, joints, crop[:, :, :17], crop[:, :, 17:])


def load_model(cfg: DictConfig, ckpt: Path) -> tuple[ProbabilisticHMR, DictConfig, str]:
    """(model, its configuration, report name) of a checkpoint: ours (`.pt`, with the
    configuration it was trained with) or the reference release's Lightning `humr_best.ckpt`
    (`.ckpt`, docs/formats.md), built with the current configuration (`profile=paper` for it)."""
    if ckpt.suffix == ".ckpt":
        model = ProbabilisticHMR(cfg, cfg.body.models)
        report = load_reference_checkpoint(model, ckpt)
        if report["missing"]:
            raise ValueError(f"{ckpt}: the reference checkpoint leaves {len(report['missing'])} "
                             f"of the model's weights unset ({', '.join(report['missing'][:5])}"
                             "…); is the profile right (PROFILE=paper)?")
        return model, cfg, "reference"
    state = read_checkpoint(ckpt)
    # the checkpoint's configuration over today's defaults: keys added since it was trained
    # take their default (the old behaviour)
    try:
        trained = OmegaConf.merge(cfg, OmegaConf.create(upgrade_saved_config(state["config"])),
                                  {"body": {"models": cfg.body.models}})
    except OmegaConfBaseException as err:
        raise CheckpointError(f"{ckpt}: its saved configuration does not fit this code: "
                              f"{str(err).splitlines()[0]}") from err
    model = ProbabilisticHMR(trained, cfg.body.models)
    model.load_state_dict(state["model"])
    return model, trained, ckpt.parent.parent.name
