"""The training objective (docs/method.md §4): every loss term of one step, from a batch and the
model's hypotheses; the weights come from `loss_weights` in pipelines.yaml."""
from __future__ import annotations

import torch
from omegaconf import DictConfig

from . import losses
from .model import POSE_DIM, Hypotheses


def loss_terms(out: Hypotheses, batch: dict, cfg: DictConfig) -> dict[str, torch.Tensor]:
    """The terms with a non-zero weight: mode (slot 0) for β and 2D, random hypotheses
    (slots 1..) for MMD, the mask loss and the Table S2 sample supervision, all of them for the
    orthogonality term."""
    lc = cfg.losses
    inside_px, visible_conf = cfg.conventions.inside_mask_px, cfg.conventions.visible_conf
    samples = out.coco2d[:, 1:].transpose(1, 2)  # (B, 17, N, 2)

    def mmd() -> torch.Tensor:
        targets, weight = losses.mmd_targets(batch["gt_coco"], batch["hm_samples"],
                                             batch["max_conf"], batch["gt_in_fov"],
                                             batch["gt_in_crop"], lc.mmd_uncertain_conf,
                                             lc.mmd_min_conf, visible_conf)
        return losses.mmd_loss(samples, targets, weight, tuple(lc.mmd_kernel_scales),
                               lc.mmd_unbiased)

    terms = {
        "nll": lambda: losses.nll_loss(out.log_prob_gt, POSE_DIM),
        "betas": lambda: losses.betas_loss(out.betas, batch["gt_betas"]),
        "keypoints_2d": lambda: losses.keypoints_2d_loss(out.body2d[:, 0], batch["gt_body2d"],
                                                         batch["gt_body2d_valid"]),
        "keypoints_2d_samples": lambda: losses.keypoints_2d_samples_loss(
            samples, batch["gt_coco"], losses.supervised_2d_joints(
                batch["gt_in_crop"], batch["max_conf"], lc.samples_2d_visible_only,
                visible_conf)),
        "orth": lambda: losses.orth_loss(out.pose6d),
        "camera": lambda: losses.camera_loss(out.cam[:, 0], lc.camera_scale_factor),
        "mmd": mmd,
        "mask": lambda: losses.mask_loss(samples, batch["max_conf"], batch["hm_samples"],
                                         batch["hm_inside"], batch["gt_coco"],
                                         batch["gt_in_crop"], batch["mask"],
                                         batch["use_mask"], visible_conf, inside_px),
    }
    return {name: term() for name, term in terms.items() if cfg.loss_weights[name] != 0}


def total(terms: dict[str, torch.Tensor], cfg: DictConfig) -> torch.Tensor:
    return losses.total_loss(terms, cfg.loss_weights)
