"""Classifier: sorted top-k, same answers on every runtime and under concurrency; TFLite
conversions at once leave the process's stdout alone."""

from __future__ import annotations

import itertools
import sys
import threading

import numpy as np
import pytest

from vision.bundle.store import load_bundle
from vision.data.synthetic import make_shapes
from vision.errors import InvalidImageError
from vision.runtime.inference import Classifier
from vision.runtime.tflite import TFLiteRunner, convert_to_tflite
from vision.ui.cache import get_classifier


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    return Classifier.from_path(tiny_bundle)


@pytest.fixture(scope="module")
def images():
    return list(make_shapes(per_class=3, size=40, seed=9).images)


def test_predict_is_sorted_top_k_over_the_labels(classifier, images):
    predictions = classifier.predict(images[0], top_k=3)
    assert len(predictions) == 3
    assert [p.probability for p in predictions] == sorted((p.probability for p in predictions), reverse=True)
    assert {p.label for p in predictions} <= set(classifier.labels)
    full = classifier.predict(images[0], top_k=99)
    assert len(full) == len(classifier.labels)
    assert sum(p.probability for p in full) == pytest.approx(1.0, abs=1e-5)


def test_fast_path_matches_keras(classifier, images, tiny_bundle):
    assert classifier.runtime == "tflite"
    model = load_bundle(tiny_bundle).model
    for image in images[:4]:
        x = classifier.prepare(image)
        np.testing.assert_allclose(classifier.probabilities(image), np.asarray(model(x))[0], atol=1e-5)


def test_batch_matches_single_and_tf_runtime_matches_tflite(classifier, images, tiny_bundle):
    batch = classifier.predict_batch(images, top_k=1, batch_size=5)
    single = [classifier.predict(image, top_k=1) for image in images]
    assert [b[0].label for b in batch] == [s[0].label for s in single]
    np.testing.assert_allclose([b[0].probability for b in batch], [s[0].probability for s in single], atol=1e-5)
    tf_runtime = Classifier.from_path(tiny_bundle, runtime="tf")
    assert tf_runtime.runtime == "tf"
    np.testing.assert_allclose(tf_runtime.probabilities(images[1]), classifier.probabilities(images[1]), atol=1e-5)


def test_concurrent_callers_get_the_serial_answers(classifier, images):
    expected = [classifier.probabilities(image) for image in images]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(worker_id: int) -> None:
        try:
            for round_ in range(5):
                for i, image in enumerate(images):
                    results[(worker_id, round_ * 100 + i)] = classifier.probabilities(image)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 8 * 5 * len(images)
    for (_, key), probabilities in results.items():
        np.testing.assert_allclose(probabilities, expected[key % 100], atol=1e-6)


def test_bad_input_raises_a_vision_error(classifier):
    with pytest.raises(InvalidImageError):
        classifier.predict(b"not an image")


def test_classifiers_are_cached_per_bundle(tiny_bundle):
    assert get_classifier(tiny_bundle) is get_classifier(tiny_bundle)


def test_two_tflite_conversions_at_once_leave_stdout_alone(tiny_bundle, monkeypatch, capsys):
    """Both converters run at the same time, and the first to start finishes first: the order
    in which two overlapping ``redirect_stdout`` blocks leave ``sys.stdout`` on a closed devnull."""
    from tensorflow.lite.python.lite import TFLiteKerasModelConverterV2

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # put back after the test, whatever happens
    before = sys.stdout
    convert = TFLiteKerasModelConverterV2.convert
    order, both_in, first_done = itertools.count(), threading.Barrier(2, timeout=60), threading.Event()

    def overlapping(converter):  # runs where the conversion's quieting is in force
        turn = next(order)
        both_in.wait()
        if turn == 1:
            first_done.wait(timeout=60)
        try:
            return convert(converter)
        finally:
            if turn == 0:
                first_done.set()

    monkeypatch.setattr(TFLiteKerasModelConverterV2, "convert", overlapping)
    models = [load_bundle(tiny_bundle).model for _ in range(2)]
    flatbuffers, errors = [None, None], []

    def worker(index: int) -> None:
        try:
            flatbuffers[index] = convert_to_tflite(models[index])
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sys.stdout is before and not sys.stdout.closed
    assert not errors
    x = np.zeros((32, 32, 3), np.float32)
    for flatbuffer, model in zip(flatbuffers, models):
        np.testing.assert_allclose(TFLiteRunner(flatbuffer)(x)[0], np.asarray(model(x[None]))[0], atol=1e-5)
    assert capsys.readouterr().out == ""  # and the converters stayed quiet
