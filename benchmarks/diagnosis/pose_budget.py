"""Measurement 10 (docs/diagnosis.md §10): how far the mode's pose is from what the same inputs
allow at the same budget.

Both are scored on `--crops` un-augmented training crops with the labels' own shape and camera,
so only the pose counts: the mean 2D error (256-crop px) of the 24 joints of the 2D loss.

- `runs`: the mode of each `--run` (its latest checkpoint);
- `lift`: a plain MLP from the model's 2D inputs (the detector's 17 joints with confidences and
  the box condition, 54 values) to the 22 × 6D pose, L2 on the 6D pose, trained on augmented
  training crops of the trainer's own stream (`train.data.make_loader`: a fresh augmentation
  and order every epoch) at batch `--batch` for `--steps` steps (Adam, lr 1e-3), scored every
  `--every` steps: a deterministic regressor of the same inputs at the same budget.

`python -m benchmarks.diagnosis.pose_budget [--run A --run B …] [--steps 1500] [key=value …]`
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence

import torch
from torch import nn

from core.cli import ArgumentParser, run_cli
from train.checkpoint import latest_checkpoint, run_dir
from train.data import TrainingExample, make_loader
from train.inputs import ModelInput
from train.model import POSE_DIM, ProbabilisticHMR, load_model
from train.trainer import build_caches

from .common import batch_of, config, examples, gt_transl, json_main, machine, mode_error, \
    translation_to_camera


def lift_inputs(inputs: ModelInput) -> torch.Tensor:
    """(B, 54) the lift's input: the detector's joints and confidences, the box condition."""
    return torch.cat([inputs.det_kp.flatten(1), inputs.bbox_cond], 1)


def lift_network(seed: int) -> nn.Module:
    """54 → 512 → 512 → 132, its output starting at the identity rotations."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(54, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, POSE_DIM))
    nn.init.zeros_(net[-1].weight)
    with torch.no_grad():
        net[-1].bias.copy_(torch.eye(3)[:2].flatten().repeat(POSE_DIM // 6))
    return net


def pose_error_px(body: ProbabilisticHMR, batch: TrainingExample, cam: torch.Tensor,
                  pose6d: torch.Tensor) -> float:
    """Mean 2D error (256-crop px) of poses (B, 22, 6) with the labels' shape and camera `cam`."""
    with torch.no_grad():
        out = body.project(pose6d[:, None], batch.targets.gt_betas, cam, batch.inputs)
    return round(mode_error(out, batch.targets)[1], 2)


def run(args: argparse.Namespace) -> dict:
    cfg = config(args.overrides)
    plain = examples(cfg, augment=False)
    pick = torch.randperm(len(plain), generator=torch.Generator().manual_seed(0))[:args.crops]
    scored = batch_of(plain, pick.tolist())
    cam = translation_to_camera(gt_transl(plain, scored), scored.inputs)
    body = ProbabilisticHMR(cfg, cfg.body.models)
    result = {"crops": len(pick), "labels_pose": pose_error_px(body, scored, cam,
                                                               scored.targets.gt_pose6d)}
    runs = {}
    for name in args.runs:
        run_cfg = config([f"train.run={name}", *args.overrides])
        model, _, _ = load_model(run_cfg, latest_checkpoint(run_dir(run_cfg)))
        with torch.no_grad():
            runs[name] = pose_error_px(body, scored, cam, model.eval()(scored.inputs).mode())
    result["runs"] = runs
    net, curve = lift_network(args.seed), {}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = make_loader(build_caches(cfg), cfg, 0, batch_size=args.batch)  # the trainer's stream
    for step, batch in enumerate(itertools.islice(loader, args.steps), 1):
        loss = (net(lift_inputs(batch.inputs)) - batch.targets.gt_pose6d.flatten(1))
        opt.zero_grad()
        loss.square().mean().backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            with torch.no_grad():
                pose = net(lift_inputs(scored.inputs)).unflatten(-1, (-1, 6))
            curve[step] = pose_error_px(body, scored, cam, pose)
            print(json.dumps({"lift_step": step, "px": curve[step]}), flush=True)
    result["lift"] = curve
    return {**result, "args": {k: v for k, v in vars(args).items() if k != "overrides"},
            "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", dest="runs", action="append", default=[],
                   help="a run name under paths.runs (repeat for several)")
    p.add_argument("--crops", type=int, default=400)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="pipelines.yaml overrides key=value")
    return p.parse_intermixed_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
