"""The data's own mistakes: likely label errors, near-duplicates and train/validation leaks.

Every image goes through the frozen EfficientNet-Lite0 backbone once (``vision.models.features``,
cached, so after fast training this costs nothing); k-fold logistic-regression heads on
those features give each image's out-of-fold class probabilities in well under a second;
cleanlab's ``Datalab`` then ranks label issues (from the out-of-fold probabilities) and
near-duplicates (from the features). cleanlab is the maintained standard for both; the
ranking is its own, not ours.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vision.data.datasets import LabelledDataset
from vision.errors import DatasetError, VisionError
from vision.models.features import get_extractor
from vision.trust.folds import FOLDS, out_of_fold

#: Neighbours cleanlab compares each image with for near-duplicates (its default), fewer when
#: the dataset has fewer other images.
NEIGHBOURS = 10
#: cleanlab's ``filter.find_label_issues`` hands its per-class arrays to its helpers through
#: module globals, even single-process: two audits at once in one process would mix them up.
_CLEANLAB = threading.Lock()


@dataclass
class LabelIssue:
    index: int
    source: Any  # a file path, or an in-memory image
    split: str  # "train" or "val"
    given: str
    suggested: str
    #: cleanlab's label quality: low means the given label is likely wrong.
    score: float
    flagged: bool


@dataclass
class DuplicateSet:
    indices: list[int]
    sources: list[Any]
    splits: list[str]

    @property
    def leak(self) -> bool:
        """The same picture on both sides of the train/validation split."""
        return len(set(self.splits)) > 1


@dataclass
class Audit:
    class_names: list[str]
    #: Every image, most likely mislabelled first.
    ranked: list[LabelIssue]
    duplicates: list[DuplicateSet]
    out_of_fold: np.ndarray = field(repr=False)

    @property
    def label_issues(self) -> list[LabelIssue]:
        """The images cleanlab flags as mislabelled, most likely first."""
        return [issue for issue in self.ranked if issue.flagged]

    @property
    def leaks(self) -> list[DuplicateSet]:
        return [group for group in self.duplicates if group.leak]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        issues = self.label_issues[:top] if top else self.label_issues
        return {
            "label_issues": [{"image": _name(i.source, i.index), "split": i.split, "given": i.given,
                              "suggested": i.suggested, "score": round(i.score, 4)} for i in issues],
            "near_duplicates": [{"images": [_name(s, j) for s, j in zip(g.sources, g.indices)],
                                 "splits": g.splits, "leak": g.leak} for g in self.duplicates],
        }


def _name(source: Any, index: int) -> str:
    """A file's path, or ``#index`` for an in-memory image."""
    return str(source) if isinstance(source, (str, Path)) else f"#{index}"


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int = FOLDS,
                              seed: int = 0) -> np.ndarray:
    """Each image's class probabilities from a head that never saw it (stratified k-fold
    logistic regression on unit-length features)."""
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn takes seconds to import

    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    return out_of_fold(LogisticRegression(C=10.0, max_iter=2000), unit, labels, "predict_proba", folds, seed,
                       purpose="auditing labels")


def audit_features(features: np.ndarray, labels: np.ndarray, class_names: list[str],
                   sources: Sequence[Any] | None = None, splits: Sequence[str] | None = None,
                   probabilities: np.ndarray | None = None) -> Audit:
    """Label issues and near-duplicates from features (one row per image) and labels.

    Args:
        probabilities: out-of-fold class probabilities of the same rows, when already computed
            (a few-shot training's calibration folds, ``Trust.out_of_fold``): the folds are then
            not trained again.
    """
    from cleanlab import Datalab  # lazy: takes seconds to import; only the label check runs it

    labels = np.asarray(labels, int)
    if len(labels) < 3:
        raise DatasetError(f"checking the labels needs at least 3 images; got {len(labels)}")
    sources = list(sources) if sources is not None else list(range(len(labels)))
    splits = list(splits) if splits is not None else ["train"] * len(labels)
    if probabilities is None:
        probabilities = out_of_fold_probabilities(features, labels)
    elif len(probabilities) != len(labels):
        raise ValueError(f"{len(probabilities)} out-of-fold rows for {len(labels)} images")
    # Zero-padded class numbers: Datalab orders classes lexicographically, as the
    # out-of-fold columns are ordered numerically.
    lab = Datalab(data={"label": [f"{label:06d}" for label in labels]}, label_name="label", verbosity=0)
    issue_types = {
        # n_jobs=1: by default cleanlab prunes in a multiprocessing Pool, which on Linux forks the
        # whole (threaded) server; a lock another thread held at the fork is never released in the
        # child, and the training hangs for good.
        # confident_learning: every image confidently predicted as another class than its label
        # (the confident joint's off-diagonal). cleanlab's default then prunes that count by the
        # estimated noise rate, which on a few photos a class rounds to 0: a brick filed under
        # grass among 6 a class, predicted brick at 0.97 out of fold, was not flagged.
        "label": {"clean_learning_kwargs": {"find_label_issues_kwargs": {
            "n_jobs": 1, "filter_by": "confident_learning"}}},
        # cleanlab's k must stay below the number of images (it refuses k >= N).
        "near_duplicate": {"k": min(NEIGHBOURS, len(labels) - 1)},
    }
    with _CLEANLAB, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(pred_probs=probabilities, features=np.asarray(features, np.float32),
                        issue_types=issue_types)
    missing = [name for name in issue_types if name not in lab.issue_summary["issue_type"].tolist()]
    if missing:  # cleanlab prints a check's failure and carries on without it
        raise VisionError(f"the data check could not run its {' and '.join(missing)} check on "
                          f"{len(labels)} images")
    found = lab.get_issues("label")
    ranked = [LabelIssue(int(i), sources[i], splits[i], class_names[labels[i]],
                         class_names[int(probabilities[i].argmax())], float(found["label_score"].iloc[i]),
                         bool(found["is_label_issue"].iloc[i]))
              for i in np.argsort(found["label_score"].to_numpy(), kind="stable")]
    duplicates, seen = [], set()
    near = lab.get_issues("near_duplicate")
    for i in np.flatnonzero(near["is_near_duplicate_issue"].to_numpy()):
        group = sorted({int(i), *(int(j) for j in near["near_duplicate_sets"].iloc[i])})
        if tuple(group) not in seen:
            seen.add(tuple(group))
            duplicates.append(DuplicateSet(group, [sources[j] for j in group], [splits[j] for j in group]))
    return Audit(list(class_names), ranked, duplicates, probabilities)


def audit_dataset(dataset: LabelledDataset, progress: Callable[[int, int], None] | None = None,
                  input_size: int = 224, probabilities: np.ndarray | None = None) -> Audit:
    """``audit_features`` on every image of ``dataset`` (train and validation), with
    features from the frozen EfficientNet-Lite0 backbone (cached per image).

    Args:
        probabilities: out-of-fold probabilities of ``dataset.everything()``'s images, when a
            training already computed them (``TrainedBundle.trust.out_of_fold``).
    """

    everything = dataset.everything()  # training images first, then validation ones
    sources = everything.sources()
    splits = ["train"] * len(dataset.train) + ["val"] * len(dataset.val)
    features = get_extractor(input_size).features(sources, progress=progress)[0]
    return audit_features(features, everything.labels, dataset.class_names, sources, splits, probabilities)
