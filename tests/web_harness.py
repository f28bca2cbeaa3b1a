"""Serve static files on loopback and drive the web page in Chromium (tests and benchmarks)."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: The page's head against the same recipe in Keras: two frameworks, float32 on both sides.
HEAD_TOLERANCE = 1e-3
#: Unrelated photos' features for the page trainer's "unknown" threshold (web/background.json).
BACKGROUND_FILE = Path(__file__).resolve().parent.parent / "web" / "background.json"


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


def settled_backend(page, timeout_ms: int = 300_000) -> tuple[str, str]:
    """(the backend TF.js runs once the page has finished timing the others, the one its rule
    should have kept: wasm unless a rival was at least 1.5x faster). While timing runs, TF.js's
    global backend is briefly each rival in turn, so reading it earlier is a race."""
    page.wait_for_function("['done', 'remembered', 'forced'].includes(document.body.dataset.timing)",
                           timeout=timeout_ms)
    times = {entry["name"]: entry["ms"] for entry in page.evaluate("window.visionStats.backendTimes || []")}
    rivals = {name: ms for name, ms in times.items() if ms is not None and name != "wasm"}
    wasm = times.get("wasm")
    faster = wasm is not None and rivals and min(rivals.values()) * 1.5 < wasm
    return page.evaluate("tf.getBackend()"), min(rivals, key=rivals.get) if faster else "wasm"


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


def classify_unknown(page, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feed each file through the page; return its "unknown" decisions, familiarities, the
    pooled features the page computed and the probabilities it showed (a row per file)."""
    unknown, familiarity, features, probabilities = [], [], [], []
    for path in paths:
        probabilities += classify_files(page, [path])[0]
        unknown.append(page.get_attribute("#results", "data-unknown") == "true")
        familiarity.append(page.evaluate("window.visionStats.lastFamiliarity"))
        features.append(page.evaluate("Array.from(window.visionStats.lastFeatures)"))
    return np.array(unknown), np.array(familiarity, float), np.array(features, np.float32), np.array(probabilities)


def bank_features(page) -> tuple[np.ndarray, np.ndarray]:
    """The page trainer's features (one row per image) and class numbers."""
    bank = page.evaluate("(() => { const m = window.visionBank.matrix(); "
                         "return {x: Array.from(m.x), labels: m.labels, count: m.count}; })()")
    return np.array(bank["x"], np.float32).reshape(bank["count"], -1), np.array(bank["labels"])


def write_pngs(folder: Path, images: list) -> list[Path]:
    """Each uint8 RGB array as ``folder/photoNNN.png`` (lossless, so the page decodes what
    Python holds); returns the paths in order."""
    from PIL import Image

    paths = []
    for i, pixels in enumerate(images):
        paths.append(folder / f"photo{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def add_class(page, name: str) -> int:
    """Add a class on the page's trainer; returns its index."""
    page.fill("#class-name", name)
    page.click("#add-class")
    return page.evaluate("window.visionBank.classes.length") - 1


def drop_files(page, index: int, paths: list[Path]) -> None:
    """A real drop event on the class's row, carrying the files."""
    files = [{"name": p.name, "b64": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    page.evaluate("""({index, files}) => {
        const transfer = new DataTransfer();
        for (const {name, b64} of files) {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], name, {type: 'image/png'}));
        }
        document.querySelector(`.class-row[data-index="${index}"]`)
          .dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", {"index": index, "files": files})


def train_in_page(page) -> float:
    """Click Train and wait for it; returns the page's training seconds."""
    done = page.evaluate("window.visionStats.trainings || 0")
    page.click("#train")
    page.wait_for_function(f"(window.visionStats.trainings || 0) > {done}", timeout=60_000)
    return page.evaluate("window.visionStats.trainSeconds")


def download_model(page, folder: Path) -> Path:
    """Click the page's Download and save its three files (head, weights, metadata) in ``folder``."""
    downloads = []
    # Three downloads in a row: too quick to wait for each in turn.
    page.on("download", lambda download: downloads.append(download))
    page.click("#download")
    for _ in range(100):
        if len(downloads) == 3:
            break
        page.wait_for_timeout(100)
    folder.mkdir()
    for download in downloads:
        download.save_as(folder / download.suggested_filename)
    return folder


def odd_photos(folder: Path) -> list[Path]:
    """Real photos as people send them: a JPEG, a PNG, an EXIF-rotated JPEG, a PNG with an
    alpha gradient, and a greyscale PNG."""
    from PIL import Image

    from vision.data.photos import example_photos

    photos = {p.name: p for p in example_photos()}
    coffee = Image.open(photos["coffee.png"]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    coffee.save(folder / "rotated.jpg", quality=92, exif=exif)
    cat = Image.open(photos["chelsea.png"]).convert("RGBA")
    alpha = np.tile(np.linspace(40, 255, cat.width, dtype=np.uint8), (cat.height, 1))
    cat.putalpha(Image.fromarray(alpha))
    cat.save(folder / "alpha.png")
    Image.open(photos["astronaut.png"]).convert("L").save(folder / "grey.png")
    return [photos["grace_hopper.jpg"], photos["rocket.jpg"], folder / "rotated.jpg", folder / "alpha.png",
            folder / "grey.png"]


def keras_head(x: np.ndarray, labels: np.ndarray, classes: int, recipe: dict) -> object:
    """web/trainer.js's recipe in Keras: zero-initialised softmax layer, full-batch Adam."""
    import keras

    head = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(
        classes, activation="softmax", kernel_initializer="zeros", bias_initializer="zeros")])
    head.compile(optimizer=keras.optimizers.Adam(recipe["learningRate"]), loss="categorical_crossentropy")
    head.fit(x, keras.utils.to_categorical(labels, classes), epochs=recipe["epochs"], batch_size=len(x),
             shuffle=False, verbose=0)
    return head


def background_features(bundle) -> np.ndarray:
    """Pooled features of vision.data.photos.background_photos() under ``bundle``'s model, as
    vision.trust.fit computes them to place a trained model's "unknown" threshold."""
    from vision.data.images import preprocess
    from vision.data.photos import background_photos
    from vision.models.serving import feature_model

    extract = feature_model(bundle.model)
    return np.concatenate([np.asarray(extract(preprocess(photo, bundle.preprocessing)[None], training=False)[0])
                           for photo in background_photos()]).astype(np.float32)


def write_background(bundle, path: Path = BACKGROUND_FILE) -> Path:
    """web/background.json: the background photos' features for the page's model (the page
    trainer uses them only when its model has this name and feature size)."""
    features = background_features(bundle)
    path.write_text(json.dumps({
        "model": bundle.name, "size": int(features.shape[1]), "count": int(features.shape[0]),
        "about": "vision.data.photos.background_photos() through the model's pooled features "
                 "(tests/web_harness.py write_background); float32, base64, row after row",
        "features": base64.b64encode(features.tobytes()).decode(),
    }) + "\n")
    return path


if __name__ == "__main__":
    # python tests/web_harness.py: regenerate web/background.json for the page's model.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from vision.bundle.store import load_bundle
    from vision.zoo.everyday import default_model

    print(write_background(load_bundle(default_model())))
