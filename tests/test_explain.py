"""Grad-CAM family: ground truth (pointing game), an independent eager reference, every
kind of model, the fast and compiled paths agreeing, classes, layers, errors, the CLI."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from vision.bundle.store import load_bundle
from vision.data.images import Preprocessing
from vision.data.synthetic import BOXES_FILE, make_shapes, write_shapes
from vision.explain.cam import Explainer, ExplainError, find_target_layer
from vision.explain.methods import METHODS
from vision.explain.overlay import overlay
from vision.explain.pointing import pointing_game
from vision.models.registry import create_model, list_models

from conftest import SHAPES_MODEL


@pytest.fixture(scope="module")
def default_bundle():
    return load_bundle(SHAPES_MODEL)


@pytest.fixture(scope="module")
def default_explainer(default_bundle):
    return Explainer.from_bundle(default_bundle)


@pytest.fixture(scope="module")
def sample_image():
    return make_shapes(per_class=1, size=64, seed=4).images[0]


def _assert_informative(heatmap: np.ndarray, shape: tuple[int, int]) -> None:
    assert heatmap.shape == shape and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() - heatmap.min() > 0.1, "heatmap is constant"


@pytest.mark.slow
def test_pointing_game_on_the_default_model_beats_random(default_bundle, tmp_path):
    folder = write_shapes(tmp_path / "data", per_class=250, size=64, seed=0)
    boxes = json.loads((folder / BOXES_FILE).read_text())
    val = sorted(rel for rel in boxes if rel.startswith("val/"))[::2]  # 100 of the 200 validation images
    samples = [(np.asarray(Image.open(folder / rel)), default_bundle.labels.index(rel.split("/")[1]),
                np.array(boxes[rel])) for rel in val]
    result = pointing_game(Explainer.from_bundle(default_bundle), samples, method="gradcam")
    assert result.evaluated >= 95
    assert result.rate >= 0.85  # measured 0.99 on all 200 (bench/bench_explain.py)
    assert result.random_rate < 0.5 and result.rate > result.random_rate + 0.4


def test_matches_an_independent_eager_reference_on_a_flat_model():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    model = create_model("simple_cnn", 3, 32, width=8)
    spec = Preprocessing((32, 32))
    image = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    # Reference: the textbook recipe, eager, written without any of vision.explain.
    x = tf.constant(image[None].astype(np.float32) / 255.0)
    grad_model = keras.Model(model.inputs, [model.get_layer("conv4").output, model.get_layer("logits").output])
    with tf.GradientTape() as tape:
        features, logits = grad_model(x)
        score = logits[:, 1]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(0, 1, 2))
    reference = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1)).numpy()
    reference = reference / reference.max()

    for fast in (True, False):
        explanation = Explainer(model, spec, layer=None, fast=fast).explain(image, target=1)
        assert explanation.layer == "conv4"
        np.testing.assert_allclose(explanation.cam, reference, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_fast_and_compiled_paths_agree(default_bundle, sample_image, method):
    fast = Explainer.from_bundle(default_bundle)
    compiled = Explainer.from_bundle(default_bundle, fast=False)
    assert fast.runtime == "tflite" and compiled.runtime == "tf.function"
    a, b = fast.explain(sample_image, method), compiled.explain(sample_image, method)
    assert a.class_index == b.class_index
    np.testing.assert_allclose(a.cam, b.cam, atol=1e-4)
    _assert_informative(a.heatmap, sample_image.shape[:2])


def test_nested_transfer_model_targets_out_relu_and_is_informative():
    model = create_model("mobilenet_v2", 3, 96, weights=None)
    path = find_target_layer(model)
    assert [layer.name for layer in path] == ["mobilenetv2_1.00_96", "out_relu"]
    assert type(path[-1]).__name__ != "Conv2D"
    explainer = Explainer(model, Preprocessing((96, 96)), ["a", "b", "c"])
    image = make_shapes(per_class=1, size=120, seed=2).images[0]
    for method in METHODS:
        _assert_informative(explainer.explain(image, method).heatmap, (120, 120))
    slow = Explainer(model, Preprocessing((96, 96)), ["a", "b", "c"], fast=False)
    np.testing.assert_allclose(slow.explain(image).cam, explainer.explain(image).cam, atol=1e-4)


def test_sequential_model_with_dense_softmax_is_explained_before_the_softmax():
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu", name="c2"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    explainer = Explainer(model, Preprocessing((32, 32)))
    assert explainer.layer == "c2" and explainer.runtime == "tf.function"  # Flatten head: no shortcut
    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    explanation = explainer.explain(image, "gradcam", target=2)
    _assert_informative(explanation.heatmap, (48, 40))
    assert explanation.class_index == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_every_registered_model_gets_an_informative_heatmap(name):
    spec = next(s for s in list_models() if s.name == name)
    # Transfer bases downsample 32x: at 96 px their last feature map is 3x3, not one constant cell.
    size = 96 if spec.transfer else 32
    keras.utils.set_random_seed(0)  # an untrained network: the same one every run
    model = create_model(name, 2, size, **({"weights": None} if spec.transfer else {}))
    explainer = Explainer(model, Preprocessing((size, size)), ["a", "b"], fast=False)  # the fast path: above
    explanation = explainer.explain(make_shapes(per_class=1, size=size, seed=4).images[0])
    assert min(explanation.cam.shape) >= 3
    _assert_informative(explanation.heatmap, (size, size))


def test_any_class_by_label_or_index_and_layer_override(default_explainer, sample_image):
    by_label = default_explainer.explain(sample_image, target="square")
    by_index = default_explainer.explain(sample_image, target=default_explainer.labels.index("square"))
    assert by_label.label == by_index.label == "square"
    np.testing.assert_array_equal(by_label.cam, by_index.cam)
    top = default_explainer.explain(sample_image)
    assert top.probability == max(top.probability, by_label.probability)

    earlier = Explainer.from_bundle(load_bundle(SHAPES_MODEL), layer="stage2_block2_out")
    explanation = earlier.explain(sample_image)
    assert explanation.layer == "stage2_block2_out" and explanation.cam.shape == (16, 16)
    assert earlier.runtime == "tf.function"  # the shortcut only holds for the last spatial layer


def test_clear_errors(default_bundle, default_explainer, sample_image):
    with pytest.raises(ExplainError, match="no layer named 'nope'"):
        Explainer.from_bundle(default_bundle, layer="nope")
    with pytest.raises(ExplainError, match="spatial"):
        Explainer.from_bundle(default_bundle, layer="logits")
    with pytest.raises(ExplainError, match="unknown class 'dog'; choose one of: circle"):
        default_explainer.explain(sample_image, target="dog")
    with pytest.raises(ExplainError, match="out of range"):
        default_explainer.explain(sample_image, target=7)
    with pytest.raises(ExplainError, match="unknown method"):
        default_explainer.explain(sample_image, method="lime")


def test_overlay_blends_with_adjustable_alpha(sample_image):
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[2:4, 2:4] = 1.0
    assert np.array_equal(overlay(sample_image, heatmap, alpha=0.0), sample_image)
    full = overlay(sample_image, heatmap, alpha=1.0)
    assert full.shape == sample_image.shape and not np.array_equal(full, sample_image)
    with pytest.raises(ValueError, match="alpha"):
        overlay(sample_image, heatmap, alpha=1.5)


def test_cli_writes_an_overlay(tmp_path, sample_image):
    from vision.cli import main

    source = tmp_path / "in.png"
    Image.fromarray(sample_image).save(source)
    out = tmp_path / "out" / "cam.png"
    assert main(["explain", str(source), "--model", str(SHAPES_MODEL), "--method", "gradcam++",
                 "--class", "circle", "--out", str(out)]) == 0
    written = np.asarray(Image.open(out))
    assert written.shape == sample_image.shape and not np.array_equal(written, sample_image)
    assert main(["explain", str(source), "--model", str(SHAPES_MODEL), "--class", "dog", "--out", str(out)]) == 2
