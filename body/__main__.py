"""`python -m body …`: body-model utilities.

  synthesize --out DIR     write the SYNTHETIC body model (SMPL/SMPL-X file layouts) under DIR
  convert SRC.pkl DST.npz  write a chumpy-free .npz copy of an official body-model pickle
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import ArgumentParser, run_cli
from core.errors import MissingFileError

from .models import convert_to_npz
from .synthetic import write_synthetic_body_models


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m body", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    synth = sub.add_parser("synthesize", help="write the synthetic body model files")
    synth.add_argument("--out", required=True)
    conv = sub.add_parser("convert", help="chumpy-free .npz copy of a body-model pickle")
    conv.add_argument("src")
    conv.add_argument("dst")
    args = parser.parse_args(argv)
    if args.command == "synthesize":
        print(f"synthetic body models written to {write_synthetic_body_models(args.out)}")
    elif args.command == "convert":
        if not Path(args.src).is_file():
            raise MissingFileError(f"body-model pickle not found: {args.src}")
        print(f"wrote {convert_to_npz(args.src, args.dst)}")
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
