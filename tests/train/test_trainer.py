import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.config import load_config
from core.errors import ConfigError
from train import trainer
from train.checkpoint import RunExistsError, read_checkpoint
from train.data import make_loader
from train.model import ProbabilisticHMR
from train.objective import loss_terms, total, training_forward

ROOT = Path(__file__).resolve().parents[2]
TINY = ["train.batch_size=4", "train.workers=0", "model.flow_hidden=32", "model.flow_blocks=2",
        "model.regressor_hidden=32", "model.backbone_options.out_features=16",
        "model.pose_mlp=[51,32,16]", "model.samples_train=5", "train.checkpoint_every=2",
        "train.log_every=1", "train.image_every=1000"]


def _cfg(precomputed, body_models, tmp_path, *extra):
    stores, _ = precomputed
    return load_config([f"paths.stores={stores}", f"body.models={body_models}",
                        f"paths.runs={tmp_path / 'runs'}", *TINY, *extra])


def _batch(cfg, stores):
    loader = make_loader(trainer.store_paths(cfg), cfg, 0, 0, 1, cfg.train.batch_size, 0)
    return next(iter(loader))


def test_gradients_reach_every_trainable_parameter_and_never_the_backbone(
        precomputed, body_models, tmp_path):
    cfg = _cfg(precomputed, body_models, tmp_path)
    trainer.build_caches(cfg)
    torch.manual_seed(0)
    model = ProbabilisticHMR(cfg, cfg.body.models)
    batch = _batch(cfg, precomputed[0])
    model.train()
    out, log_prob = training_forward(model, batch, cfg.model.samples_train, cfg)
    total(loss_terms(out, log_prob, batch.targets, cfg), cfg).backward()
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(name.startswith("backbone.") for name, _ in model.named_parameters())


def test_resume_reproduces_an_uninterrupted_run(precomputed, body_models, tmp_path):
    # under the cosine schedule: the rate after resuming is the uninterrupted run's
    schedule = ("train.iterations=4", "train.lr_schedule=cosine", "train.warmup_steps=1")
    straight = _cfg(precomputed, body_models, tmp_path, *schedule, "train.run=a")
    trainer.fit(straight)
    resumed = _cfg(precomputed, body_models, tmp_path, *schedule, "train.run=b")
    first = trainer.fit(resumed, max_steps=2)
    assert first["step"] == 2
    second = trainer.fit(resumed)
    assert second["step"] == 4
    a = read_checkpoint(tmp_path / "runs/a/checkpoints/step_00000004.pt")
    b = read_checkpoint(tmp_path / "runs/b/checkpoints/step_00000004.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert a["next_example"] == b["next_example"] == 16
    assert (tmp_path / "runs/a/config.yaml").exists() and list((tmp_path / "runs/a/tb").iterdir())


def test_backbone_in_the_loader_trains_the_same_model(precomputed, body_models, tmp_path):
    """`train.backbone_in_loader`: the frozen backbone's features computed by a DataLoader
    worker give the run of features computed in the step (float rounding apart; measured
    bit-identical on one machine)."""
    runs = {}
    for name, extra in (("step", ["train.backbone_in_loader=false"]),
                        ("loader", ["train.backbone_in_loader=true", "train.workers=1"])):
        trainer.fit(_cfg(precomputed, body_models, tmp_path, "train.iterations=3",
                         f"train.run={name}", *extra))
        runs[name] = read_checkpoint(tmp_path / f"runs/{name}/checkpoints/step_00000003.pt")
    for key, value in runs["step"]["model"].items():
        torch.testing.assert_close(runs["loader"]["model"][key], value, msg=key)


def test_a_batch_of_the_loader_carries_the_features_the_model_uses(precomputed, body_models,
                                                                   tmp_path):
    cfg = _cfg(precomputed, body_models, tmp_path, "train.backbone_in_loader=true")
    trainer.build_caches(cfg)
    model = ProbabilisticHMR(cfg, cfg.body.models).eval()
    loader = make_loader(trainer.store_paths(cfg), cfg, 0, 0, 1, 4, 0,
                         trainer.loader_backbone(cfg, model))
    batch = next(iter(loader))
    with torch.no_grad():
        torch.testing.assert_close(batch.features, model.backbone(batch.inputs.image))
        given = model.conditions(batch.inputs, batch.features)
        torch.testing.assert_close(given, model.conditions(batch.inputs))
        other = model.conditions(batch.inputs, torch.zeros_like(batch.features))
    assert not torch.allclose(given, other)  # the features given are the ones used


def test_backbone_in_the_loader_needs_a_frozen_backbone(precomputed, body_models, tmp_path):
    cfg = _cfg(precomputed, body_models, tmp_path, "train.backbone_in_loader=true",
               "model.freeze_backbone=false")
    with pytest.raises(ConfigError, match="model.freeze_backbone"):
        trainer.loader_backbone(cfg, ProbabilisticHMR(cfg, cfg.body.models))


def test_torn_latest_checkpoint_resumes_from_the_previous_and_a_broken_run_is_refused(
        precomputed, body_models, tmp_path, capsys):
    cfg = _cfg(precomputed, body_models, tmp_path, "train.iterations=4", "train.run=torn")
    trainer.fit(cfg)
    folder = tmp_path / "runs/torn/checkpoints"
    straight = read_checkpoint(folder / "step_00000004.pt")
    data = (folder / "step_00000004.pt").read_bytes()
    (folder / "step_00000004.pt").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert trainer.fit(cfg)["step"] == 4  # resumed at step 2, trained steps 3 and 4 again
    assert "step_00000004.pt" in capsys.readouterr().err
    again = read_checkpoint(folder / "step_00000004.pt")
    for key, value in straight["model"].items():
        torch.testing.assert_close(again["model"][key], value, rtol=0, atol=0, msg=key)
    for path in folder.glob("step_*.pt"):
        path.write_bytes(b"torn")
    with pytest.raises(RunExistsError, match=r"runs/torn: .*train\.overwrite_run=true"):
        trainer.fit(cfg)
    assert all(p.read_bytes() == b"torn" for p in folder.glob("step_*.pt"))
    fresh = trainer.fit(_cfg(precomputed, body_models, tmp_path, "train.iterations=4",
                             "train.run=torn", "train.overwrite_run=true"))
    assert fresh["step"] == 4
    assert read_checkpoint(folder / "step_00000002.pt")["step"] == 2


def test_non_finite_loss_stops_naming_step_and_term(
        precomputed, body_models, tmp_path, monkeypatch):
    cfg = _cfg(precomputed, body_models, tmp_path, "train.iterations=3", "train.run=nan")

    def poisoned(out, log_prob, targets, cfg):
        return {"nll": torch.tensor(float("nan")), "orth": out.pose6d.sum() * 0}

    monkeypatch.setattr(trainer, "loss_terms", poisoned)
    with pytest.raises(trainer.NonFiniteLoss, match="step 0.*nll=nan"):
        trainer.fit(cfg)


def test_paper_profile_builds_the_papers_model(body_models):
    cfg = load_config(["profile=paper", f"body.models={body_models}"])
    model = ProbabilisticHMR(cfg, cfg.body.models)
    flow = sum(p.numel() for p in model.flow.parameters())
    per_subnet = (66 + 979) * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 132 + 132
    assert flow == 8 * 2 * per_subnet  # condition 720 + 256 + 3 = 979
    head = model.head.net
    assert head[0].in_features == 720 + 256 + 3 + 11 + 3 and head[-1].out_features == 14
    assert model.pose_condition.net[0].in_features == 51
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert backbone > 50e6 and not any(p.requires_grad for p in model.backbone.parameters())
    image = torch.zeros(1, 3, 224, 224)
    assert model.backbone(image).shape == (1, 720)


def test_ddp_smoke_two_processes_gloo(precomputed, body_models, tmp_path):
    stores, _ = precomputed
    args = [f"paths.stores={stores}", f"body.models={body_models}",
            f"paths.runs={tmp_path / 'runs'}", *TINY, "train.iterations=2", "train.run=ddp"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                           "-m", "train", "fit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = read_checkpoint(tmp_path / "runs/ddp/checkpoints/step_00000002.pt")
    assert state["step"] == 2 and state["next_example"] == 2 * 4 * 2


def test_sigterm_checkpoints_then_resume_continues(precomputed, body_models, tmp_path):
    import signal
    import threading
    import time

    cfg = _cfg(precomputed, body_models, tmp_path, "train.iterations=100000",
               "train.checkpoint_every=100000", "train.run=term")
    tb = tmp_path / "runs/term/tb"

    def terminate():
        deadline = time.time() + 120
        while not (tb.exists() and any(tb.iterdir())) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate, daemon=True).start()
    result = trainer.fit(cfg)
    assert 0 < result["step"] < 100000
    saved = read_checkpoint(tmp_path / f"runs/term/checkpoints/step_{result['step']:08d}.pt")
    assert saved["next_example"] == result["step"] * 4
    again = trainer.fit(cfg, max_steps=1)
    assert again["step"] == result["step"] + 1


def test_clip_gradients_scales_to_the_bound_and_reports_the_norm():
    from train.trainer import clip_gradients
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert float(clip_gradients([a, b], 0)) == pytest.approx(5.0)  # 0: measured, not clipped
    assert a.grad.tolist() == [3.0, 0.0]
    assert float(clip_gradients([a, b], 2.5)) == pytest.approx(5.0)
    assert a.grad.tolist() == pytest.approx([1.5, 0.0], rel=1e-5)
    assert b.grad.tolist() == pytest.approx([2.0], rel=1e-5)
