"""The exported model in the browser: sizes, latency per backend, quantized agreement.

    python bench/bench_web.py [--images 200]

Exports the shapes model to TF.js as fp32, float16 and uint8, serves the page on
loopback, and feeds the shapes model's validation images (regenerated from seed 0)
through its file input in headless Chromium (software WebGL here: report, no target).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--drop", type=int, default=5, help="first latencies per backend left out (warm-up)")
    args = parser.parse_args()

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from vision.bundle.store import load_bundle
    from vision.data.images import preprocess
    from vision.data.synthetic import write_shapes
    from vision.defaults import SHAPES_MODEL
    from vision.export.formats import build_web_site, export

    from browser import launch_chromium
    from web_harness import classify_files, open_page, static_server

    bundle = load_bundle(SHAPES_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"shapes model ({SHAPES_MODEL}): TF.js export sizes (weights + model.json)")
        for quantize in (None, "float16", "uint8"):
            result = export(bundle, "tfjs", root / f"export-{quantize or 'fp32'}", quantize=quantize)
            print(f"  {quantize or 'fp32':<8} {result.size_bytes / 1e6:7.2f} MB")
        build_web_site(root / "export-fp32", root / "site")
        folder = write_shapes(root / "val", per_class=250, size=bundle.preprocessing.size[0], seed=0)
        paths = sorted((folder / "val").rglob("*.png"))[: args.images]
        pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        keras = np.asarray(bundle.model(preprocess(pixels, bundle.preprocessing), training=False))

        results = {}
        with static_server(root) as url, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            print(f"\nper-image latency in headless Chromium, fp32, {len(paths)} images (first {args.drop} "
                  "left out)")
            for backend in ("webgl", "wasm", "cpu"):
                page = open_page(browser, f"{url}site/index.html?backend={backend}")
                assert page.evaluate("tf.getBackend()") == backend
                probabilities, latencies = classify_files(page, paths)
                page.close()
                results[("fp32", backend)] = np.array(probabilities)
                kept = sorted(latencies[args.drop:])
                print(f"  {backend:<6} median {statistics.median(kept):7.2f} ms   "
                      f"p95 {kept[int(0.95 * (len(kept) - 1))]:7.2f} ms   ({len(kept)} timed)")
            for quantize in ("float16", "uint8"):
                page = open_page(browser, f"{url}site/index.html?backend=wasm&model=../export-{quantize}")
                results[(quantize, "wasm")] = np.array(classify_files(page, paths)[0])
                page.close()
            browser.close()

    print(f"\nagreement on {len(paths)} validation images")
    for (variant, backend), got in results.items():
        vs_keras = (got.argmax(1) == keras.argmax(1)).mean()
        vs_fp32 = (got.argmax(1) == results[("fp32", "wasm")].argmax(1)).mean()
        print(f"  {variant:<8} {backend:<6} top-1 vs Keras {vs_keras:7.2%}   vs fp32 {vs_fp32:7.2%}   "
              f"max |p - keras| {np.abs(got - keras).max():.2e}")


if __name__ == "__main__":
    main()
