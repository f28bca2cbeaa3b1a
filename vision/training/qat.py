"""Quantization-aware fine-tuning for Keras 3, without tensorflow-model-optimization.

tfmot needs Keras 2 and switches the whole process to it when imported; Keras 3 has no QAT
API. This module simulates what a full-integer TFLite model computes, on the model's own
layers, and fine-tunes the float weights briefly so the int8 conversion that follows
(``vision.export.int8``) keeps the float model's answers:

- activations are rounded to 8 bits (``tf.quantization.fake_quant_with_min_max_args``) at
  every tensor TFLite stores in int8: after each fused conv + batch norm + ReLU, after
  additions, pooling and the logits, on the range TFLite gives each (calibrated min and max,
  or what a post-training conversion of the same model stored where it chose otherwise);
- each kernel is rounded to TFLite's grid (``vision.training.weight_rounding``): symmetric int8,
  one scale per output channel. Batch norm runs on its moving statistics, so folding it into
  the kernel (which the converter does) scales each output channel by a constant and the
  grid is the same; the rounding is applied with the straight-through estimator (the
  gradient at the rounded weights updates the float ones).

The loss is distillation from the float model itself (its probabilities are the targets of
the simulated int8 model's logits), so no labels are needed and the result stays as close as
possible to the model being quantized: top-1 agreement with it is what the export checks.
It starts from the bias-corrected weights that post-training quantization converts, and
returns the best weights it measured, so it never does worse on its images than PTQ. Where
int8 costs accuracy it wins it back: ``bench/bench_qat.py`` (a digits CNN with one outlier
channel: PTQ 87.8 %, QAT 92.3 %, float 95.1 %), asserted in ``tests/test_export_int8.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vision.models.heads import LOGITS_LAYER
from vision.runtime.int8 import convert
from vision.runtime.tflite import make_interpreter
from vision.training.seeding import seed_weights
from vision.training.weight_rounding import bias_corrected, consumers, int8_kernel, kernel_axes

#: Layers TFLite fuses into the op before them: their input is never stored in int8.
_FUSED = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation)
#: Layers that vanish at inference: their output is their input's tensor.
_IDENTITY = (keras.layers.Dropout, keras.layers.InputLayer)
#: TFLite's int8 softmax always outputs scale 1/256, zero point -128: the range [0, 255/256].
_SOFTMAX_RANGE = (0.0, 255 / 256)


@dataclass
class QATResult:
    """A fine-tuned float copy of the model, ready for ``vision.export.int8``."""

    model: Any
    #: KL divergence of the simulated int8 model from the float model's probabilities on the
    #: images, before any step and after each epoch (the weights returned are the best's).
    losses: list[float]
    steps: int
    seconds: float


class FakeQuant(keras.layers.Layer):
    """Rounds a tensor to the 8-bit grid spanning ``[minimum, maximum]`` (zero exact, as in TFLite).

    Exists only inside ``quantization_aware_model``; never saved into a bundle.
    """

    def __init__(self, minimum: float, maximum: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # TFLite widens every range to hold 0 (so zero padding is exact); so does fake_quant,
        # but only when asked with a range that holds it.
        self.minimum, self.maximum = min(float(minimum), 0.0), max(float(maximum), 0.0)

    def call(self, x: Any) -> Any:
        return tf.quantization.fake_quant_with_min_max_args(x, min=self.minimum, max=self.maximum, num_bits=8)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "minimum": self.minimum, "maximum": self.maximum}


def quantized_tensors(model: Any) -> list[str]:
    """Names of the layers whose output TFLite keeps as an int8 tensor in a full-integer
    conversion of ``model`` (a flat functional model): every layer but those fused into the
    one before them (batch norm, activations), those gone at inference (dropout), and those
    whose only consumer fuses them."""
    after_each = consumers(model)
    names = []
    for layer in model.layers:
        if isinstance(layer, _IDENTITY):
            continue
        after = after_each[layer.name]
        fused_away = len(after) == 1 and isinstance(after[0], _FUSED) and not _is_softmax(after[0])
        if not fused_away:
            names.append(layer.name)
    return names


def activation_ranges(model: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, tuple[float, float]]:
    """(min, max) of each ``quantized_tensors`` output over ``images`` (model input): the
    range TFLite's calibration gives it. A softmax gets TFLite's fixed range."""
    names = quantized_tensors(model)
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    low = {name: np.inf for name in names}
    high = {name: -np.inf for name in names}
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start:start + batch_size], training=False)
        for name, output in zip(names, outputs):
            output = np.asarray(output)
            low[name], high[name] = min(low[name], float(output.min())), max(high[name], float(output.max()))
    return {name: _SOFTMAX_RANGE if _is_softmax(model.get_layer(name)) else (low[name], high[name])
            for name in names}


def tflite_ranges(flatbuffer: bytes, names: list[str]) -> dict[str, tuple[float, float]]:
    """The (min, max) each layer in ``names`` was given in a full-integer ``flatbuffer`` of the
    model: the converter's own choice, found by the layer's name inside the tensor's.

    Calibrated min and max are not all it uses: a tensor that only feeds an addition, for
    one, can be stored with the sum's range (seen in the shapes model's flatbuffer: a branch
    ending at 9.8 kept up to 16.2). Simulating with the flatbuffer's ranges puts every
    tensor on the grid TFLite will use.
    """
    found = {}
    for tensor in make_interpreter(flatbuffer).get_tensor_details():
        scale, zero_point = tensor["quantization"]
        if np.dtype(tensor["dtype"]) != np.int8 or not scale:
            continue
        final = tensor["name"].split(";")[0]  # a fused tensor lists its ops, the last one first
        for name in names:
            if f"/{name}_1/" in final or final.startswith(f"{name}_1/"):
                found.setdefault(name, ((-128 - zero_point) * scale, (127 - zero_point) * scale))
    return found


def quantization_aware_model(model: Any, ranges: dict[str, tuple[float, float]]) -> Any:
    """``model`` with a ``FakeQuant`` after each layer named in ``ranges``. The layers are
    ``model``'s own (shared, not copied): training this trains ``model``."""

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        output = layer(*args, **kwargs)
        if layer.name in ranges:
            output = FakeQuant(*ranges[layer.name], name=f"{layer.name}_fake_quant")(output)
        return output

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


def fine_tune(model: Any, images: np.ndarray, epochs: int = 3, batch_size: int = 8,
              learning_rate: float = 2e-5, seed: int = 0,
              progress: Callable[[int, float], None] | None = None) -> QATResult:
    """Quantization-aware fine-tuning of a copy of ``model`` on ``images`` (model input,
    e.g. the calibration images after preprocessing), distilled from ``model`` itself.

    Args:
        model: A flat functional Keras classifier ending in a softmax.
        images: Preprocessed images, (N, H, W, 3) float32; mirrored copies are added.
        epochs: Passes over the images (and their mirrors). A few: on the everyday model,
            more fit the calibration photos and lose agreement on others (measured with a
            constant rate 1e-5: 97.0 % of real photos after 2 epochs, 95.8 % after 4, 94.6 % after 8).
        learning_rate: Adam's peak (warmed up over half an epoch, then cosine-decayed); small,
            because the weights only need to move within a quantization step or so.
        progress: Called after each epoch with (epoch, its measured loss).

    Returns:
        A ``QATResult`` whose ``model`` is a float model of ``model``'s architecture (no
        fake-quant layers): convert it with ``vision.export.int8``.
    """
    started = time.perf_counter()
    # Bias-corrected first (what post-training quantization does here): a better start. Its dropout is
    # seeded locally, never through the process's generators.
    student = seed_weights(bias_corrected(model, images, batch_size), seed, fresh=lambda layer: False)
    simulated = _simulated_logits(student, images, batch_size)
    # Everything trains, batch norm's scale and offset too (the pretrained backbone as well:
    # distillation keeps it where it was). Batch norm runs on its moving statistics
    # (training=False) and they never update, so folding it stays a per-channel constant and
    # rounding the raw kernel per channel is rounding the folded one.
    for layer in student.layers:
        layer.trainable = True
    steps_per_epoch = -(-2 * len(images) // batch_size)
    inputs, targets = _float_answers(model, images, batch_size)
    distiller = _Distiller(student, simulated, _warm_cosine_adam(learning_rate, epochs, steps_per_epoch), targets)
    losses, steps = distiller.train(inputs, targets, epochs, batch_size, seed, progress)
    for layer, original in zip(student.layers, model.layers):
        layer.trainable = original.trainable
    return QATResult(student, losses, steps, time.perf_counter() - started)


def _simulated_logits(student: Any, images: np.ndarray, batch_size: int) -> Any:
    """``student``'s logits with every tensor TFLite stores in int8 rounded to its grid, on the
    ranges TFLite gives them (``quantization_aware_model``); the layers are ``student``'s own."""
    # Distilled on the logits: TFLite's int8 softmax rounds the small probabilities of a
    # 1000-class output to 0, which a loss on probabilities turns into huge, useless gradients.
    logits = keras.Model(student.input, student.get_layer(LOGITS_LAYER).output)
    ranges = activation_ranges(logits, images, batch_size)
    # Where TFLite stores a tensor on another range than its calibrated min and max, its own.
    ranges.update(tflite_ranges(convert(logits, images), list(ranges)))
    return quantization_aware_model(logits, ranges)


def _warm_cosine_adam(learning_rate: float, epochs: int, steps_per_epoch: int) -> Any:
    """Adam whose rate warms up over half an epoch to ``learning_rate``, then decays to 0.

    Adam, because batch norm folded into a kernel scales its gradient by up to ~50 (Lite0's tiny
    variances), so plain SGD diverges at any rate that moves the other kernels (measured). Adam
    steps each weight by about the rate whatever its gradient, so the rate warms up (its first
    steps are sign-like) and decays to 0 (steps near the optimum are noise)."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, epochs * steps_per_epoch - steps_per_epoch // 2), warmup_target=learning_rate,
        warmup_steps=steps_per_epoch // 2)
    return keras.optimizers.Adam(schedule)


def _float_answers(model: Any, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The images and their mirrors, and the float model's probabilities on them: what the
    simulated int8 model learns to give."""
    inputs = np.concatenate([images, images[:, :, ::-1]]).astype(np.float32)
    targets = np.concatenate([np.asarray(model.predict(part, batch_size=batch_size, verbose=0))
                              for part in (images, images[:, :, ::-1])])
    return inputs, targets


class _Distiller:
    """Distillation of the float model's probabilities into ``simulated`` (the student's logits
    under int8 rounding), with the student's kernels on TFLite's int8 weight grid in every
    forward pass and the straight-through estimator for their gradients."""

    def __init__(self, student: Any, simulated: Any, optimizer: Any, targets: np.ndarray) -> None:
        self.simulated, self.optimizer = simulated, optimizer
        self.quantized = [(layer.kernel, axes) for layer in student.layers if (axes := kernel_axes(layer))]
        self.variables = student.trainable_variables
        optimizer.build(self.variables)
        self.cross_entropy = keras.losses.CategoricalCrossentropy(from_logits=True)
        # Minus the targets' own entropy: the loss is the KL divergence, 0 for a perfect copy.
        self.floor = float(np.mean(-np.sum(targets * np.log(np.clip(targets, 1e-12, 1)), axis=1)))
        self.step = tf.function(self._step, reduce_retracing=True)
        self._loss_of = tf.function(self._loss, reduce_retracing=True)

    def _loss(self, x: Any, target: Any) -> Any:
        return self.cross_entropy(target, self.simulated(x, training=False)) - self.floor

    def _step(self, x: Any, target: Any) -> Any:
        floats = [tf.identity(kernel.value) for kernel, _ in self.quantized]
        for kernel, axes in self.quantized:
            kernel.assign(int8_kernel(kernel.value, axes))
        with tf.GradientTape() as tape:
            loss = self._loss(x, target)
        gradients = tape.gradient(loss, self.variables)
        # Straight-through: the gradient taken at the rounded weights moves the float ones.
        for (kernel, _), value in zip(self.quantized, floats):
            kernel.assign(value)
        self.optimizer.apply(gradients, self.variables)
        return loss

    def measured(self, inputs: np.ndarray, targets: np.ndarray, batch_size: int) -> float:
        """The mean loss over ``inputs`` with the kernels rounded to the int8 grid, as the
        converted model will have them; the float kernels are put back after."""
        floats = [np.asarray(kernel.value) for kernel, _ in self.quantized]
        for kernel, axes in self.quantized:
            kernel.assign(int8_kernel(kernel.value, axes))
        try:
            return float(np.mean([float(self._loss_of(inputs[i:i + batch_size], targets[i:i + batch_size]))
                                  for i in range(0, len(inputs), batch_size)]))
        finally:
            for (kernel, _), value in zip(self.quantized, floats):
                kernel.assign(value)

    def train(self, inputs: np.ndarray, targets: np.ndarray, epochs: int, batch_size: int, seed: int,
              progress: Callable[[int, float], None] | None) -> tuple[list[float], int]:
        """``epochs`` shuffled passes; the measured loss before any step and after each epoch,
        and the steps taken. The variables end at the best measured weights."""
        rng = np.random.default_rng(seed)
        losses = [self.measured(inputs, targets, batch_size)]
        # The best weights seen are kept, the start included: where int8 barely moves a model,
        # every step is noise, and fine-tuning must never return something worse than it got.
        best = [v.numpy() for v in self.variables]
        steps = 0
        for epoch in range(epochs):
            order = rng.permutation(len(inputs))
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                self.step(inputs[batch], targets[batch])
                steps += 1
            losses.append(self.measured(inputs, targets, batch_size))
            if losses[-1] < min(losses[:-1]):
                best = [v.numpy() for v in self.variables]
            if progress:
                progress(epoch, losses[-1])
        for variable, value in zip(self.variables, best):
            variable.assign(value)
        return [float(v) for v in losses], steps


def _is_softmax(layer: Any) -> bool:
    return isinstance(layer, keras.layers.Activation) and getattr(layer.activation, "__name__", "") == "softmax"
