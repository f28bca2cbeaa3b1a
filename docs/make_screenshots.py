"""Regenerate the README's screenshots of every view (headless Chromium, fake camera).

    .venv/bin/python docs/make_screenshots.py [--only optimize | --only web-trainer | --only train | --only sharing]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from vision.bundle.store import RELIABILITY_FILE  # noqa: E402
from vision.data.datasets import load_folder  # noqa: E402
from vision.data.photos import TEXTURES, example_photos, write_texture_task  # noqa: E402
from vision.training.config import TrainConfig  # noqa: E402
from vision.training.recipe import train_bundle  # noqa: E402
from vision.trust.audit import audit_dataset  # noqa: E402
from vision.ui.cache import get_explainer  # noqa: E402
from vision.ui.review import issue_gallery, side_by_side  # noqa: E402
from vision.zoo.everyday import default_model  # noqa: E402

from app_server import launch_app  # noqa: E402
from browser import launch_chromium, shape_clip, start_live_view  # noqa: E402
from web_harness import add_class, classify_files, drop_files, open_page, static_server, train_in_page  # noqa: E402

OUT = REPO / "docs" / "screenshots"
CAT = next(p for p in example_photos() if p.name == "chelsea.png")
COFFEE = next(p for p in example_photos() if p.name == "coffee.png")


def optimize_view(page, archive: Path) -> None:
    """The Optimize view on the session's model: distil, prune, int8, and the trade-off table."""
    page.get_by_role("tab", name="Optimize").click()
    page.locator("#optimize-data input[type=file]").set_input_files(str(archive))
    number = page.get_by_label("number input for Prune to")  # the student's defaults otherwise
    number.fill("0.75")
    number.press("Enter")
    page.get_by_label("Name the variants").fill("textures-small")
    page.get_by_role("button", name="Optimize", exact=True).click()
    page.wait_for_function("document.querySelector('#optimize-status').innerText.includes('Done')",
                           timeout=900_000)
    page.wait_for_timeout(2500)
    page.screenshot(path=str(OUT / "optimize.png"), full_page=True)


def train_view(page, dataset: Path) -> None:
    """The Train view: one card per texture class built from uploads, a training with the
    view's defaults, a click on a confusion-matrix cell (a mistake where there is one), then
    train.png."""
    page.get_by_role("tab", name="Train").click()
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        page.fill("#class-name input, #class-name textarea", folder.name)
        files = sorted(folder.iterdir())
        page.set_input_files("#sample-uploads input[type=file]", [str(f) for f in files])
        page.wait_for_function(f"document.querySelector('#sample-uploads').innerText.includes('{files[-1].stem}')",
                               timeout=60_000)
        page.get_by_role("button", name="Add to class").click()
        page.wait_for_function(f"[...document.querySelectorAll('.class-card .class-title')]"
                               f".some(e => e.innerText.startsWith('{folder.name} '))", timeout=60_000)
    page.get_by_label("Save as").fill("textures")
    page.get_by_role("button", name="Train", exact=True).click()
    page.wait_for_function("document.querySelector('#train-metrics').innerText.includes('Saved')", timeout=300_000)
    page.wait_for_selector("#confusion-table [data-testid=cell-0-1]", timeout=60_000)
    cells = page.eval_on_selector_all(
        "#confusion-table [data-testid^=cell-]",
        "cells => cells.map(c => [+c.dataset.row, +c.dataset.col, +c.innerText]).filter(c => c[1] > 0 && c[2] > 0)")
    row, col, _ = next((c for c in cells if c[0] != c[1] - 1), cells[0])
    page.locator(f"#confusion-table [data-testid=cell-{row}-{col}]").click()
    page.wait_for_function("document.querySelector('#mistakes').innerText.includes('→ predicted')", timeout=120_000)
    page.mouse.move(0, 0)
    page.wait_for_timeout(2500)
    page.screenshot(path=str(OUT / "train.png"), full_page=True)


def only_train() -> None:
    """Just the Train view's picture, on the everyday model's app with the texture classes."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset, _ = texture_archive(tmp, mislabel=True)
        in_app(tmp / "models", default_model(), lambda page: train_view(page, dataset))


def in_app(models: Path, model: Path, view: Callable[[Any], None]) -> None:
    """Launch the app on ``model``, and run ``view`` on a page of it in Chromium."""
    demo, url = launch_app(models, default_model=model)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url)
        view(page)
        browser.close()
    demo.close()


def texture_archive(tmp: Path, mislabel: bool = False) -> tuple[Path, Path]:
    """(the texture patches' train folder, a .zip of it) as the Train view takes them; with
    ``mislabel``, one brick patch filed under grass (the data check should point at it)."""
    dataset = write_texture_task(tmp / "textures", train_per_class=10, test_per_class=1) / "train"
    if mislabel:
        shutil.copy(dataset.parent / "test" / "brick" / "brick_0000.png", dataset / "grass" / "grass_from_brick.png")
    archive = tmp / "textures.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(dataset.rglob("*.png")):
            zf.write(path, path.relative_to(dataset))
    return dataset, archive


def only_optimize() -> None:
    """Just the Optimize view's picture, on a texture model trained here."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset, archive = texture_archive(tmp)
        train_bundle(load_folder(dataset), TrainConfig(model="efficientnet_lite0"), tmp / "models" / "textures")
        in_app(tmp / "models", tmp / "models" / "textures", lambda page: optimize_view(page, archive))


def web_trainer(web, dataset: Path) -> None:
    """The page's trainer: three texture classes from ten photos each (thumbnails shown), a
    held-out gravel patch classified, then web_training.png."""
    for texture in TEXTURES:
        drop_files(web, add_class(web, texture), sorted((dataset / texture).iterdir())[:10])
    web.wait_for_function("(window.visionStats.examples || 0) >= 30", timeout=120_000)
    train_in_page(web)
    classify_files(web, [dataset.parent / "test" / "gravel" / "gravel_0000.png"])
    web.mouse.move(0, 0)  # no hover outline in the picture
    web.screenshot(path=str(OUT / "web_training.png"), full_page=True)


def only_web_trainer() -> None:
    """Just the page trainer's picture: the static page served on its own, no app."""
    with tempfile.TemporaryDirectory() as tmp, static_server(REPO) as url, sync_playwright() as playwright:
        task = write_texture_task(Path(tmp) / "textures", train_per_class=10, test_per_class=1)  # as main()
        browser = launch_chromium(playwright)
        web_trainer(open_page(browser, f"{url}web/index.html?backend=wasm"), task / "train")
        browser.close()


def only_sharing() -> None:
    """What a stakeholder opens (README "Sharing your model"): a texture model trained here and
    described, served with --demo, on a desktop (an example clicked) and on a phone (a photo)."""
    from vision.bundle.store import describe_bundle
    from vision.ui.config import DEMO_VIEWS

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset, _ = texture_archive(tmp)
        model = tmp / "texture-spotter"
        train_bundle(load_folder(dataset), TrainConfig(model="efficientnet_lite0"), model)
        describe_bundle(model, title="Texture spotter", description="Is it brick, grass or gravel? Point a camera "
                        "at a wall, a lawn or a path.", author="the vision team")
        demo, url = launch_app(tmp / "models", default_model=model, public=True, views=DEMO_VIEWS)
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(url)
            page.wait_for_function("document.querySelectorAll('#model-examples img').length >= 6", timeout=60_000)
            page.locator("#model-examples img").nth(4).click()
            page.wait_for_selector("#heatmap img", timeout=120_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "share_desktop.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(url)
            phone.set_input_files("#classify-image input[type=file]", str(next((model / "examples").iterdir())))
            phone.wait_for_function("document.querySelector('#prediction .output-class')", timeout=60_000)
            phone.wait_for_timeout(1500)
            phone.evaluate("window.scrollTo(0, 0)")
            phone.screenshot(path=str(OUT / "share_phone.png"))
            browser.close()
        demo.close()


def main() -> None:
    only = {"sharing": only_sharing, "optimize": only_optimize, "train": only_train, "web-trainer": only_web_trainer}
    if sys.argv[1:2] == ["--only"] and sys.argv[2:] and sys.argv[2] in only:
        only[sys.argv[2]]()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo, url = launch_app(tmp / "models", default_model=default_model())
        get_explainer(default_model())  # what the app warms after launch: wait for it here
        clip = shape_clip(tmp / "clip.y4m", "star")
        # Few-shot on real photos: 10 texture patches per class, the Train view's defaults, and
        # one brick patch filed under grass by mistake (the data check should point at it).
        dataset, _ = texture_archive(tmp, mislabel=True)
        clean_archive = texture_archive(tmp / "clean")[1]  # the mislabelled patch left out
        # The reliability diagram of a model with enough validation images to calibrate.
        bigger = write_texture_task(tmp / "more-textures", train_per_class=40, test_per_class=0, patch=24, seed=1)
        trained = train_bundle(load_folder(bigger / "train", val_fraction=0.3),
                               TrainConfig(model="efficientnet_lite0", epochs=20), tmp / "calibrated")
        shutil.copy(trained.path / RELIABILITY_FILE, OUT / "reliability.png")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, fake_video=clip)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url)
            page.set_input_files("#classify-image input[type=file]", str(CAT))
            page.wait_for_selector("#heatmap img", timeout=60_000)
            page.wait_for_timeout(1000)
            # Again, warm: the picture shows the steady-state latencies, not the first request's.
            page.get_by_role("button", name="Classify", exact=True).click()
            page.wait_for_timeout(3000)
            page.screenshot(path=str(OUT / "classify.png"))

            start_live_view(page, "")
            page.wait_for_timeout(4000)
            page.screenshot(path=str(OUT / "live.png"))
            page.locator("#live-camera button[aria-label='capture photo']").click()

            train_view(page, dataset)  # the classes as cards, from the same photos as the archive
            # The label-issue gallery's tiles as the Train view builds them (Gradio's gallery
            # widget does not render reliably in a headless full-page screenshot).
            tiles = [tile for tile, _ in issue_gallery(audit_dataset(load_folder(dataset)))]
            Image.fromarray(side_by_side(*tiles, height=tiles[0].shape[0])).save(OUT / "label_issues.png")

            page.get_by_role("tab", name="Models").click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "models.png"), full_page=True)

            # The texture model on a photo of a cat: "Not sure", not a confident texture.
            page.get_by_role("button", name="Use for this session").click()  # the new model is preselected
            page.wait_for_function("document.querySelector('#model-status').innerText.includes('Using')",
                                   timeout=120_000)
            page.get_by_role("tab", name="Classify").click()
            page.get_by_role("button", name="Classify", exact=True).click()  # the cat is still there
            page.wait_for_function("document.querySelector('#prediction').innerText.includes('Not sure')",
                                   timeout=60_000)
            page.wait_for_timeout(2500)
            page.screenshot(path=str(OUT / "unknown.png"))

            page.get_by_role("tab", name="Export").click()
            page.get_by_role("button", name="Export", exact=True).click()
            page.wait_for_function("document.querySelector('#export-status').innerText.includes('Exported')",
                                   timeout=120_000)
            page.screenshot(path=str(OUT / "export.png"))
            optimize_view(page, clean_archive)

            # The static page the app serves at /web/, classifying in the browser itself.
            web = open_page(browser, f"{url}web/")
            classify_files(web, [COFFEE] * 2)  # the second is warm
            web.screenshot(path=str(OUT / "web.png"))

            # Training three classes in the page itself, then a held-out patch.
            web_trainer(web, dataset)
            browser.close()
        demo.close()
    print(f"wrote {', '.join(p.name for p in sorted(OUT.glob('*.png')))} to {OUT}")


if __name__ == "__main__":
    main()
