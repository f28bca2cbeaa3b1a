"""Image decoding and the one preprocessing function every path shares.

``load_image`` turns whatever a user hands us (a path, bytes, a PIL image, an array)
into an RGB ``uint8`` array of shape (H, W, 3), or raises a specific ``InvalidImageError``.
``preprocess`` turns such arrays into model input. Training, inference, explanation and
the exported web model all use ``preprocess`` (or, in the browser, the parameters that
``Preprocessing.to_dict`` writes), so every path sees the same pixels.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from vision.errors import (
    EmptyImageError,
    ImageTooLargeError,
    InvalidImageError,
    NotAnImageError,
    TruncatedImageError,
)

# Partially-downloaded files must fail loudly instead of being padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Largest image accepted, in pixels (about 8000 x 5000). Pillow's own bomb guard only
#: warns below twice its limit; we refuse outright and say why.
MAX_PIXELS = int(os.environ.get("VISION_MAX_PIXELS", 40_000_000))

#: The formats people upload, decoded by Pillow itself (JPEG covers MPO, phone photos). Everything else (EPS, which runs
#: Ghostscript; PSD; ICNS; ...) is refused before any plugin looks at the bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
_FORMAT_NAMES = "JPEG, PNG, GIF, BMP, WebP or TIFF"

#: Longest side of an image shown to a person (the Grad-CAM overlay), and the least an image
#: decoded for a model alone is reduced to: a 40-megapixel photo is 120 MB as RGB and 480 MB
#: as floats, while the picture on screen and a 224-px model need a few megabytes of it.
DISPLAY_SIDE = 1024
#: An image decoded only for a model keeps this many times the model's input side (at least
#: ``DISPLAY_SIDE``): images up to that size decode exactly as before; larger ones are
#: box-filtered down to it first, still several pixels per pixel the model's bilinear resize reads.
INPUT_SIDE_FACTOR = 4

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]


def input_side(size: tuple[int, int]) -> int:
    """The ``max_side`` to decode at for a model whose input is ``size`` = (H, W).

    Example: 1024 for a 224 x 224 model, so a 7296 x 5472 photo is decoded at 1024 x 768.
    """
    return max(DISPLAY_SIDE, INPUT_SIDE_FACTOR * max(size))


def load_image(source: ImageSource, max_pixels: int | None = None,
               max_side: int | None = None) -> np.ndarray:
    """Decode ``source`` into an RGB uint8 array of shape (H, W, 3).

    Honours EXIF orientation, takes the first frame of animations, flattens transparency
    onto white, and maps grey, palette, CMYK and 16-bit images to 8-bit RGB.

    Args:
        source: A file path, encoded bytes, a PIL image, or an array (H, W), (H, W, 1),
            (H, W, 3) or (H, W, 4) of any integer or float dtype (floats in [0, 1]).
        max_pixels: Pixel-count cap; defaults to ``MAX_PIXELS``. Checked on the size the
            file declares, before anything is decoded, whatever ``max_side`` is.
        max_side: If given, an image whose longest side is larger comes back reduced (aspect
            kept, box filter) so that its longest side is ``max_side``. A JPEG is then decoded
            at 1/2, 1/4 or 1/8 scale directly (Pillow's draft mode), so the full-size pixels
            never exist in memory. ``input_side`` gives the value for a model's input size.
            None (the default) decodes at full size.

    Returns:
        A C-contiguous ``uint8`` array (H, W, 3).

    Raises:
        EmptyImageError, NotAnImageError, TruncatedImageError, ImageTooLargeError:
            with a message naming the input.
    """
    cap = MAX_PIXELS if max_pixels is None else max_pixels
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels; got {max_side}")
    if isinstance(source, np.ndarray):
        return _shrunk_array(_array_to_rgb(source, cap), max_side)
    if isinstance(source, Image.Image):
        _check_pixel_count(source.size, cap, "image")
        # A transposed copy: the in-place steps that follow must not change the caller's image.
        return _pil_to_rgb(ImageOps.exif_transpose(source), max_side)
    name, stream = _open_stream(source)
    with stream:  # decoded while open: a path's file is streamed, never read whole into memory
        return _decode(name, stream, cap, max_side)


def _decode(name: str, stream: BinaryIO, cap: int, max_side: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # We enforce our own cap below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.init()  # registers every plugin once; ``formats`` then picks among them
            image = Image.open(stream, formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name} is not an image in an accepted format ({_FORMAT_NAMES})") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"{name} is too large to decode safely: over the limit of {cap:,} pixels; resize it first"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # a header cut short (e.g. a truncated JPEG)
        raise TruncatedImageError(f"{name} is truncated or corrupt ({error})") from None
    _check_pixel_count(image.size, cap, name)
    try:
        image.seek(0)  # first frame of an animation
        if max_side is not None and max(image.size) > max_side:
            # Before load: a JPEG then decodes straight at a power-of-two reduction no smaller
            # than the target; every other format ignores it.
            image.draft("RGB", _fitted(image.size, max_side))
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise TruncatedImageError(f"{name} is truncated or corrupt ({error})") from None
    return _pil_to_rgb(image, max_side)


def _open_stream(source: ImageSource) -> tuple[str, BinaryIO]:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise EmptyImageError("the uploaded data is empty (0 bytes)")
        return "the uploaded data", io.BytesIO(bytes(source))
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidImageError(
            f"cannot read an image from a {type(source).__name__}; "
            "pass a path, bytes, a PIL image or a numpy array"
        )
    path = Path(source)
    name = f"'{path.name}'"
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InvalidImageError(f"{name} does not exist") from None
    except IsADirectoryError:
        raise InvalidImageError(f"{name} is a folder, not an image file") from None
    if os.fstat(handle.fileno()).st_size == 0:
        handle.close()
        raise EmptyImageError(f"{name} is empty (0 bytes)")
    return name, handle


def _check_pixel_count(size: tuple[int, int], cap: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"{name} has no pixels ({width}x{height})")
    if width * height > cap:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{cap:,}; resize it first"
        )


def _fitted(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` = (W, H) scaled so that its longer side is ``max_side``."""
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _shrunk(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` with its longest side at most ``max_side``: the same object, reduced in place
    (so a TIFF's orientation tag survives), or for palette and bilevel images a reduced copy."""
    if max_side is None or max(image.size) <= max_side:
        return image
    if image.mode in ("1", "P", "PA"):
        # Pillow resizes these by picking the nearest pixel; averaging needs real colours.
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info
                              else "L" if image.mode == "1" else "RGB")
    # A box filter averages every source pixel into the output (an area mean): no aliasing,
    # and the model's own bilinear resize then starts from a faithful smaller picture.
    image.thumbnail((max_side, max_side), Image.Resampling.BOX, reducing_gap=None)
    return image


def _shrunk_array(array: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None or max(array.shape[:2]) <= max_side:
        return array
    return np.ascontiguousarray(np.asarray(_shrunk(Image.fromarray(array), max_side)))


def _pil_to_rgb(image: Image.Image, max_side: int | None = None) -> np.ndarray:
    """``image`` (ours to change: decoded here, or a copy) as RGB uint8, at most ``max_side``."""
    image = _shrunk(image, max_side)
    # In place: the returned copy would be one more full-size image.
    ImageOps.exif_transpose(image, in_place=True)
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _array_to_rgb(np.asarray(image), MAX_PIXELS)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode == "LA" or mode == "PA":
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":  # convert("RGB") of an RGB image would copy it for nothing
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _array_to_rgb(array: np.ndarray, cap: int) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InvalidImageError(
            f"expected an array of shape (H, W), (H, W, 3) or (H, W, 4); got {array.shape}"
        )
    _check_pixel_count((array.shape[1], array.shape[0]), cap, "array")
    array = _to_uint8(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    elif array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        array = (array[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InvalidImageError("image array holds NaN or infinite values")
        # Floats are taken as [0, 1] unless they are clearly on the 0-255 scale.
        scale = 1.0 if array.max(initial=0.0) > 1.0 else 255.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 16-bit (and wider) samples keep their top 8 bits when they use the range.
        if array.max(initial=0) > 255:
            return (np.clip(array, 0, 65535) >> 8).astype(np.uint8)
        return np.clip(array, 0, 255).astype(np.uint8)
    raise InvalidImageError(f"unsupported image array dtype {array.dtype}")


#: How an image is cut before the resize: not at all, or to its centred square (Teachable Machine).
CROPS = ("none", "center")
#: RGB -> gray as Teachable Machine's library computes it for a grayscale model.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model input; saved with every model and exported to the web.

    Images are resized to ``size`` with bilinear interpolation (half-pixel centres, no
    antialiasing: the same arithmetic as ``tf.image.resizeBilinear`` in TF.js), then each
    channel value ``v`` in 0..255 becomes ``v * scale + offset``.

    Models imported from Teachable Machine see what its library feeds them: ``crop="center"``
    takes the centred square before the resize, and ``grayscale`` reduces RGB to one channel
    with its luma weights.
    """

    size: tuple[int, int]
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    resize: str = "bilinear"
    crop: str = "none"
    grayscale: bool = False

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"preprocessing crop must be one of {CROPS}; got {self.crop!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "size": list(self.size),
            "scale": self.scale,
            "offset": self.offset,
            "resize": self.resize,
            "channels": "L" if self.grayscale else "RGB",
        }
        if self.crop != "none":  # written only when used, so existing bundles' files are unchanged
            data["crop"] = self.crop
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        height, width = (int(v) for v in data["size"])
        return cls(
            size=(height, width),
            scale=float(data.get("scale", 1.0 / 255.0)),
            offset=float(data.get("offset", 0.0)),
            resize=str(data.get("resize", "bilinear")),
            crop=str(data.get("crop", "none")),
            grayscale=data.get("channels", "RGB") == "L",
        )


def resized(images: Any, size: tuple[int, int], method: str = "bilinear", crop: str = "none") -> np.ndarray:
    """``images`` (H, W, C) or (N, H, W, C), any size, resized to ``size`` = (H, W) with
    exactly the arithmetic of ``preprocess``, as float32 on the 0-255 scale.

    For stacking images of any size into one batch. The values are not rounded back to
    uint8: a same-size resize with half-pixel centres is the identity, so ``preprocess``
    of the result equals ``preprocess`` of the original bit for bit, and a model sees the
    same input whichever path the image took.
    """
    return _resize(images, size, method, crop).numpy()


def preprocess(images: Any, spec: Preprocessing) -> Any:
    """Resize and scale uint8 RGB images (H, W, 3) or (N, H, W, 3) into float32 model input.

    Written in TensorFlow ops so it runs inside ``tf.data`` maps and ``tf.function``s
    unchanged; called eagerly it returns an ``EagerTensor``.
    """
    pixels = _resize(images, spec.size, spec.resize, spec.crop)
    if spec.grayscale:
        import tensorflow as tf  # lazy: decoding and resizing on NumPy never pay for TensorFlow

        # Teachable Machine's luma weights; linear, so doing it after the resize is exact.
        pixels = tf.reduce_sum(pixels * tf.constant(GRAY_WEIGHTS), axis=-1, keepdims=True)
    return pixels * spec.scale + spec.offset


def _resize(images: Any, size: tuple[int, int], method: str, crop: str = "none") -> Any:
    # The one resize: TF's bilinear with half-pixel centres and no antialiasing, which is
    # what tf.image.resizeBilinear does in the TF.js page. PIL's bilinear antialiases when
    # it shrinks and would give the model other pixels than it was trained on.
    import tensorflow as tf  # lazy: decoding alone should not pay for TensorFlow

    pixels = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if crop == "center":
        # Dynamic shapes: the TFLite and SavedModel wrappers take images of any size.
        shape = tf.shape(pixels)
        height, width = shape[-3], shape[-2]
        side = tf.minimum(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        pixels = pixels[..., top:top + side, left:left + side, :]
    # With half-pixel centres a same-size resize samples exactly at the source pixels,
    # so no special case is needed for inputs already at the model's size.
    return tf.image.resize(pixels, size, method=method, antialias=False)
