"""Fast joints vs `smplx`'s full forward at batch 1664 (64 images × 26 hypotheses)."""
from __future__ import annotations

from pathlib import Path

import torch

from body.fast_joints import FastJoints
from body.joints import SMPLX_2D_LOSS_JOINTS, SMPLX_TO_COCO17
from body.models import load_smplx

from .timing import random_body_pose, timed


@torch.no_grad()
def bench_fast_joints(body_models: Path, batch: int = 1664, repeats: int = 3) -> dict:
    model = load_smplx(body_models)
    ids = list(SMPLX_TO_COCO17) + list(SMPLX_2D_LOSS_JOINTS)
    fast = FastJoints(model, ids)
    rot, betas = random_body_pose(batch)

    def full():
        return model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:]).joints[:, ids]

    t_full, _ = timed(full, repeats)
    t_fast, _ = timed(lambda: fast(betas, rot), repeats)
    deviation = (full() - fast(betas, rot)).abs().max().item()
    speedup = t_full / t_fast
    return {"value": round(speedup, 1), "unit": "x faster", "goal": ">= 10x, dev <= 1e-5 m",
            "met": bool(speedup >= 10 and deviation <= 1e-5), "batch": batch,
            "smplx_full_s": round(t_full, 4), "fast_s": round(t_fast, 5),
            "max_deviation_m": float(f"{deviation:.2e}"),
            "vertices": int(model.v_template.shape[0])}
