"""Shared pieces of the diagnostics: the config, a fixed batch of training examples, the
ground-truth weak-perspective camera, pixel conversions."""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Subset

from core.cli import ArgumentParser
from core.config import load_config
from eval.examples import TestExamples
from eval.protocol import Evaluator
from stores.labels import LabelRows
from stores.paths import store_path
from stores.store import Store
from train.augment import Augmentation
from train.checkpoint import latest_checkpoint, run_dir
from train.data import CollateExamples, ExampleSettings, TrainingExample, TrainingExamples, \
    TrainingTargets
from train.inputs import ModelInput
from train.model import ProbabilisticHMR, load_model
from train.posterior import Hypotheses
from train.trainer import build_caches


def run_parser(doc: str, crops: int, hypotheses: bool = True,
               dataset: bool = True) -> ArgumentParser:
    """The parser of a measurement of one run's latest checkpoint: `--run`, `--dataset` and
    `--hypotheses` (unless told not to), `--crops` and config overrides; `doc`'s first line
    describes it."""
    p = ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--run", required=True, help="run name under paths.runs")
    if dataset:
        p.add_argument("--dataset", default="synthetic-test")
    p.add_argument("--crops", type=int, default=crops)
    if hypotheses:
        p.add_argument("--hypotheses", type=int, default=100)
    p.add_argument("overrides", nargs="*", help="pipelines.yaml overrides key=value")
    return p


class RunOnCrops(NamedTuple):
    """A run's latest checkpoint and a fixed, sorted pick of a store's crops, as the evaluation
    reads them (`run_on_crops`)."""

    cfg: DictConfig
    checkpoint: Path
    model: ProbabilisticHMR
    evaluator: Evaluator
    crops: Subset
    labels: LabelRows


def run_on_crops(args: argparse.Namespace) -> RunOnCrops:
    """`args.run`'s latest checkpoint and `args.crops` crops of `args.dataset` (seed 0)."""
    cfg = config([f"train.run={args.run}", *args.overrides])
    ckpt = latest_checkpoint(run_dir(cfg))
    model, trained, _ = load_model(cfg, ckpt)
    path = store_path(cfg.paths.stores, args.dataset)
    data = TestExamples(path, trained.model.crop_size, trained.train.context_factor)
    pick = np.sort(np.random.default_rng(0).permutation(len(data))[:args.crops])
    return RunOnCrops(cfg, ckpt, model, Evaluator(model, trained, "emdb", torch.device("cpu")),
                      Subset(data, pick.tolist()), Store(path).labels())


def json_main(run: Callable[[argparse.Namespace], dict],
              parse: Callable[[Sequence[str] | None], argparse.Namespace]
              ) -> Callable[[Sequence[str] | None], int]:
    """A measurement's `main`: prints run(parse(argv)) as JSON."""
    def main(argv: Sequence[str] | None = None) -> int:
        print(json.dumps(run(parse(argv)), indent=2))
        return 0
    return main


def config(overrides: Sequence[str] = ()) -> DictConfig:
    """The synthetic profile with `overrides`."""
    return load_config(["profile=synthetic", *overrides])


def examples(cfg: DictConfig, augment: bool = True) -> TrainingExamples:
    """The training examples of `train.stores` (augmented as in training, or not at all)."""
    settings = ExampleSettings.from_config(cfg)
    if not augment:
        settings = dataclasses.replace(settings, augment=Augmentation.disabled())
    return TrainingExamples(build_caches(cfg), settings)


def batch_of(data: TrainingExamples, counters: Sequence[int]) -> TrainingExample:
    """Examples `counters` collated into one batch."""
    return CollateExamples()([data[int(k)] for k in counters])


def gt_transl(data: TrainingExamples, batch: TrainingExample) -> torch.Tensor:
    """(B, 3) the labels' SMPL-X translation of the batch's rows (single store)."""
    transl = Store(data.paths[0]).read("labels/transl")
    return torch.from_numpy(transl[batch.targets.row.numpy()]).float()


def translation_to_camera(transl: torch.Tensor, inputs: ModelInput) -> torch.Tensor:
    """Inverse of `body.cameras.weak_perspective_to_translation`: the crop camera (s, tx, ty)
    of the augmented box of `inputs` whose full-image translation is `transl`."""
    w, h = inputs.img_size[:, 0], inputs.img_size[:, 1]
    b = 200 * inputs.scale
    s = 2 * inputs.focal / (b * transl[:, 2])
    tx = transl[:, 0] - 2 * (inputs.center[:, 0] - w / 2) / (s * b)
    ty = transl[:, 1] - 2 * (inputs.center[:, 1] - h / 2) / (s * b)
    return torch.stack([s, tx, ty], 1)


def crop_px(norm_error: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Crop-normalised distances -> pixels of a `size` crop ([−1, 1] spans `size` px)."""
    return norm_error * size / 2


def mode_error(out: Hypotheses, targets: TrainingTargets) -> tuple[float, float]:
    """Mean |Δ| per coordinate (crop-normalised) and mean px (256 crop) of the mode's 24 joints."""
    diff = (out.mode.body2d - targets.gt_body2d)[targets.gt_body2d_valid]
    return float(diff.abs().mean()), float(crop_px(diff.norm(dim=-1)).mean())


def machine() -> str:
    return f"{platform.node()} {platform.processor() or platform.machine()}, " \
           f"torch {torch.__version__}, {torch.get_num_threads()} threads"
