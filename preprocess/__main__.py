"""`python -m preprocess COMMAND [key=value …]`: stage one.

  data [--dataset synthetic] [--workers N]   generate the synthetic world (docs/synthetic_world.md:
                                             BEDLAM, EMDB, AGORA and 3DPW layouts) and its contact
                                             sheet under data/reports/synthetic/
  precompute DATASET                         detector, heatmap samples and mask distances into
                                             <stores>/<dataset>.zarr (a group: each member);
                                             resumes an interrupted run. DATASET=train.stores:
                                             the synthetic-world stores of train.stores (make
                                             train precomputes them first)
  import-reference --npz F --samples D --images D --name NAME [--masks D] [--layout L]
                   [--split S] [--root D]        the reference release's annotation file and
                                             heatmap samples into <stores>/NAME.zarr (resumes;
                                             docs/real_data.md)
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
    from synthetic.world import generate_world, is_current, summary

    if args.dataset != "synthetic":
        raise UnknownNameError(f"make data: only DATASET=synthetic is generated; real datasets "
                               f"({args.dataset}) are downloaded by you and configured in "
                               "pipelines.yaml")
    cfg = load_config(args.overrides)
    root = Path(cfg.synthetic.root)
    wanted = OmegaConf.to_container(cfg.synthetic, resolve=True)
    if not args.force and is_current(root, wanted):
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


def _import_reference(args: argparse.Namespace) -> int:
    from stores.verify import verify

    from .precompute import format_summary
    from .reference_import import ImportSource, import_reference

    cfg = load_config(args.overrides)
    source = ImportSource.checked(args.npz, args.samples, args.images, args.masks, args.layout,
                                  args.split, args.root)
    tolerance = {} if args.grid_tolerance is None else {"grid_tolerance": args.grid_tolerance}
    summary = import_reference(cfg, args.name, source, **tolerance)
    print(format_summary(summary))
    for key, used in summary["defaults"].items():
        print(f"  missing key '{key}': {used}")
    report = verify(summary["store"])
    print(report)
    return 0 if report.complete else 1


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
    ref = sub.add_parser("import-reference", help="the reference release's files into a store")
    ref.add_argument("--npz", required=True, help="the release's annotation file")
    ref.add_argument("--samples", required=True, help="heatmap_samples/<dataset>/ of that file")
    ref.add_argument("--images", required=True, help="the folder its imgname paths start from")
    ref.add_argument("--masks", default=None, help="the layout's person-mask folder")
    ref.add_argument("--name", required=True, help="store name: <paths.stores>/NAME.zarr")
    ref.add_argument("--layout", default="bedlam", choices=["bedlam", "agora", "emdb", "3dpw"])
    ref.add_argument("--split", default=None, choices=["train", "test"],
                     help="default: the layout's (bedlam, agora: train; emdb, 3dpw: test)")
    ref.add_argument("--root", default=None, help="store root (default: the deepest folder "
                     "holding the images and masks)")
    ref.add_argument("--grid-tolerance", type=float, default=None,
                     help="heatmap px a sample may lie from a heatmap pixel centre (0.05)")
    ref.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    args = parser.parse_args(argv)
    if args.command == "import-reference":
        return _import_reference(args)
    if args.command == "data":
        return _data(args)
    if args.command == "precompute":
        return _precompute(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(run_cli(main))
