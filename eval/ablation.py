"""`make ablation` (`python -m eval ablation`): the paper's ablations on the synthetic world.

Trains every variant of `ablation.variants` in pipelines.yaml (Table 3: ProHMR → + bbox → + 2D
pose condition → + RealNVP → + MMD → + mask; Table S2: how random hypotheses are supervised)
with the same budget once per seed of `ablation.seeds` (`train.seed` and `eval.seed`; the
synthetic world and its stores stay the same), evaluates each run on `ablation.dataset`, and
writes `<reports>/<ablation name>/report.md` (eval/ablation_report.py). A run,
`<runs>/<ablation name>-<variant>-s<seed>`, is a pair of subprocesses (`python -m train fit`,
`python -m eval run`) with its own log, `ablation.jobs` of them side by side; a run already
trained resumes or skips, an evaluation already made for its latest checkpoint is kept, so an
interrupted ablation continues where it stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
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
    """One trained model of the ablation: a variant of the tables at one seed, its table label,
    its pipelines.yaml overrides (the setting's budget, the variant's switches, the user's, then
    the seed and the run name) and the configuration they give (loaded once)."""

    name: str
    seed: int
    label: str
    overrides: tuple[str, ...]
    cfg: DictConfig = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        """`<variant>-s<seed>`: the run's name within the ablation (logs, timing)."""
        return f"{self.name}-s{self.seed}"

    def metrics_path(self, dataset: str) -> Path | None:
        """Where `python -m eval run` writes the metrics of this run's latest checkpoint on
        `dataset` (None before it has one)."""
        ckpt = latest_checkpoint(run_dir(self.cfg))
        if ckpt is None:
            return None
        run = self.cfg.train.run
        return report_dir(self.cfg.paths.reports, run, ckpt, dataset) / "metrics.json"


def setting_seeds(cfg: DictConfig, quick: bool = False) -> list[int]:
    """The seeds of the setting: `ablation.quick.seeds` for --quick, else `ablation.seeds`."""
    a = cfg.ablation
    seeds = a.quick.get("seeds", a.seeds) if quick else a.seeds
    return [int(s) for s in seeds]


def _check_names(a: DictConfig, only: list[str] | None) -> list[str]:
    """The variants of the tables, after checking them and `only` against ablation.variants."""
    names = list(dict.fromkeys([*a.table3, *a.table_s2]))
    unknown = [n for n in [*names, *(only or [])] if n not in a.variants]
    if unknown:
        raise UnknownNameError(f"ablation variants {unknown} are not under ablation.variants in "
                               f"pipelines.yaml (known: {', '.join(a.variants)})")
    return names


def plan(cfg: DictConfig, user_overrides: list[str], quick: bool = False,
         only: list[str] | None = None,
         seeds: list[int] | None = None) -> tuple[str, list[Variant]]:
    """(ablation name, the runs): every variant of the tables, or `only` these, once per seed of
    the setting, or of `seeds`; seed by seed, so an interrupted ablation has whole seeds.

    Each run's configuration is loaded here, so an unknown key or variant fails before any
    training starts, naming it."""
    a = cfg.ablation
    setting = a.quick if quick else a.full
    names = _check_names(a, only)
    runs = []
    for seed in seeds if seeds is not None else setting_seeds(cfg, quick):
        for name in only or names:
            v = a.variants[name]
            overrides = (*setting.overrides, *v.overrides, *user_overrides,
                         f"train.seed={seed}", f"eval.seed={seed}",
                         f"train.run={setting.name}-{name}-s{seed}")
            overrides = tuple(str(o) for o in overrides)
            runs.append(Variant(name, int(seed), str(v.label), overrides, load_config(overrides)))
    return str(setting.name), runs


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


def _done(variant: Variant, dataset: str) -> bool:
    return _trained(variant) and _evaluated(variant, dataset)


def run_variant(variant: Variant, dataset: str, log_dir: Path, threads: int) -> dict:
    """Train, then evaluate one run in subprocesses; returns the wall-clock seconds of the steps
    it ran (none when both were done)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = log_dir / f"{variant.key}.log"
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
                raise RuntimeError(f"ablation run {variant.key}: {step} failed "
                                   f"(exit {code}); see {log}")
            seconds[step] = round(time.perf_counter() - start, 1)
    return seconds


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def eta_seconds(measured: list[float], waiting: int, jobs: int) -> float:
    """Time left: the runs still to do at the mean of the runs measured so far, `jobs` at a
    time."""
    return sum(measured) / len(measured) * waiting / jobs


def run_ablation(user_overrides: list[str], quick: bool = False, only: list[str] | None = None,
                 jobs: int | None = None, seeds: list[int] | None = None) -> Path:
    """Run (or finish) the ablation, `only` these variants and these `seeds` if given (default:
    all, at the setting's seeds), and write its report; returns the report path."""
    cfg = load_config(user_overrides)
    wanted = setting_seeds(cfg, quick) if seeds is None else [int(s) for s in seeds]
    covered = list(dict.fromkeys([*setting_seeds(cfg, quick), *wanted]))
    name, every = plan(cfg, user_overrides, quick, seeds=covered)  # the report covers all made
    _check_names(cfg.ablation, only)
    runs = [v for v in every if v.seed in wanted and (only is None or v.name in only)]
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
    jobs = max(1, min(jobs or cfg.ablation.jobs, len(runs) or 1))
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    waiting = sum(not _done(v, dataset) for v in runs)
    print(f"ablation {name}: {len({v.name for v in runs})} variants × {len(wanted)} seed(s) "
          f"{wanted} = {len(runs)} runs, {len(runs) - waiting} already done; {jobs} at a time "
          f"with {threads} thread(s) each; logs in {log_dir}", flush=True)
    timing_path = out_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    failures, measured = [], []
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_variant, v, dataset, log_dir, threads): v for v in runs}
        for finished, future in enumerate(as_completed(futures), 1):
            v = futures[future]
            try:
                seconds = future.result()
            except RuntimeError as err:
                failures.append(str(err))
                continue
            timing[v.key] = {**timing.get(v.key, {}), **seconds}
            timing_path.write_text(json.dumps(timing, indent=2) + "\n")
            note = ""
            if seconds:
                measured.append(sum(seconds.values()))
                waiting -= 1
                note = f"; ETA {_duration(eta_seconds(measured, waiting, jobs))}"
            print(f"  {v.key}: done {seconds or '(already)'} [{finished}/{len(runs)}]{note}",
                  flush=True)
    if failures:
        raise RuntimeError("; ".join(failures))
    results: dict[str, dict[int, dict]] = {}
    for v in every:
        path = v.metrics_path(dataset)
        if path is not None and path.exists():
            results.setdefault(v.name, {})[v.seed] = json.loads(path.read_text())
    return write_ablation_report(out_dir, cfg.ablation, results, timing, quick)
