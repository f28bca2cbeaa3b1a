"""Grad-CAM, Grad-CAM++ and Score-CAM for every model the project can hold.

The target layer is the last one with a spatial 4-D output, found by recursing into nested
models (for MobileNetV2 that is ``out_relu``, an activation, not a Conv2D), or named by the
caller. Keras 3 cannot build ``keras.Model(model.inputs, inner_layer.output)`` across a
nested model or a Sequential, so the forward pass is re-chained: a functional sub-model
where the layer sits at the top level, else a walk over the layers in call order with the
nested model replaced by a two-output copy of itself.

Scores are taken before the softmax (a saturated softmax has vanishing gradients). The
gradient runs inside one ``tf.function`` per method, built once per Explainer. When the
head after the target layer is global-average-pooling -> dropout -> dense (every model in
the registry), the gradient of a class score with respect to the feature map is the dense
weight over the pooled area, exactly; the explainer then reads the feature map from a
TFLite interpreter and skips the backward pass. Tests check both paths against each other
and against an eager reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from vision.data.images import ImageSource, Preprocessing, load_image, preprocess, resized
from vision.errors import ExplainError, VisionError  # noqa: F401  (ExplainError re-exported)
from vision.explain.methods import METHODS
from vision.explain.overlay import resize_heatmap
from vision.models.serving import with_preprocessing
from vision.runtime.tflite import TFLiteRunner, cached_flatbuffer, convert_to_tflite
from vision.trust.calibration import softmax

log = logging.getLogger(__name__)

SCORECAM_CHANNELS = 32  # Score-CAM masks with the most active channels only: one batch pass


@dataclass
class Explanation:
    heatmap: np.ndarray  # (H, W) float32 in [0, 1] at the image's resolution
    cam: np.ndarray  # (h, w) float32 in [0, 1] at the target layer's resolution
    class_index: int
    label: str
    probability: float
    method: str
    layer: str


def find_target_layer(model: Any, name: str | None = None) -> list[Any]:
    """The path [container, ..., layer] from ``model`` down to the target layer.

    Without ``name``: the last layer with a 4-D output, searching nested models too.

    Raises:
        ExplainError: no such layer, or the named layer has no spatial 4-D output.
    """
    path = _find_named(model, name) if name else _find_last_spatial(model)
    if not path:
        if name:
            raise ExplainError(f"no layer named {name!r} in model {model.name!r}")
        raise ExplainError(f"model {model.name!r} has no layer with a spatial (4-D) output to explain")
    if len(_output_shape(path[-1])) != 4:
        raise ExplainError(f"layer {path[-1].name!r} has output shape {_output_shape(path[-1])}; "
                           "Grad-CAM needs a spatial (batch, height, width, channels) output")
    return path


def _output_shape(layer: Any) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # never called, or called more than once
        return tuple(layer.compute_output_shape(layer.input.shape)) if hasattr(layer, "input") else ()


def _is_container(layer: Any) -> bool:
    return isinstance(layer, keras.Model)


def _find_last_spatial(model: Any) -> list[Any]:
    for layer in reversed(model.layers):
        if _is_container(layer):
            inner = _find_last_spatial(layer)
            if inner:
                return [layer, *inner]
        elif len(_output_shape(layer)) == 4 and type(layer).__name__ != "InputLayer":
            return [layer]
    return []


def _find_named(model: Any, name: str) -> list[Any]:
    for layer in model.layers:
        if layer.name == name:
            return [layer]
        if _is_container(layer):
            inner = _find_named(layer, name)
            if inner:
                return [layer, *inner]
    return []


def _softmax_kind(layer: Any) -> str | None:
    """How the model's last layer applies softmax: 'activation', 'dense' or None."""

    activation = getattr(layer, "activation", None)
    if activation is None or getattr(activation, "__name__", "") != "softmax":
        return None
    return "activation" if isinstance(layer, keras.layers.Activation) else "dense"


def _pre_softmax(layer: Any, x: Any, kind: str | None) -> Any:
    """Apply the model's last layer without its softmax."""

    if kind == "activation":
        return x
    if kind == "dense":
        logits = tf.matmul(x, layer.kernel)
        return logits + layer.bias if layer.use_bias else logits
    return layer(x, training=False)


def _is_functional(model: Any) -> bool:
    return not isinstance(model, keras.Sequential) and hasattr(model, "inputs") and bool(model.inputs)


def _forward(model: Any, path: list[Any], logits: bool) -> Callable[[Any], tuple[Any, Any]]:
    """fn(x) -> (target feature map, model output), the output pre-softmax if ``logits``."""

    target, last = path[0], model.layers[-1]
    kind = _softmax_kind(last) if logits else None
    if len(path) == 1 and _is_functional(model):
        head_input = last.input if kind else model.outputs[0]
        sub = keras.Model(model.inputs, [target.output, head_input])

        def functional(x: Any) -> tuple[Any, Any]:
            features, out = sub(x, training=False)
            return features, (_pre_softmax(last, out, kind) if kind else out)

        return functional

    inner = _forward(target, path[1:], logits=False) if len(path) > 1 else None
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    for layer in layers:
        if isinstance(getattr(layer, "input", None), (list, tuple)):
            raise ExplainError(
                f"layer {path[-1].name!r} is nested inside {model.name!r}, whose graph has branches "
                f"(at {layer.name!r}); choose a top-level layer with layer=")

    def chained(x: Any) -> tuple[Any, Any]:
        features = None
        for layer in layers:
            if layer is target and inner is not None:
                features, x = inner(x)
            elif layer is last and kind:
                x = _pre_softmax(layer, x, kind)
            else:
                x = layer(x, training=False)
                if layer is target:
                    features = x
        return features, x

    return chained


def _producer(tensor: Any) -> Any:
    """The layer that produced a symbolic tensor (a nested model's outer call included)."""
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history is not None else None


def _linear_head(model: Any, path: list[Any]) -> Any | None:
    """The Dense layer if everything after the target is GAP -> Dropout* -> Dense [-> softmax]."""

    if not _is_functional(model):
        return None
    # The target must end its container(s): nested models must output exactly the target.
    for container, child in zip(path, path[1:]):
        if not _is_functional(container) or _producer(container.outputs[0]) is not child:
            return None
    top = path[0]
    after = model.layers[model.layers.index(top) + 1:]
    if not after or not isinstance(after[0], keras.layers.GlobalAveragePooling2D):
        return None
    if _producer(after[0].input) is not top:
        return None
    rest = [layer for layer in after[1:] if not isinstance(layer, keras.layers.Dropout)]
    if rest and _softmax_kind(rest[-1]) == "activation":
        rest = rest[:-1]
    if len(rest) != 1 or not isinstance(rest[0], keras.layers.Dense):
        return None
    dense = rest[0]
    if getattr(dense.activation, "__name__", "") not in ("linear", "softmax"):
        return None
    return dense


class Explainer:
    """Heatmaps for one model; build once, call ``explain`` per image.

    Args:
        model: A Keras model (functional, Sequential, or with a nested base).
        preprocessing: How images become model input (a bundle's ``preprocessing``).
        labels: Class names; indices are used when None.
        layer: Target layer name; the last spatial layer when None.
        fast: Use the TFLite + closed-form gradient path where the head allows it.
        cache_key: Identifies the model's weights (a bundle's fingerprint): the fast path's
            TFLite conversion is then cached on disk and done once, not per start.
    """

    def __init__(self, model: Any, preprocessing: Preprocessing, labels: list[str] | None = None,
                 layer: str | None = None, fast: bool = True, cache_key: str | None = None) -> None:
        self.model = model
        self.preprocessing = preprocessing
        self._cache_key = cache_key
        outputs = int(model.outputs[0].shape[-1]) if hasattr(model, "outputs") and model.outputs else None
        self.labels = labels or [str(i) for i in range(outputs or 0)]
        self.path = find_target_layer(model, layer)
        self.layer = self.path[-1].name
        self._forward = _forward(model, self.path, logits=True)
        height, width = preprocessing.size
        spec = preprocessing
        image_spec = tf.TensorSpec([None, None, 3], tf.uint8)
        index_spec = tf.TensorSpec([], tf.int32)

        @tf.function(input_signature=[image_spec, index_spec])
        def gradients(image: Any, class_index: Any) -> tuple[Any, Any, Any]:
            x = preprocess(image[None], spec)
            with tf.GradientTape() as tape:
                features, logits = self._forward(x)
                chosen = tf.where(class_index < 0, tf.argmax(logits[0], output_type=tf.int32), class_index)
                score = tf.gather(logits[0], chosen)
            grads = tape.gradient(score, features)
            return features[0], grads[0], logits[0]

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
        def batch_logits(x: Any) -> Any:
            return self._forward(x)[1]

        self._gradients = gradients
        self._batch_logits = batch_logits
        self._dense = _linear_head(model, self.path) if fast else None
        self._fast = self._build_fast_path() if self._dense is not None else None
        self.runtime = "tflite" if self._fast is not None else "tf.function"

    @classmethod
    def from_bundle(cls, bundle: Any, layer: str | None = None, fast: bool = True) -> "Explainer":
        return cls(bundle.model, bundle.preprocessing, bundle.labels, layer=layer, fast=fast,
                   cache_key=bundle.fingerprint)

    def class_index(self, target: int | str | None) -> int:
        """-1 (top-1) for None; a label or an index otherwise, validated."""
        if target is None or target == "":
            return -1
        if isinstance(target, str) and target in self.labels:
            return self.labels.index(target)
        try:
            index = int(target)
        except (TypeError, ValueError):
            raise ExplainError(f"unknown class {target!r}; choose one of: {', '.join(self.labels)}") from None
        if not 0 <= index < len(self.labels):
            raise ExplainError(f"class index {index} is out of range 0..{len(self.labels) - 1}")
        return index

    def explain(self, image: ImageSource, method: str = "gradcam",
                target: int | str | None = None) -> Explanation:
        """The heatmap of ``method`` for class ``target`` (label or index; top-1 if None)."""
        if method not in METHODS:
            raise ExplainError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        pixels = load_image(image)
        index = self.class_index(target)
        if method == "scorecam":
            features, logits = self._features_and_logits(pixels)
            chosen = int(np.argmax(logits)) if index < 0 else index
            cam = self._score_cam(pixels, features, chosen)
        else:
            features, grads, logits, chosen = self._features_and_gradients(pixels, index)
            cam = _grad_cam(features, grads) if method == "gradcam" else _grad_cam_plus_plus(features, grads)
        cam = _normalise(cam)
        probabilities = softmax(logits)
        return Explanation(
            heatmap=resize_heatmap(cam, pixels.shape[:2]), cam=cam, class_index=chosen,
            label=self.labels[chosen] if chosen < len(self.labels) else str(chosen),
            probability=float(probabilities[chosen]), method=method, layer=self.layer,
        )

    # -- the two ways to get feature maps and gradients -------------------------------

    def _features_and_gradients(self, pixels: np.ndarray, index: int) -> tuple[np.ndarray, ...]:
        if self._fast is not None:
            features, logits = self._fast(pixels)
            chosen = int(np.argmax(logits)) if index < 0 else index
            # d score / d A[i, j, k] = W[k, c] / (h * w) through global average pooling.
            kernel = self._dense_kernel[:, chosen]
            grads = np.broadcast_to(kernel / (features.shape[0] * features.shape[1]), features.shape)
            return features, grads, logits, chosen
        features, grads, logits = (t.numpy() for t in self._gradients(pixels, np.int32(index)))
        chosen = int(np.argmax(logits)) if index < 0 else index
        return features, grads, logits, chosen

    def _features_and_logits(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._fast is not None:
            return self._fast(pixels)
        features, _, logits = self._gradients(pixels, np.int32(-1))
        return features.numpy(), logits.numpy()

    def _build_fast_path(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        self._dense_kernel = np.asarray(self._dense.kernel, np.float32)
        wrapper = with_preprocessing(self.model, self.preprocessing, call=self._forward)
        try:
            if self._cache_key is None:
                flatbuffer = convert_to_tflite(wrapper)
            else:
                flatbuffer = cached_flatbuffer(f"explainer|{self._cache_key}|{self.layer}",
                                               lambda: convert_to_tflite(wrapper))
            # One runner, so one caller at a time: its lock serialises concurrent explains.
            runner = TFLiteRunner(flatbuffer)
        except Exception as error:  # the tf.function path always works
            log.warning("no TFLite fast path for Grad-CAM (%s); using tf.function", error)
            return None

        def run(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # The interpreter may order its outputs either way: the feature map is the 3-D one.
            by_rank = {output.ndim: output for output in runner(pixels)}
            return by_rank[3], by_rank[1]

        run(np.zeros((*self.preprocessing.size, 3), np.uint8))  # size the buffers now, not on first request
        return run

    def _score_cam(self, pixels: np.ndarray, features: np.ndarray, class_index: int) -> np.ndarray:
        strongest = np.argsort(-features.mean(axis=(0, 1)))[:SCORECAM_CHANNELS]
        maps = features[..., strongest]  # (h, w, K)
        x = preprocess(pixels[None], self.preprocessing)  # (1, H, W, 3)
        masks = resized(maps, self.preprocessing.size)  # (H, W, K)
        low = tf.reduce_min(masks, axis=(0, 1), keepdims=True)
        high = tf.reduce_max(masks, axis=(0, 1), keepdims=True)
        masks = tf.math.divide_no_nan(masks - low, high - low)
        masked = tf.transpose(masks, [2, 0, 1])[..., None] * x  # (K, H, W, 3)
        scores = softmax(self._batch_logits(masked).numpy())[:, class_index]
        weights = softmax(scores)
        return np.maximum((maps * weights).sum(axis=-1), 0.0)


def _grad_cam(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    weights = grads.mean(axis=(0, 1))  # (C,)
    return np.maximum(features @ weights, 0.0)


def _grad_cam_plus_plus(features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    # Closed form of Chattopadhyay et al. (2018) with an exponential score.
    g2, g3 = grads**2, grads**3
    denominator = 2.0 * g2 + features.sum(axis=(0, 1)) * g3
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=np.abs(denominator) > 1e-12)
    weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(0, 1))
    return np.maximum(features @ weights, 0.0)


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.nan_to_num(cam.astype(np.float32))
    top = cam.max()
    return cam / top if top > 0 else np.zeros_like(cam)

