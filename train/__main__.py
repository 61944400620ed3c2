"""`python -m train fit [key=value …]`: stage two (docs/method.md §3–§5).

Trains from the stores in `train.stores` into `<runs>/<train.run or profile>/` (checkpoints,
tensorboard logs, config.yaml); resumes from the run's latest checkpoint when there is one.
`profile=paper` selects the paper's configuration (the default when `train.stores` names a real
dataset, core/profiles.py); `train.device=cuda` a GPU; launch with
`torchrun --nproc_per_node K -m train fit …` for DDP. `--print-config` prints the resolved
configuration and stops.
"""
from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf

from core.cli import ArgumentParser, run_cli
from core.profiles import load_config_for


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m train", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    fit_cmd = sub.add_parser("fit", help="train (resumes a run)")
    fit_cmd.add_argument("--max-steps", type=int, default=None,
                         help="stop after this many more steps (checkpointing)")
    fit_cmd.add_argument("--print-config", action="store_true",
                         help="print the resolved configuration and stop")
    fit_cmd.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    args = parser.parse_args(argv)
    if args.command != "fit":
        parser.print_help()
        return 2
    from .trainer import fit

    cfg = load_config_for(args.overrides, lambda c: c.train.stores)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    result = fit(cfg, args.max_steps)
    print(f"run {result['run']}: step {result['step']}, losses " +
          ", ".join(f"{k} {v:.4g}" for k, v in result["losses"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
