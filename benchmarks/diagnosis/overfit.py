"""Measurement 2 (docs/diagnosis.md): overfit a fixed set of training crops (no augmentation)
with the full model and its full loss, one suspect changed at a time.

The frozen backbone's features are computed once (it is frozen and in eval mode, so this changes
no number); `--features zeros|embedding` replaces them by zeros or by a learned per-example
vector. `--oracle-det`: the condition is the ground-truth 2D (conf 1) instead of the detector.
`--oracle-shape-camera`: the projection uses the ground-truth β and camera, so only the pose
is learned. `--direct`: a plain MLP regresses the pose (all slots equal) instead of the flow,
its NLL term replaced by the squared 6D error. Config overrides (`model.regressor_dropout=0`,
`train.lr=1e-3`, `model.regressor_iterations=1`, …) as key=value.

`python -m benchmarks.diagnosis.overfit --steps 1000 [flags] [key=value …]`; prints the mode's
2D error (mean L1 per coordinate, crop-normalised, and mean px of a 256 crop) every 100 steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from core.cli import ArgumentParser, run_cli
from train.data import TrainingExample
from train.model import POSE_DIM, ProbabilisticHMR
from train.objective import loss_terms, total, training_forward
from train.posterior import Hypotheses

from .common import batch_of, config, examples, gt_transl, machine, mode_error, \
    translation_to_camera


class Features(nn.Module):
    """Stand-in for the frozen backbone on a fixed batch: cached, zero or learned per example."""

    def __init__(self, cached: torch.Tensor, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.register_buffer("cached", cached if kind == "backbone" else torch.zeros_like(cached))
        self.table = nn.Parameter(0.1 * torch.randn_like(cached)) if kind == "embedding" else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.table if self.table is not None else self.cached


def run(args: argparse.Namespace) -> dict:
    """The overfit curve of `args` (flags of `parse`)."""
    cfg = config(args.overrides)
    torch.manual_seed(args.seed)
    data = examples(cfg, augment=False)
    counters = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
    batch = batch_of(data, counters[:args.crops])
    if args.oracle_det:
        coco = batch.targets.gt_coco
        det_kp = torch.cat([coco, torch.ones_like(coco[..., :1])], -1)
        batch = batch._replace(inputs=batch.inputs._replace(det_kp=det_kp))
    model = ProbabilisticHMR(cfg, cfg.body.models)
    with torch.no_grad():
        cached = model.backbone.eval()(batch.inputs.image)
    model.backbone = Features(cached, args.features)
    with torch.no_grad():
        cond_dim = model.conditions(batch.inputs).shape[1]
    direct = nn.Sequential(nn.Linear(cond_dim, 512), nn.ReLU(),
                           nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, POSE_DIM)) \
        if args.direct else None
    if direct is not None:
        nn.init.zeros_(direct[-1].weight)
        with torch.no_grad():
            direct[-1].bias.copy_(torch.eye(3)[:2].flatten().repeat(22))
        model.direct = direct
    cam_gt = translation_to_camera(gt_transl(data, batch), batch.inputs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    n = cfg.model.samples_train
    curve, start = [], time.time()
    for step in range(1, args.steps + 1):
        model.train()
        out, log_prob = forward(model, batch, n, cam_gt, args, cfg)
        terms = loss_terms(out, log_prob, batch.targets, cfg)
        loss = total(terms, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == 1:
            model.eval()
            with torch.no_grad():
                l1, px = mode_error(forward(model, batch, 2, cam_gt, args, cfg)[0],
                                    batch.targets)
                betas = float(terms["betas"])
            curve.append({"step": step, "mode_l1": round(l1, 4), "mode_px256": round(px, 2),
                          "betas": round(betas, 2), "s/step": round((time.time() - start) / step,
                                                                    3)})
            print(json.dumps(curve[-1]), flush=True)
    return {"args": vars(args), "curve": curve, "machine": machine()}


def forward(model: ProbabilisticHMR, batch: TrainingExample, n: int, cam_gt: torch.Tensor,
            args: argparse.Namespace, cfg: DictConfig) -> tuple[Hypotheses, torch.Tensor]:
    """`train.objective.training_forward` (hypotheses, log p of the noised ground truth), with
    the --direct and --oracle-shape-camera substitutions."""
    if not args.direct and not args.oracle_shape_camera:
        return training_forward(model, batch, n, cfg)
    posterior = model(batch.inputs)
    if args.direct:
        pose = model.direct(posterior.condition)[:, None].expand(-1, 1 + n, -1)
        pose = pose.unflatten(-1, (22, 6))
    else:
        pose = posterior.mode_and_samples(n)
    betas, cam = posterior.shape_camera()
    if args.oracle_shape_camera:
        betas, cam = batch.targets.gt_betas, cam_gt
    out = model.project(pose, betas, cam, batch.inputs)
    gt = batch.targets.gt_pose6d
    log_prob = -(out.mode.pose6d - gt).square().flatten(1).sum(-1) * 100 if args.direct else \
        posterior.log_prob(gt + cfg.losses.nll_noise * torch.randn_like(gt))
    return out, log_prob


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags of the module doc."""
    parser = ArgumentParser(prog="python -m benchmarks.diagnosis.overfit", description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--crops", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", choices=["backbone", "zeros", "embedding"],
                        default="backbone")
    parser.add_argument("--oracle-det", action="store_true")
    parser.add_argument("--oracle-shape-camera", action="store_true")
    parser.add_argument("--direct", action="store_true")
    parser.add_argument("--json", default=None, help="write the curve here")
    parser.add_argument("overrides", nargs="*")
    return parser.parse_intermixed_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
