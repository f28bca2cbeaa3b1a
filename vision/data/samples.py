"""Teachable-Machine-style dataset building: named classes, samples added one by one
(webcam snapshots or uploads), stored as a class-folder dataset in a private folder."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

from PIL import Image

from vision.data.images import ImageSource, load_image
from vision.errors import DatasetError

_CLASS_NAME = re.compile(r"^[\w][\w .-]{0,39}$")
MAX_SAMPLES_PER_CLASS = 1000


class SampleCollection:
    """Samples per class, written as ``root/<class>/<n>.png`` as they arrive.

    Every image goes through ``load_image`` first, so an unreadable upload is refused
    with its reason and never reaches the dataset.
    """

    def __init__(self, root: str | Path | None = None, max_side: int | None = None) -> None:
        # The folder is made with the first class, so a refused first upload leaves nothing.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="vision-samples-"))
        self.max_side = max_side

    def classes(self) -> dict[str, int]:
        """Class name -> number of samples, in creation order."""
        if not self.root.is_dir():
            return {}
        folders = sorted((p for p in self.root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_ctime_ns)
        return {p.name: sum(1 for _ in p.glob("*.png")) for p in folders}

    def add_class(self, name: str) -> str:
        name = self._check_name(name)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return name

    def _check_name(self, name: str) -> str:
        name = (name or "").strip()
        if not _CLASS_NAME.match(name):
            raise DatasetError(
                f"class name {name!r} is not allowed: use 1-40 letters, digits, spaces, '.', '_' or '-'")
        return name

    def add_samples(self, name: str, images: list[ImageSource]) -> int:
        """Add images to class ``name`` (created if new); returns how many were added."""
        name = self._check_name(name)
        if self.classes().get(name, 0) + len(images) > MAX_SAMPLES_PER_CLASS:
            raise DatasetError(f"class '{name}' would exceed {MAX_SAMPLES_PER_CLASS} samples")
        # All or nothing: every image is checked before anything is written. Decoded already
        # downscaled to ``max_side`` when that is set: a 40 MP upload is never held at full size.
        pixels = [load_image(image, max_side=self.max_side) for image in images]
        folder = self.root / self.add_class(name)
        for array in pixels:
            Image.fromarray(array).save(folder / f"{uuid.uuid4().hex[:12]}.png")
        return len(pixels)

    def remove_class(self, name: str) -> None:
        if not _CLASS_NAME.match(name or ""):  # never a path: "..", "a/b" are refused
            raise DatasetError(f"no class named {name!r}")
        shutil.rmtree(self.root / name, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
