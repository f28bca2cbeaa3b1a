"""Frozen-backbone features, computed once per image and cached.

Fast training, and later the "unknown" detector and the label audit, all work on the
pooled 1280-number features of EfficientNet-Lite0. Each image goes through the backbone
once per view (as is, and mirrored): the cache is keyed by the image's content, so
training again after adding a few webcam samples only embeds the new ones. One cache serves every
extractor, bounded in bytes (least recently used first out), so the process keeps at most
``CACHE_BYTES`` of features whatever sizes and images its visitors train on.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from cachetools import LRUCache

from vision.data.images import ImageSource, Preprocessing, input_side, load_image, preprocess, resized
from vision.models.efficientnet_lite import efficientnet_lite0, load_imagenet_weights
from vision.models.heads import LITE0_FEATURES
from vision.models.registry import get_spec

#: Bytes of features kept in memory, all extractors together (5 KB per image and view: ~20,000).
CACHE_BYTES = 100 * 2**20
VIEWS = ("original", "mirrored")


def new_cache(max_bytes: int) -> LRUCache:
    """An LRU of feature arrays holding at most ``max_bytes`` of them."""
    return LRUCache(max_bytes, getsizeof=lambda features: features.nbytes)


#: (input size, image content, view) -> that view's features, each its own small array (never a
#: view into a batch, which would keep the whole batch alive behind a 5 KB size).
_CACHE: LRUCache[tuple[int, str, str], np.ndarray] = new_cache(CACHE_BYTES)
#: cachetools' caches are not thread-safe on their own.
_LOCK = threading.Lock()


def cached_bytes() -> int:
    """Bytes of features the process keeps now (never above ``CACHE_BYTES``)."""
    with _LOCK:
        return int(_CACHE.currsize)


Progress = Callable[[int, int], None]  # (images done, images in all)


class FeatureExtractor:
    """EfficientNet-Lite0 (ImageNet) up to its global average pool, at one input size.

    Thread-safe; ``features`` for many images runs in batches of ``batch_size``.
    """

    # Batches of 8, not 32: TensorFlow's oneDNN kernels keep buffers sized for every batch
    # shape they have run, for the life of the process. Measured in a fresh process after
    # embedding 96 images at 224 px: RSS 940 MB at batch 8, 1,170 MB at batch 32, at the
    # same speed (10-18 ms per image either way on 2 busy cores).
    def __init__(self, input_size: int = 224, batch_size: int = 8) -> None:
        self.preprocessing: Preprocessing = get_spec("efficientnet_lite0").preprocessing(input_size)
        self.input_size = input_size
        self.batch_size = batch_size
        backbone = load_imagenet_weights(efficientnet_lite0(include_top=False,
                                                            input_shape=(input_size, input_size, 3)))
        spec = self.preprocessing
        self._embed = tf.function(
            lambda pixels: backbone(preprocess(pixels, spec), training=False),
            input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.float32)],
        )

    def features(self, images: Sequence[ImageSource], views: Sequence[str] = ("original",),
                 progress: Progress | None = None) -> np.ndarray:
        """Features of every image in every view: shape (len(views), len(images), LITE0_FEATURES).

        Raises:
            InvalidImageError: an image cannot be decoded (named in the message).
        """
        unknown = [view for view in views if view not in VIEWS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; choose from {VIEWS}")
        keys = [(self.input_size, _content_key(image)) for image in images]
        result = np.zeros((len(views), len(images), LITE0_FEATURES), np.float32)
        missing: list[int] = []
        with _LOCK:
            for i, key in enumerate(keys):
                cached = [_CACHE.get((*key, view)) for view in views]
                if any(c is None for c in cached):
                    missing.append(i)
                else:
                    result[:, i] = cached
        done = len(images) - len(missing)
        if progress:
            progress(done, len(images))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            pixels = np.stack([self._at_input_size(images[i]) for i in chunk])
            for v, view in enumerate(views):
                batch = pixels[:, :, ::-1] if view == "mirrored" else pixels
                result[v, chunk] = self._embed(np.ascontiguousarray(batch)).numpy()
            with _LOCK:
                for i in chunk:
                    for v, view in enumerate(views):
                        _CACHE[(*keys[i], view)] = result[v, i].copy()
            done += len(chunk)
            if progress:
                progress(done, len(images))
        return result

    def _at_input_size(self, image: ImageSource) -> np.ndarray:
        """The image at the input size, so batches stack; ``preprocess`` in the embedding
        then sees exactly what it sees for the image itself (see ``images.resized``).
        Decoded already reduced to ``input_side``, as the app's classify decodes it."""
        spec = self.preprocessing
        return resized(load_image(image, max_side=input_side(spec.size)), spec.size, spec.resize)


def _content_key(image: ImageSource) -> str:
    """A digest of what the image is, not where it is: a re-uploaded file hits the cache."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(image, np.ndarray):
        digest.update(str((image.shape, image.dtype)).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    elif isinstance(image, (bytes, bytearray)):
        digest.update(bytes(image))
    else:
        try:
            with open(image, "rb") as handle:  # type: ignore[arg-type]
                digest.update(handle.read())
        except (OSError, TypeError):
            digest.update(load_image(image).tobytes())  # PIL images; load_image names bad paths
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def get_extractor(input_size: int = 224) -> FeatureExtractor:
    """One extractor per input size per process, so its cache outlives a training run."""
    return FeatureExtractor(input_size)

