"""Out-of-fold answers: each image answered by a copy of a head that never saw it.

Two users, one piece of code: the label audit (a logistic-regression head: its out-of-fold
probabilities are what cleanlab ranks) and the few-shot calibration (the fast path's own head,
retrained per fold: its out-of-fold logits stand in for a validation split too small to fit a
temperature on). scikit-learn's ``StratifiedKFold`` and ``cross_val_predict`` do the splitting,
cloning, fitting and reassembly; any scikit-learn estimator can be the head.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vision.errors import DatasetError

#: Folds (fewer when a class has fewer images).
FOLDS = 5


def fold_count(labels: np.ndarray, folds: int = FOLDS, purpose: str = "out-of-fold answers") -> int:
    """The number of folds used for ``labels``: ``folds``, or the smallest class's size if lower,
    so every fold's training part holds every class.

    Raises:
        DatasetError: a class has fewer than 2 images (no fold could hold it out); the message
            starts with ``purpose``.
    """
    labels = np.asarray(labels, int)
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    if smallest < 2:
        raise DatasetError(f"{purpose} needs at least 2 images in every class")
    return min(folds, smallest)


def out_of_fold(head: Any, features: np.ndarray, labels: np.ndarray, method: str = "predict_proba",
                folds: int = FOLDS, seed: int = 0, purpose: str = "out-of-fold answers") -> np.ndarray:
    """Every row's ``head.<method>`` answer (``predict_proba`` or ``decision_function``), each from
    a clone of the scikit-learn estimator ``head`` fitted on the other folds (stratified, shuffled
    with ``seed``). One row of ``features`` per image; the answers keep the rows' order.

    Raises:
        DatasetError: a class has fewer than 2 images (the message starts with ``purpose``).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict  # lazy: takes seconds to import

    labels = np.asarray(labels, int)
    splitter = StratifiedKFold(fold_count(labels, folds, purpose), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from small folds
        # n_jobs=1: in the folds' own thread, never joblib workers (processes) beside a threaded server.
        return cross_val_predict(head, features, labels, cv=splitter, method=method, n_jobs=1)
