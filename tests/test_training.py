"""Training behaviour: progress, cancellation, schedules, class weights, evaluation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vision.data.datasets import load_folder
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


def test_plateau_schedule_and_class_weights_train(shapes_folder):
    config = TrainConfig(model="resnet_small", input_size=32, epochs=2, batch_size=16,
                         schedule="plateau", class_weights=True, augment=False)
    result = train(load_folder(shapes_folder), config)
    assert len(result.history["loss"]) == 2
    assert np.isfinite(result.history["val_loss"]).all()


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
