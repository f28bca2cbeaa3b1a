"""Running a saved model fast: the TFLite conversion (cached on disk), the LiteRT interpreter
that runs it without TensorFlow, and the ``Classifier`` every entry point predicts with.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "inference": ["Classifier", "Classification", "Prediction"],
        "tflite": ["TFLiteRunner", "cached_flatbuffer", "convert_to_tflite", "make_interpreter"],
    },
)
