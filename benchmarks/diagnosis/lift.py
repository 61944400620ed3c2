"""Measurement 3 (docs/diagnosis.md): how lift-able is the synthetic pose distribution?

Pose sets of the same size go through the same pipeline: the independent Euler angles per joint
(`synthetic.poses.sample_body_pose`, the world's poses before issue 15, `synthetic.poses=
independent`) and the parametric motions of `synthetic.motions` (the training split of
pipelines.yaml's `synthetic.motions`). Each pose, with the mean shape, an upright random heading
and a camera 5 m away, gives its COCO-17 joints in 2D (centred on the hips, scaled by the body's
2D extent). A small MLP (2D → 22 × 6D) is fitted on 80 % of a set; we report the pelvis-aligned
3D joint error (mm) and the 2D error of the re-projected prediction (px of a 256 crop) on the
other 20 %, and for the motions also on poses of the held-out test split (motions and gains that
training never saw), lifted by the network fitted on the training motions.

`python -m benchmarks.diagnosis.lift [--poses N] [--steps N] [key=value …]`
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from body.fast_joints import FastJoints
from body.joints import SMPLX_TO_COCO17
from body.models import load_smplx
from body.rotations import axis_angle_to_rot6d, rot6d_to_matrix
from core.cli import ArgumentParser, run_cli
from synthetic.motions import pose_models
from synthetic.poses import sample_body_pose, upright_orientation

from .common import config, machine

SETS = ("world (independent Euler)", "parametric motions", "motions, held-out test split")


def render(body: FastJoints, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pelvis-relative 3D COCO joints (n, 17, 3) m and normalised 2D (n, 17, 2) of (n, 22, 6)."""
    joints = body(torch.zeros(len(pose), 11), rot6d_to_matrix(pose))
    cam = joints + torch.tensor([0.0, 0.0, 5.0])
    uv = cam[..., :2] / cam[..., 2:]
    hips = uv[:, 11:13].mean(1, keepdim=True)
    extent = (uv.amax(1) - uv.amin(1)).amax(-1)[:, None, None]
    return joints - joints[:, 11:13].mean(1, keepdim=True), (uv - hips) / extent


def _six(orient: np.ndarray, body_pose: np.ndarray) -> torch.Tensor:
    """(n, 22, 6) 6D rotations of global orientations (n, 3) and body poses (n, 21, 3)."""
    return axis_angle_to_rot6d(torch.from_numpy(np.concatenate([orient[:, None], body_pose],
                                                               1)).float())


def fit(body: FastJoints, pose: torch.Tensor, steps: int, seed: int) -> nn.Module:
    """The MLP 2D → 6D pose fitted on `pose` (n, 22, 6)."""
    torch.manual_seed(seed)
    _, j2 = render(body, pose)
    net = nn.Sequential(nn.Linear(34, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, 132))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = j2.flatten(1), pose.flatten(1)
    for _ in range(steps):
        idx = torch.randint(len(pose), (256,))
        loss = (net(x[idx]) - y[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


@torch.no_grad()
def errors(body: FastJoints, net: nn.Module, pose: torch.Tensor) -> dict:
    """Pelvis-aligned 3D joint error (mm) and re-projected 2D error (px256) of `net` on `pose`."""
    j3, j2 = render(body, pose)
    pred3, pred2 = render(body, net(j2.flatten(1)).unflatten(-1, (22, 6)))
    err3 = (pred3 - j3).norm(dim=-1).mean() * 1000
    # 2D: the normalised frame spans the body extent; 256 px ≈ 1.2 extents (HMR box)
    err2 = (pred2 - j2).norm(dim=-1).mean() * 256 / 1.2
    return {"mpjpe_mm": round(float(err3), 1), "kp2d_px256": round(float(err2), 2)}


def run(argv: Sequence[str] | None = None) -> dict:
    """The flags of `argv` parsed; the held-out errors of every pose set (SETS)."""
    parser = ArgumentParser(prog="python -m benchmarks.diagnosis.lift", description=__doc__)
    parser.add_argument("--poses", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config key=value (e.g. body.models=…)")
    args = parser.parse_args(argv)
    cfg = config(args.overrides)
    body = FastJoints(load_smplx(cfg.body.models, num_betas=11), list(SMPLX_TO_COCO17))
    rng = np.random.default_rng(args.seed)
    models = pose_models(cfg.synthetic)
    n, cut = args.poses, int(0.8 * args.poses)
    orient = upright_orientation(rng, n + n - cut)
    six = {SETS[0]: _six(orient[:n], sample_body_pose(rng, n)),
           SETS[1]: _six(orient[:n], models["train"].images(rng, n)),
           SETS[2]: _six(orient[n:], models["test"].images(rng, n - cut))}
    result = {}
    for name in SETS[:2]:
        net = fit(body, six[name][:cut], args.steps, args.seed)
        result[name] = errors(body, net, six[name][cut:])
        print(name, result[name], flush=True)
    result[SETS[2]] = errors(body, net, six[SETS[2]])  # the network of the training motions
    print(SETS[2], result[SETS[2]], flush=True)
    return {**result, "machine": machine()}


def main(argv: Sequence[str] | None = None) -> int:
    print(run(argv)["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
