"""`python -m stores verify PATH [PATH …]`: check stores; exit 0 only when all are complete."""
from __future__ import annotations

import sys
from pathlib import Path

from core.cli import ArgumentParser, run_cli
from core.errors import MissingFileError

from .verify import verify


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m stores", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("verify", help="check that stores are complete and sound")
    check.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.command != "verify":
        parser.print_help()
        return 2
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise MissingFileError(f"no store at {missing[0]} (check the path; stores live in "
                               "data/stores/<dataset>.zarr)")
    reports = [verify(p) for p in args.paths]
    for report in reports:
        print(report)
    return 0 if all(r.complete for r in reports) else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
