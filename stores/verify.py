"""`python -m stores verify PATH`: is a store complete and sound?

A full check reads every chunk of every array: the layout (schema version, every array's shape,
chunking and checksum codec), every label chunk and every chunk of the done row chunks' results
(present as a file, never the fill value; decodes with a good checksum), the required fields
(finite keypoints and sample values of kept rows, sample indices inside the heatmap), and that
every row chunk is done. A complete store gets a record beside it, `<name>.zarr.verified.json`:
its fingerprint and layout and a signature of its chunk files (names, sizes, times), so that
`require_verified` (training, eval) re-reads a store only when its files changed.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from zarr.codecs import Crc32cCodec

from body.cameras import DetectorCrop

from .labels import LabelRows
from .schema import KEPT, StoreError, label_array_name, result_specs
from .store import DONE, Store

RECORD_SUFFIX = ".verified.json"
LAYOUT = ("schema_version", "fingerprint", "rows", "chunk_rows", "samples_per_joint")


@dataclass(frozen=True)
class BadChunk:
    """A chunk that is missing, does not decode or holds impossible values."""

    array: str
    index: int
    problem: str

    def __str__(self) -> str:
        return f"chunk {self.index} of '{self.array}' {self.problem}"


@dataclass
class Report:
    path: Path
    rows: int = 0
    chunks: int = 0
    done: int = 0
    problems: list[str] = field(default_factory=list)  # of the store as a whole
    bad: list[BadChunk] = field(default_factory=list)  # sorted by chunk index, then array
    signature: str = ""  # of the store's files when checked (see `signature`)

    @property
    def complete(self) -> bool:
        return not self.problems and not self.bad and self.done == self.chunks

    def first_problem(self) -> str:
        """The first problem, or 'k of n chunks not done'; '' when complete."""
        if self.problems:
            return self.problems[0]
        if self.bad:
            return f"{len(self.bad)} bad chunks, the first: {self.bad[0]}"
        if self.done != self.chunks:
            return f"{self.chunks - self.done} of {self.chunks} row chunks not done"
        return ""

    def one_line(self) -> str:
        return (f"{self.path}: not a complete, verified store ({self.first_problem()}): rerun "
                f"precompute to repair it (`python -m stores verify {self.path}` lists all)")

    def __str__(self) -> str:
        head = (f"{self.path}: {self.rows} rows, {self.done}/{self.chunks} chunks done, "
                f"{len(self.bad)} bad chunks — {'COMPLETE' if self.complete else 'INCOMPLETE'}")
        lines = [head] + [f"  problem: {p}" for p in self.problems]
        lines += [f"  bad: {b}" for b in self.bad[:20]]
        if len(self.bad) > 20:
            lines.append(f"  … and {len(self.bad) - 20} more bad chunks")
        return "\n".join(lines)


def verify(path: str | Path) -> Report:
    """Read and check every chunk of the store; writes its record when it is complete."""
    report = Report(Path(path))
    try:
        store = Store(path)
    except (FileNotFoundError, ValueError) as err:
        report.problems.append(str(err))
        return report
    before = report.signature = signature(store.path)
    report.rows, report.chunks = store.n_rows, store.n_chunks
    report.problems = _layout_problems(store)
    if report.problems:
        return report
    done = _done_flags(store, report.bad)
    report.done = int(done.sum())
    results = [spec.name for spec in result_specs(int(store.attrs["samples_per_joint"]))]
    for index in range(store.n_chunks):
        for name in _label_names() if store.n_rows else []:
            _read_chunk(store, name, index, report.bad)
        if done[index]:
            report.bad += _check_results(store, results, index)
    report.bad.sort(key=lambda b: (b.index, b.array))
    if report.complete and signature(store.path) == before:
        _write_record(store, before)
    return report


def check(path: str | Path) -> Report:
    """The recorded verdict when the store's record matches its files (only the file listing is
    read), else `verify(path)`. Raises the store's own errors (none there, old schema)."""
    store = Store(path)
    current = signature(store.path)
    if _record(store) == _expected_record(store, current):
        return Report(store.path, store.n_rows, store.n_chunks, store.n_chunks,
                      signature=current)
    return verify(store.path)


def require_verified(path: str | Path) -> tuple[Store, str]:
    """(store, signature of its files) of a complete, verified store (`check`), else a one-line
    StoreError naming the store and its first bad chunk."""
    report = check(path)
    if not report.complete:
        raise StoreError(report.one_line())
    return Store(path), report.signature


def signature(path: str | Path) -> str:
    """SHA-256 of the name, size, mtime and ctime of every file of the store except the group's
    own `zarr.json` (whose attributes each run updates; its layout keys are in the record)."""
    root = Path(path)
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            file = Path(folder) / name
            rel = file.relative_to(root).as_posix()
            if rel != "zarr.json":
                st = file.stat()
                entries.append(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def record_path(store_path: str | Path) -> Path:
    """`<name>.zarr.verified.json`, beside the store."""
    path = Path(store_path)
    return path.with_name(path.name + RECORD_SUFFIX)


def _expected_record(store: Store, sig: str) -> dict:
    return {**{k: store.attrs.get(k) for k in LAYOUT}, "signature": sig}


def _record(store: Store) -> dict | None:
    try:
        return json.loads(record_path(store.path).read_text())
    except (OSError, ValueError):
        return None


def _write_record(store: Store, sig: str) -> None:
    path = record_path(store.path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_expected_record(store, sig), indent=1))
        tmp.replace(path)
    except OSError:  # a read-only location: every check then verifies in full
        tmp.unlink(missing_ok=True)


def _label_names() -> list[str]:
    return [label_array_name(f.name) for f in fields(LabelRows) if f.name != "body_model"]


def _layout_problems(store: Store) -> list[str]:
    n, rows = store.n_rows, store.chunk_rows
    specs = result_specs(int(store.attrs["samples_per_joint"]))
    expected = {s.name: ((n,) + s.row_shape, np.dtype(s.dtype)) for s in specs}
    expected.update({name: None for name in _label_names()})
    problems = []
    for name, want in expected.items():
        array = store.group.get(name)
        if array is None:
            problems.append(f"array '{name}' missing")
        elif want is not None and (array.shape != want[0] or array.dtype != want[1]):
            problems.append(f"array '{name}' is {array.shape} {array.dtype}, not "
                            f"{want[0]} {want[1]}")
        elif array.shape[0] != n or array.chunks != (rows,) + array.shape[1:]:
            problems.append(f"array '{name}' is not {n} rows in chunks of {rows}")
    flags = store.group.get(DONE)
    if flags is None or flags.shape != (-(-n // rows) if n else 1,) or flags.chunks != (1,):
        problems.append(f"array '{DONE}' missing or not one flag per row chunk")
    for name in list(expected) + [DONE]:
        array = store.group.get(name)
        if array is not None and not isinstance(array.metadata.codecs[-1], Crc32cCodec):
            problems.append(f"array '{name}' has no crc32c checksum codec")
    return problems


def _read_chunk(store: Store, name: str, index: int, bad: list[BadChunk]) -> np.ndarray | None:
    """Chunk `index` of array `name`, or None (and a BadChunk) when it is missing or corrupt."""
    if not store.chunk_file(name, index).is_file():
        bad.append(BadChunk(name, index, "has no chunk file"))
        return None
    array = store.group[name]
    rows = array.chunks[0]
    try:
        return np.asarray(array[index * rows:(index + 1) * rows])
    except Exception as err:  # a truncated or altered chunk file: checksum or codec error
        bad.append(BadChunk(name, index, f"does not decode: {str(err).splitlines()[0][:120]}"))
        return None


def _done_flags(store: Store, bad: list[BadChunk]) -> np.ndarray:
    """Done flags; a flag never written is not done, a corrupt one is not done and bad."""
    done = np.zeros(store.n_chunks, bool)
    for index in range(store.n_chunks):
        if store.chunk_file(DONE, index).is_file():
            flag = _read_chunk(store, DONE, index, bad)
            done[index] = flag is not None and bool(flag[0])
    return done


def _check_results(store: Store, names: list[str], index: int) -> list[BadChunk]:
    bad: list[BadChunk] = []
    data = {name: _read_chunk(store, name, index, bad) for name in names}
    if bad:
        return bad
    kept = data["status/reason"] == KEPT
    if not np.isfinite(data["detector/keypoints"][kept]).all():
        bad.append(BadChunk("detector/keypoints", index, "has non-finite values in kept rows"))
    if not np.isfinite(data["samples/value"][kept]).all():
        bad.append(BadChunk("samples/value", index, "has non-finite values in kept rows"))
    if (data["samples/index"] >= DetectorCrop.HEATMAP_CELLS).any():
        bad.append(BadChunk("samples/index", index, "has an index outside the heatmap"))
    return bad
