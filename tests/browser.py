"""Headless Debian Chromium driven by Playwright, with a fake camera fed from a clip the
tests render. Never downloads a browser: it uses /usr/bin/chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BASE_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
    # WebGPU on SwiftShader (secure origins only; http://127.0.0.1 counts): the page can time it.
    "--enable-unsafe-webgpu",
]


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Write RGB frames (same even size) as a YUV4MPEG2 4:2:0 clip for --use-file-for-fake-video-capture."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as clip:
        clip.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y, cb, cr = Image.fromarray(frame).convert("YCbCr").split()
            half = (width // 2, height // 2)
            clip.write(b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes())
    return path


def launch_chromium(playwright, fake_video: Path | None = None):
    args = list(BASE_ARGS)
    if fake_video is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={fake_video}"]
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def shape_clip(path: Path, shape: str = "star", size: int = 240, seed: int = 3) -> Path:
    """A 4:3 clip of synthetic images of one ``shape``, five frames each, for the fake camera."""
    from vision.data.synthetic import SHAPES, make_shapes

    data = make_shapes(per_class=6, size=size, seed=seed)
    pad = size // 6
    frames = [np.pad(image, ((0, 0), (pad, pad), (0, 0)), mode="edge")
              for image, label in zip(data.images, data.labels) if SHAPES[label] == shape for _ in range(5)]
    return write_y4m(path, frames)


def start_live_view(page, label: str = "star") -> None:
    """Open the app's Live tab, start the (fake) webcam stream, wait for ``label`` to show."""
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-camera").get_by_text("Click to Access Webcam").click()
    page.locator("#live-camera button[aria-label='capture photo']").click()
    page.wait_for_function(f"document.querySelector('#live-prediction').innerText.includes('{label}')",
                           timeout=60_000)


def tab_names(page) -> list[str]:
    """The app's tabs, in order, once Gradio has drawn them."""
    page.wait_for_selector("[role=tab]", timeout=60_000)
    return [text.strip() for text in page.locator("[role=tab]").all_inner_texts()]


def classify_on_phone(browser, url: str, photo, width: int, label: str | None = None):
    """Open the app at ``url`` as a ``width`` x 844 phone and classify ``photo`` on the Classify view
    (until the answer is ``label``, or any answer when None). Returns the page, scrolled back to
    the top, the top label's bounding box and the page's scroll width."""
    page = browser.new_page(viewport={"width": width, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(url)
    page.wait_for_selector("#classify-image input[type=file]", state="attached", timeout=60_000)
    page.set_input_files("#classify-image input[type=file]", str(photo))
    answer = "(document.querySelector('#prediction .output-class') || {}).innerText"
    page.wait_for_function(answer if label is None else f"{answer} === {label!r}", timeout=60_000)
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator("#prediction .output-class").bounding_box()
    return page, box, page.evaluate("document.documentElement.scrollWidth")
