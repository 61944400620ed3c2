"""The synthetic stand-in for the pretrained backbone: trained once, cached by its inputs,
resumed exactly after a crash, and what a fresh training run starts from (then frozen)."""
import pytest
import torch

from core.config import load_config
from train import backbone_pretraining as bp
from train import trainer
from train.checkpoint import read_checkpoint
from train.model import NUM_BETAS, POSE_DIM

TINY = ["train.batch_size=2", "train.workers=0", "model.flow_hidden=32", "model.flow_blocks=2",
        "model.regressor_hidden=32", "model.backbone_options.out_features=16",
        "model.pose_mlp=[51,32,16]", "model.samples_train=2", "train.image_every=1000",
        "backbone_pretraining.steps=4", "backbone_pretraining.batch_size=2",
        "backbone_pretraining.checkpoint_every=2", "backbone_pretraining.warmup_steps=1"]


def _cfg(precomputed, body_models, runs, *extra):
    stores, _ = precomputed
    return load_config([f"paths.stores={stores}", f"body.models={body_models}",
                        f"paths.runs={runs}", *TINY, *extra])


def _pretrain(cfg):
    return bp.pretrain_backbone(cfg, trainer.build_caches(cfg), POSE_DIM, NUM_BETAS, 24)


def test_a_crashed_pretraining_resumes_to_the_uninterrupted_weights(
        precomputed, body_models, tmp_path, monkeypatch):
    straight = read_checkpoint(_pretrain(_cfg(precomputed, body_models, tmp_path / "a")))
    cfg = _cfg(precomputed, body_models, tmp_path / "b")
    calls, loss = [], bp.regression_loss

    def crash_at_third_step(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return loss(*args)

    monkeypatch.setattr(bp, "regression_loss", crash_at_third_step)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(cfg)
    path = bp.pretrained_path(cfg, trainer.build_caches(cfg))
    assert not path.exists() and (path.parent / bp.STATE).exists()  # nothing looks complete
    monkeypatch.setattr(bp, "regression_loss", loss)
    resumed = read_checkpoint(_pretrain(cfg))
    assert resumed["steps"] == straight["steps"] == 4
    for key, value in straight["backbone"].items():
        torch.testing.assert_close(resumed["backbone"][key], value, rtol=0, atol=0, msg=key)
    assert not (path.parent / bp.STATE).exists()


def test_the_cache_key_follows_its_inputs(precomputed, body_models, tmp_path):
    stores = trainer.build_caches(_cfg(precomputed, body_models, tmp_path))
    key = bp.cache_key(_cfg(precomputed, body_models, tmp_path), stores)
    assert key == bp.cache_key(_cfg(precomputed, body_models, tmp_path, "train.lr=1"), stores)
    for change in ("backbone_pretraining.lr=0.5", "train.seed=3", "train.photometric_p=0.1",
                   "model.backbone_options.out_features=8"):
        assert bp.cache_key(_cfg(precomputed, body_models, tmp_path, change), stores) != key


def test_a_fresh_run_starts_from_the_pretrained_backbone_and_keeps_it_frozen(
        precomputed, body_models, tmp_path):
    cfg = _cfg(precomputed, body_models, tmp_path, "train.iterations=2", "train.run=r",
               "train.checkpoint_every=2")
    trainer.fit(cfg)
    pretrained = read_checkpoint(bp.pretrained_path(cfg, trainer.build_caches(cfg)))["backbone"]
    model = read_checkpoint(tmp_path / "r/checkpoints/step_00000002.pt")["model"]
    for key, value in pretrained.items():
        torch.testing.assert_close(model[f"backbone.backbone.{key}"], value, rtol=0, atol=0)
    assert any("running_mean" in k and v.abs().sum() > 0 for k, v in pretrained.items())


def test_the_orientation_term_weighs_the_global_orientation_alone():
    from types import SimpleNamespace
    gt_pose = torch.zeros(2, 22, 6)
    targets = SimpleNamespace(gt_pose6d=gt_pose, gt_betas=torch.zeros(2, 11),
                              gt_body2d=torch.zeros(2, 24, 2),
                              gt_body2d_valid=torch.ones(2, 24, dtype=torch.bool))
    pose = torch.zeros(2, 132)
    pose[:, 0] = 1.0  # the orientation's first 6D entry off by 1 in both images
    out = (pose, torch.zeros(2, 11), torch.zeros(2, 48))
    plain = bp.regression_loss(out, targets)
    assert plain.item() == pytest.approx(1 / 132)
    assert bp.regression_loss(out, targets, 2.0).item() == pytest.approx(1 / 132 + 2 / 6)
    pose[:, 6] = 1.0  # a body joint: the orientation term does not see it
    assert bp.regression_loss(out, targets, 2.0).item() == pytest.approx(2 / 132 + 2 / 6)
