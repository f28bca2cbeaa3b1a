"""Teachable-Machine-style dataset building: named classes, samples added one by one
(webcam snapshots or uploads), stored as a class-folder dataset in a private folder."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

from PIL import Image

from vision.errors import DatasetError
from vision.images import ImageSource, load_image

_CLASS_NAME = re.compile(r"^[\w][\w .-]{0,39}$")
MAX_SAMPLES_PER_CLASS = 1000


class SampleCollection:
    """Samples per class, written as ``root/<class>/<n>.png`` as they arrive.

    Every image goes through ``load_image`` first, so an unreadable upload is refused
    with its reason and never reaches the dataset.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="vision-samples-"))
        self.root.mkdir(parents=True, exist_ok=True)

    def classes(self) -> dict[str, int]:
        """Class name -> number of samples, in creation order."""
        folders = sorted((p for p in self.root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_ctime_ns)
        return {p.name: sum(1 for _ in p.glob("*.png")) for p in folders}

    def add_class(self, name: str) -> str:
        name = (name or "").strip()
        if not _CLASS_NAME.match(name):
            raise DatasetError(
                f"class name {name!r} is not allowed: use 1-40 letters, digits, spaces, '.', '_' or '-'")
        (self.root / name).mkdir(exist_ok=True)
        return name

    def add_samples(self, name: str, images: list[ImageSource]) -> int:
        """Add images to class ``name`` (created if new); returns how many were added."""
        name = self.add_class(name)
        folder = self.root / name
        pixels = [load_image(image) for image in images]  # all or nothing: check first
        if self.classes().get(name, 0) + len(pixels) > MAX_SAMPLES_PER_CLASS:
            raise DatasetError(f"class '{name}' would exceed {MAX_SAMPLES_PER_CLASS} samples")
        for array in pixels:
            Image.fromarray(array).save(folder / f"{uuid.uuid4().hex[:12]}.png")
        return len(pixels)

    def remove_class(self, name: str) -> None:
        if not _CLASS_NAME.match(name or ""):  # never a path: "..", "a/b" are refused
            raise DatasetError(f"no class named {name!r}")
        shutil.rmtree(self.root / name, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
