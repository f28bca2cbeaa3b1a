"""The app in a real browser: Debian Chromium, driven by Playwright, with a fake camera."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from app_server import launch_app
from browser import launch_chromium, shape_clip, start_live_view
from conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    demo, url = launch_app(tmp_path_factory.mktemp("models"))
    yield url
    demo.close()


@pytest.fixture(scope="module")
def star_clip(tmp_path_factory):
    return shape_clip(tmp_path_factory.mktemp("clip") / "stars.y4m", "star")


def test_upload_an_image_and_read_the_label(app_url, tmp_path):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(app_url)
        page.set_input_files("#classify-image input[type=file]", str(REPO / "docs" / "examples" / "star.png"))
        page.wait_for_function("document.querySelector('#prediction').innerText.includes('star')", timeout=60_000)
        page.wait_for_selector("#heatmap img", timeout=60_000)
        headline = page.inner_text("#prediction .output-class").strip()
        shot = tmp_path / "classify.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert headline == "star"
    assert shot.stat().st_size > 10_000


def test_live_view_streams_fake_camera_frames_and_labels_arrive(app_url, star_clip, tmp_path):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, fake_video=star_clip)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(app_url)
        start_live_view(page, "star")
        # Several frames, not one: the processed-frame counter grows.
        page.wait_for_function("/\\((\\d+) recent\\)/.test(document.querySelector('#live-fps').innerText) && "
                               "+document.querySelector('#live-fps').innerText.match(/\\((\\d+) recent\\)/)[1] >= 10",
                               timeout=60_000)
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        label = page.inner_text("#live-prediction .output-class").strip()
        browser.close()
    assert label == "star"
