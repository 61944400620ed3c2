"""Direct row reads of a sharded Zarr v3 array with one row per inner chunk: the shard's index
gives the row's byte range, numcodecs' Blosc decodes it (a row read through zarr's API costs
1.5–2.5 ms of async machinery; this costs tens of µs). Layout read: inner chunks, then an index of
(offset, nbytes) uint64 pairs and its crc32c at the end of the shard file."""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numcodecs
import numpy as np
import zarr

_NO_CHUNK = 2**64 - 1  # the sharding index's offset/nbytes of an inner chunk never written


class ShardedRows:
    """Direct row reads of a sharded array with one row per inner chunk (the layout written above):
    the shard's index gives the row's byte range, numcodecs' Blosc decodes it. Falls back to zarr
    for any other layout. Picklable; file handles are reopened in each process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        meta = json.loads((path / "zarr.json").read_text())
        self.shape = tuple(meta["shape"])
        self.dtype = np.dtype(meta["data_type"])
        self.fill = meta.get("fill_value", 0)
        self.shard_rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        self.direct = direct_layout(meta)
        self._state()

    def _state(self) -> None:
        self._pid = os.getpid()
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._index: dict[int, np.ndarray | None] = {}
        self._array = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_fds", "_index", "_array", "_pid")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._state()

    def close(self) -> None:
        for fd in self._fds.values():  # in a forked child these are the child's own copies
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        if getattr(self, "_fds", None):
            self.close()

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():
            self.close()
            self._state()
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(self.path / "c" / str(shard) / "/".join("0" * (len(self.shape) - 1)),
                         os.O_RDONLY)
            self._fds[shard] = fd
            if len(self._fds) > 16:
                os.close(self._fds.popitem(last=False)[1])
        else:
            self._fds.move_to_end(shard)
        return fd

    def _shard_index(self, shard: int, fd: int) -> np.ndarray:
        index = self._index.get(shard)
        if index is None:
            size = os.fstat(fd).st_size
            nbytes = 16 * self.shard_rows
            raw = os.pread(fd, nbytes + 4, size - nbytes - 4)  # pairs + crc32c
            index = np.frombuffer(raw[:nbytes], "<u8").reshape(self.shard_rows, 2)
            self._index[shard] = index
        return index

    def __getitem__(self, row: int) -> np.ndarray:
        if not 0 <= row < self.shape[0]:
            raise IndexError(f"row {row} outside {self.path} ({self.shape[0]} rows)")
        if not self.direct:
            if self._array is None:
                self._array = zarr.open_array(str(self.path), mode="r")
            return np.asarray(self._array[row])
        shard, inner = divmod(row, self.shard_rows)
        try:
            fd = self._fd(shard)
        except FileNotFoundError:  # a shard never written holds the fill value
            return np.full(self.shape[1:], self.fill, self.dtype)
        offset, nbytes = self._shard_index(shard, fd)[inner]
        if offset == _NO_CHUNK:
            return np.full(self.shape[1:], self.fill, self.dtype)
        data = numcodecs.blosc.decompress(os.pread(fd, int(nbytes), int(offset)))
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:])


def direct_layout(meta: dict) -> bool:
    """Whether the array is sharded with one row per inner chunk, [bytes (little), blosc] inner
    codecs and an index of [bytes (little), crc32c] at the end, under the default key encoding."""
    codecs = meta.get("codecs", [])
    if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
        return False
    conf = codecs[0]["configuration"]
    inner = [c["name"] for c in conf["codecs"]]
    little = all(c.get("configuration", {}).get("endian", "little") == "little"
                 for c in conf["codecs"] + conf["index_codecs"])
    key = meta["chunk_key_encoding"]
    return (conf["chunk_shape"] == [1] + list(meta["shape"][1:]) and inner == ["bytes", "blosc"]
            and [c["name"] for c in conf["index_codecs"]] == ["bytes", "crc32c"]
            and conf.get("index_location", "end") == "end" and little
            and key["name"] == "default"
            and key.get("configuration", {}).get("separator", "/") == "/")
