"""A JPEG's EXIF orientation in TensorFlow graph ops, applied as Pillow's ``ImageOps.exif_transpose``
applies it, so a SavedModel that takes encoded photos answers on a phone's sideways JPEG as the
library does.

Phones store pixels as the sensor read them and write how to turn them in EXIF tag 0x0112
(orientation 1-8). ``tf.io.decode_jpeg`` ignores it. ``orientation`` walks the JPEG's marker
segments to the first APP1 ``Exif`` block and reads the tag from its first IFD, in either byte
order. Anything malformed (a segment or entry past the end, a bad byte order, a value outside
1-8) reads as 1, as Pillow then leaves the image alone. Every read is bounds-checked and the
walks are bounded, so a hostile file costs at most a few hundred small graph steps.
"""

from __future__ import annotations

from typing import Any

#: Marker segments walked before giving up on finding EXIF (real JPEGs have a handful).
MAX_SEGMENTS = 64
#: IFD entries read (IFD0 of a phone photo has about a dozen).
MAX_ENTRIES = 256
_ORIENTATION_TAG = 0x0112
_SHORT, _LONG = 3, 4


def orientation(data: Any) -> Any:
    """The EXIF orientation (an int32 scalar, 1-8) of one encoded JPEG (a scalar ``tf.string``);
    1 when it has none or it cannot be read."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    raw = tf.io.decode_raw(data, tf.uint8)
    size = tf.size(raw)
    padded = tf.concat([raw, tf.zeros([1], tf.uint8)], axis=0)  # a read past the end gives 0

    def byte(at: Any) -> Any:
        return tf.cast(tf.gather(padded, tf.clip_by_value(at, 0, size)), tf.int32)

    tiff, end = _exif_block(size, byte)
    found = _tagged_value(tiff, end, byte)
    return tf.where((found >= 1) & (found <= 8), found, 1)


def _exif_block(size: Any, byte: Any) -> tuple[Any, Any]:
    """Where the first APP1 ``Exif\\0\\0`` block's TIFF header starts and where its segment ends
    (both -1 when there is none before the image data)."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    exif = tf.constant([0x45, 0x78, 0x69, 0x66, 0, 0], tf.int32)

    def step(at: Any, tiff: Any, end: Any) -> tuple[Any, Any, Any]:
        length = byte(at + 2) * 256 + byte(at + 3)
        header = tf.stack([byte(at + 4 + i) for i in range(6)])
        is_exif = (byte(at + 1) == 0xE1) & tf.reduce_all(tf.equal(header, exif)) & (at + 2 + length <= size)
        return (at + 2 + length, tf.where(is_exif, at + 10, tiff), tf.where(is_exif, at + 2 + length, end))

    def more(at: Any, tiff: Any, end: Any) -> Any:
        # A marker (0xFF, then neither SOS nor EOI, which end the headers) with its length in the file.
        return ((tiff < 0) & (at + 4 <= size) & (byte(at) == 0xFF) & (byte(at + 1) != 0xDA)
                & (byte(at + 1) != 0xD9) & (byte(at + 2) * 256 + byte(at + 3) >= 2))

    starts_as_jpeg = (size >= 4) & (byte(0) == 0xFF) & (byte(1) == 0xD8)
    first = tf.where(starts_as_jpeg, 2, size)  # not a JPEG: the walk ends at once
    _, tiff, end = tf.while_loop(more, step, (first, tf.constant(-1), tf.constant(-1)),
                                 maximum_iterations=MAX_SEGMENTS)
    return tiff, end


def _tagged_value(tiff: Any, end: Any, byte: Any) -> Any:
    """The orientation entry's value in the first IFD of the TIFF block at ``tiff`` (ending at
    ``end``), or 0 when the block, its byte order or the entry is missing or out of bounds."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    little = (byte(tiff) == 0x49) & (byte(tiff + 1) == 0x49)
    big = (byte(tiff) == 0x4D) & (byte(tiff + 1) == 0x4D)

    def number(at: Any, width: int) -> Any:
        places = [byte(at + i) * (256 ** i) for i in range(width)]
        reversed_places = [byte(at + i) * (256 ** (width - 1 - i)) for i in range(width)]
        return tf.where(little, tf.add_n(places), tf.add_n(reversed_places))

    ifd = tiff + number(tiff + 4, 4)
    count = tf.where(ifd + 2 <= end, number(ifd, 2), 0)

    def read(i: Any, found: Any) -> tuple[Any, Any]:
        entry = ifd + 2 + 12 * i
        kind = number(entry + 2, 2)
        value = tf.where(kind == _SHORT, number(entry + 8, 2), tf.where(kind == _LONG, number(entry + 8, 4), 0))
        hit = (found == 0) & (entry + 12 <= end) & (number(entry, 2) == _ORIENTATION_TAG)
        return i + 1, tf.where(hit, value, found)

    _, found = tf.while_loop(lambda i, found: (i < tf.minimum(count, MAX_ENTRIES)) & (found == 0), read,
                             (tf.constant(0), tf.constant(0)), maximum_iterations=MAX_ENTRIES)
    return tf.where((tiff >= 0) & (little | big) & (ifd >= tiff) & (ifd < end), found, 0)


def oriented(pixels: Any, orientation: Any) -> Any:
    """``pixels`` (H, W, C) turned as ``ImageOps.exif_transpose`` turns an image of that orientation."""
    import tensorflow as tf  # lazy: serve/rest.py imports savedmodel, and so this module, without TensorFlow

    branches = [
        lambda: pixels,  # 1: as stored
        lambda: pixels[:, ::-1],  # 2: FLIP_LEFT_RIGHT
        lambda: pixels[::-1, ::-1],  # 3: ROTATE_180
        lambda: pixels[::-1],  # 4: FLIP_TOP_BOTTOM
        lambda: tf.transpose(pixels, [1, 0, 2]),  # 5: TRANSPOSE
        lambda: tf.image.rot90(pixels, k=3),  # 6: ROTATE_270 (a quarter turn clockwise)
        lambda: tf.transpose(pixels, [1, 0, 2])[::-1, ::-1],  # 7: TRANSVERSE
        lambda: tf.image.rot90(pixels, k=1),  # 8: ROTATE_90 (a quarter turn anticlockwise)
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)
