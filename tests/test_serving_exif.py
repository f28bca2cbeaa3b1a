"""Phone photos answer the same in TF Serving as in the library: the SavedModel's
``serving_default`` applies a JPEG's EXIF orientation (``vision.export.graph_exif``) as Pillow's
``exif_transpose`` does in ``load_image``."""

from __future__ import annotations

import io
import struct

import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vision.bundle.store import load_bundle
from vision.data.images import load_image
from vision.export.formats import export
from vision.export.graph_decode import decode
from vision.export.graph_exif import orientation
from vision.export.savedmodel import serving_name
from vision.runtime.inference import Classifier

PHOTO = Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB").resize((96, 64))


def phone_jpeg(turn: int, exif: bytes | None = None) -> bytes:
    """``PHOTO`` saved as a phone would: the stored pixels, and the orientation ``turn`` in EXIF."""
    if exif is None:
        tags = Image.Exif()
        tags[0x0112] = turn
        exif = tags.tobytes()
    out = io.BytesIO()
    PHOTO.save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue()


def big_endian_exif(turn: int) -> bytes:
    """An ``Exif`` block in Motorola byte order ("MM"), one IFD entry: the orientation."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, turn, 0)
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\x00" * 4


@pytest.mark.parametrize("turn", range(1, 9))
def test_the_graph_turns_each_orientation_as_pillow_does(turn):
    data = phone_jpeg(turn)
    assert int(orientation(tf.constant(data))) == turn
    for side in (None, 40):  # full size, and reduced before turning, as load_image does
        expected = load_image(data, max_side=side)
        got = decode(tf.constant(data), side or 4096).numpy()
        np.testing.assert_array_equal(got, expected)


def test_big_endian_exif_is_read():
    data = phone_jpeg(0, exif=big_endian_exif(6))
    assert int(orientation(tf.constant(data))) == 6
    np.testing.assert_array_equal(decode(tf.constant(data), 4096).numpy(), load_image(data))


@pytest.mark.parametrize("exif", [
    b"Exif\x00\x00II*\x00" + struct.pack("<I", 10_000),  # the IFD past the block's end
    b"Exif\x00\x00XX*\x00" + struct.pack("<I", 8) + b"\x01\x00" + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0),
    b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + b"\xff\xff",  # 65535 entries announced, none there
    b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + b"\x01\x00" + struct.pack("<HHIHH", 0x0112, 3, 1, 9, 0),
    b"Exif\x00\x00",  # nothing after the header
], ids=["ifd-past-end", "bad-byte-order", "entries-missing", "orientation-9", "empty"])
def test_malformed_exif_reads_as_orientation_one_as_pillow_does(exif):
    data = phone_jpeg(0, exif=exif)
    assert int(orientation(tf.constant(data))) == 1
    np.testing.assert_array_equal(decode(tf.constant(data), 4096).numpy(), load_image(data))


def test_not_a_jpeg_has_orientation_one():
    out = io.BytesIO()
    PHOTO.save(out, "PNG")
    assert int(orientation(tf.constant(out.getvalue()))) == 1
    assert int(orientation(tf.constant(b""))) == 1


def test_the_savedmodel_answers_phone_photos_as_the_library_does(tiny_bundle, tmp_path):
    """The 8 orientations of one photo, as bytes, through ``tf.saved_model.load`` (how TF Serving
    loads the export) and through the library's ``Classifier``."""
    bundle = load_bundle(tiny_bundle)
    result = export(bundle, "savedmodel", tmp_path / "out")
    loaded = tf.saved_model.load(str(result.path / serving_name(bundle) / "1"))
    photos = [phone_jpeg(turn) for turn in range(1, 9)]
    answers = loaded.signatures["serving_default"](image_bytes=tf.constant(photos))
    library = Classifier(bundle)
    expected = np.stack([library.scores(data)[0] for data in photos])
    assert np.abs(answers["probabilities"].numpy() - expected).max() <= 1e-5
    # The turns matter to this model: not every orientation answers alike.
    assert np.abs(expected - expected[0]).max() > 1e-4
