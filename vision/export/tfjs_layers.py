"""Write a Keras 3 model as a Keras 2 / TF.js *layers* topology, as data.

TF.js cannot load a Keras 3 layers model (tensorflow/tfjs#8328), and Teachable Machine's
library is TF.js 1.x: it reads the Keras 2 form, ``{"class_name": "Model", "config": ...}``
with ``[layer, node, tensor, kwargs]`` connections. This module writes that form from a flat
functional model, layer by layer, keeping for each layer type only the keys TF.js 1.x reads
(it fills in the rest). The reverse direction, reading such a file from an untrusted source,
is ``vision.models.layers_config``; what is written here is what it accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vision.errors import InvalidModelFileError
from vision.models.layers_config import inbound_layer_names

#: The keys written for each layer type: what TF.js 1.x's layers read (it fills in the rest).
_WRITTEN_KEYS: Mapping[str, tuple[str, ...]] = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation",
               "use_bias"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
                        "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "Dense": ("units", "activation", "use_bias"),
    "Dropout": ("rate",),
    "Add": (), "Multiply": (), "Concatenate": ("axis",),
    "ZeroPadding2D": ("padding", "data_format"),
    "GlobalAveragePooling2D": ("data_format",), "GlobalMaxPooling2D": ("data_format",),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling2D": ("pool_size", "strides", "padding", "data_format"),
    "Flatten": ("data_format",),
}
#: Keras 3 weight names that the Keras 2 / TF.js formats spell differently.
_WRITTEN_WEIGHT_NAMES = {("DepthwiseConv2D", "kernel"): "depthwise_kernel"}


def layers_topology(model: Any) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """``model`` (a flat Keras 3 functional model of the allowed layer types) as a Keras 2
    style ``{"class_name": "Model", ...}`` topology that TF.js 1.x and later load, and its
    weights as ``("<layer>/<variable>", array)`` in layer order.

    Raises:
        InvalidModelFileError: a layer type TF.js layers models cannot hold, a nested model,
            or a layer called more than once; the message names it.
    """
    config = model.get_config()
    layers, weights = [], []
    for layer, entry in zip(model.layers, config["layers"], strict=True):
        class_name = type(layer).__name__
        if class_name == "InputLayer":
            layers.append({"class_name": "InputLayer", "name": layer.name, "inbound_nodes": [],
                           "config": {"batch_input_shape": [None, *layer.output.shape[1:]], "dtype": "float32",
                                      "sparse": False, "name": layer.name}})
            continue
        if class_name not in _WRITTEN_KEYS:
            raise InvalidModelFileError(
                f"layer {layer.name!r} is a {class_name}, which a TF.js layers model (Teachable Machine's format) "
                f"cannot hold; it can hold {', '.join(sorted(_WRITTEN_KEYS))}")
        layer_config = layer.get_config()
        written = {key: _plain(layer_config[key]) for key in _WRITTEN_KEYS[class_name] if key in layer_config}
        if class_name == "BatchNormalization" and written.get("axis") == -1:
            written["axis"] = len(layer.input.shape) - 1  # TF.js 1.x wants a non-negative axis
        layers.append({"class_name": class_name, "name": layer.name,
                       "config": {"name": layer.name, "trainable": True, "dtype": "float32", **written},
                       "inbound_nodes": [[[source, 0, 0, {}] for source in inbound_layer_names(entry, layer.name)]]})
        weights.extend((f"{layer.name}/{_weight_name(class_name, v)}", np.asarray(v.numpy(), np.float32))
                       for v in layer.weights)
    topology = {"class_name": "Model", "config": {
        "name": model.name, "layers": layers,
        "input_layers": [[layer.name, 0, 0] for layer in model.layers if type(layer).__name__ == "InputLayer"],
        "output_layers": [[_producer_name(model.outputs[0]), 0, 0]]}}
    return topology, weights


def _weight_name(class_name: str, variable: Any) -> str:
    """The variable's name as the Keras 2 / TF.js formats spell it for a ``class_name`` layer."""
    name = variable.path.rsplit("/", 1)[-1]
    return _WRITTEN_WEIGHT_NAMES.get((class_name, name), name)


def _producer_name(tensor: Any) -> str:
    return tensor._keras_history.operation.name


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
