"""Measurement 9 (docs/diagnosis.md §9): where the mode's 2D error on right-person crops comes from.

On the crops where the detector found the right person (`eval.metrics.right_person`) the mode's
2DKP is ≈ 3× the detector's own. This splits it, on the visible joints (detector conf > 0.5),
in 256-crop pixels, through the evaluation's own path (SMPL-X → SMPL mesh → COCO-17):

- `mode`: the mode as the report scores it (`kp2d_right.mode`);
- `mode_similarity`: the same after the best per-crop 2D scale and shift of the mode's joints
  onto the ground truth (least squares): what is left once the camera is ideal;
- `detector`: the detector's own error on the same joints;
- `gt_body` (test split only): the labels' own body through the same path (gendered SMPL mesh,
  the neutral regressor), the metric's floor for an exact body.

`--dataset` names any store with COCO labels; for a training store (SMPL-X rows) `gt_body` is
skipped. `python -m benchmarks.diagnosis.mode2d --run NAME [--dataset synthetic-test] [--crops N]`
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from body.cameras import crop_normalize
from core.cli import run_cli
from eval import metrics
from eval.examples import EVAL_CROP, to_eval_px
from eval.protocol import project_to_crop
from train.inputs import to_device

from .common import json_main, machine, run_on_crops, run_parser


def similarity_fit(points: torch.Tensor, target: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """points (B, J, 2) after the per-crop scale s and shift t minimising Σ_sel ‖s·p + t − q‖²
    over the selected joints sel (B, J) bool (a crop with < 2 selected joints is left as is)."""
    w = sel.to(points.dtype)[..., None]
    n = w.sum(1, keepdim=True).clamp(min=1)
    pc, qc = (points * w).sum(1, keepdim=True) / n, (target * w).sum(1, keepdim=True) / n
    dp, dq = (points - pc) * w, (target - qc) * w
    s = (dp * dq).sum((1, 2)) / (dp * dp).sum((1, 2)).clamp(min=1e-12)
    s = torch.where(sel.sum(1) >= 2, s, torch.ones_like(s))[:, None, None]
    return s * (points - pc) + qc


def run(args: argparse.Namespace) -> dict:
    cfg, ckpt, model, evaluator, crops, labels = run_on_crops(args)
    smpl_rows = str(labels.body_model) == "smpl"
    sums: dict[str, list[float]] = {}

    def add(name: str, pred: torch.Tensor, gt: torch.Tensor, sel: torch.Tensor) -> None:
        err = torch.linalg.vector_norm(pred - gt, dim=-1)[sel]
        total = sums.setdefault(name, [0.0, 0])
        total[0] += float(err.sum())
        total[1] += int(sel.sum())

    with torch.no_grad():
        for batch in DataLoader(crops, batch_size=8, shuffle=False):
            inputs, extras = to_device(batch, torch.device("cpu"))
            rows = extras.row.numpy()
            posterior = model(inputs)
            mode = posterior.hypotheses(0)  # the mode alone: no random draw
            verts = evaluator.smpl_vertices(mode.pose6d, mode.betas)
            _, coco = evaluator.coco_crop(verts, mode.transl, inputs)
            gt2d = torch.as_tensor(labels.kp2d_coco[rows])
            gt = to_eval_px(crop_normalize(gt2d, inputs.center, inputs.scale))
            det = to_eval_px(inputs.det_kp[..., :2])
            visible = inputs.det_kp[..., 2] > cfg.conventions.visible_conf
            right = metrics.right_person(det, gt, visible, EVAL_CROP)
            sel = visible & right[:, None]
            pred = to_eval_px(coco[:, 0])
            add("mode", pred, gt, sel)
            add("mode_similarity", similarity_fit(pred, gt, sel), gt, sel)
            add("detector", det, gt, sel)
            if smpl_rows:
                gt_verts, _ = evaluator.ground_truth(labels, rows)
                joints = metrics.coco17_of_smpl_mesh(gt_verts, evaluator.smpl_regressor,
                                                     evaluator.vertex_ids)
                zero = torch.zeros(len(rows), 3)
                add("gt_body", to_eval_px(project_to_crop(joints[:, None], zero, inputs)[:, 0]), gt,
                    sel)
    return {"run": args.run, "checkpoint": str(ckpt), "dataset": args.dataset,
            "crops": len(crops), "joints": sums["mode"][1],
            "kp2d_right_px": {k: round(v / max(n, 1), 2) for k, (v, n) in sums.items()},
            "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_parser(__doc__, crops=320, hypotheses=False).parse_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
