"""Distillation: a small student learns a Lite0 head's answers on a few labelled texture patches,
beats the same student trained on those labels alone, and is an ordinary bundle."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vision.bundle.store import load_bundle
from vision.data.datasets import LabelledDataset, Split, load_folder
from vision.data.images import load_image, preprocess, resized
from vision.data.photos import write_texture_task
from vision.errors import TrainingCancelledError
from vision.runtime.inference import Classifier
from vision.training.config import DistillConfig, TrainConfig
from vision.training.distill import distill, distillation_loss
from vision.training.loop import fit_on_images
from vision.training.recipe import save_trained, train_bundle
from vision.training.teacher import teacher_views

#: Eight labelled 64 px patches a texture: a CNN from scratch learns nothing from them on its own.
#: Soft targets at temperature 2: measured on this task, held-out accuracy 0.75-0.90 at T 2 and
#: 0.67-0.73 at the default T 4 (two teachers, before and after the fast path's zero-start head).
STUDENT = DistillConfig(student="simple_cnn", input_size=32, views=16, epochs=15, batch_size=32, temperature=2.0)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    return write_texture_task(tmp_path_factory.mktemp("textures"), train_per_class=8, test_per_class=20, patch=64)


@pytest.fixture(scope="module")
def few_textures(task) -> LabelledDataset:
    return load_folder(task / "train")


@pytest.fixture(scope="module")
def held_out(task) -> Split:
    return load_folder(task / "test").everything()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, few_textures):
    """EfficientNet-Lite0's few-shot head on the textures (the fast path, at 128 px)."""
    out = tmp_path_factory.mktemp("teacher") / "textures"
    train_bundle(few_textures, TrainConfig(model="efficientnet_lite0", input_size=128), out)
    return load_bundle(out)


def _accuracy(model, preprocessing, split: Split) -> float:
    x = np.stack([np.asarray(preprocess(load_image(source), preprocessing)) for source in split.sources()])
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == split.labels))


@pytest.fixture(scope="module")
def distilled(teacher, few_textures):
    return distill(teacher, few_textures, STUDENT)


def test_the_loss_is_hintons_blend():
    classes, temperature = 3, 4.0
    teacher_logits = np.array([[2.0, 0.5, -1.0]], np.float32)
    hard = np.array([[0.0, 1.0, 0.0]], np.float32)
    y_true = tf.constant(np.concatenate([hard, teacher_logits], axis=1))
    soft_only = distillation_loss(temperature, 1.0, classes)
    # The same logits as the teacher: no soft loss; others: T^2 x KL at temperature T.
    assert float(soft_only(y_true, tf.constant(teacher_logits))[0]) == pytest.approx(0.0, abs=1e-6)
    student = np.array([[0.0, 1.0, 0.0]], np.float32)
    p, q = tf.nn.softmax(teacher_logits / temperature), tf.nn.softmax(student / temperature)
    kl = float(tf.reduce_sum(p * tf.math.log(p / q)))
    assert float(soft_only(y_true, tf.constant(student))[0]) == pytest.approx(temperature ** 2 * kl, rel=1e-4)
    hard_only = distillation_loss(temperature, 0.0, classes)
    ce = -float(tf.nn.log_softmax(student)[0, 1])
    assert float(hard_only(y_true, tf.constant(student))[0]) == pytest.approx(ce, rel=1e-5)
    # An unlabelled view (all-zero one-hot) has only the soft term.
    unlabelled = tf.constant(np.concatenate([np.zeros_like(hard), teacher_logits], axis=1))
    assert float(hard_only(unlabelled, tf.constant(student))[0]) == 0.0


def test_distillation_beats_the_same_student_on_labels_alone(teacher, few_textures, held_out, distilled):
    alone = fit_on_images(few_textures, TrainConfig(model="simple_cnn", input_size=32, epochs=STUDENT.epochs,
                                                    batch_size=8, weights=None, patience=STUDENT.epochs))
    taught = _accuracy(distilled.model, distilled.preprocessing, held_out)
    untaught = _accuracy(alone.model, alone.preprocessing, held_out)
    print(f"\nheld-out accuracy: distilled {taught:.3f}, labels alone {untaught:.3f}, "
          f"teacher {_accuracy(teacher.model, teacher.preprocessing, held_out):.3f}")
    assert taught >= untaught + 0.25 and taught >= 0.7
    assert distilled.model.count_params() < teacher.model.count_params() / 2
    assert distilled.preprocessing.size == (32, 32)
    assert len(distilled.history["loss"]) == STUDENT.epochs and "val_accuracy" in distilled.history


def test_the_student_is_an_ordinary_bundle(tmp_path, teacher, few_textures, held_out, distilled):
    saved = save_trained(distilled, few_textures, tmp_path / "student")
    bundle = load_bundle(saved.path)
    made = bundle.info["distillation"]
    assert made["teacher"] == teacher.name and made["labelled_views"] == len(few_textures.train) * STUDENT.views
    assert made["temperature"] == STUDENT.temperature and bundle.info["architecture"] == "simple_cnn"
    assert bundle.detector is not None and bundle.labels == teacher.labels
    assert '"distillation"' in (saved.path / "README.md").read_text()  # the model card says how it was made
    answer = Classifier(bundle).classify(held_out.sources()[0])
    assert answer.predictions[0].label in teacher.labels


def test_the_teachers_views_are_computed_once(teacher, few_textures):
    sources, labels = few_textures.train.sources(), few_textures.train.labels
    start = time.perf_counter()
    first = teacher_views(teacher, sources, labels, views=STUDENT.views, seed=STUDENT.seed)
    again = teacher_views(teacher, sources, labels, views=STUDENT.views, seed=STUDENT.seed)
    assert again is first and time.perf_counter() - start < 5  # the fixture's distillation made them
    # The first view of each image is the image itself, at the teacher's size.
    assert np.array_equal(first.images[0], np.round(resized(load_image(sources[0]), (128, 128))).astype(np.uint8))
    assert not np.array_equal(first.images[1], first.images[0])
    np.testing.assert_array_equal(first.labels, np.repeat(labels, STUDENT.views))
    other = teacher_views(teacher, sources, labels, views=2, seed=STUDENT.seed)
    assert other is not first and len(other) == 2 * len(labels)


def test_mismatched_classes_and_cancel_fail_clearly(teacher, few_textures):
    wrong = LabelledDataset(["a", "b", "c"], few_textures.train, few_textures.val, source="x")
    with pytest.raises(ValueError, match="the teacher's classes"):
        distill(teacher, wrong, STUDENT)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelledError):
        distill(teacher, few_textures, DistillConfig(student="simple_cnn", input_size=32, views=3, epochs=2),
                cancel=cancel)


def test_the_view_cache_never_holds_more_than_its_byte_ceiling(teacher, few_textures, monkeypatch):
    """The views are kept by bytes, not by entries: a new entry pushes out the least recently used
    ones until the total fits, and an entry larger than the ceiling is handed back but not kept."""
    from vision.training import teacher as teachers

    assert teachers._CACHE._entries.maxsize == teachers.CACHE_BYTES
    sources, labels = few_textures.train.sources(), few_textures.train.labels
    per_view = len(labels) * (128 * 128 * 3 + len(teacher.labels) * 4 + 8)  # uint8 views, float logits, labels
    cache = teachers._ViewCache(5 * per_view)  # room for 5 views a photo, not 2 + 4
    monkeypatch.setattr(teachers, "_CACHE", cache)

    def held() -> int:
        return sum(views.nbytes for views in cache._entries.values())

    two = teacher_views(teacher, sources, labels, views=2)
    assert teacher_views(teacher, sources, labels, views=2) is two and held() == two.nbytes
    four = teacher_views(teacher, sources, labels, views=4)
    assert held() == four.nbytes <= 5 * per_view  # the 2-view entry went to make room
    assert teacher_views(teacher, sources, labels, views=4) is four
    assert teacher_views(teacher, sources, labels, views=2) is not two
    six = teacher_views(teacher, sources, labels, views=6)  # over the ceiling on its own
    assert len(six) == 6 * len(labels) and teacher_views(teacher, sources, labels, views=6) is not six
    assert held() <= 5 * per_view and cache.nbytes == held()
