"""The synthetic training set in the BEDLAM-CLIFF layout (docs/formats.md, docs/synthetic_world.md).

One label `.npz` per image folder, one row per person per image; PNG images; `_env.png` union
person masks (people dark, environment white); the simulated detector's scene side-car.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from body.cameras import box_from_keypoints, perspective_projection
from body.models import load_smplx
from body.joints import SMPLX_TO_COCO17
from core.durable import save_npz_replacing
from core.seeding import rng_for

from .cameras import random_extrinsic, random_intrinsics
from .motions import PoseModel, default_pose_models
from .people import make_people, sample_people, world_from_camera
from .scene import BodyTopology, Occluder, occluder_in_front, render_scene

LABEL_KEYS = ("imgname", "center", "scale", "pose_cam", "pose_world", "shape", "trans_cam",
              "trans_world", "gtkps", "cam_int", "cam_ext", "gender", "proj_verts",
              "motion_info", "sub")
PROJ_VERTS_STEP = 24  # proj_verts keeps every 24th vertex (437 of 10475)


def image_name(seq: int, frame: int) -> str:
    return f"seq_{seq:06d}/seq_{seq:06d}_{frame:04d}.png"


class BedlamSequenceWriter:
    """Writes whole sequences; holds the body model (one per process). Poses: the "train"
    model of `poses` (motions.pose_models; pipelines.yaml's by default)."""

    def __init__(self, body_models: Path, root: Path, cfg,
                 poses: Mapping[str, PoseModel] | None = None) -> None:
        self.model = load_smplx(body_models)
        self.topology = BodyTopology.from_model(self.model, SMPLX_TO_COCO17)
        self.root, self.cfg = Path(root), cfg
        self.poses = (poses or default_pose_models())["train"]

    def __call__(self, seed: int, folder: str, seq: int) -> dict[str, list]:
        cfg, rng = self.cfg, rng_for(seed, "bedlam", folder, seq)
        width, height = cfg.image_size
        k_matrix, cam_ext = random_intrinsics(rng, width, height), random_extrinsic(rng)
        rows: dict[str, list] = {k: [] for k in LABEL_KEYS}
        for frame in range(cfg.frames_per_sequence):
            n = int(rng.integers(cfg.people[0], cfg.people[1] + 1))
            params = sample_people(rng, self.model, n, k_matrix, width, height,
                                   tuple(cfg.depth_range), self.poses)
            people = make_people(rng, self.model, self.topology, params)
            occluders: list[Occluder] = []
            if rng.uniform() < cfg.occluder_p:
                target = people[int(rng.integers(n))]
                occluders = [occluder_in_front(rng, target.joints[int(rng.choice([0, 4, 5, 16]))])
                             for _ in range(int(rng.integers(1, 3)))]
            scene = render_scene(people, occluders, k_matrix, width, height, rng)
            name = image_name(seq, frame)
            self._write_images(folder, name, scene, width, height)
            self._append_rows(rows, name, params, people, scene, k_matrix, cam_ext, width, height)
        return rows

    def _write_images(self, folder: str, name: str, scene, width: int, height: int) -> None:
        image_path = self.root / "images" / folder / "png" / name
        mask_path = (self.root / "images" / folder / "masks" / name).with_suffix("")
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), scene.image[:, :, ::-1])
        env = np.where(scene.person_map >= 0, 0, 255).astype(np.uint8)
        cv2.imwrite(f"{mask_path}_env.png", env)
        scene.write_sidecar(image_path)

    def _append_rows(self, rows, name, params, people, scene, k_matrix, cam_ext, width, height):
        orient_w, transl_w = world_from_camera(self.model, params, cam_ext)
        for i, person in enumerate(people):
            uv = perspective_projection(person.joints, k_matrix)
            pelvis = uv[0]
            if not (0 <= pelvis[0] < width and 0 <= pelvis[1] < height):
                continue  # BEDLAM-CLIFF keeps people whose body centre is in view
            center, scale = box_from_keypoints(uv)
            pose = np.zeros(165)
            pose[3:66] = params.body_pose[i].reshape(-1)
            pose_cam, pose_world = pose.copy(), pose.copy()
            pose_cam[:3], pose_world[:3] = params.global_orient[i], orient_w[i]
            rows["imgname"].append(name)
            rows["center"].append(center)
            rows["scale"].append(scale)
            rows["pose_cam"].append(pose_cam)
            rows["pose_world"].append(pose_world)
            rows["shape"].append(params.betas[i])
            rows["trans_cam"].append(params.transl[i] - cam_ext[:3, 3])  # body = … + cam_ext t
            rows["trans_world"].append(transl_w[i])
            rows["gtkps"].append(np.concatenate([uv, np.ones((len(uv), 1))], 1))
            rows["cam_int"].append(k_matrix)
            rows["cam_ext"].append(cam_ext)
            rows["gender"].append("neutral")
            rows["proj_verts"].append(
                perspective_projection(person.vertices[::PROJ_VERTS_STEP], k_matrix))
            rows["motion_info"].append(f"synthetic_{name[:-4]}_{i}")
            rows["sub"].append(f"synthetic_body_{i}")


def write_labels(root: Path, folder: str, rows: dict[str, list]) -> Path:
    """`processed_labels/<folder>.npz` with the BEDLAM-CLIFF keys and dtypes."""
    path = Path(root) / "processed_labels" / f"{folder}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v, dtype=np.float32 if k not in ("imgname", "gender", "motion_info",
                                                             "sub") else str)
              for k, v in rows.items()}
    return save_npz_replacing(path, arrays)
