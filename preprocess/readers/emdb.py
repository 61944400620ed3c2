"""EMDB sequence files → normalised rows (docs/formats.md "EMDB").

`<root>/P*/<seq>/P*_<seq>_data.pkl`: gendered SMPL in the world frame, world→camera extrinsics
per frame, `good_frames_mask`, boxes; images `images/%05d.jpg`, person masks `masks/%05d.png`
where present. Only sequences of the chosen subset (`emdb1` by default) and good frames count.
Moving SMPL into the camera frame accounts for the pelvis offset J0 (SMPL rotates about its root
joint; body/frames.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from body.cameras import perspective_projection, xyxy_to_box
from body.joints import SMPL_TO_COCO17
from body.models import load_smpl
from core.errors import BadFileError, ConfigError, MissingFileError, MissingKeyInFileError
from stores.labels import LabelRows

from .body import posed_body, world_to_camera
from .files import load_dataset_pickle, require_dir
from .occlusion import off_mask_fraction, read_union_mask

SUBSETS = ("emdb1", "emdb2", "all")
MASK_RULE: dict = {}  # person pixels are non-zero


def _require(data: dict, keys: tuple[str, ...], path: Path, prefix: str = "") -> None:
    missing = [prefix + k for k in keys if k not in data]
    if missing:
        raise MissingKeyInFileError(f"{path}: missing key(s) {missing}")


def load_sequence(path: Path, root: Path) -> dict:
    """One sequence file under the dataset root `root` (read as data only, files.py), checked;
    raises naming the file and the key when a key is missing or a shape is impossible."""
    data = load_dataset_pickle(path, root)
    if not isinstance(data, dict):
        raise BadFileError(f"{path}: expected a dict, found {type(data).__name__}")
    _require(data, ("gender", "emdb1", "n_frames", "good_frames_mask", "camera", "smpl",
                    "kp2d", "bboxes"), path)
    _require(data["camera"], ("intrinsics", "extrinsics", "width", "height"), path, "camera.")
    _require(data["smpl"], ("poses_root", "poses_body", "trans", "betas"), path, "smpl.")
    _require(data["bboxes"], ("bboxes",), path, "bboxes.")
    n = data["n_frames"]
    for key, shape in (("poses_root", (n, 3)), ("poses_body", (n, 69)), ("trans", (n, 3))):
        if np.shape(data["smpl"][key]) != shape:
            raise BadFileError(f"{path}: 'smpl.{key}' has shape {np.shape(data['smpl'][key])}, "
                               f"expected {shape}")
    if np.shape(data["camera"]["extrinsics"]) != (n, 4, 4):
        raise BadFileError(f"{path}: 'camera.extrinsics' has shape "
                           f"{np.shape(data['camera']['extrinsics'])}, expected {(n, 4, 4)}")
    return data


def read_emdb(root: str | Path, body_models: str | Path, subset: str = "emdb1",
              occlusion_threshold: float = 0.1) -> LabelRows:
    """Rows of the good frames of every sequence of `subset` under an EMDB-layout root."""
    if subset not in SUBSETS:
        raise ConfigError(f"EMDB subset must be one of {SUBSETS}, got {subset!r}")
    root = Path(root)
    paths = sorted(root.glob("P*/*/P*_data.pkl"))
    if not paths:
        raise MissingFileError(f"no EMDB sequence files (P*/<seq>/P*_<seq>_data.pkl) in {root}")
    loaded = [(path, load_sequence(path, root)) for path in paths]  # all checked before work
    if subset != "all":
        for path, data in loaded:
            _require(data, (subset,), path)
        loaded = [(path, data) for path, data in loaded if data[subset]]
    for path, _ in loaded:
        require_dir(path.parent / "images", f"EMDB image directory of {path.name}")
    models = {}
    parts = []
    for path, data in loaded:
        gender = data["gender"]
        if gender not in models:
            models[gender] = load_smpl(body_models, gender)
        parts.append(_rows_of_sequence(root, path, data, models[gender], occlusion_threshold))
    if not parts:
        raise BadFileError(f"no EMDB sequence under {root} belongs to subset {subset!r}")
    return LabelRows.concat(parts)


def _rows_of_sequence(root: Path, path: Path, data: dict, model, threshold: float) -> LabelRows:
    frames = np.flatnonzero(np.asarray(data["good_frames_mask"], bool))
    n = len(frames)
    smpl, cam = data["smpl"], data["camera"]
    ext = np.asarray(cam["extrinsics"], np.float64)[frames]
    betas = np.repeat(np.asarray(smpl["betas"], np.float64)[None, :10], n, 0)
    orient, transl = world_to_camera(model, np.asarray(smpl["poses_root"], np.float64)[frames],
                                     np.asarray(smpl["trans"], np.float64)[frames], betas, ext)
    pose = np.concatenate([orient[:, None], np.asarray(smpl["poses_body"], np.float64)[
        frames].reshape(n, 23, 3)], 1)
    k_matrix = np.repeat(np.asarray(cam["intrinsics"], np.float64)[None], n, 0)
    verts, joints = posed_body(model, pose, betas, transl)
    center, scale = xyxy_to_box(np.asarray(data["bboxes"]["bboxes"], np.float64)[frames])
    folder = path.parent.relative_to(root)
    images = np.array([f"{folder}/images/{i:05d}.jpg" for i in frames])
    masks = np.array([f"{folder}/masks/{i:05d}.png" if (path.parent / "masks" / f"{i:05d}.png")
                      .exists() else "" for i in frames])
    occluded = np.zeros(n, bool)
    uv = perspective_projection(verts, k_matrix)
    for k, mask_name in enumerate(masks):
        if mask_name:
            mask = read_union_mask(root, mask_name, **MASK_RULE)
            if mask is not None:  # an unreadable mask is stage one's to report
                occluded[k] = off_mask_fraction(uv[k:k + 1], mask)[0] > threshold
    rows = LabelRows(
        body_model="smpl", image=images, mask=masks,
        source=np.array([f"{folder}:{i}" for i in frames]),
        image_size=np.tile(np.array([cam["width"], cam["height"]], np.int32), (n, 1)),
        center=center.astype(np.float32), scale=scale.astype(np.float32),
        cam_int=k_matrix.astype(np.float32), gender=np.full(n, data["gender"]),
        pose=pose.astype(np.float32), betas=betas.astype(np.float32),
        transl=transl.astype(np.float32),
        kp2d_coco=perspective_projection(joints[:, list(SMPL_TO_COCO17)], k_matrix).astype(
            np.float32),
        kp2d_body=np.asarray(data["kp2d"], np.float32)[frames], object_occluded=occluded)
    rows.validate(str(path))
    return rows
