"""Writes that survive a crash: fsync a file or folder, replace a file by a whole new one."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's entries to the disk (a folder: the renames in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npz_replacing(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """`np.savez` into `<stem>.tmp.npz` beside `path`, then rename it over `path`: a reader sees
    the old file or the whole new one."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path
