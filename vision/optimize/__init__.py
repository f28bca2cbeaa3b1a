"""Making a model smaller on purpose (``compress``): distil it into a student, prune it, quantize
it to int8, and measure every variant the same way.

A stage of its own, above ``export``: the recipe trains (``vision.training``) *and* exports
(``vision.export``), so it sits above both instead of making either reach up into the other.

Names load on first use (``lazy_loader``), so importing the package imports no TensorFlow.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "compress": ["CompressionPlan", "Variant", "compress", "read_table"],
    },
)
