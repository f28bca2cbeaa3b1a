"""The model bundle: Keras-loadable as it is, atomic saves, validated loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vision.bundle.store import delete_bundle, list_bundles, load_bundle, make_info, read_info, save_bundle
from vision.data.images import Preprocessing
from vision.errors import InvalidBundleError, ModelNotFoundError
from vision.models.registry import create_model

pytestmark = pytest.mark.usefixtures("no_stray_writes")


def _model_and_info(classes=("a", "b", "c"), size=16):
    model = create_model("simple_cnn", len(classes), size, width=4)
    info = make_info("m", list(classes), "simple_cnn", Preprocessing((size, size)))
    return model, info


def test_bundle_is_a_keras_folder_plus_project_files(tmp_path):
    import keras

    model, info = _model_and_info()
    folder = save_bundle(model, info, tmp_path / "m")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "metadata.json", "model.weights.h5", "vision.json", "README.md"} <= names
    x = np.random.default_rng(0).random((2, 16, 16, 3), np.float32)
    by_keras = keras.saving.load_model(folder)
    by_vision = load_bundle(folder)
    np.testing.assert_array_equal(np.asarray(by_keras(x)), np.asarray(model(x)))
    np.testing.assert_array_equal(np.asarray(by_vision.model(x)), np.asarray(model(x)))
    assert by_vision.labels == ["a", "b", "c"] and by_vision.preprocessing.size == (16, 16)
    assert {"tensorflow", "keras", "vision"} <= set(read_info(folder)["versions"])
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: \"keras\"") and "pipeline_tag" in card


def test_save_refuses_to_clobber_and_overwrite_swaps_atomically(tmp_path):
    model, info = _model_and_info()
    save_bundle(model, info, tmp_path / "m")
    with pytest.raises(InvalidBundleError, match="already exists"):
        save_bundle(model, info, tmp_path / "m")
    info2 = {**info, "name": "second"}
    save_bundle(model, info2, tmp_path / "m", overwrite=True)
    assert read_info(tmp_path / "m")["name"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or retired folders left


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    model, info = _model_and_info()
    save_bundle(model, info, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir() if p.is_file()}
    # A file name that cannot be written makes the save fail after Keras wrote its files.
    with pytest.raises(OSError):
        save_bundle(model, {**info, "name": "new"}, tmp_path / "m", overwrite=True,
                    extra_files={"x" * 300: b"too long a name"})
    after = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir() if p.is_file()}
    assert after == before  # the old bundle is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with pytest.raises(OSError):
        save_bundle(model, info, tmp_path / "fresh", extra_files={"y" * 300: b""})
    assert not (tmp_path / "fresh").exists()


def test_labels_must_match_outputs(tmp_path):
    model, info = _model_and_info(("a", "b", "c"))
    with pytest.raises(InvalidBundleError, match="3 outputs but 2 labels"):
        save_bundle(model, {**info, "labels": ["a", "b"]}, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_load_names_what_is_wrong(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model bundle"):
        load_bundle(tmp_path / "missing")
    model, info = _model_and_info()
    good = save_bundle(model, info, tmp_path / "good")

    broken = tmp_path / "no-weights"
    shutil.copytree(good, broken)
    (broken / "model.weights.h5").unlink()
    with pytest.raises(InvalidBundleError, match="missing model.weights.h5"):
        load_bundle(broken)

    bad_json = tmp_path / "bad-json"
    shutil.copytree(good, bad_json)
    (bad_json / "vision.json").write_text("{not json")
    with pytest.raises(InvalidBundleError, match="not valid JSON"):
        load_bundle(bad_json)

    mismatch = tmp_path / "mismatch"
    shutil.copytree(good, mismatch)
    data = json.loads((mismatch / "vision.json").read_text())
    (mismatch / "vision.json").write_text(json.dumps({**data, "labels": ["x", "y"]}))
    with pytest.raises(InvalidBundleError, match="3 outputs but 2 labels"):
        load_bundle(mismatch)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "model.weights.h5").write_bytes(b"\0" * 100)
    with pytest.raises(InvalidBundleError, match="cannot be loaded"):
        load_bundle(corrupt)


def test_lambda_layers_are_refused_by_safe_mode(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    info = make_info("lambda", ["a", "b"], "custom", Preprocessing((8, 8)))
    folder = save_bundle(model, info, tmp_path / "lambda")
    with pytest.raises(InvalidBundleError, match="(?i)lambda|safe"):
        load_bundle(folder)


def test_list_and_delete(tmp_path):
    model, info = _model_and_info()
    save_bundle(model, info, tmp_path / "one")
    save_bundle(model, {**info, "name": "two"}, tmp_path / "two")
    (tmp_path / "junk").mkdir()
    (tmp_path / ".one.tmp-1234").mkdir()
    assert [Path(i["path"]).name for i in list_bundles(tmp_path)] == ["one", "two"]
    delete_bundle(tmp_path / "one")
    assert [Path(i["path"]).name for i in list_bundles(tmp_path)] == ["two"]
    with pytest.raises(InvalidBundleError):
        delete_bundle(tmp_path / "junk")  # not a bundle: refused, left alone
    assert (tmp_path / "junk").exists()
    os.rmdir(tmp_path / ".one.tmp-1234")
