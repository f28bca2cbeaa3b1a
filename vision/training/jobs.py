"""A training run in a background thread, observed as a stream of updates.

The app's event handler polls ``TrainingJob.updates()`` and turns each update into a
progress bar, live curves and, at the end, results; the CLI calls ``train_bundle``
directly. Cancelling sets an event the training loop checks after every batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vision.data.datasets import LabelledDataset
from vision.training.config import TrainConfig, TrainProgress
from vision.training.recipe import TrainedBundle, train_bundle


@dataclass
class JobFinished:
    trained: TrainedBundle


@dataclass
class JobFailed:
    error: BaseException


Update = TrainProgress | JobFinished | JobFailed


class TrainingJob:
    """Train and save one bundle without blocking the caller."""

    def __init__(self, dataset: LabelledDataset, config: TrainConfig, out: str | Path,
                 name: str | None = None, overwrite: bool = False) -> None:
        self.cancel_event = threading.Event()
        self._updates: queue.Queue[Update] = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, args=(dataset, config, Path(out), name, overwrite),
            name="training-job", daemon=True)

    def start(self) -> "TrainingJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

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

    def _run(self, dataset: LabelledDataset, config: TrainConfig, out: Path, name: str | None,
             overwrite: bool) -> None:
        try:
            trained = train_bundle(dataset, config, out, name=name, overwrite=overwrite,
                                   progress=self._updates.put, cancel=self.cancel_event)
        except BaseException as error:  # handed to the observer, which decides what to show
            self._updates.put(JobFailed(error))
        else:
            self._updates.put(JobFinished(trained))
