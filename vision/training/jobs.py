"""A training run in a background thread, observed as a stream of updates.

The app's event handler polls ``TrainingJob.updates()`` and turns each update into a
progress bar, live curves and, at the end, results; the CLI calls ``train_bundle``
directly. Cancelling sets an event the training loop checks after every batch.

A job outlives whoever watches it: a visitor who drops the event stream stops watching,
but the thread runs until the loop sees the cancel. So the job itself holds the app-wide
training ``slot`` for exactly as long as its thread runs, and reports success through
``on_success`` from that thread, never through the observer, which may be gone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vision.data.datasets import LabelledDataset
from vision.errors import TrainingCancelledError
from vision.training.config import ProgressHook, TrainConfig, TrainProgress
from vision.training.recipe import TrainedBundle, train_bundle


@dataclass
class JobFinished:
    trained: Any  # what the job's work returned: a TrainedBundle for a training


@dataclass
class JobFailed:
    error: BaseException


Update = TrainProgress | JobFinished | JobFailed


class TrainingJob:
    """Train and save one bundle (``TrainingJob.training``), or compress one, without blocking
    the caller.

    ``slot`` (a lock shared by every job of an app) makes trainings run one at a time: a job
    waits for it before it starts and gives it back only when its thread ends.
    ``on_success`` runs in the job's thread once the bundle is saved.
    """

    def __init__(self, work: Callable[[ProgressHook, threading.Event], Any], slot: threading.Lock | None = None,
                 on_success: Callable[[Any], None] | None = None) -> None:
        """``work(progress, cancel)`` does the job (training, compressing) and returns its result."""
        self.cancel_event = threading.Event()
        self._updates: queue.Queue[Update] = queue.Queue()
        self._slot = slot
        self._on_success = on_success
        self._work = work
        self._thread = threading.Thread(target=self._run, name="training-job", daemon=True)

    @classmethod
    def training(cls, dataset: LabelledDataset, config: TrainConfig, out: str | Path, name: str | None = None,
                 overwrite: bool = False, slot: threading.Lock | None = None,
                 on_success: Callable[[TrainedBundle], None] | None = None) -> "TrainingJob":
        """A job that trains ``config`` on ``dataset`` and saves the bundle at ``out`` (``train_bundle``)."""
        return cls(lambda progress, cancel: train_bundle(dataset, config, Path(out), name=name, overwrite=overwrite,
                                                         progress=progress, cancel=cancel),
                   slot=slot, on_success=on_success)

    def start(self) -> "TrainingJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        """Whether the thread is still alive (waiting for the slot, training or saving)."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def updates(self, poll_seconds: float = 0.25) -> Iterator[Update]:
        """Progress updates until a final ``JobFinished`` or ``JobFailed``."""
        while True:
            try:
                update = self._updates.get(timeout=poll_seconds)
            except queue.Empty:
                if not self._thread.is_alive() and self._updates.empty():
                    yield JobFailed(RuntimeError("training stopped without a result"))
                    return
                continue
            yield update
            if isinstance(update, (JobFinished, JobFailed)):
                return

    def _run(self) -> None:
        with self._slot if self._slot is not None else nullcontext():
            try:
                if self.cancel_event.is_set():  # cancelled while it waited for the slot
                    raise TrainingCancelledError("training was cancelled before it started; nothing was saved")
                result = self._work(self._updates.put, self.cancel_event)
                if self._on_success is not None:
                    self._on_success(result)
            except BaseException as error:  # handed to the observer, which decides what to show
                self._updates.put(JobFailed(error))
            else:
                self._updates.put(JobFinished(result))
