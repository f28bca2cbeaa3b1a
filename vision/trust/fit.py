"""After training: calibrate the confidence and fit the "unknown" detector, once, on the
pooled features and logits of the training and validation images.

The temperature is fitted on the validation split when it has ``MIN_CALIBRATION_IMAGES``;
below that (ten photos per class), on out-of-fold logits of every image when the training
could give them (``vision.training.fast.fast_head_out_of_fold_logits``, or
``vision.training.further.own_head_out_of_fold_logits``), and not at all otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vision.data.datasets import LabelledDataset, Split, make_pipeline
from vision.data.images import Preprocessing, resized
from vision.data.photos import background_photos
from vision.models.features import get_extractor
from vision.models.heads import LOGITS_LAYER
from vision.models.serving import feature_model
from vision.trust.calibration import OUT_OF_FOLD, Calibration, calibrate, fold_temperature, softmax
from vision.trust.ood import Detector, fit_knn

#: Fewer validation images than this and the temperature is not fitted on them: the fit
#: would follow the noise of a handful of answers (out-of-fold logits of every image are
#: used instead where there are some).
MIN_CALIBRATION_IMAGES = 20


@dataclass
class Trust:
    calibration: Calibration | None
    detector: Detector
    #: Validation probabilities after calibration (what the saved model now gives), and
    #: the labels of the images they are for.
    val_probabilities: np.ndarray
    val_labels: np.ndarray
    #: Calibrated out-of-fold probabilities of every image (training images first, then
    #: validation ones) when the temperature was fitted on them: the label audit can rank these
    #: instead of training its own folds (``audit_dataset(..., probabilities=...)``).
    out_of_fold: np.ndarray | None = None


def features_and_logits(model: Any, split: Split, preprocessing: Preprocessing,
                        batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled features, logits and labels of the images of ``split`` that decode (the
    pipeline drops a file that fails), without augmentation."""
    extract = feature_model(model)
    features, logits, labels = [], [], []
    for batch, batch_labels in make_pipeline(split, preprocessing, batch_size):
        f, z = extract(batch, training=False)
        features.append(np.asarray(f))
        logits.append(np.asarray(z))
        labels.append(np.asarray(batch_labels))
    if not features:
        return np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), np.zeros(0, int)
    return np.concatenate(features), np.concatenate(logits), np.concatenate(labels)


def fit_trust(model: Any, dataset: LabelledDataset, preprocessing: Preprocessing,
              features: tuple[np.ndarray, np.ndarray] | None = None,
              out_of_fold: np.ndarray | None = None) -> Trust:
    """Fit the temperature and fold it into ``model`` (in place), then fit a ``knn-cosine``
    detector on the training images' features.

    The temperature is fitted on the validation split when it holds ``MIN_CALIBRATION_IMAGES``,
    else on ``out_of_fold`` when given, else not at all.

    Args:
        features: (train, validation) pooled features when already computed (the fast
            path's cached features, still valid when the backbone was not fine-tuned).
        out_of_fold: logits of every image of ``dataset.everything()`` from k-fold heads trained
            as the model's head was (``vision.training.fast.fast_head_out_of_fold_logits``).
    """
    photos = background_photos()
    if features is None:
        train_features, _, _ = features_and_logits(model, dataset.train, preprocessing)
        val_features, val_logits, labels = features_and_logits(model, dataset.val, preprocessing)
        background = features_and_logits(model, Split(np.zeros(len(photos), int), images=np.stack(
            [resized(photo, preprocessing.size, preprocessing.resize) for photo in photos])),
            preprocessing)[0] if photos else None
    else:
        train_features, val_features = features
        kernel, bias = model.get_layer(LOGITS_LAYER).get_weights()
        val_logits, labels = val_features @ kernel + bias, np.asarray(dataset.val.labels)
        # The frozen backbone's cache keeps these between trainings.
        background = get_extractor(preprocessing.size[0]).features(photos)[0] if photos else None
    calibration, out_of_fold_probabilities = None, None
    if len(labels) >= MIN_CALIBRATION_IMAGES:
        calibration = calibrate(val_logits, labels)
    elif out_of_fold is not None:
        everything = dataset.everything().labels
        calibration = calibrate(out_of_fold, everything, OUT_OF_FOLD)
        out_of_fold_probabilities = softmax(out_of_fold, calibration.temperature)
    if calibration is not None:
        fold_temperature(model, calibration.temperature)
    temperature = calibration.temperature if calibration else 1.0
    return Trust(calibration, fit_knn(train_features, val_features, background), softmax(val_logits, temperature),
                 labels, out_of_fold_probabilities)

