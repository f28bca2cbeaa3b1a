"""Magnitude pruning: the schedule, the masks, a pruned registry model and its saved file."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest

from vision.data.images import preprocess
from vision.data.synthetic import make_shapes
from vision.errors import TrainingCancelledError, VisionError
from vision.models.registry import create_model, get_spec
from vision.training.prune import (
    MagnitudePruning,
    measured_sparsity,
    polynomial_sparsity,
    prunable_weights,
    prune,
)

SIZE = 32


def _inputs(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    shapes = make_shapes(per_class=per_class, size=SIZE, seed=seed)
    return np.asarray(preprocess(shapes.images, get_spec("simple_cnn").preprocessing(SIZE)), np.float32), shapes.labels


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.sum(p * (np.log(p + 1e-9) - np.log(q + 1e-9)), axis=1)))


@pytest.fixture(scope="module")
def trained():
    """simple_cnn trained briefly on the shapes (four classes): a teacher that is sure of its answers."""
    inputs, labels = _inputs(per_class=16, seed=1)
    keras.utils.set_random_seed(0)
    model = create_model("simple_cnn", 4, SIZE)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(inputs, labels, epochs=20, batch_size=16, verbose=0)
    return model, inputs


@pytest.fixture(scope="module")
def pruned(trained):
    model, inputs = trained
    before = [w.copy() for w in model.get_weights()]
    flags = [layer.trainable for layer in model.layers]
    seen = []
    result = prune(model, inputs, model.predict(inputs, verbose=0), 0.75, epochs=6,
                   progress=lambda epoch, epochs, sparsity: seen.append((epoch, epochs, sparsity)))
    return result, before, flags, seen


def test_polynomial_schedule_starts_ends_and_rises():
    assert polynomial_sparsity(0, 10, 110, 0.8) == 0.0  # before begin: initial
    assert polynomial_sparsity(10, 10, 110, 0.8, initial=0.1) == pytest.approx(0.1)
    assert polynomial_sparsity(110, 10, 110, 0.8) == pytest.approx(0.8)
    assert polynomial_sparsity(500, 10, 110, 0.8) == pytest.approx(0.8)  # held after end
    # Cubic: half-way, 1 - 0.5^3 of the way there.
    assert polynomial_sparsity(60, 10, 110, 0.8) == pytest.approx(0.8 * 0.875)
    values = [polynomial_sparsity(t, 10, 110, 0.8) for t in range(0, 130)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[20] - values[10] > values[110] - values[100]  # fast first, slow last


def test_masks_zero_each_kernels_smallest_weights_exactly():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(64, name="a"), keras.layers.Dense(32, name="b"),
                              keras.layers.Dense(2, name="small")])
    pruning = MagnitudePruning(0.6, end_step=1)
    pruning.set_model(model)
    original = {name: kernel.numpy().copy() for name, kernel in prunable_weights(model)}
    assert list(original) == ["a", "b"]  # 64 weights: below MIN_WEIGHTS, left dense
    pruning.on_train_begin()
    pruning.update_masks(0.6)
    pruning.apply_masks()
    for name, kernel in prunable_weights(model):
        values, before = kernel.numpy(), original[name]
        zeroed = values == 0
        assert zeroed.sum() == round(0.6 * before.size)
        # Per layer: every weight kept is at least as large as every weight zeroed.
        assert np.abs(before[~zeroed]).min() >= np.abs(before[zeroed]).max()
        np.testing.assert_array_equal(values[~zeroed], before[~zeroed])
    assert not np.any(model.get_layer("small").kernel.numpy() == 0)


def test_depthwise_and_small_kernels_stay_dense():
    names = [name for name, _ in prunable_weights(create_model("efficientnet_lite0", 3, SIZE, weights=None))]
    # The stem (3x3x3x32) and the first block's projection (32x16) are under MIN_WEIGHTS.
    assert "stem_conv" not in names and "block0_project_conv" not in names
    assert not any("dwconv" in name for name in names)
    assert {"block1_expand_conv", "head_conv", "logits"} <= set(names)


def test_pruning_reaches_the_sparsity_in_every_kernel_and_keeps_the_answers(trained, pruned):
    model, _ = trained
    result, before, flags, seen = pruned
    assert result.sparsity == pytest.approx(0.75, abs=0.01)
    assert set(result.layers) == {"conv2", "conv3", "conv4"}
    for name, share in result.layers.items():
        assert share == pytest.approx(0.75, abs=0.01), name
    assert measured_sparsity(result.model) == (result.sparsity, result.layers)
    # The caller's model is untouched: weights, trainable flags, no zeros.
    for now, then in zip(model.get_weights(), before):
        np.testing.assert_array_equal(now, then)
    assert [layer.trainable for layer in model.layers] == flags
    assert measured_sparsity(model)[0] < 0.01
    assert [epoch for epoch, _, _ in seen] == list(range(6)) and seen[-1][1:] == (6, 0.75)
    assert result.history["sparsity"][-1] == 0.75 and len(result.history["loss"]) == 6

    # On shapes it never saw, the pruned model answers as the original does, and fine-tuning
    # is what gets it there: the same masks applied without it are further from the original's
    # answers. Measured on 256 images (KL ratio 0.67, top-1 agreement 0.93): on 64 the ratio
    # moved between 0.71 and 0.89 with the training's seed, too noisy for the 0.75 bound.
    new, _ = _inputs(per_class=64, seed=2)
    original = model.predict(new, verbose=0)
    masks_only = keras.Model.from_config(model.get_config())
    masks_only.set_weights(model.get_weights())
    pruning = MagnitudePruning(0.75, end_step=1)
    pruning.set_model(masks_only)
    pruning.on_train_begin()
    pruning.update_masks(0.75)
    pruning.apply_masks()
    answers = result.model.predict(new, verbose=0)
    agreement = np.mean(np.argmax(answers, 1) == np.argmax(original, 1))
    print(f"agreement with the unpruned model on new shapes: {agreement:.3f}")
    assert agreement >= 0.85
    assert _kl(original, answers) < 0.75 * _kl(original, masks_only.predict(new, verbose=0))


def test_the_pruned_model_is_plain_and_round_trips_with_its_zeros(trained, pruned, tmp_path):
    model, inputs = trained
    result = pruned[0]
    assert [layer.name for layer in result.model.layers] == [layer.name for layer in model.layers]
    assert [w.path for w in result.model.weights] == [w.path for w in model.weights]
    assert not result.model.compiled  # no optimizer state in the file
    path = tmp_path / "pruned.keras"
    result.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert len(loaded.weights) == len(model.weights) and not loaded.compiled
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), result.model.predict(inputs, verbose=0))
    assert measured_sparsity(loaded) == (result.sparsity, result.layers)


def test_batch_norm_stays_frozen_while_the_rest_fine_tunes(trained):
    _, inputs = trained
    keras.utils.set_random_seed(3)
    # resnet_small's layer kinds, few of them: its graph takes seconds to trace.
    image = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(16, 3, name="stem_conv", trainable=False)(image)  # frozen by the caller
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_bn")(x))
    x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(32, 3, strides=2, name="conv")(x))
    x = keras.layers.Dense(4, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(image, keras.layers.Activation("softmax", name="probabilities")(x))
    result = prune(model, inputs[:8], np.full((8, 4), 0.25, np.float32), 0.5, epochs=1, batch_size=4,
                   learning_rate=1e-2)
    for name in ("stem_bn", "bn"):
        # Scale, offset and the moving statistics: a few images would drag them away.
        for a, b in zip(model.get_layer(name).get_weights(), result.model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for name in ("stem_conv", "logits"):  # frozen, or too small to prune: fine-tuned all the same
        for a, b in zip(model.get_layer(name).get_weights(), result.model.get_layer(name).get_weights()):
            assert not np.array_equal(a, b), name
    assert not result.model.get_layer("stem_conv").trainable  # the caller's flags come back
    assert result.layers == {"conv": pytest.approx(0.5, abs=0.01)}


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 75])
def test_bad_sparsity_says_what_is_allowed(trained, sparsity):
    model, inputs = trained
    with pytest.raises(VisionError, match=r"must be in \[0, 1\)"):
        prune(model, inputs[:4], model.predict(inputs[:4], verbose=0), sparsity)


def test_cancel_stops_after_the_batch(trained):
    model, inputs = trained
    cancel = threading.Event()
    cancel.set()
    epochs = []
    with pytest.raises(TrainingCancelledError, match="cancelled"):
        prune(model, inputs, model.predict(inputs, verbose=0), 0.5, epochs=50, cancel=cancel,
              progress=lambda epoch, *_: epochs.append(epoch))
    assert epochs in ([], [0])  # stopped within the first epoch, not after 50
