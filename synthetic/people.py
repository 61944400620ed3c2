"""Pose, shape and place synthetic people in a camera frame, through the body model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from body import frames
from body.rotations import axis_angle_to_matrix

from .motions import PoseModel
from .poses import upright_orientation
from .scene import BodyTopology, Person, person_colors, skin_parts


@dataclass
class BodyParams:
    """Camera-frame parameters of n people: body = model(pose, betas) + transl (smplx rule)."""

    global_orient: np.ndarray  # (n, 3) axis-angle, camera frame
    body_pose: np.ndarray  # (n, 21, 3) axis-angle
    betas: np.ndarray  # (n, n_betas)
    transl: np.ndarray  # (n, 3)


@torch.no_grad()
def rest_pelvis(model: torch.nn.Module, betas: np.ndarray) -> np.ndarray:
    """(n, 3) the root joint of the unposed body: the point smplx rotates the body about."""
    b = torch.as_tensor(betas, dtype=torch.float32)
    return model(betas=b).joints[:, 0].numpy().astype(np.float64)


@torch.no_grad()
def pose_people(model: torch.nn.Module, params: BodyParams) -> tuple[np.ndarray, np.ndarray]:
    """(n, V, 3) vertices and (n, J, 3) output joints in the camera frame."""
    n = len(params.betas)
    rot = axis_angle_to_matrix(torch.as_tensor(
        np.concatenate([params.global_orient[:, None], params.body_pose], 1), dtype=torch.float32))
    extra = model.NUM_BODY_JOINTS - 21  # SMPL's two hand joints stay at identity
    body = torch.cat([rot[:, 1:], torch.eye(3).expand(n, extra, 3, 3)], 1) if extra else rot[:, 1:]
    out = model(betas=torch.as_tensor(params.betas, dtype=torch.float32), global_orient=rot[:, :1],
                body_pose=body, transl=torch.as_tensor(params.transl, dtype=torch.float32))
    return out.vertices.numpy().astype(np.float64), out.joints.numpy().astype(np.float64)


def sample_people(rng: np.random.Generator, model: torch.nn.Module, n: int, k_matrix: np.ndarray,
                  width: int, height: int, depth_range: tuple[float, float], poses: PoseModel,
                  betas_std: float = 1.0) -> BodyParams:
    """n people at random depths, their pelvis at random pixels (some near or past the border,
    so bodies get truncated), in poses of `poses` and random shapes."""
    n_betas = model.num_betas
    betas = np.clip(rng.normal(0, betas_std, (n, n_betas)), -2.5, 2.5)
    depth = rng.uniform(*depth_range, n)
    u = rng.uniform(-0.05, 1.05, n) * width
    v = rng.uniform(0.35, 0.75, n) * height
    f, cx, cy = k_matrix[0, 0], k_matrix[0, 2], k_matrix[1, 2]
    pelvis = np.stack([(u - cx) * depth / f, (v - cy) * depth / f, depth], 1)
    transl = pelvis - rest_pelvis(model, betas)
    return BodyParams(upright_orientation(rng, n), poses.images(rng, n), betas, transl)


def make_people(rng: np.random.Generator, model: torch.nn.Module, topology: BodyTopology,
                params: BodyParams) -> list[Person]:
    """Posed, coloured people ready to render."""
    vertices, joints = pose_people(model, params)
    n_parts = len(model.parents)
    return [Person(vertices[i], joints[i], topology,
                   person_colors(rng, n_parts, skin_parts(n_parts))) for i in range(len(vertices))]


def world_from_camera(model: torch.nn.Module, params: BodyParams, cam_ext: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """World-frame (global orient axis-angle, transl) for camera-frame params and a world→camera
    extrinsic (4, 4), with the model's pelvis offset J0 (body/frames.py)."""
    return frames.world_from_camera(params.global_orient, params.transl,
                                    rest_pelvis(model, params.betas), cam_ext)
