"""The union person mask of a dataset, decoded from its mask image by the dataset's rule.

Part of the store contract: stage one records the rule in the store's attributes
(`mask_rule`), so later stages decode masks exactly as stage one did.
"""
from __future__ import annotations

import numpy as np


def union_mask(gray: np.ndarray, person_below: float | None = None,
               background_value: int | None = None) -> np.ndarray:
    """(H, W) bool person mask of a decoded grey mask image: people are pixels darker than
    `person_below` (BEDLAM `_env.png`: 127.5), or pixels other than `background_value` (AGORA:
    76), or else non-zero pixels (EMDB-style masks)."""
    if person_below is not None:
        return gray < person_below
    if background_value is not None:
        return gray != background_value
    return gray > 0
