"""Peak memory of the mask loss at batch 64 × 25 samples against the reference release's
(batch × points × mask pixels) distance matrix, 5.7 GB per step (docs/method.md §4). Goal ≤ 1 %."""
from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from train.losses import mask_loss

REFERENCE_BYTES = 5.7e9


def bench_mask_loss_memory(batch: int = 64, samples: int = 25, crop: int = 224) -> dict:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    pred = (r(batch, 17, samples, 2) * 2 - 1).requires_grad_()
    args = (r(batch, 17) * 0.6, r(batch, 17, samples, 2) * 2 - 1, r(batch, 17, samples) > 0.3,
            r(batch, 17, 2) * 2 - 1, torch.ones(batch, 17, dtype=torch.bool),
            r(batch, crop, crop) > 0.5,
            torch.ones(batch, dtype=torch.bool))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        mask_loss(pred, *args).backward()
    peak = max(e.cpu_memory_usage for e in prof.key_averages())
    ratio = peak / REFERENCE_BYTES
    return {"value": round(peak / 1e6, 1), "unit": "MB (largest allocation, forward+backward)",
            "goal": "<= 1 % of 5.7 GB", "met": bool(ratio <= 0.01),
            "percent_of_reference": round(100 * ratio, 2), "batch": f"{batch} x {samples}",
            "mask_pixels": crop * crop}
