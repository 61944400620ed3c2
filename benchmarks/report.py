"""The bench report: `bench.json` (named figures) and `bench.md` (a readable table)."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.machine()}


def write_report(out_dir: Path, figures: dict[str, dict]) -> tuple[Path, Path]:
    """Merge `figures` into `out_dir/bench.json` and rewrite `out_dir/bench.md`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bench.json"
    report = json.loads(path.read_text()) if path.exists() else {"figures": {}}
    report["machine"] = machine()
    report["figures"].update(figures)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    lines = ["| figure | value | goal | met | details |", "|---|---|---|---|---|"]
    for name, fig in report["figures"].items():
        details = ", ".join(f"{k}={v}" for k, v in fig.items()
                            if k not in ("value", "unit", "goal", "met"))
        lines.append(f"| {name} | {fig['value']} {fig.get('unit', '')} | {fig.get('goal', '')} "
                     f"| {fig.get('met', '')} | {details} |")
    table = out_dir / "bench.md"
    table.write_text("# Benchmarks\n\n" + "\n".join(lines) + "\n")
    return path, table
