"""Wall-clock timing of a call, the one way every figure here is measured: the median of single
calls after a warm-up. It sits at the bottom of the stage order (no ``vision`` imports), so the
export's parity figures, the training stage's model comparison and the benchmarks share it
without importing each other."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

#: Single calls timed after the warm-up; the median is reported.
RUNS, WARMUP = 20, 3


def median_ms(call: Callable[[], Any], runs: int = RUNS, warmup: int = WARMUP) -> float:
    """Median wall milliseconds of ``call()`` over ``runs`` calls after ``warmup`` untimed ones,
    with the garbage collector off while timing (as ``timeit`` does)."""
    for _ in range(warmup):
        call()
    enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(times) * 1000
