"""Measurement 4 (docs/diagnosis.md): where the time of one synthetic-profile training step goes
(batch `train.batch_size` of real training examples, full model and loss), by torch.profiler.

`python -m benchmarks.diagnosis.profile_step [--steps N] [key=value …]`
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from core.cli import ArgumentParser, run_cli
from train.data import TrainingExample
from train.model import ProbabilisticHMR
from train.objective import loss_terms, total

from .common import batch_of, config, examples, machine

PARTS = ("forward", "conditions", "flow_sample", "flow_log_prob", "head", "project", "losses",
         "backward", "optimizer")  # the step's `record_function` labels


def run(argv: Sequence[str] | None = None) -> dict:
    """The flags of `argv` parsed; the profiler's table, each part's CPU seconds per step and
    the wall time of a step without data loading."""
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

    def step(batch: TrainingExample) -> None:
        with record_function("forward"):
            with record_function("conditions"):
                posterior = model(batch.inputs)
            with record_function("flow_sample"):
                pose = posterior.mode_and_samples(cfg.model.samples_train)
            with record_function("flow_log_prob"):
                gt = batch.targets.gt_pose6d
                log_prob = posterior.log_prob(gt + cfg.losses.nll_noise * torch.randn_like(gt))
            with record_function("head"):
                posterior.shape_camera()
            with record_function("project"):
                out = posterior.project(pose)
        with record_function("losses"):
            loss = total(loss_terms(out, log_prob, batch.targets, cfg), cfg)
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
    averages = prof.key_averages()
    parts = {e.key: e.cpu_time_total / 1e6 / args.steps for e in averages if e.key in PARTS}
    return {"table": averages.table(sort_by="cpu_time_total", row_limit=30),
            "part_cpu_s": parts, "step_s": wall, "steps_per_s": 1 / wall, "machine": machine()}


def main(argv: Sequence[str] | None = None) -> int:
    result = run(argv)
    print(result["table"])
    wall = result["step_s"]
    print(f"model step without data: {wall:.3f} s ({1 / wall:.2f} steps/s), {result['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
