"""Why the model answered: class activation maps (Grad-CAM, Grad-CAM++, Score-CAM), the pointing
game that scores them, and the heatmap overlay.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "methods": ["METHODS"],
        "cam": ["Explainer", "Explanation"],
        "pointing": ["PointingResult", "pointing_game"],
        "overlay": ["colorize", "overlay", "resize_heatmap"],
    },
)
