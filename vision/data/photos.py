"""Real photos that ship inside installed packages: the Classify view's examples, and a
small held-out texture task for tests and benchmarks. Nothing is downloaded.

The texture task crops patches of scikit-image's ``brick``, ``grass`` and ``gravel``
photos: training patches from the top half of each photo, test patches from the bottom
half, so train and test never share a pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vision.data.images import load_image
from vision.errors import DatasetError

TEXTURES = ("brick", "grass", "gravel")


def _skimage_data() -> Path:
    try:
        import skimage  # lazy: optional: only the package photos need scikit-image
    except ImportError:
        raise DatasetError("the package photos need scikit-image: pip install scikit-image") from None
    return Path(skimage.__file__).parent / "data"


def example_photos() -> list[Path]:
    """Everyday photos from matplotlib and scikit-image (a cat, a coffee, a portrait, a rocket…)."""
    import matplotlib  # lazy: matplotlib is slow to import; only its sample photo is wanted here

    found = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    try:
        data = _skimage_data()
    except DatasetError:
        data = None
    if data is not None:
        found += [data / name for name in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    return [path for path in found if path.is_file()]


#: scikit-image photos that are not examples: probe images for exports (so what they
#: measure is never what the benchmarks score on).
PROBE_PHOTOS = ("motorcycle_left.png", "brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
                "retina.jpg", "ihc.png", "camera.png", "coins.png", "horse.png")


def probe_photos(crops: int = 1, seed: int = 0, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Each ``PROBE_PHOTOS`` photo as RGB, then ``crops`` random square crops of it; with
    ``size`` = (H, W), each as a camera of that resolution would take it (``photographed_at``)."""
    photos = _skimage_photos(PROBE_PHOTOS, crops, seed)
    return [photographed_at(photo, size) for photo in photos] if size else photos


#: Unrelated photos (no textures: those are the few-shot task's classes) whose familiarity
#: tells the "unknown" detector where images of nothing in particular score.
BACKGROUND_PHOTOS = ("motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png",
                     "coins.png", "horse.png")


def background_photos(crops: int = 2, seed: int = 0) -> list[np.ndarray]:
    """``BACKGROUND_PHOTOS`` and ``crops`` random crops of each."""
    return _skimage_photos(BACKGROUND_PHOTOS, crops, seed)


def _skimage_photos(names: tuple[str, ...], crops: int, seed: int) -> list[np.ndarray]:
    """The named scikit-image photos with their crops; empty without scikit-image."""
    try:
        data = _skimage_data()
    except DatasetError:
        return []
    return with_crops([data / name for name in names if (data / name).is_file()], crops, seed)


def with_crops(sources: list[Path], crops: int, seed: int = 0) -> list[np.ndarray]:
    """Each photo as RGB followed by ``crops`` random square crops of it (a half to all of
    its shorter side): different views of the same scene."""

    rng = np.random.default_rng(seed)
    photos = []
    for source in sources:
        pixels = load_image(source)
        photos.append(pixels)
        height, width = pixels.shape[:2]
        for _ in range(crops):
            side = int(rng.integers(min(height, width) // 2, min(height, width) + 1))
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            photos.append(pixels[top:top + side, left:left + side])
    return photos


def photographed_at(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A photo made at ``size`` = (H, W) from a larger one, as uint8: Pillow's bilinear, which
    antialiases as it shrinks, as a lower-resolution camera would.

    This makes images (test sets, probes); it is not how a model resizes its input, which
    is ``images.preprocess`` (no antialiasing, as in the TF.js page) for every image.
    """
    return np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def write_texture_task(out: str | Path, train_per_class: int = 10, test_per_class: int = 40,
                       patch: int = 128, size: int | None = None, seed: int = 0) -> Path:
    """Write ``out/train/<texture>/*.png`` and ``out/test/<texture>/*.png``; returns ``out``.

    Args:
        patch: Side of the square crop, in source pixels.
        size: Side the patches are saved at (default: ``patch``).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    data = _skimage_data()
    for texture in TEXTURES:
        photo = np.asarray(Image.open(data / f"{texture}.png").convert("RGB"))
        half = photo.shape[0] // 2
        for split, rows, count in (("train", (0, half), train_per_class), ("test", (half, photo.shape[0]),
                                                                            test_per_class)):
            folder = out / split / texture
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                top = int(rng.integers(rows[0], rows[1] - patch + 1))
                left = int(rng.integers(0, photo.shape[1] - patch + 1))
                crop = photo[top:top + patch, left:left + patch]
                if size and size != patch:
                    crop = photographed_at(crop, (size, size))
                Image.fromarray(crop).save(folder / f"{texture}_{i:04d}.png")
    return out
