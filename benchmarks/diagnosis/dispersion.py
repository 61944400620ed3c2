"""Measurement 11 (docs/diagnosis.md §11): are the hypotheses as diverse in 2D as the heatmaps?

The MMD asks the projected random hypotheses of an uncertain joint to be distributed like the
detector's heatmap samples (docs/method.md §4). This compares the two spreads directly, per
(crop, joint), in 256-crop pixels, on the hypotheses' COCO-17 through the evaluation's path:

- `hypotheses`: mean distance of the random hypotheses' 2D joint to their mean;
- `heatmap`: the same for the stored heatmap samples;
- `truth_to_hypotheses` / `truth_to_heatmap`: distance of the ground truth to either mean
  (a distribution whose spread is far below its distance to the truth is overconfident);
- `means_apart`: distance between the two means.

Joint classes: `visible` (detector confidence > `conventions.visible_conf`), `occluded` (between
`losses.mmd_min_conf` and it, ground truth inside the crop: the joints of the report's W1),
and the occluded ones split into the MMD's highly articulated joints (`occluded_articulated`,
whose target may be heatmap samples) and the others (`occluded_other`, not penalised by it).

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
from eval.examples import EVAL_CROP
from train.inputs import to_device

from .common import json_main, machine, run_on_crops, run_parser

MEASURES = ("hypotheses", "heatmap", "truth_to_hypotheses", "truth_to_heatmap", "means_apart")
CLASSES = ("visible", "occluded", "occluded_articulated", "occluded_other")


def spread_px(points: torch.Tensor) -> torch.Tensor:
    """(B, 17) mean distance of points (B, P, 17, 2) to their mean over P."""
    return torch.linalg.vector_norm(points - points.mean(1, keepdim=True), dim=-1).mean(1)


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
    cfg, ckpt, model, evaluator, crops, labels = run_on_crops(args)
    generator = torch.Generator().manual_seed(0)
    sums = {(c, m): [0.0, 0] for c in CLASSES for m in MEASURES}
    to256 = lambda p: (p + 1) * EVAL_CROP / 2  # noqa: E731
    with torch.no_grad():
        for batch in DataLoader(crops, batch_size=8, shuffle=False):
            inputs, extras = to_device(batch, torch.device("cpu"))
            out = model(inputs).hypotheses(args.hypotheses - 1, generator)
            _, coco = evaluator.coco_crop(evaluator.smpl_vertices(out.pose6d, out.betas),
                                          out.transl, inputs)
            gt2d = torch.as_tensor(labels.kp2d_coco[extras.row.numpy()], dtype=coco.dtype)
            gt_crop = (gt2d - inputs.center[:, None]) / (100 * inputs.scale[:, None, None])
            hyp = to256(coco[:, 1:])  # the random hypotheses, (B, N, 17, 2)
            heat = to256(extras.hm_samples).transpose(1, 2)  # (B, M, 17, 2)
            gt = to256(gt_crop)
            values = {"hypotheses": spread_px(hyp), "heatmap": spread_px(heat),
                      "truth_to_hypotheses": torch.linalg.vector_norm(gt - hyp.mean(1), dim=-1),
                      "truth_to_heatmap": torch.linalg.vector_norm(gt - heat.mean(1), dim=-1),
                      "means_apart": torch.linalg.vector_norm(hyp.mean(1) - heat.mean(1),
                                                              dim=-1)}
            classes = joint_classes(inputs.det_kp[..., 2], gt_crop, cfg.conventions.visible_conf,
                                    cfg.losses.mmd_min_conf)
            for c, sel in classes.items():
                for m, v in values.items():
                    picked = v[sel & torch.isfinite(v)]
                    sums[c, m][0] += float(picked.sum())
                    sums[c, m][1] += int(picked.numel())
    result = {c: {"joints": sums[c, "hypotheses"][1],
                  **{m: round(sums[c, m][0] / max(sums[c, m][1], 1), 2) for m in MEASURES}}
              for c in CLASSES}
    return {"run": args.run, "checkpoint": str(ckpt), "dataset": args.dataset,
            "crops": len(crops), "hypotheses": args.hypotheses, "px256": result,
            "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_parser(__doc__, crops=96).parse_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
