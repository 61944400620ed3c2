"""`python -m body …`: body-model utilities.

  synthesize --out DIR     write the SYNTHETIC body model (SMPL/SMPL-X file layouts) under DIR
  convert SRC.pkl DST.npz  write a chumpy-free .npz copy of an official body-model pickle
"""
from __future__ import annotations

import argparse
import sys

from .models import convert_to_npz
from .synthetic import write_synthetic_body_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m body", description=__doc__,
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
        try:
            print(f"wrote {convert_to_npz(args.src, args.dst)}")
        except (OSError, ValueError, KeyError) as err:  # a missing, refused or damaged file
            print(f"error: {err}", file=sys.stderr)
            return 2
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
