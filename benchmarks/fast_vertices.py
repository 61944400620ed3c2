"""The evaluation's SMPL-X skinning (body/fast_vertices.py) vs `smplx`'s full forward at the
batch of one evaluation step (8 crops × 100 hypotheses), 1 thread as the synthetic profile."""
from __future__ import annotations

from pathlib import Path

import torch
from scipy.spatial.transform import Rotation

from body.fast_vertices import FastVertices
from body.models import load_smplx, load_smplx2smpl

from .timing import timed


@torch.no_grad()
def bench_fast_vertices(body_models: Path, batch: int = 800, repeats: int = 3) -> dict:
    model = load_smplx(body_models)
    used = torch.unique(load_smplx2smpl(body_models).indices()[1])
    fast = FastVertices(model, used)
    rot = torch.tensor(Rotation.random(batch * 22, random_state=0).as_matrix(),
                       dtype=torch.float32).reshape(batch, 22, 3, 3)
    betas = torch.randn(batch, 11, generator=torch.Generator().manual_seed(0))

    def full():
        return model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:]).vertices[:, used]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_full, _ = timed(full, repeats)
        t_fast, _ = timed(lambda: fast(betas, rot), repeats)
    finally:
        torch.set_num_threads(threads)
    deviation = (full() - fast(betas, rot)).abs().max().item()
    speedup = t_full / t_fast
    return {"value": round(speedup, 1), "unit": "x faster", "goal": ">= 2x, dev <= 1e-5 m",
            "met": bool(speedup >= 2 and deviation <= 1e-5), "batch": batch,
            "smplx_full_s": round(t_full, 4), "fast_s": round(t_fast, 4),
            "max_deviation_m": float(f"{deviation:.2e}"), "vertices": int(len(used))}
