"""`pipelines.yaml` through OmegaConf: load, apply `key=value` overrides, refuse unknown keys."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "pipelines.yaml"


def load_config(overrides: Sequence[str] = (), path: str | Path = DEFAULT_CONFIG) -> DictConfig:
    """The resolved configuration with `overrides` ("a.b=value") applied.

    An override of a key that `pipelines.yaml` does not define fails before any work, naming it.
    """
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except ConfigKeyError as err:
            raise KeyError(f"unknown configuration key in override {item!r} "
                           f"(not in {path})") from err
    OmegaConf.resolve(cfg)
    return cfg
