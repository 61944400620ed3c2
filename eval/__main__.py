"""`python -m eval run --dataset NAME [--ckpt PATH] [key=value …]`: evaluate a checkpoint
(default: the latest of the configured run) on a test store with its protocol
(docs/method.md §6), and
write `<reports>/<run>/<checkpoint stem>/<dataset>/{metrics.json, report.md, *.png}` (e.g.
`reports/synthetic/step_00001500/synthetic-test/`; the reference release's `humr_best.ckpt` under
`reports/reference/humr_best/`). The model is built from the checkpoint's own configuration; a
`profile=` other than the one it was trained with prints a one-line notice. A real dataset
runs with profile=paper unless `profile=…` is given (core/profiles.py); `--print-config` prints
the resolved configuration and stops.

`python -m eval ablation [--quick] [--only a,b] [--seeds 0,1] [--jobs N] [key=value …]`: train
and evaluate the variants of the paper's Tables 3 and S2 (pipelines.yaml `ablation`) once per
seed, write `<reports>/ablation/report.md`."""
from __future__ import annotations

import argparse
import sys

from core.cli import ArgumentParser, run_cli
from omegaconf import OmegaConf

from core.profiles import load_config_for


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: comma-separated integers, e.g. 0,1")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="evaluate a checkpoint on a test store")
    run.add_argument("--dataset", required=True)
    run.add_argument("--ckpt", default=None)
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved configuration and stop")
    run.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    abl = sub.add_parser("ablation", help="the paper's ablations on the synthetic world")
    abl.add_argument("--quick", action="store_true",
                     help="small settings (ablation.quick): the machinery in minutes")
    abl.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    abl.add_argument("--seeds", type=_seeds, default=None,
                     help="comma-separated seeds (default: ablation.seeds; --quick: one)")
    abl.add_argument("--jobs", type=int, default=None, help="runs side by side")
    abl.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    args = parser.parse_args(argv)
    if args.command == "ablation":
        from .ablation import run_ablation

        report = run_ablation(args.overrides, args.quick,
                              args.only.split(",") if args.only else None, args.jobs,
                              args.seeds)
        print(report.read_text())
        print(f"report and plots: {report.parent}")
        return 0
    if args.command != "run":
        parser.print_help()
        return 2
    from .run import run_evaluation

    cfg = load_config_for(args.overrides, lambda c: [args.dataset])
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    out = run_evaluation(cfg, args.dataset, args.ckpt)
    print((out / "report.md").read_text())
    print(f"report and plots: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
