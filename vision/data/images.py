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
from typing import Any, Union

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

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]


def load_image(source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``source`` into an RGB uint8 array of shape (H, W, 3).

    Honours EXIF orientation, takes the first frame of animations, flattens transparency
    onto white, and maps grey, palette, CMYK and 16-bit images to 8-bit RGB.

    Args:
        source: A file path, encoded bytes, a PIL image, or an array (H, W), (H, W, 1),
            (H, W, 3) or (H, W, 4) of any integer or float dtype (floats in [0, 1]).
        max_pixels: Pixel-count cap; defaults to ``MAX_PIXELS``.

    Returns:
        A C-contiguous ``uint8`` array (H, W, 3).

    Raises:
        EmptyImageError, NotAnImageError, TruncatedImageError, ImageTooLargeError:
            with a message naming the input.
    """
    cap = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, cap)
    if isinstance(source, Image.Image):
        _check_pixel_count(source.size, cap, "image")
        return _pil_to_rgb(source)
    name, stream = _open_stream(source)
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
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise TruncatedImageError(f"{name} is truncated or corrupt ({error})") from None
    return _pil_to_rgb(image)


def _open_stream(source: ImageSource) -> tuple[str, io.BytesIO]:
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "the uploaded data"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = f"'{path.name}'"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidImageError(f"{name} does not exist") from None
        except IsADirectoryError:
            raise InvalidImageError(f"{name} is a folder, not an image file") from None
    else:
        raise InvalidImageError(
            f"cannot read an image from a {type(source).__name__}; "
            "pass a path, bytes, a PIL image or a numpy array"
        )
    if not data:
        raise EmptyImageError(f"{name} is empty (0 bytes)")
    return name, io.BytesIO(data)


def _check_pixel_count(size: tuple[int, int], cap: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"{name} has no pixels ({width}x{height})")
    if width * height > cap:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{cap:,}; resize it first"
        )


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
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
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


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


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model input; saved with every model and exported to the web.

    Images are resized to ``size`` with bilinear interpolation (half-pixel centres, no
    antialiasing: the same arithmetic as ``tf.image.resizeBilinear`` in TF.js), then each
    channel value ``v`` in 0..255 becomes ``v * scale + offset``.
    """

    size: tuple[int, int]
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    resize: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "scale": self.scale,
            "offset": self.offset,
            "resize": self.resize,
            "channels": "RGB",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        height, width = (int(v) for v in data["size"])
        return cls(
            size=(height, width),
            scale=float(data.get("scale", 1.0 / 255.0)),
            offset=float(data.get("offset", 0.0)),
            resize=str(data.get("resize", "bilinear")),
        )


def resized(images: Any, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """``images`` (H, W, C) or (N, H, W, C), any size, resized to ``size`` = (H, W) with
    exactly the arithmetic of ``preprocess``, as float32 on the 0-255 scale.

    For stacking images of any size into one batch. The values are not rounded back to
    uint8: a same-size resize with half-pixel centres is the identity, so ``preprocess``
    of the result equals ``preprocess`` of the original bit for bit, and a model sees the
    same input whichever path the image took.
    """
    return _resize(images, size, method).numpy()


def preprocess(images: Any, spec: Preprocessing) -> Any:
    """Resize and scale uint8 RGB images (H, W, 3) or (N, H, W, 3) into float32 model input.

    Written in TensorFlow ops so it runs inside ``tf.data`` maps and ``tf.function``s
    unchanged; called eagerly it returns an ``EagerTensor``.
    """
    return _resize(images, spec.size, spec.resize) * spec.scale + spec.offset


def _resize(images: Any, size: tuple[int, int], method: str) -> Any:
    # The one resize: TF's bilinear with half-pixel centres and no antialiasing, which is
    # what tf.image.resizeBilinear does in the TF.js page. PIL's bilinear antialiases when
    # it shrinks and would give the model other pixels than it was trained on.
    import tensorflow as tf  # deferred: decoding alone should not pay for TensorFlow

    pixels = tf.cast(tf.convert_to_tensor(images), tf.float32)
    # With half-pixel centres a same-size resize samples exactly at the source pixels,
    # so no special case is needed for inputs already at the model's size.
    return tf.image.resize(pixels, size, method=method, antialias=False)
