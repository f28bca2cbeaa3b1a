"""Hostile model files for the untrusted-model tests and ``bench/bench_load.py``, built here in
milliseconds without TensorFlow: Teachable Machine zips whose config, HDF5 or flatbuffer asks
for more than it declares, or crashes LiteRT.

Each ``*_zip`` function writes a zip that ``python -m vision import-tm`` (and the Models view's
import) takes, and returns its path::

    from tests.hostile_models import dense_bomb_zip, crashing_tflite_zip
    bomb = dense_bomb_zip(tmp / "bomb.zip")            # the issue's ~300-byte model.json
    crash = crashing_tflite_zip(tmp / "crash.zip")     # segfaults LiteRT when it is built
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ["cat", "dog"]


def _zip(path: Path, files: dict[str, bytes | str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def _metadata(labels: list[str], size: int) -> str:
    return json.dumps({"tfjsVersion": "1.3.1", "tmVersion": "2.4.7", "packageName": "@teachablemachine/image",
                       "modelName": "hostile", "labels": labels, "imageSize": size})


def _layers_model(layers: list[dict[str, Any]], size: int, channels: int) -> dict[str, Any]:
    inputs = [{"class_name": "InputLayer",
               "config": {"batch_input_shape": [None, size, size, channels], "name": "in"}}]
    return {"format": "layers-model",
            "modelTopology": {"class_name": "Sequential", "config": {"name": "s", "layers": inputs + layers}},
            "weightsManifest": []}


def dense_bomb_model_json() -> str:
    """The issue's model.json: Flatten of 32x32x4 into Dense(65536), no weights listed
    (268,500,992 parameters; Keras would allocate ~1 GB of weights and initialise them)."""
    return json.dumps(_layers_model([{"class_name": "Flatten", "config": {"name": "f"}},
                                     {"class_name": "Dense", "config": {"name": "d", "units": 65536,
                                                                        "activation": "softmax"}}], 32, 4),
                      separators=(",", ":"))


def dense_bomb_zip(path: Path) -> Path:
    """A TF.js TM zip holding ``dense_bomb_model_json`` (about 300 bytes) and its metadata."""
    return _zip(path, {"model.json": dense_bomb_model_json(), "metadata.json": _metadata(LABELS, 32)})


def conv_bomb_zip(path: Path) -> Path:
    """A TF.js TM zip whose one Conv2D makes 65,536 channels at 1024x1024 (few parameters,
    68.7 G activation values per image)."""
    model = _layers_model([{"class_name": "Conv2D", "config": {"name": "c", "filters": 65536, "kernel_size": 1}},
                           {"class_name": "GlobalAveragePooling2D", "config": {"name": "g"}},
                           {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "softmax"}}],
                          1024, 3)
    return _zip(path, {"model.json": json.dumps(model), "metadata.json": _metadata(LABELS, 1024)})


def nested_json_zip(path: Path, depth: int = 200_000) -> Path:
    """A TF.js TM zip whose model.json is ``depth`` nested lists (``[[[[...]]]]``)."""
    return _zip(path, {"model.json": "[" * depth + "]" * depth, "metadata.json": _metadata(LABELS, 8)})


# --- HDF5 ---------------------------------------------------------------------------------

def small_keras_config(size: int = 8) -> dict[str, Any]:
    """A Keras 2 Sequential (GlobalAveragePooling2D -> Dense(2, softmax)), as TM's h5 holds it."""
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, size, size, 3], "name": "input"}},
        {"class_name": "GlobalAveragePooling2D", "config": {"name": "pool"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "softmax"}}]}}


def keras_h5_zip(path: Path, link: str | None = None, dtype: str = "float32") -> Path:
    """A TM Keras zip (``keras_model.h5`` + ``labels.txt``) of ``small_keras_config``.

    Args:
        link: None for a plain file; ``"external"`` or ``"soft"``: the Dense layer's inner group
            ``dense`` (on the weight's path ``dense/kernel:0``) is a link, to a second HDF5 file
            beside it or to another group, so only an intermediate path component is a link.
        dtype: The weights' dtype in the file.
    """
    import h5py  # installed with Keras

    path = Path(path)
    folder = path.parent / f"{path.stem}-files"
    folder.mkdir(parents=True, exist_ok=True)
    kernel = np.random.default_rng(0).normal(size=(3, 2)).astype(dtype)
    bias = np.zeros(2, dtype)
    with h5py.File(folder / "keras_model.h5", "w") as h5:
        h5.attrs["model_config"] = json.dumps(small_keras_config())
        weights = h5.create_group("model_weights")
        layer = weights.create_group("dense")
        layer.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        if link == "external":
            with h5py.File(folder / "other.h5", "w") as other:
                other.create_dataset("inner/kernel:0", data=kernel)
                other.create_dataset("inner/bias:0", data=bias)
            layer["dense"] = h5py.ExternalLink("other.h5", "/inner")
        elif link == "soft":
            weights.create_dataset("elsewhere/kernel:0", data=kernel)
            weights.create_dataset("elsewhere/bias:0", data=bias)
            layer["dense"] = h5py.SoftLink("/model_weights/elsewhere")
        else:
            layer.create_dataset("dense/kernel:0", data=kernel)
            layer.create_dataset("dense/bias:0", data=bias)
    files: dict[str, bytes | str] = {"keras_model.h5": (folder / "keras_model.h5").read_bytes(),
                                     "labels.txt": "0 cat\n1 dog\n"}
    if link == "external":
        files["other.h5"] = (folder / "other.h5").read_bytes()
    return _zip(path, files)


# --- TFLite ---------------------------------------------------------------------------------

def tflite_classifier(size: int = 8, crash: bool = False) -> bytes:
    """A TFLite image classifier built with TFLite's schema (no converter): (1, size, size, 3)
    float32 -> 1x1 CONV_2D to 2 channels -> MEAN over height and width -> SOFTMAX -> (1, 2).

    With ``crash``, the convolution names no filter tensor (input index -1, the marker of an
    absent optional input): LiteRT 2.3 dereferences it while preparing the interpreter and the
    process dies with SIGSEGV. The file is otherwise valid, and under 1 KB.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(shape: list[int], buffer: int, name: str, type_: int = schema.TensorType.FLOAT32) -> Any:
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = shape, type_, buffer, name
        return t

    def buffer(data: bytes = b"") -> Any:
        b = schema.BufferT()
        b.data = list(data) if data else None
        return b

    def code(builtin: int) -> Any:
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
        return c

    def operator(index: int, inputs: list[int], outputs: list[int], options_type: int, options: Any) -> Any:
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, inputs, outputs
        op.builtinOptionsType, op.builtinOptions = options_type, options
        return op

    kernel = np.random.default_rng(0).normal(size=(2, 1, 1, 3)).astype("<f4")
    graph = schema.SubGraphT()
    graph.tensors = [tensor([1, size, size, 3], 1, "image"), tensor([2, 1, 1, 3], 2, "kernel"),
                     tensor([2], 3, "bias"), tensor([1, size, size, 2], 4, "conv"),
                     tensor([2], 5, "axes", schema.TensorType.INT32), tensor([1, 2], 6, "logits"),
                     tensor([1, 2], 7, "probabilities")]
    conv = schema.Conv2DOptionsT()
    conv.padding, conv.strideW, conv.strideH = schema.Padding.SAME, 1, 1
    mean = schema.ReducerOptionsT()
    softmax = schema.SoftmaxOptionsT()
    softmax.beta = 1.0
    graph.operators = [
        operator(0, [0, -1 if crash else 1, 2], [3], schema.BuiltinOptions.Conv2DOptions, conv),
        operator(1, [3, 4], [5], schema.BuiltinOptions.ReducerOptions, mean),
        operator(2, [5], [6], schema.BuiltinOptions.SoftmaxOptions, softmax)]
    graph.inputs, graph.outputs = [0], [6]
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = [code(schema.BuiltinOperator.CONV_2D), code(schema.BuiltinOperator.MEAN),
                           code(schema.BuiltinOperator.SOFTMAX)]
    model.subgraphs = [graph]
    model.buffers = [buffer(), buffer(), buffer(kernel.tobytes()), buffer(np.zeros(2, "<f4").tobytes()), buffer(),
                     buffer(np.array([1, 2], "<i4").tobytes()), buffer(), buffer()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_zip(path: Path, crash: bool = False) -> Path:
    """A TM TFLite zip (``model_unquant.tflite`` + ``labels.txt``) of ``tflite_classifier``."""
    return _zip(path, {"model_unquant.tflite": tflite_classifier(crash=crash), "labels.txt": "0 cat\n1 dog\n"})


def crashing_tflite_zip(path: Path) -> Path:
    """``tflite_zip`` of the flatbuffer that segfaults LiteRT while it is built."""
    return tflite_zip(path, crash=True)
