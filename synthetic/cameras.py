"""Random cameras of the synthetic world: intrinsics and a world→camera extrinsic."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def random_intrinsics(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """K with a focal length between a wide and a moderate tele lens, centred principal point."""
    f = rng.uniform(0.7, 1.6) * max(width, height)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])


def random_extrinsic(rng: np.random.Generator) -> np.ndarray:
    """(4, 4) world→camera: world y up, the camera at 1–2 m height looking down by 0–17°."""
    to_opencv = np.diag([1.0, -1.0, -1.0])  # world y-up, z towards the camera → y down, z ahead
    pitch = Rotation.from_rotvec([-rng.uniform(0.0, 0.3), 0, 0]).as_matrix()
    yaw = Rotation.from_rotvec([0, rng.uniform(-np.pi, np.pi), 0]).as_matrix()
    r_wc = pitch @ to_opencv @ yaw
    centre = np.array([rng.uniform(-3, 3), rng.uniform(1.0, 2.0), rng.uniform(-3, 3)])
    ext = np.eye(4)
    ext[:3, :3], ext[:3, 3] = r_wc, -r_wc @ centre
    return ext
