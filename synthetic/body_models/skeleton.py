"""Rest skeleton and body parts of the SYNTHETIC body (not SMPL; a procedural stand-in).

Coordinates follow SMPL: metres, y up, x towards the body's left, z forward (the body faces +z).
Each body part is an ellipsoid around one bone, owned by the joint whose rotation moves it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from body.joints import SMPL_PARENTS, SMPLX_PARENTS

_LEFT_SMPL = {  # left-side and central joints of the T-pose; right side mirrors x
    0: (0.0, 0.0, 0.0), 1: (0.09, -0.08, 0.0), 3: (0.0, 0.11, -0.01), 4: (0.10, -0.48, 0.01),
    6: (0.0, 0.24, -0.01), 7: (0.10, -0.88, -0.03), 9: (0.0, 0.30, 0.0), 10: (0.11, -0.94, 0.09),
    12: (0.0, 0.50, -0.01), 13: (0.07, 0.42, -0.01), 15: (0.0, 0.60, 0.03),
    16: (0.18, 0.44, -0.01), 18: (0.44, 0.44, -0.02), 20: (0.68, 0.44, -0.02),
    22: (0.77, 0.44, -0.02),
}
_MIRROR = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20, 23: 22}
# finger bases relative to the wrist (index, middle, pinky, ring, thumb: the SMPL-X order)
_FINGER_BASE = ((0.085, 0.0, 0.028), (0.09, 0.0, 0.008), (0.075, 0.0, -0.03),
                (0.085, 0.0, -0.012), (0.03, -0.01, 0.04))
_FINGER_DIR = ((1, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0), (0.7, 0, 0.7))
_FINGER_SEGMENTS = (0.032, 0.024, 0.02)  # k1→k2, k2→k3, k3→tip


def smpl_rest_joints() -> np.ndarray:
    """(24, 3) T-pose joint positions of the synthetic SMPL-layout body."""
    joints = np.zeros((24, 3))
    for j, p in _LEFT_SMPL.items():
        joints[j] = p
    for right, left in _MIRROR.items():
        joints[right] = joints[left] * (-1, 1, 1)
    return joints


def smplx_rest_joints() -> np.ndarray:
    """(55, 3) T-pose joints of the synthetic SMPL-X-layout body (22 body, jaw, eyes, hands)."""
    body = smpl_rest_joints()[:22]
    face = np.array([[0.0, 0.585, 0.05], [0.032, 0.66, 0.09], [-0.032, 0.66, 0.09]])
    hands = []
    for side, wrist in ((1, body[20]), (-1, body[21])):
        for base, direction in zip(_FINGER_BASE, _FINGER_DIR):
            d = np.array(direction, float) / np.linalg.norm(direction) * (side, 1, 1)
            p = wrist + np.array(base) * (side, 1, 1)
            for seg in _FINGER_SEGMENTS[:2]:
                hands.append(p)
                p = p + seg * d
            hands.append(p)
    return np.concatenate([body, face, np.array(hands)])


@dataclass(frozen=True)
class Part:
    """An ellipsoid around the bone `start → end`, skinned to `joint`."""

    joint: int
    start: np.ndarray
    end: np.ndarray
    radius_width: float  # perpendicular radius across the body (x for legs, y for arms)
    radius_depth: float  # perpendicular radius front-to-back
    extend: float  # how far the ellipsoid reaches beyond both bone ends


def _child(parents: tuple[int, ...], j: int) -> int | None:
    kids = [k for k, p in enumerate(parents) if p == j]
    return kids[0] if len(kids) == 1 else None


# (width, depth) radii per SMPL joint's part; the bone of a joint runs to its single child
_RADII = {0: (0.16, 0.11), 3: (0.15, 0.105), 6: (0.16, 0.11), 9: (0.17, 0.11),
          12: (0.05, 0.05), 13: (0.06, 0.06), 16: (0.055, 0.055), 18: (0.045, 0.045),
          20: (0.02, 0.045), 22: (0.015, 0.04), 1: (0.08, 0.08), 4: (0.055, 0.055),
          7: (0.045, 0.035), 10: (0.04, 0.02)}


def body_parts(kind: str) -> list[Part]:
    """The parts of the synthetic `kind` ('smpl' or 'smplx') body, one per skinned joint."""
    smplx = kind == "smplx"
    joints = smplx_rest_joints() if smplx else smpl_rest_joints()
    parents = SMPLX_PARENTS if smplx else SMPL_PARENTS
    radii = dict(_RADII)
    for right, left in _MIRROR.items():
        radii[right] = radii[left]
    parts = []
    for j in range(len(joints)):
        if j == 0:
            start, end = joints[0] + (0, -0.1, 0), joints[0] + (0, 0.08, 0)
        elif j == 15:  # head
            start, end = joints[15] + (0, -0.02, 0), joints[15] + (0, 0.17, 0)
            radii[15] = (0.085, 0.1)
        elif j == 9:  # chest up to the neck
            start, end = joints[9], joints[12]
        elif smplx and j in (20, 21):  # palm
            side = 1 if j == 20 else -1
            start, end = joints[j], joints[j] + (0.085 * side, 0, 0)
        elif smplx and j == 22:  # jaw → chin
            start, end = joints[22], joints[22] + (0, -0.03, 0.05)
            radii[22] = (0.035, 0.03)
        elif smplx and j in (23, 24):  # eyeballs
            start, end = joints[j] - (0, 0, 0.006), joints[j] + (0, 0, 0.006)
            radii[j] = (0.011, 0.011)
        elif smplx and j >= 25:  # finger segments
            child = _child(parents, j)
            finger, seg = divmod(j - 25, 3)
            direction = joints[j] - joints[j - 1] if seg else joints[j + 1] - joints[j]
            end = joints[child] if child is not None else (
                joints[j] + direction / np.linalg.norm(direction) * _FINGER_SEGMENTS[2])
            start = joints[j]
            r = 0.011 if finger % 5 != 4 else 0.013
            radii[j] = (r, r)
        else:
            child = _child(parents, j)
            start = joints[j]
            end = joints[child] if child is not None else (
                joints[j] + ((0.08 if j == 22 else -0.08), 0, 0) if j in (22, 23)
                else joints[j] + (0, 0, 0.07))
        width, depth = radii[j]
        extend = 0.02 if j == 15 else min(width, depth)
        parts.append(Part(j, np.asarray(start, float), np.asarray(end, float), width, depth,
                          extend))
    return parts
