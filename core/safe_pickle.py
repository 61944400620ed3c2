"""Reading pickles from elsewhere as data only: the one allow-list unpickler of the project.

Unpickling an arbitrary file runs whatever functions it names, so body-model files (SMPL `.pkl`,
`smplx2smpl*.pkl`, object arrays inside `.npz`) and dataset pickles (3DPW, EMDB sequence files)
are read by `load_pickle`, which resolves only the globals of `ALLOWED` below and refuses every
other one with `UnsafePickleError` naming the file and the `module.name` it asked for:

- numpy arrays, dtypes and scalars, as numpy 1.x (`numpy.core`) and 2.x (`numpy._core`) write
  them;
- scipy.sparse csc/csr/coo matrices, under the module paths old (`scipy.sparse.csc`) and new
  (`scipy.sparse._csc`) scipy pickle them with (their state is plain arrays, set without code);
- builtin values that pickles name as globals (set, frozenset, complex, bytes, bytearray under
  Python 2 and 3 names), `collections.OrderedDict`, and `copyreg._reconstructor` for plain
  objects (protocol 0/1 pickles of the sparse matrices);
- every `chumpy.*` class (the official SMPL files hold chumpy arrays; chumpy cannot be installed
  here) becomes an inert `ChumpyStandIn` that only keeps its pickled state.

Everything else a pickle can build (dicts, lists, tuples, strings, numbers, None) needs no
global at all.
"""
from __future__ import annotations

import codecs
import collections
import copyreg
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse

from core.errors import BadFileError


class UnsafePickleError(BadFileError, pickle.UnpicklingError):
    """A data file names a class or function outside the allow-list (nothing of it ran)."""


class ChumpyStandIn:
    """What a pickled `chumpy` object becomes: its class path and pickled state, nothing else."""

    chumpy_path = "chumpy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}


def _plain_object(cls: type, base: type, state: Any) -> Any:
    """`copyreg._reconstructor` for a class whose base is `object` (protocol 0/1 pickles)."""
    if base is not object:
        raise UnsafePickleError(f"copyreg._reconstructor with base {base!r}")
    return copyreg._reconstructor(cls, base, state)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray, numeric

    found = {}
    for package in ("numpy.core", "numpy._core"):
        found[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        found[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


def _sparse_globals() -> dict[tuple[str, str], Any]:
    found = {}
    for kind in ("csc", "csr", "coo"):
        cls = getattr(scipy.sparse, f"{kind}_matrix")
        for module in (f"scipy.sparse.{kind}", f"scipy.sparse._{kind}"):
            found[(module, cls.__name__)] = cls
    return found


def _builtin_globals() -> dict[tuple[str, str], Any]:
    found = {}
    for value in (set, frozenset, complex, bytes, bytearray, object):
        for module in ("builtins", "__builtin__"):
            found[(module, value.__name__)] = value
    found[("_codecs", "encode")] = codecs.encode  # bytes in protocol-2 pickles of Python 3
    found[("collections", "OrderedDict")] = collections.OrderedDict
    for module in ("copyreg", "copy_reg"):
        found[(module, "_reconstructor")] = _plain_object
    return found


ALLOWED: dict[tuple[str, str], Any] = {**_numpy_globals(), **_sparse_globals(),
                                       **_builtin_globals()}


def _stand_in(module: str, name: str) -> type:
    return type(name, (ChumpyStandIn,), {"chumpy_path": f"{module}.{name}"})


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], where: str, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in(module, name)
        found = ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.where}: refusing to unpickle {module}.{name} (not on the allow-list of "
                "core/safe_pickle.py: data files are read as numpy/scipy arrays in plain "
                "containers only)")
        return found


def load_pickle_stream(file: IO[bytes], where: str, encoding: str = "ASCII") -> Any:
    """Unpickle `file` with the allow-list; `where` names it in errors (a path, a key)."""
    return _DataUnpickler(file, where, encoding=encoding).load()


def load_pickle(path: str | Path, encoding: str = "ASCII") -> Any:
    """The data in the pickle file `path`, read with the allow-list (see the module docstring);
    `encoding="latin1"` for Python 2 pickles holding numpy arrays."""
    path = Path(path)
    with path.open("rb") as f:
        return load_pickle_stream(f, str(path), encoding)
