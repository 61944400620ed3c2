"""Timing of the benchmarks: the best of several runs."""
from __future__ import annotations

import time
from collections.abc import Callable


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
