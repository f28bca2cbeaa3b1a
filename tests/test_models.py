"""The model registry: every architecture builds, takes [0, 1] input, ends in logits +
softmax; unknown names and unavailable weights fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from vision.errors import UnknownModelError, WeightsUnavailableError
from vision.models.heads import LOGITS_LAYER, OUTPUT_LAYER
from vision.models.registry import create_model, list_models


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_every_model_builds_and_outputs_probabilities(name):
    spec = next(s for s in list_models() if s.name == name)
    kwargs = {"weights": None} if spec.transfer else {}
    model = create_model(name, num_classes=3, input_size=32, **kwargs)
    out = np.asarray(model(np.random.default_rng(0).random((2, 32, 32, 3), np.float32)))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert model.get_layer(LOGITS_LAYER).units == 3
    assert model.get_layer(OUTPUT_LAYER).dtype_policy.compute_dtype == "float32"


def test_registry_has_the_required_architectures():
    names = {spec.name for spec in list_models()}
    assert {"simple_cnn", "resnet_small", "mobilenet_v2", "efficientnet_b0", "resnet50"} <= names


def test_transfer_base_is_frozen_and_fine_tuning_keeps_batchnorm_frozen():
    import keras

    frozen = create_model("mobilenet_v2", 2, 32, weights=None)
    assert len(frozen.trainable_weights) == 2  # only the new head's kernel and bias
    tuned = create_model("mobilenet_v2", 2, 32, weights=None, fine_tune_layers=10)
    base = next(layer for layer in tuned.layers if isinstance(layer, keras.Model))
    trainable = [layer for layer in base.layers if layer.trainable]
    assert trainable and all(layer in base.layers[-10:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)


def test_resnet50_adapter_does_caffe_preprocessing():
    import keras

    model = create_model("resnet50", 2, 32, weights=None)
    adapter = model.get_layer("to_caffe_bgr")
    rgb = np.zeros((1, 1, 1, 3), np.float32)
    rgb[..., 0] = 1.0  # pure red in [0, 1]
    expected = keras.applications.resnet50.preprocess_input(rgb * 255.0)
    np.testing.assert_allclose(np.asarray(adapter(rgb)), expected, atol=1e-3)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError, match="unknown model 'vgg99'; choose one of: simple_cnn"):
        create_model("vgg99", 3)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        create_model("simple_cnn", 1)
    with pytest.raises(ValueError, match="input_size >= 32"):
        create_model("mobilenet_v2", 2, 16, weights=None)


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch):
    # A proxy on a closed loopback port makes the download fail at once, as offline.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(WeightsUnavailableError, match="weights=None"):
        create_model("mobilenet_v2", 2, 96, weights="imagenet")
