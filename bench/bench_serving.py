"""One model behind three protocols (issue 31): TF Serving REST, TF Serving gRPC and Gradio's
``/classify``, side by side in one run, with the model's own time alongside.

    python bench/bench_serving.py [--model BUNDLE] [--calls 40] [--clients 8]

Starts the app (private mode, so no rate limit) on loopback with its gRPC API, and sends one JPEG
photo (grace_hopper.jpg, 512x600) per call: at concurrency 1, then from ``--clients`` threads at
once. Prints p50/p95 per protocol and the model's own time per image (``Classifier.scores`` on
decoded pixels, and decode + scores). Targets: gRPC <= 1.2x the model's own time (decode + scores)
at concurrency 1; REST within 1.5x of gRPC.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def timed(call: Callable[[], object], calls: int, clients: int) -> np.ndarray:
    """Seconds per call of ``calls`` calls, ``clients`` at a time."""
    def one(_: int) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    with ThreadPoolExecutor(clients) as pool:
        return np.array(list(pool.map(one, range(calls))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="bundle folder (default: the everyday model)")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    from vision.data.photos import example_photos
    from vision.defaults import EVERYDAY_MODEL
    from vision.ui import build
    from vision.ui.config import AppConfig
    from vision.ui.serving import start_grpc_server

    from app_server import free_port

    model = args.model or EVERYDAY_MODEL
    photo = next(p for p in example_photos() if p.name == "grace_hopper.jpg")
    data = photo.read_bytes()
    with tempfile.TemporaryDirectory() as home:
        config = AppConfig(default_model=model, models_dir=Path(home) / "models", state_dir=Path(home) / "state")
        app = build(config)
        app.launch("127.0.0.1", free_port(), quiet=True)
        grpc_port = free_port()
        server = start_grpc_server(config, grpc_port, "127.0.0.1")
        try:
            rows = measure(args, model, photo, app.demo.local_url, grpc_port)
        finally:
            server.stop(None)
            app.close()
    print(f"\n{Path(model).name}: one {len(data) // 1024} kB JPEG a call, {args.calls} calls per row")
    print(f"{'protocol':<22}{'clients':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for name, clients, times in rows:
        print(f"{name:<22}{clients:>8}{np.percentile(times, 50) * 1e3:>10.1f}{np.percentile(times, 95) * 1e3:>10.1f}")
    p50 = {(name, clients): float(np.percentile(times, 50)) for name, clients, times in rows}
    own = p50[("model: decode+scores", 1)]
    print(f"\ngRPC / model's own time at concurrency 1: {p50[('gRPC', 1)] / own:.2f}x (target <= 1.2)")
    for clients in (1, args.clients):
        print(f"REST / gRPC at {clients}: {p50[('REST', clients)] / p50[('gRPC', clients)]:.2f}x (target <= 1.5)")


def measure(args: argparse.Namespace, model: Path, photo: Path, url: str, grpc_port: int) -> list:
    """Each protocol's times, and the model's own, as (name, clients, seconds per call) rows."""
    import grpc
    import tensorflow as tf
    from gradio_client import Client, handle_file
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from vision.bundle.store import load_bundle
    from vision.data.images import input_side, load_image
    from vision.runtime.inference import Classifier

    data = photo.read_bytes()
    classifier = Classifier(load_bundle(model))
    side = input_side(classifier.preprocessing.size)
    pixels = load_image(data, max_side=side)
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    host, port = url.split("//")[1].rstrip("/").split(":")
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    gradio = Client(url, verbose=False)
    upload = handle_file(str(photo))

    def rest() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/v1/models/default:predict", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()[:200]
        answer.read()
        connection.close()

    def over_grpc() -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "default"
        request.model_spec.signature_name = "serving_default"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([data], shape=[1]))
        stub.Predict(request, 120.0)

    calls = {"model: scores": lambda: classifier.scores(pixels),
             "model: decode+scores": lambda: classifier.scores(load_image(data, max_side=side)),
             "gRPC": over_grpc, "REST": rest,
             "Gradio /classify": lambda: gradio.predict(upload, 3, api_name="/classify")}
    rows = []
    for clients in (1, args.clients):
        for name, call in calls.items():
            call()  # warm: the model loads, the connection opens
            rows.append((name, clients, timed(call, args.calls, clients)))
    channel.close()
    return rows


if __name__ == "__main__":
    main()
