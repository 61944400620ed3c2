"""Render one synthetic scene: people (skinned synthetic bodies), occluding objects, background.

The render is exact: the person map and the union person mask come from the same z-buffer as the
image, and every COCO joint's visibility (the simulated detector's uncertainty source) is read off
it: outside the image, hidden by an object, by another person, or by the person's own body.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from body.joints import COCO17_NAMES
from synthetic.raster import Raster, project, rasterize

from .sidecar import (
    OBJECT_OCCLUDED, OUTSIDE_IMAGE, PERSON_OCCLUDED, SELF_OCCLUDED, VISIBLE, write_sidecar,
)

INNER_JOINT_DEPTH = 0.15  # m: a joint this deep under its own body's surface still counts as seen
_SKIN_PARTS_SMPL = (12, 15, 20, 21, 22, 23)
_LOWER_PARTS = (0, 1, 2, 4, 5)
_FEET_PARTS = (7, 8, 10, 11)
_HEAD = 15  # SMPL and SMPL-X
HAIR = 55   # the colour slot of the hair, after SMPL-X's 55 parts


@dataclass
class BodyTopology:
    """What the renderer needs of a body model, computed once per model."""

    faces: np.ndarray  # (F, 3)
    face_part: np.ndarray  # (F,) the joint that moves each face most
    coco_joint: np.ndarray  # (17,) output-joint index of each COCO joint
    coco_vertex: np.ndarray  # (17,) vertex index for vertex joints (nose, eyes, ears), else -1
    coco_parts: list[frozenset[int]]  # parts whose surface counts as the joint's own
    face_color: np.ndarray  # (F,) colour slot: face_part, or HAIR on the back and top of the head
    #                         (so the image shows which way a body faces, as faces and hair do)

    @classmethod
    def from_model(cls, model: torch.nn.Module, coco_map: tuple[int, ...]) -> BodyTopology:
        faces = model.faces_tensor.numpy().astype(np.int64)
        weights = model.lbs_weights.numpy()
        face_part = weights[faces].mean(1).argmax(1)
        face_color = np.where(_hair_faces(model.v_template.numpy(), faces, face_part), HAIR,
                              face_part)
        parents = model.parents.tolist()
        n_skel = len(parents)
        extra = model.vertex_joint_selector.extra_joints_idxs.numpy()
        vertex = np.array([extra[j - n_skel] if j >= n_skel else -1 for j in coco_map])
        parts = []
        for j in coco_map:
            if j >= n_skel:
                parts.append(frozenset())
            else:
                kids = {k for k, p in enumerate(parents) if p == j}
                parts.append(frozenset({j, parents[j]} | kids))
        return cls(faces, face_part, np.array(coco_map), vertex, parts, face_color)


def _hair_faces(rest: np.ndarray, faces: np.ndarray, face_part: np.ndarray) -> np.ndarray:
    """(F,) the head's faces that point backwards or up in the rest pose (the body faces +z,
    up is +y): hair, so that the front of the head (the face, skin) and its back differ."""
    a, b, c = (rest[faces[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return (face_part == _HEAD) & ((n[:, 2] < 0.1) | (n[:, 1] > 0.6))


@dataclass
class Person:
    vertices: np.ndarray  # (V, 3) camera frame, metres
    joints: np.ndarray  # (J, 3) all smplx output joints, camera frame
    topology: BodyTopology
    colors: np.ndarray  # (n_parts_max, 3) float RGB per body part

    @property
    def coco(self) -> np.ndarray:
        return self.joints[self.topology.coco_joint]


@dataclass
class Occluder:
    vertices: np.ndarray  # (4, 3) a camera-facing quad
    color: np.ndarray  # (3,) float RGB
    stripes: float  # stripe frequency of its texture

    faces = np.array([[0, 1, 2], [0, 2, 3]])


def person_colors(rng: np.random.Generator, n_parts: int,
                  skin_parts: tuple[int, ...]) -> np.ndarray:
    """RGB per colour slot (the n_parts body parts, then HAIR): skin, an upper garment,
    trousers, shoes, and hair, a dark shade of the skin (no extra draw: the rest of the world's
    random stream is the same as before the hair)."""
    skin = rng.uniform([0.45, 0.3, 0.2], [0.95, 0.8, 0.7])
    upper, lower, shoes = rng.uniform(0.05, 0.95, (3, 3))
    colors = np.tile(upper, (HAIR + 1, 1))
    colors[list(_LOWER_PARTS)] = lower
    colors[list(_FEET_PARTS)] = shoes
    colors[[p for p in skin_parts if p < n_parts]] = skin
    colors[HAIR] = 0.25 * skin
    return colors


def skin_parts(n_parts: int) -> tuple[int, ...]:
    """Head, neck and hands of SMPL (24 parts) or SMPL-X (55: plus jaw, eyes, fingers)."""
    if n_parts == 24:
        return _SKIN_PARTS_SMPL
    return (12, 15, 20, 21) + tuple(range(22, n_parts))


def occluder_in_front(rng: np.random.Generator, target: np.ndarray) -> Occluder:
    """A camera-facing box face between the camera and `target` (a point on a person), covering
    part of that person: a side, the legs or the torso."""
    depth = max(0.8, target[2] - rng.uniform(0.4, 1.5))
    ratio = depth / target[2]
    width, height = rng.uniform(0.35, 1.0), rng.uniform(0.4, 1.2)
    centre = target * ratio + np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.6), 0]) * ratio
    dx, dy = width / 2 * ratio, height / 2 * ratio
    quad = centre + np.array([[-dx, -dy, 0], [dx, -dy, 0], [dx, dy, 0], [-dx, dy, 0]])
    return Occluder(quad, rng.uniform(0.1, 0.9, 3), rng.uniform(0.02, 0.2))


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float textured noise: a smooth random colour field, a horizon, pixel noise."""
    gray = rng.uniform(0.25, 0.8, (6, 10, 1))
    coarse = (gray + rng.uniform(-0.12, 0.12, (6, 10, 3))).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    horizon = int(rng.uniform(0.3, 0.6) * height)
    image[horizon:] *= rng.uniform(0.5, 0.9)
    image += rng.normal(0, 0.04, image.shape).astype(np.float32)
    return np.clip(image, 0, 1)


@dataclass
class RenderedScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    person_map: np.ndarray  # (H, W) int8 person index, -1 elsewhere
    coco_xy: np.ndarray  # (P, 17, 2) float32 projected COCO joints
    coco_state: np.ndarray  # (P, 17) int8 (VISIBLE … OUTSIDE_IMAGE, sidecar.py)
    raster: Raster

    def write_sidecar(self, image_path) -> None:
        h, w = self.person_map.shape
        write_sidecar(image_path, (w, h), self.coco_xy, self.coco_state, self.person_map)


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _shade(raster: Raster, people: list[Person], occluders: list[Occluder],
           base: np.ndarray) -> np.ndarray:
    light = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])
    image = base.copy()
    for index, person in enumerate(people):
        hit = raster.mesh == index
        faces = raster.face[hit]
        normals = _face_normals(person.vertices, person.topology.faces)[faces]
        intensity = 0.35 + 0.65 * np.abs(normals @ light)
        image[hit] = person.colors[person.topology.face_color[faces]] * intensity[:, None]
    rows, cols = np.indices(raster.mesh.shape)
    for k, occ in enumerate(occluders):
        hit = raster.mesh == len(people) + k
        texture = 0.8 + 0.2 * np.sin((rows[hit] + cols[hit]) * occ.stripes * np.pi)
        image[hit] = occ.color * texture[:, None]
    return image


def coco_states(people: list[Person], raster: Raster, width: int, height: int,
                k_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 17, 2) projected COCO joints and their (P, 17) visibility states from the z-buffer."""
    xy = np.zeros((len(people), len(COCO17_NAMES), 2), np.float32)
    state = np.zeros((len(people), len(COCO17_NAMES)), np.int8)
    for p, person in enumerate(people):
        uvz = project(person.coco, k_matrix)
        xy[p] = uvz[:, :2]
        topo = person.topology
        for k, (u, v, z) in enumerate(uvz):
            col, row = int(round(u)), int(round(v))
            if not (0 <= col < width and 0 <= row < height) or z <= 0:
                state[p, k] = OUTSIDE_IMAGE
                continue
            seen = raster.mesh[row, col]
            if seen < 0:
                state[p, k] = VISIBLE
            elif seen >= len(people):
                state[p, k] = OBJECT_OCCLUDED
            elif seen != p:
                state[p, k] = PERSON_OCCLUDED
            elif topo.coco_vertex[k] >= 0:  # a surface point: depth test
                depth = person.vertices[topo.coco_vertex[k], 2]
                state[p, k] = VISIBLE if depth <= raster.depth[row, col] + 0.03 else SELF_OCCLUDED
            else:  # an inner joint: visible under its own limb's surface or a body wall
                part = topo.face_part[raster.face[row, col]]
                close = raster.depth[row, col] >= z - INNER_JOINT_DEPTH
                state[p, k] = VISIBLE if part in topo.coco_parts[k] or close else SELF_OCCLUDED
    return xy, state


def render_scene(people: list[Person], occluders: list[Occluder], k_matrix: np.ndarray,
                 width: int, height: int, rng: np.random.Generator) -> RenderedScene:
    """Render people and occluders over a random background; read off joint visibility."""
    meshes = [(p.vertices, p.topology.faces) for p in people]
    meshes += [(o.vertices, Occluder.faces) for o in occluders]
    raster = rasterize(meshes, k_matrix, width, height)
    image = _shade(raster, people, occluders, background(rng, width, height))
    image = np.clip(image + rng.normal(0, 0.015, image.shape), 0, 1)
    person_map = np.where(raster.mesh < len(people), raster.mesh, -1).astype(np.int8)
    xy, state = coco_states(people, raster, width, height, k_matrix)
    return RenderedScene((image * 255).round().astype(np.uint8), person_map, xy, state, raster)
