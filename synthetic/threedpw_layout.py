"""The synthetic 3DPW layout (readers/threedpw.py, docs/formats.md "3DPW").

A sequence follows 1–2 gendered SMPL actors (two in every even-numbered sequence) through
motion sequences (synthetic/motions.py) along straight image-space paths, filmed by a slowly
panning, drifting camera (per-frame world→camera `cam_poses`, 3DPW-like intrinsics
fx ≈ 1.02·H). The SMPL parameters are written in the world frame through each frame's extrinsic
(people.world_from_camera: pelvis offset). `campose_valid` is False where an actor's pelvis
leaves the image and on one short random stretch per actor. `poses2d` holds the projected
ground-truth OpenPose-18 joints
(confidence 1 in the image, 0 outside); the real files hold OpenPose detections there.

    <root>/sequenceFiles/<split>/<seq>.pkl    protocol-2 pickles (load with encoding="latin1")
    <root>/imageFiles/<seq>/image_%05d.jpg    + <stem>.synthetic_scene.npz side-cars
    <root>/smplx_fits/train.npz               SMPL-X "fits" of the train actors (reader format):
                                              same world pose (22 joints), betas + [0], transl
                                              that puts the SMPL-X pelvis on the SMPL pelvis
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from omegaconf import OmegaConf
from scipy.spatial.transform import Rotation

from body.cameras import perspective_projection
from body.joints import SMPL_TO_COCO17, SMPL_TO_OP25
from body.models import load_smpl, load_smplx
from core.durable import save_npz_replacing
from core.seeding import rng_for

from .cameras import random_extrinsic
from .emdb_layout import _trajectory
from .motions import PoseModel, default_pose_models
from .people import BodyParams, make_people, rest_pelvis, world_from_camera
from .scene import BodyTopology, render_scene

# OpenPose-18 (3DPW `poses2d`): OpenPose-25 without mid-hip and the feet
OP25_TO_OP18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
SMPL_TO_OP18 = tuple(SMPL_TO_OP25[i] for i in OP25_TO_OP18)
FITS_PATH = "smplx_fits/train.npz"
GENDER_CODES = {"male": "m", "female": "f"}


@dataclass
class SequenceResult:
    """What one written sequence returns (small: parameters, no meshes)."""

    name: str
    split: str
    path: Path
    genders: list[str]  # "male" / "female" per actor
    camera: list[BodyParams]  # per actor, the camera-frame parameters that were rendered
    fits: dict[str, np.ndarray]  # "<seq>/pose|betas|transl": SMPL-X fits, world frame


def intrinsics_3dpw(width: int, height: int) -> np.ndarray:
    """3DPW's camera (fx 1961, fy 1969 at 1080 × 1920), scaled to the image height."""
    s = height / 1920
    return np.array([[1961.1 * s, 0, width / 2], [0, 1969.2 * s, height / 2], [0, 0, 1]])


def moving_camera(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4, 4) world→camera extrinsics of a hand-held camera: a slow pan about its own
    vertical axis and a straight drift of its centre."""
    base = random_extrinsic(rng)
    r0, centre0 = base[:3, :3], -base[:3, :3].T @ base[:3, 3]
    t = np.linspace(0, 1, n)
    pan = Rotation.from_rotvec(np.c_[np.zeros(n), t * rng.uniform(-0.2, 0.2), np.zeros(n)])
    drift = rng.uniform(-0.6, 0.6, 3) * np.array([1, 0.1, 1])
    ext = np.tile(np.eye(4), (n, 1, 1))
    ext[:, :3, :3] = pan.as_matrix() @ r0
    centres = centre0 + t[:, None] * drift
    ext[:, :3, 3] = -np.einsum("nij,nj->ni", ext[:, :3, :3], centres)
    return ext


def _world(model, params: BodyParams, ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-frame (orient, transl) (n, 3) of camera-frame params with a per-frame extrinsic."""
    out = [world_from_camera(model, BodyParams(params.global_orient[f:f + 1],
                                               params.body_pose[f:f + 1], params.betas[f:f + 1],
                                               params.transl[f:f + 1]), ext[f])
           for f in range(len(ext))]
    return np.concatenate([o for o, _ in out]), np.concatenate([t for _, t in out])


class ThreeDPWSequenceWriter:
    """Writes whole 3DPW-layout sequences; holds the body models (one per process). Poses: the
    model of the sequence's split in `poses` (motions.pose_models; pipelines.yaml's by
    default)."""

    def __init__(self, body_models: Path, root: Path, cfg,
                 poses: Mapping[str, PoseModel] | None = None) -> None:
        self.smpl = {g: load_smpl(body_models, g) for g in GENDER_CODES}
        self.topology = {g: BodyTopology.from_model(m, SMPL_TO_COCO17)
                         for g, m in self.smpl.items()}
        self.smplx = load_smplx(body_models)
        self.root, self.cfg = Path(root), cfg
        self.poses = poses or default_pose_models()

    def __call__(self, seed: int, split: str, index: int) -> SequenceResult:
        cfg, rng = self.cfg, rng_for(seed, "3dpw", split, index)
        width, height = cfg.image_size
        n = cfg.frames_per_sequence
        k_matrix, ext = intrinsics_3dpw(width, height), moving_camera(rng, n)
        genders = ["male" if rng.uniform() < 0.5 else "female"
                   for _ in range(2 if index % 2 == 0 else 1)]
        actors = [_trajectory(rng, self.smpl[g], n, np.clip(rng.normal(0, 1, 10), -2.5, 2.5),
                              k_matrix, width, height, tuple(cfg.depth_range),
                              self.poses["test" if split == "test" else "train"])
                  for g in genders]
        colour_rng = rng_for(seed, "3dpw-colours", split, index)
        people = []
        for g, params in zip(genders, actors):
            frames = make_people(colour_rng, self.smpl[g], self.topology[g], params)
            for person in frames[1:]:  # one outfit per actor
                person.colors = frames[0].colors
            people.append(frames)
        name = f"synthetic_{split}_{index:02d}"
        image_dir = self.root / "imageFiles" / name
        image_dir.mkdir(parents=True, exist_ok=True)
        for f in range(n):
            scene = render_scene([frames[f] for frames in people], [], k_matrix, width, height,
                                 rng)
            image_path = image_dir / f"image_{f:05d}.jpg"
            cv2.imwrite(str(image_path), scene.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            scene.write_sidecar(image_path)
        data = {k: [] for k in ("genders", "betas", "poses", "trans", "poses2d", "jointPositions",
                                "campose_valid")}
        fits = {k: [] for k in ("pose", "betas", "transl")}
        for g, params, frames in zip(genders, actors, people):
            self._append_actor(rng, data, fits, g, params, frames, ext, k_matrix, width, height)
        data.update({"sequence": name, "cam_poses": ext, "cam_intrinsics": k_matrix,
                     "img_frame_ids": np.arange(n), "synthetic": True})
        path = self.root / "sequenceFiles" / split / f"{name}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            pickle.dump(data, f, protocol=2)
        return SequenceResult(name, split, path, genders, actors,
                              {f"{name}/{k}": np.stack(v) for k, v in fits.items()})

    def _append_actor(self, rng, data, fits, gender, params, frames, ext, k_matrix, width,
                      height) -> None:
        n = len(ext)
        model = self.smpl[gender]
        orient_w, trans_w = _world(model, params, ext)
        joints_c = np.stack([person.joints for person in frames])
        r_wc, t_wc = ext[:, :3, :3], ext[:, :3, 3]
        joints_w = np.einsum("nji,nkj->nki", r_wc, joints_c[:, :24] - t_wc[:, None])
        op18 = joints_c[:, list(SMPL_TO_OP18)]
        uv = perspective_projection(op18, k_matrix)
        seen = ((uv >= 0) & (uv < [width, height])).all(-1) & (op18[..., 2] > 0)
        pelvis = perspective_projection(joints_c[:, :1], k_matrix)[:, 0]
        valid = ((pelvis >= 0) & (pelvis < [width, height])).all(-1)
        stretch = max(1, n // 8)
        start = int(rng.integers(0, n - stretch + 1))
        valid[start:start + stretch] = False
        body = params.body_pose.reshape(n, 63)
        data["genders"].append(GENDER_CODES[gender])
        data["betas"].append(params.betas[0].copy())
        data["poses"].append(np.concatenate([orient_w, body, np.zeros((n, 6))], 1))
        data["trans"].append(trans_w)
        data["poses2d"].append(np.concatenate([uv, seen[..., None]], -1).transpose(0, 2, 1))
        data["jointPositions"].append(joints_w.reshape(n, 72))
        data["campose_valid"].append(valid)
        betas_x = np.append(params.betas[0], 0.0)
        offset = rest_pelvis(model, params.betas[:1]) - rest_pelvis(self.smplx, betas_x[None])
        fits["pose"].append(np.concatenate([orient_w, body], 1))
        fits["betas"].append(betas_x)
        fits["transl"].append(trans_w + offset)


def write_smplx_fits(root: str | Path, results: list[SequenceResult]) -> Path:
    """`<root>/smplx_fits/train.npz`: the fits of the train sequences among `results`."""
    path = Path(root) / FITS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.astype(np.float32) for r in results if r.split == "train"
              for k, v in r.fits.items()}
    return save_npz_replacing(path, arrays)


def write_3dpw_like(root: str | Path, body_models: str | Path, seed: int = 0,
                    sequences: int = 2, frames: int = 8, splits=("train", "test"),
                    image_size=(360, 640), depth_range=(2.5, 6.0)) -> dict[str, SequenceResult]:
    """Write `sequences` sequences per split under `root` (serially), and the SMPL-X fits when
    "train" is among the splits; returns the results by sequence name."""
    cfg = OmegaConf.create({"frames_per_sequence": frames, "image_size": list(image_size),
                            "depth_range": list(depth_range)})
    writer = ThreeDPWSequenceWriter(Path(body_models), Path(root), cfg)
    results = {}
    for split in splits:
        for index in range(sequences):
            result = writer(seed, split, index)
            results[result.name] = result
    if "train" in splits:
        write_smplx_fits(root, list(results.values()))
    return results
