"""The synthetic training set in the AGORA layout (readers/agora.py, docs/formats.md).

The BEDLAM writer's scenes (bedlam_layout.py) with AGORA's differences: SMPL-X with 10 betas
(`shape` (N, 10); the 11-beta reader pads a zero, the same body), flat image names under
`images/`, and all-person masks `masks/<imgname stem>_all_person.png` as colour images with a
pure red background (grey value 76, AGORA's) and white people; plus the scene side-cars.

    <root>/processed_labels/<folder>.npz           folders agora-bfh, agora-body
    <root>/images/ag_trainset_synthetic_<kind>_seq<SSS>_cam00_<FFFFF>_<W>x<H>.png
    <root>/masks/ag_trainset_synthetic_<kind>_seq<SSS>_cam00_<FFFFF>_<W>x<H>_all_person.png
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf

from body.joints import SMPLX_TO_COCO17
from body.models import load_smplx

from .bedlam_layout import BedlamSequenceWriter, write_labels
from .motions import PoseModel, default_pose_models
from .scene import BodyTopology

MASK_BACKGROUND_BGR = (0, 0, 255)  # pure red: grey 76 when decoded as grey (0.299 · 255)
MASK_PERSON_BGR = (255, 255, 255)
MASK_SUFFIX = "_all_person.png"
NUM_BETAS = 10  # AGORA's fits
DEFAULTS = {"folders": ["agora-bfh", "agora-body"], "sequences_per_folder": 2,
            "frames_per_sequence": 3, "image_size": [640, 360], "people": [1, 3],
            "depth_range": [3.5, 9.0], "occluder_p": 0.35}


def agora_image_name(folder: str, bedlam_name: str, width: int, height: int) -> str:
    """AGORA-style flat image name for the BEDLAM writer's `seq_XXXXXX/seq_XXXXXX_NNNN.png`."""
    match = re.fullmatch(r"seq_(\d+)/seq_\d+_(\d+)\.png", bedlam_name)
    if match is None:
        raise ValueError(f"not a BEDLAM image name: {bedlam_name!r}")
    seq, frame = (int(g) for g in match.groups())
    kind = folder.removeprefix("agora-")
    return f"ag_trainset_synthetic_{kind}_seq{seq:03d}_cam00_{frame:05d}_{width}x{height}.png"


def mask_name(image_name: str) -> str:
    return image_name[:-4] + MASK_SUFFIX


class AgoraSequenceWriter(BedlamSequenceWriter):
    """Writes whole AGORA-layout sequences; holds the 10-beta body model (one per process).
    Same call as the BEDLAM writer: (seed, folder, seq) → label rows of the sequence."""

    def __init__(self, body_models: Path, root: Path, cfg,
                 poses: Mapping[str, PoseModel] | None = None) -> None:  # not the 11-beta model
        self.model = load_smplx(body_models, num_betas=NUM_BETAS)
        self.topology = BodyTopology.from_model(self.model, SMPLX_TO_COCO17)
        self.root, self.cfg = Path(root), cfg
        self.poses = (poses or default_pose_models())["train"]

    def __call__(self, seed: int, folder: str, seq: int) -> dict[str, list]:
        rows = super().__call__(seed, folder, seq)
        width, height = self.cfg.image_size
        rows["imgname"] = [agora_image_name(folder, name, width, height)
                           for name in rows["imgname"]]
        return rows

    def _write_images(self, folder: str, name: str, scene, width: int, height: int) -> None:
        image_name = agora_image_name(folder, name, width, height)
        image_path = self.root / "images" / image_name
        image_path.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), scene.image[:, :, ::-1])
        mask = np.where((scene.person_map >= 0)[:, :, None], MASK_PERSON_BGR,
                        MASK_BACKGROUND_BGR).astype(np.uint8)
        cv2.imwrite(str(self.root / "masks" / mask_name(image_name)), mask)
        scene.write_sidecar(image_path)


def write_agora_like(root: str | Path, body_models: str | Path,
                     cfg: DictConfig | dict | None = None, seed: int = 0) -> Path:
    """Write a small AGORA-layout dataset under `root` (serially); `cfg` overrides DEFAULTS
    (the BEDLAM writer's keys plus `folders` and `sequences_per_folder`). Returns `root`."""
    root = Path(root)
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), cfg or {})
    writer = AgoraSequenceWriter(Path(body_models), root, cfg)
    for folder in cfg.folders:
        per_seq = [writer(seed, folder, seq) for seq in range(cfg.sequences_per_folder)]
        write_labels(root, folder, {k: sum((r[k] for r in per_seq), []) for k in per_seq[0]})
    return root
