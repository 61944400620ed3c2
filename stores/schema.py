"""Store schema v2: the contract between stage one and stage two (docs in stores/README.md).

One Zarr v3 group per dataset split; rows are person crops, chunked along rows so that one task
owns whole chunks. `labels/` holds the normalised label rows (written once, when the store is
created); `detector/`, `samples/` and `status/reason` are written chunk by chunk by the tasks;
`status/chunk_done` has one chunk per row chunk, written last, after the chunk's data is durable.
v2 (over v1): every chunk of every array ends in a crc32c checksum of its encoded bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from body.detector import NUM_JOINTS
from core.errors import UserError

SCHEMA_VERSION = 2

# status/reason codes: 0 keeps the row; 1–9 skip it (bad input); 10–19 filter it (docs/method.md §2)
KEPT = 0
SKIP_IMAGE_MISSING, SKIP_IMAGE_UNREADABLE, SKIP_MASK_MISSING, SKIP_MASK_UNREADABLE, \
    SKIP_LABEL_INVALID = 1, 2, 3, 4, 5
FILTER_FAR_FROM_GROUND_TRUTH, FILTER_FEW_CONFIDENT_JOINTS, FILTER_JOINT_OUTSIDE_IMAGE = 10, 11, 12
REASONS = {
    KEPT: "kept",
    SKIP_IMAGE_MISSING: "skipped: image missing",
    SKIP_IMAGE_UNREADABLE: "skipped: image unreadable",
    SKIP_MASK_MISSING: "skipped: mask missing",
    SKIP_MASK_UNREADABLE: "skipped: mask unreadable",
    SKIP_LABEL_INVALID: "skipped: impossible label values",
    FILTER_FAR_FROM_GROUND_TRUTH: "filtered: detector far from the ground truth (wrong person)",
    FILTER_FEW_CONFIDENT_JOINTS: "filtered: at most 8 joints with confidence > 0.5",
    FILTER_JOINT_OUTSIDE_IMAGE: "filtered: a detector joint > 100 px outside the image",
}


class StoreError(UserError, ValueError):
    """A store that cannot be used as it is (old schema, incomplete, corrupt, locked); the
    message is one line naming the store and what to do."""


def is_skip(code: int) -> bool:
    return 1 <= code < 10


@dataclass(frozen=True)
class ArraySpec:
    """A per-row array: row shape (after the row axis) and dtype."""

    name: str
    row_shape: tuple[int, ...]
    dtype: str
    fill: float | int | bool = 0
    codec: str = "default"  # a key of stores.store.CODECS (chosen by measured bytes per crop)


def result_specs(samples: int) -> tuple[ArraySpec, ...]:
    """The arrays a task writes for its rows."""
    per_sample = (NUM_JOINTS, samples)
    return (
        # the detector's highest-likelihood pose (DARK-UDP): image x, y and the heatmap maximum
        ArraySpec("detector/keypoints", (NUM_JOINTS, 3), "float32"),
        # heatmap samples: flat heatmap pixel index v·48 + u, sorted per joint (a multiset)
        ArraySpec("samples/index", per_sample, "uint16", codec="sorted_index"),
        # the raw heatmap value at each sample
        ArraySpec("samples/value", per_sample, "float16", codec="byte_shuffled"),
        # distance (image px) from the sample's image pixel to the union person mask; inf: no mask
        ArraySpec("samples/mask_distance", per_sample, "float16", fill=float("inf"),
                  codec="repeating"),
        ArraySpec("status/reason", (), "uint8"),
    )


def label_array_name(field: str) -> str:
    return f"labels/{field}"


def row_dtype(values: np.ndarray) -> str:
    """The stored dtype of a label field: strings become Zarr variable-length strings."""
    return "str" if values.dtype.kind in "US" else values.dtype.str
