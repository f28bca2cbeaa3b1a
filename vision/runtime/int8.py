"""Full-integer (int8) TFLite flatbuffers: making one from a Keras model (``convert``), and the
arithmetic at its edges (``quantize_input``, ``dequantize``, ``run``).

Both sit here, below training and export, because three stages share them: the runtime feeds
an imported int8 flatbuffer (Teachable Machine's), quantization-aware training reads the
ranges the converter chooses (``vision.training.qat``), and the int8 export converts and
checks (``vision.export.int8``). TensorFlow is imported by ``convert`` only: running a
flatbuffer needs none.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vision.errors import ExportError
from vision.runtime.tflite import keras_messages_to_log

# The converter warns on every int8-input conversion that no input statistics were given: the
# representative dataset gives them. One process-wide filter, set once (catch_warnings around
# each conversion would race between threads).
warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected", category=UserWarning)


def convert(model: Any, calibration: np.ndarray, io: str = "float32") -> bytes:
    """A full-integer TFLite flatbuffer of ``model`` (batch size 1).

    Args:
        model: A Keras model with a fixed (H, W, C) float input.
        calibration: Representative model inputs (preprocessed), (N, H, W, C) float32.
        io: The input and output tensors' dtype: ``"float32"``, ``"int8"`` or ``"uint8"``.

    Raises:
        ExportError: an op has no int8 kernel in TFLite (the converter names it).
    """
    import tensorflow as tf  # lazy: running a flatbuffer (the rest of this module) needs no TensorFlow

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration.astype(np.float32))
    # Int8 builtins only: an op without an int8 kernel fails the conversion instead of
    # silently staying float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float32":
        converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io)
    try:
        with keras_messages_to_log():
            return converter.convert()
    except Exception as error:  # the converter raises several kinds (ConverterError, ValueError, ...)
        raise ExportError(f"full-integer TFLite conversion failed ({type(error).__name__}): "
                          f"{str(error).splitlines()[0] if str(error) else 'no reason given'}") from None


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Model input ``x`` (float, preprocessed) as the interpreter input ``detail`` takes it."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), limits.min, limits.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """An interpreter output as float32 (``(q - zero_point) * scale`` for an integer tensor)."""
    if np.dtype(detail["dtype"]) == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def run(runner: Any, inputs: np.ndarray) -> list[np.ndarray]:
    """Float model inputs through a ``vision.runtime.tflite.TFLiteRunner`` of a full-integer
    flatbuffer, whatever its I/O dtype: quantized on the way in, dequantized on the way out."""
    interpreter = runner.interpreter
    inputs = quantize_input(inputs, interpreter.get_input_details()[0])
    return [dequantize(y, detail) for y, detail in zip(runner.batch(inputs), interpreter.get_output_details())]
