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
from typing import Any

import keras
import numpy as np

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
from vision.training.tensorboard import tensorboard_callbacks

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
    keras.utils.set_random_seed(config.seed)
    summary = summarize(dataset)
    started = time.perf_counter()
    extractor = get_extractor(size)
    views = ("original", "mirrored") if config.augment and len(dataset.train) <= MIRROR_UP_TO else ("original",)
    total = len(dataset.train) + len(dataset.val)

    def embedded(done: int, _: int, offset: int = 0) -> None:
        if cancel is not None and cancel.is_set():
            raise TrainingCancelledError("training was cancelled; nothing was saved")
        if progress:
            progress(TrainProgress(0, config.epochs, offset + done, total, {}, {}, stage="features"))

    train_features = extractor.features(dataset.train.sources(), views, progress=embedded)
    val_features = extractor.features(dataset.val.sources(), progress=lambda d, n: embedded(d, n,
                                                                                            len(dataset.train)))[0]
    x = train_features.reshape(-1, train_features.shape[-1])
    y = np.tile(dataset.train.labels, len(views))

    classes = len(dataset.class_names)
    head = _head(train_features.shape[-1], classes)
    batch_size = min(config.batch_size, 16)
    steps = int(np.ceil(len(x) / batch_size))
    head.compile(optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
                 loss=make_loss(config), metrics=objective_metrics(), jit_compile=config.jit_compile)
    stopper, hook = training_callbacks(config, steps, progress, cancel)
    weights = class_weight_of(y, summary.class_weights if config.class_weights else None)
    batches = feature_batches(x, y, classes, batch_size, config.mixing, config.seed, weights)
    head.fit(batches, validation_data=(val_features, keras.ops.one_hot(dataset.val.labels, classes)),
             epochs=config.epochs, callbacks=[stopper, hook, *tensorboard_callbacks(config)], verbose=0)
    history, best_epoch = fit_outcome(head, stopper, hook)

    model = spec.builder(num_classes=len(dataset.class_names), input_size=size, weights="imagenet")
    model.get_layer(LOGITS_LAYER).set_weights(head.get_layer(LOGITS_LAYER).get_weights())
    return TrainResult(model, preprocessing, config, history, best_epoch, time.perf_counter() - started,
                       summary.to_dict(), features=(train_features[0], val_features))


def _head(features: int, classes: int) -> Any:
    """The same head the assembled model ends in, on a features input."""
    inputs = keras.Input((features,), name="features")
    return keras.Model(inputs, classification_head(inputs, classes), name="head")
