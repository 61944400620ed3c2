"""The reference release's own files, read into this project's terms (docs/real_data.md,
"Importing the reference release").

The release ships one parsed annotation `.npz` per dataset and one gzip-compressed `.npy` of
heatmap samples per annotation row, `<samples dir>/<row:07d>.npy.gz`, float32 (S ≥ 150, 17, 4) =
(image x, image y, heatmap value, distance to the person mask). `read_annotations` turns an
annotation file into `LabelRows` plus the detector pose; `row_samples` turns one sample file into
the store's sample arrays. `LAYOUTS` holds what differs between the release's datasets: where
the person masks are, how their pixels mark people, the default split.
"""
from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from body.cameras import DetectorCrop, default_focal, intrinsics, weak_perspective_to_translation
from body.joints import OP25_TO_COCO17
from core.errors import BadFileError, MissingFileError, MissingKeyInFileError
from core.seeding import rng_for
from stores.images import frame_size
from stores.labels import LabelRows
from stores.schema import KEPT, SKIP_IMAGE_MISSING, SKIP_IMAGE_UNREADABLE

from .readers import agora, bedlam, emdb


def _bedlam_mask(imgname: str) -> str:  # <masks>/<seq>/<stem>_env.png
    p = PurePosixPath(imgname)
    return f"{p.parent.name}/{p.stem}_env.png"


def _agora_mask(imgname: str) -> str:  # <masks>/<stem>_all_person.png
    return f"{PurePosixPath(imgname).stem}_all_person.png"


def _emdb_mask(imgname: str) -> str:  # <masks>/P*/<seq>/masks/NNNNN.png
    return str(PurePosixPath(imgname.replace("/images/", "/masks/")).with_suffix(".png"))


@dataclass(frozen=True)
class ReleaseLayout:
    """One of the release's dataset layouts."""

    split: str                                # default split (train: the filter applies)
    mask_rule: dict                           # `stores.masks.union_mask` keywords
    mask_name: Callable[[str], str] | None    # imgname -> mask path under the masks directory


LAYOUTS = {
    "bedlam": ReleaseLayout("train", bedlam.MASK_RULE, _bedlam_mask),
    "agora": ReleaseLayout("train", agora.MASK_RULE, _agora_mask),
    "emdb": ReleaseLayout("test", emdb.MASK_RULE, _emdb_mask),
    "3dpw": ReleaseLayout("test", {}, None),
}
REQUIRED = ("imgname", "center", "scale", "pose_cam", "shape", "vitpose", "gt_coco_25j")
REQUIRED_TRAIN = ("gtkps",)
OPTIONAL = ("cam_int", "trans_cam", "cam_ext", "orig_shape", "gender", "object_occlusion",
            "valid_emdb_mask", "gtkps")
GRID_TOLERANCE = 0.05  # heatmap px: how far a sample may lie from a heatmap pixel centre


@dataclass
class ReleaseRows:
    """An annotation file's rows, in the file's order (row i has sample file i)."""

    labels: LabelRows
    keypoints: np.ndarray   # (N, 17, 3) float32 detector x, y, confidence clipped to [0, 1]
    image_reason: np.ndarray  # (N,) uint8 KEPT, or why the row's image cannot be used
    defaults: dict[str, str]  # key of the file -> the default used because it is missing


def sample_file(samples_dir: Path, row: int) -> Path:
    """The release's heatmap sample file of annotation row `row`."""
    return Path(samples_dir) / f"{row:07d}.npy.gz"


def _check_rows(path: Path, data: dict, key: str, n: int, shape: tuple, ndim: int) -> None:
    value = data[key]
    ok = value.ndim == ndim and value.shape[0] == n and all(
        want is None or got == want or (isinstance(want, tuple) and got in want)
        for got, want in zip(value.shape[1:], shape))
    if not ok:
        raise BadFileError(f"{path}: key '{key}' has shape {value.shape}, expected "
                           f"({n}, {', '.join('·' if s is None else str(s) for s in shape)})")


def load_annotation_file(path: Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of a release annotation file, checked (required keys, row counts, shapes)."""
    if not path.is_file():
        raise MissingFileError(f"reference annotation file not found: {path}")
    with np.load(path, allow_pickle=False) as f:
        needed = REQUIRED + (REQUIRED_TRAIN if split == "train" else ())
        missing = [k for k in needed if k not in f.files]
        if missing:
            raise MissingKeyInFileError(f"{path}: missing key '{missing[0]}' (required: "
                                        f"{', '.join(needed)})")
        data = {}
        for key in dict.fromkeys(needed + OPTIONAL):
            if key in f.files:
                try:
                    data[key] = f[key]
                except ValueError:  # an object array: a pickle, which is never unpickled here
                    raise BadFileError(f"{path}: key '{key}' holds Python objects (a pickle); "
                                       "save it as a plain numpy array (e.g. strings as "
                                       "dtype str) and rerun") from None
    n = len(data["imgname"])
    joints = 66 if split == "train" else 72
    checks = {"center": ((2,), 2), "scale": ((), 1), "vitpose": ((17, 3), 3),
              "gt_coco_25j": ((25, None), 3), "pose_cam": ((None,), 2),
              "shape": (((10, 11),) if split == "train" else (None,), 2),
              "cam_int": ((3, 3), 3), "trans_cam": ((3,), 2), "cam_ext": ((4, 4), 3),
              "orig_shape": ((2,), 2), "gender": ((), 1), "object_occlusion": ((), 1),
              "valid_emdb_mask": ((), 1), "gtkps": ((None, None), 3)}
    for key, (shape, ndim) in checks.items():
        if key in data:
            _check_rows(path, data, key, n, shape, ndim)
    if data["pose_cam"].shape[1] < joints:
        raise BadFileError(f"{path}: key 'pose_cam' has {data['pose_cam'].shape[1]} columns, "
                           f"expected ≥ {joints} ({'SMPL-X' if split == 'train' else 'SMPL'})")
    if data["shape"].shape[1] < 10 or ("gtkps" in data and data["gtkps"].shape[1] < 24):
        raise BadFileError(f"{path}: key 'shape' needs ≥ 10 betas and 'gtkps' ≥ 24 joints")
    return data


def _genders(data: dict, split: str, n: int, defaults: dict) -> np.ndarray:
    if split == "train":  # BEDLAM / AGORA fits are neutral SMPL-X whatever the key says
        return np.full(n, "neutral")
    if "gender" not in data:
        defaults["gender"] = "male SMPL for every row (the release's fallback)"
        return np.full(n, "male")
    names = {"m": "male", "f": "female", "n": "neutral"}
    out = [names.get(str(g)[:1].lower()) for g in data["gender"]]
    if None in out:
        raise BadFileError(f"key 'gender' holds {data['gender'][out.index(None)]!r}, expected "
                           "strings starting with m, f or n")
    return np.array(out)


def _image_rows(images_dir: Path, root: Path, names: np.ndarray, sizes: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image paths relative to root, (N, 2) W, H, reason) of the rows' images; like the release,
    a missing `.png` is looked for as `.jpg`."""
    paths, wh = [], np.zeros((len(names), 2), np.int32)
    reason = np.full(len(names), KEPT, np.uint8)
    seen: dict[str, tuple[Path, tuple[int, int] | None]] = {}
    for i, name in enumerate(names):
        if name not in seen:
            path = images_dir / name
            if not path.is_file() and path.with_suffix(".jpg").is_file():
                path = path.with_suffix(".jpg")
            size = (frame_size(images_dir, path.relative_to(images_dir))
                    if path.is_file() and sizes is None else None)
            seen[name] = (path, size)
        path, size = seen[name]
        paths.append(path.relative_to(root).as_posix())
        if not path.is_file():
            reason[i] = SKIP_IMAGE_MISSING
        elif sizes is not None:
            wh[i] = sizes[i]
        elif size is None:
            reason[i] = SKIP_IMAGE_UNREADABLE
        else:
            wh[i] = size
    return np.array(paths), wh, reason


def _mask_rows(layout: ReleaseLayout, masks_dir: Path | None, root: Path, names: np.ndarray,
               valid: np.ndarray) -> np.ndarray:
    """Mask paths relative to root; "" without a masks directory, a mask file or `valid`."""
    out = np.full(len(names), "", dtype=object)
    if masks_dir is None or layout.mask_name is None:
        return out.astype(str)
    for i, name in enumerate(names):
        path = masks_dir / layout.mask_name(str(name))
        if valid[i] and path.is_file():
            out[i] = path.relative_to(root).as_posix()
    return out.astype(str)


def read_annotations(path: Path, images_dir: Path, root: Path, layout: str, split: str,
                     masks_dir: Path | None = None) -> ReleaseRows:
    """The rows of a release annotation file (every row, the filter is not applied here).
    Paths are stored relative to `root`, which must hold the images (and masks)."""
    spec = LAYOUTS[layout]
    data = load_annotation_file(path, split)
    n = len(data["imgname"])
    defaults: dict[str, str] = {}
    names = data["imgname"].astype(str)
    sizes = data["orig_shape"][:, ::-1].astype(np.int32) if "orig_shape" in data else None
    if sizes is None:
        defaults["orig_shape"] = "image size read from each image's header"
    images, wh, reason = _image_rows(images_dir, root, names, sizes)
    if "object_occlusion" in data:
        occluded = data["object_occlusion"].astype(bool)
    else:
        occluded = np.ones(n, bool)
        defaults["object_occlusion"] = "every row object-occluded (no mask loss)"
    valid = np.ones(n, bool)
    if "valid_emdb_mask" in data:
        valid = data["valid_emdb_mask"] == 1
    elif layout == "emdb" and masks_dir is not None:
        defaults["valid_emdb_mask"] = "every row with a mask file is in the mask subset"
    masks = _mask_rows(spec, masks_dir, root, names, valid)
    center = data["center"].astype(np.float64)
    scale = data["scale"].astype(np.float64)
    if "cam_int" in data:
        k = data["cam_int"].astype(np.float64)
    else:
        w, h = wh[:, 0].astype(np.float64), wh[:, 1].astype(np.float64)
        k = intrinsics(default_focal(w, h), w, h)
        defaults["cam_int"] = "focal √(W² + H²), principal point at the image centre"
    if "trans_cam" in data:
        transl = data["trans_cam"].astype(np.float64)
        if "cam_ext" in data:  # the BEDLAM-CLIFF rule (docs/formats.md)
            transl = transl + data["cam_ext"][:, :3, 3]
    else:
        cam = np.tile([1.0, 0.0, 0.0], (n, 1))
        transl = weak_perspective_to_translation(cam, center, scale, wh[:, 0], wh[:, 1],
                                                 k[:, 0, 0])
        defaults["trans_cam"] = ("the translation of a unit-scale crop camera at the box (not "
                                 "read by training; evaluation centres on the pelvis)")
    body_joints = 22 if split == "train" else 24
    betas = data["shape"][:, :11] if split == "train" else data["shape"][:, :10]
    if split == "train" and betas.shape[1] == 10:  # AGORA: 10 betas, padded with a zero
        betas = np.pad(betas, ((0, 0), (0, 1)))
    if "gtkps" in data:
        body2d = data["gtkps"][:, :24, :2]
    else:
        body2d = np.zeros((n, 24, 2))
        defaults["gtkps"] = "zeros (the 2D body joints are read by training only)"
    labels = LabelRows(
        body_model="smplx" if split == "train" else "smpl", image=images, mask=masks,
        source=np.array([f"{path.name}:{i}" for i in range(n)]), image_size=wh,
        center=center.astype(np.float32), scale=scale.astype(np.float32),
        cam_int=k.astype(np.float32), gender=_genders(data, split, n, defaults),
        pose=data["pose_cam"][:, :3 * body_joints].reshape(n, body_joints, 3).astype(np.float32),
        betas=betas.astype(np.float32), transl=transl.astype(np.float32),
        kp2d_coco=data["gt_coco_25j"][:, list(OP25_TO_COCO17), :2].astype(np.float32),
        kp2d_body=body2d.astype(np.float32), object_occluded=occluded)
    try:
        labels.validate(str(path))
    except ValueError as err:
        raise BadFileError(str(err)) from None
    det = data["vitpose"][:, :, [1, 0, 2]].astype(np.float32)  # stored (y, x, conf)
    det[..., 2] = np.clip(det[..., 2], 0, 1)
    return ReleaseRows(labels, det, reason, defaults)


@dataclass(frozen=True)
class RowSamples:
    """One row's samples in the store's terms (sorted by heatmap index per joint)."""

    index: np.ndarray          # (17, S) uint16
    value: np.ndarray          # (17, S) float16
    mask_distance: np.ndarray  # (17, S) float16, inf when the row has no mask
    residual: float            # largest distance (heatmap px) of a sample from its pixel centre


def row_samples(path: Path, center: np.ndarray, scale: float, samples: int, has_mask: bool,
                key: tuple) -> RowSamples:
    """Read sample file `path` of a row with box (center, scale). With more than `samples`
    samples, a uniform random subset of `samples` of them (seeded by `key`), the draw the
    release makes per epoch (it shuffles the sample axis and keeps the first 150)."""
    if not path.is_file():
        raise MissingFileError(f"heatmap sample file not found: {path}")
    with gzip.GzipFile(path, "r") as f:
        raw = np.load(f, allow_pickle=False)
    if raw.ndim != 3 or raw.shape[1:] != (17, 4) or raw.shape[0] < samples:
        raise BadFileError(f"{path}: shape {raw.shape}, expected (S ≥ {samples}, 17, 4)")
    if raw.shape[0] > samples:
        raw = raw[np.sort(rng_for(*key).choice(raw.shape[0], samples, replace=False))]
    raw = raw.transpose(1, 0, 2)  # (17, S, 4)
    crop = DetectorCrop(np.asarray(center, np.float64), float(scale))
    uv = crop.image_to_heatmap(raw[..., :2].reshape(-1, 2).astype(np.float64))
    index = DetectorCrop.heatmap_to_index(uv)
    residual = float(np.abs(uv - DetectorCrop.index_to_heatmap(index)).max(initial=0.0))
    index = index.reshape(17, samples)
    order = np.argsort(index, axis=1, kind="stable")
    pick = lambda a: np.take_along_axis(a, order, 1)  # noqa: E731
    distance = pick(raw[..., 3]) if has_mask else np.full((17, samples), np.inf)
    return RowSamples(pick(index).astype(np.uint16), pick(raw[..., 2]).astype(np.float16),
                      distance.astype(np.float16), residual)
