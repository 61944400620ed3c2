"""`python -m body …`: body-model utilities.

  convert SRC.pkl DST.npz  write a chumpy-free .npz copy of an official body-model pickle
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import ArgumentParser, run_cli
from core.errors import MissingFileError

from .models import convert_to_npz


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m body", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    conv = sub.add_parser("convert", help="chumpy-free .npz copy of a body-model pickle")
    conv.add_argument("src")
    conv.add_argument("dst")
    args = parser.parse_args(argv)
    if args.command == "convert":
        if not Path(args.src).is_file():
            raise MissingFileError(f"body-model pickle not found: {args.src}")
        print(f"wrote {convert_to_npz(args.src, args.dst)}")
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
