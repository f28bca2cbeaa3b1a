"""Run calls at the same time, each in its own thread, as concurrent callers would."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run_together(*calls: Callable[[], T]) -> list[T]:
    """Start every call in its own thread, wait for all of them, and return their results in
    order. An exception a call raised is raised here, once every thread has ended (the first in
    the calls' order)."""
    # One worker per call, so all of them run at once; the pool's exit waits for every one.
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]
