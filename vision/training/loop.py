"""End-to-end training on images: AdamW, a cosine or plateau schedule, early stopping with
best-weights restore, optional class weights, mixed precision and multi-GPU when GPUs exist,
a progress hook and cancellation."""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from typing import Any

import keras
import tensorflow as tf

from vision.data.datasets import LabelledDataset, make_pipeline, summarize
from vision.models.heads import LOGITS_LAYER
from vision.models.registry import get_spec
from vision.training import distributed
from vision.training.callbacks import fit_outcome, training_callbacks
from vision.training.config import ProgressHook, TrainConfig, TrainResult
from vision.training.objectives import check as check_objectives
from vision.training.objectives import make_loss, mixed_batches, one_hot_batches
from vision.training.objectives import metrics as objective_metrics
from vision.training.seeding import seed_weights
from vision.training.tensorboard import tensorboard_callbacks

#: The layers ``classification_head`` adds on a pretrained base (the only ones initialized at random).
_HEAD = ("dropout", LOGITS_LAYER)

log = logging.getLogger(__name__)


def fit_on_images(dataset: LabelledDataset, config: TrainConfig, progress: ProgressHook | None = None,
                  cancel: threading.Event | None = None, start_from: Any = None,
                  continue_from: Any = None) -> TrainResult:
    """Train ``config.model`` end to end on ``dataset``'s images; ``start_from`` (same
    architecture) gives initial weights. The weights of the epoch with the lowest validation
    loss are restored.

    ``continue_from`` (a ``vision.bundle.store.Bundle``) trains that bundle's model further
    instead, whatever its architecture (one imported from Teachable Machine has none in the
    registry), at its own preprocessing: its Dense layers (the head) train, everything below
    stays as it was, as a few photos per class cannot retrain a backbone.

    Raises:
        TrainingCancelledError: ``cancel`` was set; training stopped after the current batch.
        UnknownModelError, WeightsUnavailableError, CheckpointError: from model creation.
    """
    # Several machines (TF_CONFIG): the strategy must exist before the process's first TensorFlow op.
    multi_worker = distributed.strategy() if config.distributed else None
    spec = None if continue_from is not None else get_spec(config.model)
    size = None if spec is None else config.input_size or spec.default_size
    preprocessing = continue_from.preprocessing if spec is None else spec.preprocessing(size)
    summary = summarize(dataset)
    for warning in summary.warnings:
        log.warning(warning)

    check_objectives(config)
    train_ds, val_ds = _batches(dataset, preprocessing, config, sharded=multi_worker is not None)
    steps = math.ceil(len(dataset.train) / config.batch_size)
    strategy, mixed = _placement(config, multi_worker)
    model = _compiled_model(spec, size, len(dataset.class_names), config, steps, strategy, mixed,
                            start_from, continue_from)
    stopper, hook, callbacks = _callbacks(config, steps, progress, cancel)

    started = time.perf_counter()
    _fit(model, train_ds, val_ds, config, callbacks, summary.class_weights if config.class_weights else None,
         strategy)
    history, best_epoch = fit_outcome(model, stopper, hook)
    # Hand back an uncompiled copy: bundles then hold weights only, not the optimizer's
    # moment estimates (which would triple the file).
    trained = _weights_copy(model)
    return TrainResult(trained, preprocessing, config, history, best_epoch,
                       time.perf_counter() - started, summary.to_dict())


def _batches(dataset: LabelledDataset, preprocessing: Any, config: TrainConfig, sharded: bool) -> tuple[Any, Any]:
    """The training pipeline (augmented, mixed) and the validation one, as batches of one-hot
    labels; each machine's share of them when ``sharded``."""
    classes = len(dataset.class_names)
    # One-hot labels throughout: MixUp and CutMix make soft ones, and the losses take both.
    train_ds = mixed_batches(one_hot_batches(make_pipeline(dataset.train, preprocessing, config.batch_size,
                                                           training=True, augment=config.augment,
                                                           seed=config.seed), classes),
                             config.mixing, config.seed)
    val_ds = one_hot_batches(make_pipeline(dataset.val, preprocessing, config.batch_size), classes)
    if sharded:  # each machine keeps its share of every (global) batch
        train_ds, val_ds = distributed.shard_by_data(train_ds), distributed.shard_by_data(val_ds)
    return train_ds, val_ds


def _placement(config: TrainConfig, multi_worker: Any) -> tuple[Any, bool]:
    """The distribution strategy to train under, and whether in mixed precision."""
    gpus = tf.config.list_physical_devices("GPU")
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    # MirroredStrategy only pays off with several GPUs; the default strategy is a no-op.
    if multi_worker is not None:  # mirrors over each machine's GPUs itself
        return multi_worker, mixed
    return (tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()), mixed


def _compiled_model(spec: Any, size: int | None, classes: int, config: TrainConfig, steps: int, strategy: Any,
                    mixed: bool, start_from: Any, continue_from: Any) -> Any:
    """The model to fit, compiled under ``strategy`` at the chosen precision: built from
    ``spec`` (or a head-trainable copy of ``continue_from``'s), seeded, then given
    ``start_from``'s weights where there are some."""
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        with strategy.scope():
            if spec is None:
                model = _head_trainable_copy(continue_from.model)
            else:
                kwargs: dict[str, Any] = {}
                if spec.transfer:
                    kwargs = {"weights": config.weights, "fine_tune_layers": config.fine_tune_layers}
                model = spec.builder(num_classes=classes, input_size=size, **kwargs)
            # Seeded locally (never the process's generators): every weight of a model built from
            # scratch, only the new head of a pretrained one; dropout and augmentation layers too.
            pretrained = spec is None or (spec.transfer and config.weights is not None)
            seed_weights(model, config.seed, fresh=lambda layer: not pretrained or layer.name in _HEAD)
            if start_from is not None:
                for layer in start_from.layers:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
            model.compile(
                optimizer=keras.optimizers.AdamW(
                    learning_rate=_learning_rate(config, steps), weight_decay=config.weight_decay),
                loss=make_loss(config),
                metrics=objective_metrics(),
                jit_compile=config.jit_compile,
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model


def _callbacks(config: TrainConfig, steps: int, progress: ProgressHook | None,
               cancel: threading.Event | None) -> tuple[Any, Any, list[Any]]:
    """The early stopper and the progress hook (also in the list), then every callback the fit
    takes: those two, TensorBoard's where asked, and the plateau schedule's."""
    stopper, hook = training_callbacks(config, steps, progress, cancel)
    callbacks: list[Any] = [stopper, hook, *tensorboard_callbacks(config)]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, config.patience // 2)))
    return stopper, hook, callbacks


def _fit(model: Any, train_ds: Any, val_ds: Any, config: TrainConfig, callbacks: list[Any],
         class_weight: dict[int, float] | None, strategy: Any) -> None:
    with warnings.catch_warnings(), distributed.fit_guard(strategy):
        # File datasets have unknown length (unreadable files are dropped), so Keras
        # finds each epoch's end by running out of data and warns every epoch.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            shuffle=False,  # the pipeline shuffles, seeded
            callbacks=callbacks,
            class_weight=class_weight,
            verbose=0,
        )


def _weights_copy(model: Any) -> Any:
    """A new, uncompiled model from ``model``'s config, holding its weights."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _head_trainable_copy(model: Any) -> Any:
    """A copy of ``model`` (its own weights) in which only the Dense layers train."""
    copy = _weights_copy(model)
    for layer in copy.layers:
        layer.trainable = isinstance(layer, keras.layers.Dense)
    return copy


def _learning_rate(config: TrainConfig, steps_per_epoch: int) -> Any:
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.02)
    if config.schedule == "plateau":
        return config.learning_rate  # ReduceLROnPlateau changes it from the callback
    raise ValueError(f"unknown schedule {config.schedule!r}; choose 'cosine' or 'plateau'")


