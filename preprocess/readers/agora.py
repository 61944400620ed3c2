"""AGORA in the BEDLAM-CLIFF label layout → normalised rows (docs/formats.md
"BEDLAM / AGORA labels").

The label files have the BEDLAM keys (bedlam.py) with 10 betas in `shape`; an 11th zero is padded
(the 11-beta SMPL-X of the paper, docs/formats.md). Supported layout, every directory an argument
and relative to `root`:

    <root>/<label_dir>/<file>.npz                  label_dir "processed_labels",
                                                   files ("agora-bfh", "agora-body")
    <root>/<image_dir>/<imgname>                   image_dir "images"; 1280×720 PNG named e.g.
                                                   ag_trainset_<scene>_cam00_00000_1280x720.png
    <root>/<mask_dir>/<imgname stem><mask_suffix>  mask_dir "masks", mask_suffix "_all_person.png"

The reference release's tree reads with root = its `data/`, label_dir "annotations", image_dir
"training_images/images", mask_dir "env_masks/images" (its mask script renames AGORA's "Training
Masks 1280x720" all-person masks to `<imgname stem>_all_person.png`). The all-person masks are
colour images whose background reads as grey value 76 (pure red); every other pixel is a person.
Camera-frame body = SMPL-X(pose_cam, shape + [0], transl = trans_cam + cam_ext[:3, 3]), neutral.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from body.models import load_smplx
from core.errors import BadFileError
from stores.labels import LabelRows

from .bedlam import cliff_label_rows
from .bedlam import load_label_file as load_cliff_label_file
from .files import require_dir

MASK_RULE = {"background_value": 76}  # all-person masks: background grey 76, people elsewhere
DEFAULT_FILES = ("agora-bfh", "agora-body")
NUM_BETAS = 11  # the paper's SMPL-X; AGORA's fits have 10, BEDLAM's 11


def load_label_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays an AGORA label file needs, `shape` padded to 11 betas (bedlam.py's checks)."""
    return load_cliff_label_file(path, dataset="AGORA", pad_betas=True)


def read_agora(root: str | Path, body_models: str | Path, train_fraction: float = 0.8,
               files: list[str] | None = None, occlusion_threshold: float = 0.1,
               label_dir: str = "processed_labels", image_dir: str = "images",
               mask_dir: str = "masks", mask_suffix: str = "_all_person.png") -> LabelRows:
    """Rows of the first `train_fraction` of each AGORA label file (`files`: stems under
    `label_dir`, default agora-bfh and agora-body). Every file is checked before any body is
    posed. BEDLAM-CLIFF's and the reference release's loaders use all AGORA rows (their 80 % cut
    is for BEDLAM folders): pass train_fraction=1.0 for that."""
    root = Path(root)
    names = [Path(name).stem if name.endswith(".npz") else name
             for name in (files or DEFAULT_FILES)]
    paths = [root / label_dir / f"{name}.npz" for name in names]
    loaded = [load_label_file(path) for path in paths]  # all checked before work
    require_dir(root / image_dir, "AGORA image directory (image_dir)")
    require_dir(root / mask_dir, "AGORA mask directory (mask_dir)")
    model = load_smplx(body_models, num_betas=NUM_BETAS)
    parts = []
    for path, data in zip(paths, loaded):
        keep = np.arange(int(len(data["imgname"]) * train_fraction))
        if not len(keep):
            continue
        data = {k: v[keep] for k, v in data.items()}
        images = np.array([f"{image_dir}/{name}" for name in data["imgname"]])
        masks = np.array([f"{mask_dir}/{Path(name).with_suffix('')}{mask_suffix}"
                          for name in data["imgname"]])
        parts.append(cliff_label_rows(root, path, data, keep, images, masks, model,
                                      occlusion_threshold, MASK_RULE))
    if not parts:
        raise BadFileError(f"no AGORA rows in {[str(p) for p in paths]} with "
                           f"train_fraction={train_fraction}")
    return LabelRows.concat(parts)
