"""The CLI end to end: synth -> train every registered model -> bundles that Keras and
vision both load with identical predictions; predict (without TensorFlow once converted),
evaluate, models; user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vision.cli import main
from vision.data.photos import example_photos
from vision.models.registry import list_models
from vision.runtime.tflite import ENGINE_VARIABLE

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "shapes"
    assert main(["synth", str(out), "--per-class", "6", "--size", "32", "--seed", "2"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("architecture", [spec.name for spec in list_models()])
def test_train_every_model_and_round_trip(architecture, synth_folder, tmp_path):
    import keras

    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_folder
    from vision.data.images import load_image, preprocess
    from vision.runtime.inference import Classifier

    out = tmp_path / architecture
    code = main(["train", str(synth_folder), "--model", architecture, "--out", str(out), "--size", "32",
                 "--epochs", "1", "--batch-size", "8", "--weights", "none"])
    assert code == 0
    info = json.loads((out / "vision.json").read_text())
    assert info["architecture"] == architecture
    assert (out / "training_curves.png").stat().st_size > 1000

    images = np.random.default_rng(0).random((3, 32, 32, 3), np.float32)
    by_keras = np.asarray(keras.saving.load_model(out)(images, training=False))
    bundle = load_bundle(out)
    by_vision = np.asarray(bundle.model(images, training=False))
    np.testing.assert_array_equal(by_keras, by_vision)
    # The recorded accuracy is the saved model's on the validation split, recomputed here.
    val = load_folder(synth_folder).val
    pixels = preprocess(np.stack([load_image(path) for path in val.paths]), bundle.preprocessing)
    predicted = np.asarray(bundle.model(pixels, training=False)).argmax(1)
    assert info["metrics"]["samples"] == len(val.labels) == 4
    assert info["metrics"]["accuracy"] == pytest.approx(np.mean(predicted == val.labels))
    classifier = Classifier(bundle)
    pixels = (images * 255).round().astype(np.uint8)
    for pixel_image, expected in zip(pixels, np.asarray(bundle.model(pixels / 255.0, training=False))):
        np.testing.assert_allclose(classifier.probabilities(pixel_image), expected, atol=1e-4)


def test_predict_evaluate_and_models_commands(tiny_bundle, shapes_folder, tmp_path, capsys):
    image = next((shapes_folder / "val" / "circle").iterdir())
    assert main(["predict", str(image), "--model", str(tiny_bundle), "--json", "--top-k", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    first, second = line["predictions"]
    assert first["probability"] >= second["probability"]

    confusion = tmp_path / "cm.png"
    assert main(["evaluate", str(shapes_folder), "--model", str(tiny_bundle), "--confusion", str(confusion)]) == 0
    assert "accuracy" in capsys.readouterr().out and confusion.stat().st_size > 1000

    assert main(["models", "--root", str(tiny_bundle.parent)]) == 0
    listing = capsys.readouterr().out
    assert "mobilenet_v2" in listing and "tiny" in listing


# The landed path's interpreter warns that it is deprecated: that is why LiteRT replaced it.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_predict_on_a_converted_bundle_imports_no_tensorflow(tiny_bundle, monkeypatch, capsys):
    """``python -m vision predict`` on a bundle converted before: decode and LiteRT only (no
    TensorFlow, no Keras), and the same answer as the landed path (``tf.lite.Interpreter``)."""
    photo = str(example_photos()[1])
    # In this process: converts the bundle if no test has yet (cached for the run below), then
    # answers on tf.lite.Interpreter, as the CLI did before LiteRT.
    monkeypatch.setenv(ENGINE_VARIABLE, "tensorflow")
    assert main(["predict", photo, "--model", str(tiny_bundle), "--json"]) == 0
    before = capsys.readouterr().out.strip()
    script = ("import runpy, sys\n"
              f"sys.argv = ['vision', 'predict', {photo!r}, '--model', {str(tiny_bundle)!r}, '--json']\n"
              "try:\n    runpy.run_module('vision', run_name='__main__')\nexcept SystemExit as stop:\n"
              "    print('exit', stop.code, *sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    env = {name: value for name, value in os.environ.items() if name != ENGINE_VARIABLE}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO)
    *answer, last = run.stdout.strip().splitlines()
    assert last == "exit 0", f"{last}\n{run.stderr}"
    assert answer == [before]
    assert json.loads(before)["familiarity"] is not None  # the detector answered too


def test_the_default_model_is_found_without_tensorflow():
    """``predict`` without ``--model`` (the everyday-objects model, built at set-up) finds it
    without importing TensorFlow: building it, which does, happens only when it is missing."""
    from vision.zoo.everyday import default_model

    built = default_model()  # set-up has built it; built here (~5 s) where it has not
    script = ("import sys\nfrom vision.cli import DEFAULT, resolve_model\nprint(resolve_model(DEFAULT))\n"
              "print(*sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [str(built), ""]


def test_user_errors_print_one_line_and_exit_2(tmp_path, tiny_bundle):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad_image = tmp_path / "bad.png"
    bad_image.write_text("nope")
    cases = [
        (["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "does not exist"),
        (["predict", str(bad_image), "--model", str(tiny_bundle)], "not an image"),
        (["predict", str(bad_image), "--model", str(tmp_path / "nomodel")], "no model bundle"),
        (["train", "synth:4", "--model", "vgg99", "--out", str(tmp_path / "o")], "unknown model 'vgg99'"),
    ]
    for args, message in cases:
        run = subprocess.run([sys.executable, "-m", "vision", *args], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300)
        assert run.returncode == 2, (args, run.stderr)
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], run.stderr
        assert "Traceback" not in run.stderr
    assert not (tmp_path / "o").exists()
