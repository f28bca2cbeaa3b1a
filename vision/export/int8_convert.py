"""The full-integer TFLite conversion of a Keras model, on its own so that both the int8 export
(``vision.export.int8``) and quantization-aware training (``vision.training.qat``, which reads
the converter's chosen ranges) use it without importing each other."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vision.errors import ExportError

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
    import tensorflow as tf  # lazy, as in vision.runtime.tflite

    from vision.runtime.tflite import keras_messages_to_log

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
