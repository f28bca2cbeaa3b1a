"""Keras model -> TensorFlow Lite flatbuffer, and the one loop that runs it: used by the fast
inference path, Grad-CAM's fast path and the TFLite export's check.

Flatbuffers run on LiteRT (``ai_edge_litert``), TFLite's runtime without TensorFlow: importing
it takes ~0.07 s where ``import tensorflow`` takes ~4.5 s, and TensorFlow 2.20 deletes
``tf.lite.Interpreter``. Only converting needs TensorFlow, and a converted model is cached on
disk, so serving a model converted before never imports TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import threading
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vision.data.images import Preprocessing
from vision.models.serving import with_preprocessing

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where converted models are kept: ``$VISION_CACHE_DIR``, else ``~/.cache/vision``."""
    explicit = os.environ.get("VISION_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vision"


def cached_flatbuffer(key: str, build: Callable[[], bytes]) -> bytes:
    """The flatbuffer for ``key`` (e.g. a bundle's fingerprint and purpose), built once.

    Converting the everyday-objects model takes ~7 s; reading it back takes milliseconds,
    so the app and the CLI start fast after the first run. The key is hashed with the
    TensorFlow version (a different converter may give a different flatbuffer), read without
    importing TensorFlow: a hit costs no TensorFlow at all. An unwritable cache only costs
    the conversion.
    """
    name = hashlib.sha256(f"{key}|tensorflow {_converter_version()}".encode()).hexdigest()
    path = cache_dir() / "tflite" / f"{name}.tflite"
    try:
        return path.read_bytes()
    except OSError:
        pass
    flatbuffer = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".tmp-{uuid.uuid4().hex[:8]}")
        staging.write_bytes(flatbuffer)
        os.replace(staging, path)  # readers see the whole file or none
    except OSError as error:
        log.warning("could not cache the converted model in %s (%s)", path.parent, error)
    return flatbuffer


def convert_to_tflite(model: Any, quantize: str | None = None,
                      preprocessing: Preprocessing | None = None) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer with batch size 1.

    Args:
        model: A Keras model with a fixed (H, W, C) input.
        quantize: None (fp32), ``"float16"`` (fp16 weights) or ``"dynamic"`` (int8
            weights, float activations).
        preprocessing: If given, ``images.preprocess`` is compiled into the flatbuffer:
            it then takes a uint8 RGB image (1, h, w, 3) of any size, and serving it
            needs no TensorFlow call outside the interpreter.
    """
    import tensorflow as tf  # lazy: `import vision.runtime` (the CLI's start) stays TF-free

    if preprocessing is not None:
        model = with_preprocessing(model, preprocessing)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize is not None:
        raise ValueError(f"unknown TFLite quantization {quantize!r}; use None, 'float16' or 'dynamic'")
    with keras_messages_to_log():
        return converter.convert()


#: Names ``make_interpreter`` takes for ``engine``; ``$VISION_TFLITE_ENGINE`` sets the default.
ENGINES = ("litert", "tensorflow")
ENGINE_VARIABLE = "VISION_TFLITE_ENGINE"


def make_interpreter(flatbuffer: bytes, threads: int | None = None, engine: str | None = None) -> Any:
    """A ready TFLite interpreter (XNNPACK delegate, ``threads`` CPU threads).

    Args:
        flatbuffer: A TFLite model, e.g. from ``convert_to_tflite``.
        threads: CPU threads; all cores by default.
        engine: ``"litert"`` (``ai_edge_litert.interpreter.Interpreter``), or ``"tensorflow"``
            (``tf.lite.Interpreter``: deprecated, deleted in TensorFlow 2.20; kept to compare
            against while the pinned TensorFlow 2.19 has it). Default: ``$VISION_TFLITE_ENGINE``,
            else ``"litert"``.

    Raises:
        ValueError: an unknown ``engine``.
        ImportError: the engine's package is not installed.
    """
    engine = engine or os.environ.get(ENGINE_VARIABLE) or ENGINES[0]
    if engine == "litert":
        from ai_edge_litert.interpreter import Interpreter  # lazy: only running a model pays for the runtime
    elif engine == "tensorflow":
        import tensorflow as tf  # lazy: the comparison engine only

        Interpreter = tf.lite.Interpreter
    else:
        raise ValueError(f"unknown TFLite engine {engine!r}; use one of {', '.join(ENGINES)} "
                         f"(argument or ${ENGINE_VARIABLE})")
    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads or os.cpu_count())
    interpreter.allocate_tensors()
    return interpreter


def describe_flatbuffer(flatbuffer: bytes) -> dict[str, dict[str, Any]]:
    """The first input's and output's shape, dtype and quantization (scale, zero point) of a
    flatbuffer, as plain JSON-ready values; LiteRT's errors pass through for a bad file."""
    interpreter = make_interpreter(flatbuffer, threads=1)

    def described(detail: dict[str, Any]) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        return {"shape": [int(n) for n in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero_point)}

    return {"input": described(interpreter.get_input_details()[0]),
            "output": described(interpreter.get_output_details()[0])}


class TFLiteRunner:
    """One interpreter behind one call: set the input, invoke, read every output.

    The flatbuffer has batch size 1; the input is resized (and the interpreter's buffers
    re-planned) only when the shape of what comes in changes, so a flatbuffer with
    preprocessing compiled in takes images of any size. An interpreter runs one call at a
    time: a lock serialises callers of one runner, and a pool of runners serves callers
    in parallel.

    Args:
        flatbuffer: A TFLite model, e.g. from ``convert_to_tflite``.
        threads: CPU threads for the interpreter; all cores by default.
        engine: The interpreter's runtime (see ``make_interpreter``).
    """

    def __init__(self, flatbuffer: bytes, threads: int | None = None, engine: str | None = None) -> None:
        self.interpreter = make_interpreter(flatbuffer, threads, engine)
        detail = self.interpreter.get_input_details()[0]
        self._input = detail["index"]
        self._shape = tuple(int(n) for n in detail["shape"][1:])
        self._outputs = [output["index"] for output in self.interpreter.get_output_details()]
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for one input ``x`` (no batch axis), batch axis removed, in the
        interpreter's order (which need not be the Keras model's)."""
        with self._lock:
            if x.shape != self._shape:
                self.interpreter.resize_tensor_input(self._input, (1, *x.shape))
                self.interpreter.allocate_tensors()
                self._shape = x.shape
            self.interpreter.set_tensor(self._input, x[None])
            self.interpreter.invoke()
            # get_tensor copies: the next invoke cannot change what is returned.
            return [self.interpreter.get_tensor(index)[0] for index in self._outputs]

    def batch(self, inputs: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Every output for each of ``inputs``, one invoke per input, stacked on a batch axis."""
        return [np.stack(output) for output in zip(*(self(x) for x in inputs))]


@cache
def _converter_version() -> str:
    """The installed TensorFlow's version from its package metadata (milliseconds), or
    ``"none"``; equal to ``tf.__version__``, so flatbuffers cached before are still found."""
    # The wheel's name varies by platform and build; the module it installs does not.
    for distribution in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "none"


@contextlib.contextmanager
def keras_messages_to_log() -> Iterator[None]:
    """Keras's messages in this thread go to absl's log (INFO: not shown) instead of stdout.

    The converter exports the model with Keras, which prints the traced signature (hundreds
    of lines) with ``keras.src.utils.io_utils.print_msg``; nothing else it says reaches
    stdout (TensorFlow's C++ logs go to stderr). Keras keeps this switch per thread, so
    conversions running at once in other threads are untouched, and ``sys.stdout`` is never
    swapped (``contextlib.redirect_stdout`` is process-wide: two overlapping swaps could
    leave it pointing at a closed devnull).
    """
    import keras  # lazy: like tensorflow above: `import vision.runtime` stays TF-free

    was_enabled = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_enabled:
            keras.config.enable_interactive_logging()
