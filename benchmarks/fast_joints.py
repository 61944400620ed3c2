"""Fast joints vs `smplx`'s full forward at batch 1664 (64 images × 26 hypotheses)."""
from __future__ import annotations

from pathlib import Path

import torch

from body.fast_joints import FastJoints
from body.joints import SMPLX_2D_LOSS_JOINTS, SMPLX_TO_COCO17
from body.models import load_smplx

from .timing import random_body_pose, speedup_figure


@torch.no_grad()
def bench_fast_joints(body_models: Path, batch: int = 1664, repeats: int = 3) -> dict:
    model = load_smplx(body_models)
    ids = list(SMPLX_TO_COCO17) + list(SMPLX_2D_LOSS_JOINTS)
    fast = FastJoints(model, ids)
    rot, betas = random_body_pose(batch)

    def full():
        return model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:]).joints[:, ids]

    return {**speedup_figure(full, lambda: fast(betas, rot), repeats, 10), "batch": batch,
            "vertices": int(model.v_template.shape[0])}
