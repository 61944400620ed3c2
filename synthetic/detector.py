"""The `synthetic` detector backend: a simulated, uncertain ViTPose for the synthetic world.

It ignores the pixels and reads what the detector "perceives" of the scene from the side-car
`<image stem>.synthetic_scene.npz` next to the image (docs/synthetic_world.md): every person's
projected COCO-17 joints, their visibility states and the map of which person is seen where.
The heatmaps follow a real ViTPose's conventions (17 × 64 × 48 on the UDP grid of
`body.cameras.DetectorCrop`) and take their uncertainty from the scene:

- Person choice. A top-down detector reports the most prominent person in its box: among the
  people with visible pixels in the field of view, the one maximising (visible pixels in the
  field of view) × exp(−d² / 2(`centrality`·b)²), d the distance of those pixels' centroid from
  the box centre, b the box side. A person mostly hidden behind another loses its box to the
  other one: the wrong-person filter of docs/method.md §2 gets real work. Nobody visible: low, broad
  heatmaps (max < 0.2).
- Visible joints in the field of view: one sharp Gaussian (σ = `visible_sigma`, ViTPose's training
  targets) at the true position + jitter (σ = `jitter` heatmap px, clipped at ±0.4), peak
  0.80–0.97, lower near the crop border and for small people; sometimes a faint (≤ 0.15) mode at
  the mirrored joint or at another person's same joint.
- Occluded (states 1–3) or truncated joints (state 4, or outside the field of view): a broad,
  multi-modal distribution with peak 0.15–0.48 (by state, `OCCLUDED_PEAK`): a weak broad mode near
  the true position (σ 3–6 px); for elbows, wrists, knees and ankles 1–3 modes on the circle of
  the bone's projected length around the parent joint; left/right confusion (a mode at the
  mirrored joint when that one is visible); for object occlusion, often a mode where symmetry
  about the torso axis expects the joint; a mode where another person's same joint is visible
  nearby; for joints outside the field of view, a mode at the nearest border of the heatmap.
- A smooth background floor, as in real heatmaps: `noise`·(4u³ − 0.5) for u uniform on a 16×12
  grid, bilinearly upsampled: values in [−`noise`/2, 3.5·`noise`] (real heatmaps go slightly
  negative), mostly near 0.

Deterministic: a request's heatmaps depend only on (seed, the last `path_parts` components of
the image path, centre, scale), through a numpy Generator seeded by SHA-256 of those, so they do
not depend on the batch, its order, or where the data root lies; and their bits do not depend on
the CPU: no matrix products, exp and cos/sin from `core.fixed_math`, mixtures summed mode by
mode in a fixed order.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from body.cameras import DetectorCrop
from body.detector import NUM_JOINTS, CropRequest
from body.joints import COCO17_FLIP_INDEX, COCO17_HIGHLY_ARTICULATED
from core import fixed_math
from core.seeding import rng_for_text

from .sidecar import (
    OBJECT_OCCLUDED, OUTSIDE_IMAGE, PERSON_OCCLUDED, SELF_OCCLUDED, VISIBLE, Scene, sidecar_path,
)

# Peak (heatmap max before the noise floor) of a joint that is not seen, by state; joints of any
# state outside the field of view count as truncated (state 4).
OCCLUDED_PEAK = {
    SELF_OCCLUDED: (0.25, 0.48),
    PERSON_OCCLUDED: (0.15, 0.45),
    OBJECT_OCCLUDED: (0.15, 0.40),
    OUTSIDE_IMAGE: (0.15, 0.35),
}
_OCCLUDED_LOW = np.array([np.nan] + [OCCLUDED_PEAK[k][0] for k in range(1, 5)])
_OCCLUDED_HIGH = np.array([np.nan] + [OCCLUDED_PEAK[k][1] for k in range(1, 5)])
VISIBLE_PEAK = (0.88, 0.97)   # before the border and small-person penalties (each ≤ 0.04)
NOBODY_PEAK = (0.05, 0.18)

# COCO-17 left/right mirror (the nose is its own mirror) and the parent of each limb joint.
_MIRROR = np.array(COCO17_FLIP_INDEX)  # an array: fancy indexing, not a tuple index
_LIMB_PARENT = {7: 5, 8: 6, 9: 7, 10: 8, 13: 11, 14: 12, 15: 13, 16: 14}
COCO17_LIMB_PARENT = np.array([_LIMB_PARENT.get(k, k) for k in range(NUM_JOINTS)])
_ARTICULATED = np.isin(np.arange(NUM_JOINTS), COCO17_HIGHLY_ARTICULATED)
_SHOULDERS, _HIPS = [5, 6], [11, 12]

_MAX_LIMB_MODES = 3
_DISTRACTOR_PX = 12.0        # heatmap px: how far another person's joint still confuses
_MIN_SECONDARY_PX = 6.0      # heatmap px: faint modes of visible joints stay this far away
_HEATMAP_SHAPE = DetectorCrop.HEATMAP_SHAPE
_U = np.arange(_HEATMAP_SHAPE[1], dtype=np.float64)
_V = np.arange(_HEATMAP_SHAPE[0], dtype=np.float64)
_FLOOR_HW = (_HEATMAP_SHAPE[0] // 4, _HEATMAP_SHAPE[1] // 4)


def _linear_upsampling(values: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """values linearly interpolated to n_out samples along `axis`, end points aligned: each
    output is w₀·left + w₁·right of its two neighbours, written out (no matrix product)."""
    n_in = values.shape[axis]
    x = np.linspace(0, n_in - 1, n_out)
    left = np.minimum(np.floor(x).astype(np.intp), n_in - 2)
    w1 = x - left
    shape = [1] * values.ndim
    shape[axis] = n_out
    w0, w1 = (1 - w1).reshape(shape), w1.reshape(shape)
    return w0 * np.take(values, left, axis) + w1 * np.take(values, left + 1, axis)


_GRID_MAX = np.array([_HEATMAP_SHAPE[1] - 1, _HEATMAP_SHAPE[0] - 1], dtype=np.float64)


def render_gaussians(mu: np.ndarray, sigma: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Σ_m weight·exp(−‖p − mu‖²/2σ²) on the heatmap grid: (J, M, 2), (J, M), (J, M) → (J, 64, 48)
    float32.

    Isotropic Gaussians are separable: each mode is an outer product of a row and a column
    profile; the modes are added one by one in float64 (modes of weight 0 everywhere add exact
    zeros and are skipped), never through a BLAS product whose order depends on the CPU.
    """
    mu, weight = np.asarray(mu, np.float64), np.asarray(weight, np.float64)
    inv = -0.5 / (np.asarray(sigma, np.float64)[..., None] ** 2)
    dx, dy = _U - mu[..., 0:1], _V - mu[..., 1:2]
    gx = fixed_math.exp(dx * dx * inv)                             # (J, M, 48)
    gy = fixed_math.exp(dy * dy * inv) * weight[..., None]         # (J, M, 64)
    hm = np.zeros((mu.shape[0],) + _HEATMAP_SHAPE)
    for m in np.flatnonzero((weight != 0).any(0)):
        hm = hm + gy[:, m, :, None] * gx[:, m, None, :]
    return hm.astype(np.float32)


def _norm(v: np.ndarray) -> np.ndarray:
    """Length along the last axis (of size 2 here: a sum of two terms, in any order the same)."""
    return np.sqrt((v * v).sum(-1))


def _uniform(u: np.ndarray, low: float, high: float) -> np.ndarray:
    return low + (high - low) * u


class _Modes:
    """Collects mixture components (J, m) family by family; unused ones carry weight 0."""

    def __init__(self):
        self.mu, self.sigma, self.weight = [], [], []

    def add(self, mu: np.ndarray, sigma, weight: np.ndarray):
        weight = np.asarray(weight, dtype=np.float64)
        sigma = np.asarray(sigma, dtype=np.float64)
        if weight.ndim == 1:  # one mode per joint
            mu, weight = mu[:, None], weight[:, None]
            sigma = sigma[..., None] if sigma.ndim else sigma
        active = weight > 0
        self.mu.append(np.where(active[..., None], mu, 0.0))
        self.sigma.append(np.zeros_like(weight) + sigma)
        self.weight.append(np.where(active, weight, 0.0))

    def render(self) -> np.ndarray:
        return render_gaussians(np.concatenate(self.mu, 1), np.concatenate(self.sigma, 1),
                                np.concatenate(self.weight, 1))


class SyntheticDetector:
    """Simulated ViTPose heatmaps from the synthetic world's scene side-cars (module docstring).

    Options: `seed`; `cache_size` side-cars kept in memory (an image has several crops);
    `visible_sigma` and `jitter` (heatmap px) of visible joints; `centrality` (× box side), the σ
    of the person-choice centrality weight; `min_person_pixels` a person needs in the field of
    view to be detected; `noise`, the scale of the background floor; `path_parts`, how many
    trailing components of the image path key the randomness; `max_fov_samples`, the pixels of
    the field of view (subsampled on a grid) that person choice counts.
    """

    name = "synthetic"

    def __init__(self, seed: int = 0, cache_size: int = 8, visible_sigma: float = 2.0,
                 jitter: float = 0.3, centrality: float = 0.25, min_person_pixels: int = 16,
                 noise: float = 0.005, path_parts: int = 4, max_fov_samples: int = 4096):
        self.seed = int(seed)
        self.cache_size = max(1, int(cache_size))
        self.visible_sigma = float(visible_sigma)
        self.jitter = float(jitter)
        self.centrality = float(centrality)
        self.min_person_pixels = int(min_person_pixels)
        self.noise = float(noise)
        self.path_parts = int(path_parts)
        self.max_fov_samples = int(max_fov_samples)
        self._scenes: OrderedDict[Path, Scene] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyntheticDetector(seed={self.seed})"

    # -- public -------------------------------------------------------------------------------

    def __call__(self, crops: np.ndarray | None, requests: Sequence[CropRequest]) -> np.ndarray:
        """crops (B, 256, 192, 3) (ignored, may be None) and their requests → (B, 17, 64, 48)."""
        if crops is not None and len(crops) != len(requests):
            raise ValueError(f"{len(crops)} crops for {len(requests)} requests")
        out = np.empty((len(requests), NUM_JOINTS) + _HEATMAP_SHAPE, dtype=np.float32)
        for i, request in enumerate(requests):
            out[i] = self.heatmaps(request)
        return out

    def heatmaps(self, request: CropRequest) -> np.ndarray:
        """The (17, 64, 48) float32 heatmaps of one request."""
        scene = self.scene(request.image_path)
        rng = self.generator(request)
        draws = _draw(rng, scene.num_people)
        center = np.asarray(request.center, dtype=np.float64)
        scale = np.asarray(request.scale, dtype=np.float64)
        crop = DetectorCrop(center, scale)
        person = self.choose_person(scene, crop, center, 200.0 * float(scale))
        if person < 0:
            hm = _nobody(draws)
        else:
            hm = self._person_heatmaps(scene, crop, person, draws)
        return hm.astype(np.float32, copy=False) + self.floor(draws["noise"])

    def floor(self, u: np.ndarray) -> np.ndarray:
        """Smooth background (17, 64, 48) from uniforms (17, 16, 12): `noise`·(4u³ − 0.5),
        bilinearly upsampled (the deconvolution head's backgrounds are smooth); float32."""
        u = np.asarray(u, np.float64)
        coarse = u * u * (u * (4 * self.noise)) - self.noise / 2
        rows = _linear_upsampling(coarse, _HEATMAP_SHAPE[0], -2)
        return _linear_upsampling(rows, _HEATMAP_SHAPE[1], -1).astype(np.float32)

    def scene(self, image_path: Path) -> Scene:
        """The side-car of an image, from a small LRU cache."""
        path = sidecar_path(image_path)
        with self._lock:
            scene = self._scenes.get(path)
            if scene is not None:
                self._scenes.move_to_end(path)
                return scene
        scene = Scene.load(path)
        with self._lock:
            self._scenes[path] = scene
            while len(self._scenes) > self.cache_size:
                self._scenes.popitem(last=False)
        return scene

    def generator(self, request: CropRequest) -> np.random.Generator:
        """The request's own Generator: SHA-256 of (seed, path tail, centre, scale)."""
        key = "/".join(Path(request.image_path).parts[-self.path_parts:])
        cx, cy = (float(np.round(v, 3)) + 0.0 for v in request.center)
        s = float(np.round(request.scale, 6)) + 0.0
        text = f"{self.seed}|{key}|{cx:.3f}|{cy:.3f}|{s:.6f}"
        return rng_for_text(text)

    def choose_person(self, scene: Scene, crop: DetectorCrop, center: np.ndarray,
                      side: float) -> int:
        """Index of the most prominent person in the field of view, −1 when nobody is seen."""
        height, width = scene.person_map.shape
        cols = np.arange(width, dtype=np.float64)
        rows = np.arange(height, dtype=np.float64)
        # the field of view is an axis-aligned box around the centre: test its row and column
        cols_in = crop.contains(np.stack([cols, np.full_like(cols, center[1])], -1))
        rows_in = crop.contains(np.stack([np.full_like(rows, center[0]), rows], -1))
        if not cols_in.any() or not rows_in.any() or scene.num_people == 0:
            return -1
        x0, x1 = np.flatnonzero(cols_in)[[0, -1]]
        y0, y1 = np.flatnonzero(rows_in)[[0, -1]]
        n_fov = (x1 - x0 + 1) * (y1 - y0 + 1)
        step = max(1, int(np.ceil(np.sqrt(n_fov / self.max_fov_samples))))
        xs, ys = np.arange(x0, x1 + 1, step), np.arange(y0, y1 + 1, step)
        sub = scene.person_map[y0:y1 + 1:step, x0:x1 + 1:step]
        idx = sub.ravel().astype(np.intp) + 1          # 0 = background
        n = scene.num_people + 1
        counts = np.bincount(idx, minlength=n)[1:n].astype(np.float64)
        sum_x = np.bincount(idx, weights=np.broadcast_to(xs, sub.shape).ravel(), minlength=n)
        sum_y = np.bincount(idx, weights=np.broadcast_to(ys[:, None], sub.shape).ravel(),
                            minlength=n)
        seen = counts * step * step >= self.min_person_pixels
        if not seen.any():
            return -1
        safe = np.maximum(counts, 1.0)
        centroid = np.stack([sum_x[1:n] / safe, sum_y[1:n] / safe], -1)
        d2 = ((centroid - center) ** 2).sum(-1)
        score = counts * fixed_math.exp(-d2 / (2.0 * (self.centrality * side) ** 2))
        return int(np.argmax(np.where(seen, score, -1.0)))

    # -- heatmaps of a detected person --------------------------------------------------------

    def _person_heatmaps(self, scene: Scene, crop: DetectorCrop, person: int,
                         draws: dict) -> np.ndarray:
        uv_all = crop.image_to_heatmap(scene.coco_xy)             # (P, 17, 2)
        in_fov_all = crop.contains(scene.coco_xy)                 # (P, 17)
        uv, state, in_fov = uv_all[person], scene.coco_state[person], in_fov_all[person]
        seen = (state == VISIBLE) & in_fov
        truncated = ~in_fov | (state == OUTSIDE_IMAGE)
        hidden = ~seen
        modes = _Modes()

        # the joint itself: sharp when seen, broad and weak when not
        jitter = np.where(seen[:, None], np.clip(self.jitter * draws["jitter"], -0.4, 0.4),
                          np.clip(draws["jitter"], -2.0, 2.0))
        modes.add(uv + jitter, np.where(seen, self.visible_sigma,
                                        _uniform(draws["main"][:, 0], 3.0, 6.0)),
                  np.where(seen, 1.0, _uniform(draws["main"][:, 1], 0.5, 0.9)))

        # limbs: points on the circle of the bone's projected length around the parent joint
        parent_uv = uv[COCO17_LIMB_PARENT]
        bone = _norm(uv - parent_uv)
        n_limb = 1 + np.floor(draws["limb_count"] * _MAX_LIMB_MODES)
        direction = np.stack(fixed_math.cos_sin_turns(draws["limb"][..., 0]), -1)
        limb_mu = parent_uv[:, None] + bone[:, None, None] * direction
        use = (hidden & _ARTICULATED & (bone > 1.0))[:, None] \
            & (np.arange(_MAX_LIMB_MODES) < n_limb[:, None])
        modes.add(limb_mu, _uniform(draws["limb"][..., 1], 2.5, 4.0),
                  use * _uniform(draws["limb"][..., 2], 0.3, 0.8))

        # left/right confusion: a mode at the mirrored joint when that one is seen
        mirror = _MIRROR
        mirror_uv = uv[mirror]
        mirror_far = _norm(mirror_uv - uv) >= _MIN_SECONDARY_PX
        has_mirror = (mirror != np.arange(NUM_JOINTS)) & seen[mirror]
        u = draws["mirror"]
        weight = np.where(hidden, _uniform(u[:, 1], 0.6, 1.1),
                          (u[:, 0] < 0.2) * mirror_far * _uniform(u[:, 1], 0.05, 0.15))
        modes.add(mirror_uv, _uniform(u[:, 2], 2.5, 3.5), has_mirror * weight)

        # object occlusion: where symmetry about the torso axis expects the joint
        modes.add(*_symmetry_modes(uv, state, draws["symmetry"]))

        # truncation: weak activation at the nearest border of the heatmap
        u = draws["border"]
        modes.add(np.clip(uv, 0.0, _GRID_MAX), _uniform(u[:, 0], 3.0, 6.0),
                  ~in_fov * _uniform(u[:, 1], 0.4, 0.9))

        # crowds: another person's same joint, seen nearby
        other_seen = (scene.coco_state == VISIBLE) & in_fov_all
        other_seen[person] = False
        dist = _norm(uv_all - uv)                                  # (P, 17)
        near = fixed_math.exp(-(dist * dist) / (2 * _DISTRACTOR_PX ** 2))
        u = draws["others"]
        weight = np.where(hidden, _uniform(u[..., 0], 0.3, 0.8),
                          (dist >= _MIN_SECONDARY_PX) * _uniform(u[..., 0], 0.0, 0.15))
        modes.add(uv_all.transpose(1, 0, 2), _uniform(u[..., 1], 2.5, 3.5).T,
                  (other_seen * near * weight).T)

        hm = modes.render()
        peak = _peaks(uv, state, seen, truncated, draws["peak"])
        top = hm.reshape(NUM_JOINTS, -1).max(1)
        return hm * (peak / np.maximum(top, 1e-12)).astype(np.float32)[:, None, None]


def _peaks(uv, state, seen, truncated, u) -> np.ndarray:
    """Heatmap maximum per joint: state-dependent ranges, lower near the border / when small."""
    edge = np.minimum(uv, _GRID_MAX - uv).min(-1)
    border = 0.04 * np.clip((4.0 - edge) / 4.0, 0.0, 1.0)
    span = np.ptp(uv[:, 1])
    small = 0.04 * np.clip((24.0 - span) / 16.0, 0.0, 1.0)
    visible = _uniform(u, *VISIBLE_PEAK) - border - small
    key = np.where(truncated, OUTSIDE_IMAGE, np.clip(state, SELF_OCCLUDED, OUTSIDE_IMAGE))
    low, high = _OCCLUDED_LOW[key], _OCCLUDED_HIGH[key]
    return np.where(seen, visible, low + (high - low) * u)


def _symmetry_modes(uv: np.ndarray, state: np.ndarray, u: np.ndarray):
    """For object-occluded joints (60 %): the mirrored joint reflected about the torso axis."""
    hip, shoulder = uv[_HIPS].mean(0), uv[_SHOULDERS].mean(0)
    axis = shoulder - hip
    length = float(_norm(axis))
    q = uv[_MIRROR] - hip
    if length > 1.0:
        d = axis / length
        mu = hip + 2 * (q[:, 0] * d[0] + q[:, 1] * d[1])[:, None] * d - q
    else:
        mu = uv
    use = (state == OBJECT_OCCLUDED) & (_MIRROR != np.arange(NUM_JOINTS)) \
        & (u[:, 0] < 0.6) & (length > 1.0)
    return mu, _uniform(u[:, 1], 3.0, 5.0), use * _uniform(u[:, 2], 0.3, 0.7)


def _nobody(draws: dict) -> np.ndarray:
    """Nobody in the box: two broad, faint modes per joint at random places."""
    u = draws["nobody"]                                            # (17, 2, 4)
    mu = u[..., :2] * _GRID_MAX
    hm = render_gaussians(mu, _uniform(u[..., 2], 6.0, 10.0), _uniform(u[..., 3], 0.5, 1.0))
    peak = _uniform(draws["peak"], *NOBODY_PEAK)
    return hm * (peak / hm.reshape(NUM_JOINTS, -1).max(1)).astype(np.float32)[:, None, None]


def _draw(rng: np.random.Generator, num_people: int) -> dict:
    """All random numbers of one request, in a fixed order (the people-dependent ones last)."""
    j = NUM_JOINTS
    return {
        "peak": rng.random(j),
        "jitter": rng.standard_normal((j, 2)),
        "main": rng.random((j, 2)),
        "limb_count": rng.random(j),
        "limb": rng.random((j, _MAX_LIMB_MODES, 3)),
        "mirror": rng.random((j, 3)),
        "symmetry": rng.random((j, 3)),
        "border": rng.random((j, 2)),
        "nobody": rng.random((j, 2, 4)),
        "noise": rng.random((j,) + _FLOOR_HW, dtype=np.float32),
        "others": rng.random((num_people, j, 2)),
    }
