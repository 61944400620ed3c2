"""Measurement 3 (docs/diagnosis.md): how lift-able is the synthetic pose distribution?

Two pose sets of the same size go through the same pipeline: the world's own poses
(`synthetic.poses.sample_body_pose`: independent Euler angles per joint) and a small parametric
motion set (walk, run, squat, sit, reach, bend, wave: few latent parameters per pose, phase and
amplitude random, plus noise, clipped to the same joint limits). Each pose, with the mean shape,
an upright random heading and a camera 5 m away, gives its COCO-17 joints in 2D (centred on the
hips, scaled by the body's 2D extent). A small MLP (2D → 22 × 6D) is fitted on the training part;
on held-out poses we report the pelvis-aligned 3D joint error (mm) and the 2D error of the
re-projected prediction (px of a 256 crop).

`python -m benchmarks.diagnosis.lift [--poses N] [--steps N] [key=value …]`
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import nn

from body.fast_joints import FastJoints
from body.joints import SMPLX_TO_COCO17
from body.models import load_smplx
from body.rotations import axis_angle_to_rot6d, rot6d_to_matrix
from core.cli import ArgumentParser, run_cli
from synthetic.poses import LIMITS_HIGH, LIMITS_LOW, REST, sample_body_pose, \
    upright_orientation

from .common import config, machine

# motion → {body joint (1..21): (axis, amplitude (rad), phase offset (cycles))}; right side of a
# left joint is its mirror partner with phase + 0.5 for the gaits
_GAIT = {1: (0, -0.6, 0.0), 2: (0, -0.6, 0.5), 4: (0, 0.8, 0.25), 5: (0, 0.8, 0.75),
         16: (1, 0.5, 0.5), 17: (1, -0.5, 0.0), 18: (1, -0.5, 0.5), 19: (1, 0.5, 0.0)}
MOTIONS = {
    "walk": _GAIT,
    "run": {j: (a, 2.0 * amp, ph) for j, (a, amp, ph) in _GAIT.items()},
    "squat": {1: (0, -1.5, 0.0), 2: (0, -1.5, 0.0), 4: (0, 2.0, 0.0), 5: (0, 2.0, 0.0),
              7: (0, 0.4, 0.0), 8: (0, 0.4, 0.0), 3: (0, 0.3, 0.0)},
    "sit": {1: (0, -1.6, 0.0), 2: (0, -1.6, 0.0), 4: (0, 1.6, 0.0), 5: (0, 1.6, 0.0)},
    "reach": {16: (2, 1.8, 0.0), 18: (1, 0.8, 0.0), 3: (1, 0.2, 0.0), 6: (1, 0.2, 0.0)},
    "bend": {3: (0, 0.35, 0.0), 6: (0, 0.35, 0.0), 9: (0, 0.35, 0.0), 1: (0, -0.8, 0.0),
             2: (0, -0.8, 0.0), 12: (0, -0.3, 0.0)},
    "wave": {17: (2, -1.8, 0.0), 19: (1, 1.5, 0.25), 20: (2, 0.5, 0.0)},
}


def motion_euler(rng: np.random.Generator, n: int, noise: float = 0.05) -> np.ndarray:
    """(n, 21, 3) intrinsic XYZ Euler angles of the parametric motions: random motion, phase in
    a cycle, amplitude × U(0.5, 1.2), per-joint noise noise·range, clipped to the joint limits."""
    names = list(MOTIONS)
    euler = np.repeat(REST[None], n, 0).copy()
    kinds = rng.integers(len(names), size=n)
    phase, gain = rng.uniform(0, 1, n), rng.uniform(0.5, 1.2, n)
    for i in range(n):
        for joint, (axis, amp, offset) in MOTIONS[names[kinds[i]]].items():
            cyclic = names[kinds[i]] in ("walk", "run", "wave")
            wave = np.sin(2 * np.pi * (phase[i] + offset)) if cyclic else phase[i]
            euler[i, joint - 1, axis] += gain[i] * amp * wave
    euler += rng.normal(0, noise, euler.shape) * (LIMITS_HIGH - LIMITS_LOW)
    return np.clip(euler, LIMITS_LOW, LIMITS_HIGH)


def motion_poses(rng: np.random.Generator, n: int, noise: float = 0.05) -> np.ndarray:
    """(n, 21, 3) axis-angle poses of `motion_euler`."""
    euler = motion_euler(rng, n, noise)
    return Rotation.from_euler("XYZ", euler.reshape(-1, 3)).as_rotvec().reshape(n, 21, 3)


def render(body: FastJoints, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pelvis-relative 3D COCO joints (n, 17, 3) m and normalised 2D (n, 17, 2) of (n, 22, 6)."""
    joints = body(torch.zeros(len(pose), 11), rot6d_to_matrix(pose))
    cam = joints + torch.tensor([0.0, 0.0, 5.0])
    uv = cam[..., :2] / cam[..., 2:]
    hips = uv[:, 11:13].mean(1, keepdim=True)
    extent = (uv.amax(1) - uv.amin(1)).amax(-1)[:, None, None]
    return joints - joints[:, 11:13].mean(1, keepdim=True), (uv - hips) / extent


def lift(body: FastJoints, pose: torch.Tensor, steps: int, seed: int) -> dict:
    """Fit the MLP on 80 % of `pose`, errors on the other 20 %."""
    torch.manual_seed(seed)
    j3, j2 = render(body, pose)
    cut = int(0.8 * len(pose))
    net = nn.Sequential(nn.Linear(34, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, 132))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = j2.flatten(1), pose.flatten(1)
    for _ in range(steps):
        idx = torch.randint(cut, (256,))
        loss = (net(x[idx]) - y[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred3, pred2 = render(body, net(x[cut:]).unflatten(-1, (22, 6)))
        err3 = (pred3 - j3[cut:]).norm(dim=-1).mean() * 1000
        # 2D: the normalised frame spans the body extent; 256 px ≈ 1.2 extents (HMR box)
        err2 = (pred2 - j2[cut:]).norm(dim=-1).mean() * 256 / 1.2
    return {"mpjpe_mm": round(float(err3), 1), "kp2d_px256": round(float(err2), 2)}


def run(argv: Sequence[str] | None = None) -> dict:
    """The flags of `argv` parsed; the held-out errors of both pose sets."""
    parser = ArgumentParser(prog="python -m benchmarks.diagnosis.lift", description=__doc__)
    parser.add_argument("--poses", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config key=value (e.g. body.models=…)")
    args = parser.parse_args(argv)
    cfg = config(args.overrides)
    body = FastJoints(load_smplx(cfg.body.models, num_betas=11), list(SMPLX_TO_COCO17))
    rng = np.random.default_rng(args.seed)
    orient = upright_orientation(rng, args.poses)
    result = {}
    for name, body_pose in (("world (independent Euler)", sample_body_pose(rng, args.poses)),
                            ("parametric motions", motion_poses(rng, args.poses))):
        aa = torch.from_numpy(np.concatenate([orient[:, None], body_pose], 1)).float()
        result[name] = lift(body, axis_angle_to_rot6d(aa), args.steps, args.seed)
        print(name, result[name], flush=True)
    return {**result, "machine": machine()}


def main(argv: Sequence[str] | None = None) -> int:
    print(run(argv)["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
