"""Timing helpers shared by the benchmarks, and the aligned rows their reports print.

Every ratio a benchmark prints (A against B) comes from ``alternating_ms``: the sides take
turns in blocks within one run (A, B, A, B, ...), so a slower or busier stretch of the
machine falls on both, and each block keeps its own interpreters' thread pools warm
(call-by-call alternation would measure their wake-ups instead). With three sides or more
the order rotates every block (A, B, C, then B, C, A, ...), so no side always runs right
after the same other one (a TensorFlow side leaves its thread pool busy for a moment,
which slows whatever comes next). As in ``timeit``, the
garbage collector is off while calls are timed (and run between blocks), so one side's
garbage is not collected on the other side's clock.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

#: Blocks per side in ``alternating_ms``.
BLOCKS = 5


def machine() -> str:
    """The CPU cores and how busy they are now: other processes' load moves every figure."""
    return f"{os.cpu_count()} CPU cores, 1-minute load average {os.getloadavg()[0]:.1f} now"


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def concurrent_seconds(calls: Iterable[Callable[[], object]]) -> float:
    """Wall-clock seconds from starting each call in a thread of its own until the last one
    ends: a load test's clients, all at once. Each call counts its own errors."""
    threads = [threading.Thread(target=call) for call in calls]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def call_ms(fn: Callable[[], object]) -> float:
    """Milliseconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def alternating_ms(sides: Mapping[str, Callable[[], object]], repeats: int | Mapping[str, int],
                   blocks: int = BLOCKS, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per call of each side, the sides taking turns in ``blocks`` blocks.

    Args:
        sides: name -> call; block k times them in this order, rotated by k places when
            there are three or more (two simply alternate).
        repeats: timed calls per side in all (split evenly over the blocks, rounded up);
            one number for every side, or one per side (a slow side may get fewer).
        warmup: calls at the start of every block that are made but not timed.

    Returns:
        name -> the median over all of that side's timed calls, in every block.
    """
    counts = {name: repeats[name] if isinstance(repeats, Mapping) else repeats for name in sides}
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for block in range(blocks):
        turn = block % len(names) if len(names) > 2 else 0
        for name in names[turn:] + names[:turn]:
            fn = sides[name]
            for _ in range(warmup):
                fn()
            with _no_gc():
                times[name] += [call_ms(fn) for _ in range(timed_calls(counts[name], blocks) // blocks)]
    return {name: statistics.median(values) for name, values in times.items()}


def timed_calls(repeats: int, blocks: int = BLOCKS) -> int:
    """How many calls ``alternating_ms`` times for a side asked for ``repeats``."""
    return blocks * math.ceil(repeats / blocks)


def print_rows(rows: Sequence[tuple[str, str]], indent: int = 2) -> None:
    """Print ``(label, figures)`` rows with the figures in one column, after the longest label."""
    width = max(len(label) for label, _ in rows)
    for label, figures in rows:
        print(f"{' ' * indent}{label:<{width}}  {figures}")
