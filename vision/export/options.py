"""What an export can be, named without importing TensorFlow: the CLI's ``--help`` and the app
list these, ``vision.export.formats`` makes them."""

from __future__ import annotations

FORMATS = ("tfjs", "tflite", "savedmodel", "onnx", "teachable-machine")
#: Per format, the quantizations it takes (None: float32, as trained). TFLite's "int8*" are full
#: integer (weights and activations, ``vision.export.int8``): "int8" keeps float32 input and
#: output, "int8-io" has int8 input and output tensors, "int8-uint8-io" uint8 ones.
QUANTIZATIONS = {"tfjs": (None, "float16", "uint8"),
                 "tflite": (None, "float16", "dynamic", "int8", "int8-io", "int8-uint8-io"),
                 "savedmodel": (None,), "onnx": (None,), "teachable-machine": (None,)}
#: How a full-integer TFLite export gets its int8 weights (``vision.export.int8``): "ptq",
#: calibration and bias correction, or "qat", then quantization-aware fine-tuning.
INT8_METHODS = ("ptq", "qat")


def quantization_names() -> list[str]:
    """Every quantization some format takes, once each, in the order of ``FORMATS``."""
    return list(dict.fromkeys(q for fmt in FORMATS for q in QUANTIZATIONS[fmt] if q))


def quantization_help() -> str:
    """Which format takes which quantization, as one line: ``tfjs: float16 | uint8; ...``."""
    return "; ".join(f"{fmt}: {' | '.join(q for q in QUANTIZATIONS[fmt] if q)}"
                     for fmt in FORMATS if any(QUANTIZATIONS[fmt]))
