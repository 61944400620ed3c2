"""`python -m stores verify PATH`: is a store complete and sound?

Checks the schema version and every array's shape and dtype; for every chunk marked done, that
each result chunk file is present and decodes, and that the required fields are finite (the
keypoints and sample values of kept rows, the sample indices inside the heatmap); and that every
chunk is done. Exit status 0 only for a complete, sound store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .schema import HEATMAP_HW, KEPT, result_specs
from .store import Store


@dataclass
class Report:
    path: Path
    rows: int = 0
    chunks: int = 0
    done: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems and self.done == self.chunks

    def __str__(self) -> str:
        head = (f"{self.path}: {self.rows} rows, {self.done}/{self.chunks} chunks done — "
                f"{'COMPLETE' if self.complete else 'INCOMPLETE'}")
        return "\n".join([head] + [f"  problem: {p}" for p in self.problems])


def verify(path: str | Path) -> Report:
    report = Report(Path(path))
    try:
        store = Store(path)
    except (FileNotFoundError, ValueError) as err:
        report.problems.append(str(err))
        return report
    report.rows, report.chunks = store.n_rows, store.n_chunks
    specs = result_specs(int(store.attrs["samples_per_joint"]))
    for spec in specs:
        array = store.group.get(spec.name)
        expected = (store.n_rows,) + spec.row_shape
        if array is None or array.shape != expected or np.dtype(spec.dtype) != array.dtype:
            report.problems.append(f"array '{spec.name}' missing or not {expected} {spec.dtype}")
    if report.problems:
        return report
    done = store.done()
    report.done = int(done.sum())
    for index in np.flatnonzero(done):
        report.problems += _check_chunk(store, specs, int(index))
    return report


def _check_chunk(store: Store, specs, index: int) -> list[str]:
    sl = store.chunk_slice(index)
    data, problems = {}, []
    for spec in specs:
        if not store.chunk_file(spec.name, index).exists():
            problems.append(f"chunk {index} marked done but '{spec.name}' has no chunk file")
            continue
        try:
            data[spec.name] = store.read(spec.name, sl)
        except Exception as err:  # a truncated or corrupt chunk file
            problems.append(f"chunk {index} of '{spec.name}' does not decode: {err}")
    if problems:
        return problems
    kept = data["status/reason"] == KEPT
    if not np.isfinite(data["detector/keypoints"][kept]).all():
        problems.append(f"chunk {index}: non-finite detector keypoints in kept rows")
    if not np.isfinite(data["samples/value"][kept]).all():
        problems.append(f"chunk {index}: non-finite sample values in kept rows")
    if (data["samples/index"] >= HEATMAP_HW[0] * HEATMAP_HW[1]).any():
        problems.append(f"chunk {index}: sample index outside the heatmap")
    return problems
