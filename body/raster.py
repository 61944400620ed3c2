"""A vectorised numpy z-buffer triangle rasterizer: exact per-pixel depth, mesh id and face id.

Hand-written because no pip-installable CPU rasterizer fits (pyrender needs OpenGL, pytorch3d a
source build, nvdiffrast a GPU).

Conventions
-----------
- Camera frame x right, y down, z forward (OpenCV); K maps it to image coordinates
  u = fx·x/z + cx, v = fy·y/z + cy, and pixel (row i, col j) has its centre at (u=j, v=i).
- A pixel is covered by a triangle when its centre lies inside the projected triangle; centres
  exactly on an edge follow the top-left rule (a rectangle with corners on pixel centres covers
  the half-open range [u0, u1) × [v0, v1)). Edge functions of a shared edge are evaluated from
  one canonical endpoint order, so neighbours agree bit for bit: no gaps, no double coverage.
- Both windings are drawn (no back-face culling); the nearest fragment wins, ties go to the
  lower mesh index, then the lower face index.
- Depth is perspective-correct: 1/z is interpolated linearly in screen space.
- Faces with any vertex nearer than `near` are dropped (no clipping).

Method: per triangle an integer pixel bounding box, clipped to the image; triangles are bucketed
by box size (each side rounded up to a power of two) and each bucket tests a k_y×k_x pixel grid
against all its triangles at once, in chunks of about `_CHUNK` grid cells. Fragments are
resolved per pixel by the largest 1/z, then the lowest (mesh, face).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

_CHUNK = 1 << 18  # grid cells (triangles × k_y × k_x) tested at once; bounds temporary memory


@dataclass
class Raster:
    depth: np.ndarray  # (H, W) float32 camera-frame z of the nearest surface, np.inf where empty
    mesh: np.ndarray  # (H, W) int16 index of the mesh seen at each pixel, -1 where empty
    face: np.ndarray  # (H, W) int32 face index within that mesh, -1 where empty

    @property
    def covered(self) -> np.ndarray:
        """(H, W) bool, True where some mesh is seen."""
        return self.mesh >= 0


def _project_columns(points: np.ndarray, K: np.ndarray):
    """u, v, z (N,) of camera-frame points (N,3); u, v are inf or nan at z = 0."""
    x, y, z = np.asarray(points, np.float64).reshape(-1, 3).T
    K = np.asarray(K, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (K[0, 0] * x + K[0, 1] * y + K[0, 2] * z) / z
        v = (K[1, 0] * x + K[1, 1] * y + K[1, 2] * z) / z
    return u, v, z


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N,3) camera-frame points (x right, y down, z forward, OpenCV) → (N,3) [u, v, z] pixels."""
    return np.stack(_project_columns(points, K), axis=1)


def _gather(meshes: Sequence[tuple[np.ndarray, np.ndarray]], K: np.ndarray, near: float):
    """All meshes' projected vertices u, v, 1/z (N,) and their kept faces as global vertex ids
    (3, T), with each face's mesh index and face index within its mesh (T,)."""
    us, vs, inv_zs, faces, mesh_id, face_id = [], [], [], [], [], []
    offset = 0
    for m, (vertices, f) in enumerate(meshes):
        u, v, z = _project_columns(vertices, K)
        ok = (z >= near) & np.isfinite(z) & np.isfinite(u) & np.isfinite(v)
        f = np.ascontiguousarray(np.asarray(f, np.intp).reshape(-1, 3).T)  # (3, F) row per corner
        keep = np.flatnonzero(ok[f[0]] & ok[f[1]] & ok[f[2]])
        us.append(u)
        vs.append(v)
        inv_zs.append(1.0 / np.where(ok, z, 1.0))
        faces.append(np.take(f, keep, axis=1) + offset)
        mesh_id.append(np.full(len(keep), m, np.int16))
        face_id.append(keep.astype(np.int32))
        offset += len(z)
    if not faces:
        return (np.zeros(0),) * 3 + (np.zeros((3, 0), np.intp), np.zeros(0, np.int16),
                                     np.zeros(0, np.int32))
    faces = np.ascontiguousarray(np.concatenate(faces, axis=1))
    return (np.concatenate(us), np.concatenate(vs), np.concatenate(inv_zs), faces,
            np.concatenate(mesh_id), np.concatenate(face_id))


def _edges(fu: np.ndarray, fv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge functions of counter-clockwise (in u, v) triangles with corners fu, fv (3, T):
    (4, 3, T) = canonical start ax, ay and signed direction dx, dy of edge e (the edge opposite
    corner e), and whether it is a top or left edge (3, T).

    The edge function at pixel p is E = dx·(p_y − ay) − dy·(p_x − ax), positive inside, with a
    the lexicographically smaller endpoint and d = ±(b − a) (the sign flip is exact), so two
    triangles sharing an edge compute exactly opposite values."""
    n = fu.shape[1]
    flat_u, flat_v = fu.ravel(), fv.ravel()
    out = np.empty((4, 3, n))
    top_left = np.empty((3, n), bool)
    for e in range(3):
        ca, cb = (e + 1) % 3, (e + 2) % 3
        ua, ub, va, vb = fu[ca], fu[cb], fv[ca], fv[cb]
        swap = (ua > ub) | ((ua == ub) & (va > vb))
        start = ca * n + np.arange(n) + swap * ((cb - ca) * n)  # flat index of the start corner
        end = (ca + cb) * n + 2 * np.arange(n) - start
        ax, ay, dx, dy = out[:, e]
        ax[:], ay[:] = flat_u[start], flat_v[start]
        sign = 1.0 - 2.0 * swap
        dx[:] = (flat_u[end] - ax) * sign
        dy[:] = (flat_v[end] - ay) * sign
        top_left[e] = (dy < 0) | ((dy == 0) & (dx > 0))
    return out, top_left


def _fragments(u: np.ndarray, v: np.ndarray, inv_z: np.ndarray, faces: np.ndarray, width: int,
               height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Covered fragments (pixel, 1/z, face) of all faces (3, T) over vertices u, v, 1/z (N,).

    Pixels are flat indices y·width + x; rejected grid cells go to the spare pixel width·height."""
    fu, fv = u[faces], v[faces]
    area = (fu[1] - fu[0]) * (fv[2] - fv[0]) - (fv[1] - fv[0]) * (fu[2] - fu[0])
    x0 = np.clip(np.ceil(fu.min(0)), 0, width).astype(np.int64)
    y0 = np.clip(np.ceil(fv.min(0)), 0, height).astype(np.int64)
    nx = np.clip(np.floor(fu.max(0)), -1, width - 1).astype(np.int64) - x0 + 1
    ny = np.clip(np.floor(fv.max(0)), -1, height - 1).astype(np.int64) - y0 + 1
    alive = np.flatnonzero((nx > 0) & (ny > 0) & (area != 0))
    if len(alive) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    # bucket by bounding box sides, each rounded up to a power of two 2^ex × 2^ey
    ex, ey = np.frexp(nx[alive] - 1)[1], np.frexp(ny[alive] - 1)[1]
    key = (ex * 32 + ey).astype(np.uint16)
    order = np.argsort(key, kind="stable")
    alive = alive[order]
    key = key[order]
    faces, x0, y0, nx, ny = faces.take(alive, axis=1), x0[alive], y0[alive], nx[alive], ny[alive]
    flip = area[alive] < 0  # make all faces counter-clockwise; both windings are drawn
    faces[1:] = np.where(flip, faces[::-1][:2], faces[1:])
    fu, fv, face_inv_z = u[faces], v[faces], inv_z[faces]
    (ax, ay, dx, dy), top_left = _edges(fu, fv)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [len(key)]])
    pix, inv, tri = [], [], []
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        lx, ly = int(key[b0] >> 5), int(key[b0] & 31)
        gx, gy = 1 << lx, 1 << ly
        size = max(1, _CHUNK // (gx * gy))
        for c0 in range(b0, b1, size):
            s = slice(c0, min(c0 + size, b1))
            n = s.stop - s.start
            # grids are (gy, gx, n): the long triangle axis innermost keeps numpy loops long
            px = (x0[s] + np.arange(gx)[:, None]).astype(np.float64)  # (gx, n)
            py = (y0[s] + np.arange(gy)[:, None]).astype(np.float64)  # (gy, n)
            rows, cols, inside = [], [], None
            for e in range(3):
                rows.append(dx[e, s] * (py - ay[e, s]))  # E = row − col
                cols.append(dy[e, s] * (px - ax[e, s]))
                ok = rows[e][:, None] >= cols[e][None]  # E ≥ 0 (exact: x − y = 0 iff x = y)
                inside = ok if inside is None else np.logical_and(inside, ok, out=inside)
            cell, f = np.nonzero(inside.reshape(gy * gx, n))
            iy, ix, t = cell >> lx, cell & (gx - 1), c0 + f
            at_row, at_col = iy * n + f, ix * n + f
            E = [rows[e].ravel().take(at_row) - cols[e].ravel().take(at_col) for e in range(3)]
            iz = [face_inv_z[e].take(t) for e in range(3)]
            inv.append((E[0] * iz[0] + E[1] * iz[1] + E[2] * iz[2]) / (E[0] + E[1] + E[2]))
            where = (y0[t] + iy) * width + x0[t] + ix
            # to the spare pixel: cells padded beyond a bounding box clipped by the image, and
            # centres on an edge (E = 0) that is not a top or left one (top-left rule)
            if (x0[s] + gx > width).any() or (y0[s] + gy > height).any():
                where[(ix >= nx[t]) | (iy >= ny[t])] = width * height
            on_edge = np.flatnonzero(np.minimum(np.minimum(E[0], E[1]), E[2]) == 0)  # all E ≥ 0
            for e in range(3):
                where[on_edge[(E[e][on_edge] == 0) & ~top_left[e, t[on_edge]]]] = width * height
            pix.append(where)
            tri.append(alive[t])
    return np.concatenate(pix), np.concatenate(inv), np.concatenate(tri)


def rasterize(meshes: Sequence[tuple[np.ndarray, np.ndarray]], K: np.ndarray, width: int,
              height: int, near: float = 0.05) -> Raster:
    """Draw meshes, pairs (vertices (V,3) camera frame, faces (F,3) int), seen through K into a
    height × width image. Faces with any vertex at z < near are dropped."""
    u, v, inv_z, faces, mesh_id, face_id = _gather(meshes, K, near)
    pix, inv, tri = _fragments(u, v, inv_z, faces, width, height)
    # nearest wins: max 1/z per pixel, then the lowest face (mesh, face) among exact ties
    best = np.full(width * height + 1, -np.inf)  # + the spare pixel of rejected cells
    np.maximum.at(best, pix, inv)
    win = inv == best[pix]
    first = np.full(width * height + 1, len(mesh_id), np.int64)
    np.minimum.at(first, pix[win], tri[win])
    best, first = best[:-1], first[:-1]
    hit = first < len(mesh_id)
    depth = np.full(width * height, np.inf, np.float32)
    mesh = np.full(width * height, -1, np.int16)
    face = np.full(width * height, -1, np.int32)
    depth[hit] = 1.0 / best[hit]
    mesh[hit] = mesh_id[first[hit]]
    face[hit] = face_id[first[hit]]
    shape = (height, width)
    return Raster(depth.reshape(shape), mesh.reshape(shape), face.reshape(shape))
