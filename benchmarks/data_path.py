"""Training data path: examples/s of `TrainingExamples` against the reference release's way.

The reference release loads, per example, one gzip-compressed `.npy` of heatmap samples
(float32 (150, 17, 4): image x, y, heatmap value, mask distance), decodes the full frame and the
full mask image, crops both to 224 with cv2.warpAffine and picks 25 samples per joint. This is a
re-enactment written from that description (no code copied), run on the same rows, with the same
box and photometric augmentation, the same normalisation and the same output tensors. Ours reads a
pre-cut context crop and the samples from the store's context cache (stores/context_cache.py).
Both run on one core (torch and cv2 single-threaded), files warm in the page cache on both sides.
"""
from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from body.cameras import DetectorCrop, crop_matrix, crop_normalize
from core.config import load_config
from core.seeding import rng_for
from stores.context_cache import build_context_cache, cache_path
from stores.masks import union_mask
from stores.store import Store
from train.augment import augment_box, photometric
from train.data import ExampleSettings, TrainingExample, TrainingExamples, TrainingTargets
from train.inputs import model_input

from .timing import one_thread, timed

WORLD = ["synthetic.bedlam.folders=[synthetic_a]", "synthetic.bedlam.sequences_per_folder=4",
         "synthetic.bedlam.frames_per_sequence=6", "synthetic.emdb.subjects=1",
         "synthetic.emdb.sequences_per_subject=1", "synthetic.emdb.frames_per_sequence=4",
         "synthetic.agora.sequences_per_folder=0", "synthetic.threedpw.sequences_per_split=0"]
# frame sizes measured: BEDLAM's (and AGORA's BEDLAM-CLIFF) 1280×720, the headline; the default
# synthetic world's 640×360, a quarter of the pixels to decode
FRAMES = {"1280x720": (1280, 720), "640x360": (640, 360)}


def make_store(body_models: Path, tmp: Path, frame: tuple[int, int]) -> Path:
    """A small synthetic world with frames of `frame` (W, H), precomputed: its training store."""
    from preprocess.precompute import precompute
    from synthetic import world

    size = [f"synthetic.bedlam.image_size=[{frame[0]},{frame[1]}]"]
    cfg = load_config(WORLD + size + [f"synthetic.root={tmp / 'synthetic'}"])
    root = world.generate_world(cfg.synthetic, body_models, workers=2)
    cfg = load_config(WORLD + size + [f"synthetic.root={root}", f"body.models={body_models}",
                                      f"paths.stores={tmp / 'stores'}",
                                      "precompute.chunk_rows=32", "cluster.workers=1"])
    precompute(cfg, "synthetic-train")
    return tmp / "stores" / "synthetic-train.zarr"


class ReferenceLoader:
    """Per example: one gzip .npy of samples, one full frame, one full mask, warps, 25 samples."""

    def __init__(self, store_path: Path, npy_dir: Path, settings: ExampleSettings) -> None:
        store = Store(store_path)
        self.root = Path(store.attrs["root"])
        self.rule = store.attrs["mask_rule"]
        self.labels = store.labels()
        self.det = store.read("detector/keypoints")
        self.npy_dir, self.s = npy_dir, settings
        self.pose6d = TrainingExamples([store_path], settings, build=False)._store(0)[0].pose6d

    def write_samples(self, store_path: Path, rows: np.ndarray) -> None:
        """The reference's per-example sample files (outside the timing)."""
        store = Store(store_path)
        index, value = store.read("samples/index"), store.read("samples/value")
        distance = store.read("samples/mask_distance")
        self.npy_dir.mkdir(parents=True, exist_ok=True)
        for row in np.unique(rows):
            xy = DetectorCrop(self.labels.center[row].astype(np.float64),
                              np.asarray(self.labels.scale[row], np.float64)).index_to_image(
                                  index[row])
            packed = np.concatenate([xy, value[row, ..., None], distance[row, ..., None]], -1)
            with gzip.open(self.npy_dir / f"{row}.npy.gz", "wb") as f:
                np.save(f, packed.transpose(1, 0, 2).astype(np.float32))  # (150, 17, 4)

    def example(self, k: int, row: int) -> TrainingExample:
        s, lab = self.s, self.labels
        rng = rng_for(s.seed, "example", k)
        c0, s0 = lab.center[row].astype(np.float64), np.asarray(lab.scale[row], np.float64)
        center, scale = augment_box(rng, c0, s0, s.augment)
        scale = np.asarray(scale)
        with gzip.open(self.npy_dir / f"{row}.npy.gz", "rb") as f:
            samples = np.load(f).transpose(1, 0, 2)  # (17, 150, 4)
        pick = np.argpartition(rng.random(samples.shape[:2]), s.heatmap_samples - 1,
                               axis=1)[:, :s.heatmap_samples]
        frame = cv2.imread(str(self.root / lab.image[row]), cv2.IMREAD_COLOR)[:, :, ::-1]
        person = union_mask(cv2.imread(str(self.root / lab.mask[row]), cv2.IMREAD_GRAYSCALE),
                            **self.rule).view(np.uint8)
        m = crop_matrix(center, scale, s.crop_size)
        size = (s.crop_size, s.crop_size)
        image = cv2.warpAffine(np.ascontiguousarray(frame), m, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(person, m, size, flags=cv2.INTER_NEAREST)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=3).view(bool)
        image = photometric(rng, image, s.augment.photometric_p)
        chosen = np.take_along_axis(samples, pick[..., None], 1)
        det = self.det[row].astype(np.float64)
        coco = crop_normalize(lab.kp2d_coco[row].astype(np.float64), center, scale)
        focal = np.float32(lab.cam_int[row, 0, 0])
        body = crop_normalize(lab.kp2d_body[row].astype(np.float64), center, scale)
        valid = np.isfinite(body).all(-1)
        f32 = lambda x: torch.from_numpy(np.asarray(x, np.float32))  # noqa: E731
        inputs = model_input(cv2.split(image), det, center, scale, focal,
                             np.asarray(lab.image_size[row], np.float32))
        return TrainingExample(inputs, TrainingTargets(
            mask=torch.from_numpy(mask), use_mask=torch.tensor(bool(lab.mask[row])),
            gt_pose6d=torch.from_numpy(self.pose6d[row].copy()), gt_betas=f32(lab.betas[row]),
            gt_body2d=f32(np.where(valid[:, None], body, 0)),
            gt_body2d_valid=torch.from_numpy(valid), gt_coco=f32(coco),
            max_conf=f32(det[:, 2]),
            gt_in_fov=torch.from_numpy(DetectorCrop(c0, s0).contains(lab.kp2d_coco[row])),
            gt_in_crop=torch.from_numpy((np.abs(coco) <= 1).all(-1)),
            hm_samples=f32(crop_normalize(chosen[..., :2].astype(np.float64), center, scale)),
            hm_inside=torch.from_numpy(chosen[..., 3] <= s.inside_px),
            row=torch.tensor(row), dataset=torch.tensor(0)))


def measure(store: Path, tmp: Path, examples: int = 300, repeats: int = 3) -> dict:
    """Examples/s of ours and of the reference on one store's rows (1 core)."""
    start = time.perf_counter()
    build_context_cache(store, workers=2)
    build_s = time.perf_counter() - start
    settings = ExampleSettings.from_config(load_config([]))
    ours = TrainingExamples([store], settings)
    located = [ours.locate(k) for k in range(examples)]
    ref = ReferenceLoader(store, tmp / "reference_samples", settings)
    ref.write_samples(store, np.array([r for _, r in located]))
    for k, (_, row) in enumerate(located[:10]):  # warm-up: tables, files in the page cache
        ours[k], ref.example(k, row)
    t_ours, _ = timed(lambda: [ours[k] for k in range(examples)], repeats, warm_up=False)
    t_ref, _ = timed(lambda: [ref.example(k, row) for k, (_, row) in enumerate(located)],
                     repeats, warm_up=False)
    frames = {ref.root / ref.labels.image[row] for _, row in located}
    return {"ours": examples / t_ours, "reference": examples / t_ref,
            "rows": len(ours.kept[0]), "build_s": build_s,
            "frame_kb": np.mean([f.stat().st_size for f in frames]) / 1e3,
            "cache_kb_per_row": sum(f.stat().st_size for f in cache_path(store).rglob("*")
                                    if f.is_file()) / Store(store).n_rows / 1e3}


def bench_data_path(body_models: Path, examples: int = 300, repeats: int = 3) -> dict:
    """Examples/s through `TrainingExamples.__getitem__` vs the reference, on one core, for
    synthetic worlds with BEDLAM-size (headline) and default-size frames."""
    cv2.setNumThreads(1)
    results = {}
    with one_thread(), tempfile.TemporaryDirectory() as tmp:
        for name, frame in FRAMES.items():
            work = Path(tmp) / name
            results[name] = measure(make_store(body_models, work, frame), work, examples,
                                    repeats)
    head = results["1280x720"]
    speedup = head["ours"] / head["reference"]
    figure = {"value": round(head["ours"], 1), "unit": "examples/s", "goal": ">= 10x reference",
              "met": bool(speedup >= 10), "frames": "1280x720 (BEDLAM size)",
              "reference_examples_per_s": round(head["reference"], 1),
              "speedup": round(speedup, 1), "examples": examples, "threads": 1}
    for name, r in results.items():
        figure[f"{name}_ours"] = round(r["ours"], 1)
        figure[f"{name}_reference"] = round(r["reference"], 1)
        figure[f"{name}_speedup"] = round(r["ours"] / r["reference"], 1)
        figure[f"{name}_frame_kb"] = round(r["frame_kb"])
        figure[f"{name}_cache_kb_per_row"] = round(r["cache_kb_per_row"])
        figure[f"{name}_cache_build_s"] = round(r["build_s"], 2)
    return figure
