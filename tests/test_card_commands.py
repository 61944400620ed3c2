"""The card's commands on a fake `real_data_root`: what each make target runs (`make -n`) and the
configuration each command resolves (`--print-config`); `make precompute DATASET=bedlam` run for
real with a tiny random ViTPose-H stand-in, its store's fingerprint tied to the body models and
the detector checkpoint; `make train PROFILE=paper` refused without a backbone checkpoint.

The fake root holds files the project writes: the synthetic body models (SMPL/SMPL-X layouts),
the small synthetic world's BEDLAM-CLIFF tree, an original-layout ViTPose `.pth`.
"""
import contextlib
import hashlib
import io
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from dask.distributed import LocalCluster

from core.cli import run_cli
from core.config import load_config
from core.errors import ConfigError
from eval import __main__ as eval_main
from infer import __main__ as infer_main
from preprocess import __main__ as preprocess_main
from stores.schema import StoreError
from stores.store import Store
from train import __main__ as train_main
from train.checkpoints_external import require_backbone_weights

REPO = Path(__file__).resolve().parents[1]
MAINS = {"preprocess": preprocess_main.main, "train": train_main.main, "eval": eval_main.main,
         "infer": infer_main.main}
CHECKPOINT = "checkpoints/vitpose-h-multi-coco.pth"


@pytest.fixture(scope="module")
def fake_real(small_world, body_models, tmp_path_factory):
    """real_data_root: body_models/, bedlam/ (the small world's), checkpoints/<ViTPose>.pth."""
    root = tmp_path_factory.mktemp("fake_real") / "real"
    root.mkdir()
    shutil.copytree(body_models, root / "body_models")
    (root / "bedlam").symlink_to(small_world / "bedlam")
    (root / "checkpoints").mkdir()
    (root / CHECKPOINT).write_bytes(b"not read by --print-config")
    return root


@pytest.fixture()
def env(fake_real, tmp_path, monkeypatch):
    for name in ("PROFILE", "DATASET", "ARGS", "CKPT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUMR_REAL_DATA", str(fake_real))
    monkeypatch.setenv("HUMR_DATA", str(tmp_path / "data"))
    return fake_real, tmp_path / "data"


def make_commands(*args: str) -> list[list[str]]:
    """The `python -m <package> …` commands `make -n <args>` prints, as argument lists."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROFILE", "DATASET", "ARGS")}
    text = subprocess.run(["make", "-n", "-s", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, check=True).stdout.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) > 2 and words[1] == "-m" and words[2] in MAINS:
            commands.append(words[2:])
    return commands


def run(command: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = MAINS[command[0]](command[1:])
    return code, out.getvalue()


def resolved(command: list[str]) -> dict:
    code, out = run(command + ["--print-config"])
    assert code == 0, out
    return yaml.safe_load(out)


# (make arguments, the profile every command of the target resolves)
CARD = [
    (["precompute", "DATASET=bedlam"], "paper"),
    (["precompute", "DATASET=real"], "paper"),
    (["precompute", "DATASET=emdb"], "paper"),
    (["precompute", "DATASET=bedlam", "PROFILE=synthetic"], "synthetic"),  # told otherwise
    (["precompute"], "synthetic"),
    (["train", "ARGS=train.stores=[bedlam,agora]"], "paper"),
    (["train", "PROFILE=paper"], "paper"),
    (["train"], "synthetic"),
    (["eval-emdb"], "paper"),
    (["eval-3dpw"], "paper"),
    (["eval", "DATASET=emdb"], "paper"),
    (["eval"], "synthetic"),
]


@pytest.mark.parametrize("args, profile", CARD, ids=[" ".join(a) for a, _ in CARD])
def test_each_card_command_resolves_its_profile(args, profile, env):
    real, data = env
    commands = make_commands(*args)
    assert commands, args
    for command in commands:
        assert not any(w.startswith("profile=") for w in command) or "PROFILE=" in str(args)
        cfg = resolved(command)
        assert cfg["profile"] == profile, command
        if profile == "paper":
            assert cfg["precompute"]["detector"] == {
                "name": "vitpose", "options": {"checkpoint": f"{real}/{CHECKPOINT}"}}
            assert cfg["body"]["models"] == f"{real}/body_models"
        else:
            assert cfg["precompute"]["detector"]["name"] == "synthetic"
            assert cfg["body"]["models"] == f"{data}/raw/body_models/synthetic"


def test_make_train_paper_refuses_a_random_backbone(env, capsys):
    _, data = env
    precompute, fit = make_commands("train", "PROFILE=paper")
    assert run(precompute)[0] == 0  # the real training stores are not precomputed by train
    assert run_cli(train_main.main, fit[1:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model.backbone_checkpoint is not set") and "\n" not in err
    assert "model.allow_random_backbone=true" in err
    assert not (data / "runs").exists()  # refused before anything was written
    # allowed: it gets as far as the missing stores
    assert run_cli(train_main.main, fit[1:] + ["model.allow_random_backbone=true"]) == 2
    assert "train.stores: no store" in capsys.readouterr().err
    # the synthetic profile's small CNN has no pretrained weights in the paper: not refused
    synthetic = load_config(make_commands("train")[1][2:])
    assert synthetic.model.backbone == "small_cnn" and synthetic.model.backbone_checkpoint is None
    require_backbone_weights(synthetic)
    with pytest.raises(ConfigError, match="model.backbone_checkpoint"):
        require_backbone_weights(load_config(["model.backbone=hrnet_w48"]))


# ------------------------------------------------- make precompute DATASET=bedlam, for real


@pytest.fixture(scope="module")
def scheduler():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _write_vitpose(path: Path, seed: int) -> Path:
    from tests.preprocess.test_vitpose import save_original, tiny_model
    return save_original(path, tiny_model(seed=seed))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_make_precompute_bedlam_uses_paper_and_fingerprints_its_inputs(env, scheduler):
    pytest.importorskip("transformers")
    real, data = env
    ckpt = _write_vitpose(real / CHECKPOINT, seed=0)
    extra = f"ARGS=cluster.address={scheduler} precompute.chunk_rows=16"
    [command] = make_commands("precompute", "DATASET=bedlam", extra)
    code, out = run(command)
    assert code == 0 and "COMPLETE" in out, out
    store = Store(data / "stores" / "bedlam.zarr")
    attrs = store.attrs
    assert attrs["config"]["profile"] == "paper"
    assert attrs["detector"] == {"name": "vitpose", "options": {"checkpoint": str(ckpt)}}
    assert attrs["body_models"] == str((real / "body_models").resolve())
    smplx = real / "body_models" / "smplx" / "SMPLX_NEUTRAL.npz"
    assert attrs["input_files"] == {"body_models/smplx/SMPLX_NEUTRAL.npz": _sha256(smplx),
                                    "detector_checkpoint": _sha256(ckpt)}
    assert np.isfinite(store.read("detector/keypoints")).all()
    assert "(0 run now)" in run(command)[1]  # same inputs: resumed
    # another checkpoint at the same path: refused (the existing precompute.overwrite rule)
    saved = ckpt.read_bytes()
    _write_vitpose(ckpt, seed=1)
    with pytest.raises(StoreError, match="precompute.overwrite=true"):
        run(command)
    ckpt.write_bytes(saved)
    # other body models (one value of SMPL-X changed): refused too
    other = data.parent / "other_body_models"
    shutil.copytree(real / "body_models", other)
    with np.load(other / "smplx" / "SMPLX_NEUTRAL.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["v_template"] = arrays["v_template"] + np.float32(1e-3)
    np.savez_compressed(other / "smplx" / "SMPLX_NEUTRAL.npz", **arrays)
    with pytest.raises(StoreError, match="body models"):
        run(command + [f"body.models={other}"])
    assert "(0 run now)" in run(command)[1]  # the original inputs still resume it


@pytest.mark.parametrize("target", [
    ["infer", "IMAGE=x.jpg"],
    ["import-reference", "NPZ=a.npz", "SAMPLES=s", "IMAGES=i", "NAME=n"]])
def test_targets_without_profile_pass_no_empty_profile(target):
    """PROFILE unset: the command gets no `profile=` at all (the rule of core/profiles.py picks
    it), never an empty one (`unknown profile None`)."""
    (command,) = make_commands(*target)
    assert not [w for w in command if w.startswith("profile=")], command
    (command,) = make_commands(*target, "PROFILE=synthetic")
    assert "profile=synthetic" in command
