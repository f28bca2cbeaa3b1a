"""ONNX export: the serving model converted by tf2onnx, checked in ONNX Runtime, and carrying
its own description.

The model is traced once, frozen (weights and captured constants become graph constants) and
handed to tf2onnx as a graph. Keras 3's ``model.export(path, format="onnx")`` does not freeze
first, and tf2onnx then turns the k-NN detector's reference features, a constant the graph
captures, into a second model input that ONNX Runtime demands. The outputs are renamed to what
``metadata.json`` calls them (``probabilities``, ``familiarity``, ``features``) instead of
tf2onnx's ``Identity:0``, and everything a runtime needs (labels, preprocessing, the "unknown"
threshold, how the export was checked) goes into the model's ``metadata_props``, one JSON value
per key, so an ONNX user needs no other file:

    session = onnxruntime.InferenceSession("model.onnx")
    props = session.get_modelmeta().custom_metadata_map
    labels = json.loads(props["labels"])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vision.models.heads import OUTPUT_LAYER

ONNX_FILE = "model.onnx"
#: The serving model's outputs, in its order (``vision.models.serving.serving_model``).
FAMILIARITY, FEATURES = "familiarity", "features"


def export_onnx(model: Any, path: Path, inputs: np.ndarray, detector: bool, features: bool) -> list[np.ndarray]:
    """Convert the Keras ``model`` to ONNX at ``path`` and run ``inputs`` through it in ONNX Runtime.

    Args:
        detector, features: whether ``model`` outputs a familiarity and pooled features after
            the probabilities (what ``serving_model`` was asked for).

    Returns:
        ONNX Runtime's outputs, in the model's order.
    """
    import onnx  # lazy: optional and slow to import; only the ONNX export needs it
    import tensorflow as tf  # lazy: export/parity.py reads ONNX_FILE without TensorFlow
    import tf2onnx  # lazy: optional, as onnx above
    from tensorflow.python.framework.convert_to_constants import (  # lazy: as tensorflow above
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec(model.inputs[0].shape, tf.float32, name=model.inputs[0].name)
    traced = tf.function(lambda image: model(image, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=[frozen.inputs[0].name],
                                              output_names=[output.name for output in frozen.outputs])
    _rename_outputs(proto, [OUTPUT_LAYER] + [FAMILIARITY] * detector + [FEATURES] * features)
    onnx.save(proto, str(path))
    return run_onnx(path, inputs)


def run_onnx(path: Path, inputs: np.ndarray) -> list[np.ndarray]:
    """``inputs`` (the preprocessed batch) through the ONNX model at ``path``, on the CPU."""
    import onnxruntime  # lazy: optional; only the check runs it

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)})


def write_metadata_props(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` (``vision.export.formats.export_metadata``) in the ONNX model at
    ``path`` as ``metadata_props``: one entry per top-level key, its value as JSON."""
    import onnx  # lazy: optional, as above

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(path))


def read_metadata_props(path: Path) -> dict[str, Any]:
    """What ``write_metadata_props`` stored, read back through ONNX Runtime as a user would."""
    import onnxruntime  # lazy: optional; only reading an ONNX file's metadata needs it

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}


def _rename_outputs(proto: Any, names: list[str]) -> None:
    """Give the graph's outputs ``names`` (in order): each producer and consumer of an old name
    is rewired, so the graph computes the same values under the new names."""
    graph = proto.graph
    if len(graph.output) != len(names):
        raise ValueError(f"the ONNX graph has {len(graph.output)} outputs; expected {len(names)} ({names})")
    renames = {output.name: name for output, name in zip(graph.output, names)}
    for node in graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    for info in (*graph.output, *graph.value_info):
        info.name = renames.get(info.name, info.name)
