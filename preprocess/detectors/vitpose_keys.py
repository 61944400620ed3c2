"""ViTPose checkpoint keys: original (mmpose 0.x) layout → Hugging Face `VitPoseForPoseEstimation`.

Pure torch, no `transformers`: the `vitpose` backend builds the model, this module only renames,
splits and checks tensors (docs/formats.md "ViTPose", both layouts). Original → Hugging Face:

- `backbone.patch_embed.proj.*` → `backbone.embeddings.patch_embeddings.projection.*`
- `backbone.pos_embed` (1, 1 + patches, C) → `backbone.embeddings.position_embeddings`, same
  shape and meaning: both forward passes add `pos[:, 1:] + pos[:, :1]` (the cls row is folded
  into every token; there is no cls token)
- `backbone.blocks.N.norm1.*`, `norm2.*` → `backbone.encoder.layer.N.layernorm_before.*`,
  `layernorm_after.*`
- `backbone.blocks.N.attn.qkv.*` (3C rows) → `….attention.attention.{query,key,value}.*`
  (rows [0, C), [C, 2C), [2C, 3C): the original reshapes qkv to (3, heads, head dim))
- `backbone.blocks.N.attn.proj.*` → `….attention.output.dense.*`
- `backbone.blocks.N.mlp.fc1.*`, `fc2.*` → `….mlp.fc1.*`, `fc2.*`
- `backbone.last_norm.*` → `backbone.layernorm.*`
- `keypoint_head.deconv_layers.{0,1,3,4}.*` → `head.deconv1`, `head.batchnorm1`,
  `head.deconv2`, `head.batchnorm2` (2, 5 are the ReLUs)
- `keypoint_head.final_layer.*` → `head.conv.*` (1×1 after the deconvolutions of the classic
  head, or the 3×3 conv of the simple head)

Multi-dataset checkpoints. The COCO-17 model is kept, the rest dropped, as ViTPose's own
`tools/model_split.py` does:
- multi-task ViTPose (`vitpose-*-multi-coco.pth` and the unsplit COCO+AIC+MPII+… files): the
  shared backbone, `keypoint_head` = the COCO head (dataset 0); `associate_keypoint_heads.K.*`
  (AIC, MPII, AP-10K, …) are dropped;
- ViTPose+ (MoE): block N's MLP output is `[fc2(h), experts.D(h)]` for dataset D; COCO is
  dataset 0, so `fc2` becomes the row-wise concatenation of `fc2` and `experts.0` (exactly what
  the MoE layer computes for dataset 0) and every other expert is dropped;
- `backbone.cls_token` (present in some files, unused by the forward pass) is dropped.
Anything else is an error naming the keys: mmpose 1.x files (`backbone.layers.N.ln1`, …) and
unknown layouts are refused rather than half-loaded. A state dict already in the Hugging Face
layout passes through unchanged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from core.errors import BadFileError

# mmpose 0.x checkpoints saved by mmcv: {"meta": …, "state_dict": …, "optimizer": …}
STATE_DICT_KEYS = ("state_dict", "model")

# ViT widths → heads of the released ViTPose models (heads change no tensor shape, so a file
# cannot tell them): S 384/12, B 768/12, L 1024/16, H 1280/16.
NUM_HEADS_BY_WIDTH = {384: 12, 768: 12, 1024: 16, 1280: 16}

_BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HEAD_RENAMES = {
    "deconv_layers.0": "deconv1",
    "deconv_layers.1": "batchnorm1",
    "deconv_layers.3": "deconv2",
    "deconv_layers.4": "batchnorm2",
    "final_layer": "conv",
}
_QKV = ("query", "key", "value")

_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RE_BLOCK = re.compile(r"backbone\.blocks\.(\d+)\.(norm1|norm2|attn\.proj|mlp\.fc1|mlp\.fc2)\."
                       r"(weight|bias)")
_RE_QKV = re.compile(r"backbone\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_RE_EXPERT = re.compile(r"backbone\.blocks\.(\d+)\.mlp\.experts\.(\d+)\.(weight|bias)")
_RE_HEAD = re.compile(r"keypoint_head\.(deconv_layers\.[0134]|final_layer)\." + _PARAM)
_RE_OTHER_HEADS = re.compile(r"associate_keypoint_heads\.\d+\..+")
_FIXED = {
    "backbone.patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
    "backbone.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
    "backbone.pos_embed": "backbone.embeddings.position_embeddings",
    "backbone.last_norm.weight": "backbone.layernorm.weight",
    "backbone.last_norm.bias": "backbone.layernorm.bias",
}
_DROPPED = ("backbone.cls_token",)

_RE_HF_LAYER = re.compile(r"backbone\.encoder\.layer\.(\d+)\.(.+)")


class CheckpointError(BadFileError):
    """A ViTPose checkpoint whose layout or keys do not fit."""


def extract_state_dict(checkpoint: Mapping, source: str = "<state dict>") -> dict:
    """The tensors of a loaded `.pth`: under `state_dict` (mmcv) or `model`, or the dict itself.

    A leading `module.` (DataParallel) on every key is removed.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(checkpoint)}")
    for key in STATE_DICT_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor)
                                                        for v in inner.values()):
            checkpoint = inner
            break
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: no tensors found (top-level keys: "
                              f"{sorted(checkpoint)[:10]})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'original' (mmpose 0.x ViTPose / easy_ViTPose), 'hf' (transformers), or an error."""
    keys = set(state_dict)
    if "backbone.patch_embed.proj.weight" in keys:
        return "original"
    if "backbone.embeddings.patch_embeddings.projection.weight" in keys:
        return "hf"
    if any(k.startswith(("backbone.layers.", "backbone.ln1.")) for k in keys):
        raise CheckpointError(
            "this is an mmpose 1.x checkpoint (backbone.layers.N.ln1 / ffn.layers, pos_embed "
            "without the cls row): not supported; use the original ViTPose release (mmpose 0.x "
            "layout, e.g. vitpose-h-multi-coco.pth) or a Hugging Face VitPose model directory")
    raise CheckpointError("unrecognised ViTPose checkpoint layout: no "
                          "'backbone.patch_embed.proj.weight' (original) nor "
                          "'backbone.embeddings.patch_embeddings.projection.weight' (Hugging "
                          f"Face); first keys: {sorted(keys)[:8]}")


def convert_original_state_dict(state_dict: Mapping, source: str = "<state dict>"
                                ) -> dict[str, torch.Tensor]:
    """Original ViTPose (mmpose 0.x) tensors → `VitPoseForPoseEstimation` tensors.

    `state_dict` may also be a whole mmcv checkpoint (tensors under `state_dict`). The COCO model
    of a multi-dataset file is kept (module docstring). Keys the mapping does not know raise
    `CheckpointError` naming them and `source`. Hugging Face-layout input is returned as is.
    """
    sd = extract_state_dict(state_dict, source)
    if detect_layout(sd) == "hf":
        return dict(sd)

    experts: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if key in _FIXED:
            out[_FIXED[key]] = value
        elif m := _RE_QKV.fullmatch(key):
            layer, param = m.groups()
            if value.shape[0] % 3:
                raise CheckpointError(f"{source}: {key} has {value.shape[0]} rows, not 3·C")
            for name, part in zip(_QKV, value.chunk(3, dim=0)):
                out[f"backbone.encoder.layer.{layer}.attention.attention.{name}.{param}"] = part
        elif m := _RE_BLOCK.fullmatch(key):
            layer, module, param = m.groups()
            out[f"backbone.encoder.layer.{layer}.{_BLOCK_RENAMES[module]}.{param}"] = value
        elif m := _RE_EXPERT.fullmatch(key):
            layer, expert, param = m.groups()
            experts.setdefault(int(layer), {}).setdefault(int(expert), {})[param] = value
        elif m := _RE_HEAD.fullmatch(key):
            module, param = m.groups()
            out[f"head.{_HEAD_RENAMES[module]}.{param}"] = value
        elif _RE_OTHER_HEADS.fullmatch(key) or key in _DROPPED:
            continue
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} unexpected key(s) the original ViTPose "
                              f"layout does not have: {', '.join(sorted(unknown))}")
    for layer, by_expert in sorted(experts.items()):
        if 0 not in by_expert:
            raise CheckpointError(f"{source}: block {layer} has MoE experts "
                                  f"{sorted(by_expert)} but no expert 0 (COCO)")
        for param, coco in by_expert[0].items():
            key = f"backbone.encoder.layer.{layer}.mlp.fc2.{param}"
            if key not in out:
                raise CheckpointError(f"{source}: block {layer} has MoE experts but no "
                                      f"backbone.blocks.{layer}.mlp.fc2.{param}")
            out[key] = torch.cat([out[key], coco], dim=0)
    return out


def to_original_key(key: str) -> str:
    """The original-layout name of a Hugging Face key (for error messages)."""
    for original, hf in _FIXED.items():
        if key == hf:
            return original
    if m := _RE_HF_LAYER.fullmatch(key):
        layer, rest = m.groups()
        for name in _QKV:
            prefix = f"attention.attention.{name}."
            if rest.startswith(prefix):
                return f"backbone.blocks.{layer}.attn.qkv.{rest[len(prefix):]}"
        for original, hf in _BLOCK_RENAMES.items():
            if rest.startswith(hf + "."):
                return f"backbone.blocks.{layer}.{original}.{rest[len(hf) + 1:]}"
    if key.startswith("head."):
        module, _, param = key[len("head."):].partition(".")
        for original, hf in _HEAD_RENAMES.items():
            if module == hf:
                return f"keypoint_head.{original}.{param}"
    return key


@dataclass(frozen=True)
class Architecture:
    """What the tensors of a (Hugging Face-layout) ViTPose state dict say about its model."""

    hidden_size: int
    num_layers: int
    patch_size: int
    num_patches: int      # tokens, without the cls row of the position embeddings
    mlp_ratio: int
    qkv_bias: bool
    num_labels: int
    simple_decoder: bool  # 3×3 conv after 4× upsampling (ViTPose "simple") vs 2 deconvolutions

    def num_heads(self) -> int | None:
        """Heads of the released ViTPose model of this width, None for other widths."""
        return NUM_HEADS_BY_WIDTH.get(self.hidden_size)


def infer_architecture(sd: Mapping[str, torch.Tensor], source: str = "<state dict>"
                       ) -> Architecture:
    """Sizes of a converted state dict, read from its tensors' shapes (ViT-S/B/L/H, tiny ones)."""
    def get(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"{source}: missing key {to_original_key(key)} "
                                  f"({key} in the Hugging Face layout)")
        return sd[key]

    proj = get("backbone.embeddings.patch_embeddings.projection.weight")
    if proj.ndim != 4 or proj.shape[1] != 3 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(f"{source}: patch embedding of shape {tuple(proj.shape)}, "
                              "expected (C, 3, p, p)")
    hidden, patch = int(proj.shape[0]), int(proj.shape[2])
    pos = get("backbone.embeddings.position_embeddings")
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != hidden:
        raise CheckpointError(f"{source}: position embeddings of shape {tuple(pos.shape)}, "
                              f"expected (1, 1 + patches, {hidden})")
    layers = {int(m.group(1)) for k in sd if (m := _RE_HF_LAYER.fullmatch(k))}
    if not layers:
        raise CheckpointError(f"{source}: no transformer blocks")
    fc1 = get("backbone.encoder.layer.0.mlp.fc1.weight")
    if fc1.shape[0] % hidden:
        raise CheckpointError(f"{source}: MLP width {fc1.shape[0]} is not a multiple of the "
                              f"embedding width {hidden}")
    conv = get("head.conv.weight")
    simple = "head.deconv1.weight" not in sd
    if not simple:
        for name, shape in (("head.deconv1.weight", (hidden, 256, 4, 4)),
                            ("head.deconv2.weight", (256, 256, 4, 4))):
            if tuple(get(name).shape) != shape:
                raise CheckpointError(f"{source}: {to_original_key(name)} has shape "
                                      f"{tuple(sd[name].shape)}; the classic ViTPose head "
                                      f"(2 deconvolutions 4×4, 256 channels) needs {shape}")
        conv_shape = (256, 1, 1)
    else:
        conv_shape = (hidden, 3, 3)
    if tuple(conv.shape[1:]) != conv_shape:
        raise CheckpointError(f"{source}: {to_original_key('head.conv.weight')} has shape "
                              f"{tuple(conv.shape)}, expected (joints, {conv_shape[0]}, "
                              f"{conv_shape[1]}, {conv_shape[2]})")
    return Architecture(
        hidden_size=hidden, num_layers=max(layers) + 1, patch_size=patch,
        num_patches=int(pos.shape[1]) - 1, mlp_ratio=int(fc1.shape[0]) // hidden,
        qkv_bias="backbone.encoder.layer.0.attention.attention.query.bias" in sd,
        num_labels=int(conv.shape[0]), simple_decoder=simple)
