"""Training behaviour: progress, cancellation, schedules, class weights, evaluation."""

from __future__ import annotations

import dataclasses
import shutil
import threading

import numpy as np
import pytest

from vision.data.datasets import load_folder, summarize
from vision.errors import TrainingCancelledError
from vision.plots import plot_confusion, plot_history
from vision.training.config import TrainConfig
from vision.training.evaluate import evaluation_from_probabilities
from vision.training.recipe import train


def test_progress_hook_sees_every_batch_and_epoch(shapes_folder):
    seen = []
    config = TrainConfig(model="simple_cnn", input_size=32, epochs=2, batch_size=16, patience=5)
    result = train(load_folder(shapes_folder), config, progress=seen.append)
    epoch_ends = [p for p in seen if p.epoch_end]
    assert [p.epoch for p in epoch_ends] == [0, 1]
    assert len(seen) == 2 * 2 + 2  # 32 images / 16 per batch, two epochs, plus epoch ends
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert epoch_ends[-1].fraction == 1.0


def test_cancel_stops_within_a_batch_or_two(shapes_folder):
    cancel = threading.Event()
    batches = []

    def on_progress(progress):
        batches.append(progress)
        cancel.set()

    config = TrainConfig(model="simple_cnn", input_size=32, epochs=50, batch_size=8)
    with pytest.raises(TrainingCancelledError, match="cancelled"):
        train(load_folder(shapes_folder), config, progress=on_progress, cancel=cancel)
    # Keras may finish the step already queued; 50 epochs would be 200 batches.
    assert len([b for b in batches if not b.epoch_end]) <= 2


def test_plateau_schedule_halves_the_learning_rate_when_validation_stalls(shapes_folder):
    # A rate too small to move the validation loss: every epoch after the first is a plateau.
    config = TrainConfig(model="simple_cnn", input_size=32, epochs=4, batch_size=16, learning_rate=1e-9,
                         schedule="plateau", patience=3, augment=False)  # plateau patience: 1 epoch
    result = train(load_folder(shapes_folder), config)
    rates = result.history["learning_rate"]
    assert len(rates) == 4 and rates[0] == pytest.approx(1e-9)
    assert rates[-1] <= rates[0] / 4  # halved after epochs 2 and 3 (the log shows the rate an epoch ran at)


def test_class_weights_change_what_is_learned(shapes_folder, tmp_path):
    imbalanced = tmp_path / "imbalanced"
    shutil.copytree(shapes_folder, imbalanced)
    for extra in sorted((imbalanced / "train" / "circle").iterdir())[2:]:
        extra.unlink()  # 2 circles against 8 of each other shape
    dataset = load_folder(imbalanced)
    weights = summarize(dataset).class_weights
    assert weights[dataset.class_names.index("circle")] > 2 * weights[dataset.class_names.index("square")]
    config = TrainConfig(model="simple_cnn", input_size=32, epochs=1, batch_size=16, augment=False,
                         class_weights=False)
    plain = train(dataset, config).model.get_weights()
    weighted = train(dataset, dataclasses.replace(config, class_weights=True)).model.get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, weighted)) > 1e-4


def test_same_seed_same_weights(shapes_folder):
    config = TrainConfig(model="simple_cnn", input_size=32, epochs=1, batch_size=16, augment=False)
    first = train(load_folder(shapes_folder), config).model.get_weights()
    second = train(load_folder(shapes_folder), config).model.get_weights()
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_metrics_from_a_known_confusion():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 0])
    probabilities = np.eye(3)[predicted]
    evaluation = evaluation_from_probabilities(["a", "b", "c"], y_true, probabilities)
    assert evaluation.confusion.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert evaluation.accuracy == pytest.approx(4 / 6)
    per_class = evaluation.per_class()
    assert per_class["a"]["precision"] == pytest.approx(2 / 3)
    assert per_class["a"]["recall"] == pytest.approx(2 / 3)
    assert per_class["b"]["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert per_class["c"]["f1"] == 0.0
    assert evaluation.macro_f1 == pytest.approx(np.mean([m["f1"] for m in per_class.values()]))
    picture = plot_confusion(evaluation)
    assert picture.size[0] > 200 and len(set(picture.getdata())) > 10
    curves = plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]})
    assert curves.size[0] > 400
