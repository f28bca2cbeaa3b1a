"""``vision.data.images.load_image(data, max_side=...)`` in TensorFlow graph ops: the pixels
Pillow gives the library, computed inside a SavedModel that takes encoded images, so TF Serving
answers as the app does.

An image larger than ``max_side`` is reduced the way ``load_image`` reduces it: a JPEG decodes
at 1/2, 1/4 or 1/8 scale (libjpeg's scaled decoding, Pillow's ``draft``; TF's ``ratio`` gives the
same pixels), then Pillow's ``thumbnail`` with its BOX filter, mirrored here in its own
arithmetic: 22-bit fixed-point coefficients, a horizontal pass rounded to 8 bits, then a
vertical one, in float64 (integers below 2**53, so every sum is exact), and for transparent
images on premultiplied alpha. Transparency is then flattened onto white, grey repeated into
three channels, as ``load_image`` does.

A JPEG's EXIF orientation is applied last, as ``load_image`` applies it (``graph_exif``): a
phone's sideways photo answers as it does in the library.

What TensorFlow's decoders cannot do is not done: JPEG, PNG, GIF and BMP only (no WebP or
TIFF in TF 2.19), EXIF orientation in JPEGs only (a PNG's rare eXIf chunk is ignored), and a
GIF's transparent colour is not flattened.
"""

from __future__ import annotations

from typing import Any

from vision.export.graph_exif import orientation, oriented

#: Pillow's fixed-point precision for 8-bit resampling (``PRECISION_BITS`` in Resample.c).
_PRECISION = 2.0**22
#: The reductions libjpeg decodes at directly.
_DRAFT_SCALES = (1, 2, 4, 8)


def decode(data: Any, max_side: int) -> Any:
    """One encoded image (a scalar ``tf.string``) as RGB uint8 (H, W, 3), at most ``max_side``
    on its longer side."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    pixels = tf.cast(_decoded(data, max_side), tf.float64)
    channels = tf.shape(pixels)[-1]
    colour = tf.cond(channels >= 3, lambda: pixels[..., :3], lambda: tf.tile(pixels[..., :1], [1, 1, 3]))
    # Two or four channels: the last one is alpha.
    opaque = tf.fill(tf.shape(pixels[..., :1]), tf.constant(255.0, tf.float64))
    alpha = tf.cond(channels % 2 == 0, lambda: pixels[..., -1:], lambda: opaque)
    rgba = tf.concat([colour, alpha], axis=-1)
    height, width = tf.shape(rgba)[0], tf.shape(rgba)[1]
    rgba = tf.cond(tf.maximum(height, width) > max_side,
                   lambda: _reduced(rgba, *_thumbnail_size(height, width, max_side)), lambda: rgba)
    turn = tf.cond(tf.io.is_jpeg(data), lambda: orientation(data), lambda: tf.constant(1))
    return _on_white(oriented(rgba, turn))


def _decoded(data: Any, max_side: int) -> Any:
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    def jpeg() -> Any:
        # The accurate integer DCT, as Pillow decodes (TF's default, the fast DCT, moved pixels
        # by up to 11 levels on the package photos). ``ratio`` must be a Python int: one branch each.
        scaled = [lambda ratio=ratio: tf.io.decode_jpeg(data, dct_method="INTEGER_ACCURATE", ratio=ratio)
                  for ratio in _DRAFT_SCALES]
        return tf.switch_case(_draft_index(data, max_side), scaled)

    return tf.cond(tf.io.is_jpeg(data), jpeg, lambda: tf.io.decode_image(data, expand_animations=False))


def _draft_index(data: Any, max_side: int) -> Any:
    """Which of ``_DRAFT_SCALES`` Pillow's ``JpegImageFile.draft`` picks for ``load_image``'s
    request (1 unless the image is larger than ``max_side``): the largest that keeps the image at
    least the size ``load_image`` asks for."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.float64)
    height, width = shape[0], shape[1]
    fit = max_side / tf.maximum(height, width)  # images._fitted, rounding half to even as Python does
    wanted_w, wanted_h = tf.maximum(tf.round(width * fit), 1.0), tf.maximum(tf.round(height * fit), 1.0)
    scale = tf.minimum(tf.math.floordiv(width, wanted_w), tf.math.floordiv(height, wanted_h))
    scale = tf.where(tf.maximum(height, width) > max_side, scale, 1.0)
    return tf.reduce_sum(tf.cast(scale >= tf.constant(_DRAFT_SCALES[1:], tf.float64), tf.int32))


def _thumbnail_size(height: Any, width: Any, max_side: int) -> tuple[Any, Any]:
    """``Image.thumbnail((max_side, max_side))``'s size: the longer side becomes ``max_side``, the
    other the floor or ceiling (whichever keeps the aspect closer, the floor on a tie), at least 1."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    side = tf.constant(float(max_side), tf.float64)
    aspect = w / h
    # Wide: the height is rounded, judged by |aspect - side / n| (0 for n == 0, as Pillow's key).
    low, high = tf.floor(side / aspect), tf.math.ceil(side / aspect)

    def wide_error(n: Any) -> Any:
        return tf.where(n == 0, tf.zeros_like(n), tf.abs(aspect - side / tf.where(n == 0, tf.ones_like(n), n)))

    wide_h = tf.maximum(tf.where(wide_error(low) <= wide_error(high), low, high), 1.0)
    # Tall or square (Pillow's ``x / y >= aspect`` with x == y): the width is rounded, by |aspect - n / side|.
    low, high = tf.floor(side * aspect), tf.math.ceil(side * aspect)
    tall_w = tf.maximum(tf.where(tf.abs(aspect - low / side) <= tf.abs(aspect - high / side), low, high), 1.0)
    tall = aspect <= 1.0
    return tf.cast(tf.where(tall, side, wide_h), tf.int32), tf.cast(tf.where(tall, tall_w, side), tf.int32)


def _reduced(rgba: Any, height: Any, width: Any) -> Any:
    """Pillow's RGBA resize with the BOX filter: premultiply, horizontal pass, vertical pass,
    unpremultiply; every step rounded as Pillow rounds it."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    colour, alpha = rgba[..., :3], rgba[..., 3:]
    product = colour * alpha + 128.0  # MULDIV255
    premultiplied = tf.concat([tf.floor((tf.floor(product / 256.0) + product) / 256.0), alpha], axis=-1)
    across = _box_pass(premultiplied, width, axis=1)
    resized = _box_pass(across, height, axis=0)
    colour, alpha = resized[..., :3], resized[..., 3:]
    unpremultiplied = tf.minimum(tf.floor(255.0 * colour / tf.maximum(alpha, 1.0)), 255.0)
    keep = tf.logical_or(tf.equal(alpha, 0.0), tf.equal(alpha, 255.0))
    return tf.concat([tf.where(keep, colour, unpremultiplied), alpha], axis=-1)


def _box_pass(pixels: Any, size: Any, axis: int) -> Any:
    """One of Pillow's resampling passes along ``axis`` (1: horizontal, 0: vertical) to ``size``."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    coefficients = _box_coefficients(tf.shape(pixels)[axis], size)  # (size, input), integers
    if axis == 1:
        summed = tf.einsum("hwc,ow->hoc", pixels, coefficients)
    else:
        summed = tf.einsum("hwc,oh->owc", pixels, coefficients)
    return tf.clip_by_value(tf.floor((summed + _PRECISION / 2) / _PRECISION), 0.0, 255.0)


def _box_coefficients(in_size: Any, out_size: Any) -> Any:
    """Pillow's ``precompute_coeffs`` for the BOX filter, normalised to 22-bit integers: output
    pixel ``o`` averages the input pixels whose centres fall in its window."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    in_size, out_size = tf.cast(in_size, tf.float64), tf.cast(out_size, tf.float64)
    scale = in_size / out_size
    filter_scale = tf.maximum(scale, 1.0)
    support = 0.5 * filter_scale
    center = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    first = tf.maximum(tf.floor(center - support + 0.5), 0.0)[:, None]  # C's (int) of a positive value
    last = tf.minimum(tf.floor(center + support + 0.5), in_size)[:, None]
    pixel = tf.range(in_size, dtype=tf.float64)[None, :]
    at = ((pixel - center[:, None]) + 0.5) * (1.0 / filter_scale)
    weights = tf.cast((pixel >= first) & (pixel < last) & (at > -0.5) & (at <= 0.5), tf.float64)
    share = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    return tf.where(weights > 0, tf.floor(0.5 + share * _PRECISION), 0.0)


def _on_white(rgba: Any) -> Any:
    """Alpha flattened onto white: ``Image.alpha_composite`` over white gives exactly these
    values for every (colour, alpha) pair (checked on all 65,536)."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    colour = tf.cast(rgba[..., :3], tf.float32)
    alpha = tf.cast(rgba[..., 3:], tf.float32) / 255.0
    return tf.cast(tf.round(colour * alpha + 255.0 * (1.0 - alpha)), tf.uint8)
