"""Full-integer TFLite: int8 inside, the I/O dtypes asked for, held to Keras, QAT, parity.json."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from vision.bundle.store import load_bundle
from vision.cli import main
from vision.data.datasets import load_folder
from vision.data.images import load_image, preprocess
from vision.data.photos import photographed_at
from vision.data.synthetic import make_shapes
from vision.errors import ExportError
from vision.export.formats import export
from vision.export.int8 import calibration_images
from vision.export.parity import PARITY_FILE
from vision.runtime.int8 import convert, run
from vision.runtime.tflite import TFLiteRunner, make_interpreter
from vision.training.qat import (
    FakeQuant,
    activation_ranges,
    fine_tune,
    quantization_aware_model,
    quantized_tensors,
    tflite_ranges,
)
from vision.training.weight_rounding import bias_corrected, int8_kernel, kernel_axes

from conftest import SHAPES_MODEL

FULL_INTEGER = ("int8", "int8-io", "int8-uint8-io")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(SHAPES_MODEL)


@pytest.fixture(scope="module")
def exports(bundle, tmp_path_factory):
    """One export per full-integer quantization and the float one, made once for the module."""
    folder = tmp_path_factory.mktemp("int8")
    return {q: export(bundle, "tflite", folder / str(q), quantize=q) for q in (None, *FULL_INTEGER)}


@pytest.fixture(scope="module")
def new_shapes(bundle):
    """Shapes none of the exports saw (their check uses ``probe_images``, calibration photos)."""
    shapes = make_shapes(per_class=10, size=64, seed=11)
    return np.asarray(preprocess(shapes.images, bundle.preprocessing)), shapes.images


def _interpreter(result):
    return make_interpreter((result.path / "model.tflite").read_bytes())


def _dtypes(interpreter) -> dict[str, int]:
    found: dict[str, int] = {}
    for tensor in interpreter.get_tensor_details():
        name = np.dtype(tensor["dtype"]).name
        found[name] = found.get(name, 0) + 1
    return found


@pytest.mark.parametrize("quantize, io", [("int8", "float32"), ("int8-io", "int8"), ("int8-uint8-io", "uint8")])
def test_every_tensor_is_int8_but_the_io_asked_for(exports, quantize, io):
    interpreter = _interpreter(exports[quantize])
    ends = [interpreter.get_input_details()[0], *interpreter.get_output_details()]
    assert {np.dtype(d["dtype"]).name for d in ends} == {io}
    # Weights and activations int8, biases int32 (as TFLite stores them); nothing else but the two ends.
    dtypes = _dtypes(interpreter)
    assert dtypes.pop("int8") > 30 and dtypes.pop("int32") > 10
    assert dtypes == ({} if io == "int8" else {io: len(ends)})
    # Conv kernels carry one scale per output channel (as vision.training.weight_rounding assumes).
    kernels = [t for t in interpreter.get_tensor_details() if len(t["shape"]) == 4 and t["dtype"] == np.int8
               and len(t["quantization_parameters"]["scales"]) > 1]
    assert kernels and all(len(t["quantization_parameters"]["scales"]) == t["shape"][0] for t in kernels)


def test_integer_io_takes_the_resized_pixels_as_they_are(exports, new_shapes):
    floats, pixels = new_shapes
    reference = run(TFLiteRunner((exports["int8"].path / "model.tflite").read_bytes()), floats)[0]
    for quantize, as_input in (("int8-uint8-io", lambda p: p.astype(np.uint8)),
                               ("int8-io", lambda p: (p.astype(np.int16) - 128).astype(np.int8))):
        meta = json.loads((exports[quantize].path / "metadata.json").read_text())
        described = meta["full_integer"]["input"]
        assert meta["input"]["dtype"] == described["dtype"] and described["pixels_exact"] is True
        assert described["from_pixels"] == ("q = pixel" if quantize == "int8-uint8-io" else "q = pixel - 128")
        output = next(o for o in meta["full_integer"]["outputs"] if o["output"] == "probabilities")
        runner = TFLiteRunner((exports[quantize].path / "model.tflite").read_bytes())
        raw = runner.batch(as_input(pixels))[0]
        assert raw.dtype == np.dtype(output["dtype"])
        # Dequantized with what metadata.json says, pixels fed raw: the float-I/O model's answers.
        probabilities = (raw.astype(np.float32) - output["zero_point"]) * output["scale"]
        np.testing.assert_allclose(probabilities, reference, atol=1.5 / 256)
        assert (probabilities.argmax(1) == reference.argmax(1)).all()


def test_int8_agrees_with_keras_on_new_shapes_and_is_a_quarter_of_the_size(bundle, exports, new_shapes):
    floats, _ = new_shapes
    keras_p = np.asarray(bundle.model(floats, training=False))
    answers = run(TFLiteRunner((exports["int8"].path / "model.tflite").read_bytes()), floats)[0]
    assert np.mean(answers.argmax(1) == keras_p.argmax(1)) == 1.0
    # Measured 5e-3: int8 rounding moves the probabilities a little, and only a little.
    assert 1e-4 < np.abs(answers - keras_p).max() < 0.03
    assert exports["int8"].size_bytes <= 0.3 * exports[None].size_bytes
    assert exports["int8"].top1_agreement == 1.0 and exports["int8"].metadata["full_integer"]["method"] == "ptq"


def test_parity_json_holds_the_checks_figures(exports):
    for quantize, result in exports.items():
        parity = json.loads((result.path / PARITY_FILE).read_text())
        assert parity == result.parity
        assert parity["size_bytes"] == result.size_bytes == (result.path / "model.tflite").stat().st_size
        verification = result.metadata["verification"]
        assert parity["top1_agreement"] == verification["top1_agreement"] == result.top1_agreement
        assert parity["max_abs_dp"] == verification["max_abs_dp"] <= verification["max_abs_diff"]
        assert parity["images"] == result.checked_images and parity["quantization"] == quantize
        assert 0 < parity["latency_ms"] < 1000 and parity["latency_runtime"].startswith("LiteRT")


def test_bias_correction_cancels_the_mean_shift_of_rounded_kernels(bundle, new_shapes):
    floats, _ = new_shapes
    model = bundle.model
    corrected = bias_corrected(model, floats)
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    for copy in (plain, corrected):  # both rounded to the int8 grid, as the converter will
        for layer in copy.layers:
            if kernel_axes(layer):
                layer.kernel.assign(int8_kernel(layer.kernel.numpy(), kernel_axes(layer)))
    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]

    def channel_means(m):
        outputs = keras.Model(m.input, [m.get_layer(n).output for n in names])(floats, training=False)
        return [np.asarray(o).mean(axis=(0, 1, 2)) for o in outputs]

    truth, before, after = channel_means(model), channel_means(plain), channel_means(corrected)
    shift_before = np.mean([np.abs(b - t).mean() for b, t in zip(before, truth)])
    shift_after = np.mean([np.abs(a - t).mean() for a, t in zip(after, truth)])
    assert shift_after < 0.5 * shift_before, (shift_before, shift_after)
    np.testing.assert_array_equal(model.get_layer(names[0]).moving_mean.numpy(),
                                  load_bundle(SHAPES_MODEL).model.get_layer(names[0]).moving_mean.numpy())


def test_calibration_takes_the_training_images_it_is_given(bundle, shapes_folder):
    images, source = calibration_images(bundle, count=8, images=load_folder(shapes_folder).train)
    assert "8 training images" in source and len(images) == 8
    train = load_folder(shapes_folder).train
    candidates = [(photographed_at(load_image(path), (64, 64)), label)
                  for path, label in zip(train.paths, train.labels)]
    # The first image spans 0..255 (one black and one white pixel), so the quantized input is the pixel.
    assert images[0][0, 0].max() == 0 and images[0][-1, -1].min() == 255
    inside = np.ones((64, 64), bool)
    inside[0, 0] = inside[-1, -1] = False
    labels = [next(label for candidate, label in candidates if np.array_equal(candidate[inside], image[inside]))
              for image in images]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2, 3, 3]  # training images, the classes taking turns
    # Without them: package photos (what vision.json records is never read: test_untrusted_models.py).
    fallback, source = calibration_images(bundle, count=12)
    assert len(fallback) == 12 and "package photos" in source and fallback[3].shape == (64, 64, 3)


def test_fake_quant_and_kernels_land_on_tflites_grids():
    x = np.linspace(-1, 7, 1001, dtype=np.float32)
    rounded = np.asarray(FakeQuant(0.0, 6.0)(x))
    steps = rounded / (6 / 255)
    assert rounded.min() == 0 and rounded.max() == pytest.approx(6.0)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32) * np.arange(1, 6)
    grid = np.asarray(int8_kernel(kernel, (3,)))
    for channel in range(5):
        scale = np.abs(kernel[..., channel]).max() / 127
        np.testing.assert_allclose(grid[..., channel] / scale, np.round(kernel[..., channel] / scale), atol=1e-3)


def test_the_qat_simulation_computes_what_tflite_int8_computes(bundle, new_shapes):
    floats, _ = new_shapes
    model = bias_corrected(bundle.model, floats)
    logits = keras.Model(model.input, model.get_layer("logits").output)
    flatbuffer = convert(logits, floats)
    ranges = activation_ranges(logits, floats)
    ranges.update(tflite_ranges(flatbuffer, list(ranges)))
    simulated = quantization_aware_model(logits, ranges)
    # After each fused conv + batch norm + ReLU, each addition, the pooling and the logits.
    assert [layer.name for layer in simulated.layers if isinstance(layer, FakeQuant)] == \
        [f"{name}_fake_quant" for name in quantized_tensors(logits)]
    assert "stem_relu" in quantized_tensors(logits) and "stem_conv" not in quantized_tensors(logits)
    tflite = run(TFLiteRunner(flatbuffer), floats)[0]
    float_error = np.abs(np.asarray(logits(floats)) - tflite).max()
    for layer in model.layers:  # the kernels on the int8 grid, as the converter rounds them
        if kernel_axes(layer):
            layer.kernel.assign(int8_kernel(layer.kernel.numpy(), kernel_axes(layer)))
    simulation_error = np.abs(np.asarray(simulated(floats)) - tflite).max()
    # Measured: 0.065, one step of the logits' grid (0.163 for float Keras). With calibrated
    # ranges alone (no flatbuffer ranges) it was 0.129: TFLite widens some tensors' ranges.
    assert simulation_error < 0.5 * float_error, (simulation_error, float_error)


def test_qat_fine_tunes_a_copy_and_recovers_what_ptq_loses():
    """Where int8 costs accuracy (``qat_case``: digits, one channel 300x wider than the rest),
    QAT's own loss falls and it wins back at least half of what PTQ lost, on held-out digits.
    A QAT that climbs its loss, or that hands back PTQ's weights, wins nothing back."""
    from qat_case import accuracy, digits, int8_accuracy, outlier_cnn

    from vision.export.int8 import int8_ready

    (x, y), (test_x, test_y) = digits()
    model = outlier_cnn(x, y)
    calibration = x[:96]
    before = [w.copy() for w in model.get_weights()]
    floating = accuracy(model, test_x, test_y)
    ptq = int8_accuracy(int8_ready(model, calibration, "ptq")[0], calibration, test_x, test_y)
    result = fine_tune(model, calibration, epochs=8, learning_rate=1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the model itself untouched
    assert not any(isinstance(layer, FakeQuant) for layer in result.model.layers)
    assert result.steps == 8 * 24 and len(result.losses) == 9
    qat = int8_accuracy(result.model, calibration, test_x, test_y)
    # Measured: float 95.1 %, PTQ 87.8 %, QAT 92.3 %; the loss 0.34 -> 0.11.
    assert floating - ptq >= 0.02, (floating, ptq)
    assert qat - ptq >= 0.5 * (floating - ptq), (floating, ptq, qat)
    assert result.losses[-1] < 0.6 * result.losses[0], result.losses


def test_qat_export_says_so_and_bad_methods_fail(bundle, tmp_path, capsys):
    assert main(["export", str(SHAPES_MODEL), "--format", "tflite", "--quantize", "int8-uint8-io",
                 "--int8-method", "qat", "--out", str(tmp_path / "qat")]) == 0
    metadata = json.loads((tmp_path / "qat" / "metadata.json").read_text())
    parity = json.loads((tmp_path / "qat" / "parity.json").read_text())
    assert metadata["full_integer"]["method"] == "qat" and parity["method"] == "qat"
    tuning = metadata["full_integer"]["qat"]  # it fine-tuned: 96 photos and mirrors, 3 epochs
    assert tuning["steps"] == 3 * 24 and len(tuning["losses"]) == 4
    assert parity["top1_agreement"] >= 0.95
    # The CLI reports probabilities (not the uint8 output's steps) and how to feed the input.
    out = capsys.readouterr().out
    assert f"max |p - keras| {parity['max_abs_dp']:.2e}" in out and parity["max_abs_dp"] < 0.5
    assert "int8 input uint8: q = pixel (qat, calibrated on" in out and "ms per image (LiteRT" in out
    with pytest.raises(ExportError, match="unknown int8 method 'aqt'; choose one of: ptq, qat"):
        export(bundle, "tflite", tmp_path / "bad", quantize="int8", int8_method="aqt")
    with pytest.raises(ExportError, match="tfjs export cannot be quantized as 'int8'"):
        export(bundle, "tfjs", tmp_path / "bad", quantize="int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qat"]


def test_export_view_tabulates_every_export_of_the_session(tmp_path):
    import zipfile

    from gradio_client import Client

    from app_server import launch_app

    models = tmp_path / "models"
    models.mkdir()
    app, url = launch_app(models)
    try:
        client = Client(url, verbose=False)
        archives, messages = {}, {}
        for quantize in ("int8-uint8-io", "none"):
            archives[quantize], messages[quantize] = client.predict("tflite", quantize, api_name="/export")
            assert "ms per image (LiteRT" in messages[quantize]
        int8 = messages["int8-uint8-io"]
        assert "Full integer (PTQ" in int8 and "uint8 input, q = pixel" in int8
        table = client.predict(api_name="/export_table")
        assert table["headers"] == ["model", "format", "quantization", "size (MB)", "top-1 agreement", "max |Δp|",
                                    "ms / image", "runtime", "checked on"]
        rows = {row[2]: row for row in table["data"]}
        assert sorted(rows) == ["fp32", "int8-uint8-io (PTQ)"]
        for quantize, key in (("int8-uint8-io", "int8-uint8-io (PTQ)"), ("none", "fp32")):
            with zipfile.ZipFile(archives[quantize]) as exported:
                parity = json.loads(exported.read("parity.json"))
            row = rows[key]
            assert row[1] == "TFLite" and row[3] == round(parity["size_bytes"] / 1e6, 2)
            assert row[4] == f"{parity['top1_agreement']:.1%}" and row[6] == round(parity["latency_ms"], 2)
            assert row[8] == parity["images"]
        assert rows["int8-uint8-io (PTQ)"][3] < 0.3 * rows["fp32"][3]
        # Another session has its own table.
        assert Client(url, verbose=False).predict(api_name="/export_table")["data"] in ([], [[None] * 9])
    finally:
        app.close()
