"""Measurement 1 and the oracle head of measurement 2 (docs/diagnosis.md): the labels' SMPL-X
parameters through the model's own projection path (`ProbabilisticHMR.project`: fast joints,
CLIFF camera, crop normalisation) in the augmented crop, against the stored 2D joints; then the
same ground truth fed to the loss path (no network).

`python -m benchmarks.diagnosis.projection [--examples N] [key=value …]`
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from core.cli import ArgumentParser, run_cli
from train.data import TrainingExample
from train.model import ProbabilisticHMR
from train.objective import loss_terms
from train.posterior import Hypotheses

from .common import batch_of, config, crop_px, examples, gt_transl, machine, \
    translation_to_camera


def oracle_hypotheses(model: ProbabilisticHMR, batch: TrainingExample, transl: torch.Tensor,
                      samples: int = 2) -> Hypotheses:
    """The ground truth as 1 + `samples` identical hypotheses through `model.project`."""
    t = batch.targets
    pose = t.gt_pose6d[:, None].expand(-1, 1 + samples, -1, -1)
    cam = translation_to_camera(transl, batch.inputs)
    return model.project(pose, t.gt_betas, cam, batch.inputs)


def shape_floor(model: ProbabilisticHMR, batch: TrainingExample, transl: torch.Tensor,
                iterations: int = 300) -> dict:
    """The ground-truth pose with the MEAN shape (β = 0), the camera (s, tx, ty) fitted per
    example to the stored 2D joints (Adam on the mode's L1, the 2D loss): the 2D error that no
    camera can remove when the head predicts the mean shape."""
    t = batch.targets
    pose = t.gt_pose6d[:, None]
    cam = translation_to_camera(transl, batch.inputs).clone().requires_grad_(True)
    betas = torch.zeros_like(t.gt_betas)
    valid = t.gt_body2d_valid[..., None]
    opt = torch.optim.Adam([cam], lr=1e-2)
    for _ in range(iterations):
        out = model.project(pose, betas, cam, batch.inputs)
        loss = ((out.mode.body2d - t.gt_body2d).abs() * valid).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = model.project(pose, betas, cam, batch.inputs)
        diff = (out.mode.body2d - t.gt_body2d)[t.gt_body2d_valid]
    return {"mean_shape_fitted_camera_l1_per_coord": float(diff.abs().mean()),
            "mean_shape_fitted_camera_px256_mean": float(crop_px(diff.norm(dim=-1)).mean()),
            "mean_shape_fitted_camera_px256_median": float(crop_px(diff.norm(dim=-1)).median())}


def measure(n: int, overrides: Sequence[str], fit_iterations: int = 300) -> dict:
    """Both measurements on examples k = 0 … n − 1 (augmented as in training)."""
    cfg = config(overrides)
    data = examples(cfg, augment=True)
    model = ProbabilisticHMR(cfg, cfg.body.models).eval()
    batch = batch_of(data, range(n))
    t = batch.targets
    with torch.no_grad():
        out = oracle_hypotheses(model, batch, gt_transl(data, batch))
        err_body = (out.mode.body2d - t.gt_body2d).norm(dim=-1)[t.gt_body2d_valid]
        coco_ok = t.gt_coco.isfinite().all(-1)
        err_coco = (out.mode.coco2d - t.gt_coco).norm(dim=-1)[coco_ok]
        terms = loss_terms(out, torch.zeros(n), t, cfg)
    floor = shape_floor(model, batch, gt_transl(data, batch), fit_iterations)
    return {**floor, "examples": n, "body24_px256_max": float(crop_px(err_body).max()),
            "body24_px256_mean": float(crop_px(err_body).mean()),
            "coco17_px256_max": float(crop_px(err_coco).max()),
            "keypoints_2d_loss": float(terms["keypoints_2d"]),
            "betas_loss": float(terms["betas"]), "orth_loss": float(terms["orth"]),
            "camera_loss": float(terms["camera"]),
            "orientation_mode_loss": float(terms["orientation_mode"]), "machine": machine()}


def run(argv: Sequence[str] | None = None) -> dict:
    """The flags of `argv` parsed and measured."""
    parser = ArgumentParser(prog="python -m benchmarks.diagnosis.projection", description=__doc__)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--fit-iterations", type=int, default=300,
                        help="Adam steps of the mean-shape camera fit")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    return measure(args.examples, args.overrides, args.fit_iterations)


def main(argv: Sequence[str] | None = None) -> int:
    for key, value in run(argv).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
