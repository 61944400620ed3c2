"""Pictures of hypotheses: the projected COCO joints of the mode and the random samples on the
crops, with the ground truth (tensorboard during training, reports in evaluation)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _crop_rgb(image: torch.Tensor) -> np.ndarray:
    rgb = image.detach().float().cpu().numpy().transpose(1, 2, 0) * STD + MEAN
    return np.clip(rgb, 0, 1)


def hypotheses_figure(batch: dict, out, count: int = 4) -> plt.Figure:
    """A row of crops: random hypotheses' COCO joints (small dots), the mode (ring), the
    ground truth (star)."""
    n = min(count, len(batch["image"]))
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    size = batch["image"].shape[-1]
    to_px = lambda p: (p.detach().float().cpu().numpy() + 1) * size / 2  # noqa: E731
    for i, ax in enumerate(axes[0]):
        ax.imshow(_crop_rgb(batch["image"][i]))
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
