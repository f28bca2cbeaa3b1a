"""A model as a folder: the Keras model, ``vision.json`` (labels, preprocessing, metrics), the
detector and the model card, written atomically, listed, copied and deleted.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "store": ["Bundle", "load_bundle", "open_bundle", "save_bundle", "read_info", "list_bundles", "copy_bundle",
                  "delete_bundle", "make_info"],
        "modelcard": ["render_model_card"],
    },
)
