"""Evaluate a checkpoint on a test store: make eval DATASET=…, make eval-emdb, make eval-3dpw."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from core.seeding import stable_seed
from train.checkpoint import latest_checkpoint, read_checkpoint
from train.checkpoints_external import load_reference_checkpoint
from train.model import ProbabilisticHMR
from train.trainer import run_dir

from .protocol import Evaluator, evaluate
from .report import summarize, write_report


def resolve_checkpoint(cfg: DictConfig, checkpoint: str | None) -> Path:
    """The given checkpoint, else the latest one of the configured run."""
    if checkpoint:
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return path
    path = latest_checkpoint(run_dir(cfg))
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir(cfg)}: train first (make train) "
                                "or pass CKPT=…")
    return path


def load_model(cfg: DictConfig, ckpt: Path) -> tuple[ProbabilisticHMR, DictConfig, str]:
    """(model, its configuration, report name) of a checkpoint: ours (`.pt`, with the
    configuration it was trained with) or the reference release's Lightning `humr_best.ckpt`
    (`.ckpt`, FORMATS.md), built with the current configuration (`profile=paper` for it)."""
    if ckpt.suffix == ".ckpt":
        model = ProbabilisticHMR(cfg, cfg.body.models)
        report = load_reference_checkpoint(model, ckpt)
        if report["missing"]:
            raise ValueError(f"{ckpt}: the reference checkpoint leaves {len(report['missing'])} "
                             f"of the model's weights unset ({', '.join(report['missing'][:5])}"
                             "…); is the profile right (PROFILE=paper)?")
        return model, cfg, f"reference-{ckpt.stem}"
    state = read_checkpoint(ckpt)
    # the checkpoint's configuration over today's defaults: keys added since it was trained
    # take their default (the old behaviour)
    trained = OmegaConf.merge(cfg, OmegaConf.create(state["config"]),
                              {"body": {"models": cfg.body.models}})
    model = ProbabilisticHMR(trained, cfg.body.models)
    model.load_state_dict(state["model"])
    return model, trained, ckpt.parent.parent.name


def run_evaluation(cfg: DictConfig, dataset: str, checkpoint: str | None = None) -> Path:
    """Evaluate and write the report; returns the report directory."""
    if dataset not in cfg.datasets:
        raise KeyError(f"unknown dataset '{dataset}': not under 'datasets' in pipelines.yaml")
    entry = cfg.datasets[dataset]
    protocol = entry.get("protocol")
    if protocol not in ("emdb", "3dpw"):
        raise ValueError(f"datasets.{dataset}.protocol must be emdb or 3dpw, got {protocol!r}")
    store = Path(cfg.paths.stores) / f"{dataset}.zarr"
    if not (store / "zarr.json").exists():
        raise FileNotFoundError(f"no store at {store}: make precompute DATASET={dataset}")
    ckpt = resolve_checkpoint(cfg, checkpoint)
    model, trained, run = load_model(cfg, ckpt)
    device = torch.device(cfg.eval.device)
    model.to(device)
    e = cfg.eval
    evaluator = Evaluator(model, trained, protocol, device)
    got = evaluate(evaluator, store, e.hypotheses, stable_seed(e.seed, dataset) % 2 ** 63,
                   e.batch_size, e.curve_crops, max(e.pve_vs_n))
    result = summarize(got, e.hypotheses, list(e.pve_vs_n))
    out = Path(cfg.paths.reports) / run / dataset
    write_report(out, result, protocol, dataset, str(ckpt), got)
    return out
