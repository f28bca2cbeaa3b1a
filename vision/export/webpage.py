"""Make ``web/`` servable where set-up never ran: a Hugging Face Space.

A Gradio Space installs ``requirements.txt`` and starts ``app.py``; it runs no ``make`` and
no ``npm``. Its image does carry Node and npm (Gradio's server-side rendering needs them),
and it has a network. So on start, in a background thread, the app installs TF.js exactly
as ``web/package-lock.json`` pins it (``npm ci`` checks every package's integrity hash) and
exports the page's model from the default bundle; ``/web`` answers "being prepared" until
both are there. On a machine where ``make`` ran, both already exist and nothing happens.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

from vision.bundle.store import load_bundle
from vision.errors import VisionError
from vision.export.formats import WEB_VENDOR, export
from vision.zoo.everyday import ensure_everyday_bundle

log = logging.getLogger(__name__)
#: ``npm ci`` of three TF.js packages: about 20 s from the registry, 2 s from npm's cache.
NPM_TIMEOUT_S = 600


def tfjs_installed(web_dir: Path) -> bool:
    """Whether the page's TF.js files are in ``web_dir/node_modules``."""

    return all((web_dir / "node_modules" / name).is_file() for name in WEB_VENDOR)


def model_exported(web_dir: Path) -> bool:
    """Whether the page's model (``model.json`` and ``metadata.json``) is in ``web_dir/model``."""
    return (web_dir / "model" / "model.json").is_file() and (web_dir / "model" / "metadata.json").is_file()


def install_tfjs(web_dir: Path) -> None:
    """``npm ci`` in ``web_dir``: the versions and integrity hashes of ``package-lock.json``.

    Raises:
        VisionError: npm is not installed, or the install failed (its last lines quoted).
    """
    npm = shutil.which("npm")
    if npm is None:
        raise VisionError("npm is not installed: install Node.js, then run `npm ci` in web/")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=web_dir,
                          capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise VisionError(f"`npm ci` in {web_dir} failed: {tail}")


def export_page_model(web_dir: Path, bundle_path: Path) -> None:
    """The page's model: ``bundle_path`` as per-channel uint8 TF.js with its features output,
    in ``web_dir/model`` (what ``make`` builds)."""

    ensure_everyday_bundle(bundle_path)
    export(load_bundle(bundle_path), "tfjs", web_dir / "model", quantize="uint8", overwrite=True, features=True)


class WebPage:
    """The state of ``web/`` for serving: ready, being prepared, or failed (with why)."""

    def __init__(self, web_dir: Path, bundle_path: Path) -> None:
        self.web_dir = web_dir
        self.bundle_path = bundle_path
        self.error: str | None = None
        self._done = threading.Event()
        if tfjs_installed(web_dir) and model_exported(web_dir):
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self.error is None

    @property
    def preparing(self) -> bool:
        return not self._done.is_set()

    def prepare_in_background(self) -> None:
        """Install TF.js and export the model if either is missing (once, in a thread)."""
        if self._done.is_set():
            return
        if os.environ.get("VISION_WEB_SETUP", "1") == "0":
            self.error = "web/ is not set up (VISION_WEB_SETUP=0): run `make web-model` and `npm ci` in web/"
            self._done.set()
            return
        threading.Thread(target=self._prepare, name="prepare-web-page", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until preparation ends; True when the page is ready."""
        self._done.wait(timeout)
        return self.ready

    def _prepare(self) -> None:
        try:
            if not tfjs_installed(self.web_dir):
                log.info("installing TF.js for /web (npm ci in %s)", self.web_dir)
                install_tfjs(self.web_dir)
            if not model_exported(self.web_dir):
                log.info("exporting %s for /web", self.bundle_path)
                export_page_model(self.web_dir, self.bundle_path)
            log.info("/web is ready")
        except (VisionError, OSError, subprocess.SubprocessError) as error:
            self.error = str(error)
            log.warning("/web is not available: %s", error)
        finally:
            self._done.set()
