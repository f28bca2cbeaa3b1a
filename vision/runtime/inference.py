"""Fast, thread-safe prediction for a loaded bundle.

A ``Classifier`` is built once per bundle: it converts the Keras model, with the shared
``images.preprocess`` compiled in front of it, to TFLite and runs it on LiteRT with XNNPACK,
so a request is decode -> one ``invoke`` (several times faster than a ``tf.function`` and
~10x faster than ``model.predict`` for batch-1 requests). A TFLite interpreter may be
used by one thread at a time, so a small pool of them serves concurrent callers.
Batches go through a compiled Keras call.

With the conversion cached (``tflite.cached_flatbuffer``), building a Classifier and
classifying one image import neither TensorFlow nor Keras: the CLI's ``predict`` then costs
well under a second instead of TensorFlow's ~5 s import. Batches, ``prepare``, the ``"tf"``
runtime and a first conversion import them when first used.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision.bundle.store import TFLITE_FILE, Bundle, open_bundle
from vision.data.images import ImageSource, input_side, load_image, preprocess
from vision.models.serving import serving_model, split_outputs
from vision.runtime.int8 import dequantize, quantize_input
from vision.runtime.tflite import TFLiteRunner, cached_flatbuffer, convert_to_tflite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    index: int


@dataclass(frozen=True)
class Classification:
    """The top predictions for one image, and whether the model recognises it at all."""

    predictions: list[Prediction]
    #: The detector's score (higher = more like the training images); None without one.
    familiarity: float | None = None
    threshold: float | None = None

    @property
    def unknown(self) -> bool:
        """True when the image is unlike anything the model was trained on."""
        return self.familiarity is not None and self.familiarity < self.threshold

    @property
    def nearest(self) -> Prediction:
        """The most likely class (for an unknown image: the nearest one)."""
        return self.predictions[0]

    def to_dict(self) -> dict[str, Any]:
        return {"unknown": self.unknown, "familiarity": self.familiarity, "threshold": self.threshold,
                "predictions": [{"label": p.label, "probability": p.probability} for p in self.predictions]}


class Classifier:
    """Predict labels for images with a bundle's model.

    Args:
        bundle: A loaded bundle (see ``vision.bundle.store.load_bundle``).
        runtime: ``"tflite"`` (the converted flatbuffer on LiteRT: fast, the default), or
            ``"tf"`` (compiled Keras, no conversion step). If the conversion or LiteRT fails,
            ``"tflite"`` falls back to ``"tf"``.
        pool_size: Interpreters kept for concurrent callers.
        threads: CPU threads per interpreter; all cores by default.

    Example:
        >>> classifier = Classifier.from_path("models/shapes")
        >>> classifier.predict("photo.jpg", top_k=3)[0].label
    """

    def __init__(self, bundle: Bundle, runtime: str = "tflite", pool_size: int = 2,
                 threads: int | None = None) -> None:
        if runtime not in ("tflite", "tf"):
            raise ValueError(f"runtime must be 'tflite' or 'tf'; got {runtime!r}")
        self.bundle = bundle
        self.labels = bundle.labels
        self.preprocessing = bundle.preprocessing
        self.detector = bundle.detector
        # Images larger than this are reduced while decoded, as the app's classify and the
        # training pipeline decode them (``images.input_side``): the same pixels, bounded memory.
        self._max_side = input_side(self.preprocessing.size)
        # The tf.functions are traced on first use, so the TFLite path never imports TensorFlow.
        self._prepare_fn: Any = None
        self._batch_fn: Any = None
        self._build_lock = threading.Lock()
        self._pool: queue.LifoQueue[TFLiteRunner] | None = None
        self._raw: _RawFlatbuffer | None = None
        self.runtime = "tf"
        if bundle.tflite_only:
            # Imported as a flatbuffer only: nothing to convert and no Keras to fall back on.
            self._raw = _RawFlatbuffer((bundle.path / TFLITE_FILE).read_bytes(), pool_size, threads)
            self.runtime = "tflite"
        elif runtime == "tflite":
            try:
                # Cached on disk by the bundle's fingerprint: only the first run converts,
                # and a cache hit never loads the Keras model (nor imports TensorFlow) at all.
                flatbuffer = cached_flatbuffer(
                    f"classifier|{bundle.fingerprint}",
                    lambda: convert_to_tflite(serving_model(bundle.model, self.detector),
                                              preprocessing=self.preprocessing))
                # One runner per concurrent caller, taken from the pool for a call, so callers
                # never wait on each other's lock. LIFO: a lone caller keeps reusing the same
                # warm interpreter, whose thread pool is hot; FIFO would wake the idle ones.
                pool: queue.LifoQueue[TFLiteRunner] = queue.LifoQueue()
                for _ in range(max(1, pool_size)):
                    pool.put(TFLiteRunner(flatbuffer, threads))
            except Exception as error:  # converter and runtime failures are varied; the tf path still works
                log.warning("no TFLite path (%s); using the TensorFlow path", error)
            else:
                self._pool = pool
                self.runtime = "tflite"
        self._warm_up()

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> "Classifier":
        return cls(open_bundle(path), **kwargs)

    def _batch_call(self, x: np.ndarray) -> Any:
        if self._raw is not None:
            return np.stack([self._raw(image) for image in x])
        # Traced on first use: tracing a large Keras model costs seconds that a caller
        # served by TFLite (the CLI's predict, the app's classify) never needs to pay.
        with self._build_lock:
            if self._batch_fn is None:
                import tensorflow as tf  # lazy: the TFLite path never needs it

                height, width = self.preprocessing.size
                model = serving_model(self.bundle.model, self.detector)
                self._batch_fn = tf.function(
                    lambda batch: model(batch, training=False),
                    input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)],
                )
        return self._batch_fn(x)

    def _model_input(self, pixels: np.ndarray) -> np.ndarray:
        # ``images.preprocess`` in one traced call; the TFLite path has it compiled in instead.
        with self._build_lock:
            if self._prepare_fn is None:
                import tensorflow as tf  # lazy: the TFLite path never needs it

                spec = self.preprocessing
                self._prepare_fn = tf.function(
                    lambda image: preprocess(image[None], spec),
                    input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
                )
        return self._prepare_fn(pixels).numpy()

    def _decode(self, image: ImageSource) -> np.ndarray:
        # RGB uint8 (H, W, 3); larger images reduced to the model's ``input_side``.
        return load_image(image, max_side=self._max_side)

    def prepare(self, image: ImageSource) -> np.ndarray:
        """Decode ``image`` and return the model input, shape (1, H, W, 3) float32.

        Imports TensorFlow (``images.preprocess`` is written in its ops) on first use."""
        return self._model_input(self._decode(image))

    def scores(self, image: ImageSource) -> tuple[np.ndarray, float | None]:
        """Class probabilities (in label order) for one image, and its familiarity
        (None for a bundle without a detector), from one run of the model."""
        pixels = self._decode(image)
        if self._raw is not None:
            return self._raw(self._model_input(pixels)[0]), None
        if self._pool is None:
            probabilities, familiarity = self._batch_scores(self._model_input(pixels))
            return probabilities[0], None if familiarity is None else float(familiarity[0])
        runner = self._pool.get()
        try:
            probabilities, familiarity, _ = split_outputs(runner(pixels), len(self.labels))
        finally:
            self._pool.put(runner)
        return probabilities, None if familiarity is None else float(familiarity[0])

    def probabilities(self, image: ImageSource) -> np.ndarray:
        """Class probabilities (in label order) for one image."""
        return self.scores(image)[0]

    def predict(self, image: ImageSource, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` most likely labels for ``image``, most likely first."""
        return self._top(self.probabilities(image), top_k)

    def classify(self, image: ImageSource, top_k: int = 5) -> Classification:
        """``predict``, and whether the image is unknown to the model (see ``vision.trust.ood``)."""
        probabilities, familiarity = self.scores(image)
        return self._classification(probabilities, familiarity, top_k)

    def classify_batch(self, images: Sequence[ImageSource], top_k: int = 5,
                       batch_size: int = 32) -> list[Classification]:
        """``classify`` for many images, run in batches through the compiled Keras model."""
        results: list[Classification] = []
        for start in range(0, len(images), batch_size):
            chunk = [self.prepare(image)[0] for image in images[start:start + batch_size]]
            probabilities, familiarity = self._batch_scores(np.stack(chunk))
            results.extend(self._classification(p, None if familiarity is None else float(familiarity[i]), top_k)
                           for i, p in enumerate(probabilities))
        return results

    def predict_batch(self, images: Sequence[ImageSource], top_k: int = 5,
                      batch_size: int = 32) -> list[list[Prediction]]:
        """``predict`` for many images, run in batches through the compiled Keras model."""
        return [result.predictions for result in self.classify_batch(images, top_k, batch_size)]

    def scores_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and familiarity (None without a detector) for a batch of model
        input, shape (N, H, W, 3) float32, already preprocessed."""
        return self._batch_scores(x)

    def _batch_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probabilities, familiarity, _ = split_outputs(self._batch_call(x), len(self.labels))
        return probabilities, None if familiarity is None else familiarity[:, 0]

    def _classification(self, probabilities: np.ndarray, familiarity: float | None,
                        top_k: int) -> Classification:
        threshold = self.detector.threshold if self.detector is not None else None
        return Classification(self._top(probabilities, top_k), familiarity, threshold)

    def _top(self, probabilities: np.ndarray, top_k: int) -> list[Prediction]:
        order = np.argsort(-probabilities, kind="stable")[: max(1, top_k)]
        return [Prediction(self.labels[i], float(probabilities[i]), int(i)) for i in order]

    def _warm_up(self) -> None:
        # The first call traces the tf.functions and sizes XNNPACK's buffers: pay it now.
        height, width = self.preprocessing.size
        blank = np.zeros((height, width, 3), np.uint8)
        if self._raw is not None:
            self._raw.warm_up()
        elif self._pool is not None:
            runners = [self._pool.get() for _ in range(self._pool.qsize())]
            for runner in runners:
                runner(blank)
                self._pool.put(runner)
        else:
            self.predict_batch([blank])



class _RawFlatbuffer:
    """A flatbuffer as it was imported (Teachable Machine's): it takes the preprocessed model
    input, float or quantized to uint8/int8, and gives the probabilities, maybe quantized.
    Preprocessing runs outside it (``images.preprocess``, which imports TensorFlow)."""

    def __init__(self, flatbuffer: bytes, pool_size: int, threads: int | None) -> None:
        self._pool: queue.LifoQueue[TFLiteRunner] = queue.LifoQueue()
        for _ in range(max(1, pool_size)):
            self._pool.put(TFLiteRunner(flatbuffer, threads))
        runner = self._pool.get()
        self._input = runner.interpreter.get_input_details()[0]
        self._output = runner.interpreter.get_output_details()[0]
        self._pool.put(runner)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for one preprocessed input ``x`` (H, W, C) float32."""
        runner = self._pool.get()
        try:
            output = runner(quantize_input(np.asarray(x, np.float32), self._input))[0]
        finally:
            self._pool.put(runner)
        return dequantize(output, self._output).astype(np.float32)

    def warm_up(self) -> None:
        """One run on every interpreter, so the first request does not size XNNPACK's buffers."""
        runners = [self._pool.get() for _ in range(self._pool.qsize())]
        for runner in runners:
            runner(np.zeros(tuple(self._input["shape"][1:]), self._input["dtype"]))
            self._pool.put(runner)
