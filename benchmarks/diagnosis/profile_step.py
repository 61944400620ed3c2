"""Measurement 4 (docs/diagnosis.md): where the time of one synthetic-profile training step goes
(batch `train.batch_size` of real training examples, full model and loss), by torch.profiler.

`python -m benchmarks.diagnosis.profile_step [--steps N] [key=value …]`
"""
from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from core.cli import ArgumentParser, run_cli
from train.model import ProbabilisticHMR
from train.objective import loss_terms, total

from .common import batch_of, config, examples, machine


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.diagnosis.profile_step",
                            description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = config(args.overrides)
    torch.manual_seed(0)
    data = examples(cfg)
    b = cfg.train.batch_size
    batches = [batch_of(data, range(i * b, (i + 1) * b)) for i in range(args.steps + 1)]
    model = ProbabilisticHMR(cfg, cfg.body.models).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: dict) -> None:
        with record_function("forward"):
            with record_function("conditions"):
                cond = model.conditions(batch)
            with record_function("flow_sample"):
                pose = model.flow.sample_with_mode(cond, cfg.model.samples_train)
            with record_function("flow_log_prob"):
                gt = batch["gt_pose6d"].flatten(1)
                log_prob = model.flow.log_prob(gt + 0.005 * torch.randn_like(gt), cond)
            with record_function("head"):
                betas, cam = model.head(cond)
            with record_function("project"):
                out = model.project(pose.unflatten(-1, (22, 6)), betas, cam, batch, log_prob)
        with record_function("losses"):
            loss = total(loss_terms(out, batch, cfg), cfg)
        with record_function("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimizer"):
            opt.step()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[1:]:
            step(batch)
    wall = (time.perf_counter() - t0) / args.steps
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))
    print(f"model step without data: {wall:.3f} s ({1 / wall:.2f} steps/s), {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
