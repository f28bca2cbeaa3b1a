"""Teachable-Machine-style dataset building: named classes, samples added one by one
(webcam snapshots or uploads), stored as a class-folder dataset in a private folder."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from PIL import Image

from vision.data.images import ImageSource, load_image
from vision.errors import DatasetError

_CLASS_NAME = re.compile(r"^[\w][\w .-]{0,39}$")
_SAMPLE_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_SAMPLES_PER_CLASS = 1000
#: The classes' order, kept beside them: a folder's ctime moves whenever a sample is added,
#: and a class card must not jump to the end because it got a picture. (A dotfile at the
#: root: ``load_folder`` never sees it.)
ORDER_FILE = ".order.json"


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
        return {name: len(self.samples(name)) for name in self._order()}

    def _order(self) -> list[str]:
        if not self.root.is_dir():
            return []
        folders = {p.name: p for p in self.root.iterdir() if p.is_dir()}
        try:
            listed = [name for name in json.loads((self.root / ORDER_FILE).read_text()) if name in folders]
        except (OSError, ValueError, TypeError):
            listed = []
        # Folders the list does not name yet (made before it existed): after it, oldest first.
        rest = sorted((p for name, p in folders.items() if name not in listed), key=lambda p: p.stat().st_ctime_ns)
        return listed + [p.name for p in rest]

    def _write_order(self, names: list[str]) -> None:
        (self.root / ORDER_FILE).write_text(json.dumps(names))

    def add_class(self, name: str) -> str:
        name = self._check_name(name)
        order = self._order()
        (self.root / name).mkdir(parents=True, exist_ok=True)
        if name not in order:
            self._write_order(order + [name])
        return name

    def samples(self, name: str) -> list[Path]:
        """Class ``name``'s sample files, oldest first (the order its card shows them in)."""
        folder = self.root / name
        if not _CLASS_NAME.match(name or "") or not folder.is_dir():
            return []
        return sorted(folder.glob("*.png"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def remove_sample(self, name: str, sample: str) -> None:
        """Delete one sample of class ``name`` by its id (the file's stem)."""
        path = self.root / self._existing(name) / f"{sample}.png"
        if not _SAMPLE_ID.match(sample or "") or not path.is_file():  # an id, never a path
            raise DatasetError(f"class '{name}' has no sample {sample!r}")
        path.unlink()

    def rename_class(self, name: str, new_name: str) -> str:
        """Rename class ``name`` to ``new_name``, keeping its samples and its place."""
        name, new_name = self._existing(name), self._check_name(new_name)
        if new_name == name:
            return name
        if (self.root / new_name).exists():
            raise DatasetError(f"a class named '{new_name}' already exists")
        order = self._order()
        (self.root / name).rename(self.root / new_name)
        self._write_order([new_name if item == name else item for item in order])
        return new_name

    def _existing(self, name: str) -> str:
        if not _CLASS_NAME.match(name or "") or not (self.root / name).is_dir():  # never a path: "..", "a/b"
            raise DatasetError(f"no class named {name!r}")
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
        if self.root.is_dir():
            self._write_order([item for item in self._order() if item != name])

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
