"""Labelled datasets from folders, zips, Keras's standard sets or the synthetic shapes,
and the ``tf.data`` pipeline that feeds them to training and evaluation."""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vision.data.archives import MAX_TOTAL_BYTES, extract_zip
from vision.data.images import Preprocessing, input_side, load_image, preprocess
from vision.data.synthetic import make_shapes
from vision.errors import (
    DatasetError,
    EmptyImageError,
    ImageTooLargeError,
    InvalidImageError,
    NotAnImageError,
    TruncatedImageError,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TRAIN_NAMES = ("train", "training")
VAL_NAMES = ("val", "valid", "validation", "test")
KERAS_DATASETS = ("cifar10", "mnist", "fashion_mnist")
#: Imbalance above this ratio (largest class / smallest) earns a warning in the summary.
IMBALANCE_WARNING_RATIO = 1.5
#: Longest side a file is decoded at when scanned: small, so a JPEG decodes at 1/8 scale,
#: yet every byte of every image is read, as training will read it.
SCAN_SIDE = 64
#: ``synth:N`` renders every image in memory (64x64x3 bytes each, 4 classes): 10,000 a class
#: is ~0.5 GB, 40x the default.
MAX_SYNTH_PER_CLASS = 10_000


@dataclass
class Split:
    """One split of a dataset: either file ``paths`` or in-memory ``images``, with labels."""

    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def sources(self) -> list[Any]:
        """The split's images as ``load_image`` takes them: arrays, or file paths."""
        return list(self.images) if self.images is not None else list(self.paths or [])


@dataclass
class LabelledDataset:
    """Class names (the label order every model keeps) and a train and validation split."""

    class_names: list[str]
    train: Split
    val: Split
    source: str
    skipped: list[str] = field(default_factory=list)  # "path: reason" for files left out

    def everything(self) -> Split:
        """Train and validation together: a test folder scored whole."""
        labels = np.concatenate([self.train.labels, self.val.labels])
        if self.train.paths is not None and self.val.paths is not None:
            return Split(labels, paths=[*self.train.paths, *self.val.paths])
        if self.train.images is not None and self.val.images is not None:
            return Split(labels, images=np.concatenate([self.train.images, self.val.images]))
        raise DatasetError("cannot combine a file split with an in-memory split")

    def in_label_order(self, labels: list[str]) -> "LabelledDataset":
        """This dataset with its classes numbered as ``labels`` (a model's output order), e.g. to
        train further a model whose classes were made in another order than the folders sort.

        Raises:
            DatasetError: the dataset's classes are not exactly ``labels``.
        """
        if sorted(labels) != sorted(self.class_names):
            raise DatasetError(f"the model's classes are {', '.join(labels)}; the images' folders are "
                               f"{', '.join(self.class_names)}: name one folder per class of the model")
        index = np.array([labels.index(name) for name in self.class_names], np.int64)
        renumbered = [replace(split, labels=index[np.asarray(split.labels, np.int64)])
                      for split in (self.train, self.val)]
        return replace(self, class_names=list(labels), train=renumbered[0], val=renumbered[1])


@dataclass
class DatasetSummary:
    class_names: list[str]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    imbalance_ratio: float
    warnings: list[str]
    class_weights: dict[int, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.class_names,
            "train_counts": self.train_counts,
            "val_counts": self.val_counts,
            "imbalance_ratio": round(self.imbalance_ratio, 3),
            "warnings": self.warnings,
        }


def load_dataset(source: str | Path, val_fraction: float = 0.2, seed: int = 0,
                 limit: int | None = None) -> LabelledDataset:
    """Load a dataset from a folder, a ``.zip``, a Keras dataset name, or ``synth[:N]``.

    ``synth:N`` renders N images per class; ``limit`` caps a Keras dataset's train split.
    """
    text = str(source)
    if text == "synth" or text.startswith("synth:"):
        count = text.split(":", 1)[1] if ":" in text else "250"
        if not count.isdigit() or not 2 <= int(count) <= MAX_SYNTH_PER_CLASS:
            raise DatasetError(f"{text[:40]!r}: write synth:N with N from 2 to {MAX_SYNTH_PER_CLASS:,} images a class")
        return load_synthetic(per_class=int(count), val_fraction=val_fraction, seed=seed)
    if text in KERAS_DATASETS:
        return load_keras_dataset(text, limit=limit)
    path = Path(source)
    if path.suffix.lower() == ".zip":
        return load_zip(path, val_fraction=val_fraction, seed=seed)
    return load_folder(path, val_fraction=val_fraction, seed=seed)


def load_folder(folder: str | Path, val_fraction: float = 0.2, seed: int = 0) -> LabelledDataset:
    """Load ``folder/<class>/*.png`` (or ``folder/{train,val}/<class>/...``).

    Without an existing split, a stratified split is drawn with ``seed``. Non-image and
    unreadable files are skipped and listed in ``skipped``.

    Raises:
        DatasetError: the folder is missing, has fewer than two classes, or a class
            has too few readable images.
    """
    root = _dataset_root(Path(folder))
    train_dir = _first_child(root, TRAIN_NAMES)
    val_dir = _first_child(root, VAL_NAMES)
    skipped: list[str] = []
    if train_dir and val_dir:
        class_names = _class_folders(train_dir)
        train_paths, train_labels = _scan(train_dir, class_names, skipped, min_per_class=1)
        val_paths, val_labels = _scan(val_dir, class_names, skipped, min_per_class=0)
        train = Split(np.array(train_labels), paths=train_paths)
        val = Split(np.array(val_labels), paths=val_paths)
    else:
        class_names = _class_folders(root)
        paths, labels = _scan(root, class_names, skipped, min_per_class=2)
        train_idx, val_idx = stratified_split(np.array(labels), val_fraction, seed)
        train = Split(np.array(labels)[train_idx], paths=[paths[i] for i in train_idx])
        val = Split(np.array(labels)[val_idx], paths=[paths[i] for i in val_idx])
    if skipped:
        log.warning("skipped %d unreadable or non-image files in %s", len(skipped), root)
    return LabelledDataset(class_names, train, val, source=str(folder), skipped=skipped)


def load_zip(archive: str | Path, val_fraction: float = 0.2, seed: int = 0,
             extract_to: str | Path | None = None, max_total_bytes: int | None = None) -> LabelledDataset:
    """Extract a zip of class folders safely (see ``vision.data.archives``) and load it.

    The files are extracted into ``extract_to`` or a new temporary folder, which must
    outlive training because the pipeline reads images from it. ``max_total_bytes`` caps
    what extraction may write (e.g. a session's remaining disk quota); it can only lower
    the archive module's own cap, never raise it.

    Raises:
        DatasetError, UnsafeArchiveError: from ``extract_zip`` (damaged, hostile, too big).
        DatasetError: from ``load_folder``.
    """
    destination = Path(extract_to) if extract_to else Path(tempfile.mkdtemp(prefix="vision-zip-"))
    cap = MAX_TOTAL_BYTES if max_total_bytes is None else min(max_total_bytes, MAX_TOTAL_BYTES)
    extract_zip(archive, destination, max_total_bytes=cap)
    dataset = load_folder(destination, val_fraction=val_fraction, seed=seed)
    dataset.source = str(archive)
    return dataset


def load_synthetic(per_class: int = 250, size: int = 64, val_fraction: float = 0.2,
                   seed: int = 0) -> LabelledDataset:
    """The built-in coloured-shapes dataset, in memory (see ``vision.data.synthetic``)."""

    data = make_shapes(per_class=per_class, size=size, seed=seed)
    train_idx, val_idx = stratified_split(data.labels, val_fraction, seed)
    return LabelledDataset(
        list(data.class_names),
        Split(data.labels[train_idx], images=data.images[train_idx]),
        Split(data.labels[val_idx], images=data.images[val_idx]),
        source=f"synth:{per_class}",
    )


def load_keras_dataset(name: str, limit: int | None = None) -> LabelledDataset:
    """``cifar10``, ``mnist`` or ``fashion_mnist`` through Keras's own downloader and cache.

    The official test split becomes the validation split. Needs the network the first
    time, or a filled Keras cache (``$KERAS_HOME/datasets``).
    """
    import keras  # lazy: listing and decoding a dataset needs no TensorFlow

    names = {
        "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck"],
        "mnist": [str(d) for d in range(10)],
        "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                          "sneaker", "bag", "ankle-boot"],
    }
    if name not in names:
        raise DatasetError(f"unknown Keras dataset {name!r}; choose from {', '.join(KERAS_DATASETS)}")
    try:
        (x_train, y_train), (x_val, y_val) = getattr(keras.datasets, name).load_data()
    except Exception as error:  # Keras raises bare Exceptions for fetch failures
        raise DatasetError(
            f"could not load the {name} dataset: {error}. It is downloaded on first use; "
            "connect to the internet or fill the Keras cache ($KERAS_HOME/datasets)"
        ) from None
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_val, y_val = x_val[: max(1, limit // 5)], y_val[: max(1, limit // 5)]

    def rgb(x: np.ndarray) -> np.ndarray:
        return np.repeat(x[..., None], 3, axis=-1) if x.ndim == 3 else x

    return LabelledDataset(
        names[name],
        Split(y_train.reshape(-1).astype(np.int64), images=rgb(x_train)),
        Split(y_val.reshape(-1).astype(np.int64), images=rgb(x_val)),
        source=name,
    )


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices for train and validation, the same fraction of every class, reproducible."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1; got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = min(len(members) - 1, max(1, int(round(len(members) * val_fraction))))
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def summarize(dataset: LabelledDataset) -> DatasetSummary:
    """Class counts per split, the imbalance ratio with a warning, and balancing class weights."""
    names = dataset.class_names
    train = Counter(dataset.train.labels.tolist())
    val = Counter(dataset.val.labels.tolist())
    counts = np.array([train.get(i, 0) for i in range(len(names))], np.float64)
    ratio = float(counts.max() / max(counts.min(), 1))
    warnings = []
    if ratio > IMBALANCE_WARNING_RATIO:
        big, small = names[int(counts.argmax())], names[int(counts.argmin())]
        warnings.append(
            f"classes are imbalanced: '{big}' has {ratio:.1f}x the images of '{small}'; "
            "consider class weights or more images of the small classes"
        )
    weights = {i: float(counts.sum() / (len(names) * max(c, 1))) for i, c in enumerate(counts)}
    return DatasetSummary(
        names,
        {names[i]: int(train.get(i, 0)) for i in range(len(names))},
        {names[i]: int(val.get(i, 0)) for i in range(len(names))},
        ratio, warnings, weights,
    )


def make_pipeline(split: Split, preprocessing: Preprocessing, batch_size: int = 32,
                  training: bool = False, augment: bool = True, seed: int = 0) -> Any:
    """A ``tf.data.Dataset`` of (model input, label) batches.

    Files are decoded in parallel with ``load_image`` (EXIF, modes, caps), reduced as they
    are decoded to the model's ``input_side`` as the app's classify reduces them, and the
    preprocessed tensors are cached, so decoding happens once. Training adds a seeded
    shuffle and, if ``augment``, random flip, rotation, zoom and contrast per batch.
    """
    import tensorflow as tf  # lazy: listing and decoding a dataset needs no TensorFlow

    autotune = tf.data.AUTOTUNE
    height, width = preprocessing.size
    max_side = input_side(preprocessing.size)
    if split.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        ds = ds.map(lambda x, y: (preprocess(x, preprocessing), y), num_parallel_calls=autotune)
    else:
        def decode_path(path: bytes) -> np.ndarray:
            return load_image(path.decode(), max_side=max_side)

        def decode(path: Any, label: Any) -> tuple[Any, Any]:
            image = tf.numpy_function(decode_path, [path], tf.uint8, stateful=False)
            image.set_shape([None, None, 3])
            return preprocess(image, preprocessing), label

        ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
        # A file that passed the scan but fails to decode is dropped, not fatal mid-epoch.
        ds = ds.map(decode, num_parallel_calls=autotune).ignore_errors(log_warning=True)
    ds = ds.map(lambda x, y: (tf.ensure_shape(x, [height, width, 3]), y)).cache()
    if training:
        ds = ds.shuffle(max(len(split), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment:
        augmenter = make_augmenter(preprocessing, seed)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def make_augmenter(preprocessing: Preprocessing, seed: int = 0) -> Any:
    """Random flip, rotation, zoom and contrast, as a Keras layer used only in training."""
    import keras  # lazy: listing and decoding a dataset needs no TensorFlow

    low = preprocessing.offset
    high = 255.0 * preprocessing.scale + preprocessing.offset
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.08, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomContrast(0.2, value_range=(min(low, high), max(low, high)), seed=seed + 3),
        ],
        name="augmentation",
    )


def _dataset_root(folder: Path) -> Path:
    if not folder.exists():
        raise DatasetError(f"dataset folder '{folder}' does not exist")
    if not folder.is_dir():
        raise DatasetError(f"'{folder}' is not a folder (or a .zip) of class subfolders")
    # Zips often wrap everything in one top folder ("pets/cats/...", "__MACOSX" beside it).
    root = folder
    while True:
        children = _visible(root)
        dirs = [c for c in children if c.is_dir()]
        files = [c for c in children if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES]
        # A wrapper holds only folders; a lone class folder holds images and stays a class.
        if len(dirs) == 1 and not files and dirs[0].name.lower() not in TRAIN_NAMES and not any(
            c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES for c in _visible(dirs[0])
        ):
            root = dirs[0]
        else:
            return root


def _visible(folder: Path) -> list[Path]:
    return sorted(c for c in folder.iterdir()
                  if not c.name.startswith(".") and c.name != "__MACOSX" and not c.is_symlink())


def _first_child(root: Path, names: tuple[str, ...]) -> Path | None:
    for child in _visible(root):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def _class_folders(root: Path) -> list[str]:
    classes = [c.name for c in _visible(root) if c.is_dir()]
    if not classes:
        raise DatasetError(
            f"no class folders in '{root.name}': put the images in one subfolder per class "
            "(e.g. cats/, dogs/)"
        )
    if len(classes) < 2:
        raise DatasetError(
            f"found only one class folder ('{classes[0]}'); a classifier needs at least two"
        )
    return classes


def _scan(root: Path, class_names: list[str], skipped: list[str], min_per_class: int) -> tuple[list[str], list[int]]:
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        folder = root / name
        found = 0
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) if folder.is_dir() else []
        for path, reason in zip(files, _reasons(files)):
            if reason:
                skipped.append(f"{path.relative_to(root)}: {reason}")
                continue
            paths.append(str(path))
            labels.append(label)
            found += 1
        if found < min_per_class:
            raise DatasetError(
                f"class '{name}' has {found} readable image(s) in '{root.name}'; "
                f"it needs at least {min_per_class}"
            )
    return paths, labels


def _reasons(files: list[Path]) -> list[str | None]:
    """``_unusable`` of every file, in order, decoded a few at a time (Pillow decodes with
    the GIL released, so threads use the cores)."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(_unusable, files))


#: What a skipped file's line says, by the error ``load_image`` raised for it.
_SKIP_REASONS: tuple[tuple[type[InvalidImageError], str], ...] = (
    (EmptyImageError, "empty file"),
    (NotAnImageError, "not a JPEG, PNG, GIF, BMP, WebP or TIFF image"),
    (TruncatedImageError, "truncated or corrupt"),
    (ImageTooLargeError, "too many pixels"),
)


def _unusable(path: Path) -> str | None:
    """Why a file cannot be a training image, or None.

    The file is decoded, by ``load_image`` as training will decode it (format allow-list,
    pixel cap, truncation), but at ``SCAN_SIDE``: a header alone passes a PNG cut short,
    which would then fail mid-training. A JPEG decodes at 1/8 scale, about 1 ms for a
    640 x 480 photo and 35 ms for 12 megapixels; a PNG decodes whole (8 ms at 640 x 480).
    """
    if path.name.startswith("."):
        return "hidden file"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file"
    try:
        load_image(path, max_side=SCAN_SIDE)
    except InvalidImageError as error:
        return next((reason for kind, reason in _SKIP_REASONS if isinstance(error, kind)), "not a readable image")
    except (OSError, SyntaxError, ValueError) as error:  # a plugin's own complaint, past the header
        return f"not a readable image ({type(error).__name__})"
    return None
