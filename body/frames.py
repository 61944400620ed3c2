"""World ↔ camera frame for a body's root: global orientation and translation.

smplx rotates the body about its rest root joint J0, not about the origin, so a rigid change of
frame x_c = R·x_w + t moves (orient, transl) as R_c = R·R_w, t_c = R·(J0 + t_w) + t − J0, and
back as R_w = Rᵀ·R_c, t_w = Rᵀ·(t_c + J0 − t) − J0. J0 depends on the betas only (the caller
computes it with its body model). Axis-angle in and out, float64.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def camera_from_world(orient_w: np.ndarray, transl_w: np.ndarray, j0: np.ndarray,
                      ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame (orient, transl) (N, 3) of world-frame ones (N, 3) with rest root joints
    j0 (N, 3) and per-row world→camera extrinsics ext (N, 4, 4)."""
    r_wc, t_wc = ext[:, :3, :3], ext[:, :3, 3]
    orient = (Rotation.from_matrix(r_wc) * Rotation.from_rotvec(orient_w)).as_rotvec()
    transl = np.einsum("nij,nj->ni", r_wc, j0 + transl_w) + t_wc - j0
    return orient, transl


def world_from_camera(orient_c: np.ndarray, transl_c: np.ndarray, j0: np.ndarray,
                      ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-frame (orient, transl) (n, 3) of camera-frame ones (n, 3) with rest root joints
    j0 (n, 3), all seen by one camera with world→camera extrinsic ext (4, 4)."""
    r_wc, t_wc = ext[:3, :3], ext[:3, 3]
    orient = (Rotation.from_matrix(r_wc.T) * Rotation.from_rotvec(orient_c)).as_rotvec()
    transl = (transl_c + j0 - t_wc) @ r_wc - j0
    return orient, transl
