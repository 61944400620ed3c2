"""Tests of train/checkpoints_external.py: FrEIA's own conditional GLOW saved in the reference
release's Lightning layout loads into our ConditionalFlow and computes the same function; the
reference name table round-trips; BEDLAM-CLIFF HRNet weights load exactly and strictly."""
import contextlib
import sys
import types
import warnings

import pytest
import torch
from torch import nn

from core.config import load_config
from train.backbones import HRNetW48, freeze
from train.checkpoints_external import (REFERENCE_NAMES, apply_backbone_checkpoint,
                                        load_bedlam_cliff_backbone, load_reference_checkpoint)
from train.model import ProbabilisticHMR

DIM, COND, HIDDEN, BLOCKS = 132, 16, 32, 8
# a ProbabilisticHMR whose flow condition is COND-D: 5 (SmallCNN) + 8 (c_P) + 3 (c_B)
SMALL = ["model.backbone=small_cnn", "model.backbone_options.out_features=5",
         "model.pose_mlp=[51,16,8]", f"model.flow_hidden={HIDDEN}", f"model.flow_blocks={BLOCKS}",
         "model.regressor_hidden=32"]


def _subnet(dims_in: int, dims_out: int) -> nn.Sequential:
    """The reference release's subnet: Linear at 0, 3, 6 (Dropout before ReLU, as it has it)."""
    return nn.Sequential(nn.Linear(dims_in, HIDDEN), nn.Dropout(0.0), nn.ReLU(),
                         nn.Linear(HIDDEN, HIDDEN), nn.Dropout(0.0), nn.ReLU(),
                         nn.Linear(HIDDEN, dims_out))


def freia_flow(kind: str, seed_offset: int = 0, blocks: int = BLOCKS) -> nn.Module:
    """FrEIA's conditional GLOW as the reference builds it (GraphINN: input, coupling_k,
    permute_k (PermuteRandom(seed=k)), output, condition), or the same as a SequenceINN."""
    Ff = pytest.importorskip("FrEIA.framework")
    Fm = pytest.importorskip("FrEIA.modules")
    coupling = {"subnet_constructor": _subnet, "clamp": 2.0}
    if kind == "sequence":
        inn = Ff.SequenceINN(DIM)
        for k in range(blocks):
            inn.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(COND,), **coupling)
            inn.append(Fm.PermuteRandom, seed=k + seed_offset)
        return inn.eval()
    nodes = [Ff.InputNode(DIM, name="input")]
    cond = Ff.ConditionNode(COND, name="condition")
    for k in range(blocks):
        nodes.append(Ff.Node(nodes[-1], Fm.GLOWCouplingBlock, coupling, conditions=cond,
                             name=f"coupling_{k}"))
        nodes.append(Ff.Node(nodes[-1], Fm.PermuteRandom, {"seed": k + seed_offset},
                             name=f"permute_{k}"))
    nodes.append(Ff.OutputNode(nodes[-1], name="output"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Ff.GraphINN(nodes + [cond]).eval()


def _dict_with_attributes(self, *args, **kwargs):
    dict.__init__(self, *args, **kwargs)
    self.__dict__["__immutable__"] = False


@contextlib.contextmanager
def packages_not_installed_here():
    """Lightning's `AttributeDict` and yacs' `CfgNode` (a dict with attribute state) under their
    real module paths, for the duration of writing a file with them."""
    made = {}
    for module, name in (("pytorch_lightning.utilities.parsing", "AttributeDict"),
                         ("yacs.config", "CfgNode")):
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            made.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        setattr(made[module], name, type(name, (dict,), {"__module__": module,
                                                         "__init__": _dict_with_attributes}))
    assert not set(made) & set(sys.modules)
    sys.modules.update(made)
    try:
        yield (made["pytorch_lightning.utilities.parsing"].AttributeDict,
               made["yacs.config"].CfgNode)
    finally:
        for key in made:
            del sys.modules[key]


def reference_file(path, flow: nn.Module, extra: dict | None = None):
    """A Lightning-style checkpoint: {"state_dict": {"model.flow." + k: v, …}, …}."""
    state = {"model.flow." + k: v for k, v in flow.state_dict().items()}
    state.update(extra or {})
    torch.save({"state_dict": state, "epoch": 3, "global_step": 100}, path)
    return path


@pytest.fixture(scope="module")
def small_cfg(body_models):
    return load_config([f"body.models={body_models}", *SMALL])


@pytest.fixture
def model(small_cfg):
    return ProbabilisticHMR(small_cfg, small_cfg.body.models).eval()


@pytest.mark.parametrize("kind", ["graph", "sequence"])
def test_freia_glow_loads_and_matches_forward_inverse_and_log_det(kind, model, tmp_path):
    pytest.importorskip("FrEIA")
    torch.manual_seed(1)
    freia = freia_flow(kind)  # PyTorch's default init: |log-det| ~ 9 here, well away from 0
    report = load_reference_checkpoint(model, reference_file(tmp_path / "humr.ckpt", freia))
    assert report["loaded"] == sorted(k for k in model.state_dict() if k.startswith("flow."))
    assert report["unexpected"] == [] and report["ignored"] == []
    assert "head.net.0.weight" in report["missing"]
    assert "pose_condition.net.0.weight" in report["missing"]

    x, c = torch.randn(64, DIM), torch.randn(64, COND)
    with torch.no_grad():
        z_ref, ld_ref = freia(x, c=[c])
        z, ld = model.flow(x, c)
        x_ref, ild_ref = freia(z_ref, c=[c], rev=True)
        x_back, ild = model.flow.inverse(z_ref, c)
    assert ld_ref.abs().mean() > 1.0 and z_ref.abs().max() < 100  # scaled, not blown up
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(ld, ld_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_back, x_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(ild, ild_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-4)


def test_missing_flow_key_raises_naming_it(model, tmp_path):
    freia = freia_flow("graph")
    state = {"model.flow." + k: v for k, v in freia.state_dict().items()}
    del state["model.flow.module_list.6.subnet2.3.bias"]
    torch.save({"state_dict": state}, tmp_path / "humr.ckpt")
    with pytest.raises(KeyError, match=r"flow\.module_list\.6\.subnet2\.3\.bias"):
        load_reference_checkpoint(model, tmp_path / "humr.ckpt")


def test_flow_with_other_block_count_or_permutations_or_sizes_raises(model, tmp_path, small_cfg):
    with pytest.raises(KeyError, match=r"module_list\.14"):  # 8 blocks here, 7 in the file
        load_reference_checkpoint(model, reference_file(tmp_path / "a.ckpt",
                                                        freia_flow("graph", blocks=7)))
    with pytest.raises(ValueError, match=r"permutation 'flow\.module_list\.1\.perm'"):
        load_reference_checkpoint(model, reference_file(tmp_path / "b.ckpt",
                                                        freia_flow("graph", seed_offset=1)))
    bigger = ProbabilisticHMR(load_config([f"body.models={small_cfg.body.models}", *SMALL,
                                           "model.flow_hidden=48"]), small_cfg.body.models)
    with pytest.raises(ValueError, match=r"flow key 'flow\.module_list\.0\.subnet1\.0\.weight'"):
        load_reference_checkpoint(bigger, reference_file(tmp_path / "c.ckpt",
                                                         freia_flow("graph")))


def to_reference_names(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under the reference's names (the inverse of REFERENCE_NAMES)."""
    out = {}
    ours = model.state_dict()
    for our_name, ref_names, _ in REFERENCE_NAMES:
        if our_name.endswith("."):
            out.update({ref_names[0] + k[len(our_name):]: v for k, v in ours.items()
                        if k.startswith(our_name)})
    w, b, mean = ours["head.net.4.weight"], ours["head.net.4.bias"], ours["head.mean"]
    out.update({"model.head.decshape.weight": w[:11], "model.head.deccam.weight": w[11:],
                "model.head.decshape.bias": b[:11], "model.head.deccam.bias": b[11:],
                "model.head.init_shape": mean[None, :11], "model.head.init_cam": mean[None, 11:]})
    return out


def test_reference_names_round_trip_and_report(model, small_cfg, tmp_path):
    torch.manual_seed(5)
    source = ProbabilisticHMR(small_cfg, small_cfg.body.models)
    with torch.no_grad():
        source.head.mean.normal_()
        for p in source.backbone.parameters():
            p.normal_()
    state = to_reference_names(source)
    state.update({"J_regressor": torch.zeros(17, 10), "smplx.shapedirs": torch.zeros(3),
                  "model.backbone.final_layer.weight": torch.zeros(24, 5, 1, 1),
                  "model.something_new.weight": torch.zeros(2)})
    # a real Lightning file: hyper-parameters of classes from packages not installed here
    with packages_not_installed_here() as (attribute_dict, cfg_node):
        hp = attribute_dict(TRAINING=cfg_node(LR=1e-4))
        torch.save({"state_dict": state, "hyper_parameters": hp}, tmp_path / "humr.ckpt")
    report = load_reference_checkpoint(model, tmp_path / "humr.ckpt")
    ours = model.state_dict()
    assert report["missing"] == []
    assert report["loaded"] == sorted(k for k in ours if not k.startswith("body."))
    assert report["unexpected"] == ["model.something_new.weight"]
    assert report["ignored"] == ["J_regressor", "model.backbone.final_layer.weight",
                                 "smplx.shapedirs"]
    for key, value in source.state_dict().items():
        assert torch.equal(ours[key], value), key
    assert any(k.startswith("head.") for k in report["loaded"])


def test_reference_state_dict_without_the_lightning_prefix(model, tmp_path):
    freia = freia_flow("graph")
    torch.save({"flow." + k: v for k, v in freia.state_dict().items()}, tmp_path / "bare.pth")
    report = load_reference_checkpoint(model, tmp_path / "bare.pth")
    assert len(report["loaded"]) == len(freia.state_dict())
    assert torch.equal(model.flow.module_list[6].subnet1[3].weight,
                       freia.state_dict()["module_list.6.subnet1.3.weight"])


# ---- BEDLAM-CLIFF HRNet-W48 -----------------------------------------------------------------
def bedlam_cliff_layout(hrnet: HRNetW48) -> dict[str, torch.Tensor]:
    """Our HRNet state dict renamed to `bedlam_cliff_3dpw_ft_backbone.pth`'s names: the same
    module names (PARE's PoseHighResolutionNet, downsample head), plus a 24-joint final layer."""
    state = {k: v.clone() for k, v in hrnet.state_dict().items()}
    state["final_layer.weight"] = torch.randn(24, 48, 1, 1)
    state["final_layer.bias"] = torch.randn(24)
    return state


@pytest.fixture(scope="module")
def hrnet_source():
    torch.manual_seed(7)
    hrnet = HRNetW48().eval()
    with torch.no_grad():
        for m in hrnet.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1234)
    return hrnet


@pytest.fixture(scope="module")
def hrnet_files(hrnet_source, tmp_path_factory):
    """The backbone .pth and a BEDLAM-CLIFF-style Lightning .ckpt (backbone under
    `model.backbone.`, a head beside it)."""
    root = tmp_path_factory.mktemp("bedlam")
    state = bedlam_cliff_layout(hrnet_source)
    torch.save(state, root / "bedlam_cliff_3dpw_ft_backbone.pth")
    ckpt = {"model.backbone." + k: v for k, v in state.items()}
    ckpt["model.head.fc1.weight"] = torch.zeros(3, 3)
    torch.save({"state_dict": ckpt, "epoch": 1}, root / "bedlam_cliff.ckpt")
    yield {"pth": root / "bedlam_cliff_3dpw_ft_backbone.pth", "ckpt": root / "bedlam_cliff.ckpt",
           "state": state, "root": root}
    for path in root.iterdir():
        path.unlink()


@pytest.mark.slow
def test_bedlam_cliff_backbone_reproduces_the_features(hrnet_source, hrnet_files):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = hrnet_source.features(x)
    assert torch.isfinite(expected).all()
    for kind in ("pth", "ckpt"):
        target = HRNetW48().eval()
        load_bedlam_cliff_backbone(target, hrnet_files[kind])
        with torch.no_grad():
            assert torch.equal(target.features(x), expected), kind
        loaded = target.state_dict()
        for key, value in hrnet_source.state_dict().items():
            assert torch.equal(loaded[key], value), key


@pytest.mark.slow
def test_bedlam_cliff_backbone_is_strict(hrnet_files):
    root, state = hrnet_files["root"], hrnet_files["state"]
    target = HRNetW48()
    missing = {k: v for k, v in state.items() if k != "stage3.2.fuse_layers.2.0.0.1.weight"}
    torch.save(missing, root / "missing.pth")
    with pytest.raises(KeyError, match=r"missing\.pth.*stage3\.2\.fuse_layers\.2\.0\.0\.1\.weight"):
        load_bedlam_cliff_backbone(target, root / "missing.pth")
    (root / "missing.pth").unlink()

    torch.save({**state, "upsample_stage_2.0.weight": torch.zeros(1)}, root / "extra.pth")
    with pytest.raises(KeyError, match=r"unexpected backbone keys: upsample_stage_2\.0\.weight"):
        load_bedlam_cliff_backbone(target, root / "extra.pth")
    (root / "extra.pth").unlink()

    torch.save({**state, "downsample_stage_3.0.weight": torch.zeros(192, 192, 1, 1)},
               root / "shape.pth")
    with pytest.raises(ValueError, match=r"'downsample_stage_3\.0\.weight'"):
        load_bedlam_cliff_backbone(target, root / "shape.pth")
    (root / "shape.pth").unlink()

    # num_batches_tracked counters may be absent
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
               root / "no_counters.pth")
    load_bedlam_cliff_backbone(target, root / "no_counters.pth")
    torch.testing.assert_close(target.layer1[0].bn1.running_var,
                               state["layer1.0.bn1.running_var"], rtol=0, atol=0)


@pytest.mark.slow
def test_apply_backbone_checkpoint(hrnet_files, hrnet_source, small_cfg, model):
    assert apply_backbone_checkpoint(model, small_cfg) is False  # backbone_checkpoint: null
    with_path = load_config([f"body.models={small_cfg.body.models}", *SMALL,
                             f"model.backbone_checkpoint={hrnet_files['pth']}"])
    with pytest.raises(TypeError, match="small_cnn"):
        apply_backbone_checkpoint(model, with_path)
    hrnet_model = types.SimpleNamespace(backbone=freeze(HRNetW48()))
    assert apply_backbone_checkpoint(hrnet_model, with_path) is True
    loaded = hrnet_model.backbone.backbone
    assert torch.equal(loaded.conv1.weight, hrnet_source.conv1.weight)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
