"""Run calls at the same time, each in its own thread, as concurrent callers would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_together(*calls: Callable[[], T]) -> list[T]:
    """Start every call in its own thread, wait for all of them, and return their results in
    order. The first exception a call raised is raised here, once every thread has ended (a
    thread's exception would otherwise be printed and lost)."""
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
