"""Which profile a command runs with: the one rule of docs/real_data.md "Profiles".

A command that reads a real dataset (one whose root lies outside the generated synthetic world,
`synthetic.root`) runs with the `paper` profile — the ViTPose-H detector, the real body models
under `real_data_root` — unless `profile=…` was given on the command line. Everything else keeps
the file's `profile:` (synthetic). Every entry point (`python -m preprocess|train|eval`, and so
every make target) loads its configuration through `load_config_for`.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from .config import DEFAULT_CONFIG, load_config

REAL_DATA_PROFILE = "paper"


def profile_given(overrides: Sequence[str]) -> bool:
    """Whether the command line names a profile (`profile=…`)."""
    return any(item.split("=", 1)[0].strip() == "profile" for item in overrides)


def dataset_members(cfg: DictConfig, names: Iterable[str]) -> list[str]:
    """`names` with every group of `dataset_groups` replaced by its members."""
    out: list[str] = []
    for name in names:
        out += list(cfg.dataset_groups[name]) if name in cfg.dataset_groups else [name]
    return out


def is_real(cfg: DictConfig, name: str) -> bool:
    """Whether dataset `name` is real data: an entry of `datasets` whose root is not inside the
    synthetic world (an unknown name is not: its command reports it)."""
    entry = cfg.datasets.get(name)
    if entry is None or entry.get("root") is None:
        return False
    root, world = Path(entry.root).resolve(), Path(cfg.synthetic.root).resolve()
    return not root.is_relative_to(world)


def load_config_for(overrides: Sequence[str], datasets: Callable[[DictConfig], Iterable[str]],
                    path: str | Path = DEFAULT_CONFIG) -> DictConfig:
    """The configuration of a command that reads the datasets `datasets(cfg)` (names or groups):
    `load_config(overrides)`, switched to the `paper` profile when no profile was given and any
    of them is real (a one-line notice on stderr says so)."""
    cfg = load_config(overrides, path)
    if profile_given(overrides) or cfg.profile == REAL_DATA_PROFILE:
        return cfg
    real = [n for n in dataset_members(cfg, datasets(cfg)) if is_real(cfg, n)]
    if not real:
        return cfg
    print(f"notice: {', '.join(real)} {'is' if len(real) == 1 else 'are'} real data: "
          f"profile={REAL_DATA_PROFILE} (give profile=… to choose another)", file=sys.stderr)
    return load_config([*overrides, f"profile={REAL_DATA_PROFILE}"], path)
