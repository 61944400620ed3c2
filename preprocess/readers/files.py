"""The readers' checks on a dataset's files, before any work.

`require_dir`: a directory every row needs (images, masks) is there, or the error names it (single
missing images or masks are stage one's to report, as skip reasons per row).

The dataset pickles (3DPW sequence files, EMDB sequence files) are read safely: unpickling runs
whatever the file names, so they are read only (1) from inside the dataset's configured root (a
path whose real location, symbolic links followed, lies elsewhere is refused) and (2) as data,
by the allow-list unpickler of `core.safe_pickle` (numpy arrays and scalars inside plain
containers): any other class a file names is refused, naming the file and the class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import BadFileError, MissingFileError
from core.safe_pickle import load_pickle


def require_dir(path: Path, what: str) -> None:
    """Raise naming `path` when the directory `what` ("AGORA mask directory", …) is missing."""
    if not path.is_dir():
        raise MissingFileError(f"{what} not found: {path}")


def inside_root(path: str | Path, root: str | Path) -> Path:
    """`path`, checked to lie (symbolic links followed) inside the dataset root `root`."""
    path, root = Path(path), Path(root)
    real, real_root = path.resolve(), root.resolve()
    if not real.is_relative_to(real_root):
        raise BadFileError(f"{path} resolves to {real}, outside the dataset root {real_root}: "
                           "dataset pickles are read only from inside the configured root (point "
                           "the dataset's root at the directory that really holds the files)")
    return path


def load_dataset_pickle(path: str | Path, root: str | Path, encoding: str = "ASCII") -> Any:
    """The data in the pickle `path` under the dataset root `root` (see the module docstring)."""
    return load_pickle(inside_root(path, root), encoding)
