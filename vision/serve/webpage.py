"""Make ``web/`` servable where set-up never ran: a Hugging Face Space.

The page runs the app's own model, whatever chose it: the everyday model from
``web/model`` as ``make`` builds it (uint8 weights), any other from a cache folder keyed by the
bundle's fingerprint (float32, so the page answers as the app does), exported once and kept
across restarts. A model the page cannot run (a TFLite-only import, or one the TF.js export
refuses) is named with the reason; the page never falls back to another model.

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
import sys
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from vision.bundle.modelcard import card_summary
from vision.bundle.store import is_tflite_only, open_bundle
from vision.defaults import EVERYDAY_MODEL, REPO
from vision.errors import VisionError
from vision.export.formats import WEB_VENDOR
from vision.redact import without_paths
from vision.runtime.tflite import cache_dir
from vision.zoo.everyday import ensure_everyday_bundle

log = logging.getLogger(__name__)
#: Seconds the page's model export may take (the everyday model's takes about a minute on 2 busy cores).
EXPORT_TIMEOUT_S = 1200
#: ``npm ci`` of three TF.js packages: about 20 s from the registry, 2 s from npm's cache.
NPM_TIMEOUT_S = 600


def tfjs_installed(web_dir: Path) -> bool:
    """Whether the page's TF.js files are in ``web_dir/node_modules``."""

    return all((web_dir / "node_modules" / name).is_file() for name in WEB_VENDOR)


def model_exported(web_dir: Path, model_dir: Path | None = None) -> bool:
    """Whether the page's model (``model.json`` and ``metadata.json``) is in ``model_dir``
    (``web_dir/model`` when None)."""
    model_dir = model_dir or web_dir / "model"
    return (model_dir / "model.json").is_file() and (model_dir / "metadata.json").is_file()


def page_model_dir(web_dir: Path, bundle_path: Path) -> Path:
    """Where the page's model for ``bundle_path`` lives: ``web_dir/model`` for the everyday
    model (``make`` builds it there), else ``<cache>/web/<fingerprint>``, so a bundle changed
    under the same name is exported again and an unchanged one never is.

    Raises:
        ModelNotFoundError, InvalidBundleError: ``bundle_path`` is not a bundle.
    """
    if Path(bundle_path).resolve() == EVERYDAY_MODEL.resolve():
        return web_dir / "model"
    return cache_dir() / "web" / f"{open_bundle(bundle_path).fingerprint}-fp32"


def unrunnable(info: dict[str, Any]) -> str | None:
    """Why the page cannot run the bundle described by ``info``, or None when it can try."""
    if is_tflite_only(info):
        return ("it came as a TFLite file only, and the in-browser page runs TensorFlow.js: import its "
                "Teachable Machine TF.js or Keras export to share it here")
    return None


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


def export_page_model(web_dir: Path, bundle_path: Path, model_dir: Path | None = None, quantize: str | None = "uint8",
                      started: Callable[[subprocess.Popen], None] | None = None) -> None:
    """The page's model: ``bundle_path`` as TF.js with its features output, in ``model_dir``
    (default ``web_dir/model``, per-channel uint8: what ``make`` builds for the everyday model).

    The export runs in a child process (``python -m vision export``): its TensorFlow work never
    shares the server's process, and the app's ``close`` stops it at once instead of waiting
    for it (a process that exits under a TensorFlow thread aborts). ``started`` is handed the
    child.

    Raises:
        VisionError: the export failed (the CLI's own one-line reason) or took too long.
    """
    if Path(bundle_path).resolve() == EVERYDAY_MODEL.resolve():
        ensure_everyday_bundle(bundle_path)
    command = [sys.executable, "-m", "vision", "export", str(bundle_path), "--format", "tfjs", "--features",
               "--out", str(model_dir or web_dir / "model"), "--overwrite"]
    command += ["--quantize", quantize] if quantize else []
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if started is not None:
        started(child)
    try:
        _, errors = child.communicate(timeout=EXPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise VisionError(f"the export took over {EXPORT_TIMEOUT_S // 60} minutes and was stopped") from None
    if child.returncode != 0:
        said = [line.strip() for line in errors.splitlines() if line.strip()]
        reason = said[-1].removeprefix("error: ") if said else f"exit status {child.returncode}"
        raise VisionError(reason if child.returncode > 0 else f"the export was stopped (signal {-child.returncode})")


def model_files(web_dir: Path, model_dir: Path | None = None) -> frozenset[str]:
    """The names of the page's model files in ``model_dir`` (``web_dir/model`` when None):
    ``model.json``, ``metadata.json`` and the weight files its ``weightsManifest`` lists.

    Raises:
        ValueError: model.json lists a weight file that is not a plain name in its folder.
        OSError, json.JSONDecodeError, KeyError, TypeError: model.json is unreadable or malformed.
    """
    manifest = json.loads(((model_dir or web_dir / "model") / "model.json").read_text())["weightsManifest"]
    weights = {path for group in manifest for path in group["paths"]}
    for path in weights:
        # The exporter writes flat shard names; anything else would widen what /web/model serves.
        if not isinstance(path, str) or PurePosixPath(path).name != path or path.startswith("."):
            raise ValueError(f"model.json lists a weight file that is not a plain name: {path!r}")
    return frozenset({"model.json", "metadata.json", *weights})


class WebPage:
    """The state of ``web/`` for serving: ready, being prepared, or failed (with why).

    ``error`` is shown to visitors, so it names the failed step and the exception's type
    (a ``VisionError``'s own words, paths removed); ``model_files`` are the only names served
    under ``/web/model/`` once ready, read from ``model_dir``; ``card`` is what the page says
    of the model (``vision.bundle.modelcard.card_summary``).
    """

    def __init__(self, web_dir: Path, bundle_path: Path, model_dir: Path | None = None) -> None:
        self.web_dir = web_dir
        self.bundle_path = bundle_path
        self.model_dir = model_dir or web_dir / "model"
        self.error: str | None = None
        self.model_files: frozenset[str] = frozenset()
        self._done = threading.Event()
        self._child: subprocess.Popen | None = None
        # ``stop`` may come before the export's child exists (during `npm ci`, or as the app's
        # build fails): it is remembered, so the child is stopped as it starts, or never started.
        self._stopped = False
        self._lock = threading.Lock()
        try:
            info = open_bundle(bundle_path).info
        except VisionError:
            info = None  # a page without a bundle of its own: what web/model holds is served as it is
        if info is not None:
            reason = unrunnable(info)
            if reason:
                self.error = f"'{card_summary(info)['title']}' cannot run in the browser: {reason}"
                self._done.set()
                return
        if tfjs_installed(web_dir) and model_exported(web_dir, self.model_dir):
            self._prepare()  # only reads model.json: set-up (or an earlier start) already did the rest

    @classmethod
    def for_model(cls, web_dir: Path, bundle_path: Path) -> "WebPage":
        """The page for the app's model ``bundle_path``, in ``page_model_dir``."""
        return cls(web_dir, bundle_path, page_model_dir(web_dir, bundle_path))

    @property
    def card(self) -> dict[str, Any]:
        """What the page says of the model, read now (``python -m vision describe`` shows at once);
        empty without a bundle."""
        try:
            return card_summary(open_bundle(self.bundle_path).info)
        except VisionError:
            return {}

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

    def stop(self) -> None:
        """Stop the model's export, now if it is running, else as it would start (the page then
        says the export failed)."""
        with self._lock:
            self._stopped = True
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()

    def _started(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._child = child
            stopped = self._stopped
        if stopped:
            child.terminate()

    def _export(self) -> None:
        if self.model_dir == self.web_dir / "model":  # what `make` builds: uint8 weights
            export_page_model(self.web_dir, self.bundle_path, started=self._started)
        else:  # float32: the page answers as the app does (within 1e-4)
            export_page_model(self.web_dir, self.bundle_path, model_dir=self.model_dir, quantize=None,
                              started=self._started)

    def _prepare(self) -> None:
        step = "checking web/ failed"
        try:
            if not tfjs_installed(self.web_dir):
                step = "`npm ci` failed"
                log.info("installing TF.js for /web (npm ci in %s)", self.web_dir)
                install_tfjs(self.web_dir)
            if not model_exported(self.web_dir, self.model_dir):
                step = "the model export failed"
                if self._stopped:
                    raise VisionError("the app stopped before the export began")
                log.info("exporting %s for /web into %s", self.bundle_path, self.model_dir)
                self._export()
            step = "reading the page's model failed"
            self.model_files = model_files(self.web_dir, self.model_dir)
            log.info("/web is ready")
        except BaseException as error:
            # Any failure (an ImportError from tensorflowjs too): /web must say so instead of
            # serving a page whose model 404s. The visitor gets the step (and, for the export, a
            # VisionError's own words without paths: why TF.js cannot hold the model); the log the rest.
            why = f": {without_paths(str(error))}" if step == "the model export failed" and isinstance(
                error, VisionError) else ""
            self.error = f"{step} ({type(error).__name__}{why})"
            if self._stopped:  # the app is closing: nothing went wrong
                log.info("/web's preparation was stopped as the app closed")
            else:
                log.error("/web is not available: %s", step, exc_info=True)
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt, SystemExit: recorded, and still stop what they stop
        finally:
            self._done.set()
