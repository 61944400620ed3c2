"""The evaluation protocols (SPEC.md §6): draw N hypotheses per test crop (the mode first,
seeded), turn predicted SMPL-X meshes into SMPL meshes, and compute every metric of the paper
against the gendered SMPL ground truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from body.models import load_h36m_regressor, load_smpl, load_smplx, load_smplx2smpl
from body.rotations import axis_angle_to_matrix, rot6d_to_matrix
from stores.store import Store
from train.model import NUM_BETAS, ProbabilisticHMR

from . import metrics
from .examples import EVAL_CROP, TestExamples


@dataclass
class Collected:
    """Per-crop results, concatenated over the test set."""

    errors: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # (B, N) each
    kp2d: list[torch.Tensor] = field(default_factory=list)  # (B, N) px, NaN: no visible joint
    spread_visible: list[tuple[float, int]] = field(default_factory=list)  # (mean mm, joints)
    spread_invisible: list[tuple[float, int]] = field(default_factory=list)
    percin: list[tuple[float, int]] = field(default_factory=list)
    mindist: list[tuple[float, int]] = field(default_factory=list)
    heatmap_w1: list[torch.Tensor] = field(default_factory=list)  # (K,) px, occluded joints
    pve_curve: list[torch.Tensor] = field(default_factory=list)  # (B, N_curve)
    examples: list[dict] = field(default_factory=list)  # a few crops for the plots


class Evaluator:
    """Holds the models every metric needs: the trained network, SMPL-X (full mesh), the
    SMPL-X → SMPL map, the gendered SMPL ground truth models and the joint regressors."""

    def __init__(self, model: ProbabilisticHMR, cfg: DictConfig, protocol: str,
                 device: torch.device) -> None:
        self.model, self.cfg, self.device = model.eval(), cfg, device
        root = cfg.body.models
        self.smplx = load_smplx(root, num_betas=NUM_BETAS, device=device)
        self.to_smpl = load_smplx2smpl(root).to_sparse().to(device)
        self.gt_models = {g: load_smpl(root, g, device=device) for g in ("male", "female",
                                                                         "neutral")}
        self.protocol = protocol
        self.regressor = (load_h36m_regressor(root) if protocol == "3dpw"
                          else self.gt_models["neutral"].J_regressor).to(device)

    @torch.no_grad()
    def smpl_vertices(self, pose6d: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """(B, H, 6890, 3) SMPL vertices of SMPL-X hypotheses (SPEC.md §6: the smplx2smpl map)."""
        b, h = pose6d.shape[:2]
        mats = rot6d_to_matrix(pose6d.flatten(0, 1))
        out = self.smplx(betas=betas.repeat_interleave(h, 0), global_orient=mats[:, :1],
                         body_pose=mats[:, 1:])
        verts = out.vertices  # (B·H, 10475, 3)
        smpl = torch.stack([torch.sparse.mm(self.to_smpl, v) for v in verts])
        return smpl.unflatten(0, (b, h))

    @torch.no_grad()
    def ground_truth(self, labels, rows: np.ndarray) -> torch.Tensor:
        """(B, 6890, 3) gendered SMPL vertices of the rows, camera frame."""
        verts = torch.zeros(len(rows), 6890, 3, device=self.device)
        pose = torch.as_tensor(labels.pose[rows], device=self.device)
        betas = torch.as_tensor(labels.betas[rows][:, :10], device=self.device)
        transl = torch.as_tensor(labels.transl[rows], device=self.device)
        for gender in np.unique(labels.gender[rows]):
            sel = np.flatnonzero(labels.gender[rows] == gender)
            mats = axis_angle_to_matrix(pose[sel])
            model = self.gt_models[str(gender)]
            verts[sel] = model(betas=betas[sel], global_orient=mats[:, :1],
                               body_pose=mats[:, 1:24], transl=transl[sel]).vertices
        return verts


def _distance_fields(masks: torch.Tensor) -> list[np.ndarray]:
    """Exact distance transforms (256-crop px) of crop masks (B, 256, 256)."""
    fields = []
    for mask in masks.cpu().numpy():
        src = np.where(mask, 0, 255).astype(np.uint8)
        fields.append(cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
                      if mask.any() else np.full(mask.shape, np.inf, np.float32))
    return fields


@torch.no_grad()
def evaluate(evaluator: Evaluator, store_path: Path, hypotheses: int, seed: int,
             batch_size: int = 8, curve_crops: int = 32, curve_max: int = 1000,
             workers: int = 0) -> Collected:
    """Run the protocol over a test store; returns the per-crop results."""
    cfg = evaluator.cfg
    data = TestExamples(store_path, cfg.model.crop_size, cfg.train.context_factor)
    labels = Store(store_path).labels()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
    generator = torch.Generator(device=evaluator.device).manual_seed(seed)
    visible_conf = cfg.eval.visible_conf
    w1_rng = np.random.default_rng(seed)
    got = Collected()
    for batch in tqdm(loader, desc="eval", unit="batch"):
        batch = {k: v.to(evaluator.device) for k, v in batch.items()}
        rows = batch["row"].cpu().numpy()
        out = evaluator.model(batch, hypotheses - 1, generator, with_log_prob=False)
        pred = evaluator.smpl_vertices(out.pose6d, out.betas)  # (B, H, 6890, 3)
        gt = evaluator.ground_truth(labels, rows)
        _errors(evaluator, pred, gt, got)
        visible = batch["det_kp"][..., 2] > visible_conf
        gt2d = torch.as_tensor(labels.kp2d_coco[rows], device=evaluator.device)
        gt_crop = (gt2d - batch["center"][:, None]) / (100 * batch["scale"][:, None, None])
        to256 = lambda p: (p + 1) * EVAL_CROP / 2  # noqa: E731
        got.kp2d.append(metrics.keypoint_2d_error(to256(out.coco2d), to256(gt_crop), visible)
                        .cpu())
        joints = out.joints3d[:, :, :17]
        for part, sel in ((got.spread_visible, visible), (got.spread_invisible, ~visible)):
            if sel.any():
                part.append((float(metrics.spread_3d(joints, sel)), int(sel.sum())))
        occluded = ~visible & (batch["det_kp"][..., 2] > cfg.losses.mmd_min_conf) & \
            (gt_crop.abs() <= 1).all(-1)
        got.heatmap_w1.append(metrics.heatmap_wasserstein(
            to256(out.coco2d[:, 1:]), to256(batch["hm_samples"]), occluded, w1_rng))
        with_mask = batch["has_mask"]
        if with_mask.any():
            fields = _distance_fields(batch["mask256"][with_mask])
            sel = with_mask
            pin, mind = metrics.perc_in_min_dist(to256(out.coco2d[sel, 1:]), fields,
                                                 ~visible[sel])
            count = int((~visible[sel]).sum()) * (hypotheses - 1)
            if count:
                got.percin.append((pin, count))
                got.mindist.append((mind, count))
        if sum(len(c) for c in got.pve_curve) < curve_crops:
            got.pve_curve.append(_pve_curve(evaluator, batch, gt, curve_max, generator))
        spacing = max(1, len(data) // 8)  # plot crops spread over the whole test set
        for i in np.flatnonzero(rows % spacing == 0):
            if len(got.examples) < 8:
                got.examples.append({
                    "row": int(rows[i]), "image": batch["image"][i].cpu(),
                    "coco2d": out.coco2d[i].cpu(), "gt_coco": gt_crop[i].cpu(),
                    "conf": batch["det_kp"][i, :, 2].cpu()})
    return got


def _errors(evaluator: Evaluator, pred: torch.Tensor, gt: torch.Tensor, got: Collected) -> None:
    """MPJPE, PA-MPJPE, PVE of every hypothesis (B, H), pelvis-centred by the protocol."""
    reg = evaluator.regressor
    pj, pp = metrics.protocol_joints(pred, reg, evaluator.protocol)
    gj, gp = metrics.protocol_joints(gt, reg, evaluator.protocol)
    gj, gp, gtv = gj[:, None], gp[:, None], gt[:, None]
    values = {"mpjpe": metrics.mpjpe(pj - pp, gj - gp),
              "pa_mpjpe": metrics.pa_mpjpe(pj - pp, gj - gp),
              "pve": metrics.pve(pred - pp, gtv - gp)}
    for name, v in values.items():
        got.errors.setdefault(name, []).append(v.cpu())


def _pve_curve(evaluator: Evaluator, batch: dict, gt: torch.Tensor, n: int,
               generator: torch.Generator) -> torch.Tensor:
    """(B, n) PVE of n hypotheses (mode first) for the PVE-vs-N curve (Fig. S1), in chunks."""
    cond = evaluator.model.conditions(batch)
    betas, _ = evaluator.model.head(cond)
    _, gp = metrics.protocol_joints(gt, evaluator.regressor, evaluator.protocol)
    pose = evaluator.model.flow.sample_with_mode(cond, n - 1, generator)
    pose = pose.unflatten(-1, (22, 6))
    errors = []
    for start in range(0, n, 100):
        verts = evaluator.smpl_vertices(pose[:, start:start + 100], betas)
        _, pp = metrics.protocol_joints(verts, evaluator.regressor, evaluator.protocol)
        errors.append(metrics.pve(verts - pp, gt[:, None] - gp[:, None]))
    return torch.cat(errors, 1).cpu()
