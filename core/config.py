"""`pipelines.yaml` through OmegaConf: load, apply the profile and `key=value` overrides, refuse
unknown keys and values of the wrong type or range (core/config_checks.py), and check the stage-two
sections against their structured schemas (core/schemas.py).

Order: the file's defaults, then `profiles.<profile>` (the profile comes from an override
`profile=…`, else the file's `profile:`), then the command-line overrides, which always win.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .config_checks import RANGES, check_values
from .errors import ConfigError, MissingFileError, UnknownNameError
from .schemas import SCHEMAS, schema_ranges

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "pipelines.yaml"


def _parse(item: str) -> DictConfig:
    """One `key=value` override as a config, or `ConfigError` naming it."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value "
                          "(e.g. train.batch_size=8)")
    try:
        return OmegaConf.from_dotlist([item])
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML "
                          f"({str(err).splitlines()[0]}); quote a text value") from err


def _merge(cfg: DictConfig, items: Sequence[str], where: str) -> DictConfig:
    parsed = [_parse(item) for item in items]
    try:  # one merge (they are slow on this config); item by item only to name a bad key
        return OmegaConf.merge(cfg, *parsed)
    except (OmegaConfBaseException, TypeError):
        for item, one in zip(items, parsed):
            try:
                cfg = OmegaConf.merge(cfg, one)
            except ConfigKeyError as err:
                raise UnknownNameError(f"unknown configuration key in override {item!r} "
                                       f"(not in {where})") from err
            except (OmegaConfBaseException, TypeError) as err:  # e.g. a mapping over a list
                raise ConfigError(f"override {item!r}: {str(err).splitlines()[0]}") from err
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


def _check_schemas(cfg: DictConfig, where: str) -> None:
    """`ConfigError` naming the first key of a schema section (those the file has) that its
    schema has no field for, that has no value, or whose value the field's type refuses."""
    for section, schema in SCHEMAS.items():
        if section not in cfg:
            continue
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), cfg[section])
        except ConfigKeyError as err:
            raise ConfigError(f"{where} key {section}.{err.key}: no such field in "
                              f"core/schemas.py {schema.__name__}") from err
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where} key {section}.{err.key}: "
                              f"{str(err).splitlines()[0]}") from err
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"{where} key {section}.{missing[0]}: has no value")


# Keys renamed or removed since runs first saved their configuration: a saved configuration (a
# checkpoint's) is read through these tables. Renamed: old key -> (new key, value map).
RENAMED_KEYS = {
    "model.volume_preserving": ("model.coupling", lambda nice: "nice" if nice else "realnvp"),
    "filter.visible_conf": ("conventions.visible_conf", None),
    "losses.invisible_conf": ("conventions.visible_conf", None),
    "eval.visible_conf": ("conventions.visible_conf", None),
    "sampling.outside_mask_distance_px": ("conventions.inside_mask_px", None),
}
REMOVED_KEYS = ("body.smplx_num_betas", "body.body_joints", "detector")


def upgrade_saved_config(saved: dict) -> dict:
    """A saved configuration (plain dict) with today's key names: renamed keys moved, removed ones
    dropped; the input is not changed."""
    saved = OmegaConf.to_container(OmegaConf.create(saved))
    # its profile table was applied when it was saved; merged into today's it could only clash
    saved.pop("profiles", None)
    for old, (new, convert) in RENAMED_KEYS.items():
        section, key = old.split(".")
        if key in saved.get(section, {}):
            value = saved[section].pop(key)
            new_section, new_key = new.split(".")
            saved.setdefault(new_section, {})[new_key] = convert(value) if convert else value
    for old in REMOVED_KEYS:
        section, _, key = old.partition(".")
        if key:
            saved.get(section, {}).pop(key, None)
        else:
            saved.pop(section, None)
    return saved


def load_config(overrides: Sequence[str] = (), path: str | Path = DEFAULT_CONFIG) -> DictConfig:
    """The resolved configuration with its profile and `overrides` ("a.b=value") applied.

    An override of a key that `pipelines.yaml` does not define, an unknown profile, a value of
    the wrong type or range and a key of a schema section without a field in core/schemas.py fail
    before any work (`UserError`), naming the key.
    """
    if not Path(path).is_file():
        raise MissingFileError(f"configuration file not found: {path}")
    cfg = OmegaConf.load(path)
    defaults = OmegaConf.to_container(cfg)  # interpolations unresolved: not type-checked
    _check_schemas(cfg, Path(path).name)  # the file's own values, before they become defaults
    OmegaConf.set_struct(cfg, True)
    _open_option_dicts(cfg)
    cfg = _merge(cfg, overrides, str(path))
    profile = cfg.profile
    if profile not in cfg.profiles:
        raise UnknownNameError(f"unknown profile {profile!r}: not under 'profiles' in {path} "
                               f"(known: {', '.join(cfg.profiles)})")
    try:
        cfg = OmegaConf.merge(cfg, cfg.profiles[profile])
    except ConfigKeyError as err:
        raise UnknownNameError(f"profiles.{profile} sets a key that {path} does not define: "
                               f"{str(err).splitlines()[0]}") from err
    cfg = _merge(cfg, overrides, str(path))
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:  # an interpolation of an unknown key
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from err
    check_values(OmegaConf.to_container(cfg), defaults, Path(path).name,
                 {**RANGES, **schema_ranges()})
    _check_schemas(cfg, Path(path).name)
    return cfg
