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
    BACKGROUND_FILE,
    HEAD_TOLERANCE,
    add_class,
    bank_features,
    classify_files,
    classify_unknown,
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
        # On wasm from the start: no backend timing adds and frees trial models while the
        # live tensors are counted (test_web.py checks that the timing leaves none behind).
        page = open_page(browser, f"{url}web/index.html?backend=wasm")
        add_class(page, "brick")
        # Hold to record, as Teachable Machine does: frames are added while the button is held.
        page.hover('.class-row[data-index="0"] .record')
        page.mouse.down()
        page.wait_for_function("(window.visionStats.examples || 0) >= 10", timeout=60_000)
        page.mouse.up()
        page.wait_for_timeout(300)  # a frame already under way may still land
        recorded = page.evaluate("window.visionBank.classes[0].features.length")
        page.wait_for_timeout(700)
        after_release = page.evaluate("window.visionBank.classes[0].features.length")
        thumbnails = page.locator('.class-row[data-index="0"] .thumb img').count()
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
    assert recorded >= 10 and after_release == recorded, (recorded, after_release)  # letting go stops it
    assert thumbnails >= 10
    assert len(set(counts)) == 1, f"tensors after each training: {counts}"
    assert live[0] == live[1], f"live tensors and bytes went from {live[0]} to {live[1]}"
    assert live_label == "brick"  # the camera still shows bricks
    assert (answers == np.repeat([0, 1], 8)).mean() >= 0.9, answers


def read_background() -> np.ndarray:
    """web/background.json's features, one row per photo."""
    import base64

    stored = json.loads(BACKGROUND_FILE.read_text())
    return np.frombuffer(base64.b64decode(stored["features"]), np.float32).reshape(stored["count"], stored["size"])


def test_the_page_trainers_background_features_are_pythons():
    """web/background.json holds what vision.trust.fit would compute for the page's model;
    rerun `python tests/web_harness.py` when the model changes."""
    from vision.bundle.store import load_bundle
    from vision.defaults import EVERYDAY_MODEL

    from web_harness import background_features

    bundle = load_bundle(EVERYDAY_MODEL)
    stored = json.loads(BACKGROUND_FILE.read_text())
    shipped = json.loads((REPO / "web" / "model" / "metadata.json").read_text())
    assert stored["model"] == bundle.name == shipped["name"]
    assert np.abs(read_background() - background_features(bundle)).max() <= 1e-4


def test_trainer_thumbnails_removal_rename_delete_and_unknown(task, tmp_path):
    """The page's trainer: a thumbnail per image, a click removes one, a class is renamed and
    another deleted; after training, photos unlike the classes are "unknown", decided as
    vision/trust/ood.py's fit_knn decides on the same features."""
    from vision.data.photos import example_photos
    from vision.trust.ood import fit_knn

    outside = example_photos()  # people, a cat, a cup, a rocket: no brick, grass or gravel
    inside = [sorted((task / "test" / texture).iterdir())[0] for texture in TEXTURES]
    with static_server(REPO) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = open_page(browser, f"{url}web/index.html?backend=wasm")
        for texture in TEXTURES:
            drop_files(page, add_class(page, texture), sorted((task / "train" / texture).iterdir()))
        drop_files(page, add_class(page, "mistake"), sorted((task / "train" / "brick").iterdir())[:2])
        page.wait_for_function("(window.visionStats.examples || 0) >= 32", timeout=60_000)
        first = '.class-row[data-index="0"]'
        thumbs = [page.locator(f'.class-row[data-index="{i}"] .thumb img').count() for i in range(4)]
        source = page.get_attribute(f"{first} .thumb img", "src")
        # Remove the first brick photo: a real click on its thumbnail.
        page.click(f"{first} .thumb >> nth=0")
        after_removal = (page.locator(f"{first} .thumb").count(),
                         page.evaluate("window.visionBank.classes[0].features.length"),
                         page.inner_text(f"{first} .count"))
        # Rename gravel, delete the mistaken class.
        page.fill('.class-row[data-index="2"] .rename', "pebbles")
        page.press('.class-row[data-index="2"] .rename', "Enter")
        page.click('.class-row[data-index="3"] .delete-class')
        labels = page.evaluate("window.visionBank.labels")
        train_in_page(page)
        trained_labels = page.evaluate("window.visionStats.headLabels")
        detector = page.evaluate("window.visionDetector()")
        x, _ = bank_features(page)
        unknown_in, familiarity_in, features_in, _ = classify_unknown(page, inside)
        unknown_out, familiarity_out, features_out, _ = classify_unknown(page, outside)
        verdict = page.inner_text("#verdict")
        # Renaming a trained class renames its answers at once, no retraining needed.
        page.fill('.class-row[data-index="2"] .rename', "stones")
        page.press('.class-row[data-index="2"] .rename', "Enter")
        classify_files(page, [inside[2]])
        renamed_answer = page.get_attribute("#results li", "data-label")
        browser.close()
    assert thumbs == [10, 10, 10, 2] and source.startswith("data:image/")
    assert after_removal == (9, 9, "9 images")
    assert labels == ["brick", "grass", "pebbles"] and trained_labels == labels
    assert not unknown_in.any() and unknown_out.all(), (familiarity_in, familiarity_out, detector)
    assert "Not sure" in verdict
    # The same detector in Python, fitted on the features the page computed (every photo trains,
    # none held out) and the same background photos, places the same threshold and decides the same.
    python = fit_knn(x, np.zeros((0, x.shape[1]), np.float32), read_background())
    assert detector["references"] == len(x) == 29
    assert abs(python.threshold - detector["threshold"]) <= 1e-5
    features = np.concatenate([features_in, features_out])
    page_familiarity = np.concatenate([familiarity_in, familiarity_out])
    assert np.abs(python.familiarity(features, None) - page_familiarity).max() <= 1e-5
    assert ((python.familiarity(features, None) < python.threshold) == np.r_[unknown_in, unknown_out]).all()
    assert renamed_answer == "stones"
