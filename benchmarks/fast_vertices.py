"""The evaluation's SMPL-X skinning (body/fast_vertices.py) vs `smplx`'s full forward at the
batch of one evaluation step (8 crops × 100 hypotheses), 1 thread as the synthetic profile."""
from __future__ import annotations

from pathlib import Path

import torch

from body.fast_vertices import FastVertices
from body.models import load_smplx, load_smplx2smpl

from .timing import one_thread, random_body_pose, speedup_figure


@torch.no_grad()
def bench_fast_vertices(body_models: Path, batch: int = 800, repeats: int = 3) -> dict:
    model = load_smplx(body_models)
    used = torch.unique(load_smplx2smpl(body_models).indices()[1])
    fast = FastVertices(model, used)
    rot, betas = random_body_pose(batch)

    def full():
        return model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:]).vertices[:, used]

    with one_thread():
        figure = speedup_figure(full, lambda: fast(betas, rot), repeats, 2)
    return {**figure, "batch": batch, "vertices": int(len(used))}
