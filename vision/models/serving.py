"""The model as it is served: probabilities, plus the "unknown" detector's score.

A bundle's Keras model outputs calibrated probabilities (the temperature is folded into
its ``logits`` layer). Where the bundle has a detector, the serving model also outputs the
image's familiarity, computed in the same graph from the pooled features the classifier
already has, so the TFLite interpreter and the TF.js page get both from one call.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from vision.data.images import Preprocessing, preprocess
from vision.models.heads import LOGITS_LAYER


def feature_model(model: Any) -> Any:
    """``model``'s input -> [pooled features, logits]: every architecture here ends in
    pooled features -> (dropout) -> ``logits`` -> softmax."""
    import keras  # lazy: the runtime imports this module for split_outputs only

    logits = model.get_layer(LOGITS_LAYER)
    return keras.Model(model.input, [logits.input, logits.output], name="features_and_logits")


def serving_model(model: Any, detector: Any = None, features: bool = False) -> Any:
    """input -> [probabilities, familiarity (batch, 1) where there is a detector, pooled
    features where asked for (the web page trains new heads on them)]; ``model`` itself
    when there is nothing to add."""
    import keras  # lazy: the runtime imports this module for split_outputs only

    if detector is None and not features:
        return model
    logits = model.get_layer(LOGITS_LAYER)
    outputs = [model.output]
    if detector is not None:
        outputs.append(detector.graph(logits.input, logits.output))
    if features:
        outputs.append(logits.input)
    return keras.Model(model.input, outputs, name="serving")


def with_preprocessing(model: Any, preprocessing: Preprocessing,
                       call: Callable[[Any], Any] | None = None) -> Any:
    """A Keras model that takes one uint8 RGB image (1, h, w, 3) of any size, runs
    ``images.preprocess`` on it, then ``call`` (default: ``model`` itself).

    Made for a TFLite conversion, which then needs no TensorFlow call outside the
    interpreter. ``call`` may be any function of the model input built from ``model``'s
    layers (Grad-CAM's two-output forward pass); the wrapper holds ``model``, so its
    weights are frozen into the conversion.
    """
    import keras  # lazy: the runtime imports this module for split_outputs only

    forward = call or (lambda x: model(x, training=False))

    class _Preprocessed(keras.layers.Layer):
        # Exists only for the conversion; never saved, so safe mode never sees it.
        def __init__(self) -> None:
            super().__init__()
            self.wrapped = model

        def call(self, images: Any) -> Any:
            return forward(preprocess(images, preprocessing))

    images = keras.Input((None, None, 3), dtype="uint8", batch_size=1, name="image")
    return keras.Model(images, _Preprocessed()(images), name="preprocessed")


def split_outputs(outputs: Any, classes: int) -> tuple[Any, Any, Any]:
    """(probabilities, familiarity, features) as arrays, None for those missing, from a
    runtime's outputs: one tensor, or a list or dict of them in any order (TFLite and TF.js
    may reorder them). The familiarity has one column, the probabilities ``classes`` (at
    least two), the features the rest."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    elif not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    probabilities = familiarity = features = None
    for output in map(np.asarray, outputs):
        if output.shape[-1] == 1:
            familiarity = output
        elif output.shape[-1] == classes and probabilities is None:
            probabilities = output
        else:
            features = output
    return probabilities, familiarity, features
