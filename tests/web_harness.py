"""Serve static files on loopback and drive the web page in Chromium (tests and benchmarks)."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

    def log_message(self, *args: object) -> None:  # keep test output readable
        pass


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url: str, timeout_ms: int = 120_000):
    """Open the page and wait until the model is loaded and warmed up."""
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready", timeout=timeout_ms)
    if page.evaluate("document.body.dataset.ready") != "true":
        raise AssertionError(f"page failed to start: {page.inner_text('#status')} {errors}")
    return page


def classify_files(page, paths: list[Path]) -> tuple[list[list[float]], list[float]]:
    """Feed each file through the page's file input; return probabilities and latencies (ms)."""
    probabilities, latencies = [], []
    for path in paths:
        done = page.evaluate("window.visionStats.files || 0")
        page.set_input_files("#file", str(path))
        page.wait_for_function(f"(window.visionStats.files || 0) > {done}", timeout=60_000)
        probabilities.append(json.loads(page.get_attribute("#results", "data-probabilities")))
        latencies.append(float(page.inner_text("#latency").split()[0]))
    return probabilities, latencies


def write_pngs(folder: Path, images: list) -> list[Path]:
    """Each uint8 RGB array as ``folder/photoNNN.png`` (lossless, so the page decodes what
    Python holds); returns the paths in order."""
    from PIL import Image

    paths = []
    for i, pixels in enumerate(images):
        paths.append(folder / f"photo{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths
