"""A training run in a background thread, observed as a stream of updates.

The app's event handler polls ``TrainingJob.updates()`` and turns each update into a
progress bar, live curves and, at the end, results; the CLI calls ``train_bundle``
directly. Cancelling sets an event the training loop checks after every batch.

A job outlives whoever watches it: a visitor who drops the event stream stops watching,
but the thread runs until the loop sees the cancel. So the job itself holds the app-wide
training ``slot`` for exactly as long as its thread runs, and reports success through
``on_success`` from that thread, never through the observer, which may be gone. Whatever a
training starts after ``fit`` (calibration folds, the label audit, Grad-CAM galleries, saving)
belongs in its ``work``, so the slot is held until all of it has ended.

A job may have a time limit: once its work has run that long, the job cancels itself (every
stage checks the cancel event) and its observer is told why; an observer still waiting
``GRACE_S`` after that stops waiting and says so, whatever the thread does.
"""

from __future__ import annotations

import queue
import threading
import time
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

#: How long an observer keeps waiting once a job is over its time limit (its work stops at the
#: next cancel check: a batch, a fold, a stage).
GRACE_S = 60.0


class TrainingJob:
    """Train and save one bundle (``TrainingJob.training``), or compress one, without blocking
    the caller.

    ``slot`` (a lock shared by every job of an app) makes trainings run one at a time: a job
    waits for it before it starts and gives it back only when its thread ends.
    ``on_success`` runs in the job's thread once the bundle is saved.
    ``time_limit_s`` bounds the work (not the wait for the slot): past it the job cancels itself.
    """

    def __init__(self, work: Callable[[ProgressHook, threading.Event], Any], slot: threading.Lock | None = None,
                 on_success: Callable[[Any], None] | None = None, time_limit_s: float | None = None) -> None:
        """``work(progress, cancel)`` does the job (training, compressing) and returns its result."""
        self.cancel_event = threading.Event()
        self.time_limit_s = time_limit_s
        #: Set when the time limit cancelled the work (not the visitor).
        self.timed_out = False
        self._started: float | None = None  # when the work began (the slot was taken)
        self._updates: queue.Queue[Update] = queue.Queue()
        self._slot = slot
        self._on_success = on_success
        self._work = work
        self._thread = threading.Thread(target=self._run, name="training-job", daemon=True)

    @classmethod
    def training(cls, dataset: LabelledDataset, config: TrainConfig, out: str | Path, name: str | None = None,
                 overwrite: bool = False, slot: threading.Lock | None = None,
                 on_success: Callable[[TrainedBundle], None] | None = None,
                 time_limit_s: float | None = None) -> "TrainingJob":
        """A job that trains ``config`` on ``dataset`` and saves the bundle at ``out`` (``train_bundle``)."""
        return cls(lambda progress, cancel: train_bundle(dataset, config, Path(out), name=name, overwrite=overwrite,
                                                         progress=progress, cancel=cancel),
                   slot=slot, on_success=on_success, time_limit_s=time_limit_s)

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
        """Progress updates until a final ``JobFinished`` or ``JobFailed`` (also when the work
        is ``GRACE_S`` past its time limit and still running)."""
        while True:
            try:
                update = self._updates.get(timeout=poll_seconds)
            except queue.Empty:
                if not self._thread.is_alive() and self._updates.empty():
                    yield JobFailed(RuntimeError("training stopped without a result"))
                    return
                if self._overdue():
                    yield JobFailed(TrainingCancelledError(
                        f"the training went over its time limit of {_duration(self.time_limit_s)} and has not "
                        "stopped yet; nothing of it will be kept"))
                    return
                continue
            yield update
            if isinstance(update, (JobFinished, JobFailed)):
                return

    def _overdue(self) -> bool:
        started, limit = self._started, self.time_limit_s
        return started is not None and limit is not None and time.monotonic() > started + limit + GRACE_S

    def _expire(self) -> None:
        self.timed_out = True
        self.cancel_event.set()

    def _run(self) -> None:
        with self._slot if self._slot is not None else nullcontext():
            timer = None
            self._started = time.monotonic()
            if self.time_limit_s is not None:
                timer = threading.Timer(self.time_limit_s, self._expire)
                timer.daemon = True
                timer.start()
            try:
                if self.cancel_event.is_set():  # cancelled while it waited for the slot
                    raise TrainingCancelledError("training was cancelled before it started; nothing was saved")
                result = self._work(self._updates.put, self.cancel_event)
                if self._on_success is not None:
                    self._on_success(result)
            except BaseException as error:  # handed to the observer, which decides what to show
                if isinstance(error, TrainingCancelledError) and self.timed_out:
                    error = TrainingCancelledError(f"the training went over its time limit of "
                                                   f"{_duration(self.time_limit_s)} and was stopped; nothing was saved")
                self._updates.put(JobFailed(error))
            else:
                self._updates.put(JobFinished(result))
            finally:
                if timer is not None:
                    timer.cancel()


def _duration(seconds: float | None) -> str:
    """``90`` → "90 s", ``1800`` → "30 minutes"."""
    seconds = float(seconds or 0)
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} s"
