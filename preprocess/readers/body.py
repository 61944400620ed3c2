"""Ground-truth bodies for the readers: posed vertices and joints in the camera frame, batched."""
from __future__ import annotations

import numpy as np
import torch

from body.frames import camera_from_world
from body.rotations import axis_angle_to_matrix


@torch.no_grad()
def posed_body(model: torch.nn.Module, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray,
               batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, 3) vertices and (N, J, 3) joints of `model` for axis-angle pose (N, K, 3) of the
    first K joints (the rest at identity), betas and transl; camera frame."""
    verts, joints = [], []
    n_body = model.NUM_BODY_JOINTS
    for start in range(0, len(pose), batch):
        sl = slice(start, start + batch)
        rot = axis_angle_to_matrix(torch.as_tensor(pose[sl], dtype=torch.float32))
        n, k = rot.shape[:2]
        body = torch.cat([rot[:, 1:], torch.eye(3).expand(n, n_body + 1 - k, 3, 3)], 1)
        out = model(betas=torch.as_tensor(betas[sl], dtype=torch.float32),
                    global_orient=rot[:, :1], body_pose=body,
                    transl=torch.as_tensor(transl[sl], dtype=torch.float32))
        verts.append(out.vertices.numpy())
        joints.append(out.joints.numpy())
    return np.concatenate(verts), np.concatenate(joints)


def world_to_camera(model: torch.nn.Module, orient_w: np.ndarray, trans_w: np.ndarray,
                    betas: np.ndarray, ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame (global orient axis-angle, transl) of world-frame ones (N, 3) for betas
    (N, B) and world→camera extrinsics (N, 4, 4), with the model's pelvis offset J0."""
    n = len(orient_w)
    _, rest = posed_body(model, np.zeros((n, 1, 3)), betas, np.zeros((n, 3)))
    return camera_from_world(orient_w, trans_w, rest[:, 0].astype(np.float64), ext)
