"""Errors of the user's making: a file, a key or a value they gave or must provide.

`core.cli.run_cli` prints these as one line `error: …` and exits 2; every other exception is an
internal error and keeps its traceback. Each class also derives from the built-in exception the
code raised before, so `except KeyError` / `pytest.raises(FileNotFoundError)` keep working.
A message names the file or key and says what to do.
"""
from __future__ import annotations


class UserError(Exception):
    """Base class: a user error, reported in one line without a traceback."""

    def __str__(self) -> str:  # KeyError would quote its message
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, ValueError):
    """A configuration value or an override that is malformed, of the wrong type or range."""


class UnknownNameError(UserError, KeyError):
    """An unknown configuration key, dataset, profile or variant."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user gives or must provide (dataset, store, checkpoint) is absent."""


class BadFileError(UserError, ValueError):
    """A user-provided file whose content is not what its format says (a missing key, a shape)."""


class MissingKeyInFileError(UserError, KeyError):
    """A user-provided file that lacks a key its format requires."""


class UsageError(UserError):
    """A command line that does not parse: an unknown command or option, a missing argument."""
