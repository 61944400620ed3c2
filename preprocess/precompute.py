"""Stage one, client side: `make precompute DATASET=…` (docs/method.md §2, stores/README.md).

Reads the dataset through its reader, creates `<stores>/<dataset>.zarr` (labels first), then
hands every chunk that is not done yet to the Dask cluster; tasks write their own chunks and
return small summaries. A rerun resumes: done chunks are never recomputed, but the chunks that
verification flags are repaired (a bad result chunk is marked not done and recomputed, a bad label
chunk rewritten from the reader's rows). One run per store at a time: `<name>.zarr.lock` (held
for the whole run). Everything that can be checked — configuration keys, dataset files, the
detector backend — fails before any work.
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from dask.distributed import as_completed
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from body.models import files_read
from core.errors import ConfigError, MissingFileError, UnknownNameError
from core.file_hashes import HashCache
from stores.labels import LabelRows
from stores.lock import StoreLock
from stores.paths import store_path
from stores.schema import REASONS, SCHEMA_VERSION, StoreError, is_skip
from stores.store import Store, schema_version
from stores.verify import check, record_path

from .chunk_task import process_chunk
from .cluster import check_cluster_config, dask_client
from .detectors import DETECTORS
from .readers import FORMATS
from .settings import ChunkSettings, detector_checkpoint, input_hashes, stage_one_settings

SPLITS = ("train", "test")


def dataset_names(cfg: DictConfig, name: str) -> list[str]:
    """The datasets behind a DATASET argument (a dataset or a group), checked against the config."""
    names = list(cfg.dataset_groups[name]) if name in cfg.dataset_groups else [name]
    for n in names:
        if n not in cfg.datasets:
            known = sorted(list(cfg.datasets) + list(cfg.dataset_groups))
            raise UnknownNameError(f"unknown dataset '{n}': not under 'datasets' in "
                                   f"pipelines.yaml (known: {', '.join(known)})")
    return names


def _check(cfg: DictConfig, name: str) -> DictConfig:
    entry = cfg.datasets[name]
    if entry.get("format") not in FORMATS:
        raise ConfigError(f"datasets.{name}.format must be one of {sorted(FORMATS)}, "
                          f"got {entry.get('format')!r}")
    if entry.get("split") not in SPLITS:
        raise ConfigError(f"datasets.{name}.split must be one of {SPLITS}, "
                          f"got {entry.get('split')!r}")
    if not Path(entry.root).exists():
        raise MissingFileError(f"datasets.{name}.root does not exist: {entry.root}")
    if cfg.precompute.detector.name not in DETECTORS:
        raise ConfigError(f"precompute.detector.name must be one of {sorted(DETECTORS)}, got "
                          f"{cfg.precompute.detector.name!r}")
    detector_checkpoint(cfg)
    check_cluster_config(cfg.cluster)
    return entry


def _source_files(entry: DictConfig, cache: HashCache) -> dict[str, str]:
    """SHA-256 of the dataset's label files, recorded in the store."""
    root = Path(entry.root)
    paths = {p for pattern in FORMATS[entry.format].label_files for p in root.glob(pattern)}
    return {str(path.relative_to(root)): cache.hash(path) for path in sorted(paths)}


def _code_version() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def open_or_create_store(cfg: DictConfig, name: str, entry: DictConfig
                         ) -> tuple[Store, ChunkSettings]:
    """The store of `name`: resumed (and repaired) when it was made with this configuration, else
    created (also over a store of an older schema). Call it holding the store's lock."""
    settings = stage_one_settings(cfg, name)
    cache = HashCache(cfg.paths.hash_cache)
    sources = _source_files(entry, cache)
    reader_args = {k: v for k, v in OmegaConf.to_container(entry, resolve=True).items()
                   if k not in ("format", "split", "root", "protocol")}
    with files_read() as body_files:
        rows = FORMATS[entry.format].read(entry.root, cfg.body.models, **reader_args)
    inputs = input_hashes(cfg, body_files, cache)
    cache.save()
    chunk_rows = cfg.precompute.chunk_rows
    fingerprint = settings.method.fingerprint(sources, len(rows), chunk_rows, inputs)
    path = store_path(cfg.paths.stores, name)
    old_schema = (path / "zarr.json").exists() and schema_version(path) != SCHEMA_VERSION
    if old_schema:
        print(f"{path} has schema v{schema_version(path)}, this code writes v{SCHEMA_VERSION}: "
              "making it again", file=sys.stderr)
    elif (path / "zarr.json").exists():
        store = Store(path, mode="r+")
        if store.attrs.get("fingerprint") == fingerprint:
            repair(store, rows)
            return store, settings
        if not cfg.precompute.overwrite:
            raise StoreError(f"{path} was made with another configuration or other input files "
                             "(labels, body models, detector checkpoint); remove it or pass "
                             "precompute.overwrite=true")
    attrs = {"dataset": name, "split": entry.split, "format": entry.format,
             "root": str(Path(entry.root).resolve()), "source_files": sources,
             "input_files": inputs, "body_models": str(Path(cfg.body.models).resolve()),
             "detector": OmegaConf.to_container(cfg.precompute.detector, resolve=True),
             "sampling": OmegaConf.to_container(cfg.sampling),
             "seed": cfg.sampling.seed, "fingerprint": fingerprint, "code_version": _code_version(),
             "mask_rule": settings.method.mask_rule,
             "config": OmegaConf.to_container(cfg, resolve=True), "complete": False}
    record_path(path).unlink(missing_ok=True)
    store = Store.create(path, rows, attrs, chunk_rows, cfg.sampling.samples_per_joint)
    return store, settings


def repair(store: Store, rows: LabelRows) -> dict[str, list[int]]:
    """Make the chunks that verification flags whole again: a bad label chunk is rewritten from
    `rows` (the reader's rows, which the fingerprint ties to the store), a bad chunk of any other
    array has its row chunk marked not done, to be recomputed. Fast when the store's verification
    record is current. Returns {array: [chunk indices]} of what it repaired."""
    report = check(store.path)
    if report.problems:
        raise StoreError(f"{store.path}: {report.problems[0]}; cannot be repaired: remove it "
                         "and rerun precompute")
    repaired: dict[str, list[int]] = {}
    for bad in report.bad:
        repaired.setdefault(bad.array, []).append(bad.index)
        if bad.array.startswith("labels/"):
            store.discard_chunk(bad.array, bad.index)
            store.write_labels(bad.index, rows, [bad.array])
        else:
            store.clear_done(bad.index)
            store.discard_chunk(bad.array, bad.index)
    if repaired:
        print(f"{store.path}: repairing {len(report.bad)} bad chunks (first: {report.bad[0]})",
              file=sys.stderr)
    return repaired


def precompute(cfg: DictConfig, name: str, client=None) -> dict:
    """Precompute one dataset into its store; returns the run summary."""
    entry = _check(cfg, name)
    with StoreLock(store_path(cfg.paths.stores, name)):
        return _precompute_locked(cfg, name, entry, client)


def _precompute_locked(cfg: DictConfig, name: str, entry: DictConfig, client) -> dict:
    store, settings = open_or_create_store(cfg, name, entry)
    todo = [int(i) for i, done in enumerate(store.done()) if not done]
    start = time.perf_counter()
    results = []
    if todo:
        if client is None:
            with dask_client(cfg.cluster) as own:
                results = _run(own, store, entry, todo, settings, name)
        else:
            results = _run(client, store, entry, todo, settings, name)
    summary = _summary(store, results, time.perf_counter() - start, len(todo))
    store.group.attrs.update({"complete": bool(store.done().all()), "last_run": summary})
    return summary


def _run(client, store: Store, entry, todo: list[int], settings: ChunkSettings, name: str
         ) -> list[dict]:
    root = str(Path(entry.root).resolve())
    futures = [client.submit(process_chunk, str(store.path.resolve()), root, i, settings,
                             key=f"precompute-{name}-{store.attrs['fingerprint']}-{i}",
                             pure=False, retries=2) for i in todo]
    results = []
    with tqdm(total=sum(store.chunk_slice(i).stop - store.chunk_slice(i).start for i in todo),
              desc=f"precompute {name}", unit="crop") as bar:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            bar.update(result["rows"])
    return results


def _summary(store: Store, results: list[dict], seconds: float, chunks_run: int) -> dict:
    reasons = Counter()
    for r in results:
        reasons.update({int(k): v for k, v in r["reasons"].items()})
    rows = sum(r["rows"] for r in results)
    skipped = {REASONS[k]: v for k, v in sorted(reasons.items()) if is_skip(k)}
    filtered = {REASONS[k]: v for k, v in sorted(reasons.items()) if k >= 10}
    return {"store": str(store.path), "rows_total": store.n_rows, "chunks_run": chunks_run,
            "chunks_done": int(store.done().sum()), "chunks_total": store.n_chunks,
            "rows_written": rows, "kept": reasons.get(0, 0), "skipped": skipped,
            "filtered": filtered, "seconds": round(seconds, 2),
            "crops_per_second": round(rows / seconds, 1) if seconds > 0 and rows else 0.0}


def format_summary(s: dict) -> str:
    lines = [f"{s['store']}: {s['rows_written']} rows written in {s['seconds']} s "
             f"({s['crops_per_second']} crops/s), chunks {s['chunks_done']}/{s['chunks_total']} "
             f"done ({s['chunks_run']} run now), kept {s['kept']}"]
    for title in ("skipped", "filtered"):
        for reason, count in s[title].items():
            lines.append(f"  {count:6d} {reason}")
    return "\n".join(lines)
