"""The CPU step-time breakdown of stage two at the paper's flow size (batch 64 × (1 + 25)
hypotheses, 8 blocks of 1024 units, condition 979): data, backbone, flow forward+backward, body
(fast joints and camera), losses. Goal: a step ≤ 1.3 × its flow forward+backward. The frozen
backbone is reported beside the step and outside the ratio: its features do not depend on the
trained weights (a cache of them is a drop-in) and HRNet-W48 on a CPU would swamp every other
figure; the breakdown with it is in the details."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from core.config import load_config
from train.data import TrainingExample, TrainingTargets
from train.inputs import ModelInput
from train.model import POSE_DIM, ProbabilisticHMR
from train.objective import loss_terms, total, training_forward

from .timing import one_thread, timed


def _batch(b: int, crop: int) -> TrainingExample:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    inputs = ModelInput(image=r(b, 3, crop, crop), det_kp=r(b, 17, 3) * 2 - 1,
                        bbox_cond=r(b, 3) * 0.2, center=r(b, 2) * 100 + 300,
                        scale=r(b) + 1.0, focal=torch.full((b,), 1000.0),
                        img_size=torch.tensor([[640.0, 360.0]]).expand(b, 2))
    targets = TrainingTargets(
        gt_pose6d=torch.eye(3)[:2].flatten().expand(b, 22, 6).clone(),
        gt_betas=torch.zeros(b, 11), gt_body2d=r(b, 24, 2) * 2 - 1,
        gt_body2d_valid=torch.ones(b, 24, dtype=torch.bool),
        gt_coco=r(b, 17, 2) * 2 - 1, max_conf=r(b, 17),
        gt_in_fov=torch.ones(b, 17, dtype=torch.bool),
        gt_in_crop=torch.ones(b, 17, dtype=torch.bool),
        hm_samples=r(b, 17, 25, 2) * 2 - 1, hm_inside=r(b, 17, 25) > 0.3,
        mask=r(b, crop, crop) > 0.5, use_mask=torch.ones(b, dtype=torch.bool),
        row=torch.arange(b), dataset=torch.zeros(b, dtype=torch.int64))
    return TrainingExample(inputs, targets)


def bench_train_step(body_models: Path, batch: int = 64, repeats: int = 2) -> dict:
    cfg = load_config(["profile=paper", f"body.models={body_models}",
                       "model.backbone=small_cnn", "model.backbone_options.out_features=720"])
    torch.manual_seed(0)
    model = ProbabilisticHMR(cfg, cfg.body.models).train()
    data = _batch(batch, cfg.model.crop_size)
    n = cfg.model.samples_train
    t_backbone, _ = timed(lambda: model.backbone(data.inputs.image), repeats)
    with torch.no_grad():
        posterior = model(data.inputs)  # its condition carries no gradient to the backbone
    gt = data.targets.gt_pose6d

    def flow_fwd_bwd():
        pose = posterior.mode_and_samples(n)
        log_prob = posterior.log_prob(gt)
        (pose.square().mean() - log_prob.mean() / POSE_DIM).backward()
        model.zero_grad(set_to_none=True)

    t_flow, _ = timed(flow_fwd_bwd, repeats)

    def step():
        out, log_prob = training_forward(model, data, n, cfg)
        loss = total(loss_terms(out, log_prob, data.targets, cfg), cfg)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return out, log_prob

    t_step, _ = timed(step, repeats)
    with torch.no_grad():
        pose = posterior.mode_and_samples(n)
        log_prob = posterior.log_prob(gt)
        posterior.shape_camera()
    t_body, out = timed(lambda: posterior.project(pose), repeats)
    t_loss, _ = timed(lambda: loss_terms(out, log_prob, data.targets, cfg), repeats)
    without_backbone = t_step - t_backbone
    ratio = without_backbone / t_flow
    return {"value": round(ratio, 2), "unit": "x flow fwd+bwd", "goal": "<= 1.3",
            "met": bool(ratio <= 1.3), "batch": f"{batch} x {1 + n}",
            "step_s": round(t_step, 3), "backbone_s (small_cnn, frozen)": round(t_backbone, 3),
            "flow_fwd_bwd_s": round(t_flow, 3), "body_and_camera_s": round(t_body, 4),
            "losses_s": round(t_loss, 4),
            "data_s": "see data_path_examples_per_s (DataLoader workers overlap the step)"}


def bench_synthetic_steps(body_models: Path, steps: int = 10) -> dict:
    """Steps/s of one synthetic-profile training step (batch `train.batch_size` × (1 + 25)
    hypotheses, full loss, backward, AdamW; data loading excluded): the median of `steps` timed
    steps after two untimed ones at torch's thread count, and the same at one thread (on a
    shared machine intra-op threads can cost far more than they give, docs/diagnosis.md §4),
    with the machine's load beside them."""
    threads = torch.get_num_threads()
    default = _synthetic_step_s(body_models, steps)
    with one_thread():
        single = _synthetic_step_s(body_models, steps)
    return {"value": round(1 / default, 2), "unit": "steps/s", "threads": threads,
            "steps_per_s_1_thread": round(1 / single, 2),
            "batch": "train.batch_size x (1 + model.samples_train) (synthetic profile)",
            "step_s (median)": round(default, 4), "load_1min": round(os.getloadavg()[0], 2)}


def _synthetic_step_s(body_models: Path, steps: int) -> float:
    """Median seconds of a synthetic-profile training step (`bench_synthetic_steps`)."""
    cfg = load_config(["profile=synthetic", f"body.models={body_models}"])
    torch.manual_seed(0)
    model = ProbabilisticHMR(cfg, cfg.body.models).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = _batch(cfg.train.batch_size, cfg.model.crop_size)

    def step() -> None:
        out, log_prob = training_forward(model, data, cfg.model.samples_train, cfg)
        loss = total(loss_terms(out, log_prob, data.targets, cfg), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])
