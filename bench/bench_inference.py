"""Inference and input-pipeline speed, printed as one report.

    python bench/bench_inference.py [--repeats 200] [--model PATH]

For the app's default model (the everyday-objects model; ``--model`` picks another bundle)
and for mobilenet_v2 at 224x224 (random weights), batch 1, the sides taking turns in blocks
(``timing.alternating_ms``): Classifier.predict; a bare LiteRT interpreter (XNNPACK) on the
very flatbuffer the Classifier runs (its cached conversion: preprocessing and detector
compiled in), fed the same uint8 image, so their ratio is the wrapper's own overhead; a bare
interpreter on the model alone (no preprocessing, no detector) fed the already resized and
normalised input; and model.predict on that input. Then training throughput (images/s) of
the tf.data pipeline against a naive per-file Python loader, epochs taking turns.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from timing import BLOCKS, alternating_ms, machine, print_rows  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def classifier_flatbuffer(classifier) -> bytes:
    """The flatbuffer ``classifier`` runs, read back from the conversion cache exactly as
    ``vision.runtime.inference.Classifier`` reads it (same key); never converted again here."""
    from vision.runtime.tflite import cached_flatbuffer

    def missing() -> bytes:
        raise RuntimeError("the Classifier's conversion is not in the cache (unwritable VISION_CACHE_DIR?): "
                           "cannot time the same flatbuffer")

    if classifier.runtime != "tflite":
        raise RuntimeError(f"the Classifier runs on {classifier.runtime!r}, not TFLite")
    return cached_flatbuffer(f"classifier|{classifier.bundle.fingerprint}", missing)


def bare_runner(flatbuffer: bytes, x: np.ndarray):
    """A call that runs ``flatbuffer`` in a bare XNNPACK interpreter (as many threads as the
    Classifier's) on the fixed input ``x`` and reads every output back."""
    from vision.runtime.tflite import make_interpreter

    interpreter = make_interpreter(flatbuffer, os.cpu_count())
    input_index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(input_index, x.shape)
    interpreter.allocate_tensors()
    output_indices = [detail["index"] for detail in interpreter.get_output_details()]

    def call() -> list[np.ndarray]:
        interpreter.set_tensor(input_index, x)
        interpreter.invoke()
        return [interpreter.get_tensor(index) for index in output_indices]

    return call


def latency_report(label: str, bundle_path: Path, repeats: int) -> None:
    from vision.data.images import load_image
    from vision.runtime.inference import Classifier
    from vision.runtime.tflite import convert_to_tflite

    classifier = Classifier.from_path(bundle_path)
    model = classifier.bundle.model
    height, width = classifier.preprocessing.size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    # What the Classifier's interpreter is fed: the decoded uint8 image, batch axis added.
    same_input = load_image(image)[None]
    x = classifier.prepare(image)  # resized and normalised, for the model alone

    times = alternating_ms({
        "classifier": lambda: classifier.predict(image, top_k=5),
        "same": bare_runner(classifier_flatbuffer(classifier), same_input),
        "model only": bare_runner(convert_to_tflite(model), x),
        "keras": lambda: model.predict(x, verbose=0),
    }, repeats={"classifier": repeats, "same": repeats, "model only": repeats, "keras": max(10, repeats // 3)})
    classify, same, alone, keras_predict = (times[k] for k in ("classifier", "same", "model only", "keras"))
    print(f"\n{label}  ({height}x{width} input, runtime={classifier.runtime}, batch 1, medians; the sides took "
          f"turns in {BLOCKS} blocks)")
    print(f"  Classifier.predict (uint8 image in, top-5 out)             {classify:8.2f} ms")
    print(f"  bare interpreter, the Classifier's flatbuffer, same input   {same:8.2f} ms")
    print(f"  Classifier / bare on the same flatbuffer                   {classify / same:8.2f}x   (target <= 1.2)")
    print(f"  bare interpreter, model alone, pre-resized float input     {alone:8.2f} ms   "
          f"(preprocessing and detector compiled in: {same - alone:+.2f} ms)")
    print(f"  model.predict, pre-resized float input                     {keras_predict:8.2f} ms")
    print(f"  model.predict / Classifier.predict                         {keras_predict / classify:8.2f}x   "
          "(target >= 5)")


def throughput_report(epochs: int = 3, source_size: int = 256, per_class: int = 250, size: int = 64) -> None:
    """Photos are bigger than the model's input: files are ``source_size`` px PNGs, the
    model sees ``size`` px. The pipeline decodes in parallel once and serves later epochs
    from its cache; the naive loader decodes every file in every epoch. Epochs of the two
    take turns (pipeline, naive, pipeline, ...), and each side's images/s is over all of
    its epochs, the first (decoding, tracing) included."""
    import keras

    from vision.data.datasets import load_folder, make_pipeline
    from vision.data.images import Preprocessing, load_image, preprocess
    from vision.data.synthetic import write_shapes
    from vision.models.registry import create_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_shapes(Path(tmp) / "shapes", per_class=per_class, size=source_size, seed=0)
        dataset = load_folder(folder)
        spec = Preprocessing((size, size))
        n = len(dataset.train)
        architecture = "simple_cnn"

        def naive_batches():
            order = np.random.default_rng(0).permutation(n)
            for i in range(0, n, 32):
                chunk = order[i:i + 32]
                images = [preprocess(load_image(dataset.train.paths[j]), spec).numpy() for j in chunk]
                yield np.stack(images), dataset.train.labels[chunk]

        def fresh_model() -> keras.Model:
            keras.utils.set_random_seed(0)
            model = create_model(architecture, len(dataset.class_names), size)
            model.compile("adam", "sparse_categorical_crossentropy")
            return model

        def seconds_per_side(sides: dict) -> dict[str, float]:
            spent = {name: 0.0 for name in sides}
            for _ in range(epochs):
                for name, one_epoch in sides.items():
                    start = time.perf_counter()
                    one_epoch()
                    spent[name] += time.perf_counter() - start
            return spent

        def drain(batches) -> None:
            for _batch in batches:
                pass

        pipeline = make_pipeline(dataset.train, spec, batch_size=32, training=True, augment=False)
        inputs = seconds_per_side({"piped": lambda: drain(pipeline), "naive": lambda: drain(naive_batches())})

        piped_model, naive_model = fresh_model(), fresh_model()
        pipeline = make_pipeline(dataset.train, spec, batch_size=32, training=True, augment=False)

        def naive_epoch() -> None:
            for images, labels in naive_batches():
                naive_model.train_on_batch(images, labels)

        def piped_epoch() -> None:
            with warnings.catch_warnings():
                # Each fit call is a first epoch, which learns the pipeline's length by running out.
                warnings.filterwarnings("ignore", "Your input ran out of data")
                piped_model.fit(pipeline, epochs=1, verbose=0, shuffle=False)

        training = seconds_per_side({"piped": piped_epoch, "naive": naive_epoch})
    rate = {name: epochs * n / seconds for name, seconds in inputs.items()}
    trained = {name: epochs * n / seconds for name, seconds in training.items()}
    print(f"\n{n} PNG training files of {source_size}x{source_size}, model input {size}x{size}, {epochs} epochs "
          "per side, the sides' epochs taking turns")
    for title, speed in (("input only (decode + preprocess + batch, no model)", rate),
                         (f"training {architecture}", trained)):
        print(title)
        print_rows([("tf.data pipeline", f"{speed['piped']:8.0f} images/s"),
                    ("naive per-file loader", f"{speed['naive']:8.0f} images/s"),
                    ("speed-up", f"{speed['piped'] / speed['naive']:8.2f}x")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per side")
    parser.add_argument("--model", type=Path, default=None,
                        help="a bundle folder (default: the app's default, the everyday-objects model)")
    args = parser.parse_args()

    import tensorflow as tf

    from vision.bundle.store import make_info, save_bundle
    from vision.data.images import Preprocessing
    from vision.models.registry import create_model
    from vision.zoo.everyday import default_model

    print(f"tensorflow {tf.__version__}, {machine()}")
    if args.model is None:
        latency_report("default model (everyday objects)", default_model(), args.repeats)
    else:
        latency_report(f"model at {args.model}", args.model, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        labels = ["a", "b", "c", "d"]
        model = create_model("mobilenet_v2", len(labels), 224, weights=None)
        info = make_info("mobilenet_v2", labels, "mobilenet_v2", Preprocessing((224, 224)))
        latency_report("mobilenet_v2 (random weights, no detector)", save_bundle(model, info, Path(tmp) / "m"),
                       args.repeats)
    throughput_report()


if __name__ == "__main__":
    main()
