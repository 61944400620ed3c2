"""Random plausible body poses within joint-angle limits, and upright camera-frame orientations.

Local joint frames are SMPL's (y up, x to the body's left, z forward). Each of the 21 body joints
gets intrinsic XYZ Euler angles drawn around a relaxed rest pose (arms down) and clipped to the
joint's limits; the limits are rough human ranges, enough for a plausible synthetic world.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

# (min, max) radians per axis (x, y, z) for body joints 1..21; left side, mirrored for the right.
_LIMITS_LEFT = {
    1: ((-1.8, 0.4), (-0.4, 0.4), (-0.3, 0.8)),     # hip: flexion is −x, abduction +z
    3: ((-0.15, 0.35), (-0.25, 0.25), (-0.15, 0.15)),  # spine1
    4: ((0.0, 2.3), (-0.1, 0.1), (-0.1, 0.1)),      # knee flexes +x
    6: ((-0.15, 0.35), (-0.25, 0.25), (-0.15, 0.15)),  # spine2
    7: ((-0.5, 0.6), (-0.2, 0.2), (-0.2, 0.2)),     # ankle
    9: ((-0.15, 0.35), (-0.25, 0.25), (-0.15, 0.15)),  # spine3
    10: ((-0.2, 0.2), (-0.1, 0.1), (-0.1, 0.1)),    # foot
    12: ((-0.4, 0.5), (-0.6, 0.6), (-0.3, 0.3)),    # neck
    13: ((-0.1, 0.1), (-0.2, 0.2), (-0.2, 0.2)),    # collar
    15: ((-0.3, 0.3), (-0.3, 0.3), (-0.2, 0.2)),    # head
    16: ((-0.6, 0.6), (-1.5, 0.6), (-1.4, 0.9)),    # shoulder: down is −z, forward is −y
    18: ((-0.5, 0.5), (-2.4, 0.0), (-0.1, 0.1)),    # elbow flexes −y (forearm forward)
    20: ((-0.5, 0.5), (-0.4, 0.4), (-0.6, 0.6)),    # wrist
}
_REST_LEFT = {16: (0.0, 0.0, -1.2), 18: (0.0, -0.3, 0.0)}
_MIRROR = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20}


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi, rest = np.zeros((21, 3)), np.zeros((21, 3)), np.zeros((21, 3))
    for j in range(1, 22):
        left = _MIRROR.get(j, j)
        limits = np.array(_LIMITS_LEFT[left])
        centre = np.array(_REST_LEFT.get(left, (0.0, 0.0, 0.0)))
        if left != j:  # mirror across the body's x = 0 plane: y and z angles change sign
            limits = limits * np.array([[1], [-1], [-1]])
            limits.sort(axis=1)
            centre = centre * (1, -1, -1)
        lo[j - 1], hi[j - 1], rest[j - 1] = limits[:, 0], limits[:, 1], centre
    return lo, hi, rest


LIMITS_LOW, LIMITS_HIGH, REST = _tables()


def sample_body_euler(rng: np.random.Generator, n: int, spread: float = 0.35) -> np.ndarray:
    """(n, 21, 3) intrinsic XYZ Euler angles ~ N(rest, spread·range), clipped to the limits."""
    sigma = spread * (LIMITS_HIGH - LIMITS_LOW)
    return np.clip(rng.normal(REST, sigma, size=(n, 21, 3)), LIMITS_LOW, LIMITS_HIGH)


def sample_body_pose(rng: np.random.Generator, n: int, spread: float = 0.35) -> np.ndarray:
    """(n, 21, 3) axis-angle body poses within the joint limits."""
    euler = sample_body_euler(rng, n, spread)
    return Rotation.from_euler("XYZ", euler.reshape(-1, 3)).as_rotvec().reshape(n, 21, 3)


def upright_orientation(rng: np.random.Generator, n: int, max_tilt: float = 0.15) -> np.ndarray:
    """(n, 3) axis-angle global orientations in an OpenCV camera frame (y down, z forward):
    standing upright, any heading, slightly tilted."""
    flip = Rotation.from_rotvec([np.pi, 0.0, 0.0])  # SMPL y-up, facing +z → camera y-down
    heading = Rotation.from_rotvec(np.c_[np.zeros(n), rng.uniform(0, 2 * np.pi, n), np.zeros(n)])
    tilt = Rotation.from_rotvec(np.c_[rng.uniform(-max_tilt, max_tilt, n), np.zeros(n),
                                      rng.uniform(-max_tilt, max_tilt, n)])
    return (flip * tilt * heading).as_rotvec()


def interpolate_poses(keys: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, J, 3) axis-angle poses slerped through key poses (K, J, 3) spread evenly."""
    key_times = np.linspace(0, n_frames - 1, len(keys))
    times = np.arange(n_frames)
    out = np.empty((n_frames,) + keys.shape[1:])
    for j in range(keys.shape[1]):
        out[:, j] = Slerp(key_times, Rotation.from_rotvec(keys[:, j]))(times).as_rotvec()
    return out
