"""Datasets from folders, zips (including hostile ones), Keras's cache and the synthetic
generator; the tf.data pipeline; the dataset summary."""

from __future__ import annotations

import gzip
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.data.archives import extract_zip
from vision.data.datasets import (
    load_dataset,
    load_folder,
    load_keras_dataset,
    load_zip,
    make_pipeline,
    stratified_split,
    summarize,
)
from vision.data.images import Preprocessing, load_image
from vision.data.synthetic import SHAPES, make_shapes
from vision.errors import DatasetError, UnsafeArchiveError

pytestmark = pytest.mark.usefixtures("no_stray_writes")


def _png_bytes(colour=(200, 10, 10), size=(12, 12)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _class_zip(path: Path, classes: dict[str, int], prefix: str = "", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, count in classes.items():
            for i in range(count):
                zf.writestr(f"{prefix}{name}/{i}.png", _png_bytes())
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return path


def test_synthetic_shapes_are_varied_and_boxed():
    data = make_shapes(per_class=8, size=48, seed=3)
    assert data.images.shape == (32, 48, 48, 3) and data.images.dtype == np.uint8
    assert sorted(np.bincount(data.labels)) == [8, 8, 8, 8] and len(SHAPES) >= 4
    x0, y0, x1, y1 = data.boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 48).all() and (y1 <= 48).all()
    sides = x1 - x0
    assert sides.max() / sides.min() > 1.4  # sizes vary
    # The box holds the object, tightly: the shape is the only vivid colour (background and
    # clutter are dull), so every vivid pixel lies in its box and the vivid pixels span it.
    for image, (x0, y0, x1, y1) in zip(data.images, data.boxes):
        hsv = np.asarray(Image.fromarray(image).convert("HSV")).astype(int)
        ys, xs = np.nonzero((hsv[..., 1] >= 140) & (hsv[..., 2] >= 165))
        assert ((xs >= x0 - 1) & (xs <= x1 + 1) & (ys >= y0 - 1) & (ys <= y1 + 1)).all()
        assert (xs.max() - xs.min() + 1) / (x1 - x0) > 0.8 and (ys.max() - ys.min() + 1) / (y1 - y0) > 0.8
    assert len({tuple(img[0, 0]) for img in data.images}) == 32  # backgrounds vary
    again = make_shapes(per_class=8, size=48, seed=3)
    np.testing.assert_array_equal(again.images, data.images)  # seeded


def test_folder_with_existing_split(shapes_folder):
    dataset = load_folder(shapes_folder)
    assert dataset.class_names == sorted(SHAPES)
    assert len(dataset.train) == 32 and len(dataset.val) == 8
    assert all("/train/" in p for p in dataset.train.paths)
    assert all("/val/" in p for p in dataset.val.paths)


def test_folder_without_split_is_split_stratified_and_seeded(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "data" / name / f"{i}.png").write_bytes(_png_bytes())
    (tmp_path / "data" / "dogs" / "readme.txt").write_text("not an image")
    (tmp_path / "data" / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    first = load_folder(tmp_path / "data", val_fraction=0.2, seed=5)
    second = load_folder(tmp_path / "data", val_fraction=0.2, seed=5)
    assert first.class_names == ["cats", "dogs"]
    assert np.bincount(first.val.labels).tolist() == [2, 2]
    assert first.val.paths == second.val.paths
    assert sorted(s.split(":")[0] for s in first.skipped) == ["dogs/broken.jpg", "dogs/readme.txt"]


def test_stratified_split_keeps_every_class_in_train():
    labels = np.array([0] * 2 + [1] * 50)
    train, val = stratified_split(labels, 0.5, seed=0)
    assert set(labels[train]) == {0, 1} and set(labels[val]) == {0, 1}
    assert len(set(train) & set(val)) == 0


def test_zip_with_wrapper_folder_and_mac_junk(tmp_path):
    archive = _class_zip(tmp_path / "pets.zip", {"cats": 3, "dogs": 3}, prefix="pets/",
                         extra={"__MACOSX/pets/._x": b"junk", "pets/notes.txt": b"hi"})
    dataset = load_zip(archive, extract_to=tmp_path / "out")
    assert dataset.class_names == ["cats", "dogs"]
    assert len(dataset.train) + len(dataset.val) == 6


#: The start of an Encapsulated PostScript file: Pillow's EPS plugin (which runs Ghostscript)
#: would claim it by its content, whatever it is named.
_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 12 12\n%%EndComments\nshowpage\n%%EOF\n"


def test_a_zip_with_eps_and_truncated_files_loads_and_lists_them(tmp_path):
    whole = _png_bytes(size=(64, 64))
    bad = {"cats/figure.eps": _EPS, "cats/renamed.png": _EPS, "dogs/cut.png": whole[: len(whole) // 2],
           "dogs/cut-tail.png": whole[:-30]}  # ends inside its pixel data: the header is intact
    archive = _class_zip(tmp_path / "pets.zip", {"cats": 4, "dogs": 4}, extra=bad)
    dataset = load_zip(archive, extract_to=tmp_path / "out")
    assert sorted(dataset.skipped) == [
        "cats/figure.eps: not an image file",
        "cats/renamed.png: not a JPEG, PNG, GIF, BMP, WebP or TIFF image",
        "dogs/cut-tail.png: truncated or corrupt",
        "dogs/cut.png: truncated or corrupt",
    ]
    kept = dataset.everything().paths
    assert len(kept) == 8 and all(load_image(path).shape == (12, 12, 3) for path in kept)


def test_a_bad_file_does_not_fail_feature_extraction(tmp_path):
    """The fast path embeds every listed file and would stop at the first that fails to decode."""
    from vision.models.features import get_extractor

    whole = _png_bytes(size=(64, 64))
    archive = _class_zip(tmp_path / "pets.zip", {"cats": 2, "dogs": 2}, extra={"dogs/cut.png": whole[:-30]})
    dataset = load_zip(archive, extract_to=tmp_path / "out")
    features = get_extractor(32).features(dataset.everything().sources())
    assert features.shape[1] == 4 and len(dataset.skipped) == 1


def test_zip_extraction_stops_at_the_callers_quota(tmp_path, monkeypatch):
    archive = _class_zip(tmp_path / "pets.zip", {"cats": 3, "dogs": 3})
    size = sum(info.file_size for info in zipfile.ZipFile(archive).infolist())
    with pytest.raises(UnsafeArchiveError, match=f"over the limit of {size - 1:,}"):
        load_zip(archive, extract_to=tmp_path / "a", max_total_bytes=size - 1)
    assert len(load_zip(archive, extract_to=tmp_path / "b", max_total_bytes=size).everything()) == 6
    # A quota larger than the archive module's own cap does not lift that cap.
    monkeypatch.setattr("vision.data.datasets.MAX_TOTAL_BYTES", size - 1)
    with pytest.raises(UnsafeArchiveError, match=f"over the limit of {size - 1:,}"):
        load_zip(archive, extract_to=tmp_path / "c", max_total_bytes=10 * size)


def test_zip_with_one_class_is_refused(tmp_path):
    archive = _class_zip(tmp_path / "one.zip", {"cats": 4})
    with pytest.raises(DatasetError, match="only one class folder \\('cats'\\)"):
        load_zip(archive, extract_to=tmp_path / "out")


def test_zip_of_loose_images_is_refused(tmp_path):
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", _png_bytes())
        zf.writestr("b.png", _png_bytes())
    with pytest.raises(DatasetError, match="one subfolder per class"):
        load_zip(archive, extract_to=tmp_path / "out")


def test_class_with_no_readable_images_is_named(tmp_path):
    archive = _class_zip(tmp_path / "x.zip", {"cats": 3}, extra={"dogs/readme.txt": b"no"})
    with pytest.raises(DatasetError, match="class 'dogs' has 0 readable"):
        load_zip(archive, extract_to=tmp_path / "out")


@pytest.mark.parametrize("member, message", [
    ("../evil.png", "outside the archive"),
    ("cats/../../evil.png", "outside the archive"),
    ("/tmp/evil-absolute.png", "absolute path"),
    ("C:/evil.png", "absolute path"),
])
def test_hostile_member_paths(tmp_path, member, message):
    archive = _class_zip(tmp_path / "bad.zip", {"cats": 2, "dogs": 2}, extra={member: _png_bytes()})
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_zip(archive, out)
    assert list(out.iterdir()) == []  # nothing half-extracted
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil-absolute.png").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = _class_zip(tmp_path / "link.zip", {"cats": 2, "dogs": 2})
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("cats/passwd.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_file_count_and_size_caps(tmp_path):
    archive = _class_zip(tmp_path / "many.zip", {"cats": 6, "dogs": 6})
    with pytest.raises(UnsafeArchiveError, match="12 files, over the limit of 10"):
        extract_zip(archive, tmp_path / "a", max_files=10)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/zeros.png", b"\0" * 5_000_000)  # compresses to a few kB
    assert bomb.stat().st_size < 50_000
    with pytest.raises(UnsafeArchiveError, match="over the limit of 1,000,000"):
        extract_zip(bomb, tmp_path / "b", max_total_bytes=1_000_000)
    assert list((tmp_path / "b").iterdir()) == []


def test_not_a_zip_and_damaged_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("hello")
    with pytest.raises(DatasetError, match="not a zip"):
        load_dataset(fake)
    good = _class_zip(tmp_path / "good.zip", {"cats": 2, "dogs": 2}).read_bytes()
    damaged = tmp_path / "damaged.zip"
    # Corrupt the first member's compressed data but keep the central directory.
    damaged.write_bytes(good[:40] + b"\xff" * 30 + good[70:])
    with pytest.raises(DatasetError, match="damaged"):
        extract_zip(damaged, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing-folder")


def test_keras_dataset_from_a_prefilled_cache(tmp_path):
    # Keras reads KERAS_HOME (set per session in conftest) and downloads only what is missing.
    cache = Path(os.environ["KERAS_HOME"]) / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        with gzip.open(cache / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\0" * 8 + labels.tobytes())
        with gzip.open(cache / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(b"\0" * 16 + images.tobytes())
    dataset = load_keras_dataset("fashion_mnist")
    assert dataset.train.images.shape == (30, 28, 28, 3) and len(dataset.val) == 10
    assert dataset.class_names[0] == "t-shirt" and len(dataset.class_names) == 10
    with pytest.raises(DatasetError, match="unknown Keras dataset"):
        load_keras_dataset("imagenet")


def test_pipeline_batches_preprocessed_images_and_augments_only_training(shapes_folder):
    dataset = load_folder(shapes_folder)
    spec = Preprocessing(size=(24, 24))
    evaluation = list(make_pipeline(dataset.val, spec, batch_size=4))
    images, labels = evaluation[0]
    assert images.shape == (4, 24, 24, 3) and images.dtype.name == "float32"
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    again = list(make_pipeline(dataset.val, spec, batch_size=4))
    np.testing.assert_array_equal(evaluation[0][0].numpy(), again[0][0].numpy())  # deterministic
    training = make_pipeline(dataset.train, spec, batch_size=32, training=True, augment=True, seed=0)
    plain = make_pipeline(dataset.train, spec, batch_size=32, training=True, augment=False, seed=0)
    augmented_batch, plain_batch = next(iter(training))[0].numpy(), next(iter(plain))[0].numpy()
    assert augmented_batch.shape == plain_batch.shape
    assert np.abs(augmented_batch - plain_batch).mean() > 1e-3  # augmentation changed pixels


def test_summary_warns_on_imbalance_and_weights_small_classes():
    from vision.data.datasets import LabelledDataset, Split

    labels = np.array([0] * 30 + [1] * 10)
    dataset = LabelledDataset(["big", "small"], Split(labels, paths=[""] * 40),
                              Split(np.array([0, 1]), paths=["", ""]), source="test")
    summary = summarize(dataset)
    assert summary.train_counts == {"big": 30, "small": 10}
    assert summary.imbalance_ratio == pytest.approx(3.0)
    assert "'big' has 3.0x the images of 'small'" in summary.warnings[0]
    assert summary.class_weights[1] == pytest.approx(3 * summary.class_weights[0])
