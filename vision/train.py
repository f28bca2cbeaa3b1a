"""Training: AdamW, a cosine or plateau schedule, early stopping with best-weights restore,
optional class weights, mixed precision and multi-GPU when GPUs exist, a progress hook
and cancellation."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import keras
import numpy as np

from vision.data import LabelledDataset, make_pipeline, summarize
from vision.errors import TrainingCancelledError
from vision.images import Preprocessing
from vision.models import get_spec

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved into the bundle."""

    model: str = "resnet_small"
    input_size: int | None = None  # the architecture's default when None
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # or "plateau"
    patience: int = 6  # epochs without val_loss improvement before stopping
    augment: bool = True
    class_weights: bool = False
    seed: int = 0
    weights: str | None = "imagenet"  # transfer models only; None trains from scratch
    fine_tune_layers: int = 0  # transfer models: unfreeze the top N base layers
    mixed_precision: str = "auto"  # "auto" (on with a GPU), "on", "off"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainProgress:
    """What a progress hook receives after every batch and every epoch."""

    epoch: int  # 0-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    logs: dict[str, float]
    history: dict[str, list[float]]
    epoch_end: bool = False
    #: "features" while images go through a frozen backbone (batch/batches count images),
    #: then "train".
    stage: str = "train"

    @property
    def fraction(self) -> float:
        if self.stage == "features":
            return min(1.0, self.batch / max(self.batches, 1))
        return min(1.0, (self.epoch + self.batch / max(self.batches, 1)) / max(self.epochs, 1))


@dataclass
class TrainResult:
    model: Any
    preprocessing: Preprocessing
    config: TrainConfig
    history: dict[str, list[float]]
    best_epoch: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    #: Pooled features of the training images (one view) and of the validation images,
    #: when training computed them and the model still maps images to them.
    features: tuple[np.ndarray, np.ndarray] | None = None


ProgressHook = Callable[[TrainProgress], None]


def train(dataset: LabelledDataset, config: TrainConfig, progress: ProgressHook | None = None,
          cancel: threading.Event | None = None) -> TrainResult:
    """Train a new ``config.model`` on ``dataset`` and return it with its history.

    The weights of the epoch with the lowest validation loss are restored at the end. An
    architecture with ``cached_features`` and ImageNet weights trains its head on cached
    features (``vision.fast``), then, with ``fine_tune_layers``, its top layers end to end.

    Raises:
        TrainingCancelledError: ``cancel`` was set; training stopped after the current batch.
        UnknownModelError, WeightsUnavailableError, CheckpointError: from model creation.
    """
    spec = get_spec(config.model)
    if spec.cached_features and config.weights == "imagenet":
        from vision.fast import train_on_features

        head_only = train_on_features(dataset, config, progress, cancel)
        if not config.fine_tune_layers:
            return head_only
        # Pretrained layers move in small steps: a tenth of the head's learning rate.
        gentle = dataclasses.replace(config, learning_rate=config.learning_rate / 10)
        fine_tuned = _fit(dataset, gentle, progress, cancel, start_from=head_only.model)
        fine_tuned.config = config
        fine_tuned.seconds += head_only.seconds
        return fine_tuned
    return _fit(dataset, config, progress, cancel)


def _fit(dataset: LabelledDataset, config: TrainConfig, progress: ProgressHook | None,
         cancel: threading.Event | None, start_from: Any = None) -> TrainResult:
    """End-to-end training on images; ``start_from`` (same architecture) gives initial weights."""
    import tensorflow as tf

    spec = get_spec(config.model)
    size = config.input_size or spec.default_size
    preprocessing = spec.preprocessing(size)
    keras.utils.set_random_seed(config.seed)
    summary = summarize(dataset)
    for warning in summary.warnings:
        log.warning(warning)

    train_ds = make_pipeline(dataset.train, preprocessing, config.batch_size, training=True,
                             augment=config.augment, seed=config.seed)
    val_ds = make_pipeline(dataset.val, preprocessing, config.batch_size)
    steps = math.ceil(len(dataset.train) / config.batch_size)

    gpus = tf.config.list_physical_devices("GPU")
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    # MirroredStrategy only pays off with several GPUs; the default strategy is a no-op.
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        with strategy.scope():
            kwargs: dict[str, Any] = {}
            if spec.transfer:
                kwargs = {"weights": config.weights, "fine_tune_layers": config.fine_tune_layers}
            model = spec.builder(num_classes=len(dataset.class_names), input_size=size, **kwargs)
            if start_from is not None:
                for layer in start_from.layers:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
            model.compile(
                optimizer=keras.optimizers.AdamW(
                    learning_rate=_learning_rate(config, steps), weight_decay=config.weight_decay),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True)
    hook = ProgressCallback(config.epochs, steps, progress, cancel)
    callbacks: list[Any] = [stopper, hook]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, config.patience // 2)))

    started = time.perf_counter()
    with warnings.catch_warnings():
        # File datasets have unknown length (unreadable files are dropped), so Keras
        # finds each epoch's end by running out of data and warns every epoch.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            shuffle=False,  # the pipeline shuffles, seeded
            callbacks=callbacks,
            class_weight=summary.class_weights if config.class_weights else None,
            verbose=0,
        )
    if hook.cancelled:
        raise TrainingCancelledError("training was cancelled; nothing was saved")
    history = {k: [float(v) for v in vs] for k, vs in model.history.history.items()}
    # Hand back an uncompiled copy: bundles then hold weights only, not the optimizer's
    # moment estimates (which would triple the file).
    trained = keras.Model.from_config(model.get_config())
    trained.set_weights(model.get_weights())
    best_epoch = int(stopper.best_epoch) if stopper.best_weights is not None else len(history["loss"]) - 1
    return TrainResult(trained, preprocessing, config, history, best_epoch,
                       time.perf_counter() - started, summary.to_dict())


def _learning_rate(config: TrainConfig, steps_per_epoch: int) -> Any:
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.02)
    if config.schedule == "plateau":
        return config.learning_rate  # ReduceLROnPlateau changes it from the callback
    raise ValueError(f"unknown schedule {config.schedule!r}; choose 'cosine' or 'plateau'")


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


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}
