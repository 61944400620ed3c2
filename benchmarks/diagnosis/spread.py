"""Measurement 5 (docs/diagnosis.md §5): where the 3D spread of a trained model comes from.

The 3DKP spread (docs/method.md §6) is measured on the hypotheses' COCO-17 joints in the camera
frame, so a hypothesis whose global orientation differs moves every joint. This splits it: the
spread as the metric computes it; the same with every hypothesis given the mode's global
orientation (what the body pose alone contributes); the angular spread of the global orientation
(geodesic angle of each hypothesis to the mode, degrees) beside the mode's and the samples'
angle to the ground truth; and the metric's spread per camera
axis (x, y in the image plane, z the depth), visible and invisible joints apart. Beside them
(docs/diagnosis.md §8) the wrong-way shares: of the modes and of the random hypotheses more than
90° from the ground truth's global orientation, and the flow's log-density of the ground truth
turned around (180° about the camera's y axis, the body pose kept) minus that of the ground truth
itself: a split distribution (both headings alike) has it near 0, a mode on the wrong side of a
distribution that prefers the truth has it well below 0.

`python -m benchmarks.diagnosis.spread --run NAME [--crops 96] [--hypotheses 100] [key=value …]`
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from body.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from core.cli import run_cli
from eval.examples import TestExamples
from eval.protocol import Evaluator
from stores.paths import store_path
from stores.store import Store
from train.checkpoint import latest_checkpoint, run_dir
from train.inputs import to_device
from train.model import load_model

from .common import config, json_main, machine, run_parser


def _spread(joints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean distance (mm) of each selected (image, joint)'s hypotheses to their mean, per axis
    (..., 3) and in total (...): joints (B, N, J, 3) metres, mask (B, J)."""
    dev = joints - joints.mean(1, keepdim=True)
    return (dev.abs().mean(1)[mask].mean(0) * 1000, dev.norm(dim=-1).mean(1)[mask].mean() * 1000)


def geodesic_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (degrees) of the rotation taking b to a, (..., 3, 3) each."""
    trace = (a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.acos(((trace - 1) / 2).clamp(-1, 1)))


TURNED = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # 180° about the camera's y axis
WRONG_WAY_DEG = 90.0


def run(args: argparse.Namespace) -> dict:
    cfg = config([f"train.run={args.run}", *args.overrides])
    ckpt = latest_checkpoint(run_dir(cfg))
    model, trained, _ = load_model(cfg, ckpt)
    evaluator = Evaluator(model, trained, "emdb", torch.device("cpu"))
    data = TestExamples(store_path(cfg.paths.stores, args.dataset), trained.model.crop_size,
                        trained.train.context_factor)
    pick = np.random.default_rng(0).permutation(len(data))[:args.crops]
    loader = DataLoader(Subset(data, pick.tolist()), batch_size=8, shuffle=False)
    generator = torch.Generator().manual_seed(0)
    labels = Store(store_path(cfg.paths.stores, args.dataset)).labels()
    parts: dict[str, list] = {k: [] for k in ("full", "local", "axes", "angle", "mode_err",
                                              "sample_err", "turned_dlogp")}
    with torch.no_grad():
        for batch in loader:
            inputs, extras = to_device(batch, torch.device("cpu"))
            posterior = model(inputs)
            out = posterior.hypotheses(args.hypotheses - 1, generator)
            visible = inputs.det_kp[..., 2] > cfg.conventions.visible_conf
            joints, _ = evaluator.coco_crop(evaluator.smpl_vertices(out.pose6d, out.betas),
                                            out.transl, inputs)
            local = out.pose6d.clone()
            local[:, :, 0] = out.pose6d[:, :1, 0]  # every hypothesis at the mode's orientation
            local_joints, _ = evaluator.coco_crop(evaluator.smpl_vertices(local, out.betas),
                                                  out.transl, inputs)
            root = rot6d_to_matrix(out.pose6d[:, :, 0])  # (B, N, 3, 3)
            parts["angle"].append(geodesic_deg(root[:, 1:], root[:, :1]).flatten())
            gt_pose = axis_angle_to_matrix(torch.as_tensor(
                labels.pose[extras.row.numpy()][:, :22], dtype=root.dtype))  # (B, 22, 3, 3)
            gt = gt_pose[:, :1]
            turned = gt_pose.clone()
            turned[:, 0] = TURNED.to(root.dtype) @ gt_pose[:, 0]
            parts["turned_dlogp"].append(posterior.log_prob(matrix_to_rot6d(turned))
                                         - posterior.log_prob(matrix_to_rot6d(gt_pose)))
            parts["mode_err"].append(geodesic_deg(root[:, :1], gt).flatten())
            parts["sample_err"].append(geodesic_deg(root[:, 1:], gt).flatten())
            for key, sel in (("vis", visible), ("inv", ~visible)):
                axes, full = _spread(joints, sel)
                _, loc = _spread(local_joints, sel)
                parts["full"].append((key, float(full), int(sel.sum())))
                parts["local"].append((key, float(loc), int(sel.sum())))
                parts["axes"].append((key, axes.numpy(), int(sel.sum())))

    def pooled(name: str, key: str):
        rows = [(v, n) for k, v, n in parts[name] if k == key and n]
        total = sum(n for _, n in rows)
        return (sum(np.asarray(v) * n for v, n in rows) / total).round(1).tolist()

    def degrees(name: str) -> dict:
        a = torch.cat(parts[name])
        return {"mean": round(float(a.mean()), 1), "median": round(float(a.median()), 1),
                "p90": round(float(a.quantile(0.9)), 1)}

    return {"run": args.run, "checkpoint": str(ckpt), "crops": len(pick),
            "hypotheses": args.hypotheses,
            "spread_mm": {k: pooled("full", k) for k in ("vis", "inv")},
            "spread_mode_orientation_mm": {k: pooled("local", k) for k in ("vis", "inv")},
            "spread_axes_xyz_mm": {k: pooled("axes", k) for k in ("vis", "inv")},
            "orientation_to_mode_deg": degrees("angle"),
            "orientation_error_mode_deg": degrees("mode_err"),
            "orientation_error_samples_deg": degrees("sample_err"),
            "wrong_way_share": {k: round(float((torch.cat(parts[k]) > WRONG_WAY_DEG)
                                               .float().mean()), 3)
                                for k in ("mode_err", "sample_err")},
            "turned_gt_log_density_nats": {
                "median": round(float(torch.cat(parts["turned_dlogp"]).median()), 1),
                "share_above_0": round(float((torch.cat(parts["turned_dlogp"]) > 0)
                                             .float().mean()), 3)},
            "machine": machine()}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_parser(__doc__, crops=96).parse_args(argv)


main = json_main(run, parse)


if __name__ == "__main__":
    sys.exit(run_cli(main))
