"""The evaluation protocols (docs/method.md §6): draw N hypotheses per test crop (the mode first,
seeded), turn predicted SMPL-X meshes into SMPL meshes, and compute every metric of the paper
against the gendered SMPL ground truth, by the rules of the datasets' official evaluation code
and the reference release (docs/reference_fidelity.md, "Evaluation")."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from body.cameras import crop_normalize, intrinsics, perspective_projection
from body.fast_vertices import FastVertices
from body.models import load_h36m_regressor, load_smpl, load_smplx, load_smplx2smpl
from body.rotations import axis_angle_to_matrix, rot6d_to_matrix
from stores.store import Store
from train.inputs import ModelInput, to_device
from train.model import NUM_BETAS, ProbabilisticHMR

from . import metrics
from .examples import EVAL_CROP, TestExamples, to_eval_px

CALIBRATION_Q = (50, 90)  # % central regions of the calibration (docs/method.md §6 "Scores")


@dataclass
class Collected:
    """Per-crop results, concatenated over the test set; (value, count) pairs pool by count."""

    errors: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # (B, N) each
    kp2d_mode: list[tuple[float, int]] = field(default_factory=list)  # (mean px, triples)
    kp2d_samples: list[tuple[float, int]] = field(default_factory=list)
    kp2d_detector: list[tuple[float, int]] = field(default_factory=list)
    # mode, samples, detector on the crops where the detector found the right person
    kp2d_right: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    right_crops: int = 0
    energy: list[torch.Tensor] = field(default_factory=list)  # (B, 17) mm per (image, joint)
    covered: list[torch.Tensor] = field(default_factory=list)  # (B, Q, 17) bool, CALIBRATION_Q
    visible: list[torch.Tensor] = field(default_factory=list)  # (B, 17) bool
    spread_visible: list[tuple[float, int]] = field(default_factory=list)  # (mean mm, joints)
    spread_invisible: list[tuple[float, int]] = field(default_factory=list)
    # PercIn / MinDist: (%, px, points) per batch; of the model (the paper's), of the ground
    # truth itself (what an exact model scores), and of the model on the joints whose ground
    # truth is on the mask
    percin: list[tuple[float, float, int]] = field(default_factory=list)
    percin_gt: list[tuple[float, float, int]] = field(default_factory=list)
    percin_gt_on_mask: list[tuple[float, float, int]] = field(default_factory=list)
    heatmap_w1: list[torch.Tensor] = field(default_factory=list)  # (K,) px, occluded joints
    # per occluded joint of `heatmap_w1`: W1 of an exact model (every hypothesis on the truth)
    # (K,) px, its crop is a right-person crop (K,) bool, and the ground truth in the
    # hypotheses' / the heatmap's central q % disc (K, 2, Q) bool
    heatmap_w1_exact: list[torch.Tensor] = field(default_factory=list)
    occluded_right: list[torch.Tensor] = field(default_factory=list)
    occluded_covered_2d: list[torch.Tensor] = field(default_factory=list)
    pve_curve: list[torch.Tensor] = field(default_factory=list)  # (B', N_curve)
    examples: list[dict] = field(default_factory=list)  # a few crops for the plots
    faces: np.ndarray | None = None  # (F, 3) of the SMPL meshes in `examples`


class Evaluator:
    """Holds the models every metric needs: the trained network, SMPL-X (the vertices the
    SMPL-X → SMPL map reads), the map, the gendered SMPL ground truth models and the joint
    regressors."""

    def __init__(self, model: ProbabilisticHMR, cfg: DictConfig, protocol: str,
                 device: torch.device) -> None:
        self.model, self.cfg, self.device = model.eval(), cfg, device
        root = cfg.body.models
        to_smpl = load_smplx2smpl(root)
        # only the SMPL-X vertices the map reads are skinned (body/fast_vertices.py)
        used, columns = torch.unique(to_smpl.indices()[1], return_inverse=True)
        self.smplx_vertices = FastVertices(load_smplx(root, num_betas=NUM_BETAS), used).to(device)
        self.to_smpl = torch.sparse_coo_tensor(
            torch.stack([to_smpl.indices()[0], columns]), to_smpl.values(),
            (to_smpl.shape[0], len(used)), check_invariants=True).coalesce().to(device)
        self.gt_models = {g: load_smpl(root, g, device=device) for g in ("male", "female",
                                                                         "neutral")}
        self.protocol = protocol
        neutral = self.gt_models["neutral"]
        # predictions: the neutral SMPL regressor on the converted mesh (the reference release)
        self.smpl_regressor = neutral.J_regressor.to(device)
        self.vertex_ids = neutral.vertex_joint_selector.extra_joints_idxs.to(device)
        self.smpl_faces = np.asarray(neutral.faces, np.int64)
        self.regressor = (load_h36m_regressor(root).to(device) if protocol == "3dpw"
                          else self.smpl_regressor)

    @torch.no_grad()
    def smpl_vertices(self, pose6d: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """(B, H, 6890, 3) SMPL vertices of SMPL-X hypotheses (docs/method.md §6: the smplx2smpl
        map)."""
        b, h = pose6d.shape[:2]
        mats = rot6d_to_matrix(pose6d.flatten(0, 1))
        verts = self.smplx_vertices(betas.repeat_interleave(h, 0), mats)  # (B·H, used vertices, 3)
        # one sparse product for every mesh (columns = mesh × xyz): the per-mesh products' values
        # bit for bit, ≈ 5× faster than a loop over the meshes
        n, v, _ = verts.shape
        smpl = torch.sparse.mm(self.to_smpl, verts.permute(1, 0, 2).reshape(v, n * 3))
        return smpl.reshape(-1, n, 3).permute(1, 0, 2).unflatten(0, (b, h))

    @torch.no_grad()
    def ground_truth(self, labels, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gendered SMPL ground truth of the rows, camera frame: vertices (B, 6890, 3) and the
        model's 24 forward-kinematics joints (B, 24, 3)."""
        return ground_truth_bodies(self.gt_models, labels, rows, self.device)

    def coco_crop(self, verts: torch.Tensor, transl: torch.Tensor,
                  inputs: ModelInput) -> tuple[torch.Tensor, torch.Tensor]:
        """COCO-17 of predicted SMPL meshes (B, H, 6890, 3), as the reference release projects
        them (`metrics.coco17_of_smpl_mesh`): (3D joints (B, H, 17, 3) model frame, 2D points
        (B, H, 17, 2) through the CLIFF camera `transl` (B, 3), normalised to the crop)."""
        joints = metrics.coco17_of_smpl_mesh(verts, self.smpl_regressor, self.vertex_ids)
        return joints, project_to_crop(joints, transl, inputs)


def project_to_crop(joints: torch.Tensor, transl: torch.Tensor,
                    inputs: ModelInput) -> torch.Tensor:
    """Model-frame joints (B, H, J, 3) + the full-image camera translation (B, 3) → crop-normalised
    2D (B, H, J, 2), with the batch's focal, image size, box (as `ProbabilisticHMR.project`)."""
    width, height = inputs.img_size[:, 0], inputs.img_size[:, 1]
    k = intrinsics(inputs.focal, width, height)
    b, h = joints.shape[:2]
    uv = perspective_projection((joints + transl[:, None, None]).flatten(1, 2), k)
    return crop_normalize(uv.unflatten(1, (h, -1)), inputs.center[:, None],
                          inputs.scale[:, None])


@torch.no_grad()
def ground_truth_bodies(models: dict, labels, rows: np.ndarray,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertices (B, 6890, 3), forward-kinematics joints (B, 24, 3)) of the rows' gendered SMPL
    (`models` by gender; labels with pose, betas, transl, gender), camera frame. The joints are
    the first 24 of the model's output (the skeleton, before smplx's vertex joints)."""
    verts = torch.zeros(len(rows), 6890, 3, device=device)
    joints = torch.zeros(len(rows), 24, 3, device=device)
    pose = torch.as_tensor(labels.pose[rows], device=device)
    betas = torch.as_tensor(labels.betas[rows][:, :10], device=device)
    transl = torch.as_tensor(labels.transl[rows], device=device)
    for gender in np.unique(labels.gender[rows]):
        sel = np.flatnonzero(labels.gender[rows] == gender)
        mats = axis_angle_to_matrix(pose[sel])
        out = models[str(gender)](betas=betas[sel], global_orient=mats[:, :1],
                                  body_pose=mats[:, 1:24], transl=transl[sel])
        verts[sel], joints[sel] = out.vertices, out.joints[:, :24]
    return verts, joints


def curve_subset(n_rows: int, crops: int, seed: int) -> np.ndarray:
    """Sorted rows of the PVE-vs-N subset: `crops` rows drawn without replacement, seeded, over
    the whole test set (docs/method.md §6)."""
    return np.sort(np.random.default_rng(seed).choice(n_rows, min(crops, n_rows), replace=False))


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
    # the curve's extra hypotheses come from their own stream: the main table does not depend
    # on the curve's subset or size
    curve_generator = torch.Generator(device=evaluator.device).manual_seed((seed + 1) % 2 ** 63)
    curve_rows = curve_subset(len(data), curve_crops, seed)
    visible_conf = cfg.conventions.visible_conf
    w1_rng = np.random.default_rng(seed)
    got = Collected(faces=evaluator.smpl_faces)
    for batch in tqdm(loader, desc="eval", unit="batch"):
        inputs, extras = to_device(batch, evaluator.device)
        rows = extras.row.cpu().numpy()
        out = evaluator.model(inputs).hypotheses(hypotheses - 1, generator)
        pred = evaluator.smpl_vertices(out.pose6d, out.betas)  # (B, H, 6890, 3)
        gt_verts, gt_joints = evaluator.ground_truth(labels, rows)
        pve = _errors(evaluator, pred, gt_verts, gt_joints, got)
        joints, coco = evaluator.coco_crop(pred, out.transl, inputs)
        visible = inputs.det_kp[..., 2] > visible_conf
        gt2d = torch.as_tensor(labels.kp2d_coco[rows], device=evaluator.device)
        gt_crop = (gt2d - inputs.center[:, None]) / (100 * inputs.scale[:, None, None])
        det_px, gt_px = to_eval_px(inputs.det_kp[..., :2]), to_eval_px(gt_crop)
        right = metrics.right_person(det_px, gt_px, visible, EVAL_CROP)
        consistency(got, to_eval_px(coco), det_px, gt_px, visible, right)
        distribution_scores(got, joints, metrics.coco17_of_smpl_mesh(
            gt_verts, evaluator.smpl_regressor, evaluator.vertex_ids), visible)
        for part, sel in ((got.spread_visible, visible), (got.spread_invisible, ~visible)):
            if sel.any():
                part.append((float(metrics.spread_3d(joints, sel)), int(sel.sum())))
        occluded = ~visible & (inputs.det_kp[..., 2] > cfg.losses.mmd_min_conf) & \
            (gt_crop.abs() <= 1).all(-1)
        heatmap_distances(got, to_eval_px(coco[:, 1:]), to_eval_px(extras.hm_samples), gt_px,
                          occluded, right, w1_rng)
        # beside the paper's: the ground truth's own score over the same joints, and the
        # model's over the joints whose ground truth is on the mask (hidden by a person)
        finite = torch.isfinite(gt_crop).all(-1)
        gt_on_mask = on_mask(gt_px, extras.mask256, cfg.conventions.inside_mask_px)
        for points, known, part in ((coco, None, got.percin),
                                    (gt_crop[:, None], finite, got.percin_gt),
                                    (coco, gt_on_mask, got.percin_gt_on_mask)):
            pin, mind, count = plausibility(to_eval_px(points), extras.mask256, extras.has_mask,
                                            visible, cfg.eval.mask_min_invisible,
                                            cfg.conventions.inside_mask_px, known)
            if count:
                part.append((pin, mind, count))
        pick = np.isin(rows, curve_rows)
        if pick.any():
            got.pve_curve.append(_pve_curve(evaluator, inputs, pick, out.betas, pve,
                                            (gt_verts, gt_joints), curve_max, curve_generator))
        spacing = max(1, len(data) // 8)  # plot crops spread over the whole test set
        for i in np.flatnonzero(rows % spacing == 0):
            if len(got.examples) < 8:
                got.examples.append({
                    "row": int(rows[i]), "image": inputs.image[i].cpu(),
                    "coco2d": coco[i].cpu(), "gt_coco": gt_crop[i].cpu(),
                    "conf": inputs.det_kp[i, :, 2].cpu(), **_mesh_example(evaluator, inputs,
                                                                          pred, out.transl, i)})
    return got


def consistency(got: Collected, coco_px: torch.Tensor, det_px: torch.Tensor,
                gt_px: torch.Tensor, visible: torch.Tensor, right: torch.Tensor) -> None:
    """2DKP of one batch (docs/method.md §6): the mode, the samples and the detector on the
    visible joints of every crop, and the same three on the crops where the detector found the
    right person (`right` (B,) bool, `metrics.right_person`). coco_px (B, H, 17, 2), det_px and
    gt_px (B, 17, 2), all in 256-crop px; visible (B, 17) bool."""
    got.right_crops += int(right.sum())
    for name, points in (("mode", coco_px[:, :1]), ("samples", coco_px[:, 1:]),
                         ("detector", det_px[:, None])):
        for part, sel in ((getattr(got, f"kp2d_{name}"), visible),
                          (got.kp2d_right.setdefault(name, []), visible & right[:, None])):
            mean, count = metrics.keypoint_2d_error(points, gt_px, sel)
            part.append((float(mean), count))


def heatmap_distances(got: Collected, samples_px: torch.Tensor, heatmap_px: torch.Tensor,
                      gt_px: torch.Tensor, occluded: torch.Tensor, right: torch.Tensor,
                      rng: np.random.Generator) -> None:
    """The occluded joints' distance to the heatmap distribution (docs/method.md §6 "Heatmap
    distribution") of one batch: W1 of the random hypotheses samples_px (B, N, 17, 2) to the
    heatmap samples heatmap_px (B, 17, M, 2), whether the crop is a right-person one (`right`
    (B,) bool), the W1 an exact model would score (all its hypotheses on the ground truth gt_px
    (B, 17, 2): the heatmap samples' mean distance to it) and the 2D coverage of the ground truth
    by either set; occluded (B, 17) bool selects the joints."""
    got.heatmap_w1.append(metrics.heatmap_wasserstein(samples_px, heatmap_px, occluded, rng))
    exact = torch.linalg.vector_norm(heatmap_px - gt_px[:, :, None], dim=-1).mean(-1)
    got.heatmap_w1_exact.append(exact[occluded].double().cpu())
    got.occluded_right.append(right[:, None].expand_as(occluded)[occluded].cpu())
    covered = [metrics.ball_coverage(points, gt_px, CALIBRATION_Q)
               for points in (samples_px.transpose(1, 2), heatmap_px)]  # 2 × (Q, B, 17)
    got.occluded_covered_2d.append(torch.stack(covered).permute(2, 3, 0, 1)[occluded].cpu())


def distribution_scores(got: Collected, hypotheses: torch.Tensor, gt_coco: torch.Tensor,
                        visible: torch.Tensor) -> None:
    """Energy score (mm) and ball coverage at `CALIBRATION_Q` of one batch, per (image, joint),
    3D, each body on its own mid-hip (docs/method.md §6 "Scores"). hypotheses (B, H, 17, 3) the
    COCO-17 of every hypothesis (model frame, metres; slot 0, the mode, is not scored), gt_coco
    (B, 17, 3) the ground truth's (camera frame)."""
    x = metrics.center_on_mid_hip(hypotheses[:, 1:]).transpose(1, 2)  # (B, 17, M, 3)
    y = metrics.center_on_mid_hip(gt_coco)
    got.energy.append((metrics.energy_score(x, y) * metrics.MM_PER_M).cpu())
    got.covered.append(metrics.ball_coverage(x, y, CALIBRATION_Q).transpose(0, 1).cpu())
    got.visible.append(visible.cpu())


def _mesh_example(evaluator: Evaluator, inputs: ModelInput, pred: torch.Tensor,
                  transl: torch.Tensor, i: int, meshes: int = 5) -> dict:
    """What the mesh figure (eval/figures.py) needs of crop i of a batch: the SMPL meshes of its
    first `meshes` hypotheses (model frame), the camera translation, the mode's pelvis (camera
    frame) and the crop's camera."""
    verts = pred[i, :meshes]
    pelvis = evaluator.smpl_regressor[0] @ verts[0] + transl[i]
    return {"meshes": verts.cpu(), "transl": transl[i].cpu(), "pelvis": pelvis.cpu(),
            "center": inputs.center[i].cpu(), "scale": inputs.scale[i].cpu(),
            "focal": inputs.focal[i].cpu(), "img_size": inputs.img_size[i].cpu()}


def plausibility(points_px: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor,
                 visible: torch.Tensor, min_invisible: int, inside_px: float,
                 known: torch.Tensor | None = None) -> tuple[float, float, int]:
    """PercIn, MinDist and their point count of one batch (docs/method.md §6): every hypothesis (the
    mode included) of every invisible joint of the images in the mask subset, i.e. with a person
    mask and at least `min_invisible` invisible joints. points_px (B, H, 17, 2) 256-crop px; a
    point within `inside_px` (`conventions.inside_mask_px`) of a mask pixel centre is inside.
    known (B, 17) bool: the joints that have a point (None: all); the others never count."""
    invisible = ~visible
    subset = has_mask & (invisible.sum(1) >= min_invisible)
    scored = invisible & subset[:, None] & (True if known is None else known)
    return metrics.perc_in_min_dist(points_px, masks, scored, inside_px)


def on_mask(points_px: torch.Tensor, masks: torch.Tensor, inside_px: float) -> torch.Tensor:
    """(B, J) bool: the point (B, J, 2), 256-crop px, lies within `inside_px` of a pixel centre
    of its image's mask (B, H, W); non-finite points and empty masks give False."""
    pts = points_px.detach().double().cpu().numpy()
    near = np.zeros(pts.shape[:2], bool)
    for b, (p, m) in enumerate(zip(pts, masks.cpu().numpy())):
        finite = np.isfinite(p).all(-1)
        near[b, finite] = metrics.mask_distance(p[finite], m) < inside_px
    return torch.from_numpy(near).to(points_px.device)


def _ground_truth_centred(evaluator: Evaluator, gt_verts: torch.Tensor,
                          gt_joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ground truth's protocol joints and pelvis, (B, 1, J, 3) and (B, 1, 1, 3)."""
    gj, gp = metrics.ground_truth_joints(gt_verts, gt_joints, evaluator.regressor,
                                         evaluator.protocol)
    return gj[:, None], gp[:, None]


def _errors(evaluator: Evaluator, pred: torch.Tensor, gt_verts: torch.Tensor,
            gt_joints: torch.Tensor, got: Collected) -> torch.Tensor:
    """MPJPE, PA-MPJPE, PVE of every hypothesis (B, H), pelvis-centred by the protocol; returns
    the PVE."""
    pj, pp = metrics.protocol_joints(pred, evaluator.regressor, evaluator.protocol)
    gj, gp = _ground_truth_centred(evaluator, gt_verts, gt_joints)
    values = {"mpjpe": metrics.mpjpe(pj - pp, gj - gp),
              "pa_mpjpe": metrics.pa_mpjpe(pj - pp, gj - gp),
              "pve": metrics.pve(pred - pp, gt_verts[:, None] - gp)}
    for name, v in values.items():
        got.errors.setdefault(name, []).append(v.cpu())
    return values["pve"]


def _pve_curve(evaluator: Evaluator, inputs: ModelInput, pick: np.ndarray, betas: torch.Tensor,
               pve: torch.Tensor, gt: tuple[torch.Tensor, torch.Tensor], n: int,
               generator: torch.Generator) -> torch.Tensor:
    """(B', n) PVE of n hypotheses (mode first) of the picked crops for the PVE-vs-N curve
    (Fig. S1): the main table's hypotheses first, then n − H more drawn, in chunks."""
    sel = torch.as_tensor(pick, device=pve.device)
    have = pve[sel]
    extra = n - have.shape[1]
    if extra <= 0:
        return have[:, :n].cpu()
    posterior = evaluator.model(inputs.select(sel))
    _, gp = _ground_truth_centred(evaluator, gt[0][sel], gt[1][sel])
    pose = posterior.sample(extra, generator)
    errors = [have]
    for start in range(0, extra, 100):
        verts = evaluator.smpl_vertices(pose[:, start:start + 100], betas[sel])
        _, pp = metrics.protocol_joints(verts, evaluator.regressor, evaluator.protocol)
        errors.append(metrics.pve(verts - pp, gt[0][sel][:, None] - gp))
    return torch.cat(errors, 1).cpu()
