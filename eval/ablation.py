"""`make ablation` (`python -m eval ablation`): the paper's ablations on the synthetic world.

Trains every variant of `ablation.variants` in pipelines.yaml (Table 3: ProHMR → + bbox → + 2D
pose condition → + RealNVP → + MMD → + mask; Table S2: how random hypotheses are supervised)
with the same seeds and budget, evaluates each on `ablation.dataset`, and writes
`<reports>/<ablation name>/report.md` (eval/ablation_report.py). Each variant is a pair of
subprocesses (`python -m train fit`, `python -m eval run`) with its own log, `ablation.jobs` of
them side by side; a variant already trained resumes or skips, an evaluation already made for
the latest checkpoint is kept, so an interrupted ablation continues where it stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from core.config import load_config
from core.errors import MissingFileError, UnknownNameError
from stores.paths import store_path
from train.checkpoint import PATTERN, latest_checkpoint, run_dir

from .ablation_report import write_ablation_report
from .run import report_dir


@dataclass(frozen=True)
class Variant:
    """One trained model of the ablation: its name, table label, its pipelines.yaml
    overrides (the setting's budget, the variant's switches, the user's, then the run name) and
    the configuration they give (loaded once)."""

    name: str
    label: str
    overrides: tuple[str, ...]
    cfg: DictConfig = field(compare=False, repr=False)

    def metrics_path(self, dataset: str) -> Path | None:
        """Where `python -m eval run` writes the metrics of this variant's latest checkpoint on
        `dataset` (None before it has one)."""
        ckpt = latest_checkpoint(run_dir(self.cfg))
        if ckpt is None:
            return None
        run = self.cfg.train.run
        return report_dir(self.cfg.paths.reports, run, ckpt, dataset) / "metrics.json"


def plan(cfg: DictConfig, user_overrides: list[str], quick: bool = False,
         only: list[str] | None = None) -> tuple[str, list[Variant]]:
    """(ablation name, the variants to run): every variant of the tables, or `only` these.

    Each variant's configuration is loaded here, so an unknown key or variant fails before any
    training starts, naming it."""
    a = cfg.ablation
    setting = a.quick if quick else a.full
    names = list(dict.fromkeys([*a.table3, *a.table_s2]))
    unknown = [n for n in [*names, *(only or [])] if n not in a.variants]
    if unknown:
        raise UnknownNameError(f"ablation variants {unknown} are not under ablation.variants in "
                               f"pipelines.yaml (known: {', '.join(a.variants)})")
    variants = []
    for name in only or names:
        v = a.variants[name]
        overrides = (*setting.overrides, *v.overrides, *user_overrides,
                     f"train.run={setting.name}-{name}")
        overrides = tuple(str(o) for o in overrides)
        variants.append(Variant(name, str(v.label), overrides, load_config(overrides)))
    return str(setting.name), variants


def _trained(variant: Variant) -> bool:
    """The variant's run has its final checkpoint (so its training time is not re-measured)."""
    cfg = variant.cfg
    ckpt = latest_checkpoint(run_dir(cfg))
    return ckpt is not None and ckpt.name == PATTERN.format(cfg.train.iterations)


def _evaluated(variant: Variant, dataset: str) -> bool:
    """An evaluation of the variant's latest checkpoint with its settings exists."""
    ckpt = latest_checkpoint(run_dir(variant.cfg))
    metrics = variant.metrics_path(dataset)
    if ckpt is None or metrics is None or not metrics.exists():
        return False
    done = json.loads(metrics.read_text())
    return (done.get("checkpoint") == str(ckpt)
            and done.get("hypotheses") == variant.cfg.eval.hypotheses)


def run_variant(variant: Variant, dataset: str, log_dir: Path, threads: int) -> dict:
    """Train, then evaluate one variant in subprocesses; returns its wall-clock seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = log_dir / f"{variant.name}.log"
    steps = {"train": [sys.executable, "-m", "train", "fit", *variant.overrides],
             "eval": [sys.executable, "-m", "eval", "run", "--dataset", dataset,
                      *variant.overrides]}
    seconds = {}
    with log.open("a") as out:
        for step, cmd in steps.items():
            if _trained(variant) if step == "train" else _evaluated(variant, dataset):
                continue
            start = time.perf_counter()
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            if code != 0:
                raise RuntimeError(f"ablation variant {variant.name}: {step} failed "
                                   f"(exit {code}); see {log}")
            seconds[step] = round(time.perf_counter() - start, 1)
    return seconds


def run_ablation(user_overrides: list[str], quick: bool = False, only: list[str] | None = None,
                 jobs: int | None = None) -> Path:
    """Run (or finish) the ablation and write its report; returns the report path."""
    cfg = load_config(user_overrides)
    name, every = plan(cfg, user_overrides, quick)  # the report covers every variant made
    variants = plan(cfg, user_overrides, quick, only)[1] if only else every
    dataset = str(cfg.ablation.dataset)
    if dataset not in cfg.datasets:
        raise UnknownNameError(f"ablation.dataset {dataset!r} is not under 'datasets' in "
                               "pipelines.yaml")
    stores = Path(cfg.paths.stores)
    missing = [s for s in [*cfg.train.stores, dataset]
               if not (store_path(stores, s) / "zarr.json").exists()]
    if missing:
        raise MissingFileError(f"no store for {missing} under {stores}: "
                               "make precompute DATASET=synthetic")
    out_dir = Path(cfg.paths.reports) / name
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs or cfg.ablation.jobs, len(variants)))
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    print(f"ablation {name}: {len(variants)} variants, {jobs} at a time with {threads} "
          f"thread(s) each; logs in {log_dir}")
    timing_path = out_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    failures = []
    with ThreadPoolExecutor(jobs) as pool:
        futures = {v.name: pool.submit(run_variant, v, dataset, log_dir, threads)
                   for v in variants}
        for vname, future in futures.items():
            try:
                timing[vname] = {**timing.get(vname, {}), **future.result()}
                print(f"  {vname}: done {timing[vname]}")
            except RuntimeError as err:
                failures.append(str(err))
    timing_path.write_text(json.dumps(timing, indent=2) + "\n")
    if failures:
        raise RuntimeError("; ".join(failures))
    paths = {v.name: v.metrics_path(dataset) for v in every}
    results = {n: json.loads(p.read_text()) for n, p in paths.items() if p and p.exists()}
    return write_ablation_report(out_dir, cfg.ablation, results, timing, quick)
