"""Exports verify themselves against Keras, carry their metadata, and fail cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from vision.bundle.store import load_bundle
from vision.cli import main
from vision.data.images import preprocess
from vision.export.formats import MIN_QUANTIZED_AGREEMENT, ExportError, build_web_site, export, probe_images
from vision.export.webweights import FLOAT16_SHARE, PER_CHANNEL, channel_axis, decode_per_channel, encode_per_channel
from vision.models.serving import split_outputs
from vision.runtime.tflite import make_interpreter

from conftest import REPO, SHAPES_MODEL
from threads import run_together

pytestmark = pytest.mark.usefixtures("no_stray_writes")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(SHAPES_MODEL)


@pytest.mark.parametrize("fmt, quantize", [
    ("savedmodel", None), ("tflite", None), ("tflite", "float16"), ("tflite", "dynamic"),
    ("tfjs", None), ("tfjs", "float16"), ("tfjs", "uint8"),
])
def test_every_format_verifies_and_writes_metadata(bundle, tmp_path, fmt, quantize):
    result = export(bundle, fmt, tmp_path / "out", quantize=quantize)
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["labels"] == bundle.labels and metadata["quantization"] == quantize
    assert metadata["preprocessing"] == bundle.preprocessing.to_dict()
    orientation = metadata["input"].pop("orientation")
    assert metadata["input"] == {"height": 64, "width": 64, "channels": 3, "dtype": "float32"}
    # Who turns a phone's photo upright: the SavedModel's bytes signature does, float inputs need it done.
    assert ("serving_default applies" in orientation) == (fmt == "savedmodel"), orientation
    assert result.checked_images == len(probe_images(bundle)) > 16 and result.top1_agreement == 1.0
    if quantize is None:
        assert result.max_abs_diff <= 1e-4
    # The check's figures, the size and this server's speed through the format's own runtime.
    parity = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert parity == result.parity and parity["top1_agreement"] == result.top1_agreement
    assert parity["size_bytes"] == result.size_bytes and parity["images"] == result.checked_images
    assert parity["max_abs_dp"] <= result.max_abs_diff and 0 < parity["latency_ms"] < 1000
    runtime = {"tflite": "LiteRT", "tfjs": "TF.js under Node, wasm", "savedmodel": "TensorFlow"}[fmt]
    assert parity["latency_runtime"].startswith(runtime)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folders left


def _run_in_tfjs(folder, inputs: np.ndarray, tmp_path) -> list[np.ndarray]:
    """The export at ``folder`` run by TF.js under Node, as the page loads it."""
    request = tmp_path / "inputs.json"
    request.write_text(json.dumps({"shape": list(inputs.shape), "data": inputs.ravel().tolist()}))
    result = subprocess.run(["node", str(REPO / "tests" / "tfjs_predict.mjs"), str(REPO / "web"), str(folder),
                             str(request)], capture_output=True, text=True, timeout=300, check=True)
    return [np.array(o["data"], np.float32).reshape(o["shape"]) for o in json.loads(result.stdout)]


def test_quantized_tfjs_weights_keep_the_keras_answers_when_tfjs_runs_them(bundle, tmp_path):
    """Measured after quantization, by TF.js on the shipped weights (the export's own check runs
    the graph before its weights are quantized)."""
    inputs = np.stack([np.asarray(preprocess(image, bundle.preprocessing)) for image in probe_images(bundle)])
    keras = np.asarray(bundle.model(inputs, training=False))
    diffs = {}
    for quantize in (None, "float16", "uint8"):
        folder = export(bundle, "tfjs", tmp_path / str(quantize), quantize=quantize).path
        answers = split_outputs(_run_in_tfjs(folder, inputs, tmp_path), len(bundle.labels))[0]
        diffs[quantize] = float(np.abs(answers - keras).max())
        assert np.mean(answers.argmax(1) == keras.argmax(1)) >= MIN_QUANTIZED_AGREEMENT, quantize
    assert diffs[None] <= 1e-4, diffs  # the runner itself is exact
    # Measured 1.8e-6 (fp32), 6.6e-4 (float16), 0.019 (uint8): coarser weights move the answers
    # more (so TF.js ran the quantized weights), and only a little.
    assert 1e-5 < diffs["float16"] < diffs["uint8"] <= 0.06 and diffs["float16"] <= 0.005, diffs


def test_quantization_shrinks_the_files(bundle, tmp_path):
    quantizations = (None, "float16", "dynamic")
    sizes = {q: export(bundle, "tflite", tmp_path / str(q), quantize=q).size_bytes for q in quantizations}
    assert sizes["dynamic"] < sizes["float16"] < sizes[None]
    assert sizes["dynamic"] < sizes[None] / 3


def test_tflite_export_runs_on_its_own(bundle, tmp_path):
    export(bundle, "tflite", tmp_path / "t")
    interpreter = make_interpreter((tmp_path / "t" / "model.tflite").read_bytes())
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = np.asarray(preprocess(image[None], bundle.preprocessing))
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(bundle.model(x)), atol=1e-5)


def test_bad_requests_fail_clearly_and_write_nothing(bundle, tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'coreml'"):
        export(bundle, "coreml", tmp_path / "x")
    with pytest.raises(ExportError, match="cannot be quantized as 'int4'; choose: float16, uint8"):
        export(bundle, "tfjs", tmp_path / "x", quantize="int4")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export(bundle, "tflite", tmp_path / "taken")
    with pytest.raises(ExportError, match="not a TF.js export"):
        build_web_site(tmp_path / "taken", tmp_path / "site")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_cli_export_with_web_site(tmp_path, capsys):
    assert main(["export", str(SHAPES_MODEL), "--format", "tfjs", "--quantize", "uint8",
                 "--out", str(tmp_path / "js"), "--web-site", str(tmp_path / "site")]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement 100.0%" in out and "static site" in out
    assert (tmp_path / "site" / "model" / "model.json").is_file()
    assert (tmp_path / "site" / "node_modules" / "@tensorflow" / "tfjs-backend-wasm" / "dist"
            / "tfjs-backend-wasm-simd.wasm").is_file()
    assert main(["export", str(SHAPES_MODEL), "--format", "tflite", "--out", str(tmp_path / "t"),
                 "--web-site", str(tmp_path / "s2")]) == 2


def test_per_channel_uint8_keeps_every_channel_to_half_a_step():
    # Channels hundreds of times apart in range, as after folding batch norm into a kernel.
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 8, 4)).astype(np.float32) * np.array([1e-3, 1.0, 30.0, 0.2], np.float32)
    data = encode_per_channel(kernel, channel_axis(list(kernel.shape)))
    assert len(data) == kernel.size + 8 * 4
    decoded = decode_per_channel(data, list(kernel.shape), 3)
    steps = (kernel.max((0, 1, 2)) - kernel.min((0, 1, 2))) / 255
    assert (np.abs(decoded - kernel).max((0, 1, 2)) <= steps / 2 * 1.001).all()
    assert channel_axis([3, 3, 96, 1]) == 2 and channel_axis([1280, 1000]) == 1


def test_uint8_tfjs_export_is_per_channel_with_the_sensitive_kernels_in_float16(bundle, tmp_path):
    result = export(bundle, "tfjs", tmp_path / "u8", quantize="uint8")
    fp16 = export(bundle, "tfjs", tmp_path / "f16", quantize="float16")
    specs = [w for group in json.loads((tmp_path / "u8" / "model.json").read_text())["weightsManifest"]
             for w in group["weights"]]
    kinds = {(len(w["shape"]) >= 2, w.get("quantization", {}).get("dtype")) for w in specs if w["dtype"] == "float32"}
    assert kinds == {(True, PER_CHANNEL), (True, "float16"), (False, "float16")}
    kernel_sizes = {w["name"]: int(np.prod(w["shape"])) for w in specs if len(w["shape"]) >= 2}
    kept = [name for name, size in kernel_sizes.items()
            if next(w for w in specs if w["name"] == name)["quantization"]["dtype"] == "float16"]
    assert 0 < sum(kernel_sizes[name] for name in kept) <= FLOAT16_SHARE * sum(kernel_sizes.values())
    assert result.size_bytes < 0.6 * fp16.size_bytes


def test_tfjs_export_leaves_stdout_alone(tmp_path):
    """The converter prints; it runs in a child process, so this process's ``sys.stdout`` (one
    per process, written by every session's threads) is never swapped while it works."""
    import vision.export.formats as formats

    before, swapped, done = sys.stdout, [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            if sys.stdout is not before:
                swapped.append(sys.stdout)
            time.sleep(0.002)

    def export() -> object:
        try:
            return formats.export(load_bundle(SHAPES_MODEL), "tfjs", tmp_path / "out")
        finally:
            done.set()

    _, result = run_together(watch, export)
    assert not swapped
    assert result.top1_agreement == 1.0 and (result.path / "model.json").is_file()


def _converter_that(monkeypatch, script: str) -> None:
    """The TF.js converter replaced by a real child process that runs ``script`` (its argv ends
    with the SavedModel and output folders, as the converter's does)."""
    import vision.export.formats as formats

    monkeypatch.setattr(formats, "TFJS_CONVERTER", (sys.executable, "-c", script))


def test_tfjs_converter_failures_name_no_server_paths(bundle, tmp_path, monkeypatch):
    _converter_that(monkeypatch, "import sys; saved, out = sys.argv[-2:]; raise OSError("
                                 "f'{saved}/variables/variables.index: not found (writing {out}/model.json)')")
    with pytest.raises(ExportError) as failed:
        export(bundle, "tfjs", tmp_path / "out")
    message = str(failed.value)
    assert "conversion failed: OSError: saved_model/variables/variables.index: not found" in message
    assert "/tmp" not in message and str(tmp_path) not in message and "writing model.json" in message

    # What the converter does instead of raising when it cannot freeze a graph.
    _converter_that(monkeypatch, "print('Can not freeze saved model v1.')")
    with pytest.raises(ExportError, match="wrote no model.json: Can not freeze saved model v1."):
        export(bundle, "tfjs", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_export_that_answers_differently_is_refused():
    """The rule docs/deploy.md states: fp32 within 1e-4 and the same top-1 everywhere; quantized at
    least ``MIN_QUANTIZED_AGREEMENT`` of the top-1 labels."""
    from vision.export.formats import FP32_TOLERANCE, _verify

    expected = np.eye(3, dtype=np.float32)[np.arange(20) % 3] * 0.8 + 0.2 / 3
    assert _verify("tflite", None, expected, expected + FP32_TOLERANCE / 2, 3)["top1_agreement"] == 1.0
    with pytest.raises(ExportError, match="differs from Keras"):
        _verify("tflite", None, expected, expected + 2 * FP32_TOLERANCE, 3)
    swapped = expected.copy()
    swapped[:2] = np.roll(expected[:2], 1, axis=1)  # 2 of 20 answers change: 90 % agree
    assert _verify("tflite", "int8", expected, swapped, 3)["top1_agreement"] == MIN_QUANTIZED_AGREEMENT
    swapped[:3] = np.roll(expected[:3], 1, axis=1)  # 3 of 20: 85 %
    with pytest.raises(ExportError, match="agrees with Keras on only 85%"):
        _verify("tflite", "int8", expected, swapped, 3)
