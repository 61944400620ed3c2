"""The mesh figure of an evaluation report (the paper's Fig. 5): for a few test crops, the mode
mesh over the crop, 4 sampled meshes, a side view of those hypotheses (the depth ambiguity is
visible only there) and the 2D cloud of every hypothesis of the most ambiguous joint.

The meshes are the SMPL meshes `evaluate` already computed for the metrics (`Collected.examples`
keeps the first 5 hypotheses of a few crops); they are drawn with the project's rasterizer
(`body.render`) through the model's CLIFF camera, mapped into the crop's pixels."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from body.cameras import crop_matrix, intrinsics  # noqa: E402
from body.render import blend_meshes, render_side  # noqa: E402
from train.inputs import crop_rgb  # noqa: E402

MODE_COLOR = (0.55, 0.75, 1.0)
SAMPLE_COLORS = ((1.0, 0.7, 0.4), (0.6, 0.9, 0.5), (0.95, 0.55, 0.75), (0.85, 0.85, 0.45))
FIGURE_CROPS = 4  # crops (rows) of the mesh figure
SAMPLED_MESHES = 4  # sampled meshes per crop beside the mode


def ambiguous_joint(points: np.ndarray) -> int:
    """The joint whose hypotheses (H, J, 2) spread most in 2D (largest sum of the x, y std)."""
    return int(np.argmax(points.std(0).sum(-1)))


def draw_cloud(ax, ex: dict, points: np.ndarray) -> None:
    """Every hypothesis (H, 17, 2 crop px) of the crop's most ambiguous joint (cyan) and its
    ground truth (red star), titled with the row, joint and detector confidence."""
    joint = ambiguous_joint(points)
    gt = (ex["gt_coco"].numpy()[joint] + 1) * ex["image"].shape[-1] / 2
    ax.scatter(points[:, joint, 0], points[:, joint, 1], s=3, c="cyan", alpha=0.6)
    ax.scatter([gt[0]], [gt[1]], s=80, marker="*", c="red")
    ax.set_title(f"row {ex['row']}, joint {joint} (conf {float(ex['conf'][joint]):.2f})",
                 fontsize=6)


def crop_camera(ex: dict) -> np.ndarray:
    """K (3, 3) of an example's full-image camera in the pixels of its model crop."""
    size = ex["image"].shape[-1]
    w, h = (float(v) for v in ex["img_size"])
    k = intrinsics(float(ex["focal"]), w, h)
    to_crop = crop_matrix(ex["center"].double().numpy(), ex["scale"].double().numpy(), size)
    return np.vstack([to_crop, [0.0, 0.0, 1.0]]) @ k


def plot_meshes(path: Path, examples: list[dict], faces: np.ndarray) -> bool:
    """Write the mesh figure of up to `FIGURE_CROPS` examples (spread over those given); returns
    whether there was anything to draw."""
    shown = [ex for ex in examples if "meshes" in ex]
    if not shown:
        return False
    shown = [shown[i] for i in np.unique(np.linspace(0, len(shown) - 1, FIGURE_CROPS).round()
                                         .astype(int))]
    cols = 3 + SAMPLED_MESHES
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.9 * cols, 2.0 * len(shown)),
                             squeeze=False)
    for row, ex in zip(axes, shown):
        size = ex["image"].shape[-1]
        crop, k = crop_rgb(ex["image"]), crop_camera(ex)
        meshes = [(v.double().numpy() + ex["transl"].double().numpy(), faces)
                  for v in ex["meshes"]]
        colors = (MODE_COLOR,) + SAMPLE_COLORS
        titles = ["mode"] + [f"sample {i}" for i in range(1, len(meshes))]
        for ax, mesh, color, title in zip(row, meshes, colors, titles):
            ax.imshow(blend_meshes(crop, [mesh], k, [color]))
            ax.set_title(title, fontsize=6)
        side = render_side(meshes, ex["pelvis"].double().numpy(), size, size,
                           colors[:len(meshes)], alpha=0.85)
        row[cols - 2].imshow(side)
        row[cols - 2].set_title("side view (90°)", fontsize=6)
        row[cols - 1].imshow(crop)
        draw_cloud(row[cols - 1], ex, (ex["coco2d"].numpy() + 1) * size / 2)
        row[cols - 1].set_xlim(0, size)
        row[cols - 1].set_ylim(size, 0)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
