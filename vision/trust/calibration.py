"""Honest confidence: temperature scaling, expected calibration error, reliability diagrams.

A network's softmax is usually over-confident. Temperature scaling (Guo et al., 2017)
divides the logits by one number ``T`` fitted on held-out images by minimising their
negative log-likelihood; it never changes which class wins. ``fold_temperature`` writes
``T`` into the ``logits`` layer itself (kernel and bias divided by ``T``), so the saved Keras
model, its TFLite conversion and its TF.js export all give the calibrated probabilities
with no extra step anywhere.

With ten photos per class the validation split is too small to fit ``T`` on; a model trained
on cached features is then calibrated on out-of-fold logits instead: k copies of its head,
each trained the same way without one fold, answer the images they never saw
(``vision.training.fast.fast_head_out_of_fold_logits``). ``Calibration.method`` records which.

The fit is one bounded scalar minimisation (scipy); the calibration libraries that wrap it
(netcal, for one) pull in PyTorch, which this project does not otherwise need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vision.models.heads import LOGITS_LAYER

#: Equal-width confidence bins for ECE and the diagram (the usual choice since Guo et al.).
BINS = 10
#: ``T`` is searched within these bounds.
T_RANGE = (0.05, 20.0)
#: How a temperature was fitted: on the validation split, or on the out-of-fold logits of
#: k-fold heads over every image (few-shot).
VALIDATION, OUT_OF_FOLD = "validation", "k-fold out-of-fold"


@dataclass
class Calibration:
    """What ``vision.json`` records under ``calibration``."""

    temperature: float
    ece_before: float
    ece_after: float
    images: int
    #: Per bin: mean confidence, accuracy and count, before and after (the diagram's data).
    bins_before: list[dict[str, float]]
    bins_after: list[dict[str, float]]
    #: ``VALIDATION`` or ``OUT_OF_FOLD``: which held-out answers ``images`` counts.
    method: str = VALIDATION

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "method": self.method, "ece_before": self.ece_before,
                "ece_after": self.ece_after, "images": self.images, "bins_before": self.bins_before,
                "bins_after": self.bins_after}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from ``logits / temperature`` over the last axis (one row, or a batch
    of them), in float64 so a confident answer does not round to exactly 1."""
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` that minimises the negative log-likelihood of ``labels`` under
    ``softmax(logits / T)``, with a standard-normal prior on ``log T`` (searched within
    ``T_RANGE``). Without the prior, a validation split the model gets entirely right
    drives ``T`` to the bound (every answer "100 %"); with it, a few images move ``T``
    a little and thousands move it freely."""
    from scipy.optimize import minimize_scalar  # lazy: SciPy takes seconds to import; only fitting T needs it

    labels = np.asarray(labels, int)

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.sum(np.log(p[np.arange(len(labels)), labels] + 1e-12)) + log_t ** 2 / 2)

    found = minimize_scalar(nll, bounds=np.log(T_RANGE), method="bounded")
    return float(np.exp(found.x))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin: mean confidence, accuracy and count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"confidence": float(confidence[which == b].mean()) if (which == b).any() else (b + 0.5) / bins,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else 0.0,
             "count": int((which == b).sum())} for b in range(bins)]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Count-weighted mean |accuracy - confidence| over the confidence bins."""
    table = reliability_bins(probabilities, labels, bins)
    total = sum(row["count"] for row in table)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table) / max(total, 1))


def calibrate(logits: np.ndarray, labels: np.ndarray, method: str = VALIDATION) -> Calibration:
    """Fit ``T`` on held-out ``logits`` and measure ECE before and after; ``method`` says what
    the logits are (``VALIDATION`` or ``OUT_OF_FOLD``) and is recorded with them.

    ``T`` is the likelihood's, whatever the ECE of these same answers says: on a few dozen of
    them, ten bins hold two or three answers each, and vetoing ``T`` when that ECE rose threw
    away temperatures that improved new images' likelihood and ECE (2 of 10 few-shot draws in
    tests/test_trust.py's scenario)."""
    before = softmax(logits)
    temperature = fit_temperature(logits, labels)
    after = softmax(logits, temperature)
    return Calibration(temperature, expected_calibration_error(before, labels),
                       expected_calibration_error(after, labels), int(len(labels)),
                       reliability_bins(before, labels), reliability_bins(after, labels), method)


def fold_temperature(model: Any, temperature: float) -> None:
    """Divide the ``logits`` layer's kernel and bias by ``temperature``, in place."""
    layer = model.get_layer(LOGITS_LAYER)
    layer.set_weights([w / temperature for w in layer.get_weights()])
