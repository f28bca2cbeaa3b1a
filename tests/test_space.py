"""The repository deploys as a Gradio Space as it is."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import yaml

from conftest import REPO


def test_readme_front_matter_is_a_valid_gradio_space_config():
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    pinned = re.search(r"^gradio(?:\[[\w,]+\])?==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pinned
    assert (REPO / meta["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+", str(meta["python_version"]))
    assert isinstance(meta["models"], list) and isinstance(meta["tags"], list)
    assert meta["hf_oauth"] is True  # "Sign in with Hugging Face" for public visitors (see Sharing publicly)
    assert meta["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert len(meta["short_description"]) <= 60


@pytest.mark.slow
@pytest.mark.browser
def test_a_fresh_space_serves_a_working_web_page(tmp_path):
    """A Space installs requirements.txt and runs app.py: no make, no npm ci, no web/model.
    The app installs TF.js from web/package-lock.json (npm's cache here, the registry on a
    Space), exports the page's model, and /web then classifies in the browser."""
    import json
    import os
    import shutil
    import sys

    from playwright.sync_api import sync_playwright

    from vision.bundle.store import load_bundle
    from vision.data.photos import example_photos

    from app_server import free_port, running
    from browser import launch_chromium
    from web_harness import classify_files, open_page, settled_backend

    clone = tmp_path / "space"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    for name in listed:  # the repository as a Space receives it: tracked files, nothing built
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    assert not (clone / "web" / "node_modules").exists() and not (clone / "web" / "model").exists()
    meta = yaml.safe_load((REPO / "README.md").read_text().split("---\n", 2)[1])
    port = free_port()
    env = {**os.environ, "SPACE_ID": "someone/vision-demo", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "VISION_WEB_SETUP": "1"}
    url = f"http://127.0.0.1:{port}/"
    with running([sys.executable, meta["app_file"]], None, cwd=clone, env=env) as process:
        statuses = _web_statuses_from_the_first_connection(url + "web/", process, timeout=600)
        assert set(statuses) <= {503, 200}, f"/web/ answered {sorted(set(statuses))} while the Space started"
        assert statuses[0] == 503 and statuses[-1] == 200, statuses[:3] + statuses[-3:]
        assert (clone / "web" / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js").is_file()
        shipped = json.loads((clone / "web" / "model" / "metadata.json").read_text())
        assert shipped["quantization"] == "uint8" and len(shipped["labels"]) == 1000
        cat = next(p for p in example_photos() if p.name == "chelsea.png")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = open_page(browser, f"{url}web/")
            probabilities, _ = classify_files(page, [cat])
            backend, expected = settled_backend(page)
            browser.close()
    labels = load_bundle(clone / "models" / "everyday").labels
    assert labels[int(np.argmax(probabilities[0]))] == "Egyptian Mau" and backend == expected


def _web_statuses_from_the_first_connection(url: str, process: subprocess.Popen, timeout: float) -> list[int]:
    """Every HTTP status ``url`` answers, polled every 20 ms from the moment the port accepts a
    connection (refused connections are not answers) until it answers 200."""
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not statuses or statuses[-1] != 200):
        try:
            statuses.append(urllib.request.urlopen(url, timeout=10).status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
        except OSError:  # nothing listening yet
            assert process.poll() is None, f"app.py exited with {process.returncode}"
        time.sleep(0.02 if len(statuses) < 50 else 1.0)
    assert statuses, f"{url} never accepted a connection"
    return statuses
