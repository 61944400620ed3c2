"""A synthetic stand-in for the BEDLAM-CLIFF backbone (docs/method.md §3, docs/diagnosis.md §5).

The paper freezes an HRNet that BEDLAM-CLIFF pretrained to regress SMPL-X from the image, so its
features already encode the body's 3D pose, including what 2D keypoints cannot tell: depth order
of the limbs and which way the body faces. A frozen *random* CNN encodes none of it. When
`backbone_pretraining.steps` > 0 (the synthetic profile), the backbone is first trained once as a
deterministic SMPL-X regressor on the training stores — a small MLP head on its pooled features
regresses the ground-truth 6D pose, β and the body's 2D joints in the crop from augmented
training crops — and then frozen, exactly as the paper freezes its pretrained network.

The result is cached under `<paths.runs>/backbones/<backbone>-<key>/backbone.pt`, the key a hash
of everything it depends on (the stores' fingerprints, the backbone, the crop and augmentation
settings, this section, the seed), so every run and ablation variant with the same inputs
reuses one file. Training checkpoints `state.pt` every `checkpoint_every` steps and resumes from
it; a resumed pretraining gives the uninterrupted result on CPU (the data come from streams
seeded by the example counter, as in train/trainer.py; the regression draws nothing at random).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from core.seeding import stable_seed
from stores.store import Store

from .backbones import make_backbone
from .checkpoint import read_checkpoint, write_atomic
from .data import make_loader
from .inputs import to_device
from .schedule import learning_rate

FILE = "backbone.pt"
STATE = "state.pt"


class Regressor(nn.Module):
    """Backbone + head: pooled features → [6D pose (132), β (11), 24 body joints in the crop]."""

    def __init__(self, backbone: nn.Module, pose: int, betas: int, joints: int) -> None:
        super().__init__()
        self.backbone, self.sizes = backbone, (pose, betas, 2 * joints)
        width = backbone.out_features
        self.head = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(),
                                  nn.Linear(4 * width, sum(self.sizes)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.head(self.backbone(image.contiguous(memory_format=torch.channels_last)))
        return torch.split(out, self.sizes, dim=1)


def regression_loss(out: tuple[torch.Tensor, ...], targets,
                    orientation_weight: float = 0.0) -> torch.Tensor:
    """Mean squared 6D-pose and β errors plus the mean L1 of the valid 2D joints (crop-normalised):
    the three parts are each of order 0.1–1 at the start. `orientation_weight` adds the mean
    squared error of the global orientation's 6D alone: in the pose term it is 6 of 132
    dimensions, and the 2D term cannot see the heading (docs/diagnosis.md §7)."""
    pose, betas, body2d = out
    gt_pose = targets.gt_pose6d.flatten(1)
    valid = targets.gt_body2d_valid
    diff = (body2d.unflatten(1, (-1, 2)) - targets.gt_body2d).abs()[valid]
    l2d = diff.mean() if diff.numel() else body2d.sum() * 0
    orientation = (pose[:, :6] - gt_pose[:, :6]).square().mean()
    return ((pose - gt_pose).square().mean() + 0.1 * (betas - targets.gt_betas).square().mean()
            + l2d + orientation_weight * orientation)


def cache_key(cfg: DictConfig, stores: list[Path]) -> str:
    """Hash of what the pretrained weights depend on."""
    t = cfg.train
    parts = {"stores": [Store(s).attrs.get("fingerprint") for s in stores],
             "backbone": cfg.model.backbone,
             "options": OmegaConf.to_container(cfg.model.backbone_options, resolve=True),
             "crop": cfg.model.crop_size, "context": t.context_factor,
             "augment": [OmegaConf.to_container(t.scale_jitter), t.truncation_p, t.photometric_p],
             "pretraining": OmegaConf.to_container(cfg.backbone_pretraining, resolve=True),
             "seed": t.seed}
    return f"{stable_seed(json.dumps(parts, sort_keys=True)):016x}"[:12]


def pretrained_path(cfg: DictConfig, stores: list[Path]) -> Path:
    return (Path(cfg.paths.runs) / "backbones" /
            f"{cfg.model.backbone}-{cache_key(cfg, stores)}" / FILE)


def pretraining_schedule(p: DictConfig) -> DictConfig:
    """The cosine schedule of train/schedule.py over the pretraining's steps."""
    return OmegaConf.create({"lr": p.lr, "lr_schedule": "cosine", "warmup_steps": p.warmup_steps,
                             "iterations": p.steps})


def build_regressor(cfg: DictConfig, pose: int, betas: int,
                    joints: int) -> tuple[Regressor, torch.optim.Optimizer]:
    """The untrained regressor (seeded from `train.seed`) and its AdamW optimizer."""
    torch.manual_seed(stable_seed(cfg.train.seed, "backbone-pretraining") % 2 ** 63)
    model = Regressor(make_backbone(cfg.model.backbone, **cfg.model.backbone_options),
                      pose, betas, joints)
    return model, torch.optim.AdamW(model.parameters(), lr=cfg.backbone_pretraining.lr,
                                    weight_decay=1e-4)


def regression_step(model: Regressor, optimizer: torch.optim.Optimizer, batch, lr: float,
                    orientation_weight: float) -> torch.Tensor:
    """One optimiser step of the regression loss at learning rate `lr`; the loss, detached."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = regression_loss(model(batch.inputs.image), batch.targets, orientation_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def pretrain_backbone(cfg: DictConfig, stores: list[Path], pose: int, betas: int,
                      joints: int) -> Path:
    """The pretrained backbone's state-dict file: found in the cache, or trained (resuming)."""
    out = pretrained_path(cfg, stores)
    if out.exists():
        return out
    p = cfg.backbone_pretraining
    out.parent.mkdir(parents=True, exist_ok=True)
    model, optimizer = build_regressor(cfg, pose, betas, joints)
    step = 0
    if (out.parent / STATE).exists():
        state = read_checkpoint(out.parent / STATE)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    loader = make_loader(stores, cfg, step * p.batch_size, batch_size=p.batch_size)
    schedule = pretraining_schedule(p)
    model.train()
    bar = tqdm(total=p.steps, initial=step, desc="pretrain backbone", unit="step")
    loss = torch.zeros(())
    for batch in loader:
        if step >= p.steps:
            break
        loss = regression_step(model, optimizer, to_device(batch, torch.device("cpu")),
                               learning_rate(step, schedule), p.orientation_weight)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.4f}")
        if step % p.checkpoint_every == 0 and step < p.steps:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "step": step}
            write_atomic(out.parent / STATE, lambda f: torch.save(state, f))
    bar.close()
    weights = {"backbone": model.backbone.state_dict(), "steps": step,
               "final_loss": float(loss), "synthetic": True}
    write_atomic(out, lambda f: torch.save(weights, f))
    (out.parent / STATE).unlink(missing_ok=True)
    return out


def load_pretrained(backbone: nn.Module, path: Path) -> None:
    """Put the pretrained weights (and BatchNorm statistics) of `path` into `backbone`."""
    backbone.load_state_dict(read_checkpoint(path)["backbone"])
