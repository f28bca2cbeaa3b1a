""""I don't know": a detector for images unlike anything the model was trained on.

Every classifier here ends in pooled features -> ``logits`` -> softmax, so a detector can
work on the features the model already computes. Two kinds:

- ``knn-cosine`` (trained bundles): the cosine similarity of an image's pooled features to
  the nearest training image's (Sun et al., 2022, "Out-of-distribution detection with deep
  nearest neighbors"). ``bench/bench_trust.py`` measures it against class-conditional
  Mahalanobis distance with a Ledoit-Wolf covariance: AUROC 1.000 for both on the texture
  models; on the shapes model k-NN scored 0.995 to 0.999 over runs, Mahalanobis up to 1.000.
  k-NN was kept: Mahalanobis on EfficientNet's 1,280 features needs a 1,280 x 1,280
  precision matrix (6.5 MB in every bundle and web export), estimated from a few dozen
  photos in the few-shot case, where k-NN needs nothing estimated and stores only the
  training features.
- ``max-logit`` (the everyday-objects ImageNet model, whose training images are not here):
  the largest logit (Hendrycks et al., 2022, "Scaling out-of-distribution detection").

Both give a *familiarity* (higher = more like the training data). The threshold is set on
held-out in-distribution images so that about ``ACCEPT`` of them are accepted. The score is
computed inside the serving graph (``vision.models.serving.serving_model``), so TFLite and TF.js give it with
the probabilities in one call; the bundle stores the reference features in ``ood.npz``
(plain arrays, loaded without pickle).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision.errors import InvalidBundleError

KNN = "knn-cosine"
MAX_LOGIT = "max-logit"
METHODS = (KNN, MAX_LOGIT)
OOD_FILE = "ood.npz"
#: Share of held-out in-distribution images the threshold accepts.
ACCEPT = 0.95
#: Held-out images enough to place the threshold on their own.
ENOUGH_HELD_OUT = 40
#: Reference features kept (a seeded sample beyond that): 2,000 x 1,280 is ~2.6 M
#: multiply-adds per image, under 1 % of EfficientNet-Lite0's.
MAX_REFERENCES = 2000


@dataclass
class Detector:
    """A fitted detector: ``familiarity < threshold`` means "unknown"."""

    method: str
    threshold: float
    references: np.ndarray | None = None  # knn-cosine: unit-length training features
    accept_rate: float | None = None  # on the held-out images the threshold was set on
    held_out: int = 0

    def to_info(self) -> dict[str, Any]:
        """What ``vision.json`` records under ``ood``."""
        info: dict[str, Any] = {"method": self.method, "threshold": self.threshold,
                                "accept_rate": self.accept_rate, "held_out_images": self.held_out}
        if self.references is not None:
            info.update(file=OOD_FILE, references=int(len(self.references)))
        return info

    def files(self) -> dict[str, bytes]:
        """Files to write into the bundle beside ``vision.json``."""
        if self.references is None:
            return {}
        buffer = io.BytesIO()
        np.savez(buffer, references=self.references.astype(np.float32))
        return {OOD_FILE: buffer.getvalue()}

    def familiarity(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Scores for a batch (numpy; the serving graph computes the same)."""
        if self.method == MAX_LOGIT:
            return np.asarray(logits).max(axis=1)
        return (_unit(features) @ self.references.T).max(axis=1)

    def graph(self, features: Any, logits: Any) -> Any:
        """The familiarity as Keras ops on symbolic tensors, shape (batch, 1)."""
        import keras  # lazy: loading a bundle reads the detector without Keras

        ops = keras.ops
        if self.method == MAX_LOGIT:
            return ops.max(logits, axis=1, keepdims=True)
        unit = features / ops.sqrt(ops.sum(ops.square(features), axis=1, keepdims=True) + 1e-12)
        return ops.max(ops.matmul(unit, ops.convert_to_tensor(self.references.T)), axis=1, keepdims=True)


def fit_knn(train_features: np.ndarray, held_out_features: np.ndarray,
            background_features: np.ndarray | None = None, accept: float = ACCEPT, seed: int = 0) -> Detector:
    """A ``knn-cosine`` detector on training features (one row per image).

    The threshold accepts ``accept`` of the held-out images; with fewer than
    ``ENOUGH_HELD_OUT`` of them, each training image's similarity to its nearest *other*
    training image counts as held out too (a few photos cannot place a 5 % quantile). Held-out
    images from the same sessions sit closer to the training images than new photos of the
    same classes do (textures: 5 % quantile 0.91 held out, 0.82 on new photos), so where
    unrelated photos (``background_features``) score far below, the threshold moves to the
    middle of that gap; it is never stricter than the held-out quantile.
    """
    references = _unit(train_features)
    if len(references) > MAX_REFERENCES:
        keep = np.random.default_rng(seed).choice(len(references), MAX_REFERENCES, replace=False)
        references = references[np.sort(keep)]
    scores = [(_unit(held_out_features) @ references.T).max(axis=1)] if len(held_out_features) else []
    if len(held_out_features) < ENOUGH_HELD_OUT and len(references) > 1:
        among = references @ references.T
        np.fill_diagonal(among, -np.inf)
        scores.append(among.max(axis=1))
    scores = np.concatenate(scores)
    threshold = float(np.quantile(scores, 1 - accept))
    if background_features is not None and len(background_features):
        background = float(np.quantile((_unit(background_features) @ references.T).max(axis=1), accept))
        threshold = min(threshold, (threshold + background) / 2)
    return Detector(KNN, threshold, references, float(np.mean(scores >= threshold)), int(len(scores)))


def max_logit_detector(held_out_logits: np.ndarray, accept: float = ACCEPT) -> Detector:
    """A ``max-logit`` detector whose threshold accepts ``accept`` of ``held_out_logits``."""
    scores = np.asarray(held_out_logits).max(axis=1)
    threshold = float(np.quantile(scores, 1 - accept))
    return Detector(MAX_LOGIT, threshold, None, float(np.mean(scores >= threshold)), int(len(scores)))


def load_detector(folder: str | Path, info: dict[str, Any]) -> Detector | None:
    """The bundle's detector, or None for a bundle made without one.

    Raises:
        InvalidBundleError: ``vision.json`` names a detector whose data is missing or damaged.
    """
    ood = info.get("ood")
    if not ood:
        return None
    if ood.get("method") not in METHODS or not isinstance(ood.get("threshold"), (int, float)):
        raise InvalidBundleError(f"'{folder}': unknown out-of-distribution detector {ood!r}")
    references = None
    if ood["method"] == KNN:
        try:
            with np.load(Path(folder) / OOD_FILE, allow_pickle=False) as data:
                references = np.asarray(data["references"], np.float32)
        except (OSError, KeyError, ValueError) as error:
            raise InvalidBundleError(f"'{folder}': the detector's {OOD_FILE} cannot be read ({error})") from None
        if references.ndim != 2 or references.shape[0] != ood.get("references"):
            raise InvalidBundleError(f"'{folder}': {OOD_FILE} does not hold the {ood.get('references')} "
                                     "reference features vision.json promises")
    return Detector(ood["method"], float(ood["threshold"]), references, ood.get("accept_rate"),
                    int(ood.get("held_out_images", 0)))


def auroc(in_distribution: np.ndarray, out_of_distribution: np.ndarray) -> float:
    """Probability that an in-distribution image scores higher than an outlier (ties half)."""
    from sklearn.metrics import roc_auc_score  # lazy: scikit-learn takes seconds; bundle.store imports this module

    labels = np.r_[np.ones(len(in_distribution)), np.zeros(len(out_of_distribution))]
    return float(roc_auc_score(labels, np.r_[in_distribution, out_of_distribution]))


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    return features / np.sqrt((features ** 2).sum(axis=1, keepdims=True) + 1e-12)
