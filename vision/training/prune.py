"""Magnitude pruning for Keras 3: zero the smallest weights of each kernel, fine-tune the rest.

tensorflow-model-optimization's pruning wraps layers in Keras 2 classes and switches the whole
process to Keras 2 when imported; Keras 3 has no pruning API. Here a callback holds one 0/1 mask
per kernel, outside the model: every few batches it recomputes each mask so that the layer's
smallest-|w| share is zero (Zhu & Gupta, 2017, "To prune, or not to prune": a per-layer
threshold, the share rising on a cubic schedule), and after every batch it multiplies the
kernels by their masks, since the optimizer's update would otherwise regrow them. The model
itself never changes shape, so the result is a plain model whose kernels hold zeros: it saves,
loads in safe mode and exports like any other, and compresses where the zeros are (Lite0's masks
at 0.75, no fine-tuning: its ``.keras`` file gzips to 5.1 MB, 41 % of the dense file's 12.7 MB).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from vision.errors import TrainingCancelledError, VisionError
from vision.training.callbacks import ProgressCallback
from vision.training.seeding import ShuffledArrays, seed_weights

#: Layers whose kernels get masks. Not DepthwiseConv2D (a subclass of neither): its kernels hold
#: 5.3 % of EfficientNet-Lite0's parameters (182k of 3.42M, against 92.1 % in Conv2D kernels),
#: and each channel's 3x3 filter is that channel's only spatial path. Measured on Lite0 (masks
#: only, cosine of the pooled features to the dense model's, 16 shapes images at 224 px): at 0.25,
#: 0.84 without them and 0.59 with them; at 0.1, 0.99 against 0.95. Too dear for 5 % of the weights.
PRUNABLE = (keras.layers.Conv2D, keras.layers.Dense)
#: Kernels with fewer weights stay dense. It is the stem conv that matters (3x3x3 inputs per
#: filter, 864 weights in Lite0 and simple_cnn): every later layer sees the image through it.
#: Measured on the shapes model of ``tests/test_prune.py`` at 0.75: top-1 agreement with the
#: unpruned model on new images 0.92 with the stem dense, 0.59 with it pruned. Other small
#: kernels (a first 1x1 projection, a few-class ``logits`` layer) save nothing measurable either.
MIN_WEIGHTS = 1024


def prunable_weights(model: Any, min_weights: int = MIN_WEIGHTS) -> list[tuple[str, Any]]:
    """(layer name, kernel variable) of every kernel ``prune`` masks, in layer order.

    Frozen layers count too (pruning fine-tunes everything but batch norm); layers inside
    nested models (a transfer model's base) are included.

    Args:
        model: A Keras model.
        min_weights: Kernels with fewer weights are left dense (see ``MIN_WEIGHTS``).
    """
    return [(layer.name, layer.kernel) for layer in _leaf_layers(model)
            if isinstance(layer, PRUNABLE) and int(np.prod(layer.kernel.shape)) >= min_weights]


def polynomial_sparsity(step: int, begin: int, end: int, target: float, initial: float = 0.0,
                        power: int = 3) -> float:
    """Zhu & Gupta's schedule: the share of zeros at ``step``.

    ``s_t = target + (initial - target) * (1 - (t - begin) / (end - begin)) ** power``, with ``t``
    clamped to ``[begin, end]``: ``initial`` until ``begin``, ``target`` from ``end`` on. The cubic
    removes many weights early, while many redundant ones remain, and few near the end.
    """
    if end <= begin:
        return float(target if step >= begin else initial)
    done = (min(max(step, begin), end) - begin) / (end - begin)
    return float(target + (initial - target) * (1.0 - done) ** power)


class MagnitudePruning(keras.callbacks.Callback):
    """Keeps the smallest-|w| share of each prunable kernel at zero while a model trains.

    Every ``frequency`` train batches from ``begin_step`` to ``end_step`` (and at ``end_step``),
    each kernel's mask is recomputed so that ``polynomial_sparsity`` of its weights are zero (the
    smallest in magnitude, per layer; already-zeroed weights are the smallest, so masks only
    grow). After every train batch the kernels are multiplied by their masks. The masks live
    here, not in the model: nothing needs stripping afterwards.

    Example::

        pruning = MagnitudePruning(0.75, end_step=200)
        model.fit(x, y, epochs=6, callbacks=[pruning])  # kernels now 75 % zeros
    """

    def __init__(self, target: float, end_step: int, begin_step: int = 0, frequency: int = 1,
                 initial: float = 0.0, power: int = 3, min_weights: int = MIN_WEIGHTS) -> None:
        super().__init__()
        _check_sparsity(target)
        self.target, self.begin, self.end = float(target), int(begin_step), int(end_step)
        self.frequency, self.initial, self.power = max(1, int(frequency)), float(initial), int(power)
        self.min_weights = min_weights
        self.step = 0  # train batches seen, over all fits
        self.sparsity = 0.0  # the share the masks hold now
        self.kernels: list[tuple[str, Any]] = []
        self.masks: dict[str, np.ndarray] = {}

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.kernels:
            self.kernels = prunable_weights(self.model, self.min_weights)
            self.masks = {name: np.ones(tuple(kernel.shape), np.float32) for name, kernel in self.kernels}
        if self.step >= self.begin:
            self.update_masks(polynomial_sparsity(self.step, self.begin, self.end, self.target,
                                                  self.initial, self.power))
        self.apply_masks()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        scheduled = (self.step - self.begin) % self.frequency == 0 or self.step == self.end
        if self.begin <= self.step <= self.end and scheduled:
            self.update_masks(polynomial_sparsity(self.step, self.begin, self.end, self.target,
                                                  self.initial, self.power))
        self.apply_masks()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Into the epoch's logs, so the history (and any callback after this one) records it.
        if logs is not None:
            logs["sparsity"] = self.sparsity

    def update_masks(self, sparsity: float) -> None:
        """Recompute every mask so that ``sparsity`` of its kernel's weights are zero."""
        for name, kernel in self.kernels:
            magnitude = np.abs(np.asarray(kernel.numpy(), np.float32)).ravel()
            zeros = int(round(sparsity * magnitude.size))
            mask = np.ones(magnitude.size, np.float32)
            if zeros:
                # Exactly `zeros` weights, whatever the ties: a threshold on |w| would zero every
                # weight equal to it (kernels rounded to int8's grid share each value by hundreds).
                mask[np.argpartition(magnitude, zeros - 1)[:zeros]] = 0.0
            self.masks[name] = mask.reshape(tuple(kernel.shape))
        self.sparsity = float(sparsity)

    def apply_masks(self) -> None:
        """Multiply every kernel by its mask."""
        for name, kernel in self.kernels:
            kernel.assign(kernel.numpy() * self.masks[name])


@dataclass
class PruneResult:
    """A pruned copy of a model and what pruning measured."""

    #: Plain Keras model, ``prune``'s input architecture and layer names, uncompiled: the zeros
    #: are in its kernels, with no extra layers or variables.
    model: Any
    #: Share of zeros over all the prunable kernels together.
    sparsity: float
    #: Share of zeros in each prunable kernel, by layer name.
    layers: dict[str, float]
    #: Per epoch: "loss" (cross-entropy to the targets), "accuracy" (top-1 agreement with the
    #: targets' argmax) and "sparsity" (the schedule's share at the epoch's end).
    history: dict[str, list[float]]
    seconds: float


def prune(model: Any, inputs: np.ndarray, targets: np.ndarray, sparsity: float, epochs: int = 6,
          batch_size: int = 16, learning_rate: float = 1e-4,
          progress: Callable[[int, int, float], None] | None = None,
          cancel: threading.Event | None = None, seed: int = 0,
          min_weights: int = MIN_WEIGHTS) -> PruneResult:
    """Prune a copy of ``model`` to ``sparsity`` while fine-tuning it on ``inputs``.

    The schedule ramps from 0 to ``sparsity`` over the first two thirds of the steps, then holds
    while fine-tuning recovers accuracy. Everything but batch norm trains: its statistics would
    follow a few images' and wreck the features.

    Args:
        model: A Keras classifier whose output is probabilities (every registry model); not changed.
        inputs: Model inputs, already preprocessed: (N, H, W, C) float32.
        targets: (N, classes) probabilities to fit: one-hot labels, or a teacher's answers (the
            unpruned model's own, to keep what it does).
        sparsity: Share of each prunable kernel's weights to zero, in [0, 1).
        epochs: Passes over the images.
        batch_size: Images per step.
        learning_rate: Adam's peak, warmed up over half an epoch then cosine-decayed: small,
            because the model is trained already and should stay near its weights.
        progress: Called after each epoch with (epoch, 0-based; epochs; the sparsity reached).
        cancel: When set, pruning stops after the current batch.
        seed: Seeds shuffling and dropout.
        min_weights: Kernels with fewer weights stay dense (see ``MIN_WEIGHTS``).

    Returns:
        A ``PruneResult`` with the pruned model and its measured sparsity.

    Raises:
        VisionError: ``sparsity`` is outside [0, 1), or the inputs and targets do not fit the model.
        TrainingCancelledError: ``cancel`` was set; nothing is kept.
    """
    _check_sparsity(sparsity)
    inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)
    classes = model.output_shape[-1]
    if inputs.ndim != 4 or targets.shape != (len(inputs), classes) or not len(inputs):
        raise VisionError(f"prune needs inputs (N, H, W, C) and targets (N, {classes}) with N >= 1; "
                          f"got {inputs.shape} and {targets.shape}")
    started = time.perf_counter()
    student = seed_weights(_copy(model), seed, fresh=lambda layer: False)  # its dropout, locally seeded
    # Everything trains but batch norm; the setter of a nested model (a transfer base) reaches
    # its layers, so the leaves are set after.
    for layer in student.layers:
        layer.trainable = True
    for layer in _leaf_layers(student):
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)

    steps_per_epoch = -(-len(inputs) // batch_size)
    total = epochs * steps_per_epoch
    ramp = max(1, round(total * 2 / 3))
    # About 16 mask updates over the ramp: each removes a few percent of the weights, and the
    # rest adapt in between (more updates cost time on big models and change little).
    pruning = MagnitudePruning(sparsity, end_step=ramp, frequency=max(1, ramp // 16), min_weights=min_weights)
    # As in qat: Adam's first steps are sign-like, so the rate warms up, then decays to 0.
    warmup = steps_per_epoch // 2
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=max(1, total - warmup),
                                                      warmup_target=learning_rate, warmup_steps=warmup)
    student.compile(optimizer=keras.optimizers.Adam(schedule), loss=keras.losses.CategoricalCrossentropy(),
                    metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    hook = ProgressCallback(epochs, steps_per_epoch, None, cancel)
    callbacks: list[Any] = [pruning, hook]  # pruning first: it adds "sparsity" to the logs hook records
    if progress:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress(epoch, epochs, pruning.sparsity)))
    student.fit(ShuffledArrays(inputs, targets, batch_size, seed), epochs=epochs, callbacks=callbacks, verbose=0)
    if hook.cancelled:
        raise TrainingCancelledError("pruning was cancelled; nothing was kept")

    # An uncompiled copy (no optimizer state in the saved file), with the caller's frozen layers.
    pruned = _copy(model)
    pruned.set_weights(student.get_weights())
    overall, layers = measured_sparsity(pruned, min_weights)
    return PruneResult(pruned, overall, layers, {k: list(v) for k, v in hook.history.items()},
                       time.perf_counter() - started)


def measured_sparsity(model: Any, min_weights: int = MIN_WEIGHTS) -> tuple[float, dict[str, float]]:
    """(share of zeros over all prunable kernels together, share in each by layer name)."""
    counts = {name: (int(np.count_nonzero(kernel.numpy() == 0)), int(np.prod(kernel.shape)))
              for name, kernel in prunable_weights(model, min_weights)}
    total = sum(size for _, size in counts.values())
    overall = sum(zeros for zeros, _ in counts.values()) / total if total else 0.0
    return overall, {name: zeros / size for name, (zeros, size) in counts.items()}


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise VisionError(f"sparsity is the share of weights to zero and must be in [0, 1), e.g. 0.75; "
                          f"got {sparsity}")


def _copy(model: Any) -> Any:
    """A fresh, uncompiled model of ``model``'s architecture (same layer names) and weights."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _leaf_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
