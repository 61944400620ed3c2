"""The demo's pictures: `overlay.png` (the image with every person's mode mesh and the 2D clouds
of the hypotheses of the uncertain joints) and `side_view.png` (per person, hypotheses turned
90° about the vertical axis through the mode's pelvis, where a depth ambiguity shows)."""
from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from body.cameras import intrinsics  # noqa: E402
from body.joints import COCO17_NAMES  # noqa: E402
from body.render import blend_meshes, render_side  # noqa: E402

MAX_SIDE = 1024  # overlays of larger images are drawn at this resolution
SIDE_MESHES = 10  # hypotheses in a side view: evenly spread over the likelihood ranking
SIDE_PX = 384
MODE_COLOR = (0.55, 0.75, 1.0)
PELVIS = 0  # SMPL-X joint 0


def _shrink(rgb: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The image at most MAX_SIDE px on its longer side, K mapped to its pixels (pixel centres at
    integers: u' = r·(u + ½) − ½), and the factor r."""
    h, w = rgb.shape[:2]
    r = min(1.0, MAX_SIDE / max(h, w))
    if r == 1.0:
        return rgb, K, r
    small = cv2.resize(rgb, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA)
    to_small = np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5], [0, 0, 1.0]])
    return small, to_small @ K, r


def side_indices(n: int) -> np.ndarray:
    """Ranks shown in a side view: SIDE_MESHES spread evenly from the most to the least likely."""
    return np.unique(np.linspace(0, n - 1, min(n, SIDE_MESHES)).round().astype(int))


def write_figures(folder: Path, rgb: np.ndarray, result: dict, visible_conf: float) -> None:
    """overlay.png and side_view.png of one image's results (infer.run's npz fields)."""
    w, h = (int(v) for v in result["image_size"])
    K = intrinsics(float(result["focal"]), float(w), float(h))
    people = range(len(result["betas"]))
    mode = result["mode_rank"]
    faces = result["faces"]
    small, K_small, r = _shrink(rgb, K)
    meshes = [(result["vertices"][p, mode[p]], faces) for p in people]
    shaded = blend_meshes(small, meshes, K_small, [MODE_COLOR] * len(meshes), alpha=0.7)
    fig, ax = plt.subplots(figsize=(8, 8 * small.shape[0] / small.shape[1]))
    ax.imshow(shaded)
    cmap = plt.get_cmap("tab20")
    for p in people:
        det = result["detector_keypoints"][p]
        pts = (result["coco2d"][p] + 0.5) * r - 0.5  # (N, 17, 2) in the drawn image's px
        for j in np.flatnonzero(det[:, 2] < visible_conf):
            ax.scatter(pts[:, j, 0], pts[:, j, 1], s=2, color=cmap(j % 20), alpha=0.5,
                       label=COCO17_NAMES[j] if p == 0 else None)
        seen = (det[:, :2] + 0.5) * r - 0.5
        ax.scatter(seen[:, 0], seen[:, 1], s=8, marker="x", c="yellow", linewidths=0.8)
    ax.set_xlim(-0.5, small.shape[1] - 0.5)
    ax.set_ylim(small.shape[0] - 0.5, -0.5)
    ax.axis("off")
    ax.set_title(f"mode mesh; hypotheses of the joints with confidence < {visible_conf} "
                 "(dots); detector (x)", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, markerscale=4, loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "overlay.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(people), figsize=(4 * len(people), 4), squeeze=False)
    for p, ax in zip(people, axes[0]):
        ranks = side_indices(len(result["log_likelihood"][p]))
        pelvis = result["joints"][p, mode[p], PELVIS]
        colors = [MODE_COLOR if k == mode[p] else plt.get_cmap("autumn")(i / len(ranks))[:3]
                  for i, k in enumerate(ranks)]
        picture = render_side([(result["vertices"][p, k], faces) for k in ranks], pelvis,
                              SIDE_PX, SIDE_PX, colors, alpha=0.75)
        ax.imshow(picture)
        ax.axis("off")
        ax.set_title(f"person {p}: {len(ranks)} hypotheses, side view (camera on the left)",
                     fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "side_view.png", dpi=120)
    plt.close(fig)
