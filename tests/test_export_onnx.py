"""The ONNX export, run by ONNX Runtime: Keras's answers under named outputs, and everything a
runtime needs inside the file (``metadata_props``)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest

from vision.data.images import preprocess
from vision.data.synthetic import make_shapes
from vision.export.formats import ExportError, export
from vision.export.onnx import ONNX_FILE, read_metadata_props
from vision.models.heads import OUTPUT_LAYER
from vision.models.serving import serving_model


@pytest.fixture(scope="module")
def bundle(tiny_detector_bundle):
    return tiny_detector_bundle


@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory):
    """One export with every output (probabilities, familiarity, features), shared by the tests."""
    return export(bundle, "onnx", tmp_path_factory.mktemp("onnx") / "out", features=True)


def _inputs(bundle, seed: int) -> np.ndarray:
    # Images the export's own check never saw: other shapes, drawn at another size.
    images = make_shapes(per_class=2, size=48, seed=seed).images
    return np.stack([np.asarray(preprocess(image, bundle.preprocessing)) for image in images])


def test_onnx_runtime_gives_the_keras_answers_under_their_names(bundle, exported):
    session = onnxruntime.InferenceSession(str(exported.path / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [OUTPUT_LAYER, "familiarity", "features"]
    x = _inputs(bundle, seed=7)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))
    keras = [np.asarray(t) for t in serving_model(bundle.model, bundle.detector, features=True)(x, training=False)]
    expected = dict(zip([OUTPUT_LAYER, "familiarity", "features"], keras))
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, err_msg=name)
    assert (got[OUTPUT_LAYER].argmax(1) == expected[OUTPUT_LAYER].argmax(1)).all()
    assert exported.max_abs_diff <= 1e-4 and exported.top1_agreement == 1.0
    assert exported.metadata["verification"]["checked_with"] == "the exported onnx model in ONNX Runtime"


def test_the_onnx_file_carries_labels_preprocessing_and_the_unknown_threshold(bundle, exported):
    props = read_metadata_props(exported.path / ONNX_FILE)
    assert props["labels"] == bundle.labels
    assert props["preprocessing"] == bundle.preprocessing.to_dict()
    assert props["unknown"] == {"output": "familiarity", "method": bundle.info["ood"]["method"],
                                "threshold": bundle.info["ood"]["threshold"]}
    assert props["format"] == "onnx" and props["features"]["output"] == "features"
    assert props["verification"]["max_abs_diff"] == exported.max_abs_diff
    # Orientation is named as the caller's job: the model takes float pixels, not a JPEG.
    assert "exif_transpose" in props["input"]["orientation"]
    # The same description as metadata.json, so the file alone is enough.
    assert props == json.loads((exported.path / "metadata.json").read_text())


def test_an_onnx_model_that_answers_differently_is_refused(bundle, tmp_path, monkeypatch):
    """The export's check reads ONNX Runtime's answers: move them and the export fails."""
    import vision.export.onnx as onnx_export

    run = onnx_export.run_onnx
    monkeypatch.setattr(onnx_export, "run_onnx", lambda path, inputs: [o + 1e-3 for o in run(path, inputs)])
    with pytest.raises(ExportError, match="the onnx export differs from Keras"):
        export(bundle, "onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists()
