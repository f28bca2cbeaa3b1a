"""Real photos: few-shot training, the everyday-objects model's speed, start-up, the web export.

    python bench/bench_real.py [--skip-app] [--skip-web]

Every figure the "real photos, offline" targets name, printed with its target:
- few-shot: 10 photos per class of three textures from package photos (train patches from
  the top half of each photo, test patches from the bottom half), the fast path against
  training from scratch, accuracy on the test patches and seconds from "train" to a saved
  bundle; then about a thousand 224 px images through the fast path;
- the everyday-objects model, the sides taking turns in blocks (``timing.alternating_ms``):
  Classifier.predict against a bare TFLite interpreter on the very flatbuffer it runs, fed
  the same image (the wrapper's overhead), and Grad-CAM against prediction;
- ``python -m vision predict photo.jpg``: seconds and lines of output (warm cache);
- ``python app.py`` to its first answer, and the live view's processed frames per second;
- the page's uint8 export: size, and top-1 agreement with Keras on real photos in Chromium.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
from bench_inference import bare_runner, classifier_flatbuffer  # noqa: E402
from timing import BLOCKS, alternating_ms, machine, timed_calls  # noqa: E402

#: The environment as started: the tests' helpers (imported below) point VISION_CACHE_DIR at an
#: empty folder, which would make every process measured here convert its models again.
ENV = dict(os.environ)


def few_shot(tmp: Path) -> None:
    from vision.data.datasets import load_folder
    from vision.data.photos import write_texture_task
    from vision.runtime.inference import Classifier
    from vision.training.config import TrainConfig
    from vision.training.evaluate import evaluate_classifier
    from vision.training.recipe import train_bundle

    task = write_texture_task(tmp / "textures", train_per_class=10, test_per_class=40)
    test = load_folder(task / "test").everything()
    shown = load_folder(task / "train")
    classes = len(shown.class_names)
    print(f"few-shot: {classes} texture classes, {(len(shown.train) + len(shown.val)) / classes:g} photos each "
          f"({len(shown.train) / classes:g} train + {len(shown.val) / classes:g} validation), {len(test)} held-out "
          "test photos")
    print(f"  {'path':<52} {'test acc':>8} {'train->bundle':>14}")
    runs = (("fast", TrainConfig(model="efficientnet_lite0")),
            ("from scratch", TrainConfig(model="resnet_small", epochs=30, batch_size=16)))
    for kind, config in runs:
        dataset = load_folder(task / "train")
        start = time.perf_counter()
        trained = train_bundle(dataset, config, tmp / config.model, overwrite=True)
        seconds = time.perf_counter() - start
        classifier = Classifier.from_path(trained.path)
        accuracy = evaluate_classifier(classifier, test, dataset.class_names).accuracy
        size = classifier.preprocessing.size[0]
        if kind == "fast":
            title = f"fast: {config.model} {size} px, features computed"
        else:
            ran = len(trained.result.history["loss"])
            title = f"{kind}: {config.model} {size} px, {ran} of {config.epochs} epochs"
        print(f"  {title:<52} {accuracy:8.3f} {seconds:12.1f} s")
    print("  targets: fast path >= 0.95 test accuracy, <= 15 s")

    patch = 224
    many = write_texture_task(tmp / "many", train_per_class=334, test_per_class=0, patch=patch)
    dataset = load_folder(many / "train")
    start = time.perf_counter()
    train_bundle(dataset, TrainConfig(model="efficientnet_lite0"), tmp / "many-model", overwrite=True)
    seconds = time.perf_counter() - start
    print(f"\n{len(dataset.train) + len(dataset.val):,} images ({len(dataset.train):,} train + {len(dataset.val):,} "
          f"validation) at {patch} px, fast path, features computed, train -> bundle: {seconds:.1f} s "
          "(target <= 90 s for 1,000)")


def everyday_speed(repeats: int = 40) -> None:
    import skimage.data

    from vision.bundle.store import load_bundle
    from vision.data.images import load_image
    from vision.explain.cam import Explainer
    from vision.runtime.inference import Classifier
    from vision.runtime.tflite import convert_to_tflite
    from vision.zoo.everyday import default_model

    bundle = load_bundle(default_model())
    photo = skimage.data.chelsea()
    classifier = Classifier(bundle)
    explainer = Explainer.from_bundle(bundle)
    # The Classifier's interpreter gets the decoded uint8 photo at its own size (resize and
    # normalise are compiled into its flatbuffer, with the detector): the bare side gets the same.
    same = bare_runner(classifier_flatbuffer(classifier), load_image(photo)[None])
    model_only = bare_runner(convert_to_tflite(bundle.model), classifier.prepare(photo))
    times = alternating_ms({"predict": lambda: classifier.predict(photo), "same": same, "model only": model_only,
                            "explain": lambda: explainer.explain(photo)}, repeats=repeats)
    predict_ms, same_ms, alone_ms, explain_ms = (times[k] for k in ("predict", "same", "model only", "explain"))
    height, width = photo.shape[:2]
    print(f"\neveryday-objects model, one {width}x{height} photo (already decoded), medians of "
          f"{timed_calls(repeats)} calls per side, the sides taking turns in {BLOCKS} blocks; {machine()}")
    print(f"  bare interpreter, the Classifier's flatbuffer, same uint8 photo {same_ms:7.1f} ms")
    print(f"  Classifier.predict (same flatbuffer, top-5 out)                {predict_ms:7.1f} ms   "
          f"{predict_ms / same_ms:.2f}x bare on the same flatbuffer (target <= 1.2x)")
    print(f"  bare interpreter, model alone, input resized + normalised first {alone_ms:7.1f} ms   "
          f"(resize, normalise and detector in the flatbuffer: {same_ms - alone_ms:+.1f} ms)")
    print(f"  Grad-CAM                                                       {explain_ms:7.1f} ms   "
          f"{explain_ms / predict_ms:.2f}x prediction (target <= 2x)")


def cli_predict(runs: int = 3) -> None:
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    command = [sys.executable, "-m", "vision", "predict", str(photo)]
    subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, check=True)  # warm the disk cache
    times, outputs = [], []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        outputs.append(done.stdout + done.stderr)
    lines = outputs[-1].strip().splitlines()
    print(f"\npython -m vision predict {photo.name}: median {statistics.median(times):.1f} s over {len(times)} "
          f"runs, {len(lines)} line(s) of output (target <= 8 s, one line)")
    print(f"  {lines[0] if lines else ''}")


def _converted() -> set[str]:
    """The conversions in the TFLite cache that the processes started here (``ENV``) use."""
    from vision.runtime.tflite import cache_dir

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(ENV)
        folder = cache_dir() / "tflite"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {p.name for p in folder.glob("*.tflite")}


def app_start_and_live(seconds: float) -> None:
    import urllib.request

    from bench_app import live_frame_rates, live_summary
    from gradio_client import Client, handle_file

    from vision.data.photos import example_photos

    from app_server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    photo = example_photos()[0]
    converted = _converted()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], cwd=REPO, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - start > 180:
                    raise
                time.sleep(0.1)
        up = time.perf_counter() - start
        labels = Client(url, verbose=False).predict(handle_file(str(photo)), 1, api_name="/classify")[0]
        first = time.perf_counter() - start
        new = len(_converted() - converted)
        cached = "converted models cached" if not new else f"{new} model(s) converted during the start"
        print(f"\npython app.py (warm machine, {cached}): page served after {up:.1f} s, first "
              f"answer through a new gradio_client at {first:.1f} s (target <= 15 s; make app adds no work once "
              f"set up): {labels['label']}")

        run = live_frame_rates(url, seconds, label="")  # any label: the model knows no shapes
        every = ", ".join(f"{s:g}" for s in run.stream_every) or "?"
        print(f"live view, everyday-objects model, {run.width}x{run.height} fake camera, stream_every={every} s, "
              f"{seconds:g} s: {live_summary(run)} (target >= 10)")
    finally:
        process.terminate()
        process.wait(timeout=30)


def web_export(tmp: Path) -> None:
    from playwright.sync_api import sync_playwright

    from vision.bundle.store import load_bundle
    from vision.data.images import preprocess
    from vision.data.photos import example_photos, with_crops
    from vision.export.formats import build_web_site, export
    from vision.zoo.everyday import default_model

    from browser import launch_chromium
    from web_harness import classify_files, open_page, static_server, write_pngs

    bundle = load_bundle(default_model())
    # Real photos: each package photo whole, and 32 crops of each (different views of it).
    photos = with_crops(example_photos(), crops=32)
    paths = write_pngs(tmp, photos)
    keras_p = np.stack([np.asarray(bundle.model(preprocess(p, bundle.preprocessing)[None], training=False))[0]
                        for p in photos])
    print(f"\nweb page, everyday-objects model, {len(paths)} real photos and crops, headless Chromium (wasm)")
    with static_server(tmp) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for quantize in ("uint8", "float16"):
            result = export(bundle, "tfjs", tmp / f"export-{quantize}", quantize=quantize)
            build_web_site(tmp / f"export-{quantize}", tmp / f"site-{quantize}")
            page = open_page(browser, f"{url}site-{quantize}/index.html?backend=wasm")
            probabilities = np.array(classify_files(page, paths)[0])
            page.close()
            agreement = (probabilities.argmax(1) == keras_p.argmax(1)).mean()
            print(f"  {quantize:<8} {result.size_bytes / 1e6:5.2f} MB   top-1 agreement with Keras {agreement:6.1%}   "
                  f"max |p - keras| {np.abs(probabilities - keras_p).max():.3f}")
        browser.close()
    print("  targets (uint8): <= 6 MB, >= 99 % agreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-app", action="store_true")
    parser.add_argument("--skip-web", action="store_true")
    parser.add_argument("--live-seconds", type=float, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        few_shot(Path(tmp))
        everyday_speed()
        cli_predict()
        if not args.skip_app:
            app_start_and_live(args.live_seconds)
        if not args.skip_web:
            web_export(Path(tmp))


if __name__ == "__main__":
    main()
