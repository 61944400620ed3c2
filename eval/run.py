"""Evaluate a checkpoint on a test store: make eval DATASET=…, make eval-emdb, make eval-3dpw."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from core.errors import ConfigError, MissingFileError, UnknownNameError
from core.profiles import REAL_DATA_PROFILE, is_real
from core.seeding import stable_seed
from stores.paths import store_path
from train.checkpoint import latest_checkpoint, run_dir
from train.model import load_model

from .protocol import Evaluator, evaluate
from .report import summarize, write_report


def resolve_checkpoint(cfg: DictConfig, checkpoint: str | None) -> Path:
    """The given checkpoint, else the latest one of the configured run."""
    if checkpoint:
        path = Path(checkpoint)
        if not path.exists():
            raise MissingFileError(f"checkpoint not found: {path} (check --ckpt / CKPT=)")
        return path
    path = latest_checkpoint(run_dir(cfg))
    if path is None:
        raise MissingFileError(f"no checkpoint in {run_dir(cfg)}: train first (make train) "
                               "or pass CKPT=…")
    return path


def report_dir(reports: str | Path, run: str, ckpt: Path, dataset: str) -> Path:
    """`<reports>/<run>/<checkpoint stem>/<dataset>/`: one folder per checkpoint and test set
    (run `reference` for the reference release's `.ckpt`)."""
    return Path(reports) / run / ckpt.stem / dataset


def note_profile(cfg: DictConfig, trained: DictConfig, ckpt: Path) -> None:
    """A one-line notice on stderr when the checkpoint was trained with another profile than the
    one given: the model is built from the checkpoint's own configuration regardless."""
    if trained.get("profile", cfg.profile) != cfg.profile:
        print(f"notice: {ckpt} was trained with profile={trained.profile}; its own model and "
              f"loss configuration is used, profile={cfg.profile} sets only paths, body models, "
              "datasets and eval settings", file=sys.stderr)


def run_evaluation(cfg: DictConfig, dataset: str, checkpoint: str | None = None) -> Path:
    """Evaluate and write the report; returns the report directory."""
    if dataset not in cfg.datasets:
        raise UnknownNameError(f"unknown dataset '{dataset}': not under 'datasets' in "
                               f"pipelines.yaml (known: {', '.join(cfg.datasets)})")
    entry = cfg.datasets[dataset]
    protocol = entry.get("protocol")
    if protocol not in ("emdb", "3dpw"):
        raise ConfigError(f"datasets.{dataset}.protocol must be emdb or 3dpw, got {protocol!r} "
                          "(is it a test set?)")
    store = store_path(cfg.paths.stores, dataset)
    if not (store / "zarr.json").exists():
        raise MissingFileError(f"no store at {store}: make precompute DATASET={dataset}")
    ckpt = resolve_checkpoint(cfg, checkpoint)
    model, trained, run = load_model(cfg, ckpt)
    note_profile(cfg, trained, ckpt)
    device = torch.device(cfg.eval.device)
    model.to(device)
    e = cfg.eval
    evaluator = Evaluator(model, trained, protocol, device)
    got = evaluate(evaluator, store, e.hypotheses, stable_seed(e.seed, dataset) % 2 ** 63,
                   e.batch_size, e.curve_crops, max(e.pve_vs_n))
    result = summarize(got, e.hypotheses, list(e.pve_vs_n))
    out = report_dir(cfg.paths.reports, run, ckpt, dataset)
    provenance = {"profile": cfg.profile, "trained_profile": trained.get("profile", cfg.profile),
                  "body_models": str(cfg.body.models)}
    print(f"evaluating {ckpt} on {dataset}: " +
          ", ".join(f"{k} {v}" for k, v in provenance.items()), file=sys.stderr)
    write_report(out, result, protocol, dataset, str(ckpt), got, provenance,
                 paper_numbers=is_real(cfg, dataset) and cfg.profile == REAL_DATA_PROFILE)
    return out
