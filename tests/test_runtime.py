"""Classifier: sorted top-k, same answers on every runtime and under concurrency, on LiteRT as
on tf.lite; large images decoded as the app decodes them; TFLite conversions at once leave
the process's stdout alone."""

from __future__ import annotations

import itertools
import sys
import threading

import numpy as np
import pytest

from vision.bundle.store import load_bundle
from vision.data.images import input_side, load_image
from vision.data.photos import example_photos, probe_photos
from vision.data.synthetic import make_shapes
from vision.defaults import SHAPES_MODEL
from vision.errors import InvalidImageError
from vision.models.serving import serving_model
from vision.runtime.inference import Classifier
from vision.runtime.tflite import TFLiteRunner, convert_to_tflite
from vision.ui.cache import get_classifier

from threads import run_together


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


# The comparison engine warns that it is deprecated: that is why LiteRT replaced it.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_litert_answers_exactly_as_tf_lite_did_on_the_package_photos():
    """The shapes model's flatbuffer (preprocessing compiled in) on LiteRT and on TF 2.19's
    tf.lite.Interpreter: the same bits for every example and probe photo, at every size."""
    bundle = load_bundle(SHAPES_MODEL)
    flatbuffer = convert_to_tflite(serving_model(bundle.model, bundle.detector), preprocessing=bundle.preprocessing)
    litert, tf_lite = TFLiteRunner(flatbuffer, engine="litert"), TFLiteRunner(flatbuffer, engine="tensorflow")
    assert type(litert.interpreter).__module__ == "ai_edge_litert.interpreter"
    assert type(tf_lite.interpreter).__module__.startswith("tensorflow.lite")
    photos = [load_image(path) for path in example_photos()] + probe_photos()
    assert len(photos) >= 20 and len({photo.shape for photo in photos}) >= 10
    for photo in photos:
        (new,), (old,) = litert(photo), tf_lite(photo)
        np.testing.assert_array_equal(new, old)


def test_large_images_are_decoded_as_the_app_decodes_them(classifier, rng):
    """Over the model's ``input_side`` an image is reduced while decoded (the app's classify
    and training do the same), so the CLI gives the app's answer and never holds it whole."""
    big = rng.integers(0, 256, (1600, 1300, 3), np.uint8)
    reduced = load_image(big, max_side=input_side(classifier.preprocessing.size))
    assert max(reduced.shape) < max(big.shape)
    np.testing.assert_array_equal(classifier.probabilities(big), classifier.probabilities(reduced))


def test_concurrent_callers_get_the_serial_answers(classifier, images):
    expected = [classifier.probabilities(image) for image in images]

    def worker() -> list[np.ndarray]:
        return [classifier.probabilities(image) for _ in range(5) for image in images]

    answers = run_together(*[worker] * 8)
    assert [len(answer) for answer in answers] == [5 * len(images)] * 8
    for answer in answers:
        for i, probabilities in enumerate(answer):
            np.testing.assert_allclose(probabilities, expected[i % len(images)], atol=1e-6)


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
    try:
        flatbuffers = run_together(*(lambda model=model: convert_to_tflite(model) for model in models))
    finally:
        assert sys.stdout is before and not sys.stdout.closed
    x = np.zeros((32, 32, 3), np.float32)
    for flatbuffer, model in zip(flatbuffers, models):
        np.testing.assert_allclose(TFLiteRunner(flatbuffer)(x)[0], np.asarray(model(x[None]))[0], atol=1e-5)
    assert capsys.readouterr().out == ""  # and the converters stayed quiet
