"""What every classifier here ends in, and which of a pretrained network's layers train.

Every architecture maps its pooled features through (dropout) -> a ``logits`` Dense layer ->
a float32 softmax named ``probabilities``. Grad-CAM reads the pre-softmax score by that name,
calibration folds its temperature into the ``logits`` layer, the "unknown" detector reads the
``logits`` layer's input as the pooled features, and mixed precision keeps a float32 output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LOGITS_LAYER = "logits"
OUTPUT_LAYER = "probabilities"
#: Width of EfficientNet-Lite0's pooled features: what fast training and the page's trainer learn on.
LITE0_FEATURES = 1280


def classification_head(features: Any, num_classes: int, dropout: float = 0.2) -> Any:
    """Pooled ``features`` (a Keras tensor) -> dropout -> ``logits`` -> float32 softmax."""
    import keras  # lazy: keeps Keras off the import path of modules that only read the layer names

    x = keras.layers.Dropout(dropout, name="dropout")(features) if dropout else features
    x = keras.layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.layers.Activation("softmax", dtype="float32", name=OUTPUT_LAYER)(x)


def freeze_pretrained(layers: Sequence[Any], fine_tune_layers: int = 0) -> None:
    """Freeze pretrained ``layers`` but the top ``fine_tune_layers``; batch norm stays frozen
    even there, because its statistics updating on a few photos wrecks pretrained features."""
    import keras  # lazy: as in classification_head

    for i, layer in enumerate(layers):
        top = i >= len(layers) - fine_tune_layers
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
