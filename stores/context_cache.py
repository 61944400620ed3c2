"""Context crops: the pixels (and heatmap samples) of every store row, cut once, so that training
never decodes a full frame.

`<store path without .zarr>.context.zarr` is a companion Zarr v3 group of one store, rows aligned
with the store's rows:

| array | shape, dtype | meaning |
|---|---|---|
| `image` | (N, C, C, 4) uint8 | RGB context crop of the row's box (zero outside the image) and, as
  a fourth channel, the union person mask (1 person, 0 not or outside the image; all 0 without a
  mask) |
| `samples` | (N, 2, 17, S) uint16 | [0]: the store's `samples/index`; [1]: the bits of its float16
  `samples/mask_distance` (one row read gives both) |

The context of a box (center c, scale s, side b = 200·s) is the square of side b·C/crop_size
(= context_factor·b when C = context_factor·crop_size is whole) around c, resampled to C×C with
`body.cameras.crop_matrix` — at exactly the pixel density of the unjittered model crop, so the
model crop of the original box is a pure shift of the context. Frame and mask go through one
bilinear 4-channel warp: the 0/1 mask channel rounds to the mask thresholded at ½ (the nearest-
neighbour mask up to boundary pixels). The affine is not stored: `context_matrix(center, scale)`
recomputes it. Rows that the store does not keep are zeros.

Layout, chosen by measurement (2 cores, synthetic 640×360 PNG frames; numbers in the data-path
issue's report). Decoding a full frame and its mask costs ≈ 7.4 ms per example; a cached row
≈ 0.05 ms. One row per inner chunk inside shards of `shard_rows` rows (few files, row reads),
Blosc lz4: it decodes a 280² crop in ≈ 20 µs against 350–600 µs for zstd, which saves only
12–18 % on these images; PNG (≈ 2.8 ms) is too slow, JPEG (≈ 0.3 ms, 7–10× smaller) is lossy and
would break the "equals a direct crop" contract. Reading a row through zarr's API costs 1.5–2.5 ms
(its async machinery), so `ContextCache` reads it straight from the shard file (the zarr v3
sharding layout: inner chunks, then an index of (offset, nbytes) uint64 pairs + crc32c at the
end) and decodes it with numcodecs' Blosc. The mask rides in the image's fourth channel because
cv2's 4-channel bilinear warp is ≈ 2.5× faster than its 3-channel one (≈ 100 vs 250 µs for a 224
crop): one read, one decode and one warp give both. The heatmap samples are copied from the store
because a row read there decodes a whole store chunk (≈ 1 ms per array).

The cache records the store's `fingerprint`, the signature of its files (`stores.verify.signature`:
any rewritten chunk changes it), `crop_size` and the context size; a build for a store whose
fingerprint, signature (or geometry) differs rebuilds it. Building and opening a cache both
require a complete, verified store (`stores.verify.require_verified`: fast while the store's
verification record matches its files), so no cache is made from, or read beside, a store with
a missing or corrupt chunk. Build: a process pool, one task per shard,
each decoding every full frame and mask of its rows once; written in a temporary directory and
renamed into place when complete.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import cv2
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from body.cameras import crop_matrix
from stores.images import read_image
from stores.masks import union_mask
from stores.schema import KEPT
from stores.store import Store
from stores.verify import require_verified

CACHE_VERSION = 1
SUFFIX = ".context.zarr"
CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
SHARD_ROWS = 256
_HOST = socket.gethostname().replace("-", "_")
_NO_CHUNK = 2**64 - 1  # the sharding index's offset/nbytes of an inner chunk never written


def cache_path(store_path: str | Path) -> Path:
    """`<store path without .zarr>.context.zarr`."""
    path = Path(store_path)
    stem = path.name[:-5] if path.name.endswith(".zarr") else path.name
    return path.with_name(stem + SUFFIX)


def context_size(crop_size: int = 224, context_factor: float = 1.25) -> int:
    """C = round(context_factor · crop_size)."""
    return int(round(context_factor * crop_size))


def context_matrix(center, scale, crop_size: int, size: int) -> np.ndarray:
    """Affine image px -> context px (..., 2, 3): the crop map of the box of side
    200·scale·size/crop_size around `center`, at `size` px."""
    return crop_matrix(center, np.asarray(scale, dtype=float) * size / crop_size, size)


def _specs(n: int, size: int, samples: int) -> dict[str, tuple[tuple[int, ...], str]]:
    return {"image": ((n, size, size, 4), "uint8"), "samples": ((n, 2, 17, samples), "uint16")}


def _expected_attrs(store: Store, signature: str, crop_size: int, size: int) -> dict:
    return {"cache_version": CACHE_VERSION, "store_fingerprint": store.attrs.get("fingerprint"),
            "store_signature": signature, "crop_size": int(crop_size), "context_size": int(size)}


def _is_current(path: Path, expected: dict) -> bool:
    meta = path / "zarr.json"
    if not meta.exists():
        return False
    attrs = json.loads(meta.read_text()).get("attributes", {})
    return all(attrs.get(k) == v for k, v in expected.items()) and attrs.get("complete", False)


def build_context_cache(store_path: str | Path, crop_size: int = 224,
                        context_factor: float = 1.25, workers: int = 2,
                        shard_rows: int = SHARD_ROWS) -> Path:
    """Build (or keep, when current) the context cache of a complete, verified store; returns its
    path. A store that is not complete and verified raises a one-line `StoreError`."""
    store, signature = require_verified(store_path)
    size = context_size(crop_size, context_factor)
    target = cache_path(store.path)
    expected = _expected_attrs(store, signature, crop_size, size)
    if _is_current(target, expected):
        return target
    if "mask_rule" not in store.attrs:
        raise ValueError(f"{store.path}: no 'mask_rule' attribute (made by an older stage one): "
                         "precompute it again")
    start = time.perf_counter()
    _remove_dead_builds(target)
    tmp = target.with_name(f"{target.name}.building-{_HOST}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w")
    n, samples = store.n_rows, int(store.attrs["samples_per_joint"])
    shard_rows = max(1, min(shard_rows, n))
    for name, (shape, dtype) in _specs(n, size, samples).items():
        group.create_array(name, shape=shape, dtype=dtype, chunks=(1,) + shape[1:],
                           shards=(shard_rows,) + shape[1:], compressors=CODEC, fill_value=0)
    n_shards = -(-n // shard_rows)
    args = [(str(store.path), str(tmp), i, shard_rows, crop_size, size, store.attrs["mask_rule"])
            for i in range(n_shards)]
    decoded = 0
    if workers <= 1 or n_shards <= 1:
        decoded = sum(_build_shard(*a) for a in args)
    else:
        with ProcessPoolExecutor(min(workers, n_shards), mp_context=_mp_context()) as pool:
            for future in as_completed([pool.submit(_build_shard, *a) for a in args]):
                decoded += future.result()
    kept = store.read("status/reason") == KEPT
    group.attrs.update({**expected, "context_factor": float(context_factor), "rows": n,
                        "shard_rows": shard_rows, "samples_per_joint": samples,
                        "store": str(store.path.resolve()), "frames_decoded": decoded,
                        "frames": len(set(store.read("labels/image")[kept])),
                        "build_seconds": round(time.perf_counter() - start, 2),
                        "complete": True})
    _replace(tmp, target)
    return target


def _mp_context():
    """fork where available (no re-import of the caller's main module; zarr resets its event loop
    in forked children), else spawn."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _remove_dead_builds(target: Path) -> None:
    """Remove what killed builds on this host left behind (their process is gone)."""
    for leftover in target.parent.glob(f"{target.name}.*-{_HOST}-*"):
        try:
            os.kill(int(leftover.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _replace(tmp: Path, target: Path) -> None:
    """Move the finished build into place (the old cache, if any, is removed after)."""
    old = target.with_name(f"{target.name}.old-{_HOST}-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _build_shard(store_path: str, cache: str, index: int, shard_rows: int, crop_size: int,
                 size: int, mask_rule: dict) -> int:
    """Cut the context crops of one shard's rows and write the shard; returns frames decoded."""
    cv2.setNumThreads(1)
    store = Store(store_path)
    sl = slice(index * shard_rows, min((index + 1) * shard_rows, store.n_rows))
    labels = store.labels(sl)
    keep = store.read("status/reason", sl) == KEPT
    root = Path(store.attrs["root"])
    n = sl.stop - sl.start
    images = np.zeros((n, size, size, 4), np.uint8)
    matrices = context_matrix(labels.center.astype(np.float64), labels.scale.astype(np.float64),
                              crop_size, size)
    decoded = 0
    for name in dict.fromkeys(labels.image[keep]):  # each frame once, in row order
        rows = np.flatnonzero(keep & (labels.image == name))
        frame = read_image(root, name)
        if frame is None:
            raise OSError(f"{root / name} is unreadable, but the store kept its rows")
        decoded += 1
        mask_names = labels.mask[rows]
        rgba = {}
        for m in dict.fromkeys(mask_names):
            rgba[m] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGBA)
            rgba[m][..., 3] = _read_mask(root, m, mask_rule) if m else 0
        for i, m in zip(rows, mask_names):
            images[i] = cut_context(rgba[m], matrices[i], size)
    group = zarr.open_group(cache, mode="r+")
    group["image"][sl] = images
    distance = store.read("samples/mask_distance", sl).astype(np.float16).view(np.uint16)
    group["samples"][sl] = np.stack([store.read("samples/index", sl), distance], 1)
    return decoded


def cut_context(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The size × size context of a frame (H, W, channels) through its `context_matrix` (2, 3):
    bilinear, zero outside the frame."""
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _read_mask(root: Path, name: str, rule: dict) -> np.ndarray:
    gray = read_image(root, name, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise OSError(f"{root / name} is unreadable, but the store kept its rows")
    return union_mask(gray, **rule)


class _ShardedRows:
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
        self.direct = _direct_layout(meta)
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


def _direct_layout(meta: dict) -> bool:
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


class ContextCache:
    """A built context cache, read row by row (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.attrs = json.loads((self.path / "zarr.json").read_text()).get("attributes", {})
        self.crop_size = int(self.attrs["crop_size"])
        self.size = int(self.attrs["context_size"])
        self.rows = int(self.attrs["rows"])
        self._arrays = {name: _ShardedRows(self.path / name)
                        for name in ("image", "samples")}

    def matrix(self, center, scale) -> np.ndarray:
        """Affine image px -> context px (..., 2, 3) of rows with these boxes."""
        return context_matrix(center, scale, self.crop_size, self.size)

    def context(self, row: int) -> np.ndarray:
        """(C, C, 4) uint8 of a row: RGB, then the 0/1 person mask (read-only)."""
        return self._arrays["image"][row]

    def samples(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(heatmap index (17, S) uint16, mask distance (17, S) float16) of a row."""
        both = self._arrays["samples"][row]
        return both[0], both[1].view(np.float16)


def context_to_crop(image_to_crop: np.ndarray, image_to_context: np.ndarray) -> np.ndarray:
    """Affine context px -> crop px from the two image-px maps."""
    back = cv2.invertAffineTransform(image_to_context)
    return image_to_crop @ np.vstack([back, [0.0, 0.0, 1.0]])


def open_context_cache(store_path: str | Path) -> ContextCache:
    """The context cache of a complete, verified store; fails, naming the fix, when the store is
    not (`StoreError`) or the cache is missing or stale."""
    store, signature = require_verified(store_path)
    path = cache_path(store.path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"no context cache at {path}: build_context_cache({store.path})")
    cache = ContextCache(path)
    if (cache.attrs.get("store_fingerprint") != store.attrs.get("fingerprint")
            or cache.attrs.get("store_signature") != signature
            or cache.attrs.get("cache_version") != CACHE_VERSION
            or not cache.attrs.get("complete")):
        raise ValueError(f"{path} is stale (made from another version or content of the "
                         f"store): rebuild it with build_context_cache({store.path})")
    return cache
