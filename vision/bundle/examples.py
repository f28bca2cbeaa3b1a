"""A bundle's own example photos: a few small JPEGs per class in ``examples/``.

The app's Classify view and a stakeholder's first look show a model on its own photos, never
another model's. A file's name says its class by index (``examples/002-1.jpg`` is the second
example of ``labels[2]``), so no second index file can disagree with the folder, and a label
with any characters needs no escaping. A pulled bundle's examples are somebody else's files:
``list_examples`` keeps only plain names of this pattern, and ``read_example`` decodes each
within ``MAX_EXAMPLE_BYTES`` before anything shows it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vision.data.datasets import IMAGE_SUFFIXES
from vision.data.images import load_image
from vision.errors import VisionError

EXAMPLES_FOLDER = "examples"
#: Photos kept per class: enough to show what a class looks like, small beside any model.
PER_CLASS = 2
#: Longest side of a stored example (px): a phone screen's thumbnail, and more than most inputs.
EXAMPLE_SIDE = 320
#: A file above this is not one of ours (320 px at quality 90 is ~40 KB): it is skipped.
MAX_EXAMPLE_BYTES = 256 * 1024
#: Files a bundle's examples folder may hold (a pull refuses a repo with more).
MAX_EXAMPLE_FILES = 200
_NAME = re.compile(r"^(\d{3,4})-(\d{1,3})\.jpg$")


def example_name(class_index: int, number: int) -> str:
    """The file name (inside ``examples/``) of example ``number`` of class ``class_index``."""
    return f"{class_index:03d}-{number}.jpg"


def is_example_name(name: str) -> bool:
    """Whether ``name`` (relative to the bundle) is an example file a bundle may hold."""
    folder, _, file = name.partition("/")
    return folder == EXAMPLES_FOLDER and bool(_NAME.match(file))


def encode_example(pixels: np.ndarray) -> bytes:
    """``pixels`` (uint8 RGB) as a small JPEG: at most ``EXAMPLE_SIDE`` px, quality 90, and
    4:4:4 chroma, so a browser and Pillow decode the same pixels (no chroma upsampling to
    disagree on) and the page's answer on an example can be compared with the app's."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    image.thumbnail((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, subsampling=0)
    return out.getvalue()


def pick_examples(sources: Sequence[Any], labels: Sequence[int], classes: int,
                  per_class: int = PER_CLASS) -> dict[str, bytes]:
    """Up to ``per_class`` examples per class from ``sources`` (arrays or paths, as
    ``load_image`` takes them) in order, as ``{"examples/<file>": jpeg}``; an unreadable
    source is passed over."""
    found: dict[str, bytes] = {}
    counts = [0] * classes
    for source, label in zip(sources, labels):
        label = int(label)
        if not 0 <= label < classes or counts[label] >= per_class:
            continue
        try:
            pixels = load_image(source, max_side=EXAMPLE_SIDE * 2)
        except VisionError:
            continue
        counts[label] += 1
        found[f"{EXAMPLES_FOLDER}/{example_name(label, counts[label])}"] = encode_example(pixels)
        if min(counts) >= per_class:
            break
    return found


def from_folder(folder: str | Path, labels: Sequence[str], per_class: int = PER_CLASS) -> dict[str, bytes]:
    """Examples from ``folder``'s class sub-folders (named as ``labels``), in file-name order.

    Raises:
        VisionError: ``folder`` has no sub-folder named as one of the labels, or none of
            their files is a readable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VisionError(f"no folder at '{folder}'")
    sources: list[Path] = []
    classes: list[int] = []
    for index, label in enumerate(labels):
        sub = folder / label
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if sub.is_dir() else []
        sources += files
        classes += [index] * len(files)
    found = pick_examples(sources, classes, len(labels), per_class)
    if not found:
        raise VisionError(f"'{folder.name}' has no readable images in sub-folders named as the model's classes "
                          f"({', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''})")
    return found


def list_examples(bundle_folder: str | Path, labels: Sequence[str]) -> list[tuple[str, Path]]:
    """The bundle's examples as (label, file), in class order; files that are not ours
    (other names, a class index past the labels, too big) are left out."""
    folder = Path(bundle_folder) / EXAMPLES_FOLDER
    if not folder.is_dir() or folder.is_symlink():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        # A link is followed (a pulled bundle's files link into the Hub cache's blobs): what it
        # points at is read only through ``read_example``, which decodes it as an image first.
        if not match or not path.is_file() or int(match.group(1)) >= len(labels):
            continue
        if path.stat().st_size > MAX_EXAMPLE_BYTES:
            continue
        found.append((labels[int(match.group(1))], int(match.group(1)), int(match.group(2)), path))
    return [(label, path) for label, _, _, path in sorted(found, key=lambda item: item[1:3])]


def read_example(path: Path) -> bytes | None:
    """The file's bytes if it decodes as an image within the pixel cap and ``MAX_EXAMPLE_BYTES``;
    None otherwise (a pulled bundle's example is checked before it is shown)."""
    try:
        data = path.read_bytes()
        if len(data) > MAX_EXAMPLE_BYTES:
            return None
        load_image(data, max_side=EXAMPLE_SIDE)
        return data
    except (OSError, VisionError):
        return None


def write_examples(bundle_folder: str | Path, files: dict[str, bytes]) -> list[str]:
    """Replace the bundle's ``examples/`` with ``files`` (as ``pick_examples`` gives them).

    Written to a sibling folder first and renamed into place, so a reader sees the old set
    or the new one."""
    folder = Path(bundle_folder)
    staging = folder / f".{EXAMPLES_FOLDER}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for name, data in files.items():
            if not is_example_name(name):
                raise VisionError(f"not an example file name: {name!r}")
            (staging / name.split("/", 1)[1]).write_bytes(data)
        retired = folder / f".{EXAMPLES_FOLDER}.old-{uuid.uuid4().hex[:8]}"
        if (folder / EXAMPLES_FOLDER).exists():
            os.replace(folder / EXAMPLES_FOLDER, retired)
        os.replace(staging, folder / EXAMPLES_FOLDER)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(files)


def example_labels(files: Iterable[str], labels: Sequence[str]) -> list[str]:
    """The class of each example file name, for messages."""
    return [labels[int(_NAME.match(name.rsplit("/", 1)[-1]).group(1))] for name in files]
