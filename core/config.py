"""`pipelines.yaml` through OmegaConf: load, apply the profile and `key=value` overrides, refuse
unknown keys.

Order: the file's defaults, then `profiles.<profile>` (the profile comes from an override
`profile=…`, else the file's `profile:`), then the command-line overrides, which always win.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "pipelines.yaml"


def _merge(cfg: DictConfig, items: Sequence[str], where: str) -> DictConfig:
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"override {bad[0]!r} is not of the form key=value")
    try:  # one merge (they are slow on this config); item by item only to name a bad key
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(items)))
    except ConfigKeyError:
        for item in items:
            try:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
            except ConfigKeyError as err:
                raise KeyError(f"unknown configuration key in override {item!r} "
                               f"(not in {where})") from err
        raise


def _open_option_dicts(node: DictConfig) -> None:
    """Keys named `options` or `*_options` hold free-form keyword arguments (of a backend): any
    key is allowed there."""
    for key, value in node.items_ex(resolve=False):
        if isinstance(value, DictConfig):
            if str(key) == "options" or str(key).endswith("_options"):
                OmegaConf.set_struct(value, False)
            else:
                _open_option_dicts(value)


def load_config(overrides: Sequence[str] = (), path: str | Path = DEFAULT_CONFIG) -> DictConfig:
    """The resolved configuration with its profile and `overrides` ("a.b=value") applied.

    An override of a key that `pipelines.yaml` does not define fails before any work, naming it.
    """
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)
    _open_option_dicts(cfg)
    cfg = _merge(cfg, overrides, str(path))
    profile = cfg.profile
    if profile not in cfg.profiles:
        raise KeyError(f"unknown profile {profile!r}: not under 'profiles' in {path} "
                       f"(known: {', '.join(cfg.profiles)})")
    try:
        cfg = OmegaConf.merge(cfg, cfg.profiles[profile])
    except ConfigKeyError as err:
        raise KeyError(f"profiles.{profile} sets a key that {path} does not define: {err}") \
            from err
    cfg = _merge(cfg, overrides, str(path))
    OmegaConf.resolve(cfg)
    return cfg
