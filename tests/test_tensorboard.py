"""TensorBoard logs of real trainings, read back through TensorBoard's own HTTP API on loopback,
and its front end checked for anything it would fetch from elsewhere."""

from __future__ import annotations

import io
import json
import math
import re
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.cli import main
from vision.serve.tensorboard import start_tensorboard, stop_tensorboard
from vision.training.tensorboard import GRADCAM_IMAGES

pytestmark = pytest.mark.slow

EPOCHS, BATCH, LEARNING_RATE = 3, 16, 2e-3
# Loopback only: a proxy from the environment must not see these requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> bytes:
    with _opener.open(url, timeout=30) as response:
        assert response.status == 200, url
        return response.read()


def get_json(base: str, route: str, **query: str) -> object:
    return json.loads(get(base + route.lstrip("/") + ("?" + urllib.parse.urlencode(query) if query else "")))


def wait_for(read, ready, seconds: float = 60.0):
    """``read()`` once ``ready`` accepts it: TensorBoard loads event files in the background."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny training of the Keras loop with logs, and TensorBoard serving them."""
    from vision.data.datasets import load_synthetic
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle

    root = tmp_path_factory.mktemp("tensorboard")
    # 25 a class: 20 validation images, enough to calibrate, so there is a reliability diagram.
    dataset = load_synthetic(per_class=25, size=32, seed=3)
    config = TrainConfig(model="simple_cnn", input_size=32, epochs=EPOCHS, batch_size=BATCH,
                         learning_rate=LEARNING_RATE, augment=False, tensorboard=str(root / "logs"))
    trained = train_bundle(dataset, config, root / "shapes")
    url = start_tensorboard(root / "logs", reload_seconds=1)
    yield trained, dataset, root / "logs", url
    stop_tensorboard(root / "logs")


def test_the_scalars_tensorboard_serves_are_the_training_history(run):
    import keras

    trained, dataset, logs, url = run
    folder = Path(trained.result.config.tensorboard)
    assert folder.parent == logs and folder.name.startswith("shapes-")  # <DIR>/<bundle name>-<time>
    name, history = folder.name, trained.result.history
    expected = {  # (run, tag) -> the history's values, one per epoch
        (f"{name}/train", "epoch_loss"): history["loss"],
        (f"{name}/train", "epoch_accuracy"): history["accuracy"],
        (f"{name}/validation", "epoch_loss"): history["val_loss"],
        (f"{name}/validation", "epoch_accuracy"): history["val_accuracy"],
    }
    assert len(history["loss"]) == EPOCHS

    tags = wait_for(lambda: get_json(url, "data/plugin/scalars/tags"),
                    lambda tags: all(tag in tags.get(r, {}) for r, tag in expected))
    assert "epoch_learning_rate" in tags[f"{name}/train"], tags
    for (run_name, tag), values in expected.items():
        points = get_json(url, "data/plugin/scalars/scalars", run=run_name, tag=tag)  # [[wall time, step, value]]
        assert [step for _, step, _ in points] == list(range(EPOCHS)), (run_name, tag)
        assert [value for _, _, value in points] == pytest.approx(values, rel=1e-6), (run_name, tag)

    # The learning rate is the cosine schedule's after each epoch's last step.
    steps = math.ceil(len(dataset.train) / BATCH)
    cosine = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, decay_steps=EPOCHS * steps, alpha=0.02)
    rates = get_json(url, "data/plugin/scalars/scalars", run=f"{name}/train", tag="epoch_learning_rate")
    assert [value for _, _, value in rates] == pytest.approx(
        [float(cosine((epoch + 1) * steps)) for epoch in range(EPOCHS)], rel=1e-5)


def test_tensorboard_shows_the_confusion_matrix_reliability_and_grad_cam(run):
    trained, dataset, logs, url = run
    validation = f"{Path(trained.result.config.tensorboard).name}/validation"
    wanted = {"confusion_matrix", "reliability_diagram", *(f"gradcam/{i}" for i in range(GRADCAM_IMAGES))}
    tags = wait_for(lambda: get_json(url, "data/plugin/images/tags"),
                    lambda tags: wanted <= set(tags.get(validation, {})))
    assert set(tags.get(validation, {})) == wanted, tags
    assert trained.trust.calibration is not None  # hence the reliability diagram

    def image(tag: str) -> tuple[int, np.ndarray]:
        (entry,) = get_json(url, "data/plugin/images/images", run=validation, tag=tag)
        png = get(url + "data/plugin/images/individualImage?" + entry["query"])
        return entry["step"], np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    # The same pictures the bundle keeps, pixel for pixel, at the epoch whose weights were kept.
    for tag, file in (("confusion_matrix", "confusion_matrix.png"), ("reliability_diagram", "reliability.png")):
        step, pixels = image(tag)
        assert step == trained.result.best_epoch
        assert np.array_equal(pixels, np.asarray(Image.open(trained.path / file).convert("RGB"))), tag

    # Each Grad-CAM panel: the validation image, then the same image under its heatmap.
    labels = dataset.class_names
    described = [tags[validation][f"gradcam/{i}"]["description"] for i in range(GRADCAM_IMAGES)]
    shown = [next(label for label in labels if f"true <strong>{label}</strong>" in text) for text in described]
    assert shown == [labels[i % len(labels)] for i in range(GRADCAM_IMAGES)], described  # one class after another
    for i in range(GRADCAM_IMAGES):
        _, panel = image(f"gradcam/{i}")
        left, right = np.split(panel, 2, axis=1)
        assert left.shape == right.shape and left.std() > 5  # an image, not a blank
        assert np.abs(left.astype(int) - right.astype(int)).mean() > 10  # the heatmap is over it


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":  # what the page loads, not where its links lead
            self.found += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_front_end_comes_from_tensorboard_itself(run):
    """The claim "no CDN": the page's scripts, styles and fonts are all served by this server."""
    url = run[3]
    origin = urllib.parse.urlsplit(url)
    assert origin.hostname == "127.0.0.1"
    page = get(url).decode()
    parser = _References()
    parser.feed(page)
    references = parser.found + re.findall(r"url\(([^)]+)\)", page)  # <link>/<script>, and CSS fonts
    local = [ref.strip("'\"") for ref in references if not ref.strip("'\"").startswith(("data:", "#"))]
    assert any("index.js" in ref for ref in local) and any(".woff2" in ref for ref in local), local
    for ref in local:
        absolute = urllib.parse.urljoin(url, ref)
        assert urllib.parse.urlsplit(absolute).netloc == origin.netloc, ref
        assert get(absolute), ref
    # The script's only third-party load (Polymer's Google Fonts stylesheet) is switched off
    # by its own first lines, before that code runs.
    script = get(urllib.parse.urljoin(url, next(ref for ref in local if "index.js" in ref))).decode()
    head, _, rest = script.partition("window.polymerSkipLoadingFontRoboto = true;")
    assert len(head) < 100 and rest, script[:200]
    assert re.findall(r'\.(?:href|src)\s*=\s*"(https?:[^"]*)"', script) == [
        "https://fonts.googleapis.com/css?family=Roboto+Mono:400,700|Roboto:400,300,300italic,400italic,500,"
        "500italic,700,700italic"]


@pytest.mark.browser
def test_a_browser_opening_tensorboard_asks_nothing_of_other_hosts(run):
    from playwright.sync_api import sync_playwright

    from browser import launch_chromium

    trained, _, _, url = run
    name = Path(trained.result.config.tensorboard).name
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url + "#scalars")
        page.get_by_text(f"{name}/train").first.wait_for(timeout=60_000)  # the app ran and drew the runs
        browser.close()
    elsewhere = [u for u in requested if not u.startswith((url, "data:", "blob:"))]
    assert len(requested) > 3 and not elsewhere, elsewhere


def test_the_cli_logs_the_fast_path_and_not_without_the_option(shapes_folder, no_stray_writes):
    """``train --tensorboard DIR`` on the default (cached-features) path writes a run; the same
    training without it writes no event file anywhere."""
    tmp = no_stray_writes
    common = ["train", str(shapes_folder / "train"), "--size", "32", "--epochs", "2", "--no-augment"]
    assert main([*common, "--out", str(tmp / "logged"), "--tensorboard", str(tmp / "logs")]) == 0
    (run_folder,) = (tmp / "logs").iterdir()
    assert run_folder.name.startswith("logged-")
    info = json.loads((tmp / "logged" / "vision.json").read_text())
    assert info["architecture"] == "efficientnet_lite0" and "tensorboard" not in info["training"]
    for part in ("train", "validation"):
        assert list((run_folder / part).glob("events.out.tfevents.*")), part

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = EventAccumulator(str(run_folder / "train"))
    train.Reload()
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train.Tags()["tensors"])
    assert [event.step for event in train.Tensors("epoch_loss")] == [0, 1]
    validation = EventAccumulator(str(run_folder / "validation"))
    validation.Reload()
    assert {"confusion_matrix", "gradcam/0"} <= set(validation.Tags()["tensors"])

    before = sorted(tmp.rglob("events.out.tfevents.*"))
    assert main([*common, "--out", str(tmp / "quiet")]) == 0
    assert sorted(tmp.rglob("events.out.tfevents.*")) == before
    assert sorted(p.name for p in tmp.iterdir()) == ["logged", "logs", "quiet"]


def test_the_app_links_its_owner_to_tensorboard_and_refuses_visitors(tmp_path):
    from gradio_client import Client

    from app_server import launch_app

    private, url = launch_app(tmp_path / "private")
    try:
        link = Client(url, verbose=False).predict(api_name="/tensorboard")
        board = re.search(r"\((http://127\.0\.0\.1:\d+/)\)", link).group(1)
        with urllib.request.urlopen(board + "data/runs", timeout=30) as answer:
            assert answer.status == 200  # TensorBoard itself, serving the models folder's logs
        assert (tmp_path / "private" / ".tensorboard").is_dir()
    finally:
        private.close()
    public, url = launch_app(tmp_path / "public", public=True)
    try:
        with pytest.raises(Exception, match="for the app's owner"):
            Client(url, verbose=False).predict(api_name="/tensorboard")
    finally:
        public.close()
