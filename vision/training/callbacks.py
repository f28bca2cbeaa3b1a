"""The Keras callbacks both training paths share: progress, cancellation, early stopping."""

from __future__ import annotations

import threading
from typing import Any

import keras

from vision.errors import TrainingCancelledError
from vision.training.config import ProgressHook, TrainConfig, TrainProgress


class ProgressCallback(keras.callbacks.Callback):
    """Forwards progress to the hook and turns a set ``cancel`` event into a stop."""

    def __init__(self, epochs: int, steps: int, hook: ProgressHook | None,
                 cancel: threading.Event | None) -> None:
        super().__init__()
        self.epochs, self.steps, self.hook, self.cancel = epochs, steps, hook, cancel
        self.epoch = 0
        self.cancelled = False
        self.history: dict[str, list[float]] = {}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            self.model.stop_training = True
        if self.hook:
            self.hook(TrainProgress(self.epoch, self.epochs, batch + 1, self.steps,
                                    _floats(logs), self.history))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in _floats(logs).items():
            self.history.setdefault(key, []).append(value)
        if self.hook:
            self.hook(TrainProgress(epoch, self.epochs, self.steps, self.steps, _floats(logs),
                                    self.history, epoch_end=True))


def stop_if_cancelled(cancel: threading.Event | None) -> None:
    """Between the stages of a run (folds, calibration, audit, saving): stop if cancelled.

    Raises:
        TrainingCancelledError: ``cancel`` is set.
    """
    if cancel is not None and cancel.is_set():
        raise TrainingCancelledError("training was cancelled; nothing was saved")


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}


def training_callbacks(config: TrainConfig, steps: int, progress: ProgressHook | None,
                       cancel: threading.Event | None) -> tuple[keras.callbacks.EarlyStopping, ProgressCallback]:
    """Early stopping on validation loss (best weights restored) and the progress hook."""
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    return stopper, ProgressCallback(config.epochs, steps, progress, cancel)


def fit_outcome(model: Any, stopper: keras.callbacks.EarlyStopping,
                hook: ProgressCallback) -> tuple[dict[str, list[float]], int]:
    """(history, best epoch, 0-based) of a finished ``model.fit``.

    Raises:
        TrainingCancelledError: the run was cancelled; nothing is kept.
    """
    if hook.cancelled:
        raise TrainingCancelledError("training was cancelled; nothing was saved")
    history = {k: [float(v) for v in vs] for k, vs in model.history.history.items()}
    best_epoch = int(stopper.best_epoch) if stopper.best_weights is not None else len(history["loss"]) - 1
    return history, best_epoch
