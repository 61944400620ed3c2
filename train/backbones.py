"""Image backbones of stage two (docs/method.md §3, docs/formats.md "HRNet-W48 backbone"): c_I
from a crop.

- `HRNetW48`: the BEDLAM-CLIFF image encoder, 720-D after global average pooling.
- `SmallCNN`: the synthetic profile's few-layer encoder, so CPU training takes minutes.
- `make_backbone(name, **options)`: one of the above by its configuration name.
- `freeze(backbone)`: all parameters fixed and BatchNorm kept in eval mode inside a training model.

Pure PyTorch (no torchvision, no timm). Every backbone maps (B, 3, H, W) → (B, out_features) and
has `features(x)`, the map before pooling.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    """[3×3 conv, BatchNorm, ReLU], flat, so Sequential indices follow the HRNet layout."""
    return [conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs), HRNet's branch block."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1×1, 3×3, 1×1 ×4), HRNet's layer1 block."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def make_layer(block: type[BasicBlock] | type[Bottleneck], in_channels: int, channels: int,
               blocks: int) -> nn.Sequential:
    """`blocks` residual blocks; the first one gets a 1×1 projection when the width changes."""
    downsample = None
    if in_channels != channels * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, channels * block.expansion, 1, bias=False),
            nn.BatchNorm2d(channels * block.expansion))
    layers = [block(in_channels, channels, downsample=downsample)]
    layers += [block(channels * block.expansion, channels) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """One HRNet module: a stack of blocks per branch, then every branch fused into every output.

    Branch i runs at 1/2^i of branch 0's resolution. Fusing j into i: i = j identity; j > i a 1×1
    conv + BN then nearest upsampling by 2^(j−i); j < i (i − j) strided 3×3 convs + BN, with a ReLU
    after all but the last. The sum goes through a ReLU.
    """

    def __init__(self, channels: Sequence[int], num_blocks: int):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            make_layer(BasicBlock, c, c, num_blocks) for c in channels)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_layer(channels, j, i) for j in range(len(channels)))
            for i in range(len(channels)))
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_layer(channels: Sequence[int], j: int, i: int) -> nn.Module | None:
        """The path from branch j to output i (None for i = j)."""
        if j == i:
            return None
        if j > i:
            return nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                 nn.BatchNorm2d(channels[i]),
                                 nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
        steps = []
        for k in range(i - j):
            if k == i - j - 1:
                steps.append(nn.Sequential(conv3x3(channels[j], channels[i], 2),
                                           nn.BatchNorm2d(channels[i])))
            else:
                steps.append(nn.Sequential(*conv_bn_relu(channels[j], channels[j], 2)))
        return nn.Sequential(*steps)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            y = xs[i]
            for j, path in enumerate(paths):
                if j != i:
                    y = y + path(xs[j])
            fused.append(self.relu(y))
        return fused


def make_transition(pre_channels: Sequence[int], channels: Sequence[int]) -> nn.ModuleList:
    """Between stages: kept branches get a 3×3 conv when their width changes (else None); each new
    branch comes from the lowest-resolution one through strided 3×3 convs."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(channels):
        if i < len(pre_channels):
            same = pre_channels[i] == c
            layers.append(None if same else nn.Sequential(*conv_bn_relu(pre_channels[i], c)))
            continue
        steps = []
        for k in range(i + 1 - len(pre_channels)):
            c_in = pre_channels[-1]
            c_out = c if k == i - len(pre_channels) else c_in
            steps.append(nn.Sequential(*conv_bn_relu(c_in, c_out, 2)))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def run_transition(transition: nn.ModuleList, ys: list[Tensor]) -> list[Tensor]:
    """Apply a transition: branch i from ys[i], new branches from ys[-1]."""
    return [ys[i] if layer is None else layer(ys[i] if i < len(ys) else ys[-1])
            for i, layer in enumerate(transition)]


class HRNetW48(nn.Module):
    """HRNet-W48 as in BEDLAM-CLIFF (the 'hrnet_w48' of the HMR/PARE/CLIFF code family).

    Stem: two stride-2 3×3 convs (64 ch) → layer1: 4 Bottlenecks (256 ch) → transition/stage 2–4
    with 2, 3, 4 branches of 48/96/192/384 channels (1, 4, 3 modules; 4 BasicBlocks per branch;
    HRNet fuse layers, all branches output by the last module) → the BEDLAM-CLIFF head: branches
    1–3 brought to the 1/32 branch by 3, 2, 1 stride-2 3×3 conv + BN + ReLU layers, branch 4 as
    is, concatenated (48 + 96 + 192 + 384 = 720 channels, 7×7 for a 224 input), global average
    pooled to (B, 720). Input sides should be multiples of 32 (the fuse layers upsample by
    fixed factors). Inputs are ImageNet-normalised RGB crops.

    Module names follow the original HRNet code (conv1, bn1, conv2, bn2, layer1, transition1,
    stage2, …, branches, fuse_layers) and PARE/BEDLAM's head (`downsample_stage_{1,2,3}.{3k,
    3k+1}` = conv, BN of layer k). The pose HRNet's `final_layer` (a 1×1 conv to 24 joint
    heatmaps, unused by the 720-D output) is not built. The exact key mapping to the BEDLAM-CLIFF
    checkpoint `bedlam_cliff_3dpw_ft_backbone.pth` (prefixes, dropped keys) is the work of the
    issue that loads it.
    """

    out_features = 720
    width = 48
    # (modules, branches) of stages 2, 3, 4; 4 BasicBlocks per branch; channels width·2^i
    stages = ((1, 2), (4, 3), (3, 4))
    num_blocks = 4

    def __init__(self):
        super().__init__()
        self.conv1 = conv3x3(3, 64, 2)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = conv3x3(64, 64, 2)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, 64, 64, 4)

        pre = [64 * Bottleneck.expansion]
        for s, (num_modules, num_branches) in enumerate(self.stages, start=2):
            channels = [self.width * 2 ** i for i in range(num_branches)]
            setattr(self, f"transition{s - 1}", make_transition(pre, channels))
            setattr(self, f"stage{s}", nn.Sequential(
                *[HighResolutionModule(channels, self.num_blocks) for _ in range(num_modules)]))
            pre = channels

        # branch i (i = 1, 2, 3) to the 1/32 branch: 4 − i stride-2 layers at constant width
        for i in (1, 2, 3):
            c = self.width * 2 ** (i - 1)
            layers = [m for _ in range(4 - i) for m in conv_bn_relu(c, c, 2)]
            setattr(self, f"downsample_stage_{i}", nn.Sequential(*layers))
        assert sum(pre) == self.out_features
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions (fan-out, as in the HRNet classification code), unit BN."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → the concatenated (B, 720, H/32, W/32) map before pooling."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for s in (2, 3, 4):
            ys = getattr(self, f"stage{s}")(run_transition(getattr(self, f"transition{s - 1}"), ys))
        return torch.cat([self.downsample_stage_1(ys[0]), self.downsample_stage_2(ys[1]),
                          self.downsample_stage_3(ys[2]), ys[3]], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, 720), the global average of `features`."""
        return self.features(x).mean(dim=(2, 3))


class SmallCNN(nn.Module):
    """The synthetic profile's backbone: stride-2 3×3 conv + BN + ReLU layers of widths
    width, 2·width, 4·width, 4·width, out_features (1/32 resolution, like HRNet's head), then
    global average pooling. ≈ 0.39 M parameters at the defaults."""

    def __init__(self, out_features: int = 128, width: int = 32):
        super().__init__()
        self.out_features = out_features
        widths = [3, width, 2 * width, 4 * width, 4 * width, out_features]
        self.layers = nn.Sequential(*[m for c_in, c_out in zip(widths[:-1], widths[1:])
                                      for m in conv_bn_relu(c_in, c_out, 2)])

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, out_features, ⌈H/32⌉, ⌈W/32⌉)."""
        return self.layers(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, out_features)."""
        return self.features(x).mean(dim=(2, 3))


BACKBONES: dict[str, type[nn.Module]] = {"hrnet_w48": HRNetW48, "small_cnn": SmallCNN}


def make_backbone(name: str, **options) -> nn.Module:
    """The backbone called `name` ("hrnet_w48" | "small_cnn"), built with `options`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name](**options)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """A copy of an eval-mode `module` in which every BatchNorm2d that directly follows a Conv2d
    inside a Sequential is folded into that convolution (torch's `fuse_conv_bn_eval`; the
    BatchNorm becomes an Identity): the same function up to float rounding, without the
    BatchNorm's pass over the activations (10 % of a synthetic CPU training step)."""
    folded = copy.deepcopy(module)
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = seq._modules[conv_name], seq._modules[bn_name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                seq._modules[bn_name] = nn.Identity()
    return folded


def image_features(backbone: nn.Module, image: Tensor) -> Tensor:
    """c_I of a batch of crops (B, 3, S, S): the crop goes to the backbone channels-last, the
    faster layout of CPU convolutions (docs/diagnosis.md §4; the same values up to rounding)."""
    return backbone(image.contiguous(memory_format=torch.channels_last))


class FrozenBackbone(nn.Module):
    """A backbone with fixed parameters whose BatchNorm layers stay in eval mode (running
    statistics used, never updated) whatever mode the parent model is put in.

    Gradients still flow through it to its input. The wrapped module is `self.backbone`, so its
    state-dict keys gain the prefix "backbone.". It runs as a copy with its BatchNorms folded
    into the convolutions (`fold_batch_norms`), rebuilt whenever a parameter of the wrapped
    module changes in place (a loaded checkpoint) or a tensor moves (device, dtype). Buffers
    count by place only: DDP rewrites them with the same values at every step.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.out_features = getattr(backbone, "out_features", None)
        self._folded: tuple[tuple, nn.Module] | None = None

    def train(self, mode: bool = True) -> FrozenBackbone:
        super().train(mode)
        self.backbone.eval()
        return self

    def folded(self) -> nn.Module:
        """The wrapped backbone with its BatchNorms folded, current with its tensors."""
        key = (tuple((p.device, p.dtype, p.data_ptr(), p._version)
                     for p in self.backbone.parameters()),
               tuple((b.device, b.dtype, b.data_ptr()) for b in self.backbone.buffers()))
        if self._folded is None or self._folded[0] != key:
            # channels-last weights, as the crop comes (train/model.py): 88 → 56 ms CPU for the
            # synthetic batch of 16, against 63 ms with the folded weights channels-first
            folded = fold_batch_norms(self.backbone).to(memory_format=torch.channels_last)
            self._folded = (key, folded)
        return self._folded[1]

    def features(self, x: Tensor) -> Tensor:
        """The wrapped backbone's map before pooling."""
        return self.folded().features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.folded()(x)


class TrainedBackbone(nn.Module):
    """A backbone trained with the model (`model.freeze_backbone: false`: e.g. the synthetic
    world, which has no pretrained backbone to freeze). The same state-dict layout as
    `FrozenBackbone` (prefix "backbone.")."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.out_features = getattr(backbone, "out_features", None)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)


def freeze(backbone: nn.Module) -> FrozenBackbone:
    """`backbone` with every parameter frozen (in place) and BatchNorm kept in eval mode, wrapped
    in a `FrozenBackbone`; freezing a `FrozenBackbone` returns it unchanged."""
    if isinstance(backbone, FrozenBackbone):
        return backbone
    return FrozenBackbone(backbone)
