"""Context crops: the pixels (and heatmap samples) of every store row, cut once, so that training
never decodes a full frame.

`<store path without .zarr>.context.zarr` is a companion Zarr v3 group of one store, rows aligned
with the store's rows (format version 2):

| array | shape, dtype | meaning |
|---|---|---|
| `context` | (N, W) uint8 | one encoded row, zero-padded to W = 4 + C²/8 + 3·C² + 2048: the JPEG's
  length n (uint32, little-endian), the C×C union person mask as a packed bit plane
  (`np.packbits`, row-major; 1 person, 0 not or outside the image; all 0 without a mask), then
  the n bytes of the JPEG (quality `JPEG_QUALITY`, 4:2:0) of the RGB context crop (zero outside
  the image). n = 0: a row the store does not keep |
| `samples` | (N, 2, 17, S) uint16 | [0]: the store's `samples/index`; [1]: the bits of its
  float16 `samples/mask_distance` (one row read gives both) |

The context of a box (center c, scale s, side b = 200·s) is the square of side b·C/crop_size
(= context_factor·b when C = context_factor·crop_size is whole) around c, resampled to C×C with
`body.cameras.crop_matrix` — at exactly the pixel density of the unjittered model crop, so the
model crop of the original box is a pure shift of the context. Frame and mask go through one
bilinear 4-channel warp: the 0/1 mask channel rounds to the mask thresholded at ½. The mask is
stored exactly; the RGB crop is JPEG-coded (mean absolute error ≈ 2 grey levels). The affine is
not stored: `context_matrix(center, scale)` recomputes it.

Why JPEG at quality 90 (measured on 280² crops; docs/real_data.md "Expected disk and time"):
version 1 kept raw RGBA rows (≈ 208 KB per row, ≈ 190 GB for BEDLAM). On photographs, quality
75/85/90/95 give ≈ 15/20/24/34 KB and a mean absolute error of 3.4/2.7/2.2/1.6 grey levels; 90 is
the highest quality whose row (with mask and samples, ≈ 28 KB) stays under 30 KB. 4:4:4 chroma
costs 16 % more for 0.3 less error; WebP is smaller but decodes 3–30× slower. The source frames of
3DPW and EMDB are JPEGs already.

Both arrays hold one row per inner chunk inside shards of `shard_rows` rows (Blosc zstd, which
squeezes the padding to a few bytes and passes the JPEG through), read straight from the shard
file (`stores.sharded_rows`). Decoding relies on OpenCV's bundled libjpeg-turbo (recorded as
`jpeg_library`): its default decoder is integer arithmetic (accurate integer IDCT, integer
upsampling), so one library version gives the same bytes on every CPU; the opencv-python wheel
builds it without its SIMD code, and builds with SIMD promise the same bytes as the C code.

The cache records the store's `fingerprint`, the signature of its files (`stores.verify.signature`:
any rewritten chunk changes it), `crop_size`, the context size and the JPEG quality; a build for a
store whose fingerprint, signature (or geometry, or quality) differs rebuilds it. Building and
opening a cache both require a complete, verified store (`stores.verify.require_verified`), so no
cache is made from, or read beside, a store with a missing or corrupt chunk. Build: a process
pool, one task per shard, each decoding every full frame and mask of its rows once; written in a
temporary directory and renamed into place when complete (a killed build leaves no cache that
looks complete).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import cv2
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from body.cameras import crop_matrix
from stores.images import read_image
from stores.masks import union_mask
from stores.sharded_rows import ShardedRows
from stores.schema import KEPT
from stores.store import Store
from stores.verify import require_verified

CACHE_VERSION = 2  # 1: raw RGBA rows (Blosc lz4), ≈ 200 KB per row
SUFFIX = ".context.zarr"
CODEC = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
JPEG_QUALITY = 90
JPEG_LIBRARY = next((line.split(":", 1)[1].strip()
                     for line in cv2.getBuildInformation().splitlines()
                     if line.strip().startswith("JPEG:")), "unknown")
SHARD_ROWS = 256
_HOST = socket.gethostname().replace("-", "_")


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


def row_width(size: int) -> int:
    """W of the `context` array: the length word, the packed mask and room for any JPEG (the raw
    RGB size plus 2 KB of headers bounds a JPEG of quality ≤ 95; the padding costs no disk)."""
    return 4 + -(-size * size // 8) + 3 * size * size + 2048


def encode_context(bgr: np.ndarray, mask: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """(W,) uint8 row of a (C, C, 3) BGR crop and its (C, C) 0/1 mask (layout: module docstring)."""
    size = mask.shape[0]
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    bits = np.packbits(mask.reshape(-1) != 0)
    row = np.zeros(row_width(size), np.uint8)
    if not ok or 4 + bits.size + jpeg.size > row.size:
        raise ValueError(f"JPEG of a {size}² context crop at quality {quality} does not fit")
    row[:4] = np.frombuffer(np.uint32(jpeg.size).astype("<u4").tobytes(), np.uint8)
    row[4:4 + bits.size] = bits
    row[4 + bits.size:4 + bits.size + jpeg.size] = jpeg.reshape(-1)
    return row


def decode_context(row: np.ndarray, size: int) -> np.ndarray:
    """(C, C, 4) uint8 RGB + 0/1 mask of a `context` row (all zeros for an empty row)."""
    n = int(row[:4].view("<u4")[0])
    if n == 0:
        return np.zeros((size, size, 4), np.uint8)
    start = 4 + -(-size * size // 8)
    rgba = cv2.cvtColor(cv2.imdecode(row[start:start + n], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGBA)
    rgba[..., 3] = np.unpackbits(row[4:start], count=size * size).reshape(size, size)
    return rgba


def _specs(n: int, size: int, samples: int) -> dict[str, tuple[tuple[int, ...], str]]:
    return {"context": ((n, row_width(size)), "uint8"),
            "samples": ((n, 2, 17, samples), "uint16")}


def _expected_attrs(store: Store, signature: str, crop_size: int, size: int) -> dict:
    return {"cache_version": CACHE_VERSION, "store_fingerprint": store.attrs.get("fingerprint"),
            "store_signature": signature, "crop_size": int(crop_size), "context_size": int(size),
            "jpeg_quality": JPEG_QUALITY}


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
                        "jpeg_library": JPEG_LIBRARY,
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
    rows_out = np.zeros((n, row_width(size)), np.uint8)
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
        bgra = {}
        for m in dict.fromkeys(mask_names):
            bgra[m] = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
            bgra[m][..., 3] = _read_mask(root, m, mask_rule) if m else 0
        for i, m in zip(rows, mask_names):
            warped = cut_context(bgra[m], matrices[i], size)
            rows_out[i] = encode_context(np.ascontiguousarray(warped[..., :3]), warped[..., 3])
    group = zarr.open_group(cache, mode="r+")
    group["context"][sl] = rows_out
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


class ContextCache:
    """A built context cache, read row by row (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.attrs = json.loads((self.path / "zarr.json").read_text()).get("attributes", {})
        self.crop_size = int(self.attrs["crop_size"])
        self.size = int(self.attrs["context_size"])
        self.rows = int(self.attrs["rows"])
        self._arrays = {name: ShardedRows(self.path / name)
                        for name in ("context", "samples")}

    def matrix(self, center, scale) -> np.ndarray:
        """Affine image px -> context px (..., 2, 3) of rows with these boxes."""
        return context_matrix(center, scale, self.crop_size, self.size)

    def context(self, row: int) -> np.ndarray:
        """(C, C, 4) uint8 of a row: RGB (JPEG-decoded), then the exact 0/1 person mask."""
        return decode_context(self._arrays["context"][row], self.size)

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
