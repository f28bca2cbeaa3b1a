"""Loaded bundles, classifiers and explainers, built once per process and shared.

Keys include the bundle folder's modification time, so saving over a bundle (which
renames a new folder into place) loads the new one on next use; the stale entry is dropped
then. The cache is bounded in bytes (``cachetools``' LRU with a size function): an entry
counts the bundle's files on disk, which its weights dominate, and the least recently used
models leave first, so visitors' many models cannot pile up in memory.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from cachetools import LRUCache

from vision.bundle.store import Bundle, load_bundle
from vision.explain.cam import Explainer
from vision.runtime.inference import Classifier
from vision.ui.disk import folder_bytes

#: Bytes of bundle files the loaded models may stand for, all kinds together (the everyday
#: model is 18 MB on disk; its classifier and explainer hold about that each).
MAX_BYTES = 1536 * 2**20


class _Entry:
    """A loaded object and the bytes its bundle holds on disk."""

    def __init__(self, value: Any, size: int) -> None:
        self.value, self.size = value, size


def new_cache(max_bytes: int) -> LRUCache:
    """An LRU cache of ``_Entry`` values holding at most ``max_bytes`` of bundles."""
    return LRUCache(maxsize=max_bytes, getsizeof=lambda entry: entry.size)


_CACHE = new_cache(MAX_BYTES)
_LOCKS: dict[tuple[str, str, int], threading.Lock] = {}
_GUARD = threading.Lock()


def _cached(kind: str, path: str | Path, build: Callable[[Path], Any]) -> Any:
    folder = Path(path).resolve()
    key = (kind, str(folder), folder.stat().st_mtime_ns if folder.exists() else 0)
    with _GUARD:
        if key in _CACHE:
            return _CACHE[key].value
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:  # one load per key; other keys load in parallel
        with _GUARD:
            if key in _CACHE:
                return _CACHE[key].value
        value = build(folder)
        size = folder_bytes(folder)  # walked once, outside the lock every cached lookup takes
        with _GUARD:
            for stale in [k for k in _CACHE if k[:2] == key[:2] and k != key]:  # saved over since
                del _CACHE[stale]
            # An entry larger than the whole cache is handed out but not kept (cachetools refuses it).
            if size <= _CACHE.maxsize:
                _CACHE[key] = _Entry(value, size)
            _LOCKS.pop(key, None)
        return value


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


def cached_bytes() -> int:
    """What the cache holds now, in bundle bytes (at most ``MAX_BYTES``)."""
    with _GUARD:
        return int(_CACHE.currsize)
