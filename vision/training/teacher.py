"""A teacher's answers on many augmented views of a few images, computed once and cached.

Distillation (``vision.training.distill``) and pruning's fine-tune (``vision.training.prune``)
both learn from what a model says about images, not only from their labels: with ten photos
a class, the teacher's soft answers on a few hundred strongly augmented views are where a
small student gets its knowledge. Running the teacher is the expensive part (EfficientNet-Lite0
at 224 px), so the views and the teacher's logits are kept in memory, keyed by the teacher's
fingerprint and the images' content, the way ``vision.models.features`` keeps features: a second
student, another size or another sparsity reuses them. The cache is bounded in bytes, not entries
(views at 224 px weigh 150 KB each, and a run may label thousands): least recently used first out.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from cachetools import LRUCache

from vision.bundle.store import Bundle
from vision.data.images import ImageSource, input_side, load_image, preprocess, resized
from vision.errors import TrainingCancelledError
from vision.models.heads import LOGITS_LAYER

#: Bytes of teachers' views (and their logits) kept in memory, process-wide: 30 photos at 24 views
#: of 224 px weigh ~110 MB. An entry larger than this is returned but not kept.
CACHE_BYTES = 256 * 2**20
#: Views labelled per batch: bounds the memory of views at the teacher's input size.
BATCH = 32

Progress = Callable[[int, int], None]  # (views labelled, views in all)


@dataclass(frozen=True)
class TeacherViews:
    """Augmented views of some images with the teacher's logits on each."""

    #: uint8 views (N, S, S, 3) at the teacher's input side S.
    images: np.ndarray
    #: The teacher's logits (N, classes): its calibrated pre-softmax scores.
    logits: np.ndarray
    #: The source image's label per view; -1 for an unlabelled image (the teacher alone labels it).
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """The memory its arrays hold."""
        return int(self.images.nbytes + self.logits.nbytes + self.labels.nbytes)


def strong_augmenter(seed: int = 0) -> Any:
    """Flip, zoom (mostly in), rotation, shift and RandAugment's photometric and geometric ops,
    on uint8-range floats. Keras's own layers: RandAugment is the maintained recipe."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        # Zooming in up to 1.4x makes new crops out of a few photos; out only a little, as reflected
        # borders are not what the camera sees.
        keras.layers.RandomZoom((-0.3, 0.1), fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
        keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.4, seed=seed + 4),
    ], name="strong_augmentation")


class _ViewCache:
    """A thread-safe, byte-bounded LRU of ``TeacherViews`` (cachetools' ``LRUCache`` sized by
    ``nbytes``: cachetools is not thread-safe on its own)."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: LRUCache[str, TeacherViews] = LRUCache(max_bytes, getsizeof=lambda views: views.nbytes)
        self._lock = threading.Lock()

    def get(self, key: str) -> TeacherViews | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, views: TeacherViews) -> None:
        with self._lock:
            if views.nbytes <= self._entries.maxsize:  # cachetools refuses a larger one
                self._entries[key] = views

    @property
    def nbytes(self) -> int:
        """Bytes held now (never above the ceiling)."""
        with self._lock:
            return int(self._entries.currsize)


_CACHE = _ViewCache(CACHE_BYTES)


def _key(teacher: Bundle, pixels: Sequence[np.ndarray], labels: np.ndarray, views: int, seed: int) -> str:
    digest = hashlib.sha256(f"{teacher.fingerprint}|{views}|{seed}".encode())
    for image, label in zip(pixels, labels):
        digest.update(np.int64(label).tobytes())
        digest.update(np.asarray(image.shape, np.int64).tobytes())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def teacher_logits_model(teacher: Bundle) -> Any:
    """The teacher's Keras model up to its ``logits`` layer (before the softmax)."""
    model = teacher.model
    return keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)


def teacher_views(teacher: Bundle, images: Sequence[ImageSource], labels: Sequence[int], views: int = 16,
                  seed: int = 0, progress: Progress | None = None,
                  cancelled: Callable[[], bool] | None = None) -> TeacherViews:
    """Each image as it is plus ``views - 1`` strongly augmented views, each labelled by the
    teacher; cached by the teacher and the images' content.

    Args:
        images: Paths or uint8 RGB arrays; decoded as the app decodes uploads (``load_image``).
        labels: One per image, -1 where unlabelled.
        views: Views per image, the unaugmented one included.
        cancelled: Polled between batches; when it returns True the work stops and the partial
            result is dropped (``TrainingCancelledError``).

    Raises:
        ValueError: no images, or labels not matching them.
        TrainingCancelledError: ``cancelled()`` became True.
    """
    labels = np.asarray(labels, np.int64)
    if not len(images) or len(images) != len(labels):
        raise ValueError(f"need images with one label each; got {len(images)} images, {len(labels)} labels")
    if views < 1:
        raise ValueError(f"views must be at least 1; got {views}")
    preprocessing = teacher.preprocessing
    side = preprocessing.size
    pixels = [load_image(image, max_side=input_side(side)) for image in images]
    key = _key(teacher, pixels, labels, views, seed)
    cached = _CACHE.get(key)
    if cached is not None:
        if progress:
            progress(len(cached), len(cached))
        return cached

    # The augmentation layers carry their own seeds: no process-wide seed is set.
    augment = strong_augmenter(seed)
    logits_of = teacher_logits_model(teacher)
    # The model's own resize (identity at its size), rounded back to pixels.
    originals = np.stack([np.clip(np.round(resized(p, side)), 0, 255).astype(np.uint8) for p in pixels])
    order = np.repeat(np.arange(len(pixels)), views)
    total = len(order)
    out_images = np.empty((total, *side, 3), np.uint8)
    out_logits: list[np.ndarray] = []
    for start in range(0, total, BATCH):
        if cancelled is not None and cancelled():
            raise TrainingCancelledError("cancelled while the teacher labelled the views; nothing was kept")
        index = order[start:start + BATCH]
        batch = originals[index].astype(np.float32)
        # The first view of every image is the image itself.
        first = (np.arange(start, start + len(index)) % views) == 0
        augmented = np.asarray(augment(batch, training=True))
        batch = np.where(first[:, None, None, None], batch, augmented)
        out_images[start:start + len(index)] = np.clip(np.round(batch), 0, 255).astype(np.uint8)
        out_logits.append(np.asarray(logits_of(preprocess(out_images[start:start + len(index)], preprocessing),
                                               training=False), np.float32))
        if progress:
            progress(start + len(index), total)
    result = TeacherViews(out_images, np.concatenate(out_logits), labels[order])
    _CACHE.put(key, result)
    return result
