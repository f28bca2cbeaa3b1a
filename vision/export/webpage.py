"""Make ``web/`` servable where set-up never ran: a Hugging Face Space.

A Gradio Space installs ``requirements.txt`` and starts ``app.py``; it runs no ``make`` and
no ``npm``. Its image does carry Node and npm (Gradio's server-side rendering needs them),
and it has a network. So on start, in a background thread, the app installs TF.js exactly
as ``web/package-lock.json`` pins it (``npm ci`` checks every package's integrity hash) and
exports the page's model from the default bundle; ``/web`` answers "being prepared" until
both are there. On a machine where ``make`` ran, both already exist and nothing happens.

What a visitor sees of a failure is one line naming the step and the exception's type; the
full text and traceback (server paths, npm's log location) go to the server log only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path, PurePosixPath

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
        raise VisionError(f"`npm ci` failed: {tail}")


def export_page_model(web_dir: Path, bundle_path: Path) -> None:
    """The page's model: ``bundle_path`` as per-channel uint8 TF.js with its features output,
    in ``web_dir/model`` (what ``make`` builds)."""

    ensure_everyday_bundle(bundle_path)
    export(load_bundle(bundle_path), "tfjs", web_dir / "model", quantize="uint8", overwrite=True, features=True)


def model_files(web_dir: Path) -> frozenset[str]:
    """The names of the page's model files in ``web_dir/model``: ``model.json``,
    ``metadata.json`` and the weight files its ``weightsManifest`` lists.

    Raises:
        ValueError: model.json lists a weight file that is not a plain name in its folder.
        OSError, json.JSONDecodeError, KeyError, TypeError: model.json is unreadable or malformed.
    """
    manifest = json.loads((web_dir / "model" / "model.json").read_text())["weightsManifest"]
    weights = {path for group in manifest for path in group["paths"]}
    for path in weights:
        # The exporter writes flat shard names; anything else would widen what /web/model serves.
        if not isinstance(path, str) or PurePosixPath(path).name != path or path.startswith("."):
            raise ValueError(f"model.json lists a weight file that is not a plain name: {path!r}")
    return frozenset({"model.json", "metadata.json", *weights})


class WebPage:
    """The state of ``web/`` for serving: ready, being prepared, or failed (with why).

    ``error`` is shown to visitors, so it names the failed step and the exception's type
    only; ``model_files`` are the only names served under ``/web/model/`` once ready.
    """

    def __init__(self, web_dir: Path, bundle_path: Path) -> None:
        self.web_dir = web_dir
        self.bundle_path = bundle_path
        self.error: str | None = None
        self.model_files: frozenset[str] = frozenset()
        self._done = threading.Event()
        if tfjs_installed(web_dir) and model_exported(web_dir):
            self._prepare()  # only reads model.json: set-up already installed and exported

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
        step = "checking web/ failed"
        try:
            if not tfjs_installed(self.web_dir):
                step = "`npm ci` failed"
                log.info("installing TF.js for /web (npm ci in %s)", self.web_dir)
                install_tfjs(self.web_dir)
            if not model_exported(self.web_dir):
                step = "the model export failed"
                log.info("exporting %s for /web", self.bundle_path)
                export_page_model(self.web_dir, self.bundle_path)
            step = "reading the page's model failed"
            self.model_files = model_files(self.web_dir)
            log.info("/web is ready")
        except BaseException as error:
            # Any failure (an ImportError from tensorflowjs too): /web must say so instead of
            # serving a page whose model 404s. The visitor gets the step; the log gets the rest.
            self.error = f"{step} ({type(error).__name__})"
            log.error("/web is not available: %s", step, exc_info=True)
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt, SystemExit: recorded, and still stop what they stop
        finally:
            self._done.set()
