"""Taking a bundle elsewhere: TF.js (with per-channel uint8 weights), TFLite, ONNX and a SavedModel
for TF Serving, each checked against Keras when made.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "options": ["FORMATS", "QUANTIZATIONS", "INT8_METHODS"],
        "formats": ["ExportResult", "export", "build_web_site"],
        "webweights": ["encode_per_channel", "decode_per_channel", "quantize_graph_model"],
        "onnx": ["export_onnx", "read_metadata_props"],
        "savedmodel": ["export_for_serving", "signature_defs"],
        "graph_decode": ["decode"],
        "int8": ["export_full_integer", "calibration_images"],
        "parity": ["parity_record", "table_row"],
    },
)
