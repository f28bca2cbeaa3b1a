"""Per-channel uint8 weights for TF.js graph models.

TF.js 4.22's weight format quantizes with one affine range per tensor. After the converter
folds batch norm into the convolutions, the channels of one kernel span ranges hundreds of
times apart, and a single 256-level range flattens the small ones: uint8 weights kept the
Keras top-1 of EfficientNet-Lite0 on only 88 % of real photos. With one range per output
channel (what TFLite's int8 weights do) the same 8 bits keep it.

The format is TF.js's own, with one more quantization dtype, ``uint8-per-channel``: the
tensor's bytes are ``uint8[n]`` (row-major), then ``float32 min[C]``, then ``float32
scale[C]`` for the ``C`` channels along ``axis``, and ``value = q * scale[c] + min[c]``.
A few kernels are too sensitive even for that (EfficientNet-Lite0's first depthwise
convolution alone moved a probability by 0.06): ``uint8_kernels`` measures each kernel's
effect on the model's answers for the export's probe images and keeps the worst in float16,
within a small share of the weights. Everything else (biases, the "unknown" detector's
reference features) is float16.

``web/classifier.js`` (``fetchArtifacts``) expands these to float32 before handing the model
to TF.js; a stock ``tf.loadGraphModel`` refuses the unknown dtype instead of misreading it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np

from vision.errors import ExportError

PER_CHANNEL = "uint8-per-channel"
#: TF.js's converter writes shards of this size; static hosts and caches like them small.
SHARD_BYTES = 4 * 1024 * 1024
_ITEM_BYTES = {"float32": 4, "int32": 4, "bool": 1}
#: Share of the kernel weights that may stay float16 (each costs one more byte).
FLOAT16_SHARE = 0.06


def channel_axis(shape: list[int]) -> int:
    """The axis holding a kernel's output channels: the last one longer than 1 (conv
    ``[h, w, in, out]`` -> 3, depthwise ``[h, w, channels, 1]`` -> 2, dense ``[in, out]`` -> 1)."""
    longer = [axis for axis, size in enumerate(shape) if size > 1]
    return longer[-1] if longer else len(shape) - 1


def encode_per_channel(values: np.ndarray, axis: int) -> bytes:
    """``values`` as uint8 with one ``[min, max]`` range per slice along ``axis``."""
    moved = np.moveaxis(values.astype(np.float32), axis, -1)
    low, high = moved.reshape(-1, moved.shape[-1]).min(0), moved.reshape(-1, moved.shape[-1]).max(0)
    scale = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint((moved - low) / scale), 0, 255).astype(np.uint8)
    return np.moveaxis(codes, -1, axis).tobytes() + low.astype("<f4").tobytes() + scale.astype("<f4").tobytes()


def decode_per_channel(data: bytes, shape: list[int], axis: int) -> np.ndarray:
    """The float32 tensor ``encode_per_channel`` wrote (what the page computes in JS)."""
    count, channels = int(np.prod(shape)), shape[axis]
    codes = np.frombuffer(data[:count], np.uint8).reshape(shape)
    low = np.frombuffer(data[count:count + 4 * channels], "<f4")
    scale = np.frombuffer(data[count + 4 * channels:count + 8 * channels], "<f4")
    view = [1] * len(shape)
    view[axis] = channels
    return codes.astype(np.float32) * scale.reshape(view) + low.reshape(view)


def uint8_kernels(model, inputs: np.ndarray, share: float = FLOAT16_SHARE) -> list[str]:
    """Names of the layers whose kernels can be per-channel uint8: each kernel is quantized
    alone, and the mean KL divergence of the model's probabilities on ``inputs`` ranks
    them; the most harmful stay float16 while they fit in ``share`` of all kernel weights."""

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    reference = np.asarray(copy(inputs, training=False), np.float64)
    kernels = [layer for layer in copy.layers if any(w.ndim >= 2 for w in layer.get_weights())]
    harm = {}
    for layer in kernels:
        original = layer.get_weights()
        layer.set_weights([_round_trip(w) if w.ndim >= 2 else w for w in original])
        probabilities = np.asarray(copy(inputs, training=False), np.float64)
        layer.set_weights(original)
        harm[layer.name] = float(np.mean(np.sum(reference * (np.log(reference + 1e-9)
                                                             - np.log(probabilities + 1e-9)), axis=1)))
    sizes = {layer.name: sum(w.size for w in layer.get_weights() if w.ndim >= 2) for layer in kernels}
    budget, kept = share * sum(sizes.values()), set()
    for name in sorted(harm, key=harm.get, reverse=True):
        if harm[name] > 0 and sizes[name] <= budget:
            kept.add(name)
            budget -= sizes[name]
    return [name for name in sizes if name not in kept]


def _round_trip(values: np.ndarray) -> np.ndarray:
    axis = channel_axis(list(values.shape))
    return decode_per_channel(encode_per_channel(values, axis), list(values.shape), axis)


def quantize_graph_model(folder: str | Path, uint8_layers: Iterable[str]) -> None:
    """Rewrite the float32 weights of the TF.js graph model in ``folder`` in place: the
    kernels of ``uint8_layers`` as per-channel uint8, other float weights as float16,
    integer constants unchanged.

    Args:
        uint8_layers: Keras layer names (``uint8_kernels``); the converter names weights by
            their layer (``…/block0_dwconv_1/depthwise/…``).

    Raises:
        ExportError: the folder is not an unquantized TF.js graph model.
    """
    folder = Path(folder)
    try:
        model = json.loads((folder / "model.json").read_text())
        groups = model["weightsManifest"]
    except (OSError, ValueError, KeyError) as error:
        raise ExportError(f"'{folder}' is not a TF.js graph model: {error}") from None
    layers = [re.compile(rf"(^|/){re.escape(name)}(_\d+)?/") for name in uint8_layers]
    specs, chunks = [], []
    for group in groups:
        data = b"".join((folder / name).read_bytes() for name in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if "quantization" in spec or spec["dtype"] not in _ITEM_BYTES:
                raise ExportError(f"weight {spec['name']!r} is already quantized or not numeric")
            size = int(np.prod(spec["shape"], dtype=np.int64)) * _ITEM_BYTES[spec["dtype"]]
            raw, offset = data[offset:offset + size], offset + size
            spec, raw = _requantized(spec, raw, any(p.search(spec["name"]) for p in layers))
            specs.append(spec)
            chunks.append(raw)
        for name in group["paths"]:
            (folder / name).unlink()
    data = b"".join(chunks)
    count = max(1, -(-len(data) // SHARD_BYTES))
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    for i, name in enumerate(paths):
        (folder / name).write_bytes(data[i * SHARD_BYTES:(i + 1) * SHARD_BYTES])
    model["weightsManifest"] = [{"paths": paths, "weights": specs}]
    (folder / "model.json").write_text(json.dumps(model))


def _requantized(spec: dict, raw: bytes, uint8: bool) -> tuple[dict, bytes]:
    if spec["dtype"] != "float32":
        return spec, raw
    values = np.frombuffer(raw, "<f4").reshape(spec["shape"])
    if values.ndim >= 2 and uint8:
        axis = channel_axis(spec["shape"])
        return ({**spec, "quantization": {"dtype": PER_CHANNEL, "axis": axis}},
                encode_per_channel(values, axis))
    return {**spec, "quantization": {"dtype": "float16"}}, values.astype("<f2").tobytes()
