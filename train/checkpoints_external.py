"""Checkpoints from outside the project (docs/formats.md, "HRNet-W48 backbone" and "The reference
release's own files"):

- `load_bedlam_cliff_backbone(hrnet, path)`: BEDLAM-CLIFF's HRNet-W48 weights
  (`bedlam_cliff_3dpw_ft_backbone.pth`, or a whole BEDLAM-CLIFF Lightning `.ckpt`) into our
  `HRNetW48`, strictly; `apply_backbone_checkpoint(model, cfg)` does it for
  `model.backbone_checkpoint`.
- `load_reference_checkpoint(model, path)`: the reference release's `humr_best.ckpt` into a
  `ProbabilisticHMR`: the flow exactly, the rest by the table `REFERENCE_NAMES` below.

Where the names come from. The BEDLAM-CLIFF / reference HRNet (the PARE `PoseHighResolutionNet`
with `DOWNSAMPLE=True, USE_CONV=True`) uses the same module names as our `HRNetW48` (conv1 … stage4,
`downsample_stage_{1,2,3}`, `None` slots kept in `transition*` and `fuse_layers`), plus a 24-joint
`final_layer` that the 720-D output never uses: the mapping is "strip the prefix, drop
`final_layer`". The flow layout is docs/formats.md's (FrEIA GraphINN `module_list.{2k}` coupling,
`module_list.{2k+1}` permutation). Every other reference name in `REFERENCE_NAMES` is INFERRED
from the reference's public source (the Lightning module keeps the network as `self.model`; its
`Humr` has `backbone`, `joints_enc` = Linear, ReLU, Linear, `head` = `HMRShapeCamHead` with `fc1`,
`fc2`, `decshape`, `deccam`, buffers `init_shape` (1, 11), `init_cam` (1, 3), and `flow`), not
checked against a real `humr_best.ckpt`.

The shape/camera head is fc1 → dropout → fc2 → dropout → decshape/deccam without activations,
in the reference as in ours (docs/method.md §3). The reference's flow subnets are Linear → Dropout
→ ReLU (ours ReLU → Dropout): the same function, since dropout only scales by a non-negative factor.

Files are read with `torch.load(weights_only=True)` (`train.checkpoint.read_checkpoint`): a
Lightning checkpoint's hyper-parameters, pickled as classes of packages not installed here
(lightning's `AttributeDict`, yacs' `CfgNode`), are read as plain OrderedDicts; a file naming
any other class is refused in one line naming the file and the class. Nothing in a file runs.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from core.errors import ConfigError

from .backbones import HRNetW48
from .checkpoint import read_checkpoint

# ---- the reference release's names ---------------------------------------------------------
# (our name in ProbabilisticHMR, reference name(s) in the checkpoint's `state_dict`, provenance).
# A name ending in "." is a prefix: every key under it maps one to one, the rest of the key kept.
# Otherwise it is one key, made by concatenating the reference tensors along the first axis
# (after flattening leading singleton axes to the target's rank).
REFERENCE_NAMES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("flow.", ("model.flow.",), "docs/formats.md"),
    ("backbone.backbone.", ("model.backbone.",), "inferred"),
    ("pose_condition.net.0.", ("model.joints_enc.0.",), "inferred"),
    ("pose_condition.net.2.", ("model.joints_enc.2.",), "inferred"),
    ("head.net.0.", ("model.head.fc1.",), "inferred"),
    ("head.net.2.", ("model.head.fc2.",), "inferred"),
    ("head.net.4.weight", ("model.head.decshape.weight", "model.head.deccam.weight"), "inferred"),
    ("head.net.4.bias", ("model.head.decshape.bias", "model.head.deccam.bias"), "inferred"),
    ("head.mean", ("model.head.init_shape", "model.head.init_cam"), "inferred"),
)
# reference keys known to carry nothing we load: the pose HRNet's joint heatmap layer, the body
# models and regressors the Lightning module and its SMPL-X camera head register as buffers
REFERENCE_IGNORED: tuple[str, ...] = (
    "model.backbone.final_layer.", "model.smpl.", "smplx.", "smpl_neutral.", "J_regressor",
    "loss_fn.",
)
# our keys no checkpoint provides: the body model's joint regressors (built from its files)
OURS_FROM_ELSEWHERE: tuple[str, ...] = ("body.",)
# where the flow anchors the reference layout; keys are re-rooted so this sits under "model."
REFERENCE_ROOT = "model."
FLOW_ANCHOR = "flow.module_list.0.subnet1.0.weight"

# ---- BEDLAM-CLIFF's HRNet -------------------------------------------------------------------
# prefixes of the backbone inside the files seen in the wild, most specific first; "" is the
# bare `*_backbone.pth` state dict
BACKBONE_PREFIXES: tuple[str, ...] = (
    "model.backbone.", "module.model.backbone.", "module.backbone.", "backbone.", "module.", "")
BACKBONE_IGNORED: tuple[str, ...] = ("final_layer.",)  # the 24-joint heatmap conv
BACKBONE_ANCHOR = "conv1.weight"  # the stem: every HRNet state dict has it
OPTIONAL_SUFFIX = ".num_batches_tracked"  # BatchNorm step counters: unused in eval mode


# ---- reading files --------------------------------------------------------------------------
# the dict subclasses the reference release's and BEDLAM-CLIFF's Lightning files keep their
# hyper-parameters in (lightning's AttributeDict under its three package names, yacs' CfgNode),
# read as `OrderedDict`s (items and attribute state, none of their code; torch's weights-only
# loader fills only dict, OrderedDict and Counter); any other class in a file is refused
REFERENCE_HYPERPARAMETER_CLASSES = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "yacs.config.CfgNode",
)
REFERENCE_GLOBALS = tuple((OrderedDict, name) for name in REFERENCE_HYPERPARAMETER_CLASSES)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file: its `state_dict` (Lightning), else its `model` or
    `state_dict`-less mapping of tensors (a bare `.pth`); non-tensor entries are dropped."""
    path = Path(path)
    obj = read_checkpoint(path, REFERENCE_GLOBALS)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict or a checkpoint dict, got "
                         f"{type(obj).__name__}")
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"{path}: no tensors found")
    return state


def _names(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f", … ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ---- BEDLAM-CLIFF HRNet-W48 -----------------------------------------------------------------
def bedlam_cliff_backbone_prefix(state: Mapping[str, Tensor]) -> str:
    """The prefix under which `state` holds the HRNet (one of `BACKBONE_PREFIXES`)."""
    for prefix in BACKBONE_PREFIXES:
        if prefix + BACKBONE_ANCHOR in state:
            return prefix
    raise KeyError(f"no HRNet stem '{BACKBONE_ANCHOR}' under any of the prefixes "
                   f"{[p for p in BACKBONE_PREFIXES if p]} or at the top level")


def load_bedlam_cliff_backbone(hrnet: HRNetW48, path: str | Path) -> None:
    """Load BEDLAM-CLIFF's HRNet-W48 weights from `path` into `hrnet`, strictly.

    `path`: `bedlam_cliff_3dpw_ft_backbone.pth` (the HRNet's state dict plus a 24-joint
    `final_layer`, ignored) or a BEDLAM-CLIFF Lightning `.ckpt` (`state_dict` with the backbone
    under `model.backbone.`; other prefixes of `BACKBONE_PREFIXES` accepted, keys outside the
    prefix ignored). Raises KeyError naming the missing or unexpected backbone keys and the file,
    ValueError naming a key whose shape differs. BatchNorm `num_batches_tracked` counters may be
    absent (ours are kept).
    """
    path = Path(path)
    state = read_state_dict(path)
    try:
        prefix = bedlam_cliff_backbone_prefix(state)
    except KeyError as err:
        raise KeyError(f"{path}: {err.args[0]}") from None
    # a bare state dict: every key is the backbone's; under a prefix: only those keys
    theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    theirs = {k: v for k, v in theirs.items() if not k.startswith(BACKBONE_IGNORED)}
    ours = hrnet.state_dict()
    missing = [k for k in ours if k not in theirs and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in theirs if k not in ours]
    if missing or unexpected:
        raise KeyError(f"{path} (backbone prefix {prefix!r}) does not match HRNetW48: "
                       + _mismatch("backbone", missing, unexpected))
    for key, value in theirs.items():
        if value.shape != ours[key].shape:
            raise ValueError(f"{path}: backbone key {key!r} has shape {tuple(value.shape)}, "
                             f"HRNetW48 expects {tuple(ours[key].shape)}")
    full = {k: theirs.get(k, v) for k, v in ours.items()}
    hrnet.load_state_dict(full, strict=True)


PRETRAINED_BACKBONES = ("hrnet_w48",)  # backbones the paper starts from pretrained weights


def require_backbone_weights(cfg: DictConfig) -> None:
    """Refuse (`ConfigError`, one line) to train a backbone that the paper uses pretrained
    (`PRETRAINED_BACKBONES`) without `model.backbone_checkpoint`, unless
    `model.allow_random_backbone=true`. The synthetic profile's `small_cnn` has no pretrained
    weights in the paper and is exempt."""
    m = cfg.model
    if m.backbone in PRETRAINED_BACKBONES and not m.get("backbone_checkpoint") \
            and not m.get("allow_random_backbone", False):
        raise ConfigError(f"model.backbone_checkpoint is not set: model.backbone={m.backbone} "
                          "would train from random weights (set model.backbone_checkpoint=<"
                          "bedlam_cliff_3dpw_ft_backbone.pth>, or model.allow_random_backbone="
                          "true to train it anyway)")


def apply_backbone_checkpoint(model: nn.Module, cfg: DictConfig) -> bool:
    """Load `cfg.model.backbone_checkpoint` (when set) into `model.backbone.backbone` (the
    HRNet that `ProbabilisticHMR` wraps frozen); returns whether it loaded anything."""
    path = cfg.model.get("backbone_checkpoint")
    if not path:
        return False
    hrnet = model.backbone.backbone
    if not isinstance(hrnet, HRNetW48):
        raise TypeError(f"model.backbone_checkpoint holds HRNet-W48 weights but model.backbone "
                        f"is {cfg.model.backbone!r} ({type(hrnet).__name__})")
    load_bedlam_cliff_backbone(hrnet, path)
    return True


# ---- the reference release's humr_best.ckpt ------------------------------------------------
def _mismatch(what: str, missing: list[str], unexpected: list[str]) -> str:
    parts = ([f"missing {what} keys: {_names(missing)}"] if missing else []) + \
        ([f"unexpected {what} keys: {_names(unexpected)}"] if unexpected else [])
    return "; ".join(parts)


def _reroot(state: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    """`state` with its keys re-rooted so the flow sits under `REFERENCE_ROOT` (a state dict
    saved from the bare network, or under DDP's `module.`, becomes the Lightning layout)."""
    hits = [k[:-len(FLOW_ANCHOR)] for k in state if k.endswith(FLOW_ANCHOR)]
    roots = [r for r in hits if r == "" or r.endswith(".")]
    if not roots:
        raise KeyError(f"{path}: no normalizing flow found (no key ending in '{FLOW_ANCHOR}')")
    root = REFERENCE_ROOT if REFERENCE_ROOT in roots else min(roots, key=len)
    if root == REFERENCE_ROOT:
        return dict(state)
    return {(REFERENCE_ROOT + k[len(root):] if k.startswith(root) else k): v
            for k, v in state.items()}


def _check_flow(flow_keys: dict[str, Tensor], ours: Mapping[str, Tensor], path: Path) -> None:
    """The flow must match ours key for key, shape for shape, and in its permutations."""
    missing = [k for k in ours if k.startswith("flow.") and k not in flow_keys]
    unexpected = [k for k in flow_keys if k not in ours]
    if missing or unexpected:
        raise KeyError(f"{path}: the flow does not match ours (blocks, layout): "
                       + _mismatch("flow", missing, unexpected))
    for key, value in flow_keys.items():
        if value.shape != ours[key].shape:
            raise ValueError(f"{path}: flow key {key!r} has shape {tuple(value.shape)}, ours "
                             f"{tuple(ours[key].shape)} (flow dims, hidden size or condition "
                             "size differ)")
        if key.endswith((".perm", ".perm_inv")) and not torch.equal(value.long(), ours[key]):
            raise ValueError(f"{path}: permutation {key!r} differs from ours (PermuteRandom "
                             "seeded with the block index k); this flow was built differently")


def _target_shape(value: Tensor, shape: torch.Size) -> Tensor:
    return value.reshape(-1, *shape[1:]) if len(shape) else value.reshape(shape)


def load_reference_checkpoint(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load the reference release's `humr_best.ckpt` into a `ProbabilisticHMR`.

    The flow (`model.flow.module_list.…`, FrEIA GraphINN layout) must match ours exactly: a
    missing or unexpected flow key, a shape mismatch or a permutation other than our seeds'
    raises. The rest maps by `REFERENCE_NAMES` as far as names match; a shape mismatch there
    raises too. Returns {"loaded": our keys set, "missing": our keys left as they were (bar the
    body model's, `OURS_FROM_ELSEWHERE`),
    "unexpected": checkpoint keys not used, "ignored": checkpoint keys of `REFERENCE_IGNORED`}.
    """
    path = Path(path)
    state = _reroot(read_state_dict(path), path)
    ours = model.state_dict()
    new: dict[str, Tensor] = {}
    origin: dict[str, tuple[str, ...]] = {}  # our key -> the reference keys it came from
    for our_name, ref_names, _ in REFERENCE_NAMES:
        if our_name.endswith("."):
            ref = ref_names[0]
            for key, value in state.items():
                if key.startswith(ref):
                    new[our_name + key[len(ref):]] = value
                    origin[our_name + key[len(ref):]] = (key,)
        elif our_name in ours and all(r in state for r in ref_names):
            target = ours[our_name].shape
            new[our_name] = torch.cat([_target_shape(state[r], target) for r in ref_names])
            origin[our_name] = ref_names
    _check_flow({k: v for k, v in new.items() if k.startswith("flow.")}, ours, path)
    new = {k: v for k, v in new.items() if k in ours}  # under a mapped prefix, but not ours
    for key, value in new.items():
        if value.shape != ours[key].shape:
            raise ValueError(f"{path}: {key!r} (from the reference's "
                             f"{', '.join(origin[key])}) has shape {tuple(value.shape)}, ours "
                             f"{tuple(ours[key].shape)}")
    model.load_state_dict(new, strict=False)
    used = {r for k in new for r in origin[k]}
    left = [k for k in state if k not in used]
    missing = sorted(k for k in ours if k not in new and not k.startswith(OURS_FROM_ELSEWHERE))
    return {"loaded": sorted(new), "missing": missing,
            "unexpected": sorted(k for k in left if not k.startswith(REFERENCE_IGNORED)),
            "ignored": sorted(k for k in left if k.startswith(REFERENCE_IGNORED))}
