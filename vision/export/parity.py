"""Parity figures of an export: agreement with Keras, size, and speed on this server through the
format's own runtime, kept beside the export as ``parity.json`` and shown in the Export view.

Agreement (top-1, max |Δp| on the probabilities) comes from the export's own check
(``formats._verify``, on held-out images). Latency is the median of single-image calls after a
warm-up, through what serves the format: LiteRT for TFLite, ONNX Runtime for ONNX, TensorFlow's
SavedModel loader (what TF Serving runs) for a SavedModel, and TF.js itself under Node on its
wasm backend for TF.js (skipped where Node or the page's npm install is missing).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from vision.defaults import REPO
from vision.export.onnx import ONNX_FILE
from vision.export.savedmodel import TENSOR_INPUT, TENSOR_SIGNATURE
from vision.runtime.int8 import quantize_input
from vision.runtime.tflite import TFLiteRunner
from vision.timing import RUNS, median_ms

PARITY_FILE = "parity.json"
#: The Export view's table: one row per export, these columns (``table_row``).
COLUMNS = ("format", "quantization", "size (MB)", "top-1 agreement", "max |Δp|", "ms / image", "runtime",
           "checked on")
#: Not counted in an export's size: what describes it, not what serves it.
DESCRIPTIONS = ("metadata.json", PARITY_FILE)
NAMES = {"tfjs": "TF.js", "tflite": "TFLite", "savedmodel": "SavedModel", "onnx": "ONNX",
         "teachable-machine": "Teachable Machine"}

log = logging.getLogger(__name__)


def latency(fmt: str, folder: Path, x: np.ndarray, metadata: dict[str, Any]) -> tuple[float | None, str]:
    """(median ms per image, the runtime that ran it) for the export in ``folder``; ``x`` is one
    preprocessed input without a batch axis. (None, why) where the runtime is not here."""
    if fmt == "tflite":
        runner = TFLiteRunner((folder / "model.tflite").read_bytes())
        sample = quantize_input(x, runner.interpreter.get_input_details()[0])
        return median_ms(lambda: runner(sample)), f"LiteRT, XNNPACK, {os.cpu_count()} threads"
    if fmt == "onnx":
        import onnxruntime  # lazy: optional, and only timing an ONNX export needs it

        session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x[None].astype(np.float32)}
        return median_ms(lambda: session.run(None, feed)), f"ONNX Runtime {onnxruntime.__version__}, CPU"
    if fmt == "savedmodel":
        import tensorflow as tf  # lazy: the Export view's table reads parity.json without TensorFlow

        serve = tf.saved_model.load(str(folder / metadata["serving"]["path"])).signatures[TENSOR_SIGNATURE]
        sample = tf.constant(x[None])
        return (median_ms(lambda: serve(**{TENSOR_INPUT: sample})),
                f"TensorFlow {tf.__version__} SavedModel, '{TENSOR_SIGNATURE}' signature")
    if fmt == "tfjs":
        return _tfjs_latency(folder)
    return None, f"no runtime for {fmt} here"


def _tfjs_latency(folder: Path, web: Path = REPO / "web") -> tuple[float | None, str]:
    node = shutil.which("node")
    if node is None or not (web / "node_modules" / "@tensorflow" / "tfjs-backend-wasm").is_dir():
        return None, "not timed: needs Node and `npm ci` in web/"
    script = Path(__file__).with_name("tfjs_latency.mjs")
    try:
        done = subprocess.run([node, str(script), str(web), str(folder), str(RUNS)], capture_output=True,
                              text=True, timeout=300, check=True)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as error:
        log.warning("TF.js timing under Node failed: %s", getattr(error, "stderr", None) or error)
        return None, "not timed: TF.js under Node failed (see the server log)"
    return float(answer["median_ms"]), f"TF.js under Node, {answer['backend']} backend"


def parity_record(fmt: str, quantize: str | None, folder: Path, check: dict[str, Any],
                  metadata: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    """The figures of the export in ``folder``: ``check`` is ``formats._verify``'s result."""
    # A Teachable Machine export also holds its folders zipped, as TM hands them out: counted once.
    size = sum(p.stat().st_size for p in folder.rglob("*")
               if p.is_file() and p.name not in DESCRIPTIONS and p.suffix != ".zip")
    ms, runtime = latency(fmt, folder, x, metadata)
    return {"format": fmt, "quantization": quantize, "name": f"{NAMES.get(fmt, fmt)} {quantize or 'fp32'}",
            "size_bytes": size, "top1_agreement": check["top1_agreement"],
            "max_abs_dp": check.get("max_abs_dp", check["max_abs_diff"]), "images": check["images"],
            "checked_with": check["checked_with"], "latency_ms": ms, "latency_runtime": runtime,
            "method": (metadata.get("full_integer") or {}).get("method")}


def write_parity(folder: Path, record: dict[str, Any]) -> Path:
    """``record`` as ``folder/parity.json``."""
    path = folder / PARITY_FILE
    path.write_text(json.dumps(record, indent=2))
    return path


def table_row(record: dict[str, Any]) -> list[Any]:
    """One ``COLUMNS`` row of a ``parity_record``, rounded for reading."""
    ms = record.get("latency_ms")
    quantization = record.get("quantization") or "fp32"
    if record.get("method"):
        quantization += f" ({record['method'].upper()})"
    return [NAMES.get(record["format"], record["format"]), quantization, round(record["size_bytes"] / 1e6, 2),
            f"{record['top1_agreement']:.1%}", float(f"{record['max_abs_dp']:.2g}"),
            round(ms, 2) if ms is not None else None, record.get("latency_runtime", ""), record["images"]]
