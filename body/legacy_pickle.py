"""Chumpy-free reading of the official SMPL `.pkl` files (FORMATS.md "Body models").

The official files are Python 2 pickles whose arrays are partly `chumpy.ch.Ch` objects. chumpy
cannot be installed on Python 3.11 / numpy 2, so the unpickler below resolves every `chumpy.*`
class to a stand-in that keeps the pickled state, and the loader turns each stand-in into the
numpy array it holds (chumpy keeps the value of a `Ch` in its state under `x`).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np


class ChumpyStandIn:
    """What a pickled `chumpy` object becomes: its class name and pickled state, nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (ChumpyStandIn,), {"chumpy_path": f"{module}.{name}"})
        return super().find_class(module, name)


def _to_numpy(value: Any, key: str, path: Path) -> Any:
    if not isinstance(value, ChumpyStandIn):
        return value
    if "x" not in value.state:
        raise ValueError(
            f"{path}: key '{key}' is a chumpy {value.chumpy_path} without a stored value 'x'; "
            "convert this file with chumpy installed (python 2) or use the npz release"
        )
    return np.asarray(value.state["x"])


def load_legacy_pickle(path: str | Path) -> dict[str, Any]:
    """Load a (possibly chumpy-laden, latin-1) body-model pickle as a dict of plain arrays."""
    path = Path(path)
    with path.open("rb") as f:
        data = _LegacyUnpickler(f, encoding="latin1").load()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of model arrays, found {type(data).__name__}")
    return {key: _to_numpy(value, key, path) for key, value in data.items()}
