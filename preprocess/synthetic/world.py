"""`make data DATASET=synthetic`: generate the whole synthetic world, in parallel, atomically.

The world is built in a temporary sibling directory and renamed into place only when complete, so
an interrupted run never leaves a dataset that looks finished. Work is split by sequence; each
sequence draws from its own seeded stream, so the output is identical for any worker count.
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from body.synthetic import write_synthetic_body_models

from .bedlam_layout import BedlamSequenceWriter, write_labels
from .emdb_layout import EmdbSequenceWriter

_WRITERS: dict = {}


def ensure_body_models(path: str | Path) -> Path:
    """The synthetic body-model root, generated on first use."""
    path = Path(path)
    if not (path / "SYNTHETIC.txt").exists():
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_synthetic_body_models(tmp)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    return path


def _init_worker(body_models: str, root: str, cfg: dict) -> None:
    torch.set_num_threads(1)
    cfg = OmegaConf.create(cfg)
    _WRITERS["bedlam"] = BedlamSequenceWriter(Path(body_models), Path(root) / "bedlam", cfg.bedlam)
    _WRITERS["emdb"] = EmdbSequenceWriter(Path(body_models), Path(root) / "emdb", cfg.emdb)


def _run(task: tuple) -> tuple:
    kind, *args = task
    return task, _WRITERS[kind](*args)


def _tasks(cfg: DictConfig) -> Iterator[tuple]:
    for folder in cfg.bedlam.folders:
        for seq in range(cfg.bedlam.sequences_per_folder):
            yield ("bedlam", cfg.seed, folder, seq)
    for subject in range(cfg.emdb.subjects):
        for index in range(cfg.emdb.sequences_per_subject):
            yield ("emdb", cfg.seed, subject, index)


def generate_world(cfg: DictConfig, body_models: str | Path, workers: int | None = None) -> Path:
    """Write the synthetic BEDLAM-layout training set and EMDB-layout test set under cfg.root."""
    start = time.perf_counter()
    root = Path(cfg.root)
    body_models = ensure_body_models(body_models)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    tasks = list(_tasks(cfg))
    rows: dict[str, list] = {folder: [None] * cfg.bedlam.sequences_per_folder
                             for folder in cfg.bedlam.folders}
    workers = workers or cfg.workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, _init_worker, (str(body_models), str(tmp), plain)) as pool:
        for task, result in tqdm(pool.imap_unordered(_run, tasks), total=len(tasks),
                                 desc="synthetic world", unit="seq"):
            if task[0] == "bedlam":
                rows[task[2]][task[3]] = result
    counts = {}
    for folder, per_seq in rows.items():
        merged = {k: sum((r[k] for r in per_seq), []) for k in per_seq[0]}
        write_labels(tmp / "bedlam", folder, merged)
        counts[folder] = len(merged["imgname"])
    manifest = {"config": plain, "bedlam_rows": counts,
                "emdb_sequences": len(list((tmp / "emdb").glob("P*/*/P*_data.pkl"))),
                "seconds": round(time.perf_counter() - start, 1), "synthetic": True}
    (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def is_complete(root: str | Path) -> bool:
    return (Path(root) / "MANIFEST.json").exists()


def manifest(root: str | Path) -> dict:
    return json.loads((Path(root) / "MANIFEST.json").read_text())


def summary(root: Path) -> str:
    info = manifest(root)
    n_rows = sum(info["bedlam_rows"].values())
    return (f"synthetic world at {root}: {n_rows} training rows (BEDLAM layout, "
            f"{len(info['bedlam_rows'])} folders), {info['emdb_sequences']} EMDB-layout "
            f"sequences, generated in {info['seconds']} s")
