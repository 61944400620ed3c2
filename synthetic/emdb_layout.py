"""The synthetic test set in the EMDB layout (docs/formats.md, docs/synthetic_world.md).

A sequence follows one gendered SMPL subject through a motion sequence of the test split
(synthetic/motions.py) along a straight path (sometimes out of view or behind an object), with an
optional second person whose path crosses the subject's line of sight, in front of it or behind.
"""
from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np

from body.cameras import perspective_projection
from body.joints import SMPL_TO_COCO17, SMPLX_TO_COCO17
from body.models import load_smpl, load_smplx
from core.seeding import rng_for

from .cameras import random_extrinsic, random_intrinsics
from .people import BodyParams, make_people, rest_pelvis, world_from_camera
from .sidecar import OUTSIDE_IMAGE
from .motions import PoseModel, default_pose_models
from .poses import interpolate_poses, upright_orientation
from .scene import BodyTopology, occluder_in_front, render_scene


def sequence_path(root: Path, subject: int, seq: str) -> Path:
    return Path(root) / f"P{subject}" / seq / f"P{subject}_{seq}_data.pkl"


MIN_WALKER_DEPTH = 1.5  # m: the second person never comes closer to the camera


def _straight_path(rng, n_frames: int, depth_range) -> np.ndarray:
    """(n, 3) pelvis path: image fractions (u, v) and depth, a straight line across the image
    (its ends possibly just outside), either direction."""
    t = np.linspace(0, 1, n_frames)[:, None]
    start = np.array([rng.uniform(-0.1, 0.5), rng.uniform(0.45, 0.6), rng.uniform(*depth_range)])
    end = np.array([rng.uniform(0.5, 1.1), rng.uniform(0.45, 0.6), rng.uniform(*depth_range)])
    if rng.uniform() < 0.5:
        start, end = end, start
    return (1 - t) * start + t * end


def crossing_path(rng, subject: np.ndarray, front_p: float) -> np.ndarray:
    """(n, 3) pelvis path (u, v, depth as in `_straight_path`) of a second person crossing the
    subject's line of sight: at a time in the middle 40 % of the sequence its pelvis lies on the
    subject's pelvis ray, 0.5–1.5 m in front of the subject with probability `front_p` (never
    nearer than MIN_WALKER_DEPTH), 0.5–2 m behind it otherwise; relative to the subject it moves
    0.8–1.6 image widths per sequence sideways, either way, and drifts up to ±0.5 m in depth."""
    t = np.linspace(0, 1, len(subject))
    t_cross = rng.uniform(0.3, 0.7)
    v_s, z_s = (np.interp(t_cross, t, subject[:, k]) for k in (1, 2))
    front = rng.uniform() < front_p
    z_cross = max(MIN_WALKER_DEPTH, z_s - rng.uniform(0.5, 1.5)) if front \
        else z_s + rng.uniform(0.5, 2.0)
    speed = rng.uniform(0.8, 1.6) * (1 if rng.uniform() < 0.5 else -1)
    drift = rng.uniform(-0.5, 0.5)
    dt = t - t_cross
    u = subject[:, 0] + speed * dt
    z = np.maximum(MIN_WALKER_DEPTH, z_cross + drift * dt)
    return np.stack([u, np.full_like(t, v_s), z], 1)


def _trajectory(rng, model, n_frames: int, betas: np.ndarray, k_matrix: np.ndarray,
                width: int, height: int, depth_range, poses: PoseModel,
                path: Callable[[np.random.Generator], np.ndarray] | None = None) -> BodyParams:
    """A person moving along a pelvis path (`_straight_path` unless `path(rng)` gives another)
    through the poses of a sequence."""
    n_keys = max(2, n_frames // 12)
    body = poses.sequence(rng, n_frames)
    orient = interpolate_poses(upright_orientation(rng, n_keys, max_tilt=0.08)[:, None],
                               n_frames)[:, 0]
    u, v, z = (path(rng) if path else _straight_path(rng, n_frames, depth_range)).T
    f, cx, cy = k_matrix[0, 0], k_matrix[0, 2], k_matrix[1, 2]
    pelvis = np.stack([(u * width - cx) * z / f, (v * height - cy) * z / f, z], 1)
    betas = np.repeat(betas[None], n_frames, 0)
    return BodyParams(orient, body, betas, pelvis - rest_pelvis(model, betas))


def _image_path(model, params: BodyParams, k_matrix: np.ndarray, width: int,
                height: int) -> np.ndarray:
    """(n, 3) the pelvis path of `params` as image fractions (u, v) and depth."""
    pelvis = params.transl + rest_pelvis(model, params.betas)
    uv = perspective_projection(pelvis, k_matrix)
    return np.concatenate([uv / [width, height], pelvis[:, 2:]], 1)


class EmdbSequenceWriter:
    """Writes whole EMDB-layout sequences; holds the body models (one per process). Poses: the
    "test" model of `poses` (motions.pose_models; pipelines.yaml's by default)."""

    def __init__(self, body_models: Path, root: Path, cfg,
                 poses: Mapping[str, PoseModel] | None = None) -> None:
        self.smpl = {g: load_smpl(body_models, g) for g in ("male", "female")}
        self.topology = {g: BodyTopology.from_model(m, SMPL_TO_COCO17)
                         for g, m in self.smpl.items()}
        self.other = load_smplx(body_models)
        self.other_topology = BodyTopology.from_model(self.other, SMPLX_TO_COCO17)
        self.root, self.cfg = Path(root), cfg
        self.poses = (poses or default_pose_models())["test"]

    def __call__(self, seed: int, subject: int, index: int) -> Path:
        cfg, rng = self.cfg, rng_for(seed, "emdb", subject, index)
        width, height = cfg.image_size
        n = cfg.frames_per_sequence
        gender = "male" if rng.uniform() < 0.5 else "female"
        model, topology = self.smpl[gender], self.topology[gender]
        k_matrix, cam_ext = random_intrinsics(rng, width, height), random_extrinsic(rng)
        depth = tuple(cfg.depth_range)
        subj = _trajectory(rng, model, n, rng.normal(0, 1, 10), k_matrix, width, height, depth,
                           self.poses)
        walker = None
        if rng.uniform() < cfg.second_person_p:
            seen = _image_path(model, subj, k_matrix, width, height)
            walker = _trajectory(rng, self.other, n, rng.normal(0, 1, 11), k_matrix, width,
                                 height, depth, self.poses,
                                 lambda r: crossing_path(r, seen, cfg.second_person_front_p))
        people_rng = rng_for(seed, "emdb-colours", subject, index)
        subject_people = make_people(people_rng, model, topology, subj)
        walkers = make_people(people_rng, self.other, self.other_topology, walker) if walker else []
        occluders = ([occluder_in_front(rng, subject_people[n // 2].joints[0])]
                     if rng.uniform() < cfg.occluder_p else [])
        seq = f"{index:02d}_synthetic"
        folder = sequence_path(self.root, subject, seq).parent
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        kp2d, boxes, good, invalid = np.zeros((n, 24, 2)), np.zeros((n, 4)), np.zeros(n, bool), []
        for frame in range(n):
            people = [subject_people[frame]] + ([walkers[frame]] if walkers else [])
            scene = render_scene(people, occluders, k_matrix, width, height, rng)
            image_path = folder / "images" / f"{frame:05d}.jpg"
            cv2.imwrite(str(image_path), scene.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(folder / "masks" / f"{frame:05d}.png"),
                        np.where(scene.person_map >= 0, 255, 0).astype(np.uint8))
            scene.write_sidecar(image_path)
            person = subject_people[frame]
            kp2d[frame] = perspective_projection(person.joints[:24], k_matrix)
            uv = perspective_projection(person.vertices, k_matrix)
            lo = np.clip(uv.min(0), 0, [width - 1, height - 1])
            hi = np.clip(uv.max(0), 0, [width - 1, height - 1])
            boxes[frame] = [*lo, *hi]
            in_view = (scene.coco_state[0] != OUTSIDE_IMAGE).sum() >= 6 and (hi - lo).min() > 8
            seen = (scene.person_map == 0).sum()
            if not in_view:
                invalid.append(frame)
            good[frame] = in_view and seen > 0.002 * width * height
        orient_w, transl_w = world_from_camera(model, subj, cam_ext)
        data = {
            "gender": gender, "name": f"P{subject}_{seq}", "emdb1": bool(index != 0 or subject),
            "emdb2": index == 0 and subject == 0, "n_frames": n, "good_frames_mask": good,
            "camera": {"intrinsics": k_matrix, "extrinsics": np.repeat(cam_ext[None], n, 0),
                       "width": width, "height": height},
            "smpl": {"poses_root": orient_w, "poses_body": np.concatenate(
                [subj.body_pose.reshape(n, -1), np.zeros((n, 6))], 1), "trans": transl_w,
                "betas": subj.betas[0]},
            "kp2d": kp2d, "bboxes": {"bboxes": boxes, "invalid_idxs": np.array(invalid, int)},
            "synthetic": True,
        }
        path = sequence_path(self.root, subject, seq)
        with path.open("wb") as f:
            pickle.dump(data, f)
        return path
