"""Loaded bundles, classifiers and explainers, built once per process and shared.

Keys include the bundle folder's modification time, so saving over a bundle (which
renames a new folder into place) loads the new one on next use.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from vision.bundle.store import Bundle, load_bundle
from vision.explain.cam import Explainer
from vision.runtime.inference import Classifier

_CACHE: dict[tuple[str, str, int], Any] = {}
_LOCKS: dict[tuple[str, str, int], threading.Lock] = {}
_GUARD = threading.Lock()


def _cached(kind: str, path: str | Path, build: Callable[[Path], Any]) -> Any:
    folder = Path(path).resolve()
    key = (kind, str(folder), folder.stat().st_mtime_ns if folder.exists() else 0)
    with _GUARD:
        if key in _CACHE:
            return _CACHE[key]
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:  # one load per key; other keys load in parallel
        if key not in _CACHE:
            _CACHE[key] = build(folder)
        return _CACHE[key]


def get_bundle(path: str | Path) -> Bundle:
    return _cached("bundle", path, load_bundle)


def get_classifier(path: str | Path) -> Any:
    """A ``vision.runtime.inference.Classifier`` for the bundle at ``path``."""

    return _cached("classifier", path, lambda folder: Classifier(get_bundle(folder)))


def get_explainer(path: str | Path) -> Any:
    """A ``vision.explain.Explainer`` for the bundle at ``path``."""

    return _cached("explainer", path, lambda folder: Explainer.from_bundle(get_bundle(folder)))


def forget(path: str | Path) -> None:
    """Drop everything cached for the bundle at ``path`` (after deleting it)."""
    folder = str(Path(path).resolve())
    with _GUARD:
        for key in [k for k in _CACHE if k[1] == folder]:
            del _CACHE[key]
