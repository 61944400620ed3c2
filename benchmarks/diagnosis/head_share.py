"""Measurement 12 (docs/diagnosis.md §12): how much of the hypotheses' 2D miss is the head's?

The flow models the pose only; the body shape and the camera come from a deterministic head
(docs/method.md §3), so their error cannot show as spread. This projects the same hypotheses
(mode excluded) of `--crops` un-augmented training crops twice through the training path
(`ProbabilisticHMR.project`, SMPL-X COCO-17): with the model's own shape and camera (`own`) and
with the labels' shape and camera (`labels`); `own_smpl` is `own` through the evaluation's path
instead (SMPL-X → SMPL mesh → COCO-17, `eval.protocol.Evaluator.coco_crop`, as `dispersion`
scores), against the same SMPL-X labels. It reports per joint class, in 256-crop pixels,
the measures of `dispersion` (the hypotheses' spread, the truth's distance to their mean, and the
same for the heatmap samples). If the truth is as far from the hypotheses' mean as they spread
once the head is exact, the pose distribution is calibrated in 2D and the overconfidence seen by
`dispersion` is the head's; if it stays far beyond the spread, it is the flow's.
`labels_pose` is the labels' own pose through the `labels` path (≈ 0 px: the check).

`python -m benchmarks.diagnosis.head_share --run NAME [--crops 96] [--hypotheses 100]`
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from core.cli import run_cli
from eval.examples import to_eval_px
from eval.protocol import Evaluator
from train.checkpoint import latest_checkpoint, run_dir
from train.model import load_model

from .common import batch_of, config, crop_px, examples, gt_transl, json_main, machine, \
    run_parser, translation_to_camera
from .dispersion import accumulate, averages, joint_classes, measures

HEADS = ("own", "labels", "own_smpl")


def run(args: argparse.Namespace) -> dict:
    cfg = config([f"train.run={args.run}", *args.overrides])
    ckpt = latest_checkpoint(run_dir(cfg))
    model, trained, _ = load_model(cfg, ckpt)
    model.eval()
    evaluator = Evaluator(model, trained, "emdb", torch.device("cpu"))
    plain = examples(cfg, augment=False)
    pick = torch.randperm(len(plain), generator=torch.Generator().manual_seed(0))[:args.crops]
    generator = torch.Generator().manual_seed(0)
    sums: dict = {}
    labels_pose = []
    with torch.no_grad():
        for start in range(0, len(pick), 8):
            batch = batch_of(plain, pick[start:start + 8].tolist())
            inputs, targets = batch.inputs, batch.targets
            out = model(inputs).hypotheses(args.hypotheses - 1, generator)
            cam = translation_to_camera(gt_transl(plain, batch), inputs)
            projected = {"own": out.coco2d[:, 1:],
                         "labels": model.project(out.pose6d[:, 1:], targets.gt_betas, cam,
                                                 inputs).coco2d,
                         "own_smpl": evaluator.coco_crop(evaluator.smpl_vertices(
                             out.pose6d[:, 1:], out.betas), out.transl, inputs)[1]}
            truth = model.project(targets.gt_pose6d[:, None], targets.gt_betas, cam, inputs)
            labels_pose.append(crop_px((truth.coco2d[:, 0] - targets.gt_coco).norm(dim=-1)))
            gt = to_eval_px(targets.gt_coco)
            heat = to_eval_px(targets.hm_samples).transpose(1, 2)  # (B, M, 17, 2)
            classes = joint_classes(inputs.det_kp[..., 2], targets.gt_coco,
                                    cfg.conventions.visible_conf, cfg.losses.mmd_min_conf)
            for head, points in projected.items():
                accumulate(sums, head, classes, measures(to_eval_px(points), heat, gt))
    result = {h: averages(sums, h) for h in HEADS}
    return {"run": args.run, "checkpoint": str(ckpt), "crops": len(pick),
            "hypotheses": args.hypotheses, "labels_pose_px": round(float(
                torch.cat(labels_pose).mean()), 3), "px256": result, "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_parser(__doc__, crops=96, dataset=False).parse_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
