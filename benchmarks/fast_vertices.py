"""The evaluation's SMPL-X skinning (body/fast_vertices.py) vs `smplx`'s full forward at the
batch of one evaluation step (8 crops × 100 hypotheses), 1 thread as the synthetic profile."""
from __future__ import annotations

from pathlib import Path

import torch

from body.fast_vertices import FastVertices
from body.models import load_smplx, load_smplx2smpl

from .timing import one_thread, random_body_pose, timed


@torch.no_grad()
def bench_fast_vertices(body_models: Path, batch: int = 800, repeats: int = 3) -> dict:
    model = load_smplx(body_models)
    used = torch.unique(load_smplx2smpl(body_models).indices()[1])
    fast = FastVertices(model, used)
    rot, betas = random_body_pose(batch)

    def full():
        return model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:]).vertices[:, used]

    with one_thread():
        t_full, _ = timed(full, repeats)
        t_fast, _ = timed(lambda: fast(betas, rot), repeats)
    deviation = (full() - fast(betas, rot)).abs().max().item()
    speedup = t_full / t_fast
    return {"value": round(speedup, 1), "unit": "x faster", "goal": ">= 2x, dev <= 1e-5 m",
            "met": bool(speedup >= 2 and deviation <= 1e-5), "batch": batch,
            "smplx_full_s": round(t_full, 4), "fast_s": round(t_fast, 4),
            "max_deviation_m": float(f"{deviation:.2e}"), "vertices": int(len(used))}
