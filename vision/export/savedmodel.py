"""A SavedModel laid out for TensorFlow Serving, answering encoded image bytes.

``export_for_serving`` writes ``<folder>/<model name>/<version>/`` (``saved_model.pb`` and
``variables/``), the layout ``tensorflow_model_server --model_base_path=<folder>/<model name>``
loads. Its ``serving_default`` signature takes a batch of encoded images (``tf.string``: what a
REST client sends as ``{"instances": [{"b64": ...}]}``), decodes them inside the graph to the
pixels ``load_image`` gives the library (``vision.export.graph_decode``: large images reduced to
``input_side`` as Pillow reduces them), resizes and scales them with
``vision.data.images.preprocess`` itself, and returns the probabilities, the top label, and the
"unknown" detector's familiarity and verdict. A second signature,
``preprocessed``, takes the model input as floats. ``signature_defs`` describes both the way TF
Serving's metadata API does, so the app's REST routes (``vision.serve.rest``) can announce
exactly what this export answers.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vision.bundle.store import Bundle
from vision.data.images import input_side, preprocess
from vision.export.graph_decode import decode

#: The version folder TF Serving loads (it serves the highest number it finds).
VERSION = 1
BYTES_SIGNATURE = "serving_default"
TENSOR_SIGNATURE = "preprocessed"
#: TF Serving's REST API exchanges tensors whose name ends in "_bytes" as {"b64": ...}.
BYTES_INPUT = "image_bytes"
TENSOR_INPUT = "image"
PREDICT_METHOD = "tensorflow/serving/predict"
#: Output name -> (dtype, shape after the batch dimension: "classes", "features" or nothing).
OUTPUTS = {"probabilities": ("DT_FLOAT", "classes"), "label": ("DT_STRING", None),
           "familiarity": ("DT_FLOAT", None), "unknown": ("DT_BOOL", None), "features": ("DT_FLOAT", "features")}


def serving_name(bundle: Bundle) -> str:
    """The model's name in TF Serving's URLs: the bundle's name as lower-case letters, digits
    and ``_.-`` (``"Shapes (default)"`` -> ``"shapes-default"``)."""
    return re.sub(r"[^a-z0-9_.-]+", "-", bundle.name.lower()).strip("-.") or "model"


def output_names(bundle: Bundle, features: bool = False, single_output: bool = False) -> list[str]:
    """The outputs both signatures return, in ``OUTPUTS`` order: familiarity and unknown
    only for a bundle with a detector, features only where asked for; ``probabilities`` alone
    for a single-output export."""
    if single_output:
        return ["probabilities"]
    detector = bundle.detector is not None
    return [name for name in OUTPUTS if (name not in ("familiarity", "unknown") or detector)
            and (name != "features" or features)]


def export_for_serving(model: Any, bundle: Bundle, folder: Path, images: list[np.ndarray],
                       features: bool = False, single_output: bool = False) -> list[list[np.ndarray]]:
    """Write ``model`` (``vision.models.serving.serving_model`` of ``bundle``) into
    ``folder/<serving_name>/<VERSION>`` and run it back as TF Serving would.

    Args:
        images: uint8 RGB images; each is sent PNG-encoded through ``serving_default`` and
            preprocessed through ``preprocessed``.
        single_output: both signatures answer ``probabilities`` alone. TF Serving leaves a lone
            output's name out of its answers, so a client written for one-output models (TF Serving's
            ``resnet_client.py`` takes ``argmax`` of each prediction) gets a list it can use.

    Returns:
        Per signature (bytes first), the answers as the serving model's own outputs:
        probabilities, then familiarity (one column) and features where there are some.
    """
    import keras  # lazy: serve/rest.py imports this module's names without TensorFlow
    import tensorflow as tf  # lazy: as keras, above

    spec = bundle.preprocessing
    names = output_names(bundle, features, single_output)
    labels = tf.constant(bundle.labels)
    threshold = bundle.detector.threshold if bundle.detector is not None else None

    def answer(inputs: Any) -> dict[str, Any]:
        outputs = model(inputs, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        probabilities = outputs.pop(0)
        if single_output:
            return {"probabilities": probabilities}
        named = {"probabilities": probabilities, "label": tf.gather(labels, tf.argmax(probabilities, axis=1))}
        if threshold is not None:
            familiarity = outputs.pop(0)[:, 0]
            named.update(familiarity=familiarity, unknown=familiarity < threshold)
        if features:
            named["features"] = outputs.pop(0)
        return named

    def from_bytes(encoded: Any) -> dict[str, Any]:
        height, width = spec.size
        side = input_side(spec.size)  # the library's Classifier decodes at this size too
        inputs = tf.map_fn(lambda data: preprocess(decode(data, side), spec), encoded,
                           fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
        return answer(inputs)

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is TF Serving's default signature.
    archive.add_endpoint(BYTES_SIGNATURE, from_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    archive.add_endpoint(TENSOR_SIGNATURE, answer,
                         input_signature=[tf.TensorSpec([None, *spec.size, 3], tf.float32, name=TENSOR_INPUT)])
    target = folder / serving_name(bundle) / str(VERSION)
    archive.write_out(str(target), verbose=False)

    loaded = tf.saved_model.load(str(target))
    encoded = tf.constant([png_bytes(image) for image in images])
    floats = tf.constant(np.stack([np.asarray(preprocess(image, spec)) for image in images]))
    answers = [loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: encoded}),
               loaded.signatures[TENSOR_SIGNATURE](**{TENSOR_INPUT: floats})]
    return [_as_model_outputs(found, names) for found in answers]


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` (uint8 RGB) PNG-encoded: lossless, so decoding gives back the same pixels."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def serving_metadata(bundle: Bundle, feature_size: int | None = None,
                     single_output: bool = False) -> dict[str, Any]:
    """What ``metadata.json`` says about the export's TF Serving side."""
    name = serving_name(bundle)
    return {"model_name": name, "version": VERSION, "path": f"{name}/{VERSION}",
            "signatures": signature_defs(bundle, feature_size, single_output)}


def signature_defs(bundle: Bundle, feature_size: int | None = None, single_output: bool = False) -> dict[str, Any]:
    """Both signatures as TF Serving's metadata API (``GET /v1/models/<name>/metadata``) shows
    a SavedModel's ``signature_def`` map: names, dtypes and shapes (-1: any size).

    Args:
        feature_size: the pooled features' size, for an export with them as an output.
        single_output: an export whose signatures answer ``probabilities`` alone.
    """
    height, width = bundle.preprocessing.size
    sizes = {"classes": len(bundle.labels), "features": feature_size}
    # The tensor names are those TF 2.19 writes for ``export_for_serving``'s two endpoints: outputs
    # numbered in the order of their sorted names (tests/test_serving.py reads them back).
    calls = {BYTES_SIGNATURE: "StatefulPartitionedCall_1", TENSOR_SIGNATURE: "StatefulPartitionedCall"}
    inputs = {BYTES_SIGNATURE: {BYTES_INPUT: _tensor_info(f"{BYTES_SIGNATURE}_{BYTES_INPUT}:0", "DT_STRING", [-1])},
              TENSOR_SIGNATURE: {TENSOR_INPUT: _tensor_info(f"{TENSOR_SIGNATURE}_{TENSOR_INPUT}:0", "DT_FLOAT",
                                                            [-1, height, width, 3])}}
    names = sorted(output_names(bundle, feature_size is not None, single_output))
    return {signature: {"inputs": inputs[signature],
                        "outputs": {name: _tensor_info(f"{calls[signature]}:{index}", OUTPUTS[name][0],
                                                       [-1] + ([sizes[OUTPUTS[name][1]]] if OUTPUTS[name][1] else []))
                                    for index, name in enumerate(names)},
                        "method_name": PREDICT_METHOD, "defaults": {}}
            for signature in (BYTES_SIGNATURE, TENSOR_SIGNATURE)}


def _tensor_info(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype,
            "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in shape], "unknown_rank": False}}


def _as_model_outputs(found: dict[str, Any], names: list[str]) -> list[np.ndarray]:
    """A signature's named answers back in the serving model's order, to compare with Keras."""
    if sorted(found) != sorted(names):
        raise ValueError(f"the SavedModel answered {sorted(found)}; expected {sorted(names)}")
    arrays = [np.asarray(found["probabilities"])]
    if "familiarity" in found:
        arrays.append(np.asarray(found["familiarity"])[:, None])
    if "features" in found:
        arrays.append(np.asarray(found["features"]))
    return arrays
