"""Tests of the `vitpose` detector backend and its checkpoint key conversion (tiny models only)."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from preprocess.detectors import Detector, ViTPoseDetector, make_detector
from body.joints import COCO17_FLIP_PAIRS
from preprocess.detectors.vitpose import IMAGENET_MEAN, IMAGENET_STD
from preprocess.detectors.vitpose_keys import (
    CheckpointError, convert_original_state_dict, infer_architecture,
)

REPO = Path(__file__).resolve().parents[2]
HIDDEN, LAYERS, HEADS = 32, 2, 2
# what mmcv saves under meta.config for a ViTPose run (only num_heads is read)
META_CONFIG = f"model = dict(type='TopDown', backbone=dict(type='ViT', embed_dim={HIDDEN}, " \
              f"depth={LAYERS}, num_heads={HEADS}, mlp_ratio=4, qkv_bias=True))"


# -- the inverse of the key conversion, written independently of vitpose_keys -----------------

_FIXED_TO_ORIGINAL = {
    "backbone.embeddings.patch_embeddings.projection.weight": "backbone.patch_embed.proj.weight",
    "backbone.embeddings.patch_embeddings.projection.bias": "backbone.patch_embed.proj.bias",
    "backbone.embeddings.position_embeddings": "backbone.pos_embed",
    "backbone.layernorm.weight": "backbone.last_norm.weight",
    "backbone.layernorm.bias": "backbone.last_norm.bias",
}
_LAYER_TO_ORIGINAL = {"layernorm_before": "norm1", "layernorm_after": "norm2",
                      "attention.output.dense": "attn.proj", "mlp": "mlp"}
_HEAD_TO_ORIGINAL = {"deconv1": "deconv_layers.0", "batchnorm1": "deconv_layers.1",
                     "deconv2": "deconv_layers.3", "batchnorm2": "deconv_layers.4",
                     "conv": "final_layer"}


def to_original_layout(hf: dict) -> dict:
    """Hugging Face VitPose tensors → the original ViTPose (mmpose 0.x) layout."""
    out = {}
    for key, value in hf.items():
        if key in _FIXED_TO_ORIGINAL:
            out[_FIXED_TO_ORIGINAL[key]] = value
            continue
        m = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.(.+)", key)
        if m:
            n, rest = m.groups()
            if rest.startswith("attention.attention.query."):
                param = rest.rsplit(".", 1)[1]
                att = f"backbone.encoder.layer.{n}.attention.attention"
                out[f"backbone.blocks.{n}.attn.qkv.{param}"] = torch.cat(
                    [hf[f"{att}.{name}.{param}"] for name in ("query", "key", "value")])
                continue
            if rest.startswith("attention.attention."):
                continue
            for new, old in _LAYER_TO_ORIGINAL.items():
                if rest.startswith(new + "."):
                    out[f"backbone.blocks.{n}.{old}{rest[len(new):]}"] = value
                    break
            else:
                raise AssertionError(key)
            continue
        module, param = key[len("head."):].split(".", 1)
        out[f"keypoint_head.{_HEAD_TO_ORIGINAL[module]}.{param}"] = value
    return out


def tiny_model(simple: bool = False, num_experts: int = 1, seed: int = 0):
    """A random VitPoseForPoseEstimation for 256×192 input: width 32, 2 blocks, 2 heads."""
    pytest.importorskip("transformers")
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    backbone = VitPoseBackboneConfig(
        image_size=[256, 192], patch_size=[16, 16], hidden_size=HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, mlp_ratio=4, layer_norm_eps=1e-6, out_indices=[LAYERS],
        num_experts=num_experts, part_features=8)
    model = VitPoseForPoseEstimation(VitPoseConfig(
        backbone_config=backbone, num_labels=17, use_simple_decoder=simple)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                r = torch.randn(p.shape, generator=gen)
                p.copy_(0.5 + 0.5 * r.abs() if "running_var" in name else 0.2 * r)
    return model


def reference(model, crops: np.ndarray, flip: bool = False, dataset_index=None) -> np.ndarray:
    """The model's heatmaps, computed directly (flip test with transformers' own flip_back)."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1)
    index = None if dataset_index is None else torch.full((len(x),), dataset_index)
    with torch.no_grad():
        hm = model(x, dataset_index=index).heatmaps
        if flip:
            back = model(x.flip(-1), dataset_index=index,
                         flip_pairs=torch.tensor(COCO17_FLIP_PAIRS)).heatmaps
            hm = 0.5 * (hm + back)
    return hm.numpy()


def save_original(path: Path, model, wrap: bool = True, meta: bool = True, edit=None) -> Path:
    sd = to_original_layout(model.state_dict())
    if edit is not None:
        edit(sd)
    obj = sd
    if wrap:
        obj = {"state_dict": sd, "meta": {"config": META_CONFIG} if meta else {}}
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def pth(model, tmp_path_factory):
    return save_original(tmp_path_factory.mktemp("vitpose") / "tiny-coco.pth", model)


@pytest.fixture(scope="module")
def simple_model():
    """The simple-decoder variant: 20× cheaper heads for the tests of the inference loop."""
    return tiny_model(simple=True)


@pytest.fixture(scope="module")
def simple_pth(simple_model, tmp_path_factory):
    return save_original(tmp_path_factory.mktemp("vitpose") / "tiny-simple.pth", simple_model)


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).integers(0, 256, (5, 256, 192, 3), dtype=np.uint8)


# -- key conversion ------------------------------------------------------------------------------

def test_vit_h_original_keys_convert_to_the_transformers_model():
    """The paper's ViT-H layout (shapes only, meta tensors) maps onto VitPoseForPoseEstimation."""
    pytest.importorskip("transformers")
    from transformers import VitPoseForPoseEstimation

    from preprocess.detectors.vitpose import vitpose_config

    c, hidden = 1280, 5120
    shapes = {"backbone.patch_embed.proj.weight": (c, 3, 16, 16),
              "backbone.patch_embed.proj.bias": (c,), "backbone.pos_embed": (1, 193, c),
              "backbone.last_norm.weight": (c,), "backbone.last_norm.bias": (c,),
              "keypoint_head.deconv_layers.0.weight": (c, 256, 4, 4),
              "keypoint_head.deconv_layers.3.weight": (256, 256, 4, 4),
              "keypoint_head.final_layer.weight": (17, 256, 1, 1),
              "keypoint_head.final_layer.bias": (17,)}
    for bn in (1, 4):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"keypoint_head.deconv_layers.{bn}.{p}"] = (256,)
        shapes[f"keypoint_head.deconv_layers.{bn}.num_batches_tracked"] = ()
    for n in range(32):
        b = f"backbone.blocks.{n}"
        shapes.update({f"{b}.norm1.weight": (c,), f"{b}.norm1.bias": (c,),
                       f"{b}.attn.qkv.weight": (3 * c, c), f"{b}.attn.qkv.bias": (3 * c,),
                       f"{b}.attn.proj.weight": (c, c), f"{b}.attn.proj.bias": (c,),
                       f"{b}.norm2.weight": (c,), f"{b}.norm2.bias": (c,),
                       f"{b}.mlp.fc1.weight": (hidden, c), f"{b}.mlp.fc1.bias": (hidden,),
                       f"{b}.mlp.fc2.weight": (c, hidden), f"{b}.mlp.fc2.bias": (c,)})
    original = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    converted = convert_original_state_dict({"state_dict": original, "meta": {}})
    arch = infer_architecture(converted)
    assert (arch.hidden_size, arch.num_layers, arch.patch_size, arch.num_patches) == \
        (1280, 32, 16, 192)
    assert (arch.mlp_ratio, arch.num_labels, arch.simple_decoder, arch.num_heads()) == \
        (4, 17, False, 16)
    config = vitpose_config(arch, arch.num_heads())
    bb = config.backbone_config
    assert bb.layer_norm_eps == 1e-6 and bb.out_features == ["stage32"]
    assert config.use_simple_decoder is False
    with torch.device("meta"):
        expected = VitPoseForPoseEstimation(config).state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in expected.items()}


def test_qkv_split_and_names(model):
    hf = model.state_dict()
    original = to_original_layout(hf)
    converted = convert_original_state_dict(original)
    assert set(converted) == set(hf)
    for key, value in hf.items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0)
    qkv = original["backbone.blocks.1.attn.qkv.weight"]
    assert torch.equal(converted["backbone.encoder.layer.1.attention.attention.key.weight"],
                       qkv[HIDDEN:2 * HIDDEN])
    assert converted["backbone.embeddings.position_embeddings"].shape == (1, 193, HIDDEN)


def test_unrecognised_layouts_are_refused():
    one = torch.zeros(1)
    with pytest.raises(CheckpointError, match="mmpose 1.x"):
        convert_original_state_dict({"backbone.layers.0.ln1.weight": one})
    with pytest.raises(CheckpointError, match="unrecognised"):
        convert_original_state_dict({"encoder.weight": one})


# -- loading through the detector ----------------------------------------------------------------

@pytest.mark.parametrize("wrap", [True, False])
def test_original_checkpoint_round_trip(model, crops, tmp_path, wrap):
    path = save_original(tmp_path / "ckpt.pth", model, wrap=wrap)
    detector = ViTPoseDetector(str(path), num_heads=None if wrap else HEADS)
    np.testing.assert_allclose(detector(crops[:3], [None] * 3), reference(model, crops[:3]),
                               rtol=0, atol=1e-5)


def test_simple_decoder_round_trip(simple_model, simple_pth, crops):
    detector = ViTPoseDetector(str(simple_pth))
    assert detector.model.config.use_simple_decoder
    np.testing.assert_allclose(detector(crops), reference(simple_model, crops), atol=1e-5)


def test_hf_directory_round_trip(model, crops, tmp_path):
    model.save_pretrained(tmp_path / "hf")
    detector = ViTPoseDetector(str(tmp_path / "hf"))
    np.testing.assert_allclose(detector(crops[:3]), reference(model, crops[:3]), rtol=0,
                               atol=1e-5)


def test_num_heads_needed_for_an_unknown_width(model, tmp_path):
    path = save_original(tmp_path / "no-meta.pth", model, meta=False)
    with pytest.raises(CheckpointError, match="num_heads"):
        ViTPoseDetector(str(path))
    assert ViTPoseDetector(str(path), num_heads=HEADS).model.config.backbone_config \
        .num_attention_heads == HEADS


def test_multi_dataset_checkpoint_keeps_the_coco_head(model, crops, tmp_path):
    other = tiny_model(seed=1)
    other_sd = to_original_layout(other.state_dict())

    def add_heads(sd):
        for k in (0, 1):
            sd.update({key.replace("keypoint_head", f"associate_keypoint_heads.{k}"): value
                       for key, value in other_sd.items() if key.startswith("keypoint_head")})
        sd["backbone.cls_token"] = torch.zeros(1, 1, HIDDEN)

    path = save_original(tmp_path / "multi.pth", model, edit=add_heads)
    np.testing.assert_allclose(ViTPoseDetector(str(path))(crops[:2]),
                               reference(model, crops[:2]), atol=1e-5)


def test_moe_checkpoint_uses_expert_zero(crops, tmp_path):
    moe = tiny_model(num_experts=3)
    path = save_original(tmp_path / "plus.pth", moe)
    assert "backbone.blocks.0.mlp.experts.2.weight" in torch.load(path)["state_dict"]
    detector = ViTPoseDetector(str(path))
    out = detector(crops[:2])
    np.testing.assert_allclose(out, reference(moe, crops[:2], dataset_index=0), atol=1e-5)
    assert np.abs(out - reference(moe, crops[:2], dataset_index=1)).max() > 1e-3


@pytest.mark.parametrize("key", ["backbone.blocks.1.mlp.fc1.bias",
                                 "keypoint_head.deconv_layers.4.running_var"])
def test_missing_key_is_named(model, tmp_path, key):
    path = save_original(tmp_path / "missing.pth", model, edit=lambda sd: sd.pop(key))
    with pytest.raises(CheckpointError) as err:
        ViTPoseDetector(str(path))
    assert key in str(err.value) and str(path) in str(err.value)
    assert "missing" in str(err.value)


@pytest.mark.parametrize("key", ["backbone.blocks.0.attn.rel_pos", "keypoint_head.extra.weight"])
def test_unexpected_key_is_named(model, tmp_path, key):
    path = save_original(tmp_path / "extra.pth", model,
                         edit=lambda sd: sd.__setitem__(key, torch.zeros(3)))
    with pytest.raises(CheckpointError) as err:
        ViTPoseDetector(str(path))
    assert key in str(err.value) and str(path) in str(err.value)


def test_extra_block_is_an_unexpected_key(model, tmp_path):
    """A block index past the end makes a deeper model, whose other blocks are then missing."""
    path = save_original(tmp_path / "deep.pth", model, edit=lambda sd: sd.__setitem__(
        "backbone.blocks.5.norm1.weight", torch.ones(HIDDEN)))
    with pytest.raises(CheckpointError, match=r"missing key\(s\): .*backbone\.blocks\.2\."):
        ViTPoseDetector(str(path))


# -- inference -----------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_flip_test_is_the_mirrored_average(request, crops, decoder):
    model = request.getfixturevalue("model" if decoder == "classic" else "simple_model")
    path = request.getfixturevalue("pth" if decoder == "classic" else "simple_pth")
    plain = ViTPoseDetector(str(path))(crops[:2])
    flipped = ViTPoseDetector(str(path), flip_test=True)(crops[:2])
    assert np.abs(flipped - plain).max() > 1e-3
    np.testing.assert_allclose(flipped, reference(model, crops[:2], flip=True), atol=1e-5)


def test_flip_test_of_a_symmetric_crop_is_mirror_consistent(simple_pth, crops):
    sym = crops[:2].copy()
    sym[:, :, 96:] = sym[:, :, 95::-1]
    out = ViTPoseDetector(str(simple_pth), flip_test=True)(sym)
    mirror = [0] + [k + 1 if k % 2 else k - 1 for k in range(1, 17)]
    np.testing.assert_allclose(out, out[:, mirror, :, ::-1], atol=1e-5)


def test_output_contract_and_batching(simple_pth, crops):
    whole = ViTPoseDetector(str(simple_pth), batch_size=32)(crops)
    assert isinstance(whole, np.ndarray) and whole.shape == (5, 17, 64, 48)
    assert whole.dtype == np.float32
    split = ViTPoseDetector(str(simple_pth), batch_size=2)(crops)
    np.testing.assert_allclose(split, whole, rtol=0, atol=1e-6)
    detector = ViTPoseDetector(str(simple_pth))
    assert detector(crops[:0]).shape == (0, 17, 64, 48)
    with pytest.raises(ValueError, match="uint8"):
        detector(crops.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B, 256, 192, 3\)"):
        detector(crops[:, :128])
    with pytest.raises(ValueError, match="requests"):
        detector(crops, [None])


def test_dtype_option(simple_pth, crops):
    with pytest.raises(ValueError, match="dtype"):
        ViTPoseDetector(str(simple_pth), dtype="int8")
    with pytest.warns(UserWarning, match="float32"):
        bf16 = ViTPoseDetector(str(simple_pth), dtype="bfloat16")
    np.testing.assert_array_equal(bf16(crops[:2]), ViTPoseDetector(str(simple_pth))(crops[:2]))


def test_make_detector(pth, tmp_path):
    detector = make_detector("vitpose", checkpoint=str(pth), batch_size=4)
    assert isinstance(detector, Detector) and detector.name == "vitpose"
    with pytest.raises(ValueError, match="unknown detector backend"):
        make_detector("openpose", checkpoint=str(pth))
    with pytest.raises(FileNotFoundError):
        make_detector("vitpose", checkpoint=str(tmp_path / "nope.pth"))


def test_without_transformers(monkeypatch, pth):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    with pytest.raises(ImportError, match=re.escape("pip install -e '.[vitpose]'")):
        make_detector("vitpose", checkpoint=str(pth))
    code = ("import sys; sys.modules['transformers'] = None; "
            "import preprocess.detectors as d; assert 'vitpose' in d.DETECTORS")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
