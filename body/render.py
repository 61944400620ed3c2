"""Shaded mesh pictures for reports and the demo, on top of `body.raster`.

- `face_normals`, `lambert`: flat Lambert shading per face, |n·l| (both sides lit, as the
  rasterizer draws both windings), `ambient + (1 − ambient)·|n·l|`.
- `blend_meshes`: meshes (camera frame, OpenCV axes) seen through K, shaded, alpha-blended over an
  image; one z-buffer for all of them, so nearer meshes hide farther ones.
- `side_view`: vertices turned 90° about the vertical axis (camera y) through a pivot, e.g. the
  pelvis: depth becomes left–right, so a depth ambiguity shows as a horizontal spread.
- `fit_camera`: a pinhole K at the origin that frames given points in a W × H picture (for side
  views, which have no image behind them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .raster import rasterize

LIGHT = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])  # towards the camera
AMBIENT = 0.35


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unit normals of the faces (F, 3) of vertices (V, 3) (zero-area faces: ≈ 0)."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def lambert(normals: np.ndarray, light: np.ndarray = LIGHT,
            ambient: float = AMBIENT) -> np.ndarray:
    """Intensity in [ambient, 1] of faces with unit normals (F, 3) under a unit light (3,)."""
    return ambient + (1 - ambient) * np.abs(normals @ light)


def blend_meshes(image: np.ndarray, meshes: Sequence[tuple[np.ndarray, np.ndarray]],
                 K: np.ndarray, colors: Sequence[Sequence[float]] | np.ndarray,
                 alpha: float | Sequence[float] = 0.8) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1]: `image` (H, W, 3) uint8 or float in [0, 1] with the meshes
    (vertices (V, 3) camera frame, faces (F, 3)) drawn through K, mesh m shaded in colors[m]
    (RGB in [0, 1]) with opacity alpha (one value or one per mesh)."""
    out = np.asarray(image, np.float64)
    out = out / 255.0 if np.asarray(image).dtype == np.uint8 else out.copy()
    h, w = out.shape[:2]
    raster = rasterize(meshes, K, w, h)
    colors = np.asarray(colors, np.float64).reshape(len(meshes), 3)
    alphas = np.broadcast_to(np.asarray(alpha, np.float64), (len(meshes),))
    for m, (vertices, faces) in enumerate(meshes):
        hit = raster.mesh == m
        if not hit.any():
            continue
        normals = face_normals(np.asarray(vertices, np.float64), np.asarray(faces))
        shade = lambert(normals[raster.face[hit]])[:, None] * colors[m]
        out[hit] = (1 - alphas[m]) * out[hit] + alphas[m] * shade
    return out


def side_view(vertices: np.ndarray, pivot: np.ndarray, degrees: float = 90.0) -> np.ndarray:
    """Vertices (..., V, 3) (camera frame, y down) turned by `degrees` about the vertical line
    through pivot (3,): x' = cos·x + sin·z, z' = −sin·x + cos·z relative to the pivot (90°:
    what lay nearer the camera moves to the left of the picture)."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    pivot = np.asarray(pivot, np.float64)
    return (np.asarray(vertices, np.float64) - pivot) @ rot.T + pivot


def fit_camera(points: np.ndarray, width: int, height: int, margin: float = 0.08) -> np.ndarray:
    """K (3, 3) of a camera at the origin looking along +z that shows all points (N, 3), in
    front of it, inside a width × height picture with `margin` of each side left free."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    span_x, span_y = max(np.ptp(x), 1e-6), max(np.ptp(y), 1e-6)
    f = min(width * (1 - 2 * margin) / span_x, height * (1 - 2 * margin) / span_y)
    cx = width / 2 - f * (x.min() + x.max()) / 2
    cy = height / 2 - f * (y.min() + y.max()) / 2
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def render_side(meshes: Sequence[tuple[np.ndarray, np.ndarray]], pivot: np.ndarray,
                width: int, height: int, colors, alpha: float | Sequence[float] = 1.0,
                background: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """(H, W, 3) float RGB: the meshes turned 90° about the vertical axis through `pivot`
    (`side_view`), framed by `fit_camera`, on a plain background."""
    turned = [(side_view(v, pivot), f) for v, f in meshes]
    K = fit_camera(np.concatenate([v for v, _ in turned]), width, height)
    plain = np.broadcast_to(np.asarray(background, np.float64), (height, width, 3))
    return blend_meshes(plain, turned, K, colors, alpha)
