"""Body models through `smplx` (docs/formats.md "Body models", docs/method.md §1).

Every model is built as an `smplx` *Layer* (pose given as rotation matrices), the one input
convention of this project. Files are found in a body-model root laid out as `smplx.create`
expects:

    <root>/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl       (official pickles, chumpy allowed)
    <root>/smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz     (or .pkl)
    <root>/smplx2smpl.pkl                            (dict `matrix`, dense 6890 × 10475)
      or <root>/smplx2smpl_deftrafo_setup.pkl        (dict `mtx`, sparse 6890 × 20950)
    <root>/J_regressor_h36m.npy                      (17 × 6890)

No code runs from these files: pickles go through the allow-list unpickler of
`core.safe_pickle`, `.npz` arrays are read without pickles (an object array inside, such as the
official SMPL-X files' `part2num`, through that same unpickler), and `smplx` is handed the data
already read, never a file to unpickle itself (`_smplx_reads`).
"""
from __future__ import annotations

import contextlib
import io
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import smplx
import smplx.body_models
import torch
from smplx.utils import Struct

from core.safe_pickle import load_pickle_stream

from .legacy_pickle import load_legacy_pickle

GENDERS = ("neutral", "male", "female")
SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
SMPLX_KEYS = SMPL_KEYS + (
    "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr",
    "lmk_faces_idx", "lmk_bary_coords",
)
SMPLX_FULL_SHAPE_SPACE = 400  # 300 shape + 100 expression columns
_READ_LOGS: list[set[Path]] = []


@contextlib.contextmanager
def files_read():
    """While inside, the set it yields collects every body-model file read (resolved paths):
    what a dataset reader's labels depend on (the store fingerprint hashes them)."""
    log: set[Path] = set()
    _READ_LOGS.append(log)
    try:
        yield log
    finally:
        _READ_LOGS.remove(log)


def _note_read(path: Path) -> None:
    for log in _READ_LOGS:
        log.add(path.resolve())


def _check_gender(gender: str) -> str:
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    return gender


def smpl_path(root: str | Path, gender: str = "neutral") -> Path:
    """The SMPL pickle of `gender` under a body-model root."""
    return Path(root) / "smpl" / f"SMPL_{_check_gender(gender).upper()}.pkl"


def smplx_path(root: str | Path, gender: str = "neutral") -> Path:
    """The SMPL-X file of `gender` under a body-model root (`.npz` preferred over `.pkl`)."""
    base = Path(root) / "smplx" / f"SMPLX_{_check_gender(gender).upper()}"
    npz, pkl = base.with_suffix(".npz"), base.with_suffix(".pkl")
    return pkl if pkl.exists() and not npz.exists() else npz


def _require(path: Path, data, keys: tuple[str, ...]) -> None:
    if not path.exists():
        raise FileNotFoundError(f"body model file not found: {path}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise KeyError(f"{path}: missing key(s) {missing} required by smplx")


def _npz_object(archive: zipfile.ZipFile, key: str, path: Path) -> Any:
    """An object array of an `.npz` (a pickle after the `.npy` header), by the allow-list."""
    name = key + ".npy" if key + ".npy" in archive.namelist() else key
    with archive.open(name) as member:
        major, _ = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        read_header(member)
        return load_pickle_stream(member, f"{path} (key '{key}')", encoding="latin1")


def _read_npz(path: Path) -> dict:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npz archive (a pickle or a damaged file; "
                         f"body-model .npz files are read without pickles): {err}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, expected an .npz archive of model arrays")
    data = {}
    with archive, zipfile.ZipFile(path) as raw:
        for key in archive.files:
            try:
                data[key] = archive[key]
            except ValueError:  # an object array: numpy would unpickle it
                data[key] = _npz_object(raw, key, path)
    return data


def read_model_file(path: str | Path) -> dict:
    """The arrays of an SMPL/SMPL-X `.npz` or (chumpy-free) `.pkl` file as a dict, read without
    running code from the file (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"body model file not found: {path}")
    _note_read(path)
    if path.suffix == ".npz":
        return _read_npz(path)
    return load_legacy_pickle(path)


class _NumpyHanding:
    """Stands in for `smplx.body_models`' numpy while it builds a model: its file read
    (`np.load`) returns the data already read, everything else is numpy."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def load(self, *args: Any, **kwargs: Any) -> dict:
        return self._data

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


_SMPLX_BUILD = threading.Lock()


@contextlib.contextmanager
def _smplx_reads(data: dict):
    """While inside, `smplx.SMPLX` reads `data` instead of unpickling its file (it takes no
    `data_struct` as `smplx.SMPL` does); one build at a time."""
    with _SMPLX_BUILD:
        saved = smplx.body_models.np
        smplx.body_models.np = _NumpyHanding(data)
        try:
            yield
        finally:
            smplx.body_models.np = saved


def load_smpl(root: str | Path, gender: str = "neutral", num_betas: int = 10,
              device: str | torch.device = "cpu") -> smplx.SMPLLayer:
    """SMPL (6890 vertices, 24 joints) of `gender`, read without chumpy."""
    path = smpl_path(root, gender)
    data = read_model_file(path)
    _require(path, data, SMPL_KEYS)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10 betas
        model = smplx.SMPLLayer(model_path=str(path), data_struct=Struct(**data), gender=gender,
                                num_betas=num_betas)
    return model.to(device)


def load_smplx(root: str | Path, gender: str = "neutral", num_betas: int = 11,
               device: str | torch.device = "cpu") -> smplx.SMPLXLayer:
    """SMPL-X as the paper uses it: `num_betas` (11) betas, flat hands, no PCA (docs/formats.md)."""
    path = smplx_path(root, gender)
    data = read_model_file(path)
    _require(path, data, SMPLX_KEYS)
    n_dirs = data["shapedirs"].shape[-1]
    if num_betas > 10 and n_dirs < SMPLX_FULL_SHAPE_SPACE:
        raise ValueError(
            f"{path}: 'shapedirs' has {n_dirs} columns; with fewer than "
            f"{SMPLX_FULL_SHAPE_SPACE} smplx reads column 10 on as expression, so "
            f"num_betas={num_betas} would silently mix in an expression direction")
    with _smplx_reads(data):
        model = smplx.SMPLXLayer(model_path=str(path), ext="npz", gender=gender,
                                 num_betas=num_betas, use_pca=False, flat_hand_mean=True)
    return model.to(device)


def load_smplx2smpl(root: str | Path) -> torch.Tensor:
    """The (6890, 10475) map from SMPL-X to SMPL vertices (docs/method.md §6): a coalesced sparse
    COO float32 tensor, its nonzeros in row-major order (a dense copy would be 289 MB and take
    most of the evaluator's start-up to build)."""
    root = Path(root)
    dense, upstream = root / "smplx2smpl.pkl", root / "smplx2smpl_deftrafo_setup.pkl"
    if dense.exists():
        data, key = load_legacy_pickle(dense), "matrix"
        path = dense
    elif upstream.exists():
        data, key = load_legacy_pickle(upstream), "mtx"
        path = upstream
    else:
        raise FileNotFoundError(f"neither {dense} nor {upstream} exists")
    if key not in data:
        raise KeyError(f"{path}: missing key '{key}'")
    _note_read(path)
    matrix = data[key]
    shape = matrix.shape if scipy.sparse.issparse(matrix) else np.shape(matrix)
    if len(shape) != 2 or shape[0] != 6890 or shape[1] < 10475:
        raise ValueError(f"{path}: '{key}' has shape {shape}, expected (6890, ≥10475)")
    coo = scipy.sparse.csr_matrix(matrix)[:, :10475].astype(np.float32)
    coo.eliminate_zeros()
    coo = coo.tocoo()
    indices = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), (6890, 10475),
                                   check_invariants=True).coalesce()


def load_h36m_regressor(root: str | Path) -> torch.Tensor:
    """`J_regressor_h36m.npy`: 17 Human3.6M joints from SMPL vertices (3DPW protocol)."""
    path = Path(root) / "J_regressor_h36m.npy"
    if not path.exists():
        raise FileNotFoundError(f"H36M regressor not found: {path}")
    _note_read(path)
    reg = np.load(path)
    if reg.shape != (17, 6890):
        raise ValueError(f"{path}: shape {reg.shape}, expected (17, 6890)")
    return torch.from_numpy(reg.astype(np.float32))


def convert_to_npz(src: str | Path, dst: str | Path) -> Path:
    """Write a chumpy-free `.npz` copy of a body-model pickle (sparse arrays made dense)."""
    data = load_legacy_pickle(src)
    clean = {k: (v.toarray() if scipy.sparse.issparse(v) else np.asarray(v))
             for k, v in data.items()}
    dst = Path(dst)
    np.savez(dst, **clean)
    return dst
