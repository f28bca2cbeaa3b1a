"""The bundled default model: small, loads offline, and really is as accurate as it says."""

from __future__ import annotations

import json

import pytest

from conftest import DEFAULT_MODEL


def test_default_bundle_is_small_and_records_its_accuracy():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024, f"default bundle is {size:,} bytes"
    info = json.loads((DEFAULT_MODEL / "vision.json").read_text())
    assert info["metrics"]["accuracy"] >= 0.95
    assert info["dataset"]["source"].endswith("shapes-data")
    assert info["labels"] == ["circle", "square", "star", "triangle"]


@pytest.mark.slow
def test_default_model_reaches_its_accuracy_on_the_regenerated_validation_split(tmp_path):
    # The README's command rebuilds the same data from seed 0: evaluate on its val/ split.
    from vision.data import load_folder
    from vision.evaluate import evaluate_model
    from vision.store import load_bundle
    from vision.synthetic import write_shapes

    info = json.loads((DEFAULT_MODEL / "vision.json").read_text())
    size = info["preprocessing"]["size"][0]
    dataset = load_folder(write_shapes(tmp_path / "data", per_class=250, size=size, seed=0))
    bundle = load_bundle(DEFAULT_MODEL)
    evaluation = evaluate_model(bundle.model, dataset.val, bundle.preprocessing, bundle.labels)
    assert len(dataset.val) == 200
    assert evaluation.accuracy >= 0.95
    assert evaluation.accuracy == pytest.approx(info["metrics"]["accuracy"], abs=1e-6)
