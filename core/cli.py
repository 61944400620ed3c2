"""The one wrapper of every `python -m <package>` entry point: user errors in one line.

`run_cli(main)` runs `main(argv)`; a `UserError` (core/errors.py) becomes `error: <message>` on
stderr, in one line, and exit code 2; any other exception is an internal error and propagates
with its traceback. `ArgumentParser` turns argparse's usage errors into `UsageError`.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .errors import UsageError, UserError

USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)  # reported without a traceback
USER_ERROR_EXIT = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise `UsageError` (one line) instead of printing the usage;
    its subcommand parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def one_line(err: BaseException) -> str:
    """The error's message with its whitespace (newlines included) collapsed."""
    return " ".join(str(err).split()) or type(err).__name__


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """`main(argv)`'s exit code, or 2 after printing a user error as `error: …` on stderr."""
    try:
        return main(argv)
    except USER_ERRORS as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return USER_ERROR_EXIT
