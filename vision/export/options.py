"""What an export can be, named without importing TensorFlow: the CLI's ``--help`` and the app
list these, ``vision.export.formats`` makes them."""

from __future__ import annotations

FORMATS = ("tfjs", "tflite", "savedmodel", "onnx")
#: Per format, the weight quantizations it takes (None: float32, as trained).
QUANTIZATIONS = {"tfjs": (None, "float16", "uint8"), "tflite": (None, "float16", "dynamic"),
                 "savedmodel": (None,), "onnx": (None,)}


def quantization_names() -> list[str]:
    """Every quantization some format takes, once each, in the order of ``FORMATS``."""
    return list(dict.fromkeys(q for fmt in FORMATS for q in QUANTIZATIONS[fmt] if q))


def quantization_help() -> str:
    """Which format takes which quantization, as one line: ``tfjs: float16 | uint8; ...``."""
    return "; ".join(f"{fmt}: {' | '.join(q for q in QUANTIZATIONS[fmt] if q)}"
                     for fmt in FORMATS if any(QUANTIZATIONS[fmt]))
