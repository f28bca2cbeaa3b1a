"""Few-shot training on real photos: cached EfficientNet-Lite0 features and a new head,
through the CLI and through the app, saved as one ordinary Keras model.

The task: patches of scikit-image's brick, grass and gravel photos, training patches from
the top half of each photo and test patches from the bottom half (disjoint pixels).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from vision.cli import main
from vision.data.photos import TEXTURES, example_photos

from conftest import texture_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_bundle(task, tmp_path_factory) -> Path:
    """Trained by the CLI with its defaults: the fast path is the default."""
    out = tmp_path_factory.mktemp("bundles") / "textures"
    assert main(["train", str(task / "train"), "--out", str(out), "--epochs", "15"]) == 0
    return out


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    return texture_task(tmp_path_factory, train_per_class=10)


def test_the_cli_trains_few_shot_on_real_photos(fast_bundle, task, capsys):
    info = json.loads((fast_bundle / "vision.json").read_text())
    assert info["architecture"] == "efficientnet_lite0" and info["labels"] == list(TEXTURES)
    # The registry entry's preprocessing travels in the bundle: (pixel - 127) / 128 at 224 px.
    assert info["preprocessing"]["size"] == [224, 224]
    assert info["preprocessing"]["scale"] == pytest.approx(1 / 128)
    assert info["preprocessing"]["offset"] == pytest.approx(-127 / 128)
    assert (fast_bundle / "training_curves.png").is_file() and (fast_bundle / "confusion_matrix.png").is_file()

    capsys.readouterr()
    assert main(["evaluate", str(task / "test"), "--all", "--model", str(fast_bundle)]) == 0
    report = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy ([\d.]+)", report).group(1))
    assert "on 30 images (all of it)" in report
    assert accuracy >= 0.9, report


def test_few_shot_training_records_a_k_fold_temperature_and_a_reliability_picture(fast_bundle):
    """Six validation images are too few to fit a temperature on: it is fitted on the out-of-fold
    logits of k-fold heads over all 30 photos, recorded, drawn and described."""
    calibration = json.loads((fast_bundle / "vision.json").read_text())["calibration"]
    assert calibration["method"] == "k-fold out-of-fold" and calibration["images"] == 30
    # Recorded, not judged here: the ECE of the answers T was fitted on may rise (30 answers in 10
    # bins); test_trust.py judges temperatures on images they were not fitted on.
    assert calibration["temperature"] != 1.0 and {"ece_before", "ece_after"} <= calibration.keys()
    assert sum(row["count"] for row in calibration["bins_after"]) == 30
    assert (fast_bundle / "reliability.png").is_file()
    assert "on 30 out-of-fold answers" in (fast_bundle / "README.md").read_text()


def test_the_k_fold_temperature_improves_held_out_likelihood(fast_bundle, task):
    """On the 30 test patches no fold ever saw: the saved (calibrated) probabilities have a lower
    negative log-likelihood than the same model at T = 1."""
    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_folder
    from vision.models.features import get_extractor
    from vision.models.heads import LOGITS_LAYER
    from vision.trust.calibration import softmax

    bundle = load_bundle(fast_bundle)
    test = load_folder(task / "test").everything()
    kernel, bias = bundle.model.get_layer(LOGITS_LAYER).get_weights()
    logits = get_extractor(224).features(test.sources())[0] @ kernel + bias  # already divided by T
    temperature = bundle.info["calibration"]["temperature"]

    def nll(probabilities):
        return -np.mean(np.log(probabilities[np.arange(len(test.labels)), test.labels]))

    assert nll(softmax(logits)) < nll(softmax(logits * temperature))


def test_a_fast_trained_bundle_is_plain_keras_in_safe_mode(fast_bundle, task):
    import keras

    from vision.bundle.store import load_bundle
    from vision.data.images import load_image, preprocess
    from vision.runtime.inference import Classifier

    bundle = load_bundle(fast_bundle)
    photos = sorted((task / "test").rglob("*.png"))[::5]
    x = np.stack([preprocess(load_image(p), bundle.preprocessing).numpy() for p in photos])
    plain = keras.saving.load_model(fast_bundle, compile=False, safe_mode=True)
    expected = plain.predict(x, verbose=0)
    np.testing.assert_allclose(bundle.model.predict(x, verbose=0), expected, atol=1e-6)
    served = np.stack([Classifier(bundle).probabilities(p) for p in photos[:1]] +
                      [Classifier(bundle, runtime="tf").probabilities(p) for p in photos[1:2]])
    np.testing.assert_allclose(served, expected[:2], atol=1e-4)
    assert {layer.name for layer in plain.layers} >= {"stem_conv", "head_conv_relu6", "logits", "probabilities"}


def test_grad_cam_explains_the_fast_trained_model(fast_bundle, task):
    from vision.bundle.store import load_bundle
    from vision.explain.cam import Explainer

    explainer = Explainer.from_bundle(load_bundle(fast_bundle))
    explanation = explainer.explain(next((task / "test" / "grass").iterdir()))
    assert explainer.layer == "head_conv_relu6" and explainer.runtime == "tflite"
    assert explanation.heatmap.shape == (96, 96) and explanation.label in TEXTURES


def test_features_are_computed_once_per_image(task):
    from vision.models.features import get_extractor

    extractor = get_extractor(224)
    calls = []
    embed = extractor._embed
    extractor._embed = lambda pixels: calls.append(len(pixels)) or embed(pixels)
    try:
        photos = sorted((task / "test" / "brick").iterdir())[:3]
        first = extractor.features(photos, views=("original", "mirrored"))
        again = extractor.features([p.read_bytes() for p in photos], views=("original", "mirrored"))
    finally:
        extractor._embed = embed
    np.testing.assert_array_equal(first, again)  # same content, other form: served from the cache
    assert first.shape == (2, 3, 1280) and not np.allclose(first[0], first[1])
    assert sum(calls) <= 6  # each photo through the backbone once per view, whichever test ran first


def test_fine_tuning_moves_only_the_top_layers(task, tmp_path):
    from vision.bundle.store import load_bundle
    from vision.models.efficientnet_lite import efficientnet_lite0, load_imagenet_weights

    out = tmp_path / "tuned"
    assert main(["train", str(task / "train"), "--out", str(out), "--epochs", "1", "--size", "96",
                 "--fine-tune", "4"]) == 0
    tuned = load_bundle(out)
    assert tuned.info["training"]["fine_tune_layers"] == 4 and tuned.preprocessing.size == (96, 96)
    pretrained = load_imagenet_weights(efficientnet_lite0(include_top=False, input_shape=(96, 96, 3)))
    same = [np.array_equal(a, b) for a, b in zip(tuned.model.get_layer("stem_conv").get_weights(),
                                                  pretrained.get_layer("stem_conv").get_weights())]
    moved = [np.array_equal(a, b) for a, b in zip(tuned.model.get_layer("head_conv").get_weights(),
                                                   pretrained.get_layer("head_conv").get_weights())]
    assert all(same) and not all(moved)
    # Batch-norm statistics stay ImageNet's, even in the unfrozen top.
    np.testing.assert_array_equal(tuned.model.get_layer("head_bn").get_weights()[2],
                                  pretrained.get_layer("head_bn").get_weights()[2])


def test_the_app_trains_few_shot_from_samples_by_default(task, tmp_path):
    """The Teachable-Machine flow: classes of samples, then Train with the view's defaults."""
    from app_server import launch_app

    app, url = launch_app(tmp_path / "models")
    try:
        client = Client(url, verbose=False)
        for texture in TEXTURES:
            files = [handle_file(str(p)) for p in sorted((task / "train" / texture).iterdir())]
            client.predict(texture, None, files, api_name="/add_samples")
        # The view's defaults: efficientnet_lite0, 224 px, 20 epochs, augmentation, ImageNet weights.
        status, _curves, metrics, confusion, _gallery, _choices, reliability, issues, _pair = client.predict(
            None, "efficientnet_lite0", 224, 20, True, True, "textures", api_name="/train")
        assert "Saved **textures**" in metrics and "efficientnet_lite0" in status, (status, metrics)
        assert Path(confusion).is_file()
        # Ten photos per class: calibrated on k-fold out-of-fold logits, its reliability diagram shown.
        assert "Data check (cleanlab" in metrics and "Confidence calibrated: temperature" in metrics, metrics
        assert reliability and Path(reliability).is_file()
        client.predict("shared/textures", api_name="/use_model")
        answers = []
        for texture in TEXTURES:
            for photo in sorted((task / "test" / texture).iterdir())[:4]:
                labels, _ = client.predict(handle_file(str(photo)), 1, api_name="/classify")
                answers.append((texture, labels["label"]))
        hits = sum(texture == label for texture, label in answers)
        assert hits >= 11, f"{hits}/12 test photos right: {answers}"
        # A photo of something else entirely: "Not sure", not a confident texture.
        labels, details = client.predict(handle_file(str(example_photos()[1])), 3, api_name="/classify")
        assert labels["label"].startswith("Not sure (nearest: ") and not labels.get("confidences"), labels
        assert "unlike anything the model was trained on" in details

        # One brick photo filed under grass by mistake (it pulls bricks towards grass with ten
        # photos per class): after training, the data check points at it.
        client.predict("grass", None, [handle_file(str(task / "test" / "brick" / "brick_0009.png"))],
                       api_name="/add_samples")
        *_, issues, _pair = client.predict(None, "efficientnet_lite0", 224, 20, True, True, "textures-2",
                                           api_name="/train")
        assert any(item["caption"].startswith("labelled grass, looks like brick") for item in issues), issues
    finally:
        app.close()


def test_training_hands_its_memory_back_when_it_ends_or_fails(task, tmp_path, monkeypatch):
    import threading

    import vision.training.recipe as recipe
    from vision.data.datasets import load_folder
    from vision.errors import TrainingCancelledError
    from vision.training.config import TrainConfig
    from vision.training.memory import release_memory

    assert release_memory()  # glibc: the heap is trimmed, not only garbage collected
    released = []
    monkeypatch.setattr(recipe, "release_memory", lambda: released.append(True))
    dataset = load_folder(task / "train")
    config = TrainConfig(model="efficientnet_lite0", input_size=96, epochs=1)
    recipe.train_bundle(dataset, config, tmp_path / "done")
    assert released == [True]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelledError):
        recipe.train_bundle(dataset, config, tmp_path / "cancelled", cancel=cancel)
    assert released == [True, True] and not (tmp_path / "cancelled").exists()


def _tiny_classes(root: Path, classes: int, per_class: int, seed: int = 0) -> Path:
    """``classes`` folders of ``per_class`` 32 px photos: a colour each, with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


#: The Train view's sizes, at their edges: 2 and 5 classes, 2 photos a class (two folds), 5 a
#: class (the "five photos a class" report: cleanlab's 10 neighbours for 10 images), 10 a class.
@pytest.mark.parametrize("classes, per_class", [(2, 2), (5, 2), (2, 5), (3, 10)])
def test_every_small_dataset_trains_saves_and_reports(tmp_path, classes, per_class):
    """What the Train view runs (fast path, calibration folds, the label audit, saving) on a
    handful of photos: each size trains, is saved, and has its data check."""
    from vision.data.datasets import load_folder
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle

    dataset = load_folder(_tiny_classes(tmp_path / "data", classes, per_class))
    trained = train_bundle(dataset, TrainConfig(model="efficientnet_lite0", input_size=32, epochs=2, batch_size=16),
                           tmp_path / "model", audit=True)
    info = json.loads((tmp_path / "model" / "vision.json").read_text())
    assert len(info["labels"]) == classes
    assert trained.audit is not None and len(trained.audit.ranked) == classes * per_class
    assert trained.trust.calibration is not None and trained.trust.calibration.method == "k-fold out-of-fold"


def test_cancel_after_fit_stops_the_folds_the_audit_and_saving(tmp_path):
    """Cancel pressed once the last epoch has ended: the calibration folds, the audit and saving
    still stop, and nothing is left."""
    import threading

    from vision.data.datasets import load_folder
    from vision.errors import TrainingCancelledError
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle

    dataset = load_folder(_tiny_classes(tmp_path / "data", 2, 6))
    config = TrainConfig(model="efficientnet_lite0", input_size=32, epochs=2, batch_size=16)
    cancel, seen = threading.Event(), []

    def progress(update):
        seen.append(update.stage)
        if update.epoch_end and update.epoch == config.epochs - 1:
            cancel.set()  # fit itself has no batch left to notice it

    with pytest.raises(TrainingCancelledError, match="cancelled"):
        train_bundle(dataset, config, tmp_path / "model", progress=progress, cancel=cancel, audit=True)
    assert "train" in seen and "checking" not in seen
    assert not (tmp_path / "model").exists()


def test_a_training_over_its_time_limit_stops_says_so_and_frees_the_slot(tmp_path):
    import threading

    from vision.data.datasets import load_folder
    from vision.errors import TrainingCancelledError
    from vision.training.config import TrainConfig
    from vision.training.jobs import JobFailed, JobFinished, TrainingJob

    dataset = load_folder(_tiny_classes(tmp_path / "data", 2, 4))
    slot = threading.Lock()
    # Hundreds of epochs without early stopping: far past a 3 s limit.
    config = TrainConfig(model="efficientnet_lite0", input_size=32, epochs=400, patience=1000, batch_size=16)
    job = TrainingJob.training(dataset, config, tmp_path / "model", slot=slot, time_limit_s=3).start()
    final = [update for update in job.updates() if isinstance(update, (JobFailed, JobFinished))][-1]
    assert isinstance(final, JobFailed) and isinstance(final.error, TrainingCancelledError), final
    assert "time limit of 3 s" in str(final.error) and job.timed_out
    assert job.join(timeout=30) and not slot.locked()
    assert not (tmp_path / "model").exists()


def test_a_training_in_a_thread_leaves_the_global_random_generators_alone(tmp_path):
    """No ``set_random_seed`` from a session's work: NumPy's global state is untouched, TensorFlow's
    global seed is as it was (none, or an earlier test's), and Python's generator only moved on
    (Keras draws a seed from it for each unseeded initializer it builds), never was reset."""
    import random
    import threading

    from tensorflow.python.eager import context

    from vision.data.datasets import load_folder
    from vision.training.config import TrainConfig
    from vision.training.recipe import train_bundle

    dataset = load_folder(_tiny_classes(tmp_path / "data", 2, 3))
    np.random.seed(1234)
    random.seed(1234)
    numpy_before, python_before = np.random.get_state(), random.getstate()
    tf_before = context.global_seed()  # None, or what an earlier test in this process set
    worker = threading.Thread(target=train_bundle, args=(dataset, TrainConfig(
        model="efficientnet_lite0", input_size=32, epochs=1, batch_size=16, seed=7), tmp_path / "model"))
    worker.start()
    worker.join()
    assert (tmp_path / "model" / "vision.json").is_file()
    numpy_after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(numpy_before, numpy_after))
    assert context.global_seed() == tf_before
    python_after = random.getstate()
    replay = random.Random()
    replay.setstate(python_before)
    for _ in range(200_000):  # each of Keras's draws takes whole 32-bit words
        if replay.getstate() == python_after:
            break
        replay.getrandbits(32)
    else:
        pytest.fail("Python's global random generator was reset, not only advanced")


def test_the_feature_cache_never_holds_more_than_its_byte_ceiling(monkeypatch):
    """Every extractor shares one cache bounded in bytes: embedding more images than fit keeps the
    latest ones, and what is kept is only the features (not the batches they came from)."""
    from vision.models import features

    ceiling = 10 * features.LITE0_FEATURES * 4  # ten views' features
    monkeypatch.setattr(features, "_CACHE", features.new_cache(ceiling))
    rng = np.random.default_rng(3)
    photos = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(12)]
    embedded = features.get_extractor(32).features(photos, views=("original", "mirrored"))
    kept = list(features._CACHE.values())
    held = sum((array if array.base is None else array.base).nbytes for array in kept)
    assert len(kept) == 10 and held <= ceiling and features.cached_bytes() <= ceiling
    # Least recently used out first: what is kept are the last five images' two views.
    assert all(any(np.array_equal(array, embedded[v, i]) for v in range(2) for i in range(7, 12)) for array in kept)
