"""Export a bundle for serving elsewhere: TensorFlow.js (the browser), TFLite, SavedModel.

Every export verifies itself before it reports success: validation images go through the
exported artifact that Python can run (the SavedModel, also the intermediate of the TF.js
graph model; the TFLite flatbuffer) and are compared with Keras. Each export folder gets
a ``metadata.json`` with everything a runtime needs (labels, input size, preprocessing,
quantization, versions), so the web page hard-codes nothing.

The TF.js path is Keras 3 -> SavedModel -> graph model: TF.js 4.22 cannot load Keras 3
layers models (tensorflow/tfjs#8328).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from vision.bundle.store import TFLITE_FILE, Bundle, versions
from vision.data.datasets import Split
from vision.data.images import preprocess
from vision.data.photos import photographed_at, probe_photos
from vision.data.synthetic import make_shapes
from vision.defaults import REPO
from vision.errors import ExportError, VisionError  # noqa: F401  (ExportError re-exported)
from vision.export.int8 import DEFAULT_METHOD, FULL_INTEGER, export_full_integer
from vision.export.onnx import ONNX_FILE, export_onnx, write_metadata_props
from vision.export.options import FORMATS, QUANTIZATIONS
from vision.export.parity import parity_record, write_parity
from vision.export.savedmodel import export_for_serving, serving_metadata
from vision.export.teachable import check_teachable, export_teachable
from vision.export.webweights import quantize_graph_model, uint8_kernels
from vision.models.heads import LOGITS_LAYER, OUTPUT_LAYER
from vision.models.serving import serving_model, split_outputs
from vision.redact import without_paths
from vision.runtime.inference import Classifier
from vision.runtime.tflite import TFLiteRunner, convert_to_tflite, describe_flatbuffer

#: The page, and the Keras features of the "unknown" detector's background photos its trainer uses.
WEB_FILES = ("index.html", "app.js", "classifier.js", "trainer.js", "style.css", "background.json")
WEB_VENDOR = ("@tensorflow/tfjs/dist/tf.min.js", "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
              "@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js",
              "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
              "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
              "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm")
#: fp32 exports must match Keras probabilities this closely on every validation image.
FP32_TOLERANCE = 1e-4
#: Quantized exports must agree with Keras on the top-1 label this often.
MIN_QUANTIZED_AGREEMENT = 0.9

log = logging.getLogger(__name__)
#: Who turns a phone's photo upright, in words for an export's user: float inputs need the pixels
#: as the photo is meant to be seen; the SavedModel's bytes signature reads EXIF itself.
ORIENTATION = {
    False: "the caller's: turn the photo upright by its EXIF orientation before preprocessing "
           "(Pillow: ImageOps.exif_transpose), as the library does",
    True: "serving_default applies a JPEG's EXIF orientation as the library does; the preprocessed "
          "signature takes pixels already upright",
}
#: The TensorFlow.js converter's command line, run in a child process (``_convert_to_tfjs``).
TFJS_CONVERTER = (sys.executable, "-m", "tensorflowjs.converters.converter")
#: Seconds a conversion may take (the everyday model's takes about 20 s on 2 busy cores).
TFJS_TIMEOUT_S = 600.0


@dataclass
class ExportResult:
    path: Path
    format: str
    quantization: str | None
    size_bytes: int
    max_abs_diff: float  # against Keras probabilities, over the validation images
    top1_agreement: float
    checked_images: int
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Agreement, size and latency on this server, as in ``parity.json`` (``vision.export.parity``).
    parity: dict[str, Any] = field(default_factory=dict)


def export(bundle: Bundle, fmt: str, out: str | Path, quantize: str | None = None,
           images: list[np.ndarray] | None = None, overwrite: bool = False, features: bool = False,
           int8_method: str | None = None, calibration: Split | None = None,
           single_output: bool = False) -> ExportResult:
    """Export ``bundle`` as ``fmt`` into the folder ``out`` (written atomically).

    Args:
        images: uint8 RGB validation images; a seeded set of photos, synthetic and noise
            images at the model's input size when None (``probe_images``).
        features: Add the pooled features as an output (the web page trains new heads on
            them in the browser).
        int8_method: For TFLite's full-integer quantizations: ``"ptq"`` or ``"qat"``
            (``vision.export.int8``); its ``DEFAULT_METHOD`` when None.
        calibration: For the full-integer quantizations: the caller's own labelled images to
            calibrate on; package photos when None (never what ``vision.json`` records).

    Raises:
        ExportError: unknown format or quantization, an existing ``out``, a failed
            conversion, or an artifact whose answers differ from Keras.
    """
    out = _checked_request(bundle, fmt, out, quantize, overwrite, features, single_output)
    if bundle.tflite_only:
        return _export_flatbuffer_as_is(bundle, out, images if images is not None else probe_images(bundle))
    images = images if images is not None else probe_images(bundle)
    inputs = np.stack([np.asarray(preprocess(image, bundle.preprocessing)) for image in images])
    # Calibrated probabilities, plus the "unknown" detector's familiarity where there is one.
    model = serving_model(bundle.model, bundle.detector, features=features)
    classes = len(bundle.labels)
    expected = _joined(model(inputs, training=False), classes)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        expected, predicted, full_integer, teachable = _convert(
            bundle, model, fmt, staging, images, inputs, expected, quantize, features, int8_method, calibration,
            single_output)
        result = _verify(fmt, quantize, expected, predicted, classes)
        metadata = _metadata(bundle, fmt, quantize, result, staging, full_integer, teachable, features, single_output)
        return _publish(staging, out, fmt, quantize, result, metadata, inputs[0])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _checked_request(bundle: Bundle, fmt: str, out: str | Path, quantize: str | None, overwrite: bool,
                     features: bool, single_output: bool) -> Path:
    """``out`` as a path, once the format, its options and the folder are known to make an export.

    Raises:
        ExportError: what ``export`` cannot make, naming what can be.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if single_output and (fmt != "savedmodel" or features):
        raise ExportError("--single-output is for --format savedmodel, without --features")
    if quantize not in QUANTIZATIONS[fmt]:
        choices = ", ".join(str(q) for q in QUANTIZATIONS[fmt] if q) or "none"
        raise ExportError(f"{fmt} export cannot be quantized as {quantize!r}; choose: {choices}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"'{out}' already exists; choose another folder or overwrite")
    if bundle.tflite_only and (fmt != "tflite" or quantize):
        raise ExportError(f"'{bundle.name}' came as a TFLite file only, so it exports to TFLite as it is "
                          "(tflite, no quantization); other formats need its Keras or TF.js export")
    return out


def _convert(bundle: Bundle, model: Any, fmt: str, staging: Path, images: list[np.ndarray], inputs: np.ndarray,
             expected: np.ndarray, quantize: str | None, features: bool, int8_method: str | None,
             calibration: Split | None, single_output: bool) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Write the ``fmt`` export into ``staging`` and run it on ``inputs``. Returns the Keras
    answers it is to match (the columns it has), its own answers, and the full-integer and
    Teachable Machine records for the metadata (None unless that is the format)."""
    classes = len(bundle.labels)
    full_integer = teachable = None
    if fmt == "savedmodel":
        # TF Serving's layout. Both signatures (encoded images, float tensors) are held to
        # Keras; the worse one is what the check reports.
        answers = [_joined(a, classes) for a in export_for_serving(model, bundle, staging, images, features,
                                                                   single_output)]
        expected = expected[:, :classes] if single_output else expected
        predicted = max(answers, key=lambda answer: float(np.abs(answer - expected).max()))
    elif fmt == "onnx":
        predicted = _joined(export_onnx(model, staging / ONNX_FILE, inputs, bundle.detector is not None,
                                        features), classes)
    elif fmt == "tflite" and quantize in FULL_INTEGER:
        outputs, full_integer = export_full_integer(bundle, staging, inputs, quantize, features,
                                                    int8_method or DEFAULT_METHOD, calibration)
        predicted = _joined(outputs, classes)
    elif fmt == "tflite":
        predicted = _export_tflite(model, staging, inputs, quantize, classes)
    elif fmt == "teachable-machine":
        # TM's formats have no "unknown" output: the probabilities alone are compared.
        teachable = export_teachable(bundle, staging)
        expected = expected[:, :classes]
        predicted = check_teachable(staging, inputs, bundle.preprocessing, expected)
    else:
        predicted = _export_tfjs(model, staging, inputs, quantize, bundle.model, classes)
    return expected, predicted, full_integer, teachable


def _metadata(bundle: Bundle, fmt: str, quantize: str | None, result: dict[str, Any], staging: Path,
              full_integer: Any, teachable: Any, features: bool, single_output: bool) -> dict[str, Any]:
    """``export_metadata`` with what this format's export adds (written into the ONNX model too)."""
    metadata = export_metadata(bundle, fmt, quantize, result)
    if full_integer:  # the input and output tensors' dtype, scale and zero point
        metadata["input"]["dtype"] = full_integer["input"]["dtype"]
        metadata["full_integer"] = full_integer
    if fmt == "teachable-machine":
        metadata["teachable_machine"] = teachable
    if features:
        size = int(bundle.model.get_layer(LOGITS_LAYER).input.shape[-1])
        metadata["features"] = {"output": "features", "size": size}
    if fmt == "savedmodel":
        metadata["serving"] = serving_metadata(bundle, (metadata.get("features") or {}).get("size"),
                                               single_output)
    elif fmt == "onnx":  # inside the model too: an ONNX user needs no other file
        write_metadata_props(staging / ONNX_FILE, metadata)
    return metadata


def _publish(staging: Path, out: Path, fmt: str, quantize: str | None, result: dict[str, Any],
             metadata: dict[str, Any], x: np.ndarray) -> ExportResult:
    """Write ``metadata.json`` and ``parity.json`` (latency timed on the model input ``x``) into
    the checked export in ``staging``, and move it to ``out`` in one rename."""
    (staging / "metadata.json").write_text(json.dumps(metadata, indent=2))
    parity = parity_record(fmt, quantize, staging, result, metadata, x)
    write_parity(staging, parity)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)
    return ExportResult(out, fmt, quantize, parity["size_bytes"], result["max_abs_diff"], result["top1_agreement"],
                        result["images"], metadata, parity)


def _export_flatbuffer_as_is(bundle: Bundle, out: Path, images: list[np.ndarray]) -> ExportResult:
    """A TFLite-only bundle's flatbuffer, copied with its metadata and parity: checked by running
    the copy in LiteRT against the bundle's own classifier on ``images``."""
    expected = np.stack([Classifier(bundle).probabilities(image) for image in images])
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        shutil.copyfile(bundle.path / TFLITE_FILE, staging / "model.tflite")
        copied = Classifier(Bundle(staging, bundle.info))
        predicted = np.stack([copied.probabilities(image) for image in images])
        result = _verify("tflite", None, expected, predicted, len(bundle.labels))
        result["checked_with"] = "the copied tflite model in LiteRT, against the imported one"
        metadata = export_metadata(bundle, "tflite", None, result)
        metadata["tflite_io"] = describe_flatbuffer((staging / "model.tflite").read_bytes())
        x = np.asarray(preprocess(images[0], bundle.preprocessing), np.float32)
        return _publish(staging, out, "tflite", None, result, metadata, x)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def probe_images(bundle: Bundle, count: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Seeded uint8 validation images at the model's size: real package photos and crops of
    them taken at that size (``vision.data.photos.probe_photos``), synthetic shapes drawn at
    it, then ``count`` in all of shapes and noise."""

    height, width = size = bundle.preprocessing.size
    shapes = make_shapes(per_class=max(1, count // 8), size=max(height, width, 16), seed=seed).images
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count - len(shapes))]
    return [*probe_photos(seed=seed, size=size), *(photographed_at(shape, size) for shape in shapes)] + noise


def export_metadata(bundle: Bundle, fmt: str, quantize: str | None, check: dict[str, Any]) -> dict[str, Any]:
    """What a runtime needs, and how the export was checked."""
    return {
        "format": {"tfjs": "tfjs-graph-model", "tflite": "tflite", "savedmodel": "tf-saved-model",
                   "onnx": "onnx", "teachable-machine": "teachable-machine"}[fmt],
        "name": bundle.name,
        "architecture": bundle.info.get("architecture"),
        "labels": bundle.labels,
        "input": {"height": bundle.preprocessing.size[0], "width": bundle.preprocessing.size[1],
                  "channels": 3, "dtype": "float32", "orientation": ORIENTATION[fmt == "savedmodel"]},
        "preprocessing": bundle.preprocessing.to_dict(),
        "output": OUTPUT_LAYER,
        # A second output of shape [1, 1]: below the threshold, the answer is "unknown".
        "unknown": ({"output": "familiarity", **{k: bundle.info["ood"][k] for k in ("method", "threshold")}}
                    if bundle.info.get("ood") and fmt != "teachable-machine" else None),
        "temperature": (bundle.info.get("calibration") or {}).get("temperature"),
        "quantization": quantize,
        "verification": check,
        "versions": versions(),
    }


def _joined(outputs: Any, classes: int) -> np.ndarray:
    """A runtime's outputs in any order as one array: the probabilities, then the
    familiarity column and the features where the model has them."""
    return np.concatenate([o for o in split_outputs(outputs, classes) if o is not None], axis=1)


def _verify(fmt: str, quantize: str | None, expected: np.ndarray, predicted: np.ndarray,
            classes: int) -> dict[str, Any]:
    diff = float(np.abs(expected - predicted).max())
    # The probabilities alone: a quantized familiarity (a logit) moves by more, in other units.
    dp = float(np.abs(expected[:, :classes] - predicted[:, :classes]).max())
    agreement = float(np.mean(expected[:, :classes].argmax(1) == predicted[:, :classes].argmax(1)))
    if quantize is None and diff > FP32_TOLERANCE:
        raise ExportError(f"the {fmt} export differs from Keras by {diff:.2e} (limit {FP32_TOLERANCE:g})")
    if agreement < (1.0 if quantize is None else MIN_QUANTIZED_AGREEMENT):
        raise ExportError(f"the {fmt} export agrees with Keras on only {agreement:.0%} of top-1 labels")
    if fmt == "tflite":
        checked_with = "the exported tflite model"
    elif fmt == "tfjs" and quantize:
        # Only TF.js runs the quantized weights: tests/test_export.py runs them under Node,
        # tests/test_web.py in Chromium.
        checked_with = "the saved model the graph was converted from, before weight quantization"
    else:
        checked_with = {"savedmodel": "the exported saved model's two signatures, images sent PNG-encoded",
                        "teachable-machine": "keras_model.h5 in Keras on the snippet's input, and model.json "
                                             "rebuilt in Keras on TM's library's input (the worse)",
                        "onnx": "the exported onnx model in ONNX Runtime"}.get(fmt, "the saved model the graph runs")
    return {"max_abs_diff": diff, "max_abs_dp": dp, "top1_agreement": agreement, "images": int(len(expected)),
            "checked_with": checked_with}


def _export_savedmodel(model: Any, folder: Path, inputs: np.ndarray, classes: int) -> np.ndarray:
    model.export(str(folder / "saved_model"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(folder / "saved_model"))
    serve = loaded.signatures["serving_default"]
    return _joined(serve(tf.constant(inputs)), classes)


def _export_tflite(model: Any, folder: Path, inputs: np.ndarray, quantize: str | None, classes: int) -> np.ndarray:
    flatbuffer = convert_to_tflite(model, quantize=quantize)
    (folder / "model.tflite").write_bytes(flatbuffer)
    return _joined(TFLiteRunner(flatbuffer).batch(inputs), classes)


def _export_tfjs(model: Any, folder: Path, inputs: np.ndarray, quantize: str | None, classifier: Any,
                 classes: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        predicted = _export_savedmodel(model, Path(tmp), inputs, classes)
        # uint8 is ours, per channel (vision.export.webweights): TF.js's one range per tensor kept
        # the Keras top-1 on only 88 % of real photos once batch norm is folded in.
        _convert_to_tfjs(Path(tmp) / "saved_model", folder, quantize)
    if quantize == "uint8":
        quantize_graph_model(folder, uint8_kernels(classifier, inputs))
    # The graph model runs the SavedModel's graph; quantization is checked in the browser
    # (tests/test_web.py) and under Node (tests/test_export.py): only TF.js runs the quantized weights.
    return predicted


def _convert_to_tfjs(saved_model: Path, folder: Path, quantize: str | None) -> None:
    """The TensorFlow.js converter on ``saved_model``, in a child process.

    The converter reports some failures with ``print`` and returns (no switch turns that into
    an exception), so its output is the reason a visitor reads. Capturing ``print`` in this
    process would mean swapping ``sys.stdout``, which is process-wide: other sessions' threads
    would write into the capture meanwhile. A child's output is its own, and a converter crash
    cannot take the server down with it.
    """
    command = [*TFJS_CONVERTER, "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
               *(["--quantize_float16=*"] if quantize == "float16" else []), str(saved_model), str(folder)]
    # tensorflowjs imports tensorflow_decision_forests, which imports IPython to greet
    # "notebooks" whenever stdout is not a terminal: opt out.
    env = {**os.environ, "TFDF_DISABLE_WELCOME_MESSAGE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    roots = {saved_model.parent: "", folder: ""}  # files named inside the export, never the server's paths
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TFJS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"TensorFlow.js conversion took over {TFJS_TIMEOUT_S:.0f} s and was stopped") from None
    printed = "\n".join(part.strip() for part in (done.stdout, done.stderr) if part.strip())
    if printed:
        log.info("the TensorFlow.js converter printed: %s", without_paths(printed, roots))
    if done.returncode != 0:
        reason = without_paths(_last_line(done.stderr) or f"exit status {done.returncode}", roots)
        raise ExportError(f"TensorFlow.js conversion failed: {reason}")
    if not (folder / "model.json").is_file():
        said = without_paths(_last_line(done.stdout), roots) or "it gave no reason"
        raise ExportError(f"TensorFlow.js conversion wrote no model.json: {said}")


def _last_line(text: str) -> str:
    """The last non-empty line: a traceback's exception, or the converter's last word."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def build_web_site(export_dir: str | Path, site: str | Path, web_root: str | Path | None = None,
                   overwrite: bool = False) -> Path:
    """A self-contained static site: the page, its scripts, TF.js from the npm install,
    and the TF.js export (``model.json``, weights, ``metadata.json``) in ``model/`` —
    servable by any static host.

    Raises:
        ExportError: ``export_dir`` is not a TF.js export, or TF.js is not installed
            (run ``npm ci`` in ``web/``).
    """
    export_dir, site = Path(export_dir), Path(site)
    web_root = Path(web_root) if web_root else REPO / "web"
    if not (export_dir / "model.json").is_file() or not (export_dir / "metadata.json").is_file():
        raise ExportError(f"'{export_dir}' is not a TF.js export (no model.json and metadata.json)")
    missing = [name for name in WEB_VENDOR if not (web_root / "node_modules" / name).is_file()]
    if missing:
        raise ExportError(f"TF.js is not installed in '{web_root}' (missing {missing[0]}); run `npm ci` there")
    if site.exists() and not overwrite:
        raise ExportError(f"'{site}' already exists; choose another folder or overwrite")
    staging = site.parent / f".{site.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        for name in WEB_FILES:
            shutil.copy2(web_root / name, staging / name)
        for name in WEB_VENDOR:
            target = staging / "node_modules" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(web_root / "node_modules" / name, target)
        shutil.copytree(export_dir, staging / "model")
        if site.exists():
            shutil.rmtree(site)
        staging.rename(site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return site
