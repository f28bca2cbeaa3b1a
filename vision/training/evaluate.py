"""Metrics: accuracy, per-class precision/recall/F1, macro F1 and the confusion matrix
(``vision.plots`` draws them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vision.data.datasets import Split, make_pipeline
from vision.data.images import Preprocessing
from vision.errors import DatasetError
from vision.timing import median_ms
from vision.trust.calibration import expected_calibration_error


@dataclass
class Evaluation:
    labels: list[str]
    y_true: np.ndarray
    probabilities: np.ndarray  # (N, classes)
    confusion: np.ndarray  # rows: true class, columns: predicted class

    @property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.confusion.sum(), 1))

    def per_class(self) -> dict[str, dict[str, float]]:
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        precision = np.divide(tp, cm.sum(axis=0), out=np.zeros_like(tp), where=cm.sum(axis=0) > 0)
        recall = np.divide(tp, cm.sum(axis=1), out=np.zeros_like(tp), where=cm.sum(axis=1) > 0)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0)
        return {
            label: {"precision": float(precision[i]), "recall": float(recall[i]),
                    "f1": float(f1[i]), "support": int(cm[i].sum())}
            for i, label in enumerate(self.labels)
        }

    @property
    def macro_f1(self) -> float:
        return float(np.mean([m["f1"] for m in self.per_class().values()]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 5),
            "macro_f1": round(self.macro_f1, 5),
            "per_class": self.per_class(),
            "confusion_matrix": self.confusion.tolist(),
            "samples": int(self.confusion.sum()),
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def evaluation_from_probabilities(labels: list[str], y_true: np.ndarray, probabilities: np.ndarray) -> Evaluation:
    y_true = np.asarray(y_true, np.int64)
    cm = confusion_matrix(y_true, probabilities.argmax(axis=1), len(labels))
    return Evaluation(list(labels), y_true, probabilities, cm)


def evaluate_model(model: Any, split: Split, preprocessing: Preprocessing, labels: list[str],
                   batch_size: int = 64) -> Evaluation:
    """Run ``model`` over ``split`` (no augmentation) and compute every metric."""
    dataset = make_pipeline(split, preprocessing, batch_size)
    y_true, probs = [], []
    for images, targets in dataset:
        probs.append(np.asarray(model(images, training=False)))
        y_true.append(targets.numpy())
    return evaluation_from_probabilities(labels, np.concatenate(y_true), np.concatenate(probs))


def evaluate_classifier(classifier: Any, split: Split, labels: list[str], progress: Any = None) -> Evaluation:
    """Score a ``vision.runtime.inference.Classifier`` on ``split`` one image at a time, through
    the same fast path that serves predictions (``progress`` wraps the iteration, e.g. tqdm)."""
    sources = split.sources()
    items = progress(sources) if progress else sources
    probabilities = np.stack([classifier.probabilities(source) for source in items])
    return evaluation_from_probabilities(labels, split.labels, probabilities)


#: The Models view's side-by-side table (``compare_classifiers``).
COMPARE_COLUMNS = ("model", "accuracy", "macro F1", "ECE", "ms / image", "recall per class")


def compare_classifiers(classifiers: dict[str, Any], split: Split, labels: list[str],
                        progress: Any = None) -> list[list[Any]]:
    """One ``COMPARE_COLUMNS`` row per named ``vision.runtime.inference.Classifier``, each scored
    on the same ``split`` (whose classes are ``labels``) through its serving path.

    Models may list their classes in any order (Teachable Machine keeps the order they were
    made in): each is matched to ``labels`` by name.

    Raises:
        DatasetError: a model lacks one of the dataset's classes, or has others.
    """
    rows = []
    for name, classifier in classifiers.items():
        if sorted(classifier.labels) != sorted(labels):
            raise DatasetError(f"'{name}' knows {', '.join(classifier.labels)}; the images are of "
                               f"{', '.join(labels)}: compare models on images of their own classes")
        order = [classifier.labels.index(label) for label in labels]
        evaluation = evaluate_classifier(classifier, split, labels, progress)
        evaluation = evaluation_from_probabilities(labels, split.labels, evaluation.probabilities[:, order])
        first = split.sources()[0]
        ms = median_ms(lambda classifier=classifier: classifier.probabilities(first), runs=10, warmup=2)
        recall = ", ".join(f"{label} {m['recall']:.0%}" for label, m in evaluation.per_class().items())
        rows.append([name, round(evaluation.accuracy, 4), round(evaluation.macro_f1, 4),
                     round(expected_calibration_error(evaluation.probabilities, evaluation.y_true), 4),
                     round(ms, 2), recall])
    return rows
