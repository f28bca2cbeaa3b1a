"""Training new classes in the browser (web/trainer.js): classes from dropped files and a
(fake) webcam, features from the page's own everyday-objects model, a head trained with
TF.js, its answers against the same recipe in Keras, the download loaded again, and live
tensors flat over repeated trainings.

The task: scikit-image's brick, grass and gravel photos, training patches from the top half
of each photo and held-out test patches from the bottom half.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from vision.data.photos import TEXTURES, write_texture_task

from browser import launch_chromium, write_y4m
from conftest import REPO
from web_harness import (
    HEAD_TOLERANCE,
    add_class,
    classify_files,
    download_model,
    drop_files,
    keras_head,
    open_page,
    static_server,
    train_in_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    shipped = REPO / "web" / "model" / "metadata.json"
    if not shipped.is_file() or "features" not in json.loads(shipped.read_text()):
        pytest.fail("web/model is missing or predates the features output: run `make web-model`")
    return write_texture_task(tmp_path_factory.mktemp("textures"), train_per_class=10, test_per_class=8, patch=128)


def test_train_in_the_browser_from_dropped_files_download_and_reload(task, tmp_path):
    tests = sorted((task / "test").rglob("*.png"))
    truth = np.array([TEXTURES.index(p.parent.name) for p in tests])
    served = tmp_path / "served"  # the page (a link to web/) and, later, the downloaded model
    served.mkdir()
    (served / "web").symlink_to(REPO / "web")
    with static_server(served) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = open_page(browser, f"{url}web/index.html")
        assert page.is_visible("#trainer") and page.is_disabled("#train")
        for texture in TEXTURES:
            index = add_class(page, texture)
            drop_files(page, index, sorted((task / "train" / texture).iterdir()))
        page.wait_for_function("(window.visionStats.examples || 0) >= 30", timeout=60_000)
        assert page.evaluate("window.visionBank.classes.map((c) => c.features.length)") == [10, 10, 10]
        train_in_page(page)  # its time is a benchmark figure (bench/bench_browser.py), not a test
        probabilities = np.array(classify_files(page, tests)[0])
        assert page.evaluate("window.visionStats.headLabels") == list(TEXTURES)

        # The same recipe in Keras, on the features the page computed, gives the same answers.
        bank = page.evaluate("(() => { const m = window.visionBank.matrix(); "
                             "return {x: Array.from(m.x), labels: m.labels, count: m.count}; })()")
        recipe = page.evaluate("import('./trainer.js').then((m) => m.HEAD_RECIPE)")
        x = np.array(bank["x"], np.float32).reshape(bank["count"], -1)
        reference = keras_head(x, np.array(bank["labels"]), 3, recipe)
        page_answers = np.array([page.evaluate("(f) => window.visionHead(f)", row.tolist()) for row in x[::3]])
        keras_answers = reference.predict(x[::3], verbose=0)

        # Download the model, then open the page on the downloaded files (?head=).
        mine = download_model(page, served / "mine")
        reloaded = open_page(browser, f"{url}web/index.html?head=../mine")
        page.wait_for_timeout(200)
        labels = reloaded.evaluate("window.visionStats.headLabels")
        again = np.array(classify_files(reloaded, tests)[0])
        browser.close()
    assert (truth == probabilities.argmax(1)).mean() >= 0.9, probabilities.argmax(1)
    assert np.abs(page_answers - keras_answers).max() <= HEAD_TOLERANCE
    assert sorted(path.name for path in mine.iterdir()) == ["head.json", "head.weights.bin", "metadata.json"]
    assert labels == list(TEXTURES) and np.abs(again - probabilities).max() <= 1e-6


def test_webcam_classes_train_and_stay_flat_over_retraining_and_live_frames(task, tmp_path):
    from PIL import Image

    bricks = [np.asarray(Image.open(p).convert("RGB").resize((320, 240))) for p in
              sorted((task / "train" / "brick").iterdir())]
    clip = write_y4m(tmp_path / "bricks.y4m", [frame for frame in bricks for _ in range(3)])
    tests = sorted((task / "test" / "brick").iterdir()) + sorted((task / "test" / "grass").iterdir())
    with static_server(REPO) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright, fake_video=clip)
        page = open_page(browser, f"{url}web/index.html")
        add_class(page, "brick")
        page.click('.class-row[data-index="0"] button')  # "Add 10 webcam frames": starts the camera
        page.wait_for_function("(window.visionStats.examples || 0) >= 10", timeout=60_000)
        drop_files(page, add_class(page, "grass"), sorted((task / "train" / "grass").iterdir()))
        page.wait_for_function("(window.visionStats.examples || 0) >= 20", timeout=60_000)
        train_in_page(page)
        counts = [page.evaluate("tf.memory().numTensors")]
        for _ in range(3):
            train_in_page(page)
            counts.append(page.evaluate("tf.memory().numTensors"))
        # Live frames through the trained head: the count holds over 200 of them.
        start = page.evaluate("window.visionStats.frames")
        page.wait_for_function(f"window.visionStats.frames >= {start + 20}", timeout=60_000)
        live = [page.evaluate("[tf.memory().numTensors, tf.memory().numBytes]")]
        page.wait_for_function(f"window.visionStats.frames >= {start + 220}", timeout=120_000)
        live.append(page.evaluate("[tf.memory().numTensors, tf.memory().numBytes]"))
        live_label = page.get_attribute("#results li", "data-label")
        page.click("#camera")  # stop the webcam: files are classified alone
        answers = np.array(classify_files(page, tests)[0]).argmax(1)
        browser.close()
    assert len(set(counts)) == 1, f"tensors after each training: {counts}"
    assert live[0] == live[1], f"live tensors and bytes went from {live[0]} to {live[1]}"
    assert live_label == "brick"  # the camera still shows bricks
    assert (answers == np.repeat([0, 1], 8)).mean() >= 0.9, answers
