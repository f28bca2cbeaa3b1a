"""Whether to believe an answer: the "unknown" detector, temperature calibration, label audit,
and fitting the first two to a freshly trained model.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "ood": ["Detector", "fit_knn", "max_logit_detector", "load_detector", "auroc"],
        "calibration": ["Calibration", "calibrate", "expected_calibration_error", "fold_temperature", "softmax"],
        "fit": ["Trust", "fit_trust"],
        "audit": ["Audit", "audit_dataset", "audit_features"],
    },
)
