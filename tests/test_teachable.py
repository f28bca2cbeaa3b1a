"""Teachable Machine's formats, both ways, on files made here: the export back to TM's format and
its import again (every runtime agrees), the CLI, Grad-CAM on an import, and hostile imports.

The imports of genuine TM exports, made by TM's own library in Chromium, are in
``test_teachable_genuine.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vision.bundle.store import load_bundle
from vision.bundle.teachable import import_teachable, read_labels
from vision.data.images import Preprocessing, preprocess
from vision.errors import ExportError, InvalidModelFileError, UnsafeArchiveError

REPO = Path(__file__).resolve().parents[1]


def _images(size: tuple[int, int], count: int = 4) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (count, *size, 3)).astype(np.uint8)


def test_export_holds_both_tm_formats_and_their_zips(tm_export: Path, tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    metadata = json.loads((tm_export / "tfjs" / "metadata.json").read_text())
    assert metadata["labels"] == bundle.labels
    assert metadata["imageSize"] == bundle.preprocessing.size[0]
    assert metadata["packageName"] == "@teachablemachine/image"
    model = json.loads((tm_export / "tfjs" / "model.json").read_text())
    assert model["format"] == "layers-model"
    assert model["modelTopology"]["model_config"]["class_name"] == "Model"
    assert read_labels(tm_export / "keras" / "labels.txt") == bundle.labels
    with zipfile.ZipFile(tm_export / "converted_keras.zip") as zf:
        assert sorted(zf.namelist()) == ["keras_model.h5", "labels.txt"]
    with zipfile.ZipFile(tm_export / "tm-tfjs-model.zip") as zf:
        assert sorted(zf.namelist()) == ["metadata.json", "model.json", "weights.bin"]
    parity = json.loads((tm_export / "parity.json").read_text())
    assert parity["top1_agreement"] == 1.0 and parity["max_abs_dp"] < 1e-5


def test_tm_snippet_runs_on_the_keras_export_and_agrees(tm_export: Path, tiny_bundle: Path) -> None:
    """TM's published Python snippet's calls, unchanged: keras.models.load_model(compile=False),
    labels.txt lines, (x / 127.5) - 1, predict, then its ``[2:]`` label cut."""
    bundle = load_bundle(tiny_bundle)
    images = _images(bundle.preprocessing.size)
    script = (
        "import sys, numpy as np\n"
        "from keras.models import load_model\n"
        "model = load_model(sys.argv[1] + '/keras_model.h5', compile=False)\n"
        "class_names = open(sys.argv[1] + '/labels.txt', 'r').readlines()\n"
        "data = (np.load(sys.argv[2]).astype(np.float32) / 127.5) - 1\n"
        "prediction = model.predict(data, verbose=0)\n"
        "np.save(sys.argv[3], prediction)\n"
        "print(class_names[int(np.argmax(prediction[0]))][2:].strip())\n")
    np.save(tm_export.parent / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", script, str(tm_export / "keras"), str(tm_export.parent / "images.npy"),
                           str(tm_export.parent / "snippet.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    snippet = np.load(tm_export.parent / "snippet.npy")
    expected = bundle.model(preprocess(images, bundle.preprocessing)).numpy()
    assert np.abs(snippet - expected).max() < 1e-5
    assert done.stdout.strip().splitlines()[-1] == bundle.labels[int(expected[0].argmax())]


@pytest.mark.parametrize("kind", ["tfjs", "keras"])
def test_an_export_imports_back_to_the_same_answers(kind: str, tm_export: Path, tiny_bundle: Path,
                                                    tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    imported = load_bundle(import_teachable(tm_export / ("tm-tfjs-model.zip" if kind == "tfjs" else
                                                         "converted_keras.zip"), tmp_path / "back"))
    assert imported.labels == bundle.labels
    assert imported.info["source"]["export"] == kind
    assert imported.preprocessing.crop == "center"
    images = _images(bundle.preprocessing.size)  # square: the centre crop keeps every pixel
    expected = bundle.model(preprocess(images, bundle.preprocessing)).numpy()
    got = imported.model(preprocess(images, imported.preprocessing)).numpy()
    assert np.abs(got - expected).max() < 1e-5


def test_cli_import_and_grad_cam_on_the_import(tm_export: Path, tmp_path: Path) -> None:
    from vision.explain.cam import Explainer

    env = {**os.environ, "VISION_NATIVE_LOGS": "1"}
    out = tmp_path / "imported"
    done = subprocess.run([sys.executable, "-m", "vision", "import-tm", str(tm_export / "tm-tfjs-model.zip"),
                           "--out", str(out), "--name", "from-tm"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported Teachable Machine's tfjs export" in done.stdout
    bundle = load_bundle(out)
    assert bundle.name == "from-tm"
    image = _images(bundle.preprocessing.size, 1)[0]
    explanation = Explainer.from_bundle(bundle).explain(image)
    assert explanation.heatmap.shape == image.shape[:2] and np.isfinite(explanation.heatmap).all()
    assert explanation.heatmap.max() > 0


def test_centre_crop_takes_the_middle_square() -> None:
    spec = Preprocessing(size=(2, 2), scale=1.0, offset=0.0, crop="center")
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, 2:6] = 200  # the centred 4x4 square
    assert np.allclose(np.asarray(preprocess(image, spec)), 200)
    assert Preprocessing.from_dict(spec.to_dict()) == spec
    gray = Preprocessing(size=(1, 1), scale=1.0, offset=0.0, grayscale=True)
    assert np.asarray(preprocess(np.full((1, 1, 3), 100, np.uint8), gray)).shape == (1, 1, 1)


# --- hostile and malformed imports ---------------------------------------------------------------

def _tfjs_copy(tm_export: Path, target: Path, change) -> Path:  # noqa: ANN001 - a small test helper
    folder = target / "tfjs"
    folder.mkdir(parents=True)
    for name in ("metadata.json", "weights.bin"):
        (folder / name).write_bytes((tm_export / "tfjs" / name).read_bytes())
    model = json.loads((tm_export / "tfjs" / "model.json").read_text())
    change(model)
    (folder / "model.json").write_text(json.dumps(model))
    return folder


def _layers(model: dict) -> list:
    return model["modelTopology"]["model_config"]["config"]["layers"]


def _replace_layer(model: dict, index: int, class_name: str, **config) -> None:  # noqa: ANN003
    layer = _layers(model)[index]
    layer["class_name"] = class_name
    layer["config"].update(config)


@pytest.mark.parametrize("change, message", [
    (lambda m: _replace_layer(m, 2, "Lambda", function="lambda x: __import__('os').system('id')"),
     "layer type 'Lambda' is not accepted"),
    (lambda m: _replace_layer(m, 2, "MyCustomLayer"), "layer type 'MyCustomLayer' is not accepted"),
    (lambda m: _layers(m)[0]["config"].update(batch_input_shape=[None, 100000, 100000, 3]), "input size"),
    (lambda m: m["weightsManifest"][0].update(paths=["../../etc/passwd"]), "not a plain file name"),
    (lambda m: m["weightsManifest"][0]["weights"][0].update(shape=[4096, 4096, 64]), "declares 1,073,741,824"),
    (lambda m: m["weightsManifest"][0]["weights"][0].update(shape=[1000, 1000]), "runs past the end"),
    (lambda m: _layers(m)[1]["config"].update(activation="eval"), "activation 'eval'"),
])
def test_hostile_tfjs_models_are_refused_by_name(change, message: str, tm_export: Path,  # noqa: ANN001
                                                 tmp_path: Path) -> None:
    folder = _tfjs_copy(tm_export, tmp_path, change)
    with pytest.raises(InvalidModelFileError, match=message):
        import_teachable(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_files_get_a_clear_error(tm_export: Path, tmp_path: Path) -> None:
    not_zip = tmp_path / "model.zip"
    not_zip.write_bytes(b"this is not a zip")
    with pytest.raises(InvalidModelFileError, match="not a zip archive"):
        import_teachable(not_zip, tmp_path / "a")
    escaping = tmp_path / "escape.zip"
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("../model.json", "{}")
    with pytest.raises(UnsafeArchiveError):
        import_teachable(escaping, tmp_path / "b")
    broken = _tfjs_copy(tm_export, tmp_path / "c", lambda m: None)
    (broken / "model.json").write_text("{not json")
    with pytest.raises(InvalidModelFileError, match="model.json is not valid JSON"):
        import_teachable(broken, tmp_path / "c-out")
    labels = tmp_path / "d"
    labels.mkdir()
    (labels / "keras_model.h5").write_bytes((tm_export / "keras" / "keras_model.h5").read_bytes())
    (labels / "labels.txt").write_text("0 cat\n2 dog\n")
    with pytest.raises(InvalidModelFileError, match="labels.txt line 2"):
        import_teachable(labels, tmp_path / "d-out")
    with pytest.raises(InvalidModelFileError, match="not a Teachable Machine export"):
        import_teachable(_empty(tmp_path / "e"), tmp_path / "e-out")


def _empty(folder: Path) -> Path:
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    return folder


def test_h5_weights_that_point_outside_the_file_are_refused(tm_export: Path, tmp_path: Path) -> None:
    import h5py

    folder = tmp_path / "keras"
    folder.mkdir()
    (folder / "labels.txt").write_bytes((tm_export / "keras" / "labels.txt").read_bytes())
    h5 = folder / "keras_model.h5"
    h5.write_bytes((tm_export / "keras" / "keras_model.h5").read_bytes())
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as other:
        other["data"] = np.zeros(3, np.float32)
    with h5py.File(h5, "a") as f:
        group = f["model_weights"]
        layer = next(name for name in group if len(group[name].attrs.get("weight_names", [])))
        name = group[layer].attrs["weight_names"][0]
        name = name.decode() if isinstance(name, bytes) else name
        del group[layer][name]
        group[layer][name] = h5py.ExternalLink(str(secret), "data")
    with pytest.raises(InvalidModelFileError, match="passes through a link"):
        import_teachable(folder, tmp_path / "out")



def test_an_import_trains_further_and_gets_an_unknown_detector(tm_export: Path, shapes_folder: Path,
                                                               tiny_bundle: Path, tmp_path: Path) -> None:
    imported = import_teachable(tm_export / "tm-tfjs-model.zip", tmp_path / "imported")
    env = {**os.environ, "VISION_NATIVE_LOGS": "1"}
    out = tmp_path / "further"
    done = subprocess.run([sys.executable, "-m", "vision", "train", str(shapes_folder), "--from", str(imported),
                           "--out", str(out), "--epochs", "2", "--batch-size", "16"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    further = load_bundle(out)
    assert further.labels == load_bundle(imported).labels
    assert further.info["trained_further_from"] == load_bundle(imported).name
    assert further.info["source"]["tool"] == "Teachable Machine"
    assert further.detector is not None  # "unknown" now exists for a model that came without it
    # Too few validation photos for a temperature: fitted on the head's k-fold answers instead.
    assert further.info["calibration"]["method"] == "k-fold out-of-fold"
    assert (out / "reliability.png").is_file()
    assert further.preprocessing == load_bundle(imported).preprocessing
    # Only the head trained: the layers below are the import's, bit for bit.
    before, after = load_bundle(imported).model, further.model
    conv = next(layer.name for layer in before.layers if type(layer).__name__ == "Conv2D")
    for a, b in zip(before.get_layer(conv).get_weights(), after.get_layer(conv).get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_ours_refuses_what_tm_cannot_hold(tmp_path: Path) -> None:
    """An architecture a TF.js layers model cannot hold is named, with the reason."""
    import keras

    from vision.bundle.store import make_info, save_bundle
    from vision.export.formats import export

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(2, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    folder = save_bundle(keras.Model(inputs, outputs), make_info("odd", ["a", "b"], "custom",
                                                                 Preprocessing(size=(32, 32))), tmp_path / "odd")
    with pytest.raises(ExportError, match="LayerNormalization.*cannot hold"):
        export(load_bundle(folder), "teachable-machine", tmp_path / "out")


# --- the "embedded" export: 96x96 grayscale int8 TFLite, any file name --------------------------

def _embedded_tflite() -> bytes:
    """A full-integer TFLite shaped as TM's embedded export: 96x96x1 int8 in, int8 out, made
    by TF's own converter from a tiny Keras model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((96, 96, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 96, 96, 1)).astype(np.float32)]
                                                for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def test_the_embedded_export_imports_and_answers_as_litert_does(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from vision.runtime.inference import Classifier

    flatbuffer = _embedded_tflite()
    archive = tmp_path / "embedded.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("my tiny project 2.tflite", flatbuffer)
        zf.writestr("labels.txt", "0 Class 1\n1 Class 2\n2 Background\n")
    bundle = load_bundle(import_teachable(archive, tmp_path / "bundle"))
    assert bundle.tflite_only and bundle.info["source"]["file"] == "my tiny project 2.tflite"
    assert bundle.preprocessing.grayscale and bundle.preprocessing.size == (96, 96)
    assert bundle.labels == ["Class 1", "Class 2", "Background"]
    classifier = Classifier(bundle)
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert given["dtype"] == np.int8 and list(given["shape"]) == [1, 96, 96, 1]
    rng = np.random.default_rng(5)
    answers = set()
    for _ in range(4):
        # Smooth random photos (not noise), so that the classes' answers differ between them.
        image = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((20, 20, 1))).astype(np.uint8)
        x = np.asarray(preprocess(image[None], bundle.preprocessing), np.float32)  # TM's gray, x / 127 - 1
        scale, zero_point = given["quantization"]
        interpreter.set_tensor(given["index"], np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8))
        interpreter.invoke()
        out_scale, out_zero = taken["quantization"]
        expected = (interpreter.get_tensor(taken["index"])[0].astype(np.float32) - out_zero) * out_scale
        got = classifier.probabilities(image)
        assert np.abs(got - expected).max() < 1e-6
        assert classifier.classify(image).nearest.label == bundle.labels[int(expected.argmax())]
        answers.add(tuple(np.round(expected, 4)))
    assert len(answers) > 1  # the inputs reached the model: its answers moved with them


def test_a_zip_that_is_not_tm_is_named_by_what_it_holds(tmp_path: Path) -> None:
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.tflite", b"x")
        zf.writestr("b.tflite", b"y")
        zf.writestr("labels.txt", "0 a\n1 b\n")
    with pytest.raises(InvalidModelFileError, match=r"2 \.tflite files \(a\.tflite, b\.tflite\)"):
        import_teachable(two, tmp_path / "out")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("saved_model.pb", b"x")
        zf.writestr("notes.txt", b"y")
    with pytest.raises(InvalidModelFileError, match=r"not a Teachable Machine export: it holds 'notes.txt', "
                                                    r"'saved_model.pb'"):
        import_teachable(other, tmp_path / "out")
