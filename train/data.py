"""Training examples (docs/method.md §3–§5): stores + context caches -> `TrainingExample`s.

Addressing. An example is named by a GLOBAL COUNTER k = 0, 1, 2, … . Epoch e = k // E (E = number
of kept rows over all stores) serves the rows of a permutation seeded by (seed, "epoch", e); all
randomness of example k (box augmentation, the 25 of the 150 heatmap samples, photometric
augmentation) comes from `core.seeding.rng_for(seed, "example", k)`. So an example depends only on
k: the data is the same for any number of DataLoader workers, and an exact resume needs only the
next k. `ExampleSampler(start, rank, world_size)` yields start + rank, start + rank + world_size, …;
after n steps of batch B on W ranks, the resume point is start + n·B·W.

Mixing. Without weights, an epoch is a permutation of all kept rows (uniform over examples,
docs/method.md §1). With per-store weights w, an epoch has round(E·w_d/Σw) slots for store d
(largest remainders), filled by the store's own permutations (repeated when the quota exceeds its
rows), and the slots are shuffled.

Per example: `inputs` (`train.inputs.ModelInput`, built by `train.inputs.model_input`, the same
call as evaluation's) and `targets` (`TrainingTargets`); 2D coordinates crop-normalised with
`body.cameras.crop_normalize` to the AUGMENTED model box, [−1, 1] over the square, unless noted:

| field | shape, dtype | meaning |
|---|---|---|
| `image` | (3, S, S) float32 | ImageNet-normalised RGB crop of the augmented box (+ photometric) |
| `mask` | (S, S) bool | union person mask aligned with `image`, dilated (mask loss, below) |
| `use_mask` | () bool | the row has a mask and is not object-occluded |
| `det_kp` | (17, 3) float32 | detector x, y normalised to the AUGMENTED box (below), conf |
| `bbox_cond` | (3,) float32 | `cliff_bbox_condition` of the augmented box, f = cam_int[0, 0] |
| `center`, `scale`, `focal`, `img_size` | (2,), (), (), (2,) float32 | augmented box, f, (W, H) |
| `gt_pose6d` | (22, 6) float32 | ground-truth pose, 6D (first two rows of each rotation) |
| `gt_betas` | (11,) float32 | SMPL-X betas |
| `gt_body2d`, `gt_body2d_valid` | (24, 2) float32, (24,) bool | 2D-loss joints (0 where invalid) |
| `gt_coco` | (17, 2) float32 | ground-truth COCO-17 joints |
| `max_conf` | (17,) float32 | detector confidence (heatmap maximum) |
| `gt_in_fov` | (17,) bool | GT joint in the detector's field of view of the ORIGINAL box |
| `gt_in_crop` | (17,) bool | GT joint in the augmented crop, [−1, 1]² |
| `hm_samples`, `hm_inside` | (17, H, 2) float32, (17, H) bool | H of the stored heatmap samples |
| `row`, `dataset` | () int64 | store row and store index |

`hm_samples`: H = 25 of the 150 stored samples per joint, without replacement; heatmap pixel →
image px through `DetectorCrop(original box).heatmap_to_image` → the augmented crop.
`hm_inside`: the stored mask distance ≤ `conventions.inside_mask_px` (0.71).
`det_kp`: the detector ran once, in stage one, on the original box; like every other 2D quantity
its keypoints are re-expressed in the augmented box (docs/method.md §5, the reference release), so
the condition never contradicts the image and the targets under jitter or truncation.
`mask`: the warped union mask dilated by a 3 × 3 kernel `losses.mask_dilation_iterations` times
(3, the reference release), on the fly at crop resolution (≈ 20 µs; the context cache keeps the
undilated mask, one definition of the training mask here).

Reading. The small per-row label arrays (≈ 1 KB/row: ≈ 1 GB per process for a million rows) are
read whole, lazily, once per process; pixels and heatmap samples come row by row from the store's
context cache (stores/context_cache.py) — ≈ 0.5 ms per row (a 280² JPEG) instead of ≈ 7 ms
(640×360) to 25 ms (1280×720) for decoding a full frame and mask. The model crop is one
bilinear warp of the context; the context has the unjittered crop's pixel density, so a
jittered-down or truncated box is upsampled from it by up to 1/0.75 (jitter) or 2.7×
(truncation of a jittered-down box) where a crop from the full frame could use the frame's own
pixels when the person is large in the frame.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from body.cameras import DetectorCrop, crop_matrix, crop_normalize
from body.pixels import INSIDE_MASK_PX
from body.rotations import axis_angle_to_rot6d
from core.seeding import rng_for
from stores.context_cache import ContextCache, build_context_cache, context_to_crop, \
    open_context_cache
from stores.paths import resolve_store
from stores.schema import KEPT
from stores.store import Store

from .augment import Augmentation, augment_box, draw_photometric
from .backbones import image_features
from .inputs import ModelInput, model_input, samples_to_crop

BODY_JOINTS = 22
_DILATION_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class ExampleSettings:
    """Everything an example's content depends on besides the stores and k."""

    crop_size: int = 224
    context_factor: float = 1.25
    heatmap_samples: int = 25
    inside_px: float = INSIDE_MASK_PX  # a sample is inside the mask at distance <= this
    seed: int = 0
    mask_dilation: int = 3  # 3 × 3 dilations of the training mask (docs/method.md §4 "Mask loss")
    augment: Augmentation = field(default_factory=Augmentation)

    @classmethod
    def from_config(cls, cfg) -> ExampleSettings:
        t = cfg.train
        return cls(int(cfg.model.crop_size), float(t.context_factor), int(t.heatmap_samples),
                   float(cfg.conventions.inside_mask_px), int(t.seed),
                   int(cfg.losses.mask_dilation_iterations), Augmentation.from_config(t))


class TrainingTargets(NamedTuple):
    """What the losses compare the model's hypotheses with (module doc, table)."""

    mask: torch.Tensor
    use_mask: torch.Tensor
    gt_pose6d: torch.Tensor
    gt_betas: torch.Tensor
    gt_body2d: torch.Tensor
    gt_body2d_valid: torch.Tensor
    gt_coco: torch.Tensor
    max_conf: torch.Tensor
    gt_in_fov: torch.Tensor
    gt_in_crop: torch.Tensor
    hm_samples: torch.Tensor
    hm_inside: torch.Tensor
    row: torch.Tensor
    dataset: torch.Tensor


class TrainingExample(NamedTuple):
    """One training example (or a collated batch): the model's input and the targets; a batch
    of `CollateExamples` with a frozen backbone also carries its features of the crops."""

    inputs: ModelInput
    targets: TrainingTargets
    features: torch.Tensor | None = None  # (B, out_features) c_I, or None: the model computes it


class CollateExamples:
    """A DataLoader's collate_fn: the examples stacked into one batch and, given a
    frozen backbone, its features of the batch's crops (`train.backbone_in_loader`): a DataLoader
    worker then computes them beside the training step instead of inside it (docs/diagnosis.md
    §4.2). Without a backbone it only stacks."""

    def __init__(self, backbone: torch.nn.Module | None = None) -> None:
        self.backbone = backbone

    def __call__(self, examples: Sequence[TrainingExample]) -> TrainingExample:
        batch = TrainingExample(default_collate([e.inputs for e in examples]),
                                default_collate([e.targets for e in examples]))
        if self.backbone is None:
            return batch
        with torch.no_grad():
            return batch._replace(features=image_features(self.backbone, batch.inputs.image))


class _Rows:
    """One store's per-row label arrays (all rows), loaded once per process."""

    def __init__(self, store: Store) -> None:
        r = store.read
        self.center = r("labels/center").astype(np.float64)
        self.scale = r("labels/scale").astype(np.float64)
        self.focal = r("labels/cam_int")[:, 0, 0].astype(np.float32)
        self.img_size = r("labels/image_size").astype(np.float32)
        pose = torch.from_numpy(r("labels/pose")[:, :BODY_JOINTS].astype(np.float32))
        self.pose6d = axis_angle_to_rot6d(pose).numpy()
        self.betas = r("labels/betas").astype(np.float32)
        self.coco = r("labels/kp2d_coco").astype(np.float64)
        self.body = r("labels/kp2d_body").astype(np.float64)
        self.det = r("detector/keypoints").astype(np.float64)
        self.use_mask = (r("labels/mask") != "") & ~r("labels/object_occluded").astype(bool)


class TrainingExamples(Dataset):
    """The training examples of one or more stores, addressed by a global counter k (module doc).

    `stores`: store paths; their context caches are built when missing or stale (`build`, with
    `build_workers` processes) — in DDP, build them on one rank first; a store that is not
    complete and verified is refused (`stores.schema.StoreError`). `weights`: one per store,
    None = uniform over examples.
    """

    def __init__(self, stores: Sequence[str | Path], settings: ExampleSettings | None = None,
                 weights: Sequence[float] | None = None, build: bool = True,
                 build_workers: int = 2) -> None:
        self.settings = settings or ExampleSettings()
        self.paths = [Path(p) for p in stores]
        if not self.paths:
            raise ValueError("TrainingExamples needs at least one store")
        s = self.settings
        self.kept = []
        for path in self.paths:
            if build:
                build_context_cache(path, s.crop_size, s.context_factor, workers=build_workers)
            cache = open_context_cache(path)
            if cache.crop_size != s.crop_size or cache.size != _context(s):
                raise ValueError(f"{cache.path} has crop {cache.crop_size}/context {cache.size}, "
                                 f"settings ask {s.crop_size}/{_context(s)}: rebuild it")
            store = Store(path)
            if store.attrs.get("body_model") != "smplx":
                raise ValueError(f"{path}: training needs SMPL-X rows (22 joints, 11 betas), "
                                 f"got body model {store.attrs.get('body_model')!r}")
            self.kept.append(np.flatnonzero(store.read("status/reason") == KEPT))
        self.epoch_size = int(sum(len(k) for k in self.kept))
        if self.epoch_size == 0:
            raise ValueError(f"no kept rows in {[str(p) for p in self.paths]}")
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None:
            if len(self.weights) != len(self.paths) or (self.weights < 0).any() \
                    or self.weights.sum() <= 0:
                raise ValueError(f"weights {list(weights)} do not fit {len(self.paths)} stores")
            empty = [str(p) for p, k, w in zip(self.paths, self.kept, self.weights)
                     if w > 0 and len(k) == 0]
            if empty:
                raise ValueError(f"stores with weight > 0 but no kept rows: {empty}")
        self._local: dict | None = None

    # -- addressing -------------------------------------------------------------------------
    def __len__(self) -> int:
        """Examples per epoch (k itself is unbounded: any k ≥ 0 is an example)."""
        return self.epoch_size

    def epoch_table(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(store index (E,), row (E,)) served at positions 0 … E−1 of `epoch`."""
        seed = self.settings.seed
        if self.weights is None:
            dataset = np.concatenate([np.full(len(k), d) for d, k in enumerate(self.kept)])
            rows = np.concatenate(self.kept)
            order = rng_for(seed, "epoch", epoch).permutation(self.epoch_size)
            return dataset[order], rows[order]
        quota = self.weights / self.weights.sum() * self.epoch_size
        counts = np.floor(quota).astype(int)
        remainder = self.epoch_size - counts.sum()
        counts[np.argsort(-(quota - counts), kind="stable")[:remainder]] += 1
        parts_d, parts_r = [], []
        for d, (kept, count) in enumerate(zip(self.kept, counts)):
            rng = rng_for(seed, "epoch", epoch, "store", d)
            reps = -(-count // len(kept)) if count else 0
            rows = np.concatenate([kept[rng.permutation(len(kept))] for _ in range(reps)]
                                  or [np.zeros(0, int)])[:count]
            parts_d.append(np.full(count, d))
            parts_r.append(rows)
        order = rng_for(seed, "epoch", epoch).permutation(self.epoch_size)
        return np.concatenate(parts_d)[order], np.concatenate(parts_r)[order]

    def locate(self, k: int) -> tuple[int, int]:
        """(store index, row) of example k."""
        if k < 0:
            raise IndexError(f"example counter {k} < 0")
        epoch, position = divmod(int(k), self.epoch_size)
        tables = self._state()["tables"]
        if epoch not in tables:
            if len(tables) >= 2:  # a batch spans at most two epochs
                tables.pop(min(tables))
            tables[epoch] = self.epoch_table(epoch)
        dataset, rows = tables[epoch]
        return int(dataset[position]), int(rows[position])

    # -- per-process state ------------------------------------------------------------------
    def _state(self) -> dict:
        """This process's lazily opened stores and caches (never pickled to workers)."""
        if self._local is None or self._local["pid"] != os.getpid():
            self._local = {"pid": os.getpid(), "tables": {}, "rows": [None] * len(self.paths),
                           "caches": [None] * len(self.paths)}
        return self._local

    def _store(self, d: int) -> tuple[_Rows, ContextCache]:
        local = self._state()
        if local["rows"][d] is None:
            local["caches"][d] = open_context_cache(self.paths[d])  # verifies the store first
            local["rows"][d] = _Rows(Store(self.paths[d]))
        return local["rows"][d], local["caches"][d]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_local": None}

    # -- examples ---------------------------------------------------------------------------
    def __getitem__(self, k: int) -> TrainingExample:
        d, row = self.locate(k)
        return self.example(k, d, row)

    def example(self, k: int, d: int, row: int) -> TrainingExample:
        """Example k served from row `row` of store `d` (what `__getitem__(k)` does)."""
        s, aug = self.settings, self.settings.augment
        rows, cache = self._store(d)
        rng = rng_for(s.seed, "example", k)  # draws: box, samples, photometric, in this order
        c0, s0 = rows.center[row], np.asarray(rows.scale[row])
        center, scale = augment_box(rng, c0, s0, aug)
        scale = np.asarray(scale)
        index, distance = cache.samples(row)
        pick = np.argpartition(rng.random(index.shape), s.heatmap_samples - 1,
                               axis=1)[:, :s.heatmap_samples]
        ops = draw_photometric(rng, aug.photometric_p)

        # pixels: one bilinear warp of the 4-channel context (RGB + 0/1 mask, see
        # context_cache.py) from context px to the augmented crop
        to_crop = context_to_crop(crop_matrix(center, scale, s.crop_size), cache.matrix(c0, s0))
        warped = cv2.warpAffine(cache.context(row), to_crop, (s.crop_size, s.crop_size),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0)
        planes = list(cv2.split(warped))
        if s.mask_dilation:
            planes[3] = cv2.dilate(planes[3], _DILATION_KERNEL, iterations=s.mask_dilation)
        if ops:
            rgb = cv2.merge(planes[:3])
            for op in ops:
                rgb = op(rgb)
            planes[:3] = cv2.split(rgb)

        # geometry: the heatmap grid and the field of view are the ORIGINAL box's (the detector
        # ran there); every 2D quantity, the condition included, is normalised to the augmented
        # crop
        detector = DetectorCrop(c0, s0)
        det = rows.det[row]
        chosen = np.take_along_axis(index, pick, 1).astype(np.int64)
        coco_px, body_px = rows.coco[row], rows.body[row]
        norm = crop_normalize(np.concatenate([coco_px, body_px]), center, scale).astype(np.float32)
        coco, body = norm[:17], norm[17:]
        hm = samples_to_crop(chosen, detector, center, scale).astype(np.float32)
        body_valid = np.isfinite(body).all(-1)
        body[~body_valid] = 0
        in_crop = (np.abs(coco) <= 1).all(-1)
        inputs = model_input(planes[:3], det, center, scale, rows.focal[row], rows.img_size[row])
        ids = np.array([row, d], np.int64)
        return TrainingExample(inputs, TrainingTargets(
            mask=torch.from_numpy(planes[3].view(bool)),
            use_mask=torch.from_numpy(rows.use_mask[row:row + 1].reshape(()).copy()),
            gt_pose6d=torch.from_numpy(rows.pose6d[row].copy()),
            gt_betas=torch.from_numpy(rows.betas[row].copy()),
            gt_body2d=torch.from_numpy(body),
            gt_body2d_valid=torch.from_numpy(body_valid),
            gt_coco=torch.from_numpy(coco),
            max_conf=torch.from_numpy(det[:, 2].astype(np.float32)),
            gt_in_fov=torch.from_numpy(detector.contains(coco_px)),
            gt_in_crop=torch.from_numpy(in_crop),
            hm_samples=torch.from_numpy(hm),
            hm_inside=torch.from_numpy(np.take_along_axis(distance, pick, 1) <= s.inside_px),
            row=torch.from_numpy(ids[0:1].reshape(())),
            dataset=torch.from_numpy(ids[1:2].reshape(())),
        ))


def _context(s: ExampleSettings) -> int:
    return int(round(s.context_factor * s.crop_size))


class ExampleSampler(Sampler):
    """Infinite example counters start + rank, start + rank + world_size, … (DDP-ready)."""

    def __init__(self, start: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.start, self.rank, self.world_size = int(start), int(rank), int(world_size)

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start + self.rank, self.world_size)


def make_loader(stores: Sequence[str | Path], cfg, start: int, rank: int = 0,
                world_size: int = 1, batch_size: int | None = None,
                workers: int | None = None, backbone: torch.nn.Module | None = None) -> DataLoader:
    """The infinite training DataLoader from example `start` (config: `train:`, `model.crop_size`,
    `conventions.inside_mask_px`); stores by path or name, weights `train.dataset_weights`.
    `backbone`: a frozen CPU backbone whose features each batch carries (`CollateExamples`).
    """
    t = cfg.train
    batch_size = int(t.batch_size if batch_size is None else batch_size)
    workers = int(t.workers if workers is None else workers)
    weights = t.get("dataset_weights")
    dataset = TrainingExamples([resolve_store(s, cfg.paths.stores) for s in stores],
                               ExampleSettings.from_config(cfg),
                               None if weights is None else list(weights),
                               build_workers=max(1, workers))
    cuda = str(t.get("device", "cpu")).startswith("cuda") and torch.cuda.is_available()
    if workers > 0:
        # One OpenCV thread per worker (torch's workers already run one intra-op thread), set
        # here for the forked workers to inherit: a worker that resizes OpenCV's thread pool
        # after this process used it alongside torch's threads hangs (docs/diagnosis.md §10).
        cv2.setNumThreads(1)
    return DataLoader(dataset, batch_size=batch_size,
                      sampler=ExampleSampler(start, rank, world_size), num_workers=workers,
                      collate_fn=CollateExamples(backbone),
                      persistent_workers=workers > 0, pin_memory=cuda)
