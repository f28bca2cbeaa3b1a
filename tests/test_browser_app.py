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


def _colour_pngs(folder, name: str, colour: tuple[int, int, int], count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.zeros((48, 48, 3), np.uint8) + np.array([min(255, c + 6 * i) for c in colour], np.uint8)
        path = folder / f"{name}{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _card_text(page, index: int) -> str:
    return page.inner_text(f"#class-card-{index} .class-title")


def test_train_view_class_cards_and_the_clickable_confusion_matrix(app_url, tmp_path):
    """Cards with thumbnails; a click on a thumbnail removes it; rename and delete a class;
    no results until a training has some; a click on a confusion cell shows its images."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(app_url)
        page.get_by_role("tab", name="Train").click()
        for name, colour, count in (("red", (200, 20, 20), 6), ("blue", (20, 20, 200), 6), ("spare", (0, 200, 0), 1)):
            page.fill("#class-name input, #class-name textarea", name)
            files = _colour_pngs(tmp_path / name, name, colour, count)
            page.set_input_files("#sample-uploads input[type=file]", files)
            page.wait_for_function(f"document.querySelector('#sample-uploads').innerText.includes('{name}{count - 1}')",
                                   timeout=60_000)
            page.get_by_role("button", name="Add to class").click()
            page.wait_for_function(f"[...document.querySelectorAll('.class-card .class-title')]"
                                   f".some(e => e.innerText.includes('{name}'))", timeout=60_000)
        assert [_card_text(page, i) for i in range(3)] == ["red · 6 samples", "blue · 6 samples", "spare · 1 sample"]
        assert page.locator("#class-card-0 .class-samples img").count() == 6
        # Nothing trained yet: no empty result frames.
        for result in ("#train-curves", "#confusion-table", "#mistakes"):
            assert not page.locator(result).is_visible()

        page.locator("#class-card-0 .class-samples button.thumbnail-item").nth(2).click()
        page.wait_for_function("document.querySelector('#class-card-0 .class-title').innerText.includes('5 samples')",
                               timeout=60_000)
        assert page.locator("#class-card-0 .class-samples img").count() == 5
        rename = page.locator("#class-card-1 .class-name input, #class-card-1 .class-name textarea")
        rename.fill("navy")
        page.locator("#class-card-1 .class-rename").click()
        page.wait_for_function("document.querySelector('#class-card-1 .class-title').innerText.startsWith('navy')",
                               timeout=60_000)
        page.locator("#class-card-2 .class-delete").click()
        page.wait_for_function("!document.querySelector('#class-card-2')", timeout=60_000)
        assert [_card_text(page, i) for i in range(2)] == ["red · 5 samples", "navy · 6 samples"]

        # A tiny training from those cards, then a click on a cell with images in it.
        number = page.get_by_label("number input for Image size (px)")
        number.fill("32")
        number.press("Enter")
        number = page.get_by_label("number input for Epochs")
        number.fill("2")
        number.press("Enter")
        page.get_by_label("Pretrained ImageNet weights", exact=False).uncheck()
        page.get_by_label("Architecture").click()
        page.get_by_role("option", name="simple_cnn", exact=False).first.click()
        page.get_by_label("Save as").fill("cards")
        page.get_by_role("button", name="Train", exact=True).click()
        page.wait_for_function("document.querySelector('#train-metrics').innerText.includes('Saved')", timeout=300_000)
        page.wait_for_selector("#confusion-table [data-testid=cell-0-1]", timeout=60_000)
        assert page.locator("#train-curves").is_visible()
        counts = {(r, c): int(page.inner_text(f"#confusion-table [data-testid=cell-{r}-{c + 1}]"))
                  for r in range(2) for c in range(2)}
        row, col = next(cell for cell, count in counts.items() if count)
        names = ["navy", "red"]  # the model's label order
        page.locator(f"#confusion-table [data-testid=cell-{row}-{col + 1}]").click()
        caption = f"true {names[row]} → predicted {names[col]}"
        page.wait_for_function(f"[...document.querySelectorAll('#mistakes .caption-label, #mistakes img')]"
                               f".length > 0 && document.querySelector('#mistakes').innerText.includes('{caption}')",
                               timeout=120_000)
        page.screenshot(path=str(tmp_path / "train.png"), full_page=True)
        sizes = page.eval_on_selector_all("#mistakes img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
        browser.close()
    assert len(sizes) == counts[(row, col)]
    assert all(width >= 2 * (height - 22) - 2 for width, height in sizes)  # each beside its Grad-CAM
