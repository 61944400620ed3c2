"""The learning-rate and loss-weight schedules (docs/method.md §5): pure functions of the step, so
a resumed run sets exactly the rate and weights an uninterrupted one would (no scheduler state in
the checkpoint).

`constant` is the paper's (AdamW at `train.lr` throughout); `cosine` warms up linearly over
`train.warmup_steps` and then follows half a cosine from `train.lr` down to 0 at
`train.iterations` — the synthetic profile's short budget (docs/diagnosis.md §5).

`train.keypoints_2d_warmup` > 0 raises the mode's 2D weight linearly from 0 over that many steps,
so the NLL sets the global orientation before the reprojection loss refines it (0: the paper's
constant weights; docs/diagnosis.md §6).
"""
from __future__ import annotations

import math

from omegaconf import DictConfig

SCHEDULES = ("constant", "cosine")
WARMED_UP_TERM = "keypoints_2d"  # the mode's reprojection loss (docs/method.md §4 "2D")


def learning_rate(step: int, t: DictConfig) -> float:
    """The rate of the optimizer step that follows `step` completed steps (0-based)."""
    if t.lr_schedule == "constant":
        return float(t.lr)
    warmup = int(t.warmup_steps)
    if step < warmup:
        return float(t.lr) * (step + 1) / warmup
    span = max(1, int(t.iterations) - warmup)
    progress = min(1.0, (step - warmup) / span)
    return float(t.lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def loss_weights(step: int, cfg: DictConfig) -> dict[str, float]:
    """`loss_weights` for the optimizer step that follows `step` completed steps: the mode's 2D
    weight scaled by step / `train.keypoints_2d_warmup` while below it."""
    weights = {name: float(w) for name, w in cfg.loss_weights.items()}
    warmup = int(cfg.train.keypoints_2d_warmup)
    if step < warmup:
        weights[WARMED_UP_TERM] *= step / warmup
    return weights
