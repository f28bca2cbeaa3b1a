"""Teachable-Machine-fast training: a new head on cached frozen-backbone features.

Every image goes through EfficientNet-Lite0 once per view (``vision.models.features``, cached by
content), a dropout + dense head trains on those 1280-number vectors in a second or two,
and the backbone and head are assembled into one ordinary Keras model: the registry's
``efficientnet_lite0`` architecture with the trained head's weights. The result is a
normal bundle that Grad-CAM, export and the Hub handle like any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight

from vision.data.datasets import LabelledDataset, summarize
from vision.errors import TrainingCancelledError
from vision.models.features import get_extractor
from vision.models.heads import LOGITS_LAYER, classification_head
from vision.models.registry import get_spec
from vision.training.callbacks import fit_outcome, training_callbacks
from vision.training.config import ProgressHook, TrainConfig, TrainProgress, TrainResult
from vision.training.objectives import check as check_objectives
from vision.training.objectives import class_weight_of, feature_batches, make_loss
from vision.training.objectives import metrics as objective_metrics
from vision.training.seeding import seed_weights
from vision.training.tensorboard import tensorboard_callbacks
from vision.trust.folds import out_of_fold

#: Mirrored copies help few-shot training (a webcam class seen from both sides) and cost an
#: extra pass per image, so they are used up to this many training images.
MIRROR_UP_TO = 200


def train_on_features(dataset: LabelledDataset, config: TrainConfig, progress: ProgressHook | None = None,
                      cancel: threading.Event | None = None) -> TrainResult:
    """Train the head of ``config.model`` (an architecture with ``cached_features``) and
    return a ``TrainResult`` whose model is backbone + head in one.

    Progress reports a ``"features"`` stage (images embedded) and then one update per epoch.

    Raises:
        TrainingCancelledError: ``cancel`` was set.
        CheckpointError: the backbone's weights package is missing or altered.
    """
    spec = get_spec(config.model)
    check_objectives(config, features=True)
    size = config.input_size or spec.default_size
    preprocessing = spec.preprocessing(size)
    summary = summarize(dataset)
    started = time.perf_counter()
    extractor, views = _extractor_and_views(dataset, config)
    total = len(dataset.train) + len(dataset.val)

    def embedded(done: int, _: int, offset: int = 0) -> None:
        if cancel is not None and cancel.is_set():
            raise TrainingCancelledError("training was cancelled; nothing was saved")
        if progress:
            progress(TrainProgress(0, config.epochs, offset + done, total, {}, {}, stage="features"))

    train_features = extractor.features(dataset.train.sources(), views, progress=embedded)
    val_features = extractor.features(dataset.val.sources(), progress=lambda d, n: embedded(d, n,
                                                                                            len(dataset.train)))[0]
    classes = len(dataset.class_names)
    steps = int(np.ceil(train_features.shape[0] * train_features.shape[1] / _batch_size(config)))
    stopper, hook = training_callbacks(config, steps, progress, cancel)
    head = fit_head(train_features, dataset.train.labels, classes, config, config.epochs,
                    summary.class_weights if config.class_weights else None,
                    validation=(val_features, dataset.val.labels),
                    callbacks=[stopper, hook, *tensorboard_callbacks(config)])
    history, best_epoch = fit_outcome(head, stopper, hook)

    model = spec.builder(num_classes=len(dataset.class_names), input_size=size, weights="imagenet")
    model.get_layer(LOGITS_LAYER).set_weights(head.get_layer(LOGITS_LAYER).get_weights())
    return TrainResult(model, preprocessing, config, history, best_epoch, time.perf_counter() - started,
                       summary.to_dict(), features=(train_features[0], val_features))


def fit_head(views: np.ndarray, labels: np.ndarray, classes: int, config: TrainConfig, epochs: int,
             class_weights: dict[int, float] | None = None,
             validation: tuple[np.ndarray, np.ndarray] | None = None, callbacks: Sequence[Any] = (),
             head: Any = None) -> Any:
    """A new head trained on cached features the fast path's way: the deployed head and every
    calibration fold's head come from here, so the folds behave as the model does.

    Args:
        views: features of shape (views, images, features): each view of an image is one example.
        labels: the images' class numbers.
        class_weights: per-class loss weights; None weighs every example alike.
        validation: (features, labels) that ``callbacks`` (early stopping) watch.
        head: an uncompiled Keras model from features to probabilities with a ``logits`` layer,
            whose random weights are drawn afresh here; None builds the fast path's own.
    """
    x = views.reshape(-1, views.shape[-1])
    y = np.tile(labels, len(views))
    head = _head(views.shape[-1], classes) if head is None else head
    seed_weights(head, config.seed)  # a local seed, never the process's
    # The logits start at zero (as torchvision's ViT head and BiT's fine-tuning start theirs): a
    # random start adds a random projection to every logit, which a few dozen steps on a few photos
    # do not train away; it decided which answers were wrong, and how sure, more than the photos did.
    logits = head.get_layer(LOGITS_LAYER)
    logits.set_weights([np.zeros_like(w) for w in logits.get_weights()])
    head.compile(optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
                 loss=make_loss(config), metrics=objective_metrics(), jit_compile=config.jit_compile)
    weights = class_weight_of(y, class_weights)
    batches = feature_batches(x, y, classes, _batch_size(config), config.mixing, config.seed, weights)
    if validation is not None:
        validation = (validation[0], keras.ops.one_hot(validation[1], classes))
    head.fit(batches, validation_data=validation, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return head


class FoldHead(ClassifierMixin, BaseEstimator):
    """A head trained by ``fit_head``, as a scikit-learn estimator: ``vision.trust.folds.out_of_fold``
    (sklearn's ``cross_val_predict``) trains its k copies, each from fresh weights, the way the
    model's own head was trained (optimiser, loss, class weights, batches).

    Which head: the fast path's (``layers`` None), or a copy of a model's own head from its
    serialized layers (``keras.layers.serialize``, from its first Dense layer to its softmax), for
    a model trained further whose head is not the fast path's.

    One row of ``X`` per image: its views' features side by side (``views`` of them), the
    original view first. ``decision_function`` answers from the original view, as the model does.
    """

    def __init__(self, config: TrainConfig | None = None, epochs: int = 20, views: int = 1,
                 cancelled: Callable[[], bool] | None = None, layers: list[dict[str, Any]] | None = None) -> None:
        self.config = config
        self.epochs = epochs
        self.views = views
        #: Polled before each fold's head trains (a plain function: scikit-learn deep-copies params).
        self.cancelled = cancelled
        self.layers = layers

    def fit(self, X: np.ndarray, y: np.ndarray) -> FoldHead:  # noqa: N803 (scikit-learn's names)
        """Train a head for ``epochs`` epochs (no early stopping: no validation split to watch),
        class-weighted as the config asks; returns ``self``.

        Raises:
            TrainingCancelledError: ``cancelled()`` returned True.
        """
        if self.cancelled is not None and self.cancelled():
            raise TrainingCancelledError("training was cancelled; nothing was saved")
        config = self.config or TrainConfig(model="efficientnet_lite0")
        self.classes_ = np.unique(y)
        labels = np.searchsorted(self.classes_, y)
        views = np.asarray(X, np.float32).reshape(len(X), self.views, -1).transpose(1, 0, 2)
        # The same balancing as ``summarize`` gives the deployed head: n / (classes * count).
        weights = (dict(enumerate(compute_class_weight("balanced", classes=np.arange(len(self.classes_)),
                                                       y=labels)))
                   if config.class_weights else None)
        head = None if self.layers is None else _copied_head(views.shape[-1], self.layers)
        head = fit_head(views, labels, len(self.classes_), config, self.epochs, weights, head=head)
        self.logits_ = keras.Model(head.inputs, head.get_layer(LOGITS_LAYER).output)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Logits of the original view (the first ``features`` columns of each row)."""
        original = np.asarray(X, np.float32)[:, :self.logits_.input_shape[-1]]
        return np.asarray(self.logits_(original, training=False), np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The winning class of each row (what scikit-learn requires of a classifier)."""
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def fast_head_out_of_fold_logits(dataset: LabelledDataset, config: TrainConfig, epochs: int,
                                 cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """Logits of every image of ``dataset.everything()`` (training images first, then validation
    ones), each from the fast path's head trained by ``fit_head`` for ``epochs`` epochs on the other
    folds' images, in the views the deployed head trained on. The features come from the frozen
    backbone's cache the training just filled (only the validation images' mirrored view, where
    used, is new). ``vision.training.further.own_head_out_of_fold_logits`` is the same for a model
    whose head is its own, on the features of the layers below that head.

    Raises:
        DatasetError: a class has fewer than 2 images.
        TrainingCancelledError: ``cancelled()`` returned True before a fold.
    """
    extractor, views = _extractor_and_views(dataset, config)
    everything = dataset.everything()
    features = extractor.features(everything.sources(), views)
    side_by_side = np.concatenate(list(features), axis=1)
    return out_of_fold(FoldHead(config, epochs, len(views), cancelled=cancelled), side_by_side, everything.labels,
                       "decision_function", seed=config.seed, purpose="calibrating on out-of-fold logits")


def _extractor_and_views(dataset: LabelledDataset, config: TrainConfig) -> tuple[Any, tuple[str, ...]]:
    """The frozen backbone at the config's input size, and the views the head trains on."""
    size = config.input_size or get_spec(config.model).default_size
    views = ("original", "mirrored") if config.augment and len(dataset.train) <= MIRROR_UP_TO else ("original",)
    return get_extractor(size), views


def _batch_size(config: TrainConfig) -> int:
    """Small batches: a few dozen examples still give the head several steps per epoch."""
    return min(config.batch_size, 16)


def _head(features: int, classes: int) -> Any:
    """The same head the assembled model ends in, on a features input."""
    inputs = keras.Input((features,), name="features")
    return keras.Model(inputs, classification_head(inputs, classes), name="head")


def _copied_head(features: int, layers: list[dict[str, Any]]) -> Any:
    """A model's head rebuilt from its serialized layers on a features input (weights not copied)."""
    x = inputs = keras.Input((features,), name="features")
    for layer in layers:
        x = keras.layers.deserialize(layer)(x)
    return keras.Model(inputs, x, name="head")
