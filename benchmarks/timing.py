"""Timing of the benchmarks: the best of several runs, one intra-op thread, seeded inputs."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from scipy.spatial.transform import Rotation


def timed(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> tuple[float, object]:
    """(best wall time in s over `repeats` runs, the last run's result); one untimed run first
    when `warm_up`."""
    if warm_up:
        fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


@contextmanager
def one_thread() -> Iterator[None]:
    """torch at one intra-op thread inside the block, its previous count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_body_pose(batch: int, joints: int = 22,
                     betas: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded uniform rotations (batch, joints, 3, 3) and normal betas (batch, betas), float32."""
    rot = torch.tensor(Rotation.random(batch * joints, random_state=0).as_matrix(),
                       dtype=torch.float32).reshape(batch, joints, 3, 3)
    return rot, torch.randn(batch, betas, generator=torch.Generator().manual_seed(0))


def speedup_figure(full: Callable[[], torch.Tensor], fast: Callable[[], torch.Tensor],
                   repeats: int, min_speedup: float, tolerance_m: float = 1e-5) -> dict:
    """A fast path against smplx's full forward: best times, speed-up and max deviation, met
    when it is at least `min_speedup` times faster within `tolerance_m`."""
    t_full, expected = timed(full, repeats)
    t_fast, got = timed(fast, repeats)
    deviation = (expected - got).abs().max().item()
    speedup = t_full / t_fast
    return {"value": round(speedup, 1), "unit": "x faster",
            "goal": f">= {min_speedup:g}x, dev <= {tolerance_m:.0e} m".replace("e-0", "e-"),
            "met": bool(speedup >= min_speedup and deviation <= tolerance_m),
            "smplx_full_s": round(t_full, 4), "fast_s": round(t_fast, 5),
            "max_deviation_m": float(f"{deviation:.2e}")}
