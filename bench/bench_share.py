"""The link a stakeholder opens (issue 29): how long until the app's own page answers, and whether
it answers as the app does.

    python bench/bench_share.py [--model BUNDLE] [--warm]

Starts ``python app.py --model BUNDLE`` (a texture model the CLI's fast path trains from
scikit-image's brick, grass and gravel photos when none is given) as a fresh process with an empty
export cache, and prints the seconds from the process's start until ``/web/`` answers 200 (the
page's float32 TF.js export of that model, made in the background), and again with the cache kept
(``--warm``: a restart). Then headless Chromium classifies the model's own examples on the page
(wasm) and the app classifies them through ``/classify``: top-1 agreement and the largest
probability difference are printed (the issue's target: equal top-1, max |dp| <= 1e-4, float32,
within 60 s of start).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def texture_model(folder: Path) -> Path:
    """A texture model from the CLI's fast path, with its examples and a title."""
    from vision.cli import main
    from vision.data.photos import write_texture_task

    task = write_texture_task(folder / "task", train_per_class=10, test_per_class=2, patch=96)
    out = folder / "textures"
    assert main(["train", str(task / "train"), "--out", str(out), "--epochs", "15"]) == 0
    assert main(["describe", str(out), "--title", "Texture spotter", "--description", "brick, grass or gravel"]) == 0
    return out


def start_app(model: Path, port: int, cache: Path) -> tuple[subprocess.Popen, float]:
    """``app.py --model`` in a fresh process with ``cache`` as its export cache; returns it and its start time."""
    # VISION_WEB_SETUP: tests/conftest.py (imported with app_server) turns the page's export off.
    env = {**os.environ, "VISION_CACHE_DIR": str(cache), "VISION_PORT": str(port), "VISION_HOST": "127.0.0.1",
           "VISION_WEB_SETUP": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--model", str(model)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, started


def seconds_until_web(url: str, process: subprocess.Popen, started: float, timeout: float = 900) -> float:
    """Seconds from ``started`` until ``url`` answers 200 (503 while the page is prepared)."""
    while time.perf_counter() - started < timeout:
        try:
            if urllib.request.urlopen(url, timeout=10).status == 200:
                return time.perf_counter() - started
        except urllib.error.HTTPError:
            pass
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}")
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


def agreement(url: str, model: Path) -> tuple[int, int, float]:
    """(examples with the same top-1 on the page and in the app, examples, max |dp|)."""
    import json

    import numpy as np
    from gradio_client import Client, handle_file
    from playwright.sync_api import sync_playwright

    from browser import launch_chromium
    from web_harness import classify_files, open_page

    examples = sorted((model / "examples").glob("*.jpg"))
    labels = json.loads((model / "vision.json").read_text())["labels"]
    client = Client(url, verbose=False)
    app = []
    for path in examples:
        answer, _ = client.predict(handle_file(str(path)), len(labels), api_name="/classify")
        app.append({c["label"]: c["confidence"] for c in answer["confidences"]})
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = open_page(browser, f"{url}web/?backend=wasm")
        page_probabilities, _ = classify_files(page, examples)
        browser.close()
    same = sum(labels[int(np.argmax(p))] == max(a, key=a.get) for p, a in zip(page_probabilities, app))
    gap = max(abs(p[labels.index(k)] - v) for p, a in zip(page_probabilities, app) for k, v in a.items())
    return same, len(examples), gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a bundle with examples/ (default: train a texture model)")
    parser.add_argument("--warm", action="store_true", help="also time a restart with the export cached")
    args = parser.parse_args()
    from app_server import free_port

    with tempfile.TemporaryDirectory(prefix="bench-share-") as scratch:
        scratch = Path(scratch)
        model = args.model or texture_model(scratch)
        cache = scratch / "cache"
        runs = ["cold", "warm"] if args.warm else ["cold"]
        for run in runs:
            port = free_port()
            url = f"http://127.0.0.1:{port}/"
            process, started = start_app(model, port, cache)
            try:
                seconds = seconds_until_web(url + "web/", process, started)
                print(f"{run} start: /web/ answered 200 {seconds:.1f} s after `python app.py --model` began")
                if run == runs[-1]:
                    same, count, gap = agreement(url, model)
                    print(f"page vs app on the model's {count} examples: top-1 equal on {same}/{count}, "
                          f"max |dp| {gap:.2e} (float32 TF.js wasm against LiteRT)")
            finally:
                process.terminate()
                process.wait(timeout=60)


if __name__ == "__main__":
    main()
