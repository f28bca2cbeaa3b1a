"""Ready-made models built from installed packages: the everyday-objects ImageNet classifier.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "everyday": ["build_everyday_bundle", "default_model", "ensure_everyday_bundle"],
    },
)
