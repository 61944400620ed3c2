"""Checkpoints: model, optimizer, AMP scaler, step, data position, RNG states, config.

Writing: `<run>/checkpoints/step_NNNNNNNN.pt` goes to a temporary file that is fsynced, renamed
into place, and the directory fsynced; then the marker `latest` (the file's name) is written the
same way, last. A kill at any moment leaves the previous checkpoint and marker intact.

Reading: `torch.load(weights_only=True)`, with only the globals of `SAFE_GLOBALS` (numpy's array
reconstruction, for the saved numpy RNG state) on top of torch's own allow-list: no code in a
checkpoint runs. A file that needs anything else, or cannot be read (truncated, not a torch
file), raises `CheckpointError` naming the file and the global or the reason.

Resuming: the marker's checkpoint if it reads; else (marker missing, dangling or bad, or its file
unreadable) the newest intact checkpoint by step number, with one line saying what was skipped
and why. A run whose checkpoints exist but none is intact is never started over (its files would
be overwritten): `resume_point` refuses, naming the run and `train.overwrite_run=true`.
"""
from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from numpy._core import multiarray
from omegaconf import DictConfig, OmegaConf

from core.durable import fsync_path
from core.errors import BadFileError, UserError
from core.safe_torch_load import load_weights_only

PATTERN = "step_{:08d}.pt"
STEP_NAME = re.compile(r"step_(\d{8})\.pt")
MARKER = "latest"
# numpy's array pickling (np.random.get_state() holds a uint32 array), as numpy 2 and 1 name it
SAFE_GLOBALS: tuple = (
    multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType,
    (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
)
_REQUIRED = ("model", "optimizer", "step", "next_example", "config", "rng")


class CheckpointError(BadFileError):
    """A checkpoint file that is refused (it pickles a non-allowed global) or unreadable."""


class RunExistsError(UserError, FileExistsError):
    """Training would start a run over whose checkpoints exist: refused unless told to."""


def _skip(message: str) -> None:
    print(message, file=sys.stderr)


def read_checkpoint(path: str | Path, extra_globals: Iterable = ()) -> Any:
    """`torch.load(path, weights_only=True)` with `SAFE_GLOBALS` and `extra_globals` allowed
    (callables, or (stand-in, "module.name") pairs); CheckpointError in one line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return load_weights_only(path, [*SAFE_GLOBALS, *extra_globals], CheckpointError,
                             "torch's weights-only loading and train/checkpoint.py")


def _read_ours(path: Path) -> dict:
    state = read_checkpoint(path)
    missing = [k for k in _REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no {missing})")
    return state


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """`write(f)` into a temporary file beside `path`, fsync it, rename it to `path`, fsync the
    directory: `path` holds either its old or its whole new content, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def run_dir(cfg: DictConfig) -> Path:
    """`<paths.runs>/<train.run>` (default: the profile name): where a run keeps its checkpoints."""
    return Path(cfg.paths.runs) / (cfg.train.run or cfg.profile)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scaler, step: int,
                    next_example: int, cfg: DictConfig) -> Path:
    """Write the step's checkpoint, then the `latest` marker, both atomically."""
    path = run_dir / "checkpoints" / PATTERN.format(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None, "step": step,
        "next_example": next_example, "config": OmegaConf.to_container(cfg, resolve=True),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    write_atomic(path, lambda f: torch.save(state, f))
    write_atomic(path.parent / MARKER, lambda f: f.write((path.name + "\n").encode()))
    return path


def checkpoint_files(run_dir: Path) -> list[Path]:
    """The run's `step_*.pt` files, newest (highest step) first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if STEP_NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(STEP_NAME.fullmatch(p.name).group(1)), reverse=True)


def _marked(run_dir: Path, report: Callable[[str], None]) -> Path | None:
    """The checkpoint the marker names, or None (saying why when the run has checkpoints)."""
    marker = run_dir / "checkpoints" / MARKER
    if not marker.exists():
        if checkpoint_files(run_dir):
            report(f"checkpoint marker {marker} is missing; using the newest intact checkpoint")
        return None
    name = marker.read_text(errors="replace").strip()
    if not STEP_NAME.fullmatch(name):
        report(f"checkpoint marker {marker} skipped: it holds {name[:40]!r}, not a checkpoint "
               "name; using the newest intact checkpoint")
        return None
    if not (marker.parent / name).is_file():
        report(f"checkpoint marker {marker} skipped: it names {name}, which does not exist; "
               "using the newest intact checkpoint")
        return None
    return marker.parent / name


def newest_intact(run_dir: Path, report: Callable[[str], None] = _skip
                  ) -> tuple[Path, dict] | None:
    """(path, state) of the checkpoint to resume from: the marker's, else the newest that reads
    (by step number); `report` gets one line per marker or file skipped. None: no checkpoint."""
    marked = _marked(run_dir, report)
    candidates = ([marked] if marked else []) + [p for p in checkpoint_files(run_dir)
                                                 if p != marked]
    for path in candidates:
        try:
            return path, _read_ours(path)
        except CheckpointError as err:
            report(f"checkpoint skipped: {err}")
    return None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest intact checkpoint of a run (see `newest_intact`), None when it has none."""
    found = newest_intact(run_dir)
    return found[0] if found else None


def clear_checkpoints(run_dir: Path) -> int:
    """Delete the run's checkpoints, marker and temporary files; returns how many."""
    folder = run_dir / "checkpoints"
    doomed = checkpoint_files(run_dir) + [p for p in (folder / MARKER,) if p.exists()] + (
        sorted(folder.glob("*.tmp")) if folder.is_dir() else [])
    for path in doomed:
        path.unlink()
    return len(doomed)


def resume_point(run_dir: Path, overwrite: bool, quiet: bool = False
                 ) -> tuple[Path, dict] | None:
    """(path, state) to resume the run from, None to start at step 0. `overwrite`
    (`train.overwrite_run`): start over regardless (the caller clears the old checkpoints).
    Raises RunExistsError when the run has checkpoints but none is intact; `quiet`: no lines
    about skipped files (the other DDP ranks)."""
    if overwrite:
        return None
    found = newest_intact(run_dir, (lambda line: None) if quiet else _skip)
    leftovers = checkpoint_files(run_dir)
    if found is None and leftovers:
        raise RunExistsError(
            f"run {run_dir}: it has checkpoints ({leftovers[0].name} …) but none is intact; "
            "refusing to start it over and overwrite them (pass train.overwrite_run=true to "
            "start this run afresh, deleting them)")
    return found


def restore_checkpoint(state: dict, model: torch.nn.Module, optimizer=None, scaler=None
                       ) -> dict:
    """Restore a state read by `newest_intact`/`read_checkpoint`; returns {step, next_example,
    config}."""
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return {"step": state["step"], "next_example": state["next_example"],
            "config": state["config"]}
