"""The link a stakeholder opens shows *this* model (issue 29): a texture model trained here, with its
own title, classes and example photos on the Classify view, the in-browser page running the same
model, the demo preset without the workbench, and a phone-sized screen that holds the answer.

One texture model (brick, grass, gravel: real photos from scikit-image) trained by the CLI's fast
path, and two apps on it (the workbench in private mode, the demo preset in public mode), shared
by the tests of this module.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import sync_playwright

from app_server import launch_app
from browser import classify_on_phone, launch_chromium, tab_names
from web_harness import classify_files, open_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TITLE = "Texture spotter"
DESCRIPTION = "Tells brick from grass and gravel"
AUTHOR = "Ada from the lab"
PACKAGE_PHOTOS = ("chelsea", "coffee", "grace_hopper", "astronaut", "rocket")
#: The page (TF.js, wasm, float32) against the app (LiteRT, float32) on the same photo.
PAGE_TOLERANCE = 1e-4
WEB_READY_S = 600


@pytest.fixture(scope="module")
def textures(tmp_path_factory) -> Path:
    """A texture model from the CLI's fast path, described for visitors by the CLI."""
    from vision.cli import main
    from vision.data.photos import write_texture_task

    task = write_texture_task(tmp_path_factory.mktemp("task"), train_per_class=8, test_per_class=2, patch=96)
    out = tmp_path_factory.mktemp("bundles") / "textures"
    assert main(["train", str(task / "train"), "--out", str(out), "--epochs", "10"]) == 0
    assert main(["describe", str(out), "--title", TITLE, "--description", DESCRIPTION, "--author", AUTHOR]) == 0
    return out


#: What the workbench builds and a demo must not: every view but Classify and Live.
WORKBENCH = {"/train", "/add_samples", "/clear_samples", "/cancel_training", "/tensorboard", "/show_mistakes",
             "/remove_sample", "/rename_class", "/delete_class", "/use_model", "/model_card", "/describe_model",
             "/delete_model", "/publish_model", "/import_teachable_machine", "/compare_models", "/list_models",
             "/push", "/pull", "/export", "/export_table", "/optimize", "/cancel_optimize"}


@pytest.fixture(scope="module")
def workbench(textures, tmp_path_factory):
    from vision.data.photos import example_photos

    # The everyday model's package photos are configured, as AppConfig.from_env does: they must not show.
    app, url = launch_app(tmp_path_factory.mktemp("workbench") / "models", default_model=textures, prepare_web=True,
                          examples=tuple(str(path) for path in example_photos()))
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def demo(textures, tmp_path_factory):
    from vision.ui.config import DEMO_VIEWS

    app, url = launch_app(tmp_path_factory.mktemp("demo") / "models", default_model=textures, prepare_web=True,
                          public=True, views=DEMO_VIEWS)
    yield app, url
    app.close()


def _examples(bundle: Path) -> list[Path]:
    return sorted((bundle / "examples").glob("*.jpg"))


def test_a_trained_bundle_keeps_two_small_examples_per_class(textures):
    from PIL import Image

    info = json.loads((textures / "vision.json").read_text())
    names = [path.name for path in _examples(textures)]
    assert names == ["000-1.jpg", "000-2.jpg", "001-1.jpg", "001-2.jpg", "002-1.jpg", "002-2.jpg"]
    for path in _examples(textures):
        with Image.open(path) as image:
            assert image.format == "JPEG" and max(image.size) <= 320
    assert info["card"] == {"title": TITLE, "description": DESCRIPTION, "author": AUTHOR}
    assert f"# {TITLE}" in (textures / "README.md").read_text()


def test_the_classify_view_shows_the_model_its_classes_and_its_own_examples(workbench, textures):
    _, url = workbench
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#model-examples img').length >= 6", timeout=60_000)
        header = page.inner_text("#model-header")
        sources = page.eval_on_selector_all("#model-examples img", "images => images.map(i => i.src)")
        captions = page.inner_text("#model-examples")
        page.locator("#model-examples img").nth(4).click()  # a gravel example
        page.wait_for_function("document.querySelector('#prediction .output-class')", timeout=60_000)
        page.wait_for_function("document.querySelector('#prediction .output-class').innerText.trim() !== ''",
                               timeout=60_000)
        answer = page.inner_text("#prediction .output-class").strip()
        browser.close()
    for text in (TITLE, DESCRIPTION, AUTHOR, "brick", "grass", "gravel", "right on validation photos",
                 "trained on **", "calibrated"):
        assert text.replace("**", "") in header, (text, header)
    assert len(sources) == 6 and all(re.search(r"/00[0-2]-[12]\.jpg", src) for src in sources), sources
    assert not any(photo in src for src in sources for photo in PACKAGE_PHOTOS)
    assert captions.count("gravel") >= 2
    assert answer == "gravel"


def test_not_sure_is_said_in_plain_words_with_the_numbers_behind_details(workbench):
    from vision.data.photos import example_photos

    _, url = workbench
    coffee = next(p for p in example_photos() if p.name == "coffee.png")
    label, details = Client(url, verbose=False).predict(handle_file(str(coffee)), 3, api_name="/classify")
    assert label["label"].startswith("Not sure")
    assert "Not sure: this does not look like brick, grass or gravel** (the photos it learned from)" in details
    plain = details.split("<details>")[0]
    assert "amiliarity" not in plain and "threshold" not in plain  # the numbers are one click away
    assert "<details><summary>Details</summary>" in details and "Familiarity" in details


def test_the_page_runs_the_apps_model_and_answers_as_the_app_does(workbench, textures):
    app, url = workbench
    assert app.web_page.wait(WEB_READY_S), app.web_page.error
    assert app.web_page.model_dir.name.endswith("-fp32")
    client = Client(url, verbose=False)
    examples = _examples(textures)
    expected = []
    for path in examples:
        label, _ = client.predict(handle_file(str(path)), 3, api_name="/classify")
        expected.append({c["label"]: c["confidence"] for c in label["confidences"]})
    labels = json.loads((textures / "vision.json").read_text())["labels"]
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = open_page(browser, f"{url}web/?backend=wasm")
        title, classes = page.inner_text("#title"), page.inner_text("#classes")
        probabilities, _ = classify_files(page, examples)
        browser.close()
    assert title == TITLE and all(label in classes for label in labels)
    page_top = [labels[int(np.argmax(p))] for p in probabilities]
    app_top = [max(answer, key=answer.get) for answer in expected]
    assert page_top == app_top
    gap = max(abs(p[labels.index(k)] - v) for p, answer in zip(probabilities, expected) for k, v in answer.items())
    assert gap <= PAGE_TOLERANCE, gap


def test_the_demo_preset_builds_no_workbench_and_its_api_has_no_train(demo, workbench):
    _, url = demo
    endpoints = set(Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"])
    built = set(Client(workbench[1], verbose=False).view_api(return_format="dict",
                                                             print_info=False)["named_endpoints"])
    assert WORKBENCH <= built  # the list is the workbench's
    assert {"/classify", "/explain", "/live"} <= endpoints and not endpoints & WORKBENCH, endpoints
    request = urllib.request.Request(url + "gradio_api/call/train", data=b'{"data": []}',
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 404
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url)
        page.wait_for_selector("#model-header h2", timeout=60_000)
        tabs = tab_names(page)
        link = page.get_attribute("#app-title a", "href")
        heading, tab_title = page.inner_text("#app-title"), page.title()
        browser.close()
    assert tabs == ["Classify", "Live"] and link == "/web/"
    # The app is named after the model it serves, not "Image classifier".
    assert heading.startswith(TITLE) and tab_title == TITLE


@pytest.mark.parametrize("width", [390, 360])
def test_on_a_phone_the_photo_and_the_answer_fit_the_first_screen(demo, textures, width):
    app, url = demo
    photo = _examples(textures)[0]  # a brick
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page, app_box, app_width = classify_on_phone(browser, url, photo, width, label="brick")
        settings_open = page.evaluate("document.querySelector('#explain-settings').innerText.includes('Top k') && "
                                      "!!document.querySelector('#explain-settings input[type=range]')?.offsetParent")
        page.screenshot(path=str(Path(app.config.state_dir).parent / f"phone-{width}.png"))
        assert app.web_page.wait(WEB_READY_S), app.web_page.error
        web = open_page(browser, f"{url}web/?backend=wasm")
        web.set_viewport_size({"width": width, "height": 844})
        classify_files(web, [photo])
        web.evaluate("window.scrollTo(0, 0)")
        web_box = web.locator("#results li").first.bounding_box()
        web_width = web.evaluate("document.documentElement.scrollWidth")
        browser.close()
    assert app_box["y"] + app_box["height"] <= 844, app_box
    assert web_box["y"] + web_box["height"] <= 844, web_box
    assert app_width <= width and web_width <= width, (app_width, web_width)
    assert not settings_open


def test_a_model_the_page_cannot_run_is_named_with_the_reason(tmp_path):
    from test_web_serving import fake_web, get, serving

    from vision.bundle.store import make_info, save_tflite_bundle
    from vision.data.images import Preprocessing
    from vision.serve.webpage import WebPage

    info = make_info("Trash sorter", ["Cardboard", "Glass"], "teachable-machine", Preprocessing(size=(224, 224)),
                     runtime={"kind": "tflite-only"})
    bundle = save_tflite_bundle(b"not run here", info, tmp_path / "trash")
    page = WebPage(fake_web(tmp_path / "web"), bundle)
    with serving(page, tmp_path / "state") as port:
        status, body = get(port, "/web/")
        model_status, _ = get(port, "/web/model/model.json")
    assert status == 503 and model_status == 503
    assert "Trash sorter" in body and "cannot run in the browser" in body and "TFLite" in body


def test_examples_are_pushed_and_pulled_with_the_bundle_within_its_byte_cap(textures, tmp_path, monkeypatch):
    from vision.errors import LimitExceededError
    from vision.hub import pull, push

    from hub_server import HubServer

    token = "hf_ada_write_0123456789"
    with HubServer({token: ("ada", "write")}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        push(textures, "ada/textures", token=token)
        pulled = pull("ada/textures", token=token, cache_dir=tmp_path / "cache")
        everything = sum(p.stat().st_size for p in pulled.rglob("*") if p.is_file())  # what this pull took
        with pytest.raises(LimitExceededError):  # the examples count in what a pull may take
            pull("ada/textures", token=token, cache_dir=tmp_path / "other-cache",
                 max_bytes=everything - sum(p.stat().st_size for p in _examples(textures)))
    assert [p.read_bytes() for p in _examples(pulled)] == [p.read_bytes() for p in _examples(textures)]
