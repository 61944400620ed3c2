"""Structured schemas (OmegaConf dataclasses) of the stage-two sections of `pipelines.yaml`.

`core.config.load_config` checks the sections `model`, `losses`, `loss_weights` and `eval`
against these: a key without a field, a field without a value, or a value of another type fails
at load. The values themselves live in `pipelines.yaml` (`???`: no default here); a field's range
rule sits beside it (`metadata["check"]`, the rules of `core.config_checks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING

from .config_checks import DEVICE, PROBABILITY, Rule, above, at_least, between, each, one_of


def _field(check: Rule | None = None, default: Any = MISSING, **kwargs) -> Any:
    return field(default=default, metadata={"check": check} if check else {}, **kwargs)


@dataclass
class ModelSchema:
    """`model:` (docs/method.md §3)."""

    backbone: str = MISSING
    backbone_options: dict[str, Any] = field(default_factory=dict)
    backbone_checkpoint: Optional[str] = MISSING
    allow_random_backbone: bool = MISSING
    freeze_backbone: bool = MISSING
    pose_mlp: list[int] = _field(each(at_least(1)))
    use_pose_condition: bool = MISSING
    use_bbox_condition: bool = MISSING
    flow_blocks: int = _field(at_least(1))
    flow_hidden: int = _field(at_least(1))
    flow_dropout: float = _field(between(0, 1, high_open=True))
    soft_clamp: float = _field(above(0))
    coupling: str = _field(one_of("realnvp", "nice"))
    regressor_hidden: int = _field(at_least(1))
    regressor_iterations: int = _field(at_least(1))
    regressor_dropout: float = _field(between(0, 1, high_open=True))
    crop_size: int = _field(at_least(1))
    samples_train: int = _field(at_least(1))


@dataclass
class LossWeightsSchema:
    """`loss_weights:` (docs/method.md §4), every weight ≥ 0 (0 switches a term off)."""

    nll: float = _field(at_least(0))
    betas: float = _field(at_least(0))
    keypoints_2d: float = _field(at_least(0))
    keypoints_2d_samples: float = _field(at_least(0))
    orth: float = _field(at_least(0))
    camera: float = _field(at_least(0))
    mmd: float = _field(at_least(0))
    mask: float = _field(at_least(0))
    orientation_mode: float = _field(at_least(0))
    body_pose_mode: float = _field(at_least(0))
    keypoints_3d_mode: float = _field(at_least(0))


@dataclass
class LossesSchema:
    """`losses:` (docs/method.md §4)."""

    nll_noise: float = _field(at_least(0))
    mmd_kernel_scales: list[float] = _field(each(above(0)))
    mmd_unbiased: bool = MISSING
    mmd_uncertain_conf: float = _field(PROBABILITY)
    mmd_min_conf: float = _field(PROBABILITY)
    camera_scale_factor: float = _field(above(0))
    detach_orientation: str = _field(one_of("none", "mode", "all"))
    keypoints_2d_face: bool = MISSING
    samples_2d_visible_only: bool = MISSING
    mask_dilation_iterations: int = MISSING
    mask_skip_gt_off_mask: bool = MISSING
    mask_skip_mmd_samples: bool = MISSING


@dataclass
class EvalSchema:
    """`eval:` (docs/method.md §6)."""

    hypotheses: int = _field(at_least(1))
    mask_min_invisible: int = MISSING
    pve_vs_n: list[int] = _field(each(at_least(1)))
    curve_crops: int = _field(at_least(0))
    batch_size: int = _field(at_least(1))
    seed: int = MISSING
    device: str = _field(DEVICE)


SCHEMAS: dict[str, type] = {"model": ModelSchema, "losses": LossesSchema,
                            "loss_weights": LossWeightsSchema, "eval": EvalSchema}


def schema_ranges() -> dict[str, Rule]:
    """The range rules of the schemas' fields, by dotted key."""
    return {f"{section}.{f.name}": f.metadata["check"] for section, schema in SCHEMAS.items()
            for f in fields(schema) if "check" in f.metadata}
