"""Checkpoints: model, optimizer, AMP scaler, step, data position, RNG states, config. Written
atomically (temporary file + rename), so a kill never leaves a torn checkpoint."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

PATTERN = "step_{:08d}.pt"


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scaler, step: int,
                    next_example: int, cfg: DictConfig) -> Path:
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
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    (run_dir / "checkpoints" / "latest").write_text(path.name + "\n")
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    marker = run_dir / "checkpoints" / "latest"
    if not marker.exists():
        return None
    path = marker.parent / marker.read_text().strip()
    return path if path.exists() else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer=None, scaler=None) -> dict:
    """Restore what was saved; returns {step, next_example, config}."""
    state = torch.load(path, map_location="cpu", weights_only=False)
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
