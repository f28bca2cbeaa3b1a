"""Genuine Teachable Machine exports, made by TM's own library in Chromium (``teachable_fixtures``),
imported here: every runtime of the import agrees with TM's ``tmImage`` on the same images, and
TM's library loads what we export back in its format and agrees with Python."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from teachable_fixtures import probe_images, tm_predict_in_chromium

from vision.bundle.store import load_bundle
from vision.bundle.teachable import import_teachable
from vision.data.images import preprocess
from vision.errors import ExportError, InvalidBundleError
from vision.runtime.inference import Classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imported(tm_exports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each of TM's zips imported once: tfjs, keras, tflite (float), tflite_quantized (uint8)."""
    root = tmp_path_factory.mktemp("imported")
    return {kind: import_teachable(tm_exports[f"{kind}_zip"], root / kind)
            for kind in ("tfjs", "keras", "tflite", "tflite_quantized")}


def _tm_reference(tm_exports: dict[str, Path]) -> np.ndarray:
    return np.load(tm_exports["tm_probs"])


@pytest.mark.parametrize("kind", ["tfjs", "keras", "tflite"])
def test_float_imports_match_tm_in_chromium(kind: str, imported: dict[str, Path],
                                            tm_exports: dict[str, Path]) -> None:
    bundle = load_bundle(imported[kind])
    reference = _tm_reference(tm_exports)
    # Through the serving path a user gets (LiteRT; the TFLite import runs TM's own flatbuffer) ...
    classifier = Classifier(bundle)
    served = np.stack([classifier.probabilities(path) for path in probe_images(tm_exports)])
    assert np.abs(served - reference).max() <= 1e-4
    assert bundle.labels == json.loads((tm_exports["tfjs"] / "metadata.json").read_text())["labels"]
    if kind != "tflite":  # ... and the Keras 3 model itself
        pixels = _read(probe_images(tm_exports))
        keras_probs = bundle.model(preprocess(pixels, bundle.preprocessing)).numpy()
        assert np.abs(keras_probs - reference).max() <= 1e-4


def test_uint8_tflite_import_agrees_on_top1(imported: dict[str, Path], tm_exports: dict[str, Path]) -> None:
    bundle = load_bundle(imported["tflite_quantized"])
    assert bundle.tflite_only and bundle.info["source"]["input_dtype"] == "uint8"
    classifier = Classifier(bundle)
    served = np.stack([classifier.probabilities(path) for path in probe_images(tm_exports)])
    assert (served.argmax(1) == _tm_reference(tm_exports).argmax(1)).all()


def test_tflite_only_import_says_what_it_cannot_do(imported: dict[str, Path], tmp_path: Path) -> None:
    from vision.explain.cam import Explainer
    from vision.export.formats import export

    bundle = load_bundle(imported["tflite"])
    with pytest.raises(InvalidBundleError, match="TFLite file only.*Grad-CAM"):
        Explainer.from_bundle(bundle)
    with pytest.raises(ExportError, match="TFLite file only"):
        export(bundle, "onnx", tmp_path / "onnx")
    result = export(bundle, "tflite", tmp_path / "tflite")
    assert result.top1_agreement == 1.0 and result.max_abs_diff == 0.0


def test_grad_cam_on_a_genuine_tm_import(imported: dict[str, Path], tm_exports: dict[str, Path]) -> None:
    from vision.explain.cam import Explainer

    bundle = load_bundle(imported["tfjs"])
    pixels = _read(probe_images(tm_exports)[:1])[0]
    explanation = Explainer.from_bundle(bundle).explain(pixels)
    assert explanation.heatmap.shape == pixels.shape[:2] and explanation.heatmap.max() > 0
    assert explanation.layer  # the last spatial layer of TM's MobileNet


def test_tm_library_loads_our_export_and_agrees_with_python(imported: dict[str, Path], tm_exports: dict[str, Path],
                                                           tiny_bundle: Path, tmp_path: Path) -> None:
    """Our TM-format export of the import (and of a model trained here, which needs the input
    mapping) in TM's own library in Chromium."""
    from vision.export.formats import export

    for source in (imported["tfjs"], tiny_bundle):
        bundle = load_bundle(source)
        # Probes at the model's own size: TM's library then draws them at scale 1 (no browser resampling).
        probes = _pngs(tmp_path / f"probes-{bundle.path.name}", bundle.preprocessing.size, count=3)
        out = export(bundle, "teachable-machine", tmp_path / bundle.path.name).path
        in_tm = tm_predict_in_chromium(out / "tfjs", probes)
        expected = bundle.model(preprocess(_read(probes), bundle.preprocessing)).numpy()
        assert in_tm.shape == expected.shape
        assert np.abs(in_tm - expected).max() <= 1e-4


def _read(paths: list[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def _pngs(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths

