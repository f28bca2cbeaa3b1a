"""Running a saved model fast: the TFLite conversion (cached on disk), the LiteRT interpreter
that runs it without TensorFlow, the ``Classifier`` every entry point predicts with, and the
full-integer conversion with its quantized input and output arithmetic (``int8``).

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "inference": ["Classifier", "Classification", "Prediction"],
        "int8": ["convert", "quantize_input", "dequantize"],
        "tflite": ["TFLiteRunner", "cached_flatbuffer", "convert_to_tflite", "make_interpreter"],
    },
)
