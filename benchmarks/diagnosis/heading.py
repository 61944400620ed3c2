"""Measurement 6 (docs/diagnosis.md §6): is the body's heading in the 2D-pose condition?

The project's flow and 2D-pose condition (the profile's sizes), trained with the NLL alone on
the detector's 2D pose of the training store (x, y normalised to the box, confidence; no image,
no box, no augmentation), then the mode's global orientation against the ground truth on the
kept rows of the training and the test store: geodesic angle in degrees (median, p90) and the
share of modes more than 120° off (the "faces the wrong way" count of §5), and the angle of 99
random hypotheses to their mode on the test rows. A trained model's own
figures come from `benchmarks.diagnosis.spread`.

`python -m benchmarks.diagnosis.heading [--test synthetic-test] [--steps 1500] [--batch 16]
[--seed 0] [key=value …]`
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from body.rotations import axis_angle_to_matrix, axis_angle_to_rot6d, rot6d_to_matrix
from core.cli import ArgumentParser, run_cli
from stores.paths import store_path
from stores.schema import KEPT
from stores.store import Store
from train.flow import make_flow
from train.inputs import pose_condition_input
from train.model import POSE_DIM, PoseCondition

from .common import config, machine
from .spread import geodesic_deg

WRONG_WAY_DEG = 120.0


def condition_and_pose(path) -> tuple[torch.Tensor, torch.Tensor]:
    """(det_kp (N, 17, 3) as the model sees it, ground-truth axis-angle pose (N, 22, 3)) of the
    store's kept rows."""
    store = Store(path)
    keep = store.read("status/reason") == KEPT
    labels = store.labels()
    det_kp = pose_condition_input(store.read("detector/keypoints")[keep], labels.center[keep],
                                  labels.scale[keep])
    return (torch.as_tensor(det_kp, dtype=torch.float32),
            torch.as_tensor(labels.pose[keep], dtype=torch.float32))


def _degrees(angles: torch.Tensor) -> dict:
    return {"median": round(float(angles.median()), 1),
            "p90": round(float(angles.quantile(0.9)), 1)}


def heading_errors(flow, condition, det_kp: torch.Tensor, pose: torch.Tensor) -> dict:
    """The mode's global-orientation error to the ground truth (degrees)."""
    with torch.no_grad():
        mode = flow.mode(condition(det_kp)).unflatten(1, (-1, 6))
    err = geodesic_deg(rot6d_to_matrix(mode[:, 0]), axis_angle_to_matrix(pose[:, 0]))
    return {"rows": len(err), **_degrees(err),
            "wrong_way_pct": round(100 * float((err > WRONG_WAY_DEG).float().mean()), 1)}


def samples_to_mode(flow, condition, det_kp: torch.Tensor, samples: int, seed: int) -> dict:
    """The global orientation of `samples` random hypotheses per row against the row's mode
    (degrees): the angular part of the 3D spread (`benchmarks.diagnosis.spread`)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        c = condition(det_kp)
        mode = flow.mode(c).unflatten(1, (-1, 6))[:, None, 0]
        drawn = flow.sample(c, samples, generator).unflatten(2, (-1, 6))[:, :, 0]
    return _degrees(geodesic_deg(rot6d_to_matrix(drawn), rot6d_to_matrix(mode)).flatten())


def run(cfg: DictConfig, test: str, steps: int, batch: int, seed: int) -> dict:
    """Train the NLL-only flow on `train.stores[0]`; its heading figures there and on `test`."""
    torch.manual_seed(seed)
    m = cfg.model
    train_kp, train_pose = condition_and_pose(store_path(cfg.paths.stores, cfg.train.stores[0]))
    condition = PoseCondition(tuple(m.pose_mlp))
    flow = make_flow(m.coupling, POSE_DIM, m.pose_mlp[-1], m.flow_blocks, m.flow_hidden,
                     m.soft_clamp, 0.0)
    params = [*condition.parameters(), *flow.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    target = axis_angle_to_rot6d(train_pose).flatten(1)
    for _ in range(steps):
        pick = torch.randint(0, len(target), (batch,))
        noised = target[pick] + cfg.losses.nll_noise * torch.randn(batch, POSE_DIM)
        loss = -flow.log_prob(noised, condition(train_kp[pick])).mean() / POSE_DIM
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_kp, test_pose = condition_and_pose(store_path(cfg.paths.stores, test))
    return {"steps": steps, "batch": batch, "seed": seed,
            "final_nll": round(float(loss.detach()), 3),
            "train": heading_errors(flow, condition, train_kp, train_pose),
            "test": heading_errors(flow, condition, test_kp, test_pose),
            "test_samples_to_mode": samples_to_mode(flow, condition, test_kp, 99, seed),
            "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--test", default="synthetic-test", help="the store the mode is tested on")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="pipelines.yaml overrides key=value")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    result = run(config(args.overrides), args.test, args.steps, args.batch, args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
