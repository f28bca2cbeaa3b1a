"""What training minimises, and how it mixes examples: cross-entropy or focal loss, label
smoothing, MixUp and CutMix, for both training paths.

Keras's own pieces do the work: ``keras.losses.CategoricalFocalCrossentropy`` (Lin et al.'s
focal loss; ``gamma`` 0 is cross-entropy) and ``CategoricalCrossentropy`` with their
``label_smoothing``, and ``keras.layers.MixUp`` / ``keras.layers.CutMix`` on image batches.
Mixing needs soft labels, so every path trains on one-hot labels.

The fast path trains a head on cached pooled features, where pasting a patch (CutMix) has no
meaning; there MixUp mixes the feature vectors and their labels with the same Beta(alpha, alpha)
weight (the "manifold mixup" variant applied at the head's input, Verma et al. 2019).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vision.errors import TrainingConfigError
from vision.training.config import LOSSES, MIXING, TrainConfig

#: Beta(alpha, alpha) of MixUp: Keras's default, and Zhang et al.'s choice on ImageNet.
MIXUP_ALPHA = 0.2


def check(config: TrainConfig, features: bool = False) -> None:
    """Raise ``TrainingConfigError`` naming the choices when ``config`` asks for an unknown loss or mixing,
    or for one the path cannot do (``features``: the fast path)."""
    if config.loss not in LOSSES:
        raise TrainingConfigError(f"unknown loss {config.loss!r}; choose one of: {', '.join(LOSSES)}")
    if config.mixing not in MIXING:
        raise TrainingConfigError(f"unknown mixing {config.mixing!r}; choose one of: {', '.join(MIXING)}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise TrainingConfigError(f"label smoothing is between 0 and 1; got {config.label_smoothing}")
    if features and config.mixing == "cutmix":
        raise TrainingConfigError("CutMix pastes image patches; the fast path trains on pooled features: use mixup, "
                         "or a model trained end to end")


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    """The loss ``config`` names, on one-hot (or mixed) labels and probabilities."""
    if config.loss == "focal":
        # Keras's default alpha (0.25, Lin et al.'s): over one-hot classes it scales every term
        # alike, which Adam's steps do not see; class weights do the per-class weighting.
        return keras.losses.CategoricalFocalCrossentropy(gamma=config.focal_gamma,
                                                         label_smoothing=config.label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)


def metrics() -> list[Any]:
    """Accuracy on one-hot labels, under the name the history and the plots use."""
    return [keras.metrics.CategoricalAccuracy(name="accuracy")]


def one_hot_batches(dataset: Any, classes: int) -> Any:
    """A ``tf.data`` dataset of (inputs, integer labels) as (inputs, one-hot labels)."""
    return dataset.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), classes)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def mixed_batches(dataset: Any, mixing: str, seed: int = 0) -> Any:
    """Batches of (images, one-hot labels) mixed in pairs by ``keras.layers.MixUp`` or ``CutMix``."""
    if mixing == "none":
        return dataset
    layer = (keras.layers.MixUp(alpha=MIXUP_ALPHA, seed=seed) if mixing == "mixup"
             else keras.layers.CutMix(seed=seed))

    def mix(images: Any, labels: Any) -> tuple[Any, Any]:
        mixed = layer({"images": images, "labels": labels}, training=True)
        return mixed["images"], mixed["labels"]

    return dataset.map(mix, num_parallel_calls=tf.data.AUTOTUNE)


def feature_batches(x: np.ndarray, y: np.ndarray, classes: int, batch_size: int, mixing: str,
                    seed: int = 0, sample_weights: np.ndarray | None = None) -> Any:
    """A shuffled ``tf.data`` dataset of cached-feature batches with one-hot labels, mixed with
    MixUp at the head's input when ``mixing`` is "mixup"."""
    labels = tf.one_hot(y.astype(np.int32), classes)
    parts = (x.astype(np.float32), labels) if sample_weights is None else (x.astype(np.float32), labels,
                                                                            sample_weights.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(parts).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if mixing == "mixup":
        def mix(features: Any, one_hot: Any, *weights: Any) -> tuple[Any, ...]:
            # One weight per pair from Beta(a, a), as the ratio of two Gamma(a) draws.
            size = tf.shape(features)[0]
            first = tf.random.gamma([size, 1], MIXUP_ALPHA, seed=seed)
            second = tf.random.gamma([size, 1], MIXUP_ALPHA, seed=seed + 1)
            weight = first / (first + second)
            order = tf.random.shuffle(tf.range(size), seed=seed + 2)
            mixed = (weight * features + (1 - weight) * tf.gather(features, order),
                     weight * one_hot + (1 - weight) * tf.gather(one_hot, order))
            return (*mixed, *weights)

        dataset = dataset.map(mix)
    return dataset.prefetch(tf.data.AUTOTUNE)


def class_weight_of(labels: np.ndarray, weights: dict[int, float] | None) -> np.ndarray | None:
    """Per-example weights from per-class ``weights`` (None: none). Mixed labels have no single
    class, so examples carry their own class's weight into the mix."""
    if not weights:
        return None
    return np.array([weights[int(label)] for label in labels], np.float32)
