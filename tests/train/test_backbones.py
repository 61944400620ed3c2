"""Tests of train/backbones.py: HRNet-W48 shapes, size, layout; SmallCNN; freeze and its folded
BatchNorms; make_backbone."""
import pytest
import torch
from torch import nn

from train.backbones import FrozenBackbone, HRNetW48, SmallCNN, fold_batch_norms, freeze, \
    make_backbone

# counted once from this implementation and printed by test_hrnet_parameter_count; the pose
# HRNet-W48 part of it (stage 4 fusing into branch 1 only, plus a 17-joint final layer) comes to
# 63.6 M, the published size of pose_hrnet_w48
HRNET_W48_PARAMETERS = 65_886_048


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def hrnet():
    return HRNetW48().eval()


def test_hrnet_features_and_output_shapes(hrnet):
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features, out = hrnet.features(x), hrnet(x)
    assert features.shape == (2, 720, 7, 7) and torch.isfinite(features).all()
    assert out.shape == (2, HRNetW48.out_features) == (2, 720)
    torch.testing.assert_close(out, features.mean(dim=(2, 3)))
    with torch.no_grad():  # any multiple of 32
        assert hrnet.features(torch.randn(1, 3, 64, 96)).shape == (1, 720, 2, 3)


def test_hrnet_parameter_count(hrnet):
    n = n_parameters(hrnet)
    print(f"HRNetW48 parameters: {n:,}")
    assert abs(n - HRNET_W48_PARAMETERS) <= 0.1 * HRNET_W48_PARAMETERS
    # the BEDLAM-CLIFF head: 3, 2, 1 stride-2 conv (no bias) + BN layers on 48, 96, 192 channels
    head = {i: sum(p.numel() for k, p in hrnet.named_parameters()
                   if k.startswith(f"downsample_stage_{i}.")) for i in (1, 2, 3)}
    assert head == {i: (4 - i) * (9 * c * c + 2 * c) for i, c in ((1, 48), (2, 96), (3, 192))}


def test_hrnet_follows_the_original_module_names(hrnet):
    keys = set(hrnet.state_dict())
    for key in ["conv1.weight", "bn2.running_var", "layer1.0.downsample.0.weight",
                "layer1.3.conv3.weight", "transition1.0.0.weight", "transition1.1.0.0.weight",
                "transition3.3.0.1.running_mean", "stage2.0.branches.1.3.conv2.weight",
                "stage3.3.fuse_layers.2.0.1.0.weight", "stage4.2.fuse_layers.0.3.0.weight",
                "stage4.2.fuse_layers.3.2.0.1.bias", "downsample_stage_1.6.weight",
                "downsample_stage_2.4.running_var", "downsample_stage_3.1.weight"]:
        assert key in keys, key
    assert len(hrnet.stage2) == 1 and len(hrnet.stage3) == 4 and len(hrnet.stage4) == 3
    assert not any(k.startswith("final_layer") for k in keys)


def test_small_cnn_shapes_and_size():
    model = SmallCNN().eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 128)
        assert model.features(torch.randn(2, 3, 224, 224)).shape == (2, 128, 7, 7)
        assert SmallCNN(out_features=64, width=8)(torch.randn(3, 3, 96, 64)).shape == (3, 64)
    assert n_parameters(model) < 1_000_000
    assert model.out_features == 128


@pytest.mark.parametrize("name, size", [("small_cnn", 224), ("hrnet_w48", 32)])
def test_freeze(name, size):
    backbone = make_backbone(name)
    frozen = freeze(backbone)
    assert isinstance(frozen, FrozenBackbone) and freeze(frozen) is frozen
    assert frozen.out_features == backbone.out_features
    assert not any(p.requires_grad for p in frozen.parameters())
    head = nn.Linear(frozen.out_features, 1)
    model = nn.Sequential(frozen, head)
    model.train()
    batch_norms = [m for m in frozen.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    assert head.training and frozen.training and not backbone.training

    x = torch.randn(2, 3, size, size, requires_grad=True)
    buffers = {k: v.clone() for k, v in frozen.named_buffers()}
    out = model(x)
    for k, v in frozen.named_buffers():
        assert torch.equal(v, buffers[k]), f"{k} changed in a train-mode forward pass"
    with torch.no_grad():
        torch.testing.assert_close(out, head(backbone.eval()(x)))  # running statistics used

    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())
    assert head.weight.grad is not None


def _random_statistics(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (a fresh one is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.running_mean, m.weight, m.bias):
                    t.copy_(torch.randn(t.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


def test_fold_batch_norms_matches_the_unfolded_backbone():
    backbone = _random_statistics(SmallCNN(out_features=16, width=8), 0).eval().double()
    folded = fold_batch_norms(backbone)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())  # a copy
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), backbone(x), rtol=1e-10, atol=1e-10)


def test_frozen_backbone_follows_loaded_weights_and_dtype():
    frozen = freeze(_random_statistics(SmallCNN(out_features=16, width=8), 1))
    x = torch.randn(2, 3, 64, 64)
    first = frozen(x)
    assert frozen.folded() is frozen.folded()  # built once while nothing changes
    other = _random_statistics(SmallCNN(out_features=16, width=8), 2).eval()
    frozen.backbone.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), other(x))
        assert not torch.allclose(frozen(x), first)
        frozen.double()
        torch.testing.assert_close(frozen(x.double()), other.double()(x.double()))
    assert list(frozen.state_dict()) == ["backbone." + k for k in other.state_dict()]


def test_make_backbone():
    assert isinstance(make_backbone("small_cnn", out_features=16), SmallCNN)
    assert make_backbone("small_cnn", out_features=16).out_features == 16
    with pytest.raises(ValueError, match="hrnet_w48.*small_cnn"):
        make_backbone("resnet50")
