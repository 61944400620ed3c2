"""Measurement of docs/diagnosis.md §7: does the backbone stand-in learn the body's heading?

Trains the stand-in regressor of `train.backbone_pretraining` as configured (the profile's
backbone and head, its seed, regression loss, data, and the batch, steps and cosine schedule of
`backbone_pretraining`), and every `--every` steps measures its regressed global orientation
against the ground truth: geodesic angle (median, p90, share > 120°) on 96 seeded test crops and
on the first 128 un-augmented training crops. Nothing is cached; the trained weights are dropped.

`python -m benchmarks.diagnosis.backbone_heading [--every 250] backbone_pretraining.steps=2000
[backbone_pretraining.orientation_weight=W] [key=value …]`
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from body.joints import SMPLX_2D_LOSS_JOINTS
from body.rotations import axis_angle_to_matrix, rot6d_to_matrix
from core.cli import ArgumentParser, run_cli
from eval.examples import TestExamples
from stores.paths import store_path
from stores.store import Store
from train.backbone_pretraining import build_regressor, pretraining_schedule, regression_step
from train.data import make_loader
from train.inputs import to_device
from train.model import NUM_BETAS, POSE_DIM
from train.schedule import learning_rate
from train.trainer import build_caches

from .common import batch_of, config, examples, json_main, machine
from .heading import WRONG_WAY_DEG
from .spread import geodesic_deg


def _summary(err: torch.Tensor) -> dict:
    return {"median": round(float(err.median()), 1),
            "p90": round(float(torch.quantile(err, 0.9)), 1),
            "wrong_way_pct": round(float((err > WRONG_WAY_DEG).float().mean()) * 100, 1)}


def run(args: argparse.Namespace) -> dict:
    cfg = config(["train.workers=0", "train.backbone_in_loader=false", *args.overrides])
    p = cfg.backbone_pretraining
    if p.steps <= 0:
        raise ValueError("backbone_pretraining.steps: give the steps to train, e.g. "
                         "backbone_pretraining.steps=2000")
    torch.set_num_threads(cfg.train.threads)
    model, optimizer = build_regressor(cfg, POSE_DIM, NUM_BETAS, len(SMPLX_2D_LOSS_JOINTS))
    schedule = pretraining_schedule(p)
    test_path = store_path(cfg.paths.stores, args.test)
    test = TestExamples(test_path, cfg.model.crop_size, cfg.train.context_factor)
    pick = np.random.default_rng(0).permutation(len(test))[:96]
    test_batches = list(DataLoader(Subset(test, pick.tolist()), batch_size=32))
    test_pose = Store(test_path).labels().pose
    train_batch = batch_of(examples(cfg, augment=False), range(128))

    def heading() -> dict:
        model.eval()
        with torch.no_grad():
            errors = []
            for batch in test_batches:
                inputs, extras = to_device(batch, torch.device("cpu"))
                root = rot6d_to_matrix(model(inputs.image)[0][:, :6])
                gt = axis_angle_to_matrix(torch.as_tensor(
                    test_pose[extras.row.numpy()][:, 0], dtype=root.dtype))
                errors.append(geodesic_deg(root, gt))
            train_root = rot6d_to_matrix(model(train_batch.inputs.image)[0][:, :6])
            train_err = geodesic_deg(train_root, rot6d_to_matrix(
                train_batch.targets.gt_pose6d[:, 0]))
        model.train()
        return {"test": _summary(torch.cat(errors)), "train": _summary(train_err)}

    curve, start, step = [], time.time(), 0
    model.train()
    for batch in make_loader(build_caches(cfg), cfg, 0, batch_size=p.batch_size):
        if step >= p.steps:
            break
        loss = regression_step(model, optimizer, batch, learning_rate(step, schedule),
                               p.orientation_weight)
        step += 1
        if step % args.every == 0 or step == p.steps:
            curve.append({"step": step, "loss": round(float(loss), 4),
                          "seconds": round(time.time() - start), **heading()})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
    return {"steps": p.steps, "orientation_weight": p.orientation_weight,
            "batch": p.batch_size, "curve": curve, "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--test", default="synthetic-test")
    p.add_argument("--every", type=int, default=250)
    p.add_argument("overrides", nargs="*", help="pipelines.yaml overrides key=value")
    return p.parse_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
