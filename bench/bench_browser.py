"""The browser side: backend choice, training in the page, same answers as Keras, steadiness.

    python bench/bench_browser.py [--frames 1000]

Headless Debian Chromium here has no GPU: WebGL and WebGPU run on SwiftShader (software),
so these figures are for comparing, not for a user's laptop. Printed with its target:
- the page's own backend timing (web/model: the everyday-objects model, uint8, with features);
- training in the page: the texture classes' training patches dropped in, features included, then
  accuracy on the held-out patches, and the head against the same recipe in Keras;
- the everyday model's fp32 export in the page against Keras on real photos (EXIF-rotated,
  alpha and greyscale files included), per backend;
- live tensors and bytes over a long fake-camera run, and over repeated trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from vision.bundle.store import load_bundle
    from vision.data.images import load_image, preprocess
    from vision.data.photos import TEXTURES, example_photos, with_crops, write_texture_task
    from vision.export.formats import build_web_site, export
    from vision.zoo.everyday import default_model

    from browser import launch_chromium, write_y4m
    from web_harness import (
        HEAD_TOLERANCE,
        add_class,
        classify_files,
        drop_files,
        keras_head,
        odd_photos,
        open_page,
        static_server,
        train_in_page,
        write_pngs,
    )

    bundle = load_bundle(default_model())
    page_model = json.loads((REPO / "web" / "model" / "metadata.json").read_text())
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        tmp = Path(tmp)
        (tmp / "web").symlink_to(REPO / "web")
        browser = launch_chromium(playwright)
        with static_server(tmp) as url:
            started = time.perf_counter()
            page = open_page(browser, f"{url}web/index.html")
            ready = time.perf_counter() - started
            times = page.evaluate("window.visionStats.backendTimes")
            chosen = page.evaluate("tf.getBackend()")
            print(f"backend choice, the page's model ({page_model['name']}, {page_model['quantization']}): "
                  f"{chosen} chosen, ready "
                  f"{ready:.1f} s after opening (target: wasm here)")
            print("  " + page.inner_text("#backend-times"))
            print("  " + ", ".join(f"{t['name']} {t['ms']:.1f} ms" if t["ms"] is not None else f"{t['name']} -"
                                   for t in times))

            task = write_texture_task(tmp / "textures", train_per_class=10, test_per_class=40, patch=128)
            dropped = {texture: sorted((task / "train" / texture).iterdir()) for texture in TEXTURES}
            examples = sum(len(files) for files in dropped.values())
            started = time.perf_counter()
            for texture, files in dropped.items():
                drop_files(page, add_class(page, texture), files)
            page.wait_for_function(f"(window.visionStats.examples || 0) >= {examples}", timeout=120_000)
            head_seconds = train_in_page(page)
            total = time.perf_counter() - started
            tests = sorted((task / "test").rglob("*.png"))
            truth = np.array([TEXTURES.index(p.parent.name) for p in tests])
            accuracy = (np.array(classify_files(page, tests)[0]).argmax(1) == truth).mean()
            bank = page.evaluate("(() => { const m = window.visionBank.matrix(); "
                                 "return {x: Array.from(m.x), labels: m.labels, count: m.count}; })()")
            recipe = page.evaluate("import('./trainer.js').then((m) => m.HEAD_RECIPE)")
            x = np.array(bank["x"], np.float32).reshape(bank["count"], -1)
            keras_p = keras_head(x, np.array(bank["labels"]), len(TEXTURES), recipe).predict(x, verbose=0)
            page_p = np.array([page.evaluate("(f) => window.visionHead(f)", row.tolist()) for row in x])
            per_class = "/".join(str(len(files)) for files in dropped.values())
            print(f"\ntraining in the page: {len(dropped)} classes x {per_class} photos ({bank['count']} examples in "
                  f"the page), dropped in -> trained in {total:.1f} s "
                  f"(features included; the head alone {head_seconds:.2f} s; target <= 10 s)")
            print(f"  held-out accuracy {accuracy:.3f} on {len(tests)} patches (target >= 0.9); "
                  f"head vs Keras, same recipe and features: max |dp| {np.abs(page_p - keras_p).max():.1e} "
                  f"(tolerance {HEAD_TOLERANCE:g})")
            counts = [page.evaluate("tf.memory().numTensors")]
            for _ in range(5):
                train_in_page(page)
                counts.append(page.evaluate("tf.memory().numTensors"))
            print(f"  live tensors after each of {len(counts)} trainings: {counts}")
            page.close()

            # Same answers: the fp32 export on real photos, odd files included.
            export(bundle, "tfjs", tmp / "fp32")
            build_web_site(tmp / "fp32", tmp / "site")
            paths = odd_photos(tmp) + write_pngs(tmp, with_crops(example_photos(), crops=4))
            expected = np.stack([bundle.model(preprocess(load_image(p), bundle.preprocessing)[None],
                                              training=False)[0] for p in paths])
            print(f"\nthe everyday model (fp32) in the page against Keras, {len(paths)} real photos "
                  "(EXIF-rotated JPEG, alpha, greyscale included; target max |dp| <= 1e-4)")
            for backend in ("wasm", "webgl", "webgpu", "cpu"):
                page = open_page(browser, f"{url}site/index.html?backend={backend}")
                if page.evaluate("tf.getBackend()") != backend:
                    print(f"  {backend:<7} did not start")
                    continue
                got = np.array(classify_files(page, paths)[0])
                page.close()
                print(f"  {backend:<7} max |dp| {np.abs(got - expected).max():.1e}   top-1 agreement "
                      f"{(got.argmax(1) == expected.argmax(1)).mean():.1%}")
        browser.close()

        # Steady for hours: a long fake-camera run on the page's model.
        frames = [np.asarray(Image.open(p).convert("RGB").resize((320, 240))) for p in paths[:6]]
        clip = write_y4m(tmp / "clip.y4m", [f for f in frames for _ in range(5)])
        browser = launch_chromium(playwright, fake_video=clip)
        with static_server(tmp) as url:
            page = open_page(browser, f"{url}web/index.html")
            page.click("#camera")
            page.wait_for_function("window.visionStats.frames >= 20", timeout=120_000)
            first = page.evaluate("[window.visionStats.frames, tf.memory().numTensors, tf.memory().numBytes]")
            started = time.perf_counter()
            page.wait_for_function(f"window.visionStats.frames >= {first[0] + args.frames}",
                                   timeout=args.frames * 1000)
            seconds = time.perf_counter() - started
            last = page.evaluate("[window.visionStats.frames, tf.memory().numTensors, tf.memory().numBytes]")
            print(f"\nlive webcam, the page's model, {last[0] - first[0]} frames in {seconds:.0f} s "
                  f"({(last[0] - first[0]) / seconds:.1f} frames/s): tensors {first[1]} -> {last[1]}, "
                  f"bytes {first[2]:,} -> {last[2]:,} (target: flat)")
        browser.close()


if __name__ == "__main__":
    main()
