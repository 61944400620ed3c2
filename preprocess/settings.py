"""Stage one's settings, built once from the configuration (`stage_one_settings`).

`MethodSettings` holds everything that changes a store's bytes (the dataset and split, the
sampling, the filter, the mask rule, the detector and its options, the seed): its `fingerprint`
identifies a store made with them. `RuntimeSettings` (device, batch size, threads) only changes
how fast the same bytes come out. Both are frozen: a task gets them whole and cannot alter them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from core.errors import MissingFileError
from core.file_hashes import HashCache

from .readers import FORMATS


@dataclass(frozen=True)
class FilterSettings:
    """The wrong-person filter of the training sets (docs/method.md §2)."""

    mean_error_conf: float           # joints above it count in the mean error
    max_mean_error_per_scale: float  # dropped when the mean ‖GT − detector‖/scale reaches it
    visible_conf: float              # `conventions.visible_conf`
    min_visible_joints: int          # dropped when fewer joints are visible
    max_outside_image_px: float      # dropped when a detector joint lies further outside


@dataclass(frozen=True)
class DetectorSpec:
    """A detector backend of preprocess/detectors and its keyword options."""

    name: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSettings:
    """What the stored bytes depend on: the post-processing reads all but `detector`."""

    dataset: str                 # names the per-row random streams
    split: str                   # train: the filter applies
    seed: int
    samples: int                 # heatmap samples per joint
    min_heatmap_value: float     # heatmap values below it are not sampled
    detector: DetectorSpec
    mask_rule: dict              # `stores.masks.union_mask` keywords of the dataset's format
    filter: FilterSettings

    def fingerprint(self, sources: dict[str, str], rows: int, chunk_rows: int,
                    inputs: dict[str, str] | None = None) -> str:
        """16 hex digits of SHA-256 over these settings, the label files' hashes, the store's
        shape and the other input files' hashes (`input_hashes`: body models, detector
        checkpoint): a store is resumed only when they are equal."""
        parts = (sorted(asdict(self).items()), sorted(sources.items()), rows, chunk_rows)
        if inputs:
            parts += (sorted(inputs.items()),)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RuntimeSettings:
    """How a task runs; never changes the bytes it writes."""

    device: str = "cpu"          # post-processing device
    batch_size: int = 64         # detector batch
    threads: int = 1             # torch threads per task


@dataclass(frozen=True)
class ChunkSettings:
    """Everything one chunk task needs besides its store, dataset root and chunk index."""

    method: MethodSettings
    runtime: RuntimeSettings = RuntimeSettings()


def method_settings(cfg: DictConfig, name: str) -> MethodSettings:
    """The method settings of dataset `name` (a key of `cfg.datasets`)."""
    entry = cfg.datasets[name]
    detector = OmegaConf.to_container(cfg.precompute.detector, resolve=True)
    return MethodSettings(
        dataset=name, split=entry.split, seed=cfg.sampling.seed,
        samples=cfg.sampling.samples_per_joint,
        min_heatmap_value=cfg.sampling.min_heatmap_value,
        detector=DetectorSpec(detector["name"], detector.get("options", {})),
        mask_rule=dict(FORMATS[entry.format].mask_rule), filter=filter_settings(cfg))


def filter_settings(cfg: DictConfig) -> FilterSettings:
    """The wrong-person filter's settings (`filter`, `conventions.visible_conf`)."""
    f = cfg.filter
    return FilterSettings(f.mean_error_conf, f.max_mean_error_per_scale,
                          cfg.conventions.visible_conf, f.min_visible_joints,
                          f.max_outside_image_px)


def detector_checkpoint(cfg: DictConfig) -> Path | None:
    """The detector's checkpoint (`precompute.detector.options.checkpoint`), checked to exist;
    None for a backend without one (synthetic)."""
    path = cfg.precompute.detector.get("options", {}).get("checkpoint")
    if not path:
        return None
    if not Path(path).exists():
        raise MissingFileError(f"precompute.detector.options.checkpoint not found: {path}")
    return Path(path)


def input_hashes(cfg: DictConfig, body_files: Iterable[Path], cache: HashCache
                 ) -> dict[str, str]:
    """SHA-256 of the body-model files the labels were built from (`body_models/<name under
    body.models>`) and of the detector's checkpoint (`detector_checkpoint`; a directory: over
    all its files), for the fingerprint."""
    root = Path(cfg.body.models).resolve()
    out = {}
    for path in sorted(body_files):
        name = path.relative_to(root) if path.is_relative_to(root) else path
        out[f"body_models/{name}"] = cache.hash(path)
    checkpoint = detector_checkpoint(cfg)
    if checkpoint is not None:
        out["detector_checkpoint"] = cache.hash_tree(checkpoint)
    return out


def stage_one_settings(cfg: DictConfig, name: str) -> ChunkSettings:
    """Method and runtime settings of precomputing dataset `name`."""
    runtime = RuntimeSettings(device=cfg.precompute.device, batch_size=cfg.precompute.batch_size,
                              threads=cfg.cluster.threads_per_worker)
    return ChunkSettings(method_settings(cfg, name), runtime)
