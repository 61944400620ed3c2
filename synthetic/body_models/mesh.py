"""The SYNTHETIC body mesh: ellipsoid parts, skinning, regressors and blend shapes.

Everything an SMPL/SMPL-X file holds, built procedurally on the real kinematic trees and the real
vertex counts, so `smplx`'s hard-coded extra-joint vertex ids stay valid: those vertices are
placed where their names say (nose, eyes, ears, toes, heels, finger tips).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, cKDTree
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from body.joints import SMPL_PARENTS, SMPLX_PARENTS
from .skeleton import Part, body_parts

VERTEX_COUNT = {"smpl": 6890, "smplx": 10475}
NUM_SHAPE_DIRECTIONS = 11  # meaningful directions; SMPL keeps the first 10


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) template
    faces: np.ndarray  # (F, 3) int, outward-oriented
    part: np.ndarray  # (V,) the joint owning each vertex's part
    axial: np.ndarray  # (V,) position along the part's bone, 0 at its joint, 1 at its end
    axis_point: np.ndarray  # (V, 3) closest point on the part's bone axis


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    r = np.sqrt(1 - z ** 2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.array([0.0, 0, 1]) if abs(axis[2]) < 0.9 else np.array([0.0, 1, 0])
    e1 = np.cross(axis, ref)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def _allocate(parts: list[Part], total: int) -> list[int]:
    area = np.array([(np.linalg.norm(p.end - p.start) / 2 + p.extend)
                     * (p.radius_width + p.radius_depth) + p.radius_width * p.radius_depth
                     for p in parts])
    counts = np.maximum(24, np.floor(total * area / area.sum())).astype(int)
    counts[np.argmax(counts)] += total - counts.sum()
    return counts.tolist()


def build_surface(kind: str) -> Mesh:
    """The template surface of `kind` with exactly the real vertex count."""
    parts = body_parts(kind)
    verts, faces, owner, axial, axis_pts = [], [], [], [], []
    offset = 0
    for part, n in zip(parts, _allocate(parts, VERTEX_COUNT[kind])):
        unit = _fibonacci_sphere(n)
        tri = ConvexHull(unit).simplices
        normals = np.cross(unit[tri[:, 1]] - unit[tri[:, 0]], unit[tri[:, 2]] - unit[tri[:, 0]])
        inward = (normals * unit[tri].mean(1)).sum(1) < 0
        tri[inward] = tri[inward][:, ::-1]
        bone = part.end - part.start
        length = np.linalg.norm(bone)
        axis = bone / length
        e1, e2 = _frame(axis)
        half = length / 2 + part.extend
        center = (part.start + part.end) / 2
        pos = (center + unit[:, :1] * part.radius_width * e1 + unit[:, 1:2] * part.radius_depth * e2
               + unit[:, 2:] * half * axis)
        t = (pos - part.start) @ axis / length
        verts.append(pos)
        faces.append(tri + offset)
        owner.append(np.full(n, part.joint))
        axial.append(t)
        axis_pts.append(part.start + np.clip(t, 0, 1)[:, None] * bone)
        offset += n
    return Mesh(np.concatenate(verts), np.concatenate(faces), np.concatenate(owner),
                np.concatenate(axial), np.concatenate(axis_pts))


def _landmark_targets(kind: str, joints: np.ndarray) -> dict[str, tuple[int, np.ndarray]]:
    """name → (part joint, a point just outside the body that the landmark vertex is nearest to)."""
    targets = {
        "nose": (15, (0.0, 0.63, 0.15)), "reye": (15, (-0.035, 0.665, 0.14)),
        "leye": (15, (0.035, 0.665, 0.14)), "rear": (15, (-0.1, 0.65, 0.03)),
        "lear": (15, (0.1, 0.65, 0.03)),
    }
    for side, s, ankle, foot in (("L", 1, 7, 10), ("R", -1, 8, 11)):
        targets[f"{side}BigToe"] = (foot, (0.085 * s, -0.94, 0.2))
        targets[f"{side}SmallToe"] = (foot, (0.135 * s, -0.94, 0.2))
        targets[f"{side}Heel"] = (ankle, (0.10 * s, -0.93, -0.09))
    order = ("index", "middle", "pinky", "ring", "thumb")  # SMPL-X finger order
    for side, s, wrist in (("l", 1, 20), ("r", -1, 21)):
        for f, name in enumerate(order):
            if kind == "smplx":
                tip = 25 + 15 * (side == "r") + 3 * f + 2
                d = joints[tip] - joints[tip - 1]
                targets[f"{side}{name}"] = (tip, joints[tip] + 0.04 * d / np.linalg.norm(d))
            else:
                z = {"thumb": 0.3, "index": 0.03, "middle": 0.01, "ring": -0.01, "pinky": -0.03}
                x, z = (0.80, 0.06) if name == "thumb" else (0.88, z[name])
                targets[f"{side}{name}"] = (wrist + 2, (x * s, 0.44, z))
    return {k: (j, np.asarray(p, float)) for k, (j, p) in targets.items()}


def place_landmarks(mesh: Mesh, kind: str, joints: np.ndarray) -> Mesh:
    """Permute vertices so that `smplx`'s extra-joint vertex ids sit at their named places."""
    ids = SMPLX_VERTEX_IDS["smplx" if kind == "smplx" else "smplh"]
    perm = np.arange(len(mesh.vertices))  # perm[new position] = old vertex
    placed: set[int] = set()
    for name, (joint, target) in _landmark_targets(kind, joints).items():
        old_at = {old: pos for pos, old in enumerate(perm)}
        candidates = [v for v in np.flatnonzero(mesh.part == joint) if old_at[v] not in placed]
        dist = np.linalg.norm(mesh.vertices[candidates] - target, axis=1)
        best = candidates[int(np.argmin(dist))]
        src, dst = old_at[best], ids[name]
        perm[[src, dst]] = perm[[dst, src]]
        placed.add(dst)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return Mesh(mesh.vertices[perm], inverse[mesh.faces], mesh.part[perm], mesh.axial[perm],
                mesh.axis_point[perm])


def skinning_weights(mesh: Mesh, parents: tuple[int, ...]) -> np.ndarray:
    """(V, J) linear-blend weights: each part's joint, blended into the parent and the single
    child over the last 15 % of the bone at each end."""
    n_joints = len(parents)
    weights = np.zeros((len(mesh.vertices), n_joints))
    rows = np.arange(len(mesh.vertices))
    children = [[k for k, p in enumerate(parents) if p == j] for j in range(n_joints)]
    parent = np.array([parents[j] for j in mesh.part])
    child = np.array([children[j][0] if len(children[j]) == 1 else -1 for j in mesh.part])
    to_parent = np.where(parent >= 0, np.clip((0.15 - mesh.axial) / 0.3, 0, 0.5), 0)
    to_child = np.where(child >= 0, np.clip((mesh.axial - 0.85) / 0.3, 0, 0.5), 0)
    weights[rows, mesh.part] = 1 - to_parent - to_child
    np.add.at(weights, (rows, np.maximum(parent, 0)), to_parent)
    np.add.at(weights, (rows, np.maximum(child, 0)), to_child)
    return weights


def regressor_row(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Convex weights over `points` whose weighted mean is `target` (exact when feasible):
    the least-norm correction of uniform weights, clipped at zero."""
    m = len(points)
    uniform = np.full(m, 1.0 / m)
    system = np.vstack([points.T, np.ones(m)])
    rhs = np.concatenate([target - uniform @ points, [0.0]])
    w = uniform + np.linalg.lstsq(system, rhs, rcond=None)[0]
    w = np.clip(w, 0, None)
    return w / w.sum()


def joint_regressor(mesh: Mesh, targets: np.ndarray, k: int = 48) -> np.ndarray:
    """(len(targets), V) regressor: each row mixes the k template vertices nearest its target."""
    tree = cKDTree(mesh.vertices)
    reg = np.zeros((len(targets), len(mesh.vertices)))
    for row, target in enumerate(targets):
        _, idx = tree.query(target, k=k)
        reg[row, idx] = regressor_row(mesh.vertices[idx], target)
    return reg


def shape_directions(mesh: Mesh, joints: np.ndarray) -> np.ndarray:
    """(V, 3, 11) meaningful shape directions: stature, girth, leg length, shoulder width, arm
    length, belly, head size, hip width, chest depth, neck length, limb thickness."""
    v, part = mesh.vertices, mesh.part
    radial = v - mesh.axis_point
    legs = np.isin(part, (1, 2, 4, 5, 7, 8, 10, 11))
    torso = np.isin(part, (0, 3, 6, 9))
    head = (part == 15) | ((part >= 22) & (part <= 24) & (len(joints) > 24))
    arms = np.abs(v[:, 0]) > joints[16, 0]
    upper = v[:, 1] > joints[9, 1] - 0.02
    dirs = np.zeros((len(v), 3, NUM_SHAPE_DIRECTIONS))
    dirs[:, :, 0] = 0.05 * (v - joints[0]) * (0.3, 1.0, 0.3)
    dirs[:, :, 1] = 0.15 * radial * np.where(head, 0.2, 1.0)[:, None]
    dirs[legs, 1, 2] = 0.06 * (v[legs, 1] - joints[1, 1])
    dirs[upper, 0, 3] = 0.025 * np.sign(v[upper, 0]) * np.clip(np.abs(v[upper, 0]) / 0.18, 0, 1)
    dirs[arms, 0, 4] = 0.06 * (v[arms, 0] - np.sign(v[arms, 0]) * joints[16, 0])
    dirs[torso, 2, 5] = 0.3 * np.clip(radial[torso, 2], 0, None) * (v[torso, 1] < joints[6, 1])
    dirs[head, :, 6] = 0.08 * (v[head] - joints[15])
    hips = ~arms & ~head
    dirs[hips, 0, 7] = 0.12 * v[hips, 0] * np.clip((0.1 - v[hips, 1] + joints[0, 1]) / 0.2, 0, 1)
    chest = np.isin(part, (6, 9))
    dirs[chest, 2, 8] = 0.2 * np.clip(radial[chest, 2], 0, None)
    dirs[v[:, 1] > joints[12, 1], 1, 9] = 0.02
    dirs[~torso & ~head, :, 10] = 0.08 * radial[~torso & ~head]
    return dirs


def pose_correctives(mesh: Mesh, weights: np.ndarray) -> np.ndarray:
    """(V, 3, 9·(J−1)) pose blend shapes: near each joint the radial offset turns 5 % further
    with the joint, displacement_a = 0.05·m·Σ_b (R − I)_ab·r_b (smplx's feature layout)."""
    n_v, n_j = weights.shape
    radial = mesh.vertices - mesh.axis_point
    posedirs = np.zeros((n_v, 3, 9 * (n_j - 1)))
    for j in range(1, n_j):
        mask = 4 * weights[:, j] * (1 - weights[:, j])
        for a in range(3):
            posedirs[:, a, 9 * (j - 1) + 3 * a: 9 * (j - 1) + 3 * a + 3] = (
                0.05 * mask[:, None] * radial)
    return posedirs


def parents_of(kind: str) -> tuple[int, ...]:
    return SMPLX_PARENTS if kind == "smplx" else SMPL_PARENTS
