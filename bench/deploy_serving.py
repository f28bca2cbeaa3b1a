"""ONNX Runtime, the SavedModel for TF Serving and the app's TF Serving REST API, each held
against Keras or the library on the everyday-objects model and the package photos.

    python bench/deploy_serving.py [--model models/everyday] [--clients 8] [--rounds 4]

Every figure comes from this run:
- ONNX: ``export(..., "onnx")``, then the .onnx run in ONNX Runtime on the photos' model input
  against the Keras serving model: max |Δp| (target 1e-4, the export check's fp32 limit) and
  top-1 agreement (100 %).
- SavedModel: ``export(..., "savedmodel")`` loaded with ``tf.saved_model.load``, its
  ``serving_default`` called with each file's bytes, against the library's
  ``Classifier.scores(file)`` (target 1e-5; the library runs TFLite), and against Keras on the
  pixels ``load_image`` gives (the graph decodes to the same pixels, large photos included).
- REST: the app (private mode, in this process) answering ``POST /v1/models/default:predict``
  with ``{"instances": [{"b64": ...}]}`` over HTTP: max |Δp| against the library (1e-5), and the
  median latency of one-image requests from ``--clients`` concurrent clients. Its target is the
  Gradio floor measured here (a no-op handler, 8 gradio_client threads: p50 ~0.8 s,
  ../shared/FACTS.md): a TF Serving client should not pay more than a Gradio one.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from timing import concurrent_seconds, machine  # noqa: E402

#: The Gradio floor for 8 concurrent clients (../shared/FACTS.md, "Gradio, measured 2026-11-23").
GRADIO_FLOOR_P50_MS = 800.0


def photo_files() -> list[Path]:
    """The package photos as files: the Classify view's examples, then the export probes."""
    import skimage

    from vision.data.photos import PROBE_PHOTOS, example_photos

    data = Path(skimage.__file__).parent / "data"
    return example_photos() + [data / name for name in PROBE_PHOTOS if (data / name).is_file()]


def row(name: str, measured: float, target: float | None, higher_is_better: bool = False) -> dict[str, Any]:
    """One result; ``target`` None: reported, not judged."""
    passed = None if target is None else (measured >= target if higher_is_better else measured <= target)
    return {"name": name, "measured": measured, "target": target, "pass": passed}


def measure_onnx(bundle: Any, files: list[Path], folder: Path) -> list[dict[str, Any]]:
    import numpy as np

    from vision.data.images import load_image, preprocess
    from vision.export.formats import export
    from vision.export.onnx import ONNX_FILE, run_onnx
    from vision.models.serving import serving_model

    images = [load_image(path) for path in files]
    exported = export(bundle, "onnx", folder / "onnx", images=images)
    x = np.stack([np.asarray(preprocess(image, bundle.preprocessing)) for image in images])
    keras = np.asarray(serving_model(bundle.model, bundle.detector)(x, training=False)[0])
    onnx = run_onnx(exported.path / ONNX_FILE, x)[0]
    return [row(f"ONNX Runtime vs Keras, max |Δp| ({len(files)} photos)", float(np.abs(onnx - keras).max()), 1e-4),
            row("ONNX Runtime vs Keras, top-1 agreement", float(np.mean(onnx.argmax(1) == keras.argmax(1))), 1.0,
                higher_is_better=True)]


def measure_savedmodel(bundle: Any, files: list[Path], folder: Path, library: Any) -> list[dict[str, Any]]:
    import numpy as np
    import tensorflow as tf

    from vision.data.images import input_side, load_image, preprocess
    from vision.export.formats import export
    from vision.export.savedmodel import serving_name
    from vision.models.serving import serving_model

    side = input_side(bundle.preprocessing.size)
    images = [load_image(path, max_side=side) for path in files]  # the pixels the library sees
    exported = export(bundle, "savedmodel", folder / "savedmodel", images=images)
    loaded = tf.saved_model.load(str(exported.path / serving_name(bundle) / "1"))
    answers = loaded.signatures["serving_default"](image_bytes=tf.constant([path.read_bytes() for path in files]))
    served = answers["probabilities"].numpy()
    expected = np.stack([library.scores(path)[0] for path in files])
    x = np.stack([np.asarray(preprocess(image, bundle.preprocessing)) for image in images])
    keras = np.asarray(serving_model(bundle.model, bundle.detector)(x, training=False)[0])
    large = sum(max(load_image(path).shape[:2]) > side for path in files)
    return [row(f"SavedModel from file bytes vs the library, max |Δp| ({len(files)} photos, {large} over {side} px)",
                float(np.abs(served - expected).max()), 1e-5),
            row("SavedModel from file bytes vs Keras on the library's pixels, max |Δp|",
                float(np.abs(served - keras).max()), 1e-5)]


def _post(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    return answer, (time.perf_counter() - started) * 1000


def measure_rest(files: list[Path], folder: Path, library: Any, clients: int, rounds: int) -> list[dict[str, Any]]:
    import numpy as np

    from vision.defaults import EVERYDAY_MODEL

    from app_server import launch_app

    (folder / "models").mkdir()
    app, url = launch_app(folder / "models", default_model=EVERYDAY_MODEL)
    predict = url.rstrip("/") + "/v1/models/default:predict"
    bodies = [{"instances": [{"b64": base64.b64encode(path.read_bytes()).decode()}]} for path in files]
    try:
        answers = [_post(predict, body)[0]["predictions"][0]["probabilities"] for body in bodies]
        diff = float(np.abs(np.array(answers) - np.stack([library.scores(path)[0] for path in files])).max())
        latencies: list[float] = []
        lock = threading.Lock()

        def client(offset: int) -> None:
            for turn in range(rounds * len(bodies)):
                took = _post(predict, bodies[(offset + turn) % len(bodies)])[1]
                with lock:
                    latencies.append(took)

        seconds = concurrent_seconds([lambda i=i: client(i) for i in range(clients)])
    finally:
        for thread in threading.enumerate():  # a process that exits under TensorFlow work aborts
            if thread.name in ("warm-explainer", "prepare-web-page"):
                thread.join(timeout=600)
        app.close()
    return [row(f"TF Serving REST on the app vs the library, max |Δp| ({len(files)} photos)", diff, 1e-5),
            row(f"TF Serving REST, p50 latency, {clients} concurrent clients (ms)", statistics.median(latencies),
                GRADIO_FLOOR_P50_MS),
            row(f"TF Serving REST, throughput, {clients} concurrent clients (requests/s)",
                len(latencies) / seconds, None)]


def measure(model: Path | None = None, clients: int = 8, rounds: int = 4) -> list[dict[str, Any]]:
    """Every row of this benchmark: name, measured, target (None: reported only), pass."""
    from vision.bundle.store import load_bundle
    from vision.defaults import EVERYDAY_MODEL
    from vision.runtime.inference import Classifier
    from vision.zoo.everyday import ensure_everyday_bundle

    if model is None:
        model = ensure_everyday_bundle(EVERYDAY_MODEL)
    bundle = load_bundle(model)
    files = photo_files()
    library = Classifier(bundle)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        return [*measure_onnx(bundle, files, Path(tmp)), *measure_savedmodel(bundle, files, Path(tmp), library),
                *measure_rest(files, Path(tmp), library, clients, rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a bundle (default: the everyday-objects model)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="passes over the photos per REST client")
    args = parser.parse_args()
    print(machine())
    rows = measure(args.model, args.clients, args.rounds)
    print("| measure | measured | target | pass |\n|---|---|---|---|")
    for r in rows:
        target = "—" if r["target"] is None else f"{r['target']:g}"
        verdict = "—" if r["pass"] is None else "yes" if r["pass"] else "NO"
        print(f"| {r['name']} | {r['measured']:.3g} | {target} | {verdict} |")


if __name__ == "__main__":
    main()
