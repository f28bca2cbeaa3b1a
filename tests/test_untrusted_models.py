"""Untrusted model files cost nothing before they are checked (issue 28, item 2): a layers config
is costed as data before Keras builds it, JSON nesting is bounded, HDF5 links and dtypes are
checked on every path and at their real size, an uploaded .tflite is checked against TFLite's
schema and first run in a child process, and a bundle's ``vision.json`` never drives int8
calibration. The hostile files come from ``hostile_models`` (also used by ``bench/bench_load.py``,
which measures the time and memory of each refusal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vision.bundle.teachable import import_teachable
from vision.errors import InvalidModelFileError

from hostile_models import (
    conv_bomb_zip,
    crashing_tflite_zip,
    dense_bomb_zip,
    keras_h5_zip,
    nested_json_zip,
    tflite_classifier,
    tflite_zip,
)

REPO = Path(__file__).resolve().parents[1]


def _import_in_a_fresh_process(archive: Path, out: Path) -> dict:
    """``import_teachable`` in a new interpreter: what it raised, and whether Keras or
    TensorFlow were imported by the time it did (a config costed as data needs neither)."""
    code = ("import json, sys\n"
            "from vision.bundle.teachable import import_teachable\n"
            "try:\n"
            "    import_teachable(sys.argv[1], sys.argv[2]); error = None\n"
            "except Exception as e:\n"
            "    error = f'{type(e).__name__}: {e}'\n"
            "print(json.dumps({'error': error, 'keras': 'keras' in sys.modules,"
            " 'tensorflow': 'tensorflow' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(archive), str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_config_cost_counts_what_keras_builds():
    """Every allowlisted layer type's shape and parameter rule, against the model Keras builds
    from the same config (strides, valid and same padding, dilation, merges, pooling, flatten)."""
    import keras

    from vision.models.layers_config import config_cost, rebuild

    image = keras.Input((33, 29, 3))
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 3)))(image)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", use_bias=False)(x)
    x = keras.layers.BatchNormalization(center=False)(x)
    x = keras.layers.ReLU(6.0)(x)
    branch = keras.layers.DepthwiseConv2D(5, padding="same", depth_multiplier=2)(x)
    branch = keras.layers.Conv2D(6, 1, dilation_rate=2, padding="same")(branch)
    x = keras.layers.Add()([x, branch])
    x = keras.layers.Concatenate()([x, keras.layers.Multiply()([x, x])])
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    x = keras.layers.AveragePooling2D(2, padding="same")(x)
    pooled = keras.layers.GlobalMaxPooling2D(keepdims=True)(x)
    x = keras.layers.Flatten()(keras.layers.Multiply()([x, pooled]))
    x = keras.layers.Dropout(0.1)(keras.layers.Dense(7, activation="relu")(x))
    x = keras.layers.Dense(3, activation="softmax")(keras.layers.Activation("tanh")(x))
    model = keras.Model(image, x)
    topology = json.loads(json.dumps({"class_name": "Functional", "config": model.get_config()}))
    cost = config_cost(topology, "model.json")
    sizes = [int(np.prod(layer.output.shape[1:])) for layer in model.layers]
    assert cost.parameters == model.count_params() == rebuild(topology, "model.json").model.count_params()
    assert cost.activations == sum(sizes) and cost.largest == max(sizes)
    assert cost.weight_bytes == 4 * model.count_params()


def test_the_issues_model_json_is_refused_from_its_config_alone(tmp_path):
    """The ~300-byte Flatten(32x32x4) -> Dense(65536): refused with the figure, and neither Keras
    nor TensorFlow imported (building it is what cost 5.4 GB and 8 s)."""
    archive = dense_bomb_zip(tmp_path / "bomb.zip")
    answer = _import_in_a_fresh_process(archive, tmp_path / "out")
    assert answer["error"] == ("InvalidModelFileError: model.json: 268,500,992 parameters is over the "
                               "50,000,000 accepted")
    assert not answer["keras"] and not answer["tensorflow"]
    assert not (tmp_path / "out").exists()


def test_a_conv_of_65536_filters_at_1024_px_is_refused_by_its_activations(tmp_path):
    """Few parameters (262,144), 68.7 G values per image: the activation bound refuses it."""
    answer = _import_in_a_fresh_process(conv_bomb_zip(tmp_path / "conv.zip"), tmp_path / "out")
    assert answer["error"] == ("InvalidModelFileError: model.json: layer 'c' outputs 68,719,476,736 values per image, "
                               "over the 16,000,000 accepted for one layer")
    assert not answer["keras"]


def test_deeply_nested_json_is_a_clear_refusal(tmp_path):
    with pytest.raises(InvalidModelFileError, match="model.json nests 200,000 levels deep; at most 64"):
        import_teachable(nested_json_zip(tmp_path / "nested.zip"), tmp_path / "out")
    # The bound counts brackets outside strings only: a label may hold any number of them.
    from vision.bundle.teachable import json_depth

    assert json_depth('{"a": ["[[[{{{", {"b": "\\"]]]"}]}') == 3


@pytest.mark.parametrize("link", ["external", "soft"])
def test_hdf5_links_are_refused_on_every_path_component(tmp_path, link):
    """``dense/kernel:0`` where ``dense`` (not the dataset) is an external or soft link."""
    with pytest.raises(InvalidModelFileError, match=r"'dense/kernel:0' passes through a link \('dense'\)"):
        import_teachable(keras_h5_zip(tmp_path / f"{link}.zip", link=link), tmp_path / "out")
    # The same file with hard links only imports (and float64 weights are read as float32).
    bundle = import_teachable(keras_h5_zip(tmp_path / "plain.zip", dtype="float64"), tmp_path / "plain")
    assert json.loads((bundle / "vision.json").read_text())["labels"] == ["cat", "dog"]


def test_hdf5_weights_are_counted_at_their_stored_size(tmp_path, monkeypatch):
    """8 values: 32 bytes as float32, 64 as float64. Under a 40-byte bound only float32 passes."""
    import h5py

    from vision.bundle import teachable

    monkeypatch.setattr(teachable, "MAX_WEIGHT_BYTES", 40)
    for dtype, accepted in (("float32", True), ("float64", False)):
        keras_h5_zip(tmp_path / f"{dtype}.zip", dtype=dtype)
        with h5py.File(tmp_path / f"{dtype}-files" / "keras_model.h5", "r") as h5:
            if accepted:
                weights = teachable._h5_weights(h5["model_weights"], "keras_model.h5")
                assert sorted(weights) == ["dense/bias:0", "dense/kernel:0"]
            else:
                with pytest.raises(InvalidModelFileError, match="weights over 40 bytes"):
                    teachable._h5_weights(h5["model_weights"], "keras_model.h5")


def test_any_failure_reading_hdf5_is_a_refusal(tmp_path):
    """A ``weight_names`` attribute that is a number (h5py: TypeError), and a truncated file."""
    import h5py

    archive = keras_h5_zip(tmp_path / "odd.zip")
    h5_path = tmp_path / "odd-files" / "keras_model.h5"
    with h5py.File(h5_path, "a") as h5:
        h5["model_weights/dense"].attrs["weight_names"] = 5
    folder = tmp_path / "odd-export"
    folder.mkdir()
    (folder / "keras_model.h5").write_bytes(h5_path.read_bytes())
    (folder / "labels.txt").write_text("0 cat\n1 dog\n")
    with pytest.raises(InvalidModelFileError, match=r"keras_model.h5 is not a readable Keras HDF5 file \(TypeError\)"):
        import_teachable(folder, tmp_path / "out")
    (folder / "keras_model.h5").write_bytes(h5_path.read_bytes()[:3000])
    with pytest.raises(InvalidModelFileError, match="is not a readable Keras HDF5 file"):
        import_teachable(folder, tmp_path / "out")
    assert archive.is_file() and not (tmp_path / "out").exists()


def test_a_tflite_that_crashes_litert_is_refused_by_its_schema_and_in_a_child():
    from vision.bundle.tflite_check import run_isolated, validate_flatbuffer

    crashing = tflite_classifier(crash=True)
    with pytest.raises(InvalidModelFileError, match=r"operator 0's \(CONV_2D\) inputs name tensor -1"):
        validate_flatbuffer(crashing, "model.tflite")
    # Past the schema check, LiteRT segfaults on it: in the child, which this process outlives.
    with pytest.raises(InvalidModelFileError, match=r"model.tflite crashes LiteRT \(SIGSEGV\)"):
        run_isolated(crashing, "model.tflite")
    valid = tflite_classifier()
    assert validate_flatbuffer(valid, "model.tflite")["operators"] == ["CONV_2D", "MEAN", "SOFTMAX"]
    assert run_isolated(valid, "model.tflite") == {
        "input": {"shape": [1, 8, 8, 3], "dtype": "float32", "scale": 0.0, "zero_point": 0},
        "output": {"shape": [1, 2], "dtype": "float32", "scale": 0.0, "zero_point": 0}}


@pytest.mark.parametrize("damage", ["buffer", "operator", "data"])
def test_the_tflite_schema_check_names_what_is_wrong(damage):
    """Each field LiteRT would trust, damaged in an otherwise valid flatbuffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from vision.bundle.tflite_check import validate_flatbuffer

    model = schema.ModelT.InitFromPackedBuf(tflite_classifier(), 0)
    expected = {"buffer": "tensor 1 points at buffer 99; there are 8",
                "operator": "operator 1 is not one an image classifier needs",
                "data": r"tensor 1 has 4 bytes of data; its shape \[2, 1, 1, 3\] needs 24"}[damage]
    if damage == "buffer":
        model.subgraphs[0].tensors[1].buffer = 99
    elif damage == "operator":
        model.operatorCodes[1].builtinCode = model.operatorCodes[1].deprecatedBuiltinCode = \
            schema.BuiltinOperator.GATHER
    else:
        model.buffers[2].data = [0, 0, 0, 0]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(InvalidModelFileError, match=expected):
        validate_flatbuffer(bytes(builder.Output()), "model.tflite")


def test_import_tm_refuses_a_crashing_tflite_with_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vision", "import-tm", str(crashing_tflite_zip(tmp_path / "c.zip")),
                           "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-1000:])
    assert "model_unquant.tflite: operator 0's (CONV_2D) inputs name tensor -1" in done.stderr
    assert not (tmp_path / "out").exists()
    imported = import_teachable(tflite_zip(tmp_path / "ok.zip"), tmp_path / "ok")
    assert json.loads((imported / "vision.json").read_text())["runtime"]["input"]["shape"] == [1, 8, 8, 3]


def test_the_app_refuses_a_crashing_tflite_and_keeps_serving(tmp_path, shapes_folder):
    """Through the Models view of a running app (its own process): the import is refused with
    the reason, the app is alive, and it still classifies."""
    import shutil

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from vision.defaults import SHAPES_MODEL

    from app_server import free_port, running

    models = tmp_path / "models"
    shutil.copytree(SHAPES_MODEL, models / "shapes")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "VISION_MODELS_DIR": str(models), "VISION_PUBLIC": "0"}
    command = [sys.executable, "app.py", "--model", str(models / "shapes"), "--port", str(port)]
    with running(command, url, timeout=300, cwd=REPO, env=env) as process:
        client = Client(url, verbose=False)
        # Either gate may refuse it (the schema check first; the child's run if that missed it).
        with pytest.raises(AppError, match=r"model_unquant.tflite(: operator 0's \(CONV_2D\) inputs name tensor -1"
                                           r"| crashes LiteRT \(SIGSEGV\))"):
            client.predict(handle_file(str(crashing_tflite_zip(tmp_path / "crash.zip"))), "crash",
                           api_name="/import_teachable_machine")
        assert process.poll() is None
        assert urllib.request.urlopen(url, timeout=10).status == 200
        image = next((shapes_folder / "val").rglob("*.png"))
        result, _ = client.predict(handle_file(str(image)), 3, api_name="/classify")
        assert result["confidences"]
    assert not (models / "crash").exists()


def test_a_bundles_recorded_dataset_never_drives_int8_calibration(tiny_bundle, shapes_folder, tmp_path):
    """``vision.json``'s ``dataset.source`` from a pulled or imported bundle is data: a real
    folder, "synth:5000000" (20 M renders), "/" (the whole disk) or "synth:x" are never loaded;
    calibration takes the images the caller gives, else package photos."""
    import shutil

    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_dataset, load_folder
    from vision.data.images import preprocess
    from vision.errors import DatasetError
    from vision.export.int8 import calibration_images, export_full_integer

    def recorded(source: str) -> Path:
        folder = tmp_path / f"bundle-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_bundle, folder)
        info = json.loads((folder / "vision.json").read_text())
        (folder / "vision.json").write_text(json.dumps({**info, "dataset": {**info["dataset"], "source": source}}))
        return folder

    # A folder that is really there first: read, it would say "training images".
    for source in (str(shapes_folder), "synth:5000000", "/", "synth:x"):
        images, described = calibration_images(load_bundle(recorded(source)), count=6)
        assert len(images) == 6 and described.startswith("6 package photos"), (source, described)
    given, described = calibration_images(load_bundle(tiny_bundle), count=6, images=load_folder(shapes_folder).train)
    assert described == "6 training images"
    # The int8 export itself (its agreement check aside: a one-epoch model is no int8 benchmark).
    bundle = load_bundle(recorded("/"))
    (tmp_path / "int8").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (2, *bundle.preprocessing.size, 3)).astype(np.uint8)
    _, info = export_full_integer(bundle, tmp_path / "int8", np.asarray(preprocess(pixels, bundle.preprocessing)),
                                  "int8")
    assert info["calibration"].startswith("96 package photos") and (tmp_path / "int8" / "model.tflite").is_file()
    with pytest.raises(DatasetError, match="synth:N with N from 2 to 10,000"):
        load_dataset("synth:x")


def test_the_export_view_calibrates_on_the_sessions_own_samples(tiny_bundle, shapes_folder, tmp_path):
    """When the session's classes are the model's (a model trained here from them), int8 is
    calibrated on those samples; otherwise on package photos, never a recorded folder."""
    import shutil

    from vision.bundle.store import load_bundle
    from vision.ui.export import _session_images
    from vision.ui.session import Session

    bundle = load_bundle(tiny_bundle)
    session = Session(root=tmp_path / "session")
    for name in bundle.labels:
        shutil.copytree(shapes_folder / "train" / name, session.samples.root / name)
    split = _session_images(session, bundle)
    assert split is not None and sorted(split.paths) == sorted(str(p) for p in session.samples.root.rglob("*.png"))
    shutil.rmtree(session.samples.root / bundle.labels[0])
    assert _session_images(session, bundle) is None
