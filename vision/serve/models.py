"""The models a protocol may serve, as the app hands them in: the serving package never reads the
UI's catalog or caches itself (they live above it), it is given these three functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vision.bundle.store import Bundle
from vision.runtime.inference import Classifier

#: Catalog keys under this prefix are a session's own models, never reachable without one.
PRIVATE_PREFIX = "mine/"


@dataclass(frozen=True)
class ServedModels:
    """Where a served name's bundle is, and the app's cached bundle and classifier for it."""

    resolve: Callable[[str], Path]  # a public catalog key -> its folder; raises ModelNotFoundError
    bundle: Callable[[Path], Bundle]
    classifier: Callable[[Path], Classifier]
    max_file_size: str | int | None  # one upload's limit, as Gradio's setting states it
    public: bool  # rate limits and batch bounds apply
