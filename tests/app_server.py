"""Launch the real app on a free loopback port, over a private copy of the models folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, SHAPES_MODEL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(models_dir: Path, default_model: Path | None = None, prepare_web: bool = False,
               **settings: object) -> tuple[object, str]:
    """Build and start the app with ``models_dir`` holding a copy of the shapes model, which
    is also the default unless ``default_model`` names another bundle.

    ``prepare_web``: export the page's model in the background, as the app does on a Space
    (conftest turns that off for every other launch). ``settings`` override ``AppConfig`` fields
    (``public=True``, ``owner=...``, ``limits=...``). Returns the ``VisionApp`` (``close()``
    stops it and removes its files) and its URL.
    """
    from vision.ui import build
    from vision.ui.config import AppConfig

    shutil.copytree(SHAPES_MODEL, models_dir / "shapes")
    config = AppConfig(default_model=default_model or models_dir / "shapes", models_dir=models_dir,
                       state_dir=models_dir.parent / f"{models_dir.name}-state", **settings)
    with pytest.MonkeyPatch.context() as patch:  # the app starts preparing its page as it is built
        patch.setenv("VISION_WEB_SETUP", "1" if prepare_web else "0")
        app = build(config)
    app.launch("127.0.0.1", free_port(), quiet=True)
    return app, app.demo.local_url


@contextmanager
def running(command: list[str], ready_url: str | None, timeout: float = 120,
            **popen: object) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends; enter once ``ready_url`` answers (at once when None)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        deadline = time.monotonic() + timeout
        while ready_url is not None:
            try:
                urllib.request.urlopen(ready_url, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer means the server is up
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[:3]} exited with {process.returncode} before it was ready")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{ready_url} did not answer within {timeout:.0f} s")
                time.sleep(0.25)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def app_process(folder: Path, timeout: float = 240) -> Iterator[str]:
    """Run ``python app.py`` in a process of its own, as in production, on a copy of the shapes
    model under ``folder`` (also its default); yields its URL once it answers. A benchmark's load
    clients then do not share the server's interpreter lock."""
    models = folder / "models"
    shutil.copytree(SHAPES_MODEL, models / "shapes")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "VISION_MODELS_DIR": str(models), "VISION_MODEL": str(models / "shapes")}
    with running([sys.executable, str(REPO / "app.py"), "--port", str(port)], url, timeout=timeout, env=env):
        yield url


def cancel_once_registered(client: object, api_name: str, timeout: float = 60) -> str:
    """Call the cancel endpoint ``api_name`` until it answers "Cancelling" (the job registers
    only once its upload is read); returns the last answer."""
    deadline = time.monotonic() + timeout
    reply = ""
    while time.monotonic() < deadline:
        reply = client.predict(api_name=api_name)
        if reply.startswith("Cancelling"):
            break
        time.sleep(0.25)
    return reply
