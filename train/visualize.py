"""Pictures of hypotheses: the projected COCO joints of the mode and the random samples on the
crops, with the ground truth (tensorboard during training, reports in evaluation)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .inputs import crop_rgb  # noqa: E402


def hypotheses_figure(batch, out, count: int = 4) -> plt.Figure:
    """A row of crops: random hypotheses' COCO joints (small dots), the mode (ring), the
    ground truth (star). batch: a `train.data.TrainingExample` batch; out: its `Hypotheses`."""
    images, gt_coco = batch.inputs.image, batch.targets.gt_coco
    n = min(count, len(images))
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    size = images.shape[-1]
    to_px = lambda p: (p.detach().float().cpu().numpy() + 1) * size / 2  # noqa: E731
    for i, ax in enumerate(axes[0]):
        ax.imshow(crop_rgb(images[i]))
        samples = to_px(out.samples.coco2d[i]).reshape(-1, 2)
        mode, gt = to_px(out.mode.coco2d[i]), to_px(gt_coco[i])
        ax.scatter(samples[:, 0], samples[:, 1], s=1, c="cyan", alpha=0.4)
        ax.scatter(mode[:, 0], mode[:, 1], s=12, facecolors="none", edgecolors="yellow")
        ax.scatter(gt[:, 0], gt[:, 1], s=25, marker="*", c="red")
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.axis("off")
    fig.tight_layout()
    return fig
