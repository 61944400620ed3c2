"""Type and range checks of the configuration's values, run by `core.config.load_config`.

Two rules, applied to the configuration after the profile and the overrides:
- type: every scalar key takes the type of its value in `pipelines.yaml` (int, float, bool or
  string; an int is a float too), and a list of scalars the type of its elements; a key whose
  default is null or an interpolation, and the free-form `*options` dicts, are not checked;
- range: the keys of `RANGES` (dotted names, `*` matches any part) and of the schemas' fields
  (core/schemas.py, passed in as `ranges`) obey their rule.
The first bad value raises `ConfigError`, naming the file, the key and what it must be.
The stage-two sections also have structured schemas (core/schemas.py), checked after these.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from .errors import ConfigError

Rule = Callable[[Any], "str | None"]  # the complaint about a value, or None when it is fine


def at_least(low: float) -> Rule:
    return lambda v: None if v >= low else f"must be ≥ {low}"


def above(low: float) -> Rule:
    return lambda v: None if v > low else f"must be > {low}"


def between(low: float, high: float, high_open: bool = False) -> Rule:
    """low ≤ v ≤ high (v < high when `high_open`)."""
    bracket = ")" if high_open else "]"
    return lambda v: (None if low <= v and (v < high if high_open else v <= high)
                      else f"must be in [{low}, {high}{bracket}")


def each(rule: Rule) -> Rule:
    """`rule` for every element of a list."""
    return lambda vs: next((f"every element {msg}" for msg in map(rule, vs) if msg), None)


def one_of(*names: str) -> Rule:
    return lambda v: None if v in names else f"must be one of {', '.join(names)}"


def matches(pattern: str, what: str) -> Rule:
    return lambda v: None if re.fullmatch(pattern, v) else f"must be {what}"


PROBABILITY = between(0, 1)
DEVICE = matches(r"cpu|mps|cuda(:\d+)?", "cpu, cuda, cuda:N or mps")

RANGES: dict[str, Rule] = {
    "synthetic.workers": at_least(1),
    "synthetic.*.sequences_per_folder": at_least(0),  # 0: the layout is left out
    "synthetic.*.frames_per_sequence": at_least(1),
    "synthetic.*.subjects": at_least(0),
    "synthetic.*.sequences_per_subject": at_least(0),
    "synthetic.*.sequences_per_split": at_least(0),
    "synthetic.*.image_size": each(at_least(1)),
    "synthetic.*.people": each(at_least(1)),
    "synthetic.*.depth_range": each(above(0)),
    "synthetic.*.occluder_p": PROBABILITY,
    "synthetic.*.second_person_p": PROBABILITY,
    "synthetic.*.second_person_front_p": PROBABILITY,
    "synthetic.contact_sheet_crops": at_least(1),
    "datasets.*.train_fraction": between(0, 1),
    "datasets.*.split": one_of("train", "test"),
    "precompute.batch_size": at_least(1),
    "precompute.chunk_rows": at_least(1),
    "precompute.device": DEVICE,
    "cluster.kind": one_of("local", "slurm"),
    "cluster.workers": at_least(1),
    "cluster.threads_per_worker": at_least(1),
    "cluster.slurm.cores": at_least(1),
    "cluster.slurm.processes": at_least(1),
    "cluster.slurm.jobs": at_least(1),
    "conventions.visible_conf": PROBABILITY,
    "conventions.inside_mask_px": at_least(0),
    "sampling.samples_per_joint": at_least(1),
    "sampling.min_heatmap_value": PROBABILITY,
    "filter.mean_error_conf": PROBABILITY,
    "filter.max_mean_error_per_scale": at_least(0),
    "filter.min_visible_joints": between(0, 17),
    "filter.max_outside_image_px": at_least(0),
    "train.lr": above(0),
    "train.weight_decay": at_least(0),
    "train.grad_clip_norm": at_least(0),
    "train.batch_size": at_least(1),
    "train.iterations": at_least(1),
    "train.heatmap_samples": at_least(1),
    "train.scale_jitter.std": at_least(0),
    "train.scale_jitter.min": above(0),
    "train.scale_jitter.max": above(0),
    "train.truncation_p": PROBABILITY,
    "train.photometric_p": PROBABILITY,
    "train.context_factor": at_least(1),
    "train.workers": at_least(0),
    "train.device": DEVICE,
    "train.checkpoint_every": at_least(1),
    "train.log_every": at_least(1),
    "train.image_every": at_least(1),
    "ablation.jobs": at_least(1),
    "train.lr_schedule": one_of("constant", "cosine"),
    "train.warmup_steps": at_least(0),
    "train.threads": at_least(0),
    "backbone_pretraining.steps": at_least(0),
    "backbone_pretraining.batch_size": at_least(1),
    "backbone_pretraining.lr": above(0),
    "backbone_pretraining.warmup_steps": at_least(0),
    "backbone_pretraining.checkpoint_every": at_least(1),
    "ablation.seeds": each(at_least(0)),
    "ablation.quick.seeds": each(at_least(0)),
}

# pairs of keys (a, b) whose values must satisfy a ≤ b
ORDERED = [("train.heatmap_samples", "sampling.samples_per_joint"),
           ("train.scale_jitter.min", "train.scale_jitter.max")]

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
UNCHECKED = ("profiles",)  # applied over the defaults: their values are checked where they land


def _fits(value: Any, default: Any) -> bool:
    """`value` has the type of `default` (an int counts as a float, a bool as neither)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _type_complaint(value: Any, default: Any) -> str | None:
    if default is None or isinstance(default, dict) or str(default).startswith("${"):
        return None  # no default, a free-form dict, an interpolation
    if not _fits(value, default):
        return f"must be {_TYPE_NAMES.get(type(default), type(default).__name__)}"
    if isinstance(default, list):
        kinds = {type(d) for d in default}
        if len(kinds) == 1 and kinds <= _PLURALS.keys():
            if not all(_fits(v, default[0]) for v in value):
                return f"must be a list of {_PLURALS[type(default[0])]}"
    return None


def _leaves(tree: dict, prefix: str = ""):
    """(dotted key, value) of every non-dict value of `tree`."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not str(key).endswith("options"):
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def _lookup(tree: dict, dotted: str) -> Any:
    """The value at a dotted key, None when there is none."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def check_values(values: dict, defaults: dict, where: str,
                 ranges: dict[str, Rule] | None = None) -> None:
    """Raise `ConfigError` at the first value of `values` (the resolved configuration as plain
    containers) that breaks the type of its default in `defaults` or its rule in `ranges`
    (default `RANGES`)."""
    ranges = RANGES if ranges is None else ranges

    def fail(key: str, value: Any, complaint: str) -> None:
        raise ConfigError(f"{where} key {key}={_show(value)}: {complaint}")

    flat_defaults = dict(_leaves({k: v for k, v in defaults.items() if k not in UNCHECKED}))
    sections = {key.rsplit(".", 1)[0] for key in flat_defaults if "." in key}
    sections |= {s.rsplit(".", i)[0] for s in sections for i in range(s.count(".") + 1)}
    for key, value in _leaves({k: v for k, v in values.items() if k not in UNCHECKED}):
        if key in sections:
            fail(key, value, "must be a section (set its keys: key.name=value)")
        if key not in flat_defaults:
            continue  # added under a free-form dict
        default = flat_defaults[key]
        complaint = _type_complaint(value, default) if default is not None else None
        if complaint is None and value is not None:
            rule = next((r for p, r in ranges.items() if fnmatchcase(key, p)), None)
            complaint = rule(value) if rule else None
        if complaint:
            fail(key, value, complaint)
    for low, high in ORDERED:
        a, b = _lookup(values, low), _lookup(values, high)
        if a is not None and b is not None and a > b:
            fail(low, a, f"must be ≤ {high} ({_show(b)})")
