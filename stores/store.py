"""Create, open, write and read a store of schema v2 (stores/schema.py).

Concurrency (zarr 3.1, local stores): a whole-chunk write is atomic (temporary file + rename),
but two writers of one chunk lose data; so every task owns whole row chunks of every result array
and its own one-element chunk of `status/chunk_done`, written only after the chunk's data files
are fsync'ed. A chunk therefore reads as done only when its data is complete and durable.
Every array's codec chain ends in zarr's crc32c codec: a chunk whose bytes changed fails to decode.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from core.durable import fsync_path

from .labels import LabelRows
from .schema import (
    SCHEMA_VERSION, ArraySpec, StoreError, label_array_name, result_specs, row_dtype,
)

# the checksum of each chunk's encoded bytes, last in every chain (the Zarr v3 `crc32c` codec)
CHECKSUM = Crc32cCodec()
COMPRESSOR = [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), CHECKSUM]
# Codecs of the sample arrays, by measured bytes per crop on the synthetic stores (benchmarks:
# sample_bytes_per_crop). Only codecs of the Zarr v3 specification (bytes, blosc, crc32c), so any
# v3 implementation opens the stores (tests/stores/test_store_interop.py reads one with
# tensorstore).
# The sorted indices: byte shuffling puts their slowly rising high bytes together (1,349 B per
# crop at zstd level 5, against 1,170 B with numcodecs' non-standard Delta filter: +2.8 % of the
# whole crop). Byte shuffling suits the float16 values; the distances repeat with their (sorted,
# duplicated) samples. zstd level 3 elsewhere: level 9 saves another 18 % but costs 4.6 ms per
# crop to write, level 3 0.14 ms.
CODECS = {
    "default": {"compressors": COMPRESSOR},
    "sorted_index": {"compressors": [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
                                     CHECKSUM]},
    "byte_shuffled": {"compressors": [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
                                      CHECKSUM]},
    "repeating": {"compressors": [BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle"),
                                  CHECKSUM]},
}
DONE = "status/chunk_done"
# zarr skips chunks equal to the fill value by default, but here a written chunk must exist as a
# file (verify tells a missing chunk from a written one). The setting is per process, not stored
# with the array, so it is made here, where every store is opened.
zarr.config.set({"array.write_empty_chunks": True})


class Store:
    """A stage-one store on the local file system."""

    def __init__(self, path: str | Path, mode: str = "r") -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise FileNotFoundError(f"no store at {self.path}")
        version = schema_version(self.path)
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: a schema v{version} store, this code reads schema "
                             f"v{SCHEMA_VERSION} (chunk checksums): rerun precompute for it "
                             "(or delete it)")
        self.group = zarr.open_group(str(self.path), mode=mode)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, rows: LabelRows, attrs: dict, chunk_rows: int,
               samples: int) -> Store:
        """Write the labels and the empty result arrays; appears at `path` only when complete."""
        path = Path(path)
        tmp = path.with_name(path.name + ".creating")
        shutil.rmtree(tmp, ignore_errors=True)
        group = zarr.open_group(str(tmp), mode="w")
        n = len(rows)
        n_chunks = max(1, -(-n // chunk_rows))
        for f in fields(rows):
            if f.name == "body_model":
                continue
            values = getattr(rows, f.name)
            array = group.create_array(label_array_name(f.name), shape=values.shape,
                                       chunks=(chunk_rows,) + values.shape[1:],
                                       dtype=row_dtype(values), compressors=COMPRESSOR)
            array[:] = values
        for spec in result_specs(samples):
            _create(group, spec, n, chunk_rows)
        group.create_array(DONE, shape=(n_chunks,), chunks=(1,), dtype="uint8", fill_value=0,
                           compressors=COMPRESSOR)
        group.attrs.update({**attrs, "schema_version": SCHEMA_VERSION, "rows": n,
                            "chunk_rows": chunk_rows, "samples_per_joint": samples,
                            "body_model": rows.body_model})
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        return cls(path, mode="r+")

    # -- layout -----------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @property
    def n_rows(self) -> int:
        return int(self.group.attrs["rows"])

    @property
    def chunk_rows(self) -> int:
        return int(self.group.attrs["chunk_rows"])

    @property
    def n_chunks(self) -> int:
        return int(self.group[DONE].shape[0])

    def chunk_slice(self, index: int) -> slice:
        return slice(index * self.chunk_rows, min((index + 1) * self.chunk_rows, self.n_rows))

    def done(self) -> np.ndarray:
        """(n_chunks,) bool: which chunks are complete (an unreadable flag counts as not done)."""
        flags = np.zeros(self.n_chunks, bool)
        for i in range(self.n_chunks):
            try:
                flags[i] = bool(self.group[DONE][i])
            except Exception:  # a flag chunk torn by a crash outside zarr's atomic write
                flags[i] = False
        return flags

    # -- tasks ------------------------------------------------------------------------------
    def write_chunk(self, index: int, results: dict[str, np.ndarray]) -> None:
        """Write chunk `index` of every result array, make it durable, then mark it done."""
        sl = self.chunk_slice(index)
        for name, values in results.items():
            self.group[name][sl] = values
            self._fsync_chunk(name, index)
        self.group[DONE][index] = 1
        self._fsync_chunk(DONE, index)

    def discard_chunk(self, name: str, index: int) -> None:
        """Remove chunk `index` of array `name` (a bad one, before it is rewritten: zarr reads
        the chunk it partly overwrites, at the store's last row chunk)."""
        self.chunk_file(name, index).unlink(missing_ok=True)

    def clear_done(self, index: int) -> None:
        """Mark chunk `index` not done (its results are recomputed by the next run)."""
        self.group[DONE][index] = 0
        self._fsync_chunk(DONE, index)

    def write_labels(self, index: int, rows: LabelRows, names: list[str]) -> None:
        """Rewrite chunk `index` of the label arrays `names` (`labels/…`) from `rows`, all rows
        of the store (a repair: labels are otherwise written once, at creation)."""
        sl = self.chunk_slice(index)
        for name in names:
            self.group[name][sl] = getattr(rows, name.split("/", 1)[1])[sl]
            self._fsync_chunk(name, index)

    def _fsync_chunk(self, name: str, index: int) -> None:
        path = self.chunk_file(name, index)
        fsync_path(path)
        fsync_path(path.parent)

    def chunk_file(self, name: str, index: int) -> Path:
        array = self.group[name]
        return self.path / name / array.metadata.encode_chunk_key(
            (index,) + (0,) * (array.ndim - 1))

    # -- reading ----------------------------------------------------------------------------
    def labels(self, rows: slice = slice(None)) -> LabelRows:
        values = {}
        for f in fields(LabelRows):
            if f.name != "body_model":
                values[f.name] = np.asarray(self.group[label_array_name(f.name)][rows])
        return LabelRows(self.group.attrs["body_model"], **values)

    def read(self, name: str, rows: slice = slice(None)) -> np.ndarray:
        return np.asarray(self.group[name][rows])


def schema_version(path: str | Path) -> int | None:
    """The `schema_version` attribute of the store at `path` (None when it has none)."""
    meta = json.loads((Path(path) / "zarr.json").read_text())
    return meta.get("attributes", {}).get("schema_version")


def _create(group, spec: ArraySpec, n: int, chunk_rows: int) -> None:
    group.create_array(spec.name, shape=(n,) + spec.row_shape,
                       chunks=(chunk_rows,) + spec.row_shape, dtype=spec.dtype,
                       fill_value=spec.fill, **CODECS[spec.codec])
