"""Losses and mixing change training the way they claim, on the imbalanced digits (real data)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from vision.data.digits import RARE, TEST_PER_CLASS, imbalanced_digits
from vision.data.images import preprocess
from vision.training.config import TrainConfig
from vision.training.loop import fit_on_images
from vision.training.objectives import check, feature_batches, mixed_batches

BASE = TrainConfig(model="simple_cnn", input_size=16, epochs=6, batch_size=32, augment=False, patience=6,
                   learning_rate=3e-3, class_weights=False)


@pytest.fixture(scope="module")
def digits():
    return imbalanced_digits(rare_fraction=0.1)


@pytest.fixture(scope="module")
def trained(digits):
    """One model per option, trained once for the module: name -> (result, test probabilities)."""
    dataset, test = digits
    options = {"plain": {"class_weights": False}, "weights": {"class_weights": True}, "focal": {"loss": "focal"},
               "smoothing": {"label_smoothing": 0.2}, "mixup": {"mixing": "mixup"}}
    out = {}
    for name, changes in options.items():
        result = fit_on_images(dataset, dataclasses.replace(BASE, **changes))
        x = np.asarray(preprocess(test.images, result.preprocessing))
        out[name] = (result, np.asarray(result.model.predict(x, verbose=0)))
    return out


def test_the_task_is_imbalanced_with_a_balanced_test(digits):
    dataset, test = digits
    counts = np.bincount(np.concatenate([dataset.train.labels, dataset.val.labels]))
    assert counts.max() / counts.min() >= 8 and np.sum(counts <= counts.max() * 0.15) >= RARE
    assert np.all(np.bincount(test.labels) == TEST_PER_CLASS)
    assert dataset.train.images.dtype == np.uint8 and dataset.train.images.shape[1:] == (8, 8, 3)


def _rare(digits) -> np.ndarray:
    dataset, _ = digits
    counts = np.bincount(np.concatenate([dataset.train.labels, dataset.val.labels]))
    return np.argsort(counts)[:RARE]


def test_class_weights_make_the_rare_classes_found_more_often(digits, trained):
    _, test = digits
    rare = _rare(digits)
    recall = {name: np.mean(np.isin(np.argmax(p, 1)[np.isin(test.labels, rare)], rare))
              for name, (_, p) in trained.items() if name in ("plain", "weights")}
    assert recall["weights"] > recall["plain"] + 0.05, recall


def test_label_smoothing_and_focal_loss_stop_pushing_answers_to_certainty(trained):
    confidence = {name: float(np.mean(p.max(axis=1))) for name, (_, p) in trained.items()}
    # Smoothing caps the target at 1 - 0.2 + 0.2 / 10; focal loss stops rewarding easy examples.
    assert confidence["smoothing"] < confidence["plain"] - 0.03, confidence
    assert confidence["focal"] < confidence["plain"] - 0.03, confidence
    assert confidence["mixup"] < confidence["plain"], confidence


def test_mixup_and_cutmix_batches_are_mixtures_with_matching_labels():
    images = np.zeros((8, 16, 16, 3), np.float32)
    for i in range(8):
        images[i] = i * 10.0
    labels = tf.one_hot(np.arange(8), 8)
    batches = tf.data.Dataset.from_tensors((images, labels))
    mixed_images, mixed_labels = next(iter(mixed_batches(batches, "mixup", seed=1)))
    mixed_images, mixed_labels = np.asarray(mixed_images), np.asarray(mixed_labels)
    assert np.allclose(mixed_labels.sum(1), 1.0) and (mixed_labels.max(1) < 1.0).any()
    # A MixUp image is its label's mix of the two flat images: value = sum_k label_k * 10 k.
    np.testing.assert_allclose(mixed_images[:, 0, 0, 0], mixed_labels @ (np.arange(8) * 10.0), rtol=1e-4)
    cut_images, cut_labels = (np.asarray(t) for t in next(iter(mixed_batches(batches, "cutmix", seed=1))))
    for image, label in zip(cut_images, cut_labels):
        # CutMix pastes a patch: each pixel is one of the two images, and the label weights are
        # about the areas they cover (Keras weighs by its drawn ratio, measured up to ~3 % off the
        # box it pastes after rounding to pixels).
        values, areas = np.unique(image[..., 0], return_counts=True)
        assert len(values) <= 2
        shares = {int(round(v / 10)): a / image[..., 0].size for v, a in zip(values, areas)}
        for k, share in shares.items():
            assert label[k] == pytest.approx(share, abs=0.05)


def test_feature_mixup_mixes_vectors_and_labels_alike():
    x = np.eye(6, dtype=np.float32) * 3.0
    y = np.arange(6)
    features, labels = next(iter(feature_batches(x, y, 6, batch_size=6, mixing="mixup", seed=3)))
    np.testing.assert_allclose(np.asarray(features), 3.0 * np.asarray(labels), rtol=1e-5)
    assert (np.asarray(labels).max(1) < 0.999).any()


def test_bad_choices_fail_clearly():
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose one of: crossentropy, focal"):
        check(dataclasses.replace(BASE, loss="hinge"))
    with pytest.raises(ValueError, match="unknown mixing 'mosaic'"):
        check(dataclasses.replace(BASE, mixing="mosaic"))
    with pytest.raises(ValueError, match="CutMix pastes image patches"):
        check(dataclasses.replace(BASE, mixing="cutmix"), features=True)
