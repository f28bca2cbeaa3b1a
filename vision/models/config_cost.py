"""What a layers-model config costs, from the config alone: output shapes, parameters and
activation values, layer by layer, with nothing allocated.

Keras builds and initialises every weight of a layer as soon as it is called on a symbolic
tensor, so asking a built model for ``count_params()`` is too late for an untrusted config
(a 300-byte Flatten -> Dense(65536) costs 5.4 GB and 8 s to build). Pillow's
``DecompressionBombError`` is the model: the size is read from the header and refused before
any pixel exists. Here the "header" is the config: each allowlisted layer's output shape and
parameter count follow from its arguments and its inputs' shapes (channels last, batch 1),
as Keras computes them. Each public function here is one such rule; the allowlist in
``vision.models.layers_config`` pairs every accepted layer type with its rule, walks the graph
with them first and builds only a model whose totals are under its bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vision.errors import InvalidModelFileError

#: A shape without its batch axis, e.g. (224, 224, 3) or (1280,).
Shape = tuple[int, ...]


@dataclass
class Cost:
    """Running totals of a config walk (batch 1, float32)."""

    parameters: int = 0
    #: Every layer's output values added up: what a forward pass writes.
    activations: int = 0
    #: The largest single layer output, in values, and the layer that makes it.
    largest: int = 0
    largest_layer: str = ""

    @property
    def weight_bytes(self) -> int:
        """The weights' bytes as float32, the only weight dtype accepted."""
        return 4 * self.parameters

    def add(self, name: str, shape: Shape, parameters: int) -> None:
        values = math.prod(shape)
        self.parameters += parameters
        self.activations += values
        if values > self.largest:
            self.largest, self.largest_layer = values, name


def layer_output(rule: Rule, kwargs: dict[str, Any], inputs: list[Shape], name: str,
                 where: str) -> tuple[Shape, int]:
    """The output shape and parameter count of one allowlisted layer.

    Args:
        rule: Its type's rule, one of this module's (``conv``, ``dense``...), as the allowlist in
            ``vision.models.layers_config`` pairs each accepted type with one.
        kwargs: Its checked keyword arguments, as ``layers_config`` passes them to Keras.
        inputs: Its inputs' shapes, without the batch axis.
        name: The layer's name, for messages.
        where: The file, for messages.

    Raises:
        InvalidModelFileError: inputs of a rank or size the layer cannot take (a window larger
            than its input, an image layer on a vector, merged shapes that differ).
    """
    return rule(kwargs, inputs, _Context(name, where))


@dataclass(frozen=True)
class _Context:
    name: str
    where: str

    def fail(self, why: str) -> InvalidModelFileError:
        return InvalidModelFileError(f"{self.where}: layer {self.name!r} {why}")

    def one(self, inputs: list[Shape]) -> Shape:
        if len(inputs) != 1:
            raise self.fail(f"takes one input; it is given {len(inputs)}")
        return inputs[0]

    def image(self, inputs: list[Shape]) -> Shape:
        shape = self.one(inputs)
        if len(shape) != 3:
            raise self.fail(f"takes an image (height, width, channels); its input is {shape}")
        return shape


#: A layer type's rule: (checked keyword arguments, input shapes, context) -> (output shape, parameters).
Rule = Callable[[dict[str, Any], list[Shape], _Context], tuple[Shape, int]]


def _window(size: int, kernel: int, stride: int, dilation: int, padding: str, context: _Context) -> int:
    """One spatial side after a convolution or pooling window (Keras's formula)."""
    if padding == "same":
        return -(-size // stride)
    span = dilation * (kernel - 1) + 1
    if span > size:
        raise context.fail(f"has a window of {span} over a side of {size}")
    return (size - span) // stride + 1


def _spatial(kwargs: dict[str, Any], shape: Shape, window: tuple[int, int], strides: tuple[int, int],
             context: _Context) -> tuple[int, int]:
    dilation = kwargs.get("dilation_rate", (1, 1))
    return (_window(shape[0], window[0], strides[0], dilation[0], kwargs["padding"], context),
            _window(shape[1], window[1], strides[1], dilation[1], kwargs["padding"], context))


def conv(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """A ``Conv2D``: its kernel over every input channel, for each filter."""
    height, width, channels = context.image(inputs)
    kernel = kwargs["kernel_size"]
    out = _spatial(kwargs, (height, width), kernel, kwargs["strides"], context)
    filters = kwargs["filters"]
    return (*out, filters), kernel[0] * kernel[1] * channels * filters + (filters if kwargs["use_bias"] else 0)


def depthwise(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """A ``DepthwiseConv2D``: one kernel per input channel and multiplier."""
    height, width, channels = context.image(inputs)
    kernel = kwargs["kernel_size"]
    out = _spatial(kwargs, (height, width), kernel, kwargs["strides"], context)
    filters = channels * kwargs["depth_multiplier"]
    return (*out, filters), kernel[0] * kernel[1] * filters + (filters if kwargs["use_bias"] else 0)


def pooling(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``MaxPooling2D`` and ``AveragePooling2D``: a window, no weights."""
    height, width, channels = context.image(inputs)
    pool = kwargs["pool_size"]
    out = _spatial(kwargs, (height, width), pool, kwargs["strides"] or pool, context)
    return (*out, channels), 0


def global_pooling(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``GlobalAveragePooling2D`` and ``GlobalMaxPooling2D``: one value per channel."""
    channels = context.image(inputs)[-1]
    return ((1, 1, channels) if kwargs["keepdims"] else (channels,)), 0


def zero_padding(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``ZeroPadding2D``: the image grown by its padding."""
    height, width, channels = context.image(inputs)
    padding = kwargs["padding"]
    if isinstance(padding, int):
        rows = columns = 2 * padding
    elif len(padding) == 2 and all(isinstance(p, int) for p in padding):
        rows, columns = 2 * padding[0], 2 * padding[1]
    elif len(padding) == 2:
        rows, columns = sum(padding[0]), sum(padding[1])
    else:
        raise context.fail(f"has padding {padding!r}; expected one, two or two pairs of numbers")
    return (height + rows, width + columns, channels), 0


def batch_norm(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``BatchNormalization``: its input's shape, and up to four parameters a channel."""
    shape = context.one(inputs)
    # gamma and beta where scaled / centred, and the moving mean and variance always
    return shape, shape[-1] * (2 + int(kwargs["center"]) + int(kwargs["scale"]))


def dense(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """A ``Dense`` layer, on the last axis of its input."""
    shape = context.one(inputs)
    units = kwargs["units"]
    # Keras's Dense acts on the last axis of any rank.
    return (*shape[:-1], units), shape[-1] * units + (units if kwargs["use_bias"] else 0)


def same(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """Layers whose output is their input's shape, without weights (activations, dropout)."""
    return context.one(inputs), 0


def flatten(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``Flatten``: every value in one axis."""
    return (math.prod(context.one(inputs)),), 0


def elementwise(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``Add`` and ``Multiply``: two or more inputs of one shape, broadcast as Keras does."""
    if len(inputs) < 2:
        raise context.fail(f"merges {len(inputs)} input; it needs two or more")
    if len({len(shape) for shape in inputs}) != 1:
        raise context.fail(f"merges inputs of different ranks {inputs}")
    out = []
    for sides in zip(*inputs, strict=True):  # broadcasting, as Keras's merge layers allow
        larger = {side for side in sides if side != 1}
        if len(larger) > 1:
            raise context.fail(f"merges shapes that differ {inputs}")
        out.append(larger.pop() if larger else 1)
    return tuple(out), 0


def concatenate(kwargs: dict[str, Any], inputs: list[Shape], context: _Context) -> tuple[Shape, int]:
    """``Concatenate``: inputs joined along the last axis."""
    if len(inputs) < 2:
        raise context.fail(f"joins {len(inputs)} input; it needs two or more")
    if len({shape[:-1] for shape in inputs}) != 1:
        raise context.fail(f"joins shapes that differ before the last axis {inputs}")
    return (*inputs[0][:-1], sum(shape[-1] for shape in inputs)), 0

