"""The model as it is served: probabilities, plus the "unknown" detector's score.

A bundle's Keras model outputs calibrated probabilities (the temperature is folded into
its ``logits`` layer). Where the bundle has a detector, the serving model also outputs the
image's familiarity, computed in the same graph from the pooled features the classifier
already has, so the TFLite interpreter and the TF.js page get both from one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vision.models.heads import LOGITS_LAYER


def feature_model(model: Any) -> Any:
    """``model``'s input -> [pooled features, logits]: every architecture here ends in
    pooled features -> (dropout) -> ``logits`` -> softmax."""
    import keras  # lazy: predicting reads split_outputs only

    logits = model.get_layer(LOGITS_LAYER)
    return keras.Model(model.input, [logits.input, logits.output], name="features_and_logits")


def serving_model(model: Any, detector: Any = None, features: bool = False) -> Any:
    """input -> [probabilities, familiarity (batch, 1) where there is a detector, pooled
    features where asked for (the web page trains new heads on them)]; ``model`` itself
    when there is nothing to add."""
    import keras  # lazy: predicting reads split_outputs only

    if detector is None and not features:
        return model
    logits = model.get_layer(LOGITS_LAYER)
    outputs = [model.output]
    if detector is not None:
        outputs.append(detector.graph(logits.input, logits.output))
    if features:
        outputs.append(logits.input)
    return keras.Model(model.input, outputs, name="serving")


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
