"""One of our stores written out in the reference release's layout: an annotation `.npz` and one
`<row:07d>.npy.gz` of heatmap samples per row (docs/real_data.md, "Importing the reference
release"). It makes format-faithful release files from the synthetic world, to try
`import-reference` (and to test it) without the authors' downloads.

Every key the importer reads is written as the release stores it: `vitpose` as (y, x, conf),
COCO-17 ground truth inside `gt_coco_25j` at the OpenPose-25 places, samples as image x, y (the
heatmap pixel centres through the row's detector crop), heatmap value and mask distance.
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from body.cameras import DetectorCrop
from body.joints import OP25_TO_COCO17
from core.errors import ConfigError
from stores.store import Store

from .reference_release import LAYOUTS, sample_file


def export_reference(store_path: str | Path, out_npz: str | Path, out_samples: str | Path,
                     images: str | Path, layout: str, masks: str | Path | None = None) -> None:
    """Write store `store_path` as the release's files: `out_npz` and `out_samples/`. `images`
    (and `masks`) are the folders the release's paths start from; the store's image and mask
    paths must lie under them, the masks where the layout puts them."""
    store = Store(store_path)
    root = Path(store.attrs["root"])
    labels = store.labels()
    n = len(labels)
    images = Path(images).resolve()
    names = [(root / p).resolve().relative_to(images).as_posix() for p in labels.image]
    spec = LAYOUTS[layout]
    for name, mask in zip(names, labels.mask):
        if mask and (masks is None or (Path(masks).resolve() / spec.mask_name(name)) !=
                     (root / mask).resolve()):
            raise ConfigError(f"{store.path}: mask {mask} is not where layout {layout!r} puts "
                              f"the mask of {name}")
    train = labels.body_model == "smplx"
    det = store.read("detector/keypoints")
    coco25 = np.zeros((n, 25, 3), np.float32)
    coco25[:, list(OP25_TO_COCO17), :2] = labels.kp2d_coco
    coco25[:, list(OP25_TO_COCO17), 2] = 1
    body = np.concatenate([labels.kp2d_body, np.ones((n, 24, 1), np.float32)], -1)
    pose = labels.pose.reshape(n, -1)
    arrays = {
        "imgname": np.array(names), "center": labels.center, "scale": labels.scale,
        "pose_cam": np.pad(pose, ((0, 0), (0, 165 - pose.shape[1]))) if train else pose,
        "shape": labels.betas, "trans_cam": labels.transl,
        "cam_ext": np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), "cam_int": labels.cam_int,
        "gtkps": body, "gt_coco_25j": coco25, "vitpose": det[:, :, [1, 0, 2]],
        "orig_shape": labels.image_size[:, ::-1], "gender": np.array(labels.gender.tolist()),
        "object_occlusion": labels.object_occluded,
    }
    if layout == "emdb":
        arrays["valid_emdb_mask"] = (labels.mask != "").astype(np.uint8)
    Path(out_npz).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_npz, **arrays)
    _write_samples(store, Path(out_samples))


def _write_samples(store: Store, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    center = store.read("labels/center").astype(np.float64)
    scale = store.read("labels/scale").astype(np.float64)
    index = store.read("samples/index")
    value = store.read("samples/value").astype(np.float32)
    distance = store.read("samples/mask_distance").astype(np.float32)
    for row in range(store.n_rows):
        xy = DetectorCrop(center[row], float(scale[row])).index_to_image(index[row])
        raw = np.concatenate([xy, value[row][..., None], distance[row][..., None]], -1)
        buffer = io.BytesIO()
        np.save(buffer, raw.transpose(1, 0, 2).astype(np.float32))  # (S, 17, 4)
        with gzip.GzipFile(sample_file(folder, row), "wb", mtime=0) as f:
            f.write(buffer.getvalue())
