"""The Teachable Machine fixtures are genuine: made by TM's own library in Chromium (TF.js export),
tensorflowjs's converter (Keras export) and the TFLite converter, and they behave as TM users'
files do: Keras 3 cannot load the h5, tf_keras and LiteRT agree with TM's own predictions.

One session build (``tm_exports``) serves every test here and the import/export tests.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from teachable_fixtures import (
    IMAGE_SIZE,
    MOBILENET_V2_URL,
    TM_MODEL_NAME,
    TM_VERSION,
    keras3_load_error,
    load_pixels,
    probe_images,
    probe_labels,
    tm_predict_in_chromium,
)

# The session fixtures come from tests/conftest.py's plugin (teachable_fixtures), shared with the
# import tests: one build per session.

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Float models against TM's library in Chromium (issue 22's bar).
FLOAT_TOLERANCE = 1e-4


def _tflite_probabilities(model: Path, pixels: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """LiteRT on each image: TM's ``x / 127 - 1`` for a float input, raw pixels for uint8 (its
    input quantization is exactly that scaling); uint8 outputs dequantized. Returns the
    probabilities and the input and output details."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for image in pixels:
        x = image[None] if source["dtype"] == np.uint8 else image[None].astype(np.float32) / 127.0 - 1.0
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(target["index"])[0]
        if target["dtype"] == np.uint8:
            scale, zero = target["quantization"]
            y = (y.astype(np.float64) - zero) * scale
        rows.append(y)
    return np.array(rows), source, target


def test_tfjs_export_is_tms_own(tm_exports):
    """metadata.json from TM's getMetadata(), model.json as TF.js 1.3.1 saves TM's joint model."""
    folder = tm_exports["tfjs"]
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.json", "weights.bin"]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["packageName"] == "@teachablemachine/image"
    assert metadata["packageVersion"] == "0.8.4-alpha2"  # what 0.8.5's version.ts says
    assert metadata["tfjsVersion"] == "1.3.1"
    assert metadata["tmVersion"] == TM_VERSION and metadata["modelName"] == TM_MODEL_NAME
    assert metadata["labels"] == ["red stripes", "blue checks"]
    assert metadata["imageSize"] == IMAGE_SIZE and metadata["userMetadata"] == {}
    assert "grayscale" not in metadata

    saved = json.loads((folder / "model.json").read_text())
    assert list(saved) == ["modelTopology", "weightsManifest"]
    outer = saved["modelTopology"]
    assert outer["keras_version"] == "tfjs-layers 1.3.1" and outer["backend"] == "tensor_flow.js"
    # sequential([sequential([model(MobileNet up to out_relu), GAP]), sequential([dense, dense])])
    assert outer["class_name"] == "Sequential" and outer["config"]["name"] == "sequential_4"
    truncated, head = outer["config"]["layers"]
    assert truncated["class_name"] == head["class_name"] == "Sequential"
    mobilenet, pooling = truncated["config"]["layers"]
    assert mobilenet["class_name"] == "Model" and pooling["class_name"] == "GlobalAveragePooling2D"
    assert mobilenet["config"]["output_layers"] == [["out_relu", 0, 0]]
    dense1, dense2 = (layer["config"] for layer in head["config"]["layers"])
    assert (dense1["units"], dense1["activation"], dense1["use_bias"]) == (100, "relu", True)
    assert (dense2["units"], dense2["activation"], dense2["use_bias"]) == (2, "softmax", False)

    (manifest,) = saved["weightsManifest"]
    assert manifest["paths"] == ["weights.bin"]
    names = [w["name"] for w in manifest["weights"]]
    # Bare layer/weight names; TF.js lists trainable weights (MobileNet's, then the head's) before
    # the BatchNorms' moving statistics.
    assert names[:2] == ["Conv1/kernel", "bn_Conv1/gamma"] and len(names) == 263
    assert names[156:159] == ["dense_Dense1/kernel", "dense_Dense1/bias", "dense_Dense2/kernel"]
    assert names[159] == "bn_Conv1/moving_mean" and names[-1] == "Conv_1_bn/moving_variance"
    size = sum(4 * int(np.prod(w["shape"])) for w in manifest["weights"])
    assert all(w["dtype"] == "float32" for w in manifest["weights"])
    assert (folder / "weights.bin").stat().st_size == size


def test_tm_learnt_the_classes(tm_exports):
    """TM's own predictions on held-out images are right and confident (so uint8 keeps top-1)."""
    probabilities = np.load(tm_exports["tm_probs"])
    assert probabilities.shape == (len(probe_images(tm_exports)), 2)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert probabilities.argmax(axis=1).tolist() == probe_labels(tm_exports)
    assert probabilities.max(axis=1).min() > 0.9


def test_keras_export_is_tms_and_keras3_cannot_load_it(tm_exports):
    """The h5 has TM's layout, and Keras 3 fails on it exactly as on TM users' files."""
    folder = tm_exports["keras"]
    assert sorted(p.name for p in folder.iterdir()) == ["keras_model.h5", "labels.txt"]
    assert (folder / "labels.txt").read_text() == "0 red stripes\n1 blue checks\n"
    with h5py.File(folder / "keras_model.h5", "r") as f:
        assert set(f.attrs) == {"backend", "keras_version", "model_config"}
        assert f.attrs["keras_version"] == "2.4.0" and f.attrs["backend"] == "tensorflow"
        config = json.loads(f.attrs["model_config"])
        assert [layer["config"]["name"] for layer in config["config"]["layers"]] == [
            "sequential_1_input", "sequential_1", "sequential_3"]
        assert [n.decode() for n in f["model_weights"].attrs["layer_names"]] == ["sequential_1", "sequential_3"]
        assert [n.decode() for n in f["model_weights/sequential_3"].attrs["weight_names"]] == [
            "dense_Dense1/kernel:0", "dense_Dense1/bias:0", "dense_Dense2/kernel:0"]
        assert f["model_weights/sequential_1/Conv1/kernel:0"].shape == (3, 3, 3, 16)
        assert "module" not in json.dumps(config)
    error = keras3_load_error(folder / "keras_model.h5")
    assert error is not None and "DepthwiseConv2D" in error and "'groups': 1" in error, error


def test_tf_keras_agrees_with_tm_in_chromium(tm_exports):
    """tf_keras ``load_model`` (TM's Python snippet, in the worker) on the h5 = TM's library."""
    keras = np.load(tm_exports["keras_probs"])
    tm = np.load(tm_exports["tm_probs"])
    assert np.abs(keras - tm).max() <= FLOAT_TOLERANCE


def test_float_tflite_agrees_with_tm_in_chromium(tm_exports):
    folder = tm_exports["tflite"]
    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "model_unquant.tflite"]
    probabilities, source, target = _tflite_probabilities(folder / "model_unquant.tflite",
                                                          load_pixels(probe_images(tm_exports)))
    assert source["dtype"] == np.float32 and source["shape"].tolist() == [1, IMAGE_SIZE, IMAGE_SIZE, 3]
    assert target["shape"].tolist() == [1, 2]
    assert np.abs(probabilities - np.load(tm_exports["tm_probs"])).max() <= FLOAT_TOLERANCE


def test_uint8_tflite_keeps_tms_top1(tm_exports):
    folder = tm_exports["tflite_quantized"]
    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "model.tflite"]
    probabilities, source, target = _tflite_probabilities(folder / "model.tflite",
                                                          load_pixels(probe_images(tm_exports)))
    assert source["dtype"] == target["dtype"] == np.uint8
    # Input scale 1/127, zero point 127: the uint8 input is the raw pixel, q / 127 - 1 = TM's scaling.
    scale, zero = source["quantization"]
    assert zero == 127 and abs(scale - 1 / 127) < 1e-6
    assert target["quantization"] == (pytest.approx(1 / 256), 0)
    assert probabilities.argmax(axis=1).tolist() == np.load(tm_exports["tm_probs"]).argmax(axis=1).tolist()


def test_zips_are_as_tm_hands_them(tm_exports):
    expected = {"keras_zip": ("converted_keras.zip", ["keras_model.h5", "labels.txt"]),
                "tflite_zip": ("converted_tflite.zip", ["labels.txt", "model_unquant.tflite"]),
                "tflite_quantized_zip": ("converted_tflite_quantized.zip", ["labels.txt", "model.tflite"]),
                "tfjs_zip": ("tm-my-image-model.zip", ["metadata.json", "model.json", "weights.bin"])}
    for key, (name, members) in expected.items():
        assert tm_exports[key].name == name
        with zipfile.ZipFile(tm_exports[key]) as archive:
            assert sorted(archive.namelist()) == members


def test_predict_harness_is_repeatable_and_offline(tm_exports):
    """``tm_predict_in_chromium`` (the harness for our own TM-format export) gives TM's numbers
    again in a fresh browser, and the page never reached beyond its routed files."""
    again = tm_predict_in_chromium(tm_exports["tfjs"], probe_images(tm_exports))
    assert np.array_equal(again, np.load(tm_exports["tm_probs"]))
    requests = json.loads(tm_exports["requests"].read_text())
    assert MOBILENET_V2_URL in requests
    assert all(url.startswith(("http://teachable.test/", MOBILENET_V2_URL.rsplit("/", 1)[0])) for url in requests)
