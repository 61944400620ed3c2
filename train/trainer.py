"""The training loop of stage two (docs/method.md §5): AdamW, any device, AMP on CUDA, DDP through
torchrun, checkpoints every N steps and on SIGTERM, exact resume, a NaN/Inf guard, tensorboard,
a progress bar, the resolved config saved with the run.

Every random draw of step t comes from streams seeded by (seed, t, rank) — the data by the
global example counter, the model's sampling by `torch.manual_seed` at each step — so resuming
from a checkpoint reproduces an uninterrupted run exactly (on CPU).
"""
from __future__ import annotations

import copy
import signal
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from body.joints import SMPLX_2D_LOSS_JOINTS
from core.errors import ConfigError, MissingFileError
from core.seeding import stable_seed
from stores.context_cache import build_context_cache
from stores.paths import store_path

from .checkpoint import clear_checkpoints, restore_checkpoint, resume_point, run_dir, \
    save_checkpoint
from .backbone_pretraining import load_pretrained, pretrain_backbone, pretrained_path
from .checkpoints_external import apply_backbone_checkpoint, require_backbone_weights
from .data import make_loader
from .inputs import to_device
from .distributed import Process, barrier, init_process, shutdown
from .model import NUM_BETAS, POSE_DIM, ProbabilisticHMR
from .objective import loss_terms, total, training_forward
from .schedule import learning_rate
from .visualize import hypotheses_figure


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or Inf: training stops, naming the step and the term."""


def store_paths(cfg: DictConfig) -> list[Path]:
    paths = [store_path(cfg.paths.stores, name) for name in cfg.train.stores]
    missing = [str(p) for p in paths if not (p / "zarr.json").exists()]
    if missing:
        raise MissingFileError(f"train.stores: no store at {', '.join(missing)}; run "
                               "`make precompute DATASET=…` first")
    return paths


def build_caches(cfg: DictConfig) -> list[Path]:
    """The training stores, each with its context cache built (or found current)."""
    stores = store_paths(cfg)
    for store in stores:
        build_context_cache(store, cfg.model.crop_size, cfg.train.context_factor,
                            workers=cfg.train.workers or 1)
    return stores


def _pretrained_backbone(cfg: DictConfig, stores: list[Path]) -> Path | None:
    """Where the synthetic stand-in for the pretrained backbone lives
    (train/backbone_pretraining.py) when `backbone_pretraining.steps` > 0 and no checkpoint is
    given, else None."""
    if not cfg.backbone_pretraining.steps or cfg.model.get("backbone_checkpoint"):
        return None
    return pretrained_path(cfg, stores)


def loader_backbone(cfg: DictConfig, model: ProbabilisticHMR) -> torch.nn.Module | None:
    """A CPU copy of the frozen backbone for the DataLoader to run (`train.backbone_in_loader`,
    train/data.py `CollateExamples`), else None."""
    if not cfg.train.backbone_in_loader:
        return None
    if not cfg.model.freeze_backbone:
        raise ConfigError("train.backbone_in_loader: true needs model.freeze_backbone: true (a "
                          "trained backbone's features change at every step)")
    return copy.deepcopy(model.backbone).cpu()


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """The global L2 norm of the gradients, which are scaled down to `max_norm` when it is
    larger (`train.grad_clip_norm`; 0: never, the reference). Logged as `train/grad_norm`."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm, foreach=True)
    return norm


def _check_finite(terms: dict[str, torch.Tensor], step: int) -> None:
    bad = {k: float(v) for k, v in terms.items() if not torch.isfinite(v)}
    if bad:
        raise NonFiniteLoss(f"non-finite loss at step {step}: " +
                            ", ".join(f"{k}={v}" for k, v in bad.items()))


class _Stop:
    """Set by SIGTERM: finish the step, checkpoint, leave."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def fit(cfg: DictConfig, max_steps: int | None = None) -> dict:
    """Train until `train.iterations` (or `max_steps` more steps); returns the last losses."""
    t = cfg.train
    require_backbone_weights(cfg)
    process = init_process(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    out_dir = run_dir(cfg)
    stores = store_paths(cfg)
    # decided by every rank before anything is written: resume, start afresh, or refuse
    resume = resume_point(out_dir, t.overwrite_run, quiet=not process.main)
    if process.main:
        if t.overwrite_run and (cleared := clear_checkpoints(out_dir)):
            print(f"train.overwrite_run=true: deleted {cleared} checkpoint files of {out_dir}")
        out_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
        build_caches(cfg)
    pretrained = _pretrained_backbone(cfg, stores)
    if process.main and pretrained is not None:
        pretrain_backbone(cfg, stores, POSE_DIM, NUM_BETAS, len(SMPLX_2D_LOSS_JOINTS))
    barrier(process)
    torch.manual_seed(t.seed)
    model = ProbabilisticHMR(cfg, cfg.body.models)
    if not apply_backbone_checkpoint(model, cfg) and resume is None and pretrained is not None:
        # a fresh run starts from the pretrained stand-in; a resumed one has it in its checkpoint
        load_pretrained(model.backbone.backbone, pretrained)
    model.to(process.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel over all parameters (CPU 34 → 5 ms per synthetic step, docs/diagnosis.md
    # §4.1), the same update up to float rounding
    optimizer = torch.optim.AdamW(trainable, lr=t.lr, weight_decay=t.weight_decay,
                                  fused=process.device.type in ("cpu", "cuda"))
    amp = t.amp and process.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    step, next_example = 0, 0
    if resume is not None:
        state = restore_checkpoint(resume[1], model, optimizer, scaler)
        step, next_example = state["step"], state["next_example"]
        del resume
    net = DistributedDataParallel(model) if process.world_size > 1 else model
    per_step = t.batch_size * process.world_size
    loader = make_loader(stores, cfg, next_example, process.rank, process.world_size,
                         t.batch_size, t.workers, loader_backbone(cfg, model))
    end = t.iterations if max_steps is None else min(t.iterations, step + max_steps)
    writer = SummaryWriter(out_dir / "tb") if process.main else None
    stop = _Stop()
    last_terms: dict[str, float] = {}
    bar = tqdm(total=end, initial=step, desc=f"train {out_dir.name}", unit="step",
               disable=not process.main)
    try:
        batches = iter(loader)
        while step < end and not stop.requested:
            torch.manual_seed(stable_seed(t.seed, "step", step, process.rank) % 2 ** 63)
            batch = to_device(next(batches), process.device, non_blocking=True)
            net.train()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, t)
            with torch.autocast(process.device.type, enabled=amp):
                out, log_prob = training_forward(net, batch, cfg.model.samples_train, cfg)
                terms = loss_terms(out, log_prob, batch.targets, cfg)
            _check_finite(terms, step)
            loss = total(terms, cfg)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = clip_gradients(trainable, t.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                grad_norm = clip_gradients(trainable, t.grad_clip_norm)
                optimizer.step()
            step += 1
            next_example += per_step
            last_terms = {k: float(v.detach()) for k, v in terms.items()} | {
                "total": float(loss.detach())}
            bar.update(1)
            if writer is not None:
                _log(writer, step, last_terms, grad_norm, out, batch, t)
            if process.main and (step % t.checkpoint_every == 0 or step == end):
                save_checkpoint(out_dir, model, optimizer, scaler, step, next_example, cfg)
        if stop.requested and process.main:
            save_checkpoint(out_dir, model, optimizer, scaler, step, next_example, cfg)
    finally:
        stop.restore()
        bar.close()
        if writer is not None:
            writer.close()
        barrier(process)
        shutdown(process)
    return {"step": step, "losses": last_terms, "run": str(out_dir)}


def _log(writer: SummaryWriter, step: int, terms: dict, grad_norm: torch.Tensor, out,
         batch: dict, t: DictConfig) -> None:
    if step % t.log_every == 0 or step == 1:
        for name, value in terms.items():
            writer.add_scalar(f"loss/{name}", value, step)
        writer.add_scalar("train/grad_norm", float(grad_norm), step)  # read on log steps only
        writer.add_scalar("time/wall", time.time(), step)
    if step % t.image_every == 0 or step == 1:
        writer.add_figure("hypotheses", hypotheses_figure(batch, out), step)


__all__ = ["NonFiniteLoss", "Process", "fit"]
