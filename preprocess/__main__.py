"""`python -m preprocess COMMAND [key=value …]`: stage one.

  data [--dataset synthetic] [--workers N]   generate the synthetic world (docs/synthetic_world.md:
                                             BEDLAM, EMDB, AGORA and 3DPW layouts) and its contact
                                             sheet under data/reports/synthetic/
  precompute DATASET                         detector, heatmap samples and mask distances into
                                             <stores>/<dataset>.zarr (a group: each member);
                                             resumes an interrupted run. DATASET=train.stores:
                                             the synthetic-world stores of train.stores (make
                                             train precomputes them first)
  --print-config                             print the resolved configuration and stop

A real dataset runs with profile=paper unless `profile=…` is given (core/profiles.py).

`key=value` arguments override pipelines.yaml (e.g. synthetic.bedlam.sequences_per_folder=5).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from core.cli import ArgumentParser, run_cli
from core.config import load_config
from core.errors import UnknownNameError
from core.profiles import is_real, load_config_for

TRAINING_STORES = "train.stores"  # DATASET of `make train`: the stores training reads


def _data(args: argparse.Namespace) -> int:
    from .readers import read_bedlam
    from .contact_sheet import write_contact_sheet
    from synthetic.world import generate_world, is_complete, manifest, summary

    if args.dataset != "synthetic":
        raise UnknownNameError(f"make data: only DATASET=synthetic is generated; real datasets "
                               f"({args.dataset}) are downloaded by you and configured in "
                               "pipelines.yaml")
    cfg = load_config(args.overrides)
    root = Path(cfg.synthetic.root)
    wanted = OmegaConf.to_container(cfg.synthetic, resolve=True)
    if not args.force and is_complete(root) and manifest(root)["config"] == wanted:
        print(f"the synthetic world at {root} is complete for this configuration "
              "(--force regenerates it)")
    else:
        root = generate_world(cfg.synthetic, cfg.body.models, args.workers)
    print(summary(root))
    train = cfg.datasets["synthetic-train"]
    rows = read_bedlam(train.root, cfg.body.models, train_fraction=train.train_fraction)
    sheet = write_contact_sheet(Path(train.root), rows,
                                Path(cfg.paths.reports) / "synthetic" / "contact_sheet.png",
                                n=cfg.synthetic.contact_sheet_crops, seed=cfg.synthetic.seed)
    print(f"{int(rows.object_occluded.sum())} of {len(rows)} training rows object-occluded; "
          f"contact sheet: {sheet}")
    return 0


def _precompute(args: argparse.Namespace) -> int:
    from stores.verify import verify

    from .precompute import dataset_names, format_summary, precompute
    from synthetic.world import generate_world, is_complete

    training = args.dataset == TRAINING_STORES
    cfg = load_config_for(args.overrides,
                          lambda c: list(c.train.stores) if training else [args.dataset])
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    if training:  # real stores are precomputed on purpose (make precompute DATASET=…)
        names = [n for n in cfg.train.stores if n in cfg.datasets and not is_real(cfg, n)]
    else:
        names = dataset_names(cfg, args.dataset)
    world = Path(cfg.synthetic.root)
    in_world = any(Path(cfg.datasets[n].root).is_relative_to(world) for n in names)
    if in_world and not is_complete(world):
        print(f"the synthetic world is not generated yet: generating it in {world}")
        generate_world(cfg.synthetic, cfg.body.models)
    failed = False
    for name in names:
        summary = precompute(cfg, name)
        print(format_summary(summary))
        report = verify(summary["store"])
        print(report)
        failed |= not report.complete
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m preprocess", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    data = sub.add_parser("data", help="generate the synthetic world")
    data.add_argument("--dataset", default="synthetic")
    data.add_argument("--workers", type=int, default=None)
    data.add_argument("--force", action="store_true", help="regenerate a complete world")
    data.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    pre = sub.add_parser("precompute", help="stage one into Zarr stores")
    pre.add_argument("dataset")
    pre.add_argument("--print-config", action="store_true",
                     help="print the resolved configuration and stop")
    pre.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    args = parser.parse_args(argv)
    if args.command == "data":
        return _data(args)
    if args.command == "precompute":
        return _precompute(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(run_cli(main))
