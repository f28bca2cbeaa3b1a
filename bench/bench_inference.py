"""Inference and input-pipeline speed, printed as one report.

    python bench/bench_inference.py [--repeats 50]

For the default model and for mobilenet_v2 at 224x224 (random weights): batch-1 median
latency of Classifier.predict, plain model.predict, and a bare tf.lite.Interpreter
(XNNPACK) on the same model; then training throughput (images/s) of the tf.data
pipeline against a naive per-file Python loader.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def latency_report(label: str, bundle_path: Path, repeats: int) -> None:
    from vision.runtime.inference import Classifier
    from vision.runtime.tflite import convert_to_tflite, make_interpreter

    classifier = Classifier.from_path(bundle_path)
    model = classifier.bundle.model
    height, width = classifier.preprocessing.size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    x = classifier.prepare(image)

    interpreter = make_interpreter(convert_to_tflite(model))
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def bare_tflite() -> np.ndarray:
        interpreter.set_tensor(input_index, x)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    classify = median_ms(lambda: classifier.predict(image, top_k=5), repeats)
    keras_predict = median_ms(lambda: model.predict(x, verbose=0), max(10, repeats // 3))
    tflite = median_ms(bare_tflite, repeats)
    print(f"\n{label}  ({height}x{width}, runtime={classifier.runtime})")
    print(f"  Classifier.predict       {classify:8.2f} ms")
    print(f"  model.predict            {keras_predict:8.2f} ms")
    print(f"  tf.lite.Interpreter      {tflite:8.2f} ms")
    print(f"  Classifier / TFLite      {classify / tflite:8.2f}x   (target <= 1.2)")
    print(f"  model.predict / Classif. {keras_predict / classify:8.2f}x   (target >= 5)")


def throughput_report(epochs: int = 3, source_size: int = 256) -> None:
    """Photos are bigger than the model's input: files are ``source_size`` px PNGs, the
    model sees 64 px. The pipeline decodes in parallel once and serves later epochs
    from its cache; the naive loader decodes every file in every epoch."""
    import keras

    from vision.data.datasets import load_folder, make_pipeline
    from vision.data.images import Preprocessing, load_image, preprocess
    from vision.data.synthetic import write_shapes
    from vision.models.registry import create_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_shapes(Path(tmp) / "shapes", per_class=250, size=source_size, seed=0)
        dataset = load_folder(folder)
        spec = Preprocessing((64, 64))
        n = len(dataset.train)

        def naive_batches():
            order = np.random.default_rng(0).permutation(n)
            for i in range(0, n, 32):
                chunk = order[i:i + 32]
                images = [preprocess(load_image(dataset.train.paths[j]), spec).numpy() for j in chunk]
                yield np.stack(images), dataset.train.labels[chunk]

        def fresh_model() -> keras.Model:
            keras.utils.set_random_seed(0)
            model = create_model("simple_cnn", 4, 64)
            model.compile("adam", "sparse_categorical_crossentropy")
            return model

        pipeline = make_pipeline(dataset.train, spec, batch_size=32, training=True, augment=False)
        start = time.perf_counter()
        for _ in range(epochs):
            for _batch in pipeline:
                pass
        piped_input = epochs * n / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(epochs):
            for _batch in naive_batches():
                pass
        naive_input = epochs * n / (time.perf_counter() - start)

        model = fresh_model()
        pipeline = make_pipeline(dataset.train, spec, batch_size=32, training=True, augment=False)
        start = time.perf_counter()
        model.fit(pipeline, epochs=epochs, verbose=0, shuffle=False)
        piped = epochs * n / (time.perf_counter() - start)
        model = fresh_model()
        start = time.perf_counter()
        for _ in range(epochs):
            for images, labels in naive_batches():
                model.train_on_batch(images, labels)
        naive = epochs * n / (time.perf_counter() - start)
    print(f"\n{n} PNG files of {source_size}x{source_size}, model input 64x64, {epochs} epochs")
    print("input only (decode + preprocess + batch, no model)")
    print(f"  tf.data pipeline         {piped_input:8.0f} images/s")
    print(f"  naive per-file loader    {naive_input:8.0f} images/s")
    print(f"  speed-up                 {piped_input / naive_input:8.2f}x")
    print("training simple_cnn")
    print(f"  tf.data pipeline         {piped:8.0f} images/s")
    print(f"  naive per-file loader    {naive:8.0f} images/s")
    print(f"  speed-up                 {piped / naive:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "shapes")
    args = parser.parse_args()

    import tensorflow as tf

    from vision.bundle.store import make_info, save_bundle
    from vision.data.images import Preprocessing
    from vision.models.registry import create_model

    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores")
    latency_report(f"default model ({args.model.name})", args.model, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        model = create_model("mobilenet_v2", 4, 224, weights=None)
        info = make_info("mobilenet_v2", ["a", "b", "c", "d"], "mobilenet_v2", Preprocessing((224, 224)))
        latency_report("mobilenet_v2 (random weights)", save_bundle(model, info, Path(tmp) / "m"), args.repeats)
    throughput_report()


if __name__ == "__main__":
    main()
