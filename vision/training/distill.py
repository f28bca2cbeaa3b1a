"""Knowledge distillation: a small student learns a bundle's answers (Hinton et al., 2015).

The student is any registry architecture at any input size, trained from scratch on the
teacher's training images and any unlabelled images, each seen as many strongly augmented
views (``vision.training.teacher``: the teacher's logits on them are computed once and cached).
The loss blends Hinton's soft targets with the labels::

    loss = w * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - w) * CE(label, softmax(s))

T^2 keeps the soft term's gradients at the hard term's scale whatever the temperature; views of
unlabelled images have no hard term. The result is an ordinary ``TrainResult``, saved through the
same recipe as any training (``vision.training.recipe.save_trained``): calibration, the
"unknown" detector, Grad-CAM, export and the Hub work on the student unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vision.bundle.store import Bundle
from vision.data.datasets import LabelledDataset, summarize
from vision.data.images import ImageSource, input_side, load_image, preprocess
from vision.errors import TrainingCancelledError
from vision.models.heads import LOGITS_LAYER
from vision.models.registry import get_spec
from vision.training.callbacks import ProgressCallback
from vision.training.config import DistillConfig, ProgressHook, TrainProgress, TrainResult
from vision.training.seeding import ShuffledArrays, seed_weights
from vision.training.teacher import TeacherViews, teacher_views


def distillation_loss(temperature: float, soft_weight: float, classes: int) -> Any:
    """A Keras loss on the student's logits; ``y_true`` is ``[one-hot label | teacher logits]``
    (an all-zero one-hot: no label, soft term only)."""

    def loss(y_true: Any, student_logits: Any) -> Any:
        hard, teacher = y_true[:, :classes], y_true[:, classes:]
        soft_targets = tf.nn.softmax(teacher / temperature)
        log_student = tf.nn.log_softmax(student_logits / temperature)
        kl = tf.reduce_sum(soft_targets * (tf.math.log(soft_targets + 1e-12) - log_student), axis=-1)
        cross_entropy = -tf.reduce_sum(hard * tf.nn.log_softmax(student_logits), axis=-1)
        return soft_weight * temperature ** 2 * kl + (1.0 - soft_weight) * cross_entropy

    return loss


def _student_inputs(views: TeacherViews, preprocessing: Any, classes: int) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.asarray(preprocess(views.images, preprocessing), np.float32)
    hard = np.zeros((len(views), classes), np.float32)
    labelled = views.labels >= 0
    hard[np.flatnonzero(labelled), views.labels[labelled]] = 1.0
    return inputs, np.concatenate([hard, views.logits], axis=1)


def distill(teacher: Bundle, dataset: LabelledDataset, config: DistillConfig | None = None,
            unlabelled: list[ImageSource] | None = None, progress: ProgressHook | None = None,
            cancel: threading.Event | None = None) -> TrainResult:
    """Train ``config.student`` to answer as ``teacher`` does, on ``dataset.train`` (labelled)
    and ``unlabelled`` images; ``dataset.val`` is left for the caller to evaluate on.

    Progress goes through the same ``TrainProgress`` as training: stage ``"features"`` while the
    teacher labels the views (``batch``/``batches`` count views), then ``"train"``.

    Raises:
        ValueError: the teacher's classes are not the dataset's.
        TrainingCancelledError: ``cancel`` was set; nothing is kept.
        UnknownModelError: ``config.student`` is not a registry architecture.
    """
    config = config or DistillConfig()
    if list(teacher.labels) != list(dataset.class_names):
        raise ValueError(f"the teacher's classes {teacher.labels} are not the dataset's {dataset.class_names}")
    spec = get_spec(config.student)
    size = config.input_size or spec.default_size
    preprocessing = spec.preprocessing(size)
    classes = len(dataset.class_names)
    started = time.perf_counter()

    def labelled_views(done: int, total: int) -> None:
        if progress:
            progress(TrainProgress(0, config.epochs, done, total, {}, {}, stage="features"))

    sources = list(dataset.train.sources()) + list(unlabelled or [])
    labels = list(dataset.train.labels) + [-1] * len(unlabelled or [])
    views = teacher_views(teacher, sources, labels, config.views, config.seed, labelled_views,
                          cancelled=lambda: cancel is not None and cancel.is_set())
    # The views are at the teacher's side; preprocessing resizes them to the student's.
    inputs, targets = _student_inputs(views, preprocessing, classes)
    val_inputs = _val_inputs(dataset, preprocessing) if len(dataset.val) else None

    # Seeded locally, never through the process's generators (a transfer student keeps its base).
    student = seed_weights(spec.builder(num_classes=classes, input_size=size), config.seed,
                           fresh=lambda layer: not spec.transfer or layer.name in (LOGITS_LAYER, "dropout"))
    logits_model = keras.Model(student.input, student.get_layer(LOGITS_LAYER).output)
    steps = -(-len(inputs) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=config.epochs * steps,
                                                      alpha=0.02)
    logits_model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                         loss=distillation_loss(config.temperature, config.soft_weight, classes))
    hook = ProgressCallback(config.epochs, steps, progress, cancel)
    callbacks: list[Any] = [hook]
    if val_inputs is not None:
        callbacks.insert(0, _ValidationAccuracy(student, val_inputs, np.asarray(dataset.val.labels)))
    logits_model.fit(ShuffledArrays(inputs, targets, config.batch_size, config.seed), epochs=config.epochs,
                     callbacks=callbacks, verbose=0)
    if hook.cancelled:
        raise TrainingCancelledError("distillation was cancelled; nothing was saved")
    history = {k: [float(v) for v in vs] for k, vs in logits_model.history.history.items()}
    # An uncompiled copy, as training hands back: the bundle holds weights, not optimizer state.
    trained = keras.Model.from_config(student.get_config())
    trained.set_weights(student.get_weights())
    made = {"distillation": {"teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint,
                             "labelled_views": len(views), "labelled_images": len(dataset.train),
                             "unlabelled_images": len(unlabelled or []), **config.to_dict()}}
    return TrainResult(trained, preprocessing, config.train_config(), history, len(history["loss"]) - 1,
                       time.perf_counter() - started, summarize(dataset).to_dict(), info=made)


def _val_inputs(dataset: LabelledDataset, preprocessing: Any) -> np.ndarray:
    side = input_side(preprocessing.size)
    return np.stack([np.asarray(preprocess(load_image(source, max_side=side), preprocessing), np.float32)
                     for source in dataset.val.sources()])


class _ValidationAccuracy(keras.callbacks.Callback):
    """The student's accuracy on the labelled validation images after each epoch: the curve
    the Train view draws (the loss alone says how well it copies the teacher, not the labels)."""

    def __init__(self, student: Any, inputs: np.ndarray, labels: np.ndarray) -> None:
        super().__init__()
        self.student, self.inputs, self.labels = student, inputs, labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            predicted = np.argmax(np.asarray(self.student(self.inputs, training=False)), axis=-1)
            logs["val_accuracy"] = float(np.mean(predicted == self.labels))
