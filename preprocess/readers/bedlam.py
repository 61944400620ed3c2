"""BEDLAM-CLIFF label files → normalised rows (docs/formats.md "BEDLAM / AGORA labels").

`<root>/processed_labels/<folder>.npz`, images `<root>/images/<folder>/png/<imgname>`, masks
`<root>/images/<folder>/masks/<imgname stem>_env.png` (people dark < 127.5); the images and
masks of `closeup` folders are turned 90° clockwise on load (`stores.images`), the labels' frame.
Camera-frame body = SMPL-X(pose_cam, shape, transl = trans_cam) + cam_ext[:3, 3]; neutral SMPL-X
with 11 betas; the first `train_fraction` of each file (BEDLAM-CLIFF trains on 80 %).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from body.cameras import perspective_projection
from body.joints import NUM_BODY_JOINTS_SMPLX, SMPLX_2D_LOSS_JOINTS, SMPLX_TO_COCO17
from body.models import load_smplx
from core.errors import BadFileError, MissingFileError, MissingKeyInFileError
from stores.images import frame_size
from stores.labels import LabelRows

from .body import posed_body
from .files import require_dir
from .occlusion import off_mask_fraction, read_union_mask

MASK_RULE = {"person_below": 127.5}  # `_env.png`: people dark, environment white
REQUIRED = ("imgname", "center", "scale", "pose_cam", "shape", "trans_cam", "gtkps", "cam_int",
            "cam_ext")
EXPECTED_SHAPES = {"center": (2,), "pose_cam": (165,), "shape": (11,), "trans_cam": (3,),
                   "cam_int": (3, 3), "cam_ext": (4, 4)}


def load_label_file(path: Path, dataset: str = "BEDLAM",
                    pad_betas: bool = False) -> dict[str, np.ndarray]:
    """The arrays a BEDLAM-CLIFF-layout label file needs; `pad_betas` pads 10 betas (AGORA) to
    11. Raises naming the file and the key when a file or key is missing or a shape impossible."""
    if not path.exists():
        raise MissingFileError(f"{dataset} label file not found: {path}")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in REQUIRED if k not in f.files]
        if missing:
            raise MissingKeyInFileError(f"{path}: missing key(s) {missing}")
        data = {k: f[k] for k in REQUIRED}
    n = len(data["imgname"])
    betas = data["shape"]
    if pad_betas:
        if betas.ndim != 2 or betas.shape[0] != n or betas.shape[1] not in (10, 11):
            raise BadFileError(f"{path}: key 'shape' has shape {betas.shape}, expected ({n}, 10) "
                               f"(AGORA) or ({n}, 11)")
        data["shape"] = np.pad(betas, ((0, 0), (0, 11 - betas.shape[1])))
    for key, shape in EXPECTED_SHAPES.items():
        if data[key].shape != (n,) + shape:
            raise BadFileError(f"{path}: key '{key}' has shape {data[key].shape}, "
                               f"expected {(n,) + shape}")
    kps = data["gtkps"]
    if kps.ndim != 3 or kps.shape[0] != n or kps.shape[1] < 76 or kps.shape[2] not in (2, 3):
        raise BadFileError(f"{path}: key 'gtkps' has shape {kps.shape}, expected "
                           f"({n}, >=76, 2 or 3) projected SMPL-X joints")
    return data


def read_bedlam(root: str | Path, body_models: str | Path, folders: list[str] | None = None,
                train_fraction: float = 0.8, occlusion_threshold: float = 0.1) -> LabelRows:
    """Rows of every (or the named) image folder under a BEDLAM-CLIFF-layout root. Every label
    file and image folder is checked before any body is posed."""
    root = Path(root)
    label_dir = root / "processed_labels"
    names = folders or sorted(p.stem for p in label_dir.glob("*.npz"))
    if not names:
        raise MissingFileError(f"no BEDLAM label files (*.npz) in {label_dir}")
    paths = [label_dir / f"{folder}.npz" for folder in names]
    loaded = [load_label_file(path) for path in paths]
    for folder in names:
        require_dir(root / "images" / folder / "png", f"BEDLAM image directory of {folder}")
        require_dir(root / "images" / folder / "masks", f"BEDLAM mask directory of {folder}")
    model = load_smplx(body_models)
    parts = []
    for folder, path, data in zip(names, paths, loaded):
        keep = np.arange(int(len(data["imgname"]) * train_fraction))
        data = {k: v[keep] for k, v in data.items()}
        parts.append(_rows_of_folder(root, folder, path, data, keep, model, occlusion_threshold))
    return LabelRows.concat(parts)


def _rows_of_folder(root, folder, path, data, rows, model, occlusion_threshold) -> LabelRows:
    images = np.array([f"images/{folder}/png/{name}" for name in data["imgname"]])
    masks = np.array([f"images/{folder}/masks/{name[:-4]}_env.png" for name in data["imgname"]])
    return cliff_label_rows(root, path, data, rows, images, masks, model, occlusion_threshold,
                            MASK_RULE)


def cliff_label_rows(root: Path, path: Path, data: dict, rows: np.ndarray, images: np.ndarray,
                     masks: np.ndarray, model, occlusion_threshold: float,
                     mask_rule: dict) -> LabelRows:
    """Normalised rows of BEDLAM-CLIFF-layout labels (BEDLAM, AGORA) with their image and mask
    paths: camera-frame body = SMPL-X(pose_cam, transl = trans_cam) + cam_ext[:3, 3]."""
    n = len(images)
    pose = data["pose_cam"][:, : 3 * NUM_BODY_JOINTS_SMPLX].reshape(n, -1, 3)
    transl = data["trans_cam"] + data["cam_ext"][:, :3, 3]
    kps = data["gtkps"][..., :2]
    # (0, 0): a missing or unreadable image; stage one records the row as skipped, with that reason
    sizes = {name: frame_size(root, name) or (0, 0) for name in np.unique(images)}
    occluded = np.zeros(n, bool)
    verts, _ = posed_body(model, pose, data["shape"], transl)
    uv = perspective_projection(verts, data["cam_int"])
    for mask_name in np.unique(masks):
        idx = np.flatnonzero(masks == mask_name)
        mask = read_union_mask(root, mask_name, **mask_rule)
        if mask is not None:  # a missing mask is stage one's to report
            occluded[idx] = off_mask_fraction(uv[idx], mask) > occlusion_threshold
    out = LabelRows(
        body_model="smplx", image=images, mask=masks,
        source=np.array([f"{path.name}:{i}" for i in rows]),
        image_size=np.array([sizes[i] for i in images], np.int32).reshape(n, 2),
        center=data["center"].astype(np.float32), scale=data["scale"].astype(np.float32),
        cam_int=data["cam_int"].astype(np.float32), gender=np.full(n, "neutral"),
        pose=pose.astype(np.float32), betas=data["shape"].astype(np.float32),
        transl=transl.astype(np.float32),
        kp2d_coco=kps[:, list(SMPLX_TO_COCO17)].astype(np.float32),
        kp2d_body=kps[:, list(SMPLX_2D_LOSS_JOINTS)].astype(np.float32),
        object_occluded=occluded)
    out.validate(str(path))
    return out
