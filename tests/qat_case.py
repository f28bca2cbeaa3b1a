"""A model that post-training int8 hurts and quantization-aware training repairs, small enough
for a unit test: a CNN without batch norm on scikit-learn's 8x8 digits, with one channel of its
first convolution 300 times wider than the rest.

Such an outlier channel is what wide activation ranges look like: TFLite stores each activation
tensor on one int8 grid (per tensor), so the wide channel sets the step and the other channels
keep a few levels. It is made here by a function-preserving rescaling (the channel's kernel
and bias times 300, the next convolution's weights for it divided by 300: ReLU commutes with
a positive scale), so the float model answers exactly as before. Shared by
``tests/test_export_int8.py`` and ``bench/bench_qat.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: How much wider the outlier channel is than the rest.
OUTLIER = 300.0
#: Digits for training (and calibration), the rest held out.
TRAIN = 1200


def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits as (N, 8, 8, 1) float32 in [0, 1]: (train, held out), shuffled by seed 0."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:TRAIN], order[TRAIN:]
    return (x[train], data.target[train]), (x[test], data.target[test])


def outlier_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 30, outlier: float = OUTLIER) -> Any:
    """A small CNN trained on (x, y), ending in ``logits`` and a softmax, with the outlier channel
    (the first convolution's channel the second one leans on most) scaled by ``outlier``."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(inputs)
    h = keras.layers.Conv2D(32, 3, activation="relu", strides=2, padding="same", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    logits = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    (k1, b1), (k2, b2) = model.get_layer("conv1").get_weights(), model.get_layer("conv2").get_weights()
    channel = int(np.argmax(np.abs(k2).sum((0, 1, 3))))
    k1[..., channel] *= outlier
    b1[channel] *= outlier
    k2[:, :, channel, :] /= outlier
    model.get_layer("conv1").set_weights([k1, b1])
    model.get_layer("conv2").set_weights([k2, b2])
    return model


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a Keras model."""
    return float(np.mean(np.asarray(model.predict(x, verbose=0)).argmax(1) == y))


def int8_accuracy(model: Any, calibration: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model``'s full-integer TFLite conversion (calibrated on ``calibration``),
    run on LiteRT."""
    from vision.runtime.int8 import convert, run
    from vision.runtime.tflite import TFLiteRunner

    return float(np.mean(run(TFLiteRunner(convert(model, calibration)), x)[0].argmax(1) == y))
