"""The demo on one image (docs/real_data.md, "The demo on any image"): person boxes → the
configured detector → the model's input exactly as stage one and the test examples build it →
N hypotheses ranked by their exact log-likelihood under the flow → SMPL-X meshes, figures, npz.

Boxes: `box` (x0, y0, x1, y1, a tight person box: side = longer side · 1.2, the datasets' rule),
else the people of a label file (the synthetic world's scene side-car: the box of each person's
in-image COCO joints, `box_from_keypoints`), else the whole image (side = its longer side).
Focal length: `focal`, else the image diagonal (`body.cameras.default_focal`, as the paper does
for images without intrinsics).

Ranking: slot 0 of the model's draw is the mode (latent z = 0), slots 1… are seeded samples
(`eval.seed`); each pose's log p(x | c) is the flow's exact density (`PosePosterior.log_prob`:
the change of variables through every coupling, not an approximation), and the npz lists the
hypotheses by it, highest first (stable on ties). The mode of the latent need not be the pose
of highest density (the Jacobian differs from pose to pose): `mode_rank` says where it landed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import default_collate

from body.cameras import DetectorCrop, box_from_keypoints, default_focal, xyxy_to_box
from body.models import load_smplx
from body.rotations import matrix_to_axis_angle, rot6d_to_matrix
from core.errors import MissingFileError, UsageError
from eval.examples import crop_from_context, eval_input
from eval.run import note_profile, resolve_checkpoint
from preprocess.chunk_task import detector_input
from preprocess.detectors import make_detector
from preprocess.postprocess import detector_keypoints
from stores.context_cache import context_matrix, context_size, cut_context
from synthetic.sidecar import OUTSIDE_IMAGE, Scene, sidecar_path
from train.model import NUM_BETAS, load_model

from .draw import write_figures

BOX_RESCALE = 1.2  # a tight person box → the model's box (the datasets' readers' rule)
MIN_JOINTS_FOR_A_BOX = 4  # label-file people with fewer in-image joints get no box


@dataclass
class Boxes:
    """Person boxes of one image: center (P, 2) float64 px, scale (P,) float64 = side / 200."""

    center: np.ndarray
    scale: np.ndarray
    source: str  # "box", the label file's path, or "image"


def parse_box(text: str) -> np.ndarray:
    """"x0,y0,x1,y1" → (4,) float64; a one-line error otherwise."""
    try:
        xyxy = np.array([float(v) for v in text.split(",")], np.float64)
    except ValueError:
        xyxy = np.zeros(0)
    if xyxy.shape != (4,) or not (xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1]):
        raise UsageError(f"BOX={text!r}: expected x0,y0,x1,y1 with x1 > x0 and y1 > y0 (px)")
    return xyxy


def label_boxes(path: Path) -> Boxes:
    """The boxes of the people of a scene side-car (those with ≥ MIN_JOINTS_FOR_A_BOX joints in
    the image)."""
    scene = Scene.load(path)
    centers, scales = [], []
    for xy, state in zip(scene.coco_xy, scene.coco_state):
        inside = state != OUTSIDE_IMAGE
        if inside.sum() >= MIN_JOINTS_FOR_A_BOX:
            c, s = box_from_keypoints(xy[inside], BOX_RESCALE)
            centers.append(c)
            scales.append(s)
    if not centers:
        raise MissingFileError(f"{path}: no person with {MIN_JOINTS_FOR_A_BOX} joints in the "
                               "image; pass BOX=x0,y0,x1,y1")
    return Boxes(np.array(centers, np.float64), np.array(scales, np.float64), str(path))


def find_boxes(image_path: Path, width: int, height: int, box: str | None = None,
               labels: Path | None = None) -> Boxes:
    """The boxes of an image by the module's rule (BOX, label file, side-car, whole image)."""
    if box:
        c, s = xyxy_to_box(parse_box(box), BOX_RESCALE)
        return Boxes(c[None], np.array([s]), "box")
    if labels is None and sidecar_path(image_path).is_file():
        labels = sidecar_path(image_path)
    if labels is not None:
        if not Path(labels).is_file():
            raise MissingFileError(f"label file not found: {labels} (check --labels)")
        return label_boxes(Path(labels))
    c, s = xyxy_to_box(np.array([0.0, 0.0, width, height]), 1.0)
    return Boxes(c[None], np.array([s]), "image")


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; a one-line error when missing or unreadable."""
    if not path.is_file():
        raise MissingFileError(f"image not found: {path} (check IMAGE=)")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MissingFileError(f"{path}: not an image OpenCV can read")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def detect(cfg: DictConfig, rgb: np.ndarray, image_path: Path, boxes: Boxes) -> np.ndarray:
    """(P, 17, 3) image x, y, confidence of the configured detector (`precompute.detector`) on
    each box: stage one's crop, detector call and DARK-UDP decoding."""
    spec = OmegaConf.to_container(cfg.precompute.detector, resolve=True)
    detector = make_detector(spec["name"], **spec.get("options", {}))
    crops, requests = zip(*(detector_input(rgb, image_path, c, float(s))
                            for c, s in zip(boxes.center, boxes.scale)))
    heat = np.asarray(detector(np.stack(crops), list(requests)), np.float32)
    return detector_keypoints(torch.from_numpy(heat), DetectorCrop(boxes.center, boxes.scale))


def model_inputs(cfg: DictConfig, rgb: np.ndarray, det: np.ndarray, boxes: Boxes,
                 focal: float) -> object:
    """The batched `ModelInput` of the boxes: the context crop as the cache cuts it, the model
    crop from it as the test examples do, and their `model_input`."""
    crop_size = cfg.model.crop_size
    size = context_size(crop_size, cfg.train.context_factor)
    h, w = rgb.shape[:2]
    img_size = np.array([w, h], np.float32)
    items = []
    for c, s, kp in zip(boxes.center, boxes.scale, det):
        to_context = context_matrix(c, s, crop_size, size)
        context = cut_context(rgb, to_context, size)
        crop = crop_from_context(context, to_context, c, s, crop_size)
        items.append(eval_input(crop, kp.astype(np.float64), c, s, np.float32(focal), img_size))
    return default_collate(items)


@torch.no_grad()
def hypotheses(model, inputs, n: int, seed: int) -> dict[str, np.ndarray]:
    """The mode and n − 1 samples of each crop, their log-likelihoods and the camera: arrays
    (P, n, …) in draw order (slot 0 the mode)."""
    posterior = model(inputs)
    generator = torch.Generator().manual_seed(seed)
    out = posterior.hypotheses(n - 1, generator)
    return {"pose6d": out.pose6d, "log_likelihood": posterior.log_prob(out.pose6d),
            "betas": out.betas, "cam": out.cam, "transl": out.transl,
            "coco2d_crop": out.coco2d}


def rank(draw: dict[str, torch.Tensor]) -> np.ndarray:
    """(P, n) the hypotheses' draw slots by log-likelihood, highest first (stable)."""
    ll = draw["log_likelihood"].double().numpy()
    return np.argsort(-ll, axis=1, kind="stable")


@torch.no_grad()
def smplx_meshes(cfg: DictConfig, pose6d: torch.Tensor, betas: torch.Tensor,
                 transl: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (P, n, V, 3), joints (P, n, J, 3), faces (F, 3)) of SMPL-X, camera frame."""
    smplx = load_smplx(cfg.body.models, num_betas=NUM_BETAS)
    p, n = pose6d.shape[:2]
    mats = rot6d_to_matrix(pose6d.flatten(0, 1))
    out = smplx(betas=betas.repeat_interleave(n, 0), global_orient=mats[:, :1],
                body_pose=mats[:, 1:], transl=transl.repeat_interleave(n, 0))
    return (out.vertices.unflatten(0, (p, n)).numpy(), out.joints.unflatten(0, (p, n)).numpy(),
            np.asarray(smplx.faces, np.int64))


def infer_image(cfg: DictConfig, image: str | Path, box: str | None = None,
                labels: str | Path | None = None, checkpoint: str | None = None,
                n: int = 100, focal: float | None = None, out: str | Path | None = None) -> Path:
    """Run the demo on one image; returns its output folder (default
    `<reports>/infer/<image stem>/`)."""
    if n < 1:
        raise UsageError(f"--hypotheses must be ≥ 1, got {n}")
    image = Path(image)
    rgb = read_rgb(image)
    h, w = rgb.shape[:2]
    boxes = find_boxes(image, w, h, box, Path(labels) if labels else None)
    focal = float(focal) if focal else float(default_focal(w, h))
    ckpt = resolve_checkpoint(cfg, checkpoint)
    model, trained, _ = load_model(cfg, ckpt)
    note_profile(cfg, trained, ckpt)
    model.eval()
    det = detect(cfg, rgb, image, boxes)
    inputs = model_inputs(trained, rgb, det, boxes, focal)
    draw = hypotheses(model, inputs, n, int(cfg.eval.seed))
    order = rank(draw)
    take = torch.from_numpy(order)
    pose6d = torch.take_along_dim(draw["pose6d"], take[..., None, None], 1)
    verts, joints, faces = smplx_meshes(cfg, pose6d, draw["betas"], draw["transl"])
    mats = rot6d_to_matrix(pose6d)
    axis_angle = matrix_to_axis_angle(mats.flatten(0, 2)).reshape(mats.shape[:3] + (3,))
    coco_crop = torch.take_along_dim(draw["coco2d_crop"], take[..., None, None], 1).double()
    half = 100 * boxes.scale[:, None, None, None]
    coco_image = boxes.center[:, None, None] + coco_crop.numpy() * half
    result = {
        "log_likelihood": np.take_along_axis(draw["log_likelihood"].numpy(), order, 1),
        "draw_slot": order, "mode_rank": np.argmax(order == 0, axis=1),
        "pose6d": pose6d.numpy(), "global_orient": axis_angle[:, :, 0].numpy(),
        "body_pose": axis_angle[:, :, 1:].numpy(), "betas": draw["betas"].numpy(),
        "cam_weak_perspective": draw["cam"].numpy(), "transl": draw["transl"].numpy(),
        "focal": np.float32(focal), "image_size": np.array([w, h], np.int32),
        "box_center": boxes.center, "box_scale": boxes.scale, "detector_keypoints": det,
        "joints": joints, "vertices": verts, "faces": faces, "coco2d": coco_image,
    }
    folder = Path(out) if out else Path(cfg.paths.reports) / "infer" / image.stem
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "hypotheses.npz", **result)
    write_figures(folder, rgb, result, float(cfg.conventions.visible_conf))
    print(f"{image}: {len(boxes.scale)} box(es) from {boxes.source}, {n} hypotheses each, "
          f"checkpoint {ckpt}; mode rank {result['mode_rank'].tolist()}", file=sys.stderr)
    return folder
