"""`python -m benchmarks [--out DIR] [--body-models DIR]`: run every benchmark, write the report.

Without --body-models the synthetic body model (real vertex counts) is generated in a temporary
directory; point it at a real SMPL-X root to measure on the real model.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from synthetic.body_models import write_synthetic_body_models
from core.cli import ArgumentParser, run_cli
from core.errors import MissingFileError

from .data_path import bench_data_path
from .fast_joints import bench_fast_joints
from .fast_vertices import bench_fast_vertices
from .mask_loss import bench_mask_loss_memory
from .postprocess import bench_postprocess
from .report import write_report
from .train_step import bench_synthetic_steps, bench_train_step


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--out", default="data/reports/bench")
    parser.add_argument("--body-models", default=None)
    args = parser.parse_args(argv)
    if args.body_models and not Path(args.body_models).is_dir():
        raise MissingFileError(f"--body-models: no body-model folder at {args.body_models}")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(args.body_models) if args.body_models else write_synthetic_body_models(tmp)
        figures = {"fast_joints_vs_smplx": bench_fast_joints(models),
                   "fast_vertices_vs_smplx": bench_fast_vertices(models),
                   **bench_postprocess(models)}  # postprocess_crops_per_s, sample_bytes_per_crop
        figures["data_path_examples_per_s"] = bench_data_path(models)
        figures["train_step_vs_flow"] = bench_train_step(models)
        figures["synthetic_train_steps_per_s"] = bench_synthetic_steps(models)
        figures["mask_loss_peak_memory"] = bench_mask_loss_memory()
    json_path, table = write_report(Path(args.out), figures)
    print(table.read_text())
    print(f"written: {json_path}, {table}")
    missed = [name for name, f in figures.items() if f.get("met") is False]
    if missed:
        print(f"goals not met: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
