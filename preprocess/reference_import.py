"""`python -m preprocess import-reference`: the reference release's annotations and heatmap
samples into one of our stores (docs/real_data.md, "Importing the reference release").

Same schema, same verification as precompute: the labels are written first (the store appears
only when they are complete), then each row chunk is converted from its rows' sample files and
written whole, durable before its done flag. A killed import resumes: a rerun with the same
fingerprint (the source files, the settings, the rows) repairs what verification flags and
converts only the chunks not done, with the same bytes (the conversion is a pure function of
the files, the seed and the row). One run per store: `<name>.zarr.lock`.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from core.errors import BadFileError, ConfigError, MissingFileError
from stores.lock import StoreLock
from stores.paths import store_path
from stores.schema import KEPT, StoreError
from stores.store import Store
from stores.verify import record_path

from .filtering import filter_reasons
from .precompute import _code_version, _summary, repair
from .reference_release import (
    GRID_TOLERANCE, LAYOUTS, ReleaseRows, read_annotations, row_samples, sample_file,
)
from .settings import filter_settings

SAMPLE_SUFFIX = ".npy.gz"


@dataclass(frozen=True)
class ImportSource:
    """What an import reads: the release's files and where our store's paths start."""

    npz: Path          # the annotation file
    samples: Path      # heatmap_samples/<dataset>/
    images: Path       # the folder the file's `imgname`s are relative to
    masks: Path | None  # the layout's mask folder (None: no masks)
    layout: str        # a key of reference_release.LAYOUTS
    split: str         # train (the wrong-person filter applies) or test
    root: Path         # the store's root: images and masks are stored relative to it

    @classmethod
    def checked(cls, npz: str | Path, samples: str | Path, images: str | Path,
                masks: str | Path | None = None, layout: str = "bedlam",
                split: str | None = None, root: str | Path | None = None) -> ImportSource:
        """The source, every path checked to exist; root defaults to the deepest folder that
        holds both the images and the masks."""
        if layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        split = split or LAYOUTS[layout].split
        if split not in ("train", "test"):
            raise ConfigError(f"--split must be train or test, got {split!r}")
        for what, path in (("--npz", npz), ("--samples", samples), ("--images", images),
                           ("--masks", masks), ("--root", root)):
            if path is not None and not Path(path).exists():
                raise MissingFileError(f"{what} does not exist: {path}")
        images = Path(images).resolve()
        masks = Path(masks).resolve() if masks is not None else None
        common = Path(os.path.commonpath([images] + ([masks] if masks else [])))
        root = Path(root).resolve() if root is not None else common
        if not common.is_relative_to(root):
            raise ConfigError(f"--root {root} must contain --images and --masks")
        return cls(Path(npz).resolve(), Path(samples).resolve(), images, masks, layout, split,
                   root)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing_hash(folder: Path) -> tuple[str, int]:
    """(SHA-256 of the names and sizes of the sample files, their count): cheap to recompute
    over a million files, and any added, removed or rewritten-to-another-size file changes it."""
    entries = sorted((e.name, e.stat().st_size) for e in os.scandir(folder)
                     if e.name.endswith(SAMPLE_SUFFIX))
    return hashlib.sha256(repr(entries).encode()).hexdigest(), len(entries)


def _labels_hash(rows: ReleaseRows) -> str:
    digest = hashlib.sha256()
    for f in fields(rows.labels):
        value = getattr(rows.labels, f.name)
        digest.update(f.name.encode() + np.asarray(value).tobytes())
    for value in (rows.keypoints, rows.image_reason):
        digest.update(value.tobytes())
    return digest.hexdigest()


def import_reference(cfg: DictConfig, name: str, source: ImportSource,
                     grid_tolerance: float = GRID_TOLERANCE) -> dict:
    """Import `source` into `<paths.stores>/<name>.zarr` (resuming a store of the same
    fingerprint); returns the run summary (as precompute's)."""
    path = store_path(cfg.paths.stores, name)
    with StoreLock(path):
        rows = read_annotations(source.npz, source.images, source.root, source.layout,
                                source.split, source.masks)
        store = _open_or_create(cfg, name, source, rows, path, grid_tolerance)
        todo = [int(i) for i, done in enumerate(store.done()) if not done]
        start = time.perf_counter()
        results = [_import_chunk(store, i, rows, source, cfg, name, grid_tolerance)
                   for i in todo]
        summary = _summary(store, results, time.perf_counter() - start, len(todo))
        summary["defaults"] = rows.defaults
        store.group.attrs.update({"complete": bool(store.done().all()), "last_run": summary})
    return summary


def _open_or_create(cfg: DictConfig, name: str, source: ImportSource, rows: ReleaseRows,
                    path: Path, grid_tolerance: float) -> Store:
    listing, count = _listing_hash(source.samples)
    if count < len(rows.labels):
        print(f"{source.samples}: {count} sample files for {len(rows.labels)} rows",
              file=sys.stderr)
    sources = {source.npz.name: _sha256(source.npz),
               f"heatmap_samples/{source.samples.name} ({count} files: names, sizes)": listing}
    chunk_rows = int(cfg.precompute.chunk_rows)
    samples = int(cfg.sampling.samples_per_joint)
    settings = {"dataset": name, "split": source.split, "layout": source.layout,
                "seed": int(cfg.sampling.seed), "samples": samples,
                "grid_tolerance": grid_tolerance, "mask_rule": LAYOUTS[source.layout].mask_rule,
                "filter": asdict(filter_settings(cfg)), "labels": _labels_hash(rows)}
    fingerprint = hashlib.sha256(repr((sorted(settings.items()), sorted(sources.items()),
                                       len(rows.labels), chunk_rows)).encode()).hexdigest()[:16]
    if (path / "zarr.json").exists():
        try:
            store = Store(path, mode="r+")
        except StoreError:
            store = None
        if store is not None and store.attrs.get("fingerprint") == fingerprint:
            repair(store, rows.labels)
            return store
        if not cfg.precompute.overwrite:
            raise StoreError(f"{path} was made from other files or settings; remove it or pass "
                             "precompute.overwrite=true")
    attrs = {"dataset": name, "split": source.split, "format": f"reference-{source.layout}",
             "root": str(source.root), "source_files": sources,
             "reference_paths": {"npz": str(source.npz), "samples": str(source.samples),
                                 "images": str(source.images),
                                 "masks": str(source.masks) if source.masks else None},
             "detector": {"name": "reference release (`vitpose` key)", "options": {}},
             "sampling": {**OmegaConf.to_container(cfg.sampling), "import": settings},
             "seed": int(cfg.sampling.seed), "fingerprint": fingerprint,
             "code_version": _code_version(), "mask_rule": LAYOUTS[source.layout].mask_rule,
             "defaults": rows.defaults, "config": OmegaConf.to_container(cfg, resolve=True),
             "complete": False}
    record_path(path).unlink(missing_ok=True)
    return Store.create(path, rows.labels, attrs, chunk_rows, samples)


def _import_chunk(store: Store, index: int, rows: ReleaseRows, source: ImportSource,
                  cfg: DictConfig, name: str, grid_tolerance: float) -> dict:
    """Convert and write row chunk `index`; returns {chunk, rows, reasons, seconds}."""
    start = time.perf_counter()
    sl = store.chunk_slice(index)
    labels = rows.labels.select(np.arange(sl.start, sl.stop))
    n, s = sl.stop - sl.start, int(cfg.sampling.samples_per_joint)
    reasons = rows.image_reason[sl].copy()
    keypoints = rows.keypoints[sl].copy()
    index_out = np.zeros((n, 17, s), np.uint16)
    value_out = np.zeros((n, 17, s), np.float16)
    dist_out = np.full((n, 17, s), np.inf, np.float16)
    ok = np.flatnonzero(reasons == KEPT)  # else the image is missing or unreadable
    keypoints[reasons != KEPT] = 0  # skipped rows hold zeros, as in precompute
    for i in ok:
        row = sl.start + int(i)
        path = sample_file(source.samples, row)
        got = row_samples(path, labels.center[i], float(labels.scale[i]), s,
                          bool(labels.mask[i]), (int(cfg.sampling.seed), "import", name, row))
        if got.residual > grid_tolerance:
            raise BadFileError(f"{path}: a sample lies {got.residual:.3f} heatmap px from the "
                               f"nearest pixel centre of this project's heatmap grid (tolerance "
                               f"{grid_tolerance}): the file's crop convention differs")
        index_out[i], value_out[i], dist_out[i] = got.index, got.value, got.mask_distance
    if source.split == "train" and len(ok):
        filtered = filter_reasons(keypoints[ok], labels.kp2d_coco[ok], labels.scale[ok],
                                  labels.image_size[ok], filter_settings(cfg))
        reasons[ok] = filtered
    store.write_chunk(index, {"detector/keypoints": keypoints, "samples/index": index_out,
                              "samples/value": value_out, "samples/mask_distance": dist_out,
                              "status/reason": reasons})
    codes = Counter(reasons.tolist())
    return {"chunk": index, "rows": n, "reasons": dict(codes),
            "seconds": time.perf_counter() - start}
