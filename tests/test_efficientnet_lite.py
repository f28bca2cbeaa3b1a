"""EfficientNet-Lite0: the untrusted-checkpoint reader and the Keras port's ImageNet answers
on real photos that ship inside installed packages."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from vision.models.checkpoint import LEGACY_MAGIC, CheckpointError, load_legacy_state_dict
from vision.models.efficientnet_lite import (
    PREPROCESSING,
    WEIGHTS_SHA256,
    imagenet_classifier,
    imagenet_labels,
    weights_path,
)


def test_the_checkpoint_reads_as_the_published_state_dict():
    state = load_legacy_state_dict(weights_path(), sha256=WEIGHTS_SHA256)
    assert len(state) == 296
    assert sum(v.size for v in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert "_blocks.0._expand_conv.weight" not in state and "_blocks.15._expand_conv.weight" in state


def test_an_altered_checkpoint_is_refused_before_unpickling(tmp_path):
    copy = tmp_path / "lite0.pth"
    shutil.copy(weights_path(), copy)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF  # one flipped bit pattern in the weights
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="altered"):
        load_legacy_state_dict(copy, sha256=WEIGHTS_SHA256)


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))  # any global outside the allow-list


def test_a_checkpoint_that_asks_for_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        for part in (LEGACY_MAGIC, 1001, {"little_endian": True}, {"weight": _Exploit()}, []):
            pickle.dump(part, handle, protocol=2)
    with pytest.raises(CheckpointError, match=r"asks for __builtin__\.print.*refusing"):
        load_legacy_state_dict(path)
    assert "must never run" not in capsys.readouterr().out


def test_garbage_is_a_clear_error(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"PK\x03\x04 not a legacy file")
    with pytest.raises(CheckpointError, match="not a legacy"):
        load_legacy_state_dict(tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_legacy_state_dict(tmp_path / "missing.pth")


@pytest.fixture(scope="module")
def classifier():
    return imagenet_classifier()


def _photos() -> dict[str, np.ndarray]:
    import matplotlib
    import skimage.data

    from vision.data.images import load_image

    return {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(),
            "grace_hopper": load_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")}


@pytest.mark.slow
def test_the_port_gives_the_obvious_imagenet_label_for_package_photos(classifier):
    from vision.data.images import preprocess

    labels = imagenet_labels()
    expected = {"chelsea": {"Egyptian Mau", "tabby cat", "tiger cat"}, "coffee": {"espresso"},
                "grace_hopper": {"military uniform"}}
    for name, photo in _photos().items():
        probabilities = classifier.predict(preprocess(photo, PREPROCESSING)[None], verbose=0)[0]
        assert labels[int(np.argmax(probabilities))] in expected[name], name
        assert probabilities.max() > 0.45, name


@pytest.mark.slow
def test_the_classifier_round_trips_through_keras_safe_mode(classifier, tmp_path):
    import keras

    from vision.data.images import preprocess

    x = preprocess(_photos()["coffee"], PREPROCESSING)[None]
    classifier.save(tmp_path / "lite0.keras")
    loaded = keras.saving.load_model(tmp_path / "lite0.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-6)
