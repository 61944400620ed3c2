"""Chumpy-free, code-free reading of the official SMPL `.pkl` files (docs/formats.md "Body models").

The official files are Python 2 pickles whose arrays are partly `chumpy.ch.Ch` objects. chumpy
cannot be installed on Python 3.11 / numpy 2; the allow-list unpickler of `core.safe_pickle`
turns every `chumpy.*` class into an inert stand-in keeping the pickled state, refuses every
class outside its list (naming the file and the class), and the loader below turns each stand-in
into the numpy array it holds (chumpy keeps the value of a `Ch` in its state under `x`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.safe_pickle import ChumpyStandIn, load_pickle


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
    data = load_pickle(path, encoding="latin1")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of model arrays, found {type(data).__name__}")
    return {key: _to_numpy(value, key, path) for key, value in data.items()}
