"""The `vitpose` detector backend: the paper's ViTPose (docs/method.md §1–2, docs/formats.md
"ViTPose").

Runs a real ViTPose top-down model through Hugging Face `transformers`
(`VitPoseForPoseEstimation`, torch only, no torchvision). `transformers` is an optional
dependency, imported when a detector is built: `pip install -e '.[vitpose]'`.

Checkpoints (`checkpoint=`):
- a Hugging Face model directory (`config.json` + weights), read with
  `from_pretrained(path, local_files_only=True)`: never the network;
- an original ViTPose / easy_ViTPose `.pth` in the mmpose 0.x key layout (the paper's
  `vitpose-h-multi-coco.pth`), tensors at the top level or under `state_dict`. Its keys are
  converted by `vitpose_keys.convert_original_state_dict` and the model is sized from the
  tensors: width and patch from the patch embedding, depth from the block indices, MLP ratio
  from `fc1`, joints and head type (classic: 2 deconvolutions + 1×1 conv; simple: upsampling +
  3×3 conv) from the head, token count from the position embeddings (must fit 256×192). The
  number of attention heads changes no tensor's shape: it comes from `num_heads=`, else from the
  mmcv `meta.config` text saved with the file (`num_heads=…`), else from the released models'
  width table (384/768 → 12 heads, 1024/1280 → 16). LayerNorm ε is ViTPose's 1e-6. Loading is
  strict: a missing or unexpected key is an error naming it (in the file's own layout) and the
  file. Multi-dataset files keep the COCO model: the `keypoint_head` (the COCO head; the
  `associate_keypoint_heads` of AIC, MPII, … are dropped) and, for ViTPose+ MoE files, expert 0
  (COCO's dataset index) merged into each `fc2` (vitpose_keys docstring). Unknown layouts,
  mmpose 1.x included, are refused.

Input: the 256×192 crops come already warped by `body.cameras.DetectorCrop` (UDP grid); they
are only normalised here: uint8 RGB → /255 → ImageNet mean/std → NCHW float32, `batch_size`
crops per forward pass, under `torch.no_grad()`. `dtype="bfloat16"`/`"float16"` runs the
forward pass under CUDA autocast; on a CPU device the model always runs in float32 (a warning
says so). Output: (B, 17, 64, 48) float32 numpy heatmaps, un-clipped (peaks may exceed 1).

Flip test (`flip_test=True`, ViTPose's own test setting): the crop mirrored left-right is run
too; its heatmaps are mirrored back (columns reversed) with the left/right COCO joints swapped
((1, 2), (3, 4), …, (15, 16)), and the two are averaged. No pixel shift: ViTPose's UDP models
are tested with `shift_heatmap=False`, and rightly so. On the UDP grid the first and last pixel
centres of the 192-wide input and of the 48-wide heatmap both sit on the field of view's edges,
so mirroring the input (column i → 191 − i, about the centre 95.5) is exactly mirroring the
heatmap about its centre 23.5 (column u → 47 − u): an array reversal. The 1-pixel shift of the
non-UDP (MSRA) recipe only corrects the half-pixel misalignment of its `u·W/W_h` grid.

Why not mmpose/mmcv as the default. Running ViTPose through mmpose 1.3.2 on this stack was
measured (docs/formats.md): it needs torchvision, whose install swaps the CPU torch for a 6 GB CUDA
build; it pulls mmdet and mmpretrain; chumpy must be kept out (it does not install on Python
3.11 / numpy 2); xtcocotools must be rebuilt; and mmcv needs a patched source build of 14
minutes. The ViT backbone and the classic heatmap head are a few hundred lines that
`transformers` already ships and tests against the original checkpoints, so this backend only
needs that package and a key conversion.
"""
from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from body.cameras import DetectorCrop
from body.detector import NUM_JOINTS, CropRequest
from body.joints import COCO17_FLIP_INDEX
from core.safe_torch_load import load_weights_only
from preprocess.detectors.vitpose_keys import (
    Architecture, CheckpointError, convert_original_state_dict, infer_architecture,
    to_original_key,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYER_NORM_EPS = 1e-6

INSTALL_HINT = ("the 'vitpose' detector backend needs Hugging Face transformers>=4.48 "
                "(VitPoseForPoseEstimation): pip install -e '.[vitpose]'")
_AMP_DTYPES = {"float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
               "float16": torch.float16, "fp16": torch.float16}
_RE_META_HEADS = re.compile(r"num_heads\s*=\s*(\d+)")


def _transformers():
    """(VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation), or a clear error."""
    try:
        from transformers import (VitPoseBackboneConfig, VitPoseConfig,
                                  VitPoseForPoseEstimation)
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation


def vitpose_config(arch: Architecture, num_heads: int, source: str = "<state dict>"):
    """The `VitPoseConfig` of an original-layout checkpoint's architecture (for the detector
    input size of `DetectorCrop`)."""
    backbone_cls, config_cls, _ = _transformers()
    image_hw = DetectorCrop.INPUT_SHAPE
    p = arch.patch_size
    grid = (image_hw[0] // p, image_hw[1] // p)
    if arch.num_patches != grid[0] * grid[1]:
        raise CheckpointError(f"{source}: {arch.num_patches} position embeddings (+ the cls row) "
                              f"do not fit a {image_hw[0]}×{image_hw[1]} input in patches of "
                              f"{p} ({grid[0]}×{grid[1]} = {grid[0] * grid[1]})")
    if arch.hidden_size % num_heads:
        raise CheckpointError(f"{source}: width {arch.hidden_size} is not divisible by "
                              f"{num_heads} attention heads")
    backbone = backbone_cls(
        image_size=list(image_hw), patch_size=[p, p], num_channels=3,
        hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
        num_attention_heads=num_heads, mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias,
        hidden_act="gelu", layer_norm_eps=LAYER_NORM_EPS, out_indices=[arch.num_layers])
    return config_cls(backbone_config=backbone, num_labels=arch.num_labels,
                      use_simple_decoder=arch.simple_decoder, scale_factor=4)


def _load_file(path: Path) -> dict:
    return load_weights_only(path, error=CheckpointError)


def _num_heads_from_meta(checkpoint) -> int | None:
    """`num_heads=N` from the config text mmcv saves under `meta.config`, if any."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    text = meta.get("config") if isinstance(meta, dict) else None
    match = _RE_META_HEADS.search(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None


def load_original_checkpoint(path: str | Path, num_heads: int | None = None):
    """A `VitPoseForPoseEstimation` (float32, eval) from an original ViTPose `.pth` (strict)."""
    path = Path(path)
    _, _, model_cls = _transformers()
    checkpoint = _load_file(path)
    sd = convert_original_state_dict(checkpoint, source=str(path))
    arch = infer_architecture(sd, source=str(path))
    heads = num_heads or _num_heads_from_meta(checkpoint) or arch.num_heads()
    if heads is None:
        raise CheckpointError(f"{path}: cannot tell the number of attention heads of a width-"
                              f"{arch.hidden_size} ViT (not a released ViTPose width, no "
                              "meta.config in the file): pass num_heads=")
    config = vitpose_config(arch, int(heads), source=str(path))
    for k in (1, 2):  # BatchNorm's step counter is unused in eval; some files lack it
        if not arch.simple_decoder:
            sd.setdefault(f"head.batchnorm{k}.num_batches_tracked", torch.tensor(0))
    with torch.device("meta"):  # no random initialisation of ~600 M parameters
        model = model_cls(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing key(s): " + ", ".join(to_original_key(k) for k in missing))
        if unexpected:
            parts.append("unexpected key(s): " + ", ".join(to_original_key(k)
                                                           for k in unexpected))
        raise CheckpointError(f"{path}: " + "; ".join(parts))
    wrong = [f"{to_original_key(k)} {tuple(sd[k].shape)} (model: {tuple(v.shape)})"
             for k, v in expected.items() if sd[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{path}: tensor shape mismatch: " + ", ".join(wrong))
    model.load_state_dict(sd, strict=True, assign=True)
    return model.float().eval()


def load_hf_directory(path: str | Path):
    """A `VitPoseForPoseEstimation` (float32, eval) from a local Hugging Face directory (strict)."""
    path = Path(path)
    _, _, model_cls = _transformers()
    model, info = model_cls.from_pretrained(str(path), local_files_only=True,
                                            output_loading_info=True)
    problems = [f"{name.replace('_', ' ')}: {', '.join(sorted(map(str, info[name])))}"
                for name in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if info.get(name)]
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))
    return model.float().eval()


class ViTPoseDetector:
    """ViTPose heatmaps of detector crops (module docstring).

    `checkpoint`: a Hugging Face VitPose directory or an original ViTPose `.pth`; `device`:
    a torch device string; `dtype`: float32, or bfloat16/float16 for CUDA autocast; `flip_test`:
    average with the mirrored crop; `batch_size`: crops per forward pass; `num_heads`: attention
    heads of a `.pth` whose width is not a released ViTPose width (and has no `meta.config`).
    The model is loaded once, when the detector is built.
    """

    name = "vitpose"

    def __init__(self, checkpoint: str, device: str = "cpu", dtype: str = "float32",
                 flip_test: bool = False, batch_size: int = 32, num_heads: int | None = None):
        _transformers()  # fail early, and clearly, without the optional dependency
        if dtype not in _AMP_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_AMP_DTYPES)}, got {dtype!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.checkpoint = Path(checkpoint).expanduser()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} but CUDA is not available to torch "
                               f"{torch.__version__}")
        self.dtype = dtype
        self.flip_test = bool(flip_test)
        self.batch_size = int(batch_size)
        self._amp = _AMP_DTYPES[dtype]
        if self._amp is not None and self.device.type != "cuda":
            warnings.warn(f"ViTPoseDetector: dtype={dtype!r} uses CUDA autocast only; on "
                          f"{self.device} the model runs in float32", stacklevel=2)
            self._amp = None

        if self.checkpoint.is_dir():
            model = load_hf_directory(self.checkpoint)
        elif self.checkpoint.is_file():
            model = load_original_checkpoint(self.checkpoint, num_heads)
        else:
            raise FileNotFoundError(f"ViTPose checkpoint not found: {self.checkpoint}")
        self._check_contract(model)
        self.model = model.to(self.device)
        self._moe = getattr(model.config.backbone_config, "num_experts", 1) > 1
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._flip_index = torch.tensor(COCO17_FLIP_INDEX, device=self.device)

    def __repr__(self) -> str:
        return (f"ViTPoseDetector({str(self.checkpoint)!r}, device={str(self.device)!r}, "
                f"dtype={self.dtype!r}, flip_test={self.flip_test}, "
                f"batch_size={self.batch_size})")

    def _check_contract(self, model):
        """256×192 input, 17 joints, 64×48 heatmaps: what `Detector` promises."""
        bb = model.config.backbone_config
        image = tuple(int(v) for v in np.broadcast_to(bb.image_size, 2))
        patch = tuple(int(v) for v in np.broadcast_to(bb.patch_size, 2))
        upsampling = model.config.scale_factor if model.config.use_simple_decoder else 4
        hm = tuple(s // p * upsampling for s, p in zip(image, patch))
        joints = model.config.num_labels
        (ih, iw), (hh, hw) = DetectorCrop.INPUT_SHAPE, DetectorCrop.HEATMAP_SHAPE
        if image != (ih, iw) or hm != (hh, hw) or joints != NUM_JOINTS:
            raise CheckpointError(f"{self.checkpoint}: a model for {image[0]}×{image[1]} input, "
                                  f"{joints} joints, {hm[0]}×{hm[1]} heatmaps; the detector "
                                  f"contract is {ih}×{iw} → {NUM_JOINTS} × {hh}×{hw}")

    def __call__(self, crops: np.ndarray, requests: Sequence[CropRequest] | None = None
                 ) -> np.ndarray:
        """crops (B, 256, 192, 3) uint8 RGB (requests: ignored) → heatmaps (B, 17, 64, 48)."""
        if crops is None:
            raise ValueError("the vitpose backend needs the crops' pixels, got crops=None")
        crops = np.asarray(crops)
        h, w = DetectorCrop.INPUT_SHAPE
        if crops.ndim != 4 or crops.shape[1:] != (h, w, 3):
            raise ValueError(f"crops must be (B, {h}, {w}, 3), got {crops.shape}")
        if crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 RGB, got {crops.dtype}")
        if requests is not None and len(requests) != len(crops):
            raise ValueError(f"{len(crops)} crops for {len(requests)} requests")
        out = np.empty((len(crops), NUM_JOINTS) + DetectorCrop.HEATMAP_SHAPE, np.float32)
        for start in range(0, len(crops), self.batch_size):
            out[start:start + self.batch_size] = self._heatmaps(crops[start:start +
                                                                      self.batch_size])
        return out

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 RGB (B, H, W, 3) → normalised float32 NCHW on the device."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.zeros(len(x), dtype=torch.long, device=x.device) if self._moe else None
        with (torch.autocast("cuda", dtype=self._amp) if self._amp is not None
              else contextlib.nullcontext()):
            heatmaps = self.model(x, dataset_index=index).heatmaps
        return heatmaps.float()

    def _heatmaps(self, crops: np.ndarray) -> np.ndarray:
        x = self.preprocess(crops)
        with torch.no_grad():
            heatmaps = self._forward(x)
            if self.flip_test:
                mirrored = self._forward(x.flip(-1))
                heatmaps = 0.5 * (heatmaps + mirrored[:, self._flip_index].flip(-1))
        return heatmaps.cpu().numpy()
