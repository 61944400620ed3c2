"""3DPW sequence files → normalised rows (docs/formats.md "3DPW").

    <root>/sequenceFiles/{train,validation,test}/<seq>.pkl   latin-1 pickles
    <root>/imageFiles/<seq>/image_%05d.jpg                   frame k is image img_frame_ids[k]

Per actor (lists of length 1–2): `poses` (N, 72) SMPL axis-angle in the world frame, `trans`
(N, 3), `betas` (≥ 10; the first 10 are used), `genders` ('m'/'f'), `poses2d` (N, 3, 18),
`campose_valid` (N,); per frame `cam_poses` (N, 4, 4) world→camera, `cam_intrinsics` (3, 3),
`img_frame_ids` (N,). Rows are the person-frames the official evaluation (`3dpw-eval`) keeps, in
every split: `campose_valid` and a 2D pose `poses2d` that is not all zeros; gendered SMPL
(24 joints, 10 betas). Moving SMPL into the camera frame accounts for the pelvis offset J0 (SMPL
rotates about its root joint; body/frames.py). Boxes follow
the BEDLAM-CLIFF rule on the projected ground truth: every output joint of the body model
(45 for SMPL, 127 for SMPL-X), max side / 200 × 1.2. No person masks (mask ""), so no mask loss
and no object-occlusion flag. `source` is "<seq>:<actor>:<frame index in the pickle>".

SMPL-X fits for training (`smplx_fits`, split "train" only) replace the SMPL rows by neutral
SMPL-X rows (22 joints, 11 betas). Format: one `.npz` keyed per sequence, world frame like
`poses`/`trans`, every frame of the pickle:

    <seq>/pose    (A, N, 66)  axis-angle: global orient + 21 body joints
    <seq>/betas   (A, 11)     neutral SMPL-X betas
    <seq>/transl  (A, N, 3)   smplx translation (body = SMPL-X(pose, betas) + transl)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from body.cameras import box_from_keypoints, perspective_projection
from body.joints import SMPL_TO_COCO17, SMPLX_TO_COCO17
from body.models import load_smpl, load_smplx
from core.errors import BadFileError, ConfigError, MissingFileError, MissingKeyInFileError
from stores.images import frame_size
from stores.labels import LabelRows

from .body import posed_body, world_to_camera
from .files import load_dataset_pickle, require_dir

SPLITS = ("train", "validation", "test")
MASK_RULE: dict = {}  # 3DPW has no person masks; rows carry mask ""
BOX_RESCALE = 1.2
GENDERS = {"m": "male", "f": "female", "male": "male", "female": "female"}
ACTOR_KEYS = ("poses", "trans", "betas", "genders", "poses2d", "campose_valid")
FRAME_KEYS = ("cam_poses", "cam_intrinsics", "img_frame_ids")
SMPLX_BETAS = 11


def load_sequence(path: Path, root: Path) -> dict:
    """The arrays the reader needs of one sequence file under the dataset root `root` (read as
    data only, files.py), checked; raises naming the file and the key when a key is missing or a
    shape is impossible."""
    raw = load_dataset_pickle(path, root, encoding="latin1")
    if not isinstance(raw, dict):
        raise BadFileError(f"{path}: expected a dict of sequence arrays, found "
                           f"{type(raw).__name__}")
    missing = [k for k in ACTOR_KEYS + FRAME_KEYS if k not in raw]
    if missing:
        raise MissingKeyInFileError(f"{path}: missing key(s) {missing}")
    ext = np.asarray(raw["cam_poses"], np.float64)
    if ext.ndim != 3 or ext.shape[1:] != (4, 4):
        raise BadFileError(f"{path}: key 'cam_poses' has shape {ext.shape}, expected (N, 4, 4)")
    n = len(ext)
    data = {"cam_poses": ext, "cam_intrinsics": np.asarray(raw["cam_intrinsics"], np.float64),
            "img_frame_ids": np.asarray(raw["img_frame_ids"])}
    if data["cam_intrinsics"].shape != (3, 3):
        raise BadFileError(f"{path}: key 'cam_intrinsics' has shape "
                           f"{data['cam_intrinsics'].shape}, expected (3, 3)")
    if data["img_frame_ids"].shape != (n,):
        raise BadFileError(f"{path}: key 'img_frame_ids' has shape {data['img_frame_ids'].shape}, "
                           f"expected ({n},)")
    actors = len(raw["poses"])
    if actors < 1:
        raise BadFileError(f"{path}: key 'poses' lists no actor")
    for key in ACTOR_KEYS:
        if len(raw[key]) != actors:
            raise BadFileError(f"{path}: key '{key}' lists {len(raw[key])} actors, 'poses' "
                               f"lists {actors}")
    expected = {"poses": (n, 72), "trans": (n, 3), "poses2d": (n, 3, 18), "campose_valid": (n,)}
    for key, shape in expected.items():
        data[key] = [np.asarray(v) for v in raw[key]]
        for a, value in enumerate(data[key]):
            if value.shape != shape:
                raise BadFileError(f"{path}: key '{key}' of actor {a} has shape {value.shape}, "
                                   f"expected {shape}")
    data["betas"] = [np.asarray(b, np.float64).reshape(-1) for b in raw["betas"]]
    for a, betas in enumerate(data["betas"]):
        if len(betas) < 10:
            raise BadFileError(f"{path}: key 'betas' of actor {a} has {len(betas)} values, "
                               "expected >= 10")
    data["genders"] = []
    for a, gender in enumerate(raw["genders"]):
        gender = gender.decode() if isinstance(gender, bytes) else str(gender)
        if gender not in GENDERS:
            raise BadFileError(f"{path}: key 'genders' of actor {a} is {gender!r}, expected one "
                               f"of {sorted(GENDERS)}")
        data["genders"].append(GENDERS[gender])
    return data


def valid_frames(data: dict, actor: int) -> np.ndarray:
    """Frame indices of an actor the official 3DPW evaluation keeps: `campose_valid` and a 2D
    pose `poses2d` that is not all zeros (a NaN entry does not drop a frame, as there)."""
    detected = np.abs(np.asarray(data["poses2d"][actor], np.float64)).sum((1, 2)) != 0
    return np.flatnonzero(np.asarray(data["campose_valid"][actor], bool) & detected)


def load_smplx_fits(path: Path, sequences: dict[str, dict]) -> dict[str, dict]:
    """The SMPL-X fits of `sequences` ({name: load_sequence data}), checked against them."""
    if not path.exists():
        raise MissingFileError(f"3DPW SMPL-X fits not found: {path}")
    fits = {}
    with np.load(path, allow_pickle=False) as f:
        for seq, data in sequences.items():
            actors, n = len(data["poses"]), len(data["cam_poses"])
            expected = {"pose": (actors, n, 66), "betas": (actors, SMPLX_BETAS),
                        "transl": (actors, n, 3)}
            missing = [f"{seq}/{k}" for k in expected if f"{seq}/{k}" not in f.files]
            if missing:
                raise MissingKeyInFileError(f"{path}: missing key(s) {missing}")
            fits[seq] = {k: f[f"{seq}/{k}"].astype(np.float64) for k in expected}
            for key, shape in expected.items():
                if fits[seq][key].shape != shape:
                    raise BadFileError(f"{path}: key '{seq}/{key}' has shape "
                                       f"{fits[seq][key].shape}, expected {shape}")
    return fits


def read_3dpw(root: str | Path, body_models: str | Path, sequences: str = "test",
              smplx_fits: str | Path | None = None,
              occlusion_threshold: float = 0.1) -> LabelRows:
    """Rows of every sequence of the 3DPW file split `sequences` (train, validation, test;
    the person-frames of `valid_frames`). `smplx_fits` (train only; relative paths are taken
    from `root`) gives SMPL-X rows instead of SMPL.
    `occlusion_threshold` is unused (3DPW has no masks); it keeps the readers' signature."""
    if sequences not in SPLITS:
        raise ConfigError(f"3DPW sequences (file split) must be one of {SPLITS}, "
                          f"got {sequences!r}")
    if smplx_fits is not None and sequences != "train":
        raise ConfigError(f"3DPW SMPL-X fits are for the train split, got split {sequences!r}")
    root = Path(root)
    seq_dir = root / "sequenceFiles" / sequences
    paths = sorted(seq_dir.glob("*.pkl"))
    if not paths:
        raise MissingFileError(f"no 3DPW sequence files (*.pkl) in {seq_dir}")
    loaded = {path.stem: load_sequence(path, root) for path in paths}  # all checked before work
    for path in paths:
        require_dir(root / "imageFiles" / path.stem, f"3DPW image directory of {path.name}")
    if smplx_fits is not None:
        fits_path = Path(smplx_fits)
        fits_path = fits_path if fits_path.is_absolute() else root / fits_path
        fits = load_smplx_fits(fits_path, loaded)
        model = load_smplx(body_models, num_betas=SMPLX_BETAS)
        parts = [_smplx_rows(root, path, loaded[path.stem], fits[path.stem], model, a)
                 for path in paths for a in range(len(loaded[path.stem]["poses"]))]
    else:
        models = {}
        parts = []
        for path in paths:
            data = loaded[path.stem]
            for a, gender in enumerate(data["genders"]):
                if gender not in models:
                    models[gender] = load_smpl(body_models, gender)
                parts.append(_smpl_rows(root, path, data, models[gender], a))
    parts = [p for p in parts if p is not None]
    if not parts:
        raise BadFileError(f"no valid person-frame (campose_valid, non-zero poses2d) in {seq_dir}")
    return LabelRows.concat(parts)


def _smpl_rows(root: Path, path: Path, data: dict, model, actor: int) -> LabelRows | None:
    frames = valid_frames(data, actor)
    poses = np.asarray(data["poses"][actor], np.float64)[frames].reshape(len(frames), 24, 3)
    betas = np.repeat(data["betas"][actor][None, :10], len(frames), 0)
    trans = np.asarray(data["trans"][actor], np.float64)[frames]
    return _rows(root, path, data, model, actor, frames, poses, betas, trans, "smpl",
                 data["genders"][actor])


def _smplx_rows(root: Path, path: Path, data: dict, fit: dict, model,
                actor: int) -> LabelRows | None:
    frames = valid_frames(data, actor)
    poses = fit["pose"][actor][frames].reshape(len(frames), 22, 3)
    betas = np.repeat(fit["betas"][actor][None], len(frames), 0)
    trans = fit["transl"][actor][frames]
    return _rows(root, path, data, model, actor, frames, poses, betas, trans, "smplx",
                 "neutral")


def _rows(root: Path, path: Path, data: dict, model, actor: int, frames: np.ndarray,
          poses_w: np.ndarray, betas: np.ndarray, trans_w: np.ndarray, kind: str,
          gender: str) -> LabelRows | None:
    """Rows of one actor's valid frames from world-frame parameters (poses (n, J, 3)); None
    when the actor has none."""
    n = len(frames)
    if n == 0:
        return None
    ext = data["cam_poses"][frames]
    orient, transl = world_to_camera(model, poses_w[:, 0], trans_w, betas, ext)
    pose = np.concatenate([orient[:, None], poses_w[:, 1:]], 1)
    k_matrix = np.repeat(data["cam_intrinsics"][None], n, 0)
    _, joints = posed_body(model, pose, betas, transl)
    uv = perspective_projection(joints, k_matrix)
    center, scale = box_from_keypoints(uv, BOX_RESCALE)
    coco = SMPL_TO_COCO17 if kind == "smpl" else SMPLX_TO_COCO17
    images = np.array([f"imageFiles/{path.stem}/image_{int(i):05d}.jpg"
                       for i in data["img_frame_ids"][frames]])
    sizes = {name: frame_size(root, name) or (0, 0) for name in np.unique(images)}
    rows = LabelRows(
        body_model=kind, image=images, mask=np.full(n, ""),
        source=np.array([f"{path.stem}:{actor}:{i}" for i in frames]),
        image_size=np.array([sizes[i] for i in images], np.int32).reshape(n, 2),
        center=center.astype(np.float32), scale=scale.astype(np.float32),
        cam_int=k_matrix.astype(np.float32), gender=np.full(n, gender),
        pose=pose.astype(np.float32), betas=betas.astype(np.float32),
        transl=transl.astype(np.float32), kp2d_coco=uv[:, list(coco)].astype(np.float32),
        kp2d_body=uv[:, :24].astype(np.float32),  # SMPL's 24 joints = SMPL-X's first 24
        object_occluded=np.zeros(n, bool))
    rows.validate(f"{path} actor {actor}")
    return rows
