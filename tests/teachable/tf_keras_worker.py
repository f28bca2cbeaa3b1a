"""The tf_keras / tensorflowjs half of the Teachable Machine fixtures, run as its own process.

tensorflowjs and Teachable Machine's converter work on Keras 2 (``tf_keras``); importing them
flips ``TF_USE_LEGACY_KERAS`` for the whole process. The test process must stay on Keras 3,
so ``tests/teachable_fixtures.py`` runs this file with ``python tf_keras_worker.py COMMAND ...``.

Commands:

``base OUT_DIR SEED CALIBRATION.npy``
    The truncated MobileNetV2 (alpha 0.35, 224 px, no top: its last layer is ``out_relu``) that
    Teachable Machine fetches from Google storage, with seeded random weights, as a TF.js layers
    model (``model.json`` + shards) in OUT_DIR.
``to-keras MODEL_JSON OUT_H5 [TM_SERVER_FORM]``
    tensorflowjs's own converter, ``--input_format tfjs_layers_model --output_format keras``:
    how Teachable Machine makes ``keras_model.h5``; then (TM_SERVER_FORM 1, the default) its
    metadata as TM's Keras 2.4 writes it (see ``to_tm_server_form``).
``predict H5 IMAGES.npy OUT.npy``
    tf_keras ``load_model(H5, compile=False)`` on uint8 images, scaled ``x / 127 - 1`` as TM does.
``tflite H5 OUT_FILE REPRESENTATIVE.npy QUANTIZED``
    tf_keras's ``TFLiteConverter``: float, or (QUANTIZED = 1) full integer with uint8 input and output.
"""

from __future__ import annotations

import json
import os
import sys

# Before TensorFlow is imported: Keras 2 everywhere in this process, and quiet logs.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _scale(images: np.ndarray) -> np.ndarray:
    """Teachable Machine's input scaling (``capture`` in its utils/tf.ts): ``x / 127 - 1``."""
    return images.astype(np.float32) / 127.0 - 1.0


def _with_conv1_pad(model):
    """Keras's MobileNetV2 as it was when Google stored TM's copy: a ``Conv1_pad`` ZeroPadding2D
    ((0, 1), (0, 1)) before a ``valid`` Conv1 (keras-applications ≤ 1.0.8; later Keras pads inside
    Conv1 with ``same``). Same output shapes; a real TM keras_model.h5 has this layer."""
    import tf_keras

    config = model.get_config()
    layers = config["layers"]
    at = next(i for i, layer in enumerate(layers) if layer["config"]["name"] == "Conv1")
    source = layers[at]["inbound_nodes"]
    layers[at]["config"]["padding"] = "valid"
    layers[at]["inbound_nodes"] = [[["Conv1_pad", 0, 0, {}]]]
    layers.insert(at, {"class_name": "ZeroPadding2D", "name": "Conv1_pad", "inbound_nodes": source,
                       "config": {"name": "Conv1_pad", "trainable": True, "dtype": "float32",
                                  "padding": ((0, 1), (0, 1)), "data_format": "channels_last"}})
    return tf_keras.Model.from_config(config)


def build_base(out_dir: str, seed: int, calibration_path: str) -> None:
    """Save a seeded, BatchNorm-calibrated MobileNetV2 0.35 / 224 without top as a TF.js layers model."""
    import tensorflowjs as tfjs
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    # Keras's own architecture and layer names (``out_relu`` among them), as in the file TM fetches,
    # ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top``. weights=None: no download.
    model = _with_conv1_pad(tf_keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=0.35, include_top=False, weights=None))
    # Random convolutions under identity BatchNorms blow activations up or kill them, so every
    # image would give the same saturated features. One training-mode pass with momentum 0 sets
    # each BatchNorm's moving statistics to the batch statistics its input really has.
    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(_scale(np.load(calibration_path)), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum  # the saved config keeps Keras's own value
    tfjs.converters.save_keras_model(model, out_dir)


#: Config keys tf_keras 2.19 writes that the Keras 2.4 of TM's converter did not (checked against a
#: real TM keras_model.h5, keras_version 2.4.0): per layer, and per class.
_NEWER_KEYS = ("module", "registered_name", "build_config")
_NEWER_CONFIG_KEYS = {"Functional": ("trainable",), "GlobalAveragePooling2D": ("keepdims",)}
TM_KERAS_VERSION = "2.4.0"


def _as_keras_2_4(config):
    """``config`` (a model_config tree) without the keys Keras 2.4 did not write."""
    if isinstance(config, list):
        return [_as_keras_2_4(item) for item in config]
    if not isinstance(config, dict):
        return config
    tree = {key: _as_keras_2_4(value) for key, value in config.items() if key not in _NEWER_KEYS}
    if isinstance(tree.get("config"), dict):
        for key in _NEWER_CONFIG_KEYS.get(tree.get("class_name"), ()):
            tree["config"].pop(key, None)
    return tree


def to_tm_server_form(h5: str) -> None:
    """Rewrite the h5's metadata as TM's converter (tf.keras 2.4) writes it: the model_config without
    the newer keys, ``keras_version`` 2.4.0, and layer/weight names as fixed-length byte strings.
    The weights are untouched. This is what makes Keras 3 fail the way TM users see
    (``Unrecognized keyword arguments passed to DepthwiseConv2D: {'groups': 1}``); tf_keras 2.19's
    own file fails earlier, on its ``module`` keys (``Could not locate class 'Functional'``)."""
    import h5py

    with h5py.File(h5, "r+") as f:
        f.attrs["model_config"] = json.dumps(_as_keras_2_4(json.loads(f.attrs["model_config"])))
        f.attrs["keras_version"] = TM_KERAS_VERSION
        weights = f["model_weights"]
        weights.attrs["keras_version"] = TM_KERAS_VERSION
        for group in [weights, *(weights[name] for name in weights)]:
            for key in ("layer_names", "weight_names"):
                if key in group.attrs:
                    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs[key]]
                    group.attrs[key] = np.array([n.encode() for n in names])


def to_keras(model_json: str, out_h5: str, tm_server_form: bool = True) -> None:
    """tensorflowjs_converter --input_format tfjs_layers_model --output_format keras MODEL_JSON OUT_H5,
    then (by default) ``to_tm_server_form``."""
    from tensorflowjs.converters import converter

    converter.convert(["--input_format", "tfjs_layers_model", "--output_format", "keras", model_json, out_h5])
    if tm_server_form:
        to_tm_server_form(out_h5)


def predict(h5: str, images_path: str, out_path: str) -> None:
    """Probabilities from the h5 as TM's Keras snippet computes them (load_model, compile=False)."""
    import tf_keras

    model = tf_keras.models.load_model(h5, compile=False)
    np.save(out_path, model.predict(_scale(np.load(images_path)), batch_size=8, verbose=0))


def to_tflite(h5: str, out_file: str, representative_path: str, quantized: bool) -> None:
    """The h5 as a TFLite flatbuffer (batch 1, as TM's files have): float, or full integer with
    uint8 input and output.

    ``TFLiteConverter.from_concrete_functions`` on the model's inference function, without the
    model as trackable object: the same converter and ops as ``from_keras_model``, which here spends
    ~100 s saving a SavedModel before a 4 s conversion."""
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(h5, compile=False)
    infer = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([infer.get_concrete_function()])
    if quantized:
        representative = _scale(np.load(representative_path))

        def samples():
            for image in representative:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with open(out_file, "wb") as f:
        f.write(converter.convert())


def run(command: str, args: list[str]) -> None:
    """One command (see the module's docstring)."""
    if command == "base":
        build_base(args[0], int(args[1]), args[2])
    elif command == "to-keras":
        to_keras(args[0], args[1], len(args) < 3 or args[2] == "1")
    elif command == "predict":
        predict(args[0], args[1], args[2])
    elif command == "tflite":
        to_tflite(args[0], args[1], args[2], args[3] == "1")
    else:
        raise SystemExit(f"unknown command {command!r}")


def main(argv: list[str]) -> None:
    """``COMMAND ARGS...``, or one JSON list of ``[COMMAND, ARGS...]`` jobs run in order in this
    process (TensorFlow's start-up is most of a job's time)."""
    if argv and argv[0].startswith("["):
        for job in json.loads(argv[0]):
            run(job[0], job[1:])
    else:
        run(argv[0], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
