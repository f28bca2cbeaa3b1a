"""The model as it is served: probabilities, plus the "unknown" detector's score.

A bundle's Keras model outputs calibrated probabilities (the temperature is folded into
its ``logits`` layer). Where the bundle has a detector, the serving model also outputs the
image's familiarity, computed in the same graph from the pooled features the classifier
already has, so the TFLite interpreter and the TF.js page get both from one call.
"""

from __future__ import annotations

from typing import Any

from vision.models import LOGITS_LAYER


def feature_model(model: Any) -> Any:
    """``model``'s input -> [pooled features, logits]: every architecture here ends in
    pooled features -> (dropout) -> ``logits`` -> softmax."""
    import keras

    logits = model.get_layer(LOGITS_LAYER)
    return keras.Model(model.input, [logits.input, logits.output], name="features_and_logits")


def serving_model(model: Any, detector: Any = None) -> Any:
    """``model`` itself without a detector; else input -> [probabilities, familiarity (batch, 1)]."""
    import keras

    if detector is None:
        return model
    logits = model.get_layer(LOGITS_LAYER)
    familiarity = detector.graph(logits.input, logits.output)
    return keras.Model(model.input, [model.output, familiarity], name="serving")


def split_outputs(outputs: list[Any]) -> tuple[Any, Any]:
    """(probabilities, familiarity or None) from a runtime's outputs in any order: TFLite and
    TF.js may reorder them, and the familiarity is the one with a single column (a
    classifier has at least two classes)."""
    if len(outputs) == 1:
        return outputs[0], None
    first, second = outputs
    return (second, first) if first.shape[-1] == 1 else (first, second)
