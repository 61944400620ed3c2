"""Measurement 11 (docs/diagnosis.md §11): are the hypotheses as diverse in 2D as the heatmaps?

The MMD asks the projected random hypotheses of an uncertain joint to be distributed like the
detector's heatmap samples (docs/method.md §4). This compares the two spreads directly, per
(crop, joint), in 256-crop pixels, on the hypotheses' COCO-17 through the evaluation's path:

- `hypotheses`: mean distance of the random hypotheses' 2D joint to their mean;
- `heatmap`: the same for the stored heatmap samples;
- `truth_to_hypotheses` / `truth_to_heatmap`: distance of the ground truth to either mean
  (a distribution whose spread is far below its distance to the truth is overconfident);
- `means_apart`: distance between the two means;
- `hypotheses_q50`, `hypotheses_q90`, `heatmap_q50`, `heatmap_q90`: 2D coverage, the share of
  (crop, joint) pairs whose ground truth lies in the central q % disc of either set
  (`eval.metrics.ball_coverage`, as the report's 3D calibration): q / 100 when calibrated.

Joint classes: `visible` (detector confidence > `conventions.visible_conf`), `occluded` (between
`losses.mmd_min_conf` and it, ground truth inside the crop: the joints of the report's W1),
and the occluded ones split into the MMD's highly articulated joints (`occluded_articulated`,
whose target may be heatmap samples) and the others (`occluded_other`, not penalised by it).
`px256` counts every crop, `px256_right_person` only the crops where the detector found the right
person (`eval.metrics.right_person`, as the report's right-person 2DKP): on the others the model
follows the detector onto another body, which no width of its hypotheses is meant to cover.

`python -m benchmarks.diagnosis.dispersion --run NAME [--dataset synthetic-test] [--crops 96]`
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from body.joints import COCO17_HIGHLY_ARTICULATED
from core.cli import run_cli
from eval import metrics
from eval.examples import EVAL_CROP, to_eval_px
from eval.protocol import CALIBRATION_Q
from train.inputs import to_device

from .common import json_main, machine, run_on_crops, run_parser

MEASURES = ("hypotheses", "heatmap", "truth_to_hypotheses", "truth_to_heatmap", "means_apart",
            "hypotheses_q50", "hypotheses_q90", "heatmap_q50", "heatmap_q90")
CLASSES = ("visible", "occluded", "occluded_articulated", "occluded_other")


def spread_px(points: torch.Tensor) -> torch.Tensor:
    """(B, 17) mean distance of points (B, P, 17, 2) to their mean over P."""
    return torch.linalg.vector_norm(points - points.mean(1, keepdim=True), dim=-1).mean(1)


def measures(hyp: torch.Tensor, heat: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """`MEASURES`, each (B, 17), of hypotheses (B, N, 17, 2), heatmap samples (B, M, 17, 2) and
    the ground truth (B, 17, 2), all in one pixel frame."""
    values = {"hypotheses": spread_px(hyp), "heatmap": spread_px(heat),
              "truth_to_hypotheses": torch.linalg.vector_norm(gt - hyp.mean(1), dim=-1),
              "truth_to_heatmap": torch.linalg.vector_norm(gt - heat.mean(1), dim=-1),
              "means_apart": torch.linalg.vector_norm(hyp.mean(1) - heat.mean(1), dim=-1)}
    for name, points in (("hypotheses", hyp), ("heatmap", heat)):
        covered = metrics.ball_coverage(points.transpose(1, 2), gt, CALIBRATION_Q).float()
        values.update({f"{name}_q{q}": c for q, c in zip(CALIBRATION_Q, covered)})
    return values


def accumulate(sums: dict, key: str, classes: dict[str, torch.Tensor],
               values: dict[str, torch.Tensor]) -> None:
    """Adds the finite `values` of each class (B, 17 bool) to sums[key, class, measure]."""
    for c, sel in classes.items():
        for m, v in values.items():
            picked = v[sel & torch.isfinite(v)]
            total = sums.setdefault((key, c, m), [0.0, 0])
            total[0] += float(picked.sum())
            total[1] += int(picked.numel())


def averages(sums: dict, key: str) -> dict[str, dict]:
    """Per class: its joint count and the mean of every measure (2 decimals, 3 for coverage)."""
    def mean(c: str, m: str) -> float:
        total, count = sums.get((key, c, m), (0.0, 0))
        return round(total / max(count, 1), 3 if "_q" in m else 2)
    return {c: {"joints": sums.get((key, c, "hypotheses"), (0, 0))[1],
                **{m: mean(c, m) for m in MEASURES}} for c in CLASSES}


def joint_classes(conf: torch.Tensor, gt_crop: torch.Tensor, visible_conf: float,
                  min_conf: float) -> dict[str, torch.Tensor]:
    """(B, 17) bool masks of `CLASSES` from the detector's confidences and the ground truth
    (B, 17, 2) in crop coordinates ([−1, 1])."""
    visible = conf > visible_conf
    occluded = ~visible & (conf > min_conf) & (gt_crop.abs() <= 1).all(-1)
    articulated = torch.zeros(conf.shape[-1], dtype=torch.bool)
    articulated[list(COCO17_HIGHLY_ARTICULATED)] = True
    return {"visible": visible, "occluded": occluded,
            "occluded_articulated": occluded & articulated,
            "occluded_other": occluded & ~articulated}


def run(args: argparse.Namespace) -> dict:
    cfg, ckpt, model, evaluator, picks, labels = run_on_crops(args)
    generator = torch.Generator().manual_seed(0)
    sums: dict = {}
    right_crops = 0
    with torch.no_grad():
        for batch in DataLoader(picks, batch_size=8, shuffle=False):
            inputs, extras = to_device(batch, torch.device("cpu"))
            out = model(inputs).hypotheses(args.hypotheses - 1, generator)
            _, coco = evaluator.coco_crop(evaluator.smpl_vertices(out.pose6d, out.betas),
                                          out.transl, inputs)
            gt2d = torch.as_tensor(labels.kp2d_coco[extras.row.numpy()], dtype=coco.dtype)
            gt_crop = (gt2d - inputs.center[:, None]) / (100 * inputs.scale[:, None, None])
            hyp = to_eval_px(coco[:, 1:])  # the random hypotheses, (B, N, 17, 2)
            heat = to_eval_px(extras.hm_samples).transpose(1, 2)  # (B, M, 17, 2)
            gt = to_eval_px(gt_crop)
            values = measures(hyp, heat, gt)
            classes = joint_classes(inputs.det_kp[..., 2], gt_crop, cfg.conventions.visible_conf,
                                    cfg.losses.mmd_min_conf)
            right = metrics.right_person(to_eval_px(inputs.det_kp[..., :2]), gt, classes["visible"],
                                         EVAL_CROP)
            right_crops += int(right.sum())
            accumulate(sums, "all", classes, values)
            accumulate(sums, "right_person", {c: sel & right[:, None]
                                              for c, sel in classes.items()}, values)
    return {"run": args.run, "checkpoint": str(ckpt), "dataset": args.dataset,
            "crops": len(picks), "right_person_crops": right_crops,
            "hypotheses": args.hypotheses, "px256": averages(sums, "all"),
            "px256_right_person": averages(sums, "right_person"), "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_parser(__doc__, crops=96).parse_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
