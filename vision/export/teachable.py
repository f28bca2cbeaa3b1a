"""Export a bundle back in Teachable Machine's formats.

One export folder holds both of TM's model formats, each also zipped as TM's site hands it out:

- ``tfjs/``: a TF.js *layers* model (``model.json`` + ``weights.bin``) and TM's ``metadata.json``,
  which TM's library (``tmImage.load(modelURL, metadataURL)``) loads. The topology is written
  as data (``vision.export.tfjs_layers``) in the Keras 2 form TF.js 1.x reads:
  TF.js cannot load a Keras 3 layers model (tensorflow/tfjs#8328).
- ``keras/``: ``keras_model.h5`` + ``labels.txt``, which TM's published Python snippet runs as it
  is: ``keras.models.load_model(..., compile=False)`` on the pinned Keras 3.

TM's library feeds a model ``x / 127 - 1`` and its Python snippet ``x / 127.5 - 1``; a bundle
may expect other scaling. Each exported model starts with a 1x1 depthwise convolution that maps
the input its consumer sends to the input the bundle's model was trained on, exactly (an affine
map per channel), so both TM consumers get the bundle's own answers. It is left out when the
map is the identity (a model imported from TM, in TM's library).
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from vision import __version__
from vision.bundle.store import Bundle
from vision.bundle.teachable import DIVISOR_ATTRIBUTE, find_export, load_teachable_model
from vision.data.images import Preprocessing
from vision.errors import ExportError, InvalidModelFileError
from vision.export.tfjs_layers import layers_topology
from vision.models.layers_config import inbound_layer_names

#: What TM's library divides pixels by before subtracting 1; and TM's Python snippet.
LIBRARY_DIVISOR = 127.0
SNIPPET_DIVISOR = 127.5
ADAPTER_LAYER = "tm_input_scale"
TFJS_FOLDER, KERAS_FOLDER = "tfjs", "keras"
TFJS_ZIP, KERAS_ZIP = "tm-tfjs-model.zip", "converted_keras.zip"
#: TM's metadata.json fields that its library reads; the version fields name what wrote the file.
PACKAGE_NAME = "@teachablemachine/image"


def export_teachable(bundle: Bundle, folder: Path) -> dict[str, Any]:
    """Write ``bundle`` as TM's TF.js and Keras exports into the (new, empty) ``folder``.

    Returns:
        What was written: ``{"tfjs": {...}, "keras": {...}}`` with file names and the input
        mapping each model starts with.

    Raises:
        ExportError: the model cannot be a TF.js layers model (names the layer and why), or
            its input is not square (TM's models take square images).
    """
    preprocessing = bundle.preprocessing
    height, width = preprocessing.size
    if height != width:
        raise ExportError(f"Teachable Machine models take square images; this one takes {height}x{width}")
    written: dict[str, Any] = {}
    library_model = with_input_mapping(bundle.model, preprocessing, LIBRARY_DIVISOR)
    written["tfjs"] = _write_tfjs(library_model, bundle, folder / TFJS_FOLDER)
    snippet_model = with_input_mapping(bundle.model, preprocessing, SNIPPET_DIVISOR)
    written["keras"] = _write_keras(snippet_model, bundle.labels, folder / KERAS_FOLDER)
    _zip(folder / TFJS_FOLDER, folder / TFJS_ZIP)
    _zip(folder / KERAS_FOLDER, folder / KERAS_ZIP)
    return written


def input_mapping(preprocessing: Preprocessing, divisor: float) -> tuple[float, float]:
    """``(a, b)`` with ``a * (x / divisor - 1) + b == x * scale + offset`` for every pixel ``x``."""
    a = preprocessing.scale * divisor
    return a, a + preprocessing.offset


def with_input_mapping(model: Any, preprocessing: Preprocessing, divisor: float) -> Any:
    """A flat copy of ``model`` (same layer names and weights, probabilities as its only output)
    that takes ``x / divisor - 1`` instead of the bundle's preprocessed input.

    Raises:
        ExportError: a layer that cannot be copied this way (a nested model, a shared layer).
    """
    a, b = input_mapping(preprocessing, divisor)
    channels = int(model.input.shape[-1])
    inputs = keras.Input(tuple(model.input.shape[1:]), name=model.layers[0].name)
    x = inputs
    if abs(a - 1) > 1e-7 or abs(b) > 1e-7:
        adapter = keras.layers.DepthwiseConv2D(1, use_bias=True, name=ADAPTER_LAYER)
        x = adapter(inputs)
        adapter.set_weights([np.full((1, 1, channels, 1), a, np.float32), np.full(channels, b, np.float32)])
    tensors = {model.layers[0].name: x}
    for layer, entry in zip(model.layers, model.get_config()["layers"], strict=True):
        if type(layer).__name__ == "InputLayer":
            continue
        if isinstance(layer, keras.Model):
            raise ExportError(f"layer {layer.name!r} is a nested model; Teachable Machine's format needs a flat one")
        sources = inbound_layer_names(entry, layer.name)
        copy = type(layer).from_config(layer.get_config())
        tensors[layer.name] = copy(tensors[sources[0]] if len(sources) == 1 else [tensors[s] for s in sources])
        copy.set_weights(layer.get_weights())
    output = model.outputs[0]._keras_history.operation.name
    return keras.Model(inputs, tensors[output], name="teachable_machine")


def metadata(bundle: Bundle) -> dict[str, Any]:
    """TM's ``metadata.json`` for ``bundle``: the fields its library reads, and where it came from."""
    size = bundle.preprocessing.size[0]
    return {"tfjsVersion": "1.3.1", "tmVersion": "2.4.5", "packageVersion": "0.8.5", "packageName": PACKAGE_NAME,
            "timeStamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "userMetadata": {"exportedBy": f"vision {__version__}", "bundle": bundle.name},
            "modelName": bundle.name, "labels": bundle.labels, "imageSize": size,
            "grayscale": bundle.preprocessing.grayscale}


def _write_tfjs(model: Any, bundle: Bundle, folder: Path) -> dict[str, Any]:
    try:
        topology, weights = layers_topology(model)
    except InvalidModelFileError as error:
        raise ExportError(f"this model cannot be a Teachable Machine (TF.js layers) model: {error}") from None
    folder.mkdir(parents=True)
    data = b"".join(np.ascontiguousarray(value, "<f4").tobytes() for _, value in weights)
    (folder / "weights.bin").write_bytes(data)
    specs = [{"name": name, "shape": list(value.shape), "dtype": "float32"} for name, value in weights]
    manifest = [{"paths": ["weights.bin"], "weights": specs}]
    model_json = {"modelTopology": {"keras_version": "tfjs-layers 1.3.1", "backend": "tensor_flow.js",
                                    "model_config": topology},
                  "format": "layers-model", "generatedBy": "vision", "convertedBy": None,
                  "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(model_json))
    (folder / "metadata.json").write_text(json.dumps(metadata(bundle), indent=2))
    return {"files": ["model.json", "weights.bin", "metadata.json"],
            "input": f"x / {LIBRARY_DIVISOR:g} - 1", "bytes": len(data)}


def _write_keras(model: Any, labels: list[str], folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    # Keras 3 writes the legacy HDF5 format for a ".h5" name, which is what TM's snippet opens.
    keras.saving.save_model(model, folder / "keras_model.h5")
    import h5py  # lazy: only the Keras .h5 file needs h5py (installed with Keras)

    with h5py.File(folder / "keras_model.h5", "a") as h5:
        # Keras ignores it; an import here reads it back, so the round trip keeps the scaling.
        h5.attrs[DIVISOR_ATTRIBUTE] = SNIPPET_DIVISOR
    (folder / "labels.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate(labels)))
    return {"files": ["keras_model.h5", "labels.txt"], "input": f"x / {SNIPPET_DIVISOR:g} - 1"}


def _zip(folder: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, file.name)


def check_teachable(folder: Path, inputs: np.ndarray, preprocessing: Preprocessing,
                    expected: np.ndarray) -> np.ndarray:
    """Probabilities of both exported models on ``inputs`` (the bundle's preprocessed model
    input), each fed what its consumer sends: whichever is further from ``expected``.

    ``keras_model.h5`` is opened as TM's snippet opens it (``keras.models.load_model``);
    ``model.json`` is rebuilt by the import's own reader, as a stand-in for TF.js here (the
    tests run TM's library on it in Chromium).
    """
    pixels = (np.asarray(inputs, np.float32) - preprocessing.offset) / preprocessing.scale
    snippet = keras.models.load_model(folder / KERAS_FOLDER / "keras_model.h5", compile=False)
    from_snippet = np.asarray(snippet(pixels / SNIPPET_DIVISOR - 1, training=False))
    library, _ = load_teachable_model(find_export(folder / TFJS_FOLDER))
    from_library = np.asarray(library(pixels / LIBRARY_DIVISOR - 1, training=False))
    return max(from_snippet, from_library, key=lambda answer: float(np.abs(answer - expected).max()))
