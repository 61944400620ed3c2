"""Pictures of hypotheses: the projected COCO joints of the mode and the random samples on the
crops, with the ground truth (tensorboard during training, reports in evaluation)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .data import denormalize_image  # noqa: E402


def crop_rgb(image: torch.Tensor) -> np.ndarray:
    """(S, S, 3) RGB in [0, 1] of a normalised model crop (3, S, S), for matplotlib."""
    return np.clip(denormalize_image(image.float()) / 255, 0, 1)


def hypotheses_figure(batch: dict, out, count: int = 4) -> plt.Figure:
    """A row of crops: random hypotheses' COCO joints (small dots), the mode (ring), the
    ground truth (star)."""
    n = min(count, len(batch["image"]))
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    size = batch["image"].shape[-1]
    to_px = lambda p: (p.detach().float().cpu().numpy() + 1) * size / 2  # noqa: E731
    for i, ax in enumerate(axes[0]):
        ax.imshow(crop_rgb(batch["image"][i]))
        samples = to_px(out.coco2d[i, 1:]).reshape(-1, 2)
        mode, gt = to_px(out.coco2d[i, 0]), to_px(batch["gt_coco"][i])
        ax.scatter(samples[:, 0], samples[:, 1], s=1, c="cyan", alpha=0.4)
        ax.scatter(mode[:, 0], mode[:, 1], s=12, facecolors="none", edgecolors="yellow")
        ax.scatter(gt[:, 0], gt[:, 1], s=25, marker="*", c="red")
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.axis("off")
    fig.tight_layout()
    return fig
