"""Decoding every odd and hostile input, and the shared preprocessing."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.data.images import DISPLAY_SIDE, Preprocessing, input_side, load_image, preprocess
from vision.errors import (
    EmptyImageError,
    ImageTooLargeError,
    InvalidImageError,
    NotAnImageError,
    TruncatedImageError,
)

from conftest import REPO, SHAPES_MODEL

pytestmark = pytest.mark.usefixtures("no_stray_writes")


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_rgb_png_from_path_bytes_pil_and_array(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    path = _save(Image.fromarray(pixels), tmp_path / "a.png")
    for source in (path, str(path), path.read_bytes(), Image.open(path), pixels):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (12, 20, 3)
        np.testing.assert_array_equal(out, pixels)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(image, tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)  # portrait after transposition
    assert out[2, 10, 2] > 200 and out[2, 10, 0] < 60  # the blue strip is now on top


@pytest.mark.parametrize("mode, colour, tolerance", [
    ("L", (81, 81, 81), 1),  # ITU-R 601 luma of (200, 30, 30), on every channel
    ("LA", (81, 81, 81), 1),
    ("RGBA", (200, 30, 30), 0),
    ("CMYK", (200, 30, 30), 8),  # through JPEG
    ("P", (204, 51, 51), 0),  # the nearest colour of Pillow's web palette
])
def test_modes_become_rgb_with_their_colours(tmp_path, mode, colour, tolerance):
    image = Image.new("RGB", (16, 8), (200, 30, 30)).convert(mode, dither=Image.Dither.NONE)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    out = load_image(_save(image, tmp_path / f"x{suffix}"))
    assert out.shape == (8, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - colour).max() <= tolerance, out[0, 0]


def test_palette_transparency_flattens_onto_white(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    image.info["transparency"] = 0
    out = load_image(_save(image, tmp_path / "p.png", transparency=0))
    assert (out == 255).all()


def test_rgba_alpha_flattens_onto_white(tmp_path):
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., 0] = 255
    pixels[:, :2, 3] = 255  # left half opaque red, right half transparent
    out = load_image(_save(Image.fromarray(pixels, "RGBA"), tmp_path / "a.png"))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 3]) == (255, 255, 255)


def test_16_bit_greyscale_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    path = _save(Image.fromarray(ramp), tmp_path / "deep.png")
    out = load_image(path)
    assert out.shape == (8, 8, 3)
    assert out.min() == 0 and out.max() == 255  # not clipped to white, not crushed to black


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = load_image(path)
    assert out[5, 5, 0] > 200 and out[5, 5, 1] < 50


def test_float_and_single_channel_arrays():
    out = load_image(np.full((5, 6, 1), 0.5, np.float32))
    assert out.shape == (5, 6, 3) and out[0, 0, 0] == 128


def test_zero_bytes_is_empty(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty"):
        load_image(path)
    with pytest.raises(EmptyImageError):
        load_image(b"")


def test_truncated_png_and_jpeg(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG" if suffix == ".png" else "JPEG")
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        with pytest.raises(TruncatedImageError, match="truncated or corrupt"):
            load_image(path)


def test_non_image_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    with pytest.raises(NotAnImageError, match="not an image"):
        load_image(text)
    with pytest.raises(NotAnImageError):
        load_image(b"%PDF-1.4 fake")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InvalidImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InvalidImageError, match="folder"):
        load_image(tmp_path)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(60_000, 60_000))  # 3.6 G pixels claimed in 70 bytes
    with pytest.raises(ImageTooLargeError, match="too large|over the limit"):
        load_image(bomb)
    # Under Pillow's own limit but over ours: still refused, with the numbers.
    with pytest.raises(ImageTooLargeError, match="over the limit of 100"):
        load_image(_png_header_only(20, 20), max_pixels=100)


def test_bad_array_shapes_and_values():
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InvalidImageError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(InvalidImageError, match="cannot read an image from a int"):
        load_image(42)  # type: ignore[arg-type]


def test_preprocess_scales_and_resizes_identically_for_one_and_many():
    spec = Preprocessing(size=(8, 8))
    image = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    single = preprocess(image, spec).numpy()
    batch = preprocess(np.stack([image, image]), spec).numpy()
    assert single.shape == (8, 8, 3) and batch.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(batch[1], single)
    assert 0.0 <= single.min() and single.max() <= 1.0
    same_size = preprocess(image[:8, :8], spec).numpy()
    np.testing.assert_allclose(same_size, image[:8, :8] / 255.0, atol=1e-6)


def test_preprocessing_round_trips_through_dict():
    spec = Preprocessing(size=(32, 48), scale=2 / 255, offset=-1.0)
    assert Preprocessing.from_dict(spec.to_dict()) == spec


# -- decoding reduced to what is needed (``max_side``) --------------------------------------


def _photo(path: Path, size: tuple[int, int], **save) -> Path:
    """A photo-like image (W, H): smooth gradients plus sensor noise, as a JPEG compresses it."""
    width, height = size
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([x / width * 200, y / height * 180, (x + y) / (width + height) * 150], axis=-1)
    pixels += rng.normal(0, 10, pixels.shape)
    return _save(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), path, **save)


def _sizes_at_thumbnail(monkeypatch) -> list[tuple[int, int]]:
    """The size every image has when ``load_image`` box-filters it: what was decoded."""
    seen: list[tuple[int, int]] = []
    thumbnail = Image.Image.thumbnail

    def spy(self, *args, **kwargs):
        seen.append(self.size)
        return thumbnail(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "thumbnail", spy)
    return seen


def test_a_large_jpeg_is_decoded_reduced_in_draft_mode(tmp_path, monkeypatch):
    path = _photo(tmp_path / "big.jpg", (2400, 1800), quality=90)
    decoded = _sizes_at_thumbnail(monkeypatch)
    out = load_image(path, max_side=500)
    assert out.shape == (375, 500, 3) and out.dtype == np.uint8
    # The JPEG decoder itself made 1/4 scale (2400 // 500 = 4): the full size never existed.
    assert decoded == [(600, 450)]
    # And the picture is the same one, box-filtered: within JPEG noise of a full decode reduced.
    full = Image.fromarray(load_image(path)).resize((500, 375), Image.Resampling.BOX)
    assert np.abs(out.astype(int) - np.asarray(full, int)).mean() < 2.0


def test_a_large_png_and_arrays_are_box_filtered_to_max_side(tmp_path):
    path = _photo(tmp_path / "big.png", (900, 300))
    assert load_image(path, max_side=300).shape == (100, 300, 3)
    assert load_image(load_image(path), max_side=90).shape == (30, 90, 3)
    # A palette checkerboard averages to grey; picking the nearest pixels would keep black or white.
    board = Image.fromarray((np.indices((400, 400)).sum(axis=0) % 2 * 255).astype(np.uint8)).convert("P")
    out = load_image(_save(board, tmp_path / "board.png"), max_side=100)
    assert out.shape == (100, 100, 3) and np.abs(out.astype(int) - 128).max() <= 1


def test_reduced_decode_keeps_exif_orientation(tmp_path):
    image = Image.new("RGB", (1600, 800), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 400, 800))  # blue on the left quarter
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(_save(image, tmp_path / "rotated.jpg", exif=exif, quality=95), max_side=400)
    assert out.shape == (400, 200, 3)  # portrait after transposition
    assert out[20, 100, 2] > 200 and out[20, 100, 0] < 60  # the blue quarter is now on top


def test_images_within_max_side_decode_exactly_as_before(tmp_path):
    side = input_side((224, 224))
    assert side == DISPLAY_SIDE == 1024
    for path in (_photo(tmp_path / "phone.jpg", (1024, 768)), _photo(tmp_path / "web.png", (640, 480))):
        np.testing.assert_array_equal(load_image(path, max_side=side), load_image(path))
    # A caller's PIL image is reduced in a copy, never in place.
    image = Image.open(tmp_path / "web.png")
    assert load_image(image, max_side=64).shape == (48, 64, 3) and image.size == (640, 480)


def test_header_checks_are_the_same_with_max_side(tmp_path):
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        load_image(_png_header_only(60_000, 60_000), max_side=64)
    with pytest.raises(NotAnImageError, match="accepted format"):
        load_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", max_side=64)
    data = _photo(tmp_path / "whole.jpg", (800, 600)).read_bytes()
    with pytest.raises(TruncatedImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2], max_side=64)  # decoding at 1/8 scale still reads every byte
    with pytest.raises(ValueError, match="positive"):
        load_image(data, max_side=0)


class _Session:
    """What ``ClassifyView`` asks of the app's context: the active model, here the shapes model."""

    def active_model(self, request):
        return None, SHAPES_MODEL


def test_the_app_classifies_and_explains_a_huge_photo_from_a_reduced_decode(tmp_path, monkeypatch):
    from vision.runtime.inference import Classifier
    from vision.ui.classify import ClassifyView

    star = Image.open(REPO / "docs" / "examples" / "star.png").convert("RGB")
    huge = _save(star.resize((3200, 3200), Image.Resampling.BICUBIC), tmp_path / "huge.jpg", quality=92)
    given: list[tuple[int, ...]] = []
    classify = Classifier.classify
    monkeypatch.setattr(Classifier, "classify",
                        lambda self, image, top_k=5: given.append(np.shape(image)) or classify(self, image, top_k))
    view = ClassifyView(_Session())
    labels, _ = view.classify(str(huge), 4, request=None)
    small, _ = view.classify(str(REPO / "docs" / "examples" / "star.png"), 4, request=None)
    assert given[0] == (1024, 1024, 3)  # what the model's 64 px input needs, not 10 megapixels
    assert max(labels, key=labels.get) == max(small, key=small.get) == "star"
    assert labels["star"] == pytest.approx(small["star"], abs=0.05)
    heatmap, caption = view.explain(str(huge), "gradcam", None, 0.5, request=None)
    assert heatmap.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3) and "star" in caption
