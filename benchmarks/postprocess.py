"""Stage-one post-processing against a re-enactment of the reference release's design.

Both sides get the same synthetic rows and the same detector heatmaps (the detector runs once,
before any timing) and process them in the same chunks of rows on the same number of worker
processes (one torch/OpenCV thread each), every mask image decoded once per chunk:

- ours: `preprocess.postprocess.postprocess`, the function the chunk task calls (DARK-UDP pose and
  max confidence, per-row uniforms and multinomial samples, one exact distance transform per mask
  image, the training filter), then `Store.write_chunk`;
- reference (docs/formats.md "The reference release's own files", written from that description):
  per row, argmax and max confidence per joint, per joint `np.random.choice` of 150 pixels from
  the thresholded normalised heatmap, their image coordinates and heatmap values, the distance of
  each to the nearest person pixel by brute force over all mask pixels, and one float32
  (150, 17, 4) `<row:07d>.npy.gz` per row.

Figures: `postprocess_crops_per_s` and `sample_bytes_per_crop`.
"""
from __future__ import annotations

import gzip
from abc import ABC, abstractmethod
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.distance import cdist

from body.detector import CropRequest
from core.config import load_config
from preprocess.postprocess import postprocess
from preprocess.readers import read_bedlam
from preprocess.settings import MethodSettings, method_settings
from stores.labels import LabelRows
from stores.masks import union_mask
from stores.store import Store
from synthetic import world
from synthetic.detector import SyntheticDetector

SAMPLE_ARRAYS = ("samples/index", "samples/value", "samples/mask_distance")
WORKERS = 2
CHUNK_ROWS = 256
FLOAT16_PRECISION = 2.0 ** -11   # relative rounding error bound (half an ulp)
FLOAT32_PRECISION = 2.0 ** -24


@dataclass
class Inputs:
    """What both sides read: the rows, their dataset root and the detector's heatmaps on disk."""

    root: Path            # BEDLAM-layout dataset root (masks are relative to it)
    rows: LabelRows
    heat_path: Path       # (N, 17, 64, 48) float32 .npy, the detector's output for every row
    settings: MethodSettings  # those of a BEDLAM-format training set
    chunk_rows: int = CHUNK_ROWS

    @property
    def n_chunks(self) -> int:
        return -(-len(self.rows) // self.chunk_rows)

    def chunk_slice(self, index: int) -> slice:
        return slice(index * self.chunk_rows, min((index + 1) * self.chunk_rows, len(self.rows)))


def chunk_settings(dataset: str = "synthetic-train") -> MethodSettings:
    """The method settings of `dataset` (a BEDLAM-format training set) in the default
    configuration."""
    return method_settings(load_config(), dataset)


def detector_heatmaps(root: Path, rows: LabelRows, **options) -> np.ndarray:
    """(N, 17, 64, 48) float32 heatmaps of the synthetic detector for every row."""
    detector = SyntheticDetector(**options)
    requests = [CropRequest(root / rows.image[i], rows.center[i].astype(np.float64),
                            float(rows.scale[i])) for i in range(len(rows))]
    return detector(None, requests)


def prepare_inputs(root: Path, rows: LabelRows, work: Path,
                   chunk_rows: int = CHUNK_ROWS) -> Inputs:
    """Run the detector once on `rows` and save its heatmaps under `work`."""
    work.mkdir(parents=True, exist_ok=True)
    heat_path = work / "heatmaps.npy"
    np.save(heat_path, detector_heatmaps(root, rows))
    return Inputs(Path(root), rows, heat_path, chunk_settings(), chunk_rows)


def _read_masks(root: Path, names: np.ndarray) -> dict[str, np.ndarray]:
    """Each distinct mask image decoded once (grey)."""
    masks = {}
    for name in np.unique(names[names != ""]):
        gray = cv2.imread(str(root / name), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise FileNotFoundError(f"bench input mask missing or unreadable: {root / name}")
        masks[name] = gray
    return masks


class _Job(ABC):
    """One side's work on the chunks of `inputs`, writing under `out`; one per worker process."""

    def __init__(self, inputs: Inputs, out: Path) -> None:
        self.inputs, self.out = inputs, Path(out)
        self.heat = np.load(inputs.heat_path)

    def warm_up(self) -> None:
        self.compute(slice(0, min(2, len(self.inputs.rows))), seed=0)

    def run_chunk(self, index: int) -> int:
        sl = self.inputs.chunk_slice(index)
        self.write(index, sl, self.compute(sl, seed=index))
        return sl.stop - sl.start

    @abstractmethod
    def compute(self, sl: slice, seed: int):
        """This side's results for the rows `sl`."""

    @abstractmethod
    def write(self, index: int, sl: slice, results) -> None:
        """Write the results of chunk `index` this side's way."""


class OursJob(_Job):
    """The post-processing of `preprocess.chunk_task.process_chunk` (detector excluded)."""

    def compute(self, sl: slice, seed: int) -> dict[str, np.ndarray]:
        rows = self.inputs.rows.select(np.arange(sl.start, sl.stop))
        out = postprocess(torch.from_numpy(self.heat[sl]), rows,
                          _read_masks(self.inputs.root, rows.mask), self.inputs.settings,
                          np.arange(sl.start, sl.stop))
        return {"detector/keypoints": out.keypoints, "samples/index": out.index,
                "samples/value": out.value, "samples/mask_distance": out.mask_distance,
                "status/reason": out.reason}

    def write(self, index: int, sl: slice, results: dict[str, np.ndarray]) -> None:
        Store(self.out, mode="r+").write_chunk(index, results)


def reference_row(heat: np.ndarray, center: np.ndarray, scale: float,
                  mask_xy: np.ndarray, samples: int = 150,
                  min_value: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The reference release's design for one row (re-enacted from docs/formats.md, not copied).

    heat (17, 64, 48); mask_xy (M, 2) float image coordinates of every person pixel. Returns
    ((samples, 17, 4) float32 [x_img, y_img, heatmap value, distance to the nearest mask pixel],
    (17, 3) [x_img, y_img, max conf] of the plain argmax). Samples come from the global numpy
    random state, per joint with `np.random.choice`.
    """
    joints, h, w = heat.shape
    flat = heat.reshape(joints, h * w)
    side = 200.0 * float(scale)
    x0, y0 = center[0] - 0.375 * side, center[1] - 0.5 * side
    step_x, step_y = 0.75 * side / (w - 1), side / (h - 1)
    peak = flat.argmax(1)
    keypoints = np.stack([x0 + (peak % w) * step_x, y0 + (peak // w) * step_y,
                          flat.max(1)], -1).astype(np.float32)
    out = np.empty((samples, joints, 4), np.float32)
    for j in range(joints):
        p = flat[j].astype(np.float64)
        p[p < min_value] = 0.0
        total = p.sum()
        p = p / total if total > 0 else np.full(h * w, 1.0 / (h * w))
        pixel = np.random.choice(h * w, samples, p=p)
        xy = np.stack([x0 + (pixel % w) * step_x, y0 + (pixel // w) * step_y], -1)
        out[:, j, :2] = xy
        out[:, j, 2] = flat[j, pixel]
        out[:, j, 3] = cdist(xy, mask_xy).min(1) if len(mask_xy) else np.inf
    return out, keypoints


def reference_path(out: Path, row: int) -> Path:
    return Path(out) / f"{row:07d}.npy.gz"


class ReferenceJob(_Job):
    """The reference release's design, row by row; one `.npy.gz` per row."""

    def compute(self, sl: slice, seed: int) -> list[np.ndarray]:
        rows = self.inputs.rows.select(np.arange(sl.start, sl.stop))
        settings = self.inputs.settings
        mask_xy = {name: np.argwhere(union_mask(gray, **settings.mask_rule))[:, ::-1]
                   .astype(np.float64)
                   for name, gray in _read_masks(self.inputs.root, rows.mask).items()}
        np.random.seed(seed)
        no_mask = np.zeros((0, 2))
        return [reference_row(self.heat[sl.start + i], rows.center[i].astype(np.float64),
                              float(rows.scale[i]), mask_xy.get(rows.mask[i], no_mask),
                              settings.samples, settings.min_heatmap_value)[0]
                for i in range(len(rows))]

    def write(self, index: int, sl: slice, results: list[np.ndarray]) -> None:
        for row, samples in zip(range(sl.start, sl.stop), results):
            with gzip.GzipFile(reference_path(self.out, row), "w") as f:
                np.save(f, samples)


def read_reference(out: Path, row: int) -> np.ndarray:
    """A reference file as the reference release loads it."""
    with gzip.GzipFile(reference_path(out, row)) as f:
        return np.load(f)


def create_store(inputs: Inputs, path: Path) -> Store:
    """Our store for the bench rows (labels and empty result arrays), made before any timing."""
    return Store.create(path, inputs.rows, {"dataset": inputs.settings.dataset,
                                            "split": inputs.settings.split, "bench": True},
                        inputs.chunk_rows, inputs.settings.samples)


# -- worker processes ------------------------------------------------------------------------
_JOB: _Job | None = None


def _init_worker(job_class: type, inputs: Inputs, out: Path, barrier) -> None:
    global _JOB
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _JOB = job_class(inputs, out)
    _JOB.warm_up()
    barrier.wait()   # no timing starts before every worker is up, loaded and warm


def _ready(_: int) -> int:
    return os.getpid()


def _run_chunk(index: int) -> int:
    return _JOB.run_chunk(index)


def timed_runs(job_class: type, inputs: Inputs, out: Path, repeats: int = 1,
               workers: int = WORKERS) -> list[float]:
    """Wall-clock seconds of each run of all chunks on `workers` processes, each taking whole
    chunks; process start, heatmap loading and a warm-up are outside the timing."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    times = []
    with ctx.Pool(workers, _init_worker, (job_class, inputs, Path(out), barrier)) as pool:
        pool.map(_ready, range(workers), chunksize=1)
        for _ in range(repeats):
            start = time.perf_counter()
            done = pool.map(_run_chunk, range(inputs.n_chunks), chunksize=1)
            times.append(time.perf_counter() - start)
            if sum(done) != len(inputs.rows):
                raise RuntimeError(f"{sum(done)} rows processed, expected {len(inputs.rows)}")
        pool.close()   # let the workers exit (and release what they hold) rather than kill them
        pool.join()
    return times


# -- figures ---------------------------------------------------------------------------------
def store_sample_bytes(store_path: Path) -> dict[str, int]:
    """Bytes on disk of each sample array's chunk files (metadata excluded)."""
    sizes = {}
    for name in SAMPLE_ARRAYS:
        files = [p for p in (Path(store_path) / name).rglob("*")
                 if p.is_file() and p.name != "zarr.json"]
        if not files:
            raise FileNotFoundError(f"no chunk files under {Path(store_path) / name}")
        sizes[name] = sum(p.stat().st_size for p in files)
    return sizes


def reference_sample_bytes(out: Path, rows: int) -> int:
    """Bytes on disk of the reference's per-row files (every row must have its file)."""
    sizes = [reference_path(out, row).stat().st_size for row in range(rows)]
    return sum(sizes)


def bytes_figure(store_path: Path, reference_dir: Path, rows: int) -> dict:
    per_array = store_sample_bytes(store_path)
    ours = sum(per_array.values()) / rows
    ref = reference_sample_bytes(reference_dir, rows) / rows
    ratio = ours / ref
    return {
        "value": round(ours, 1), "unit": "bytes/crop", "goal": "<= 1/4 of reference",
        "met": bool(ratio <= 0.25), "reference_bytes_per_crop": round(ref, 1),
        "ratio": round(ratio, 4), "rows": rows,
        "equal_information": (
            "ours: samples/index uint16 flat heatmap pixel (lossless: x_img, y_img = "
            "DetectorCrop(center, scale).heatmap_to_image(pixel), the box is in the labels; "
            "stored as a sorted multiset, the draw order carries no information), "
            f"value float16 and mask_distance float16 (relative precision {FLOAT16_PRECISION:.1e});"
            " reference: x_img, y_img, value, distance all float32 (relative precision "
            f"{FLOAT32_PRECISION:.1e}), 150x17x4 per row, gzip of np.save"),
        "ours_bytes_per_crop_by_array": {k: round(v / rows, 1) for k, v in per_array.items()},
        "ours_codec": "zarr v3 blosc zstd-5 bitshuffle, 256-row chunks",
    }


def speed_figure(ours_times: list[float], reference_seconds: float, rows: int,
                 workers: int = WORKERS) -> dict:
    ours_seconds = statistics.median(ours_times)
    ours, ref = rows / ours_seconds, rows / reference_seconds
    speedup = ours / ref
    return {
        "value": round(ours, 1), "unit": "crops/s", "goal": ">= 2000 crops/s and >= 20x reference",
        "met": bool(ours >= 2000 and speedup >= 20), "reference_crops_per_s": round(ref, 2),
        "speedup": round(speedup, 1), "rows": rows, "cores": workers,
        "cpu_count": os.cpu_count(), "ours_runs_s": [round(t, 3) for t in ours_times],
        "reference_run_s": round(reference_seconds, 2),
        "timed": "argmax+refinement, max conf, sampling, mask decode (once per image and chunk), "
                 "mask distance, store/file write; detector and image decode excluded",
    }


def synthetic_inputs(work: Path, body_models: Path, sequences: int = 32, frames: int = 10,
                     max_rows: int = 512) -> Inputs:
    """A synthetic BEDLAM-layout world of one folder, its rows (at most `max_rows`, a multiple
    of WORKERS·CHUNK_ROWS when there are enough) and their heatmaps."""
    cfg = load_config(["synthetic.bedlam.folders=[bench]",
                       f"synthetic.bedlam.sequences_per_folder={sequences}",
                       f"synthetic.bedlam.frames_per_sequence={frames}",
                       "synthetic.emdb.subjects=1", "synthetic.emdb.sequences_per_subject=1",
                       "synthetic.emdb.frames_per_sequence=4",
                       "synthetic.agora.sequences_per_folder=0",
                       "synthetic.threedpw.sequences_per_split=0",
                       f"synthetic.root={work / 'world'}"])
    root = world.generate_world(cfg.synthetic, body_models, workers=WORKERS) / "bedlam"
    rows = read_bedlam(root, body_models, train_fraction=1.0)
    n = min(len(rows), max_rows)
    if n >= WORKERS * CHUNK_ROWS:
        n -= n % (WORKERS * CHUNK_ROWS)
    return prepare_inputs(root, rows.select(np.arange(n)), work / "inputs")


def bench_postprocess(body_models: Path, sequences: int = 32, ours_repeats: int = 3
                      ) -> dict[str, dict]:
    """Both figures on one synthetic world (generated in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="bench_postprocess_") as tmp:
        work = Path(tmp)
        inputs = synthetic_inputs(work, Path(body_models), sequences=sequences)
        rows = len(inputs.rows)
        store = create_store(inputs, work / "bench.zarr")
        ours_times = timed_runs(OursJob, inputs, store.path, repeats=ours_repeats)
        reference_dir = work / "reference"
        reference_dir.mkdir()
        (reference_seconds,) = timed_runs(ReferenceJob, inputs, reference_dir)
        return {"postprocess_crops_per_s": speed_figure(ours_times, reference_seconds, rows),
                "sample_bytes_per_crop": bytes_figure(store.path, reference_dir, rows)}
