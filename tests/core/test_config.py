from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from body.pixels import INSIDE_MASK_PX
from core.config import load_config
from core.config_checks import RANGES, _leaves
from core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_pipelines_yaml_resolves_and_holds_the_papers_constants(monkeypatch):
    monkeypatch.setenv("HUMR_DATA", "/somewhere")
    cfg = OmegaConf.load(ROOT / "pipelines.yaml")
    assert cfg.paths.stores == "/somewhere/stores"
    assert cfg.body.models == "/somewhere/raw/body_models/synthetic"
    assert cfg.sampling.samples_per_joint == 150 and cfg.model.flow_blocks == 8
    assert cfg.model.soft_clamp == 2.0 and list(cfg.losses.mmd_kernel_scales) == [0.05, 0.2, 0.9]
    weights = OmegaConf.to_container(cfg.loss_weights)
    assert weights == {"nll": 0.1, "betas": 5e-4, "keypoints_2d": 1e-2, "orth": 0.1,
                       "camera": 1.0, "mmd": 5e-2, "mask": 0.1,
                       "keypoints_2d_samples": 0.0,  # Table S2 only: off in the paper
                       # ProHMR's, not the paper's
                       "orientation_mode": 0.0, "body_pose_mode": 0.0, "keypoints_3d_mode": 0.0}


def _error(overrides, path=ROOT / "pipelines.yaml"):
    with pytest.raises(UserError) as info:
        load_config(overrides, path)
    return str(info.value)


def test_both_profiles_of_pipelines_yaml_pass_every_check():
    for profile in ("synthetic", "paper"):
        assert load_config([f"profile={profile}"]).profile == profile


def test_every_range_rule_names_a_key_of_pipelines_yaml():
    defaults = OmegaConf.to_container(OmegaConf.load(ROOT / "pipelines.yaml"), resolve=True)
    keys = [k for k, _ in _leaves(defaults)]
    unused = [p for p in RANGES if not any(fnmatchcase(k, p) for k in keys)]
    assert unused == []


@pytest.mark.parametrize("override, message", [
    ("precompute.chunk_rows=0", "pipelines.yaml key precompute.chunk_rows=0: must be ≥ 1"),
    ("precompute.chunk_rows=abc", "pipelines.yaml key precompute.chunk_rows=abc: must be an "
                                  "integer"),
    ("train.batch_size=-1", "pipelines.yaml key train.batch_size=-1: must be ≥ 1"),
    ("sampling.samples_per_joint=0", "pipelines.yaml key sampling.samples_per_joint=0: must be "
                                     "≥ 1"),
    ("eval.hypotheses=0", "pipelines.yaml key eval.hypotheses=0: must be ≥ 1"),
    ("loss_weights.mmd=-0.1", "pipelines.yaml key loss_weights.mmd=-0.1: must be ≥ 0"),
    ("train.truncation_p=1.5", "pipelines.yaml key train.truncation_p=1.5: must be in [0, 1]"),
    ("train.amp=1", "pipelines.yaml key train.amp=1: must be true or false"),
    ("train.iterations=null", "pipelines.yaml key train.iterations=null: must be an integer"),
    ("precompute.device=7", "pipelines.yaml key precompute.device=7: must be a string"),
    ("eval.pve_vs_n=[1,x]", "pipelines.yaml key eval.pve_vs_n=[1, 'x']: must be a list of "
                            "integers"),
    ("eval.pve_vs_n=[0,5]", "pipelines.yaml key eval.pve_vs_n=[0, 5]: every element must be ≥ 1"),
    ("cluster.kind=pbs", "pipelines.yaml key cluster.kind=pbs: must be one of local, slurm"),
    ("train.heatmap_samples=151", "pipelines.yaml key train.heatmap_samples=151: must be ≤ "
                                  "sampling.samples_per_joint (150)"),
    ("precompute=3", "pipelines.yaml key precompute=3: must be a section"),
    ("train.lr", "override 'train.lr' is not of the form key=value"),
    ("model.pose_mlp=[1,2", "override 'model.pose_mlp=[1,2': the value is not valid YAML"),
    ("train.nope=1", "unknown configuration key in override 'train.nope=1'"),
    ("profile=nope", "unknown profile 'nope'"),
])
def test_a_bad_value_fails_at_load_in_one_line_naming_the_key(override, message):
    text = _error([override])
    assert text.startswith(message) and "\n" not in text


def test_types_follow_the_defaults():
    cfg = load_config(["train.lr=1", "train.run=7", "precompute.detector.options.any=[1]"])
    assert cfg.train.lr == 1  # an int is a number; a key whose default is null takes anything
    assert cfg.train.run == 7 and list(cfg.precompute.detector.options.any) == [1]


def test_profile_values_are_checked_too(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("profile: a\nsec: {n: 1, x: 0.5, names: [a, b]}\n"
                    "profiles: {a: {sec: {x: 2}}, b: {sec: {n: abc}}, c: {sec: {names: [1]}}}\n")
    assert load_config([], path).sec.x == 2
    assert _error(["profile=b"], path) == "p.yaml key sec.n=abc: must be an integer"
    assert _error(["profile=c"], path) == "p.yaml key sec.names=[1]: must be a list of strings"


def test_user_errors_keep_their_builtin_classes():
    with pytest.raises(KeyError):
        load_config(["train.nope=1"])
    with pytest.raises(ValueError):
        load_config(["train.batch_size=0"])
    with pytest.raises(FileNotFoundError):
        load_config([], ROOT / "no.yaml")


def _with_line(tmp_path, after: str, line: str):
    text = (ROOT / "pipelines.yaml").read_text()
    assert after in text
    path = tmp_path / "pipelines.yaml"
    path.write_text(text.replace(after, after + line, 1))
    return path


@pytest.mark.parametrize("after, line, message", [
    ("  flow_blocks: 8\n", "  flow_blok: 8\n",
     "pipelines.yaml key model.flow_blok: no such field in core/schemas.py ModelSchema"),
    ("  nll_noise: 0.005\n", "  invisible_conf: 0.5\n",
     "pipelines.yaml key losses.invisible_conf: no such field in core/schemas.py LossesSchema"),
    ("  hypotheses: 100                            # per crop, the mode first\n",
     "  visible_conf: 0.5\n",
     "pipelines.yaml key eval.visible_conf: no such field in core/schemas.py EvalSchema"),
    ("  mmd: 5.0e-2\n", "  nnl: 1.0\n",
     "pipelines.yaml key loss_weights.nnl: no such field in core/schemas.py LossWeightsSchema"),
])
def test_a_yaml_key_without_a_schema_field_cannot_load(tmp_path, after, line, message):
    text = _error([], _with_line(tmp_path, after, line))
    assert text.startswith(message) and "\n" not in text


def test_a_yaml_value_the_schema_refuses_cannot_load(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text((ROOT / "pipelines.yaml").read_text().replace("  flow_blocks: 8\n",
                                                                  "  flow_blocks: many\n"))
    assert _error([], path).startswith("pipelines.yaml key model.flow_blocks: ")
    path.write_text((ROOT / "pipelines.yaml").read_text().replace("  soft_clamp: 2.0\n", ""))
    assert _error([], path) == "pipelines.yaml key model.soft_clamp: has no value"


def test_coupling_and_one_name_per_shared_constant():
    cfg = load_config()
    assert cfg.model.coupling == "realnvp" and "volume_preserving" not in cfg.model
    assert _error(["model.coupling=glow"]).startswith(
        "pipelines.yaml key model.coupling=glow: must be one of realnvp, nice")
    assert cfg.conventions.visible_conf == 0.5 and cfg.conventions.inside_mask_px == 0.71
    assert cfg.conventions.inside_mask_px == INSIDE_MASK_PX  # the library default is the config's
    for dead in ("body.smplx_num_betas", "body.body_joints", "filter.visible_conf",
                 "losses.invisible_conf", "eval.visible_conf",
                 "sampling.outside_mask_distance_px"):
        section, key = dead.split(".")
        assert key not in cfg[section], dead


def test_saved_configurations_are_read_under_todays_key_names():
    from core.config import upgrade_saved_config

    old = {"model": {"volume_preserving": True, "flow_blocks": 8},
           "losses": {"invisible_conf": 0.4}, "sampling": {"outside_mask_distance_px": 0.7},
           "body": {"smplx_num_betas": 11, "models": "x"}, "detector": {"input_hw": [256, 192]}}
    new = upgrade_saved_config(old)
    assert new == {"model": {"coupling": "nice", "flow_blocks": 8}, "losses": {},
                   "sampling": {}, "body": {"models": "x"},
                   "conventions": {"visible_conf": 0.4, "inside_mask_px": 0.7}}
    assert old["model"]["volume_preserving"] is True  # the input is left alone
    assert upgrade_saved_config({"model": {"volume_preserving": False}})["model"] == {
        "coupling": "realnvp"}


def test_a_saved_profile_table_never_clashes_with_todays():
    """A checkpoint saved when a profile set a key today's profile no longer sets still loads:
    the saved `profiles` table is dropped (it was applied when the run was saved)."""

    from core.config import upgrade_saved_config

    saved = {"profiles": {"synthetic": {"section_gone": {"x": 1}}}, "model": {"flow_blocks": 8}}
    new = upgrade_saved_config(saved)
    assert new == {"model": {"flow_blocks": 8}}
    OmegaConf.merge(load_config(), OmegaConf.create(new))  # no struct error
    with pytest.raises(Exception, match="not in struct"):
        OmegaConf.merge(load_config(), OmegaConf.create(saved))
