"""The learning-rate schedule (docs/method.md §5): a pure function of the step, so a resumed run
sets exactly the rate an uninterrupted one would (no scheduler state in the checkpoint).

`constant` is the paper's (AdamW at `train.lr` throughout); `cosine` warms up linearly over
`train.warmup_steps` and then follows half a cosine from `train.lr` down to 0 at
`train.iterations` — the synthetic profile's short budget (docs/diagnosis.md §5).
"""
from __future__ import annotations

import math

from omegaconf import DictConfig

SCHEDULES = ("constant", "cosine")


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
