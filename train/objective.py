"""The training objective (docs/method.md §4): the step's forward (hypotheses and the
noised-ground-truth NLL) and every loss term of one step; the weights come from `loss_weights`
in pipelines.yaml."""
from __future__ import annotations

from dataclasses import replace

import torch
from omegaconf import DictConfig

from torch import nn

from body.joints import COCO17_FACE
from body.rotations import rot6d_to_matrix

from . import losses
from .data import TrainingExample, TrainingTargets
from .model import POSE_DIM
from .posterior import Hypotheses


def training_forward(model: nn.Module, batch: TrainingExample, samples: int,
                     cfg: DictConfig) -> tuple[Hypotheses, torch.Tensor]:
    """(the mode and `samples` random hypotheses, log p(θ̂ + ε | c) (B,)) of a training batch.

    ε ~ N(0, nll_noise² I) (`losses.nll_noise`, docs/method.md §4 "NLL"). Draws from the global
    torch stream in this order: the flow's latents, ε, then the head's dropout. With the mode's
    3D keypoint term on, the hypotheses carry the ground truth's joints (`target_joints3d`)."""
    posterior = model(batch.inputs, batch.features)
    pose = posterior.mode_and_samples(samples)
    cut = orientation_detached(pose, cfg.losses.detach_orientation)
    gt = batch.targets.gt_pose6d
    noise = torch.randn(gt.shape, device=gt.device, dtype=gt.dtype)
    log_prob = posterior.log_prob(gt + cfg.losses.nll_noise * noise)
    target = None
    if cfg.loss_weights.keypoints_3d_mode != 0:
        with torch.no_grad():
            target = model.body(batch.targets.gt_betas, rot6d_to_matrix(gt))
    return replace(posterior.project(cut), uncut_mode_root6d=pose[:, 0, 0],
                   target_joints3d=target), log_prob


def orientation_detached(pose: torch.Tensor, which: str) -> torch.Tensor:
    """The hypotheses' poses (B, 1 + N, 22, 6) with the global orientation (joint 0) of the mode
    (`mode`) or of every hypothesis (`all`) cut from the graph, so that the losses on the
    hypotheses (2D, orthogonality; MMD and mask too for `all`) never move it and only the NLL sets
    it; `none` (the paper) returns `pose` (the values: core/schemas.py; docs/diagnosis.md §6)."""
    if which == "none":
        return pose
    upto = 1 if which == "mode" else pose.shape[1]
    root = pose[:, :upto, :1].detach()
    cut = torch.cat([root, pose[:, :upto, 1:]], 2)
    return torch.cat([cut, pose[:, upto:]], 1)


def mode_2d_joints(mode: Hypotheses, targets: TrainingTargets,
                   face: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prediction, ground truth, valid) of the mode's 2D loss: the 24 SMPL-X joints of the
    reference, and with `face` (`losses.keypoints_2d_face`) the COCO face joints as well, whose
    ground truth counts where it is finite (docs/method.md §4 "2D")."""
    if not face:
        return mode.body2d, targets.gt_body2d, targets.gt_body2d_valid
    gt_face = targets.gt_coco[:, COCO17_FACE]
    return (torch.cat([mode.body2d, mode.coco2d[:, COCO17_FACE]], 1),
            torch.cat([targets.gt_body2d, gt_face], 1),
            torch.cat([targets.gt_body2d_valid, torch.isfinite(gt_face).all(-1)], 1))


def mask_skipped_joints(targets: TrainingTargets, lc: DictConfig) -> torch.Tensor | None:
    """(B, 17) bool joints the mask loss spares with `losses.mask_skip_mmd_samples`: those whose
    MMD target is their heatmap samples (docs/diagnosis.md §11); None when the option is off."""
    if not lc.mask_skip_mmd_samples:
        return None
    return losses.mmd_sample_joints(targets.max_conf, targets.gt_in_fov, targets.gt_in_crop,
                                    lc.mmd_uncertain_conf, lc.mmd_min_conf)


def loss_terms(out: Hypotheses, log_prob_gt: torch.Tensor, targets: TrainingTargets,
               cfg: DictConfig) -> dict[str, torch.Tensor]:
    """The terms with a non-zero weight: the mode for β, 2D and ProHMR's mode terms, the random
    hypotheses for MMD, the mask loss and the Table S2 sample supervision, all of them for the
    orthogonality term; `log_prob_gt` (B,) for the NLL."""
    lc = cfg.losses
    inside_px, visible_conf = cfg.conventions.inside_mask_px, cfg.conventions.visible_conf
    samples = out.samples.coco2d.transpose(1, 2)  # (B, 17, N, 2)

    def mmd() -> torch.Tensor:
        target_sets, weight = losses.mmd_targets(targets.gt_coco, targets.hm_samples,
                                                 targets.max_conf, targets.gt_in_fov,
                                                 targets.gt_in_crop, lc.mmd_uncertain_conf,
                                                 lc.mmd_min_conf, visible_conf)
        return losses.mmd_loss(samples, target_sets, weight, tuple(lc.mmd_kernel_scales),
                               lc.mmd_unbiased)

    terms = {
        "nll": lambda: losses.nll_loss(log_prob_gt, POSE_DIM),
        "betas": lambda: losses.betas_loss(out.betas, targets.gt_betas),
        "keypoints_2d": lambda: losses.keypoints_2d_loss(
            *mode_2d_joints(out.mode, targets, lc.keypoints_2d_face)),
        "keypoints_2d_samples": lambda: losses.keypoints_2d_samples_loss(
            samples, targets.gt_coco, losses.supervised_2d_joints(
                targets.gt_in_crop, targets.max_conf, lc.samples_2d_visible_only,
                visible_conf)),
        "orth": lambda: losses.orth_loss(out.pose6d),
        "orientation_mode": lambda: losses.rotation_mode_loss(out.mode_root6d,
                                                              targets.gt_pose6d[:, 0]),
        "body_pose_mode": lambda: losses.rotation_mode_loss(out.pose6d[:, 0, 1:],
                                                            targets.gt_pose6d[:, 1:]),
        # the 24 joints of the 2D loss (after COCO-17 in joints3d), centred on the pelvis
        "keypoints_3d_mode": lambda: losses.keypoints_3d_mode_loss(
            out.joints3d[:, 0, losses.NUM_COCO:], out.target_joints3d[:, losses.NUM_COCO:]),
        "camera": lambda: losses.camera_loss(out.cam[:, 0], lc.camera_scale_factor),
        "mmd": mmd,
        "mask": lambda: losses.mask_loss(samples, targets.max_conf, targets.hm_samples,
                                         targets.hm_inside, targets.gt_coco,
                                         targets.gt_in_crop, targets.mask,
                                         targets.use_mask, visible_conf, inside_px,
                                         lc.mask_skip_gt_off_mask,
                                         mask_skipped_joints(targets, lc)),
    }
    return {name: term() for name, term in terms.items() if cfg.loss_weights[name] != 0}


def total(terms: dict[str, torch.Tensor], cfg: DictConfig) -> torch.Tensor:
    return losses.total_loss(terms, cfg.loss_weights)
