"""Dataset readers: each turns a dataset's own files into normalised `LabelRows`.

`FORMATS` is the one registry of the dataset formats that `pipelines.yaml` may name
(`datasets.*.format`): per format its reader, its mask rule (`stores.masks.union_mask` keywords:
how the dataset's mask images mark people) and the glob patterns of its label files (hashed into
the store).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stores.labels import LabelRows

from . import agora, bedlam, emdb, threedpw
from .agora import read_agora
from .bedlam import read_bedlam
from .emdb import read_emdb
from .threedpw import read_3dpw


@dataclass(frozen=True)
class DatasetFormat:
    """What stage one knows about one dataset format."""

    read: Callable[..., LabelRows]   # read(root, body_models, **entry keys) -> LabelRows
    mask_rule: dict                  # `union_mask` keywords for the format's mask images
    label_files: tuple[str, ...]     # glob patterns under the root of the label files


FORMATS: dict[str, DatasetFormat] = {
    "bedlam": DatasetFormat(read_bedlam, bedlam.MASK_RULE, ("processed_labels/*.npz",)),
    "emdb": DatasetFormat(read_emdb, emdb.MASK_RULE, ("P*/*/P*_data.pkl",)),
    "agora": DatasetFormat(read_agora, agora.MASK_RULE, ("processed_labels/*.npz",)),
    "3dpw": DatasetFormat(read_3dpw, threedpw.MASK_RULE, ("sequenceFiles/*/*.pkl",)),
}

__all__ = ["FORMATS", "DatasetFormat", "read_3dpw", "read_agora", "read_bedlam", "read_emdb"]
