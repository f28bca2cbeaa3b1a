"""The shipped models: the shapes example is small, loads offline and really is as accurate as it
says; the everyday-objects model is the default everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHAPES_MODEL


def test_shapes_bundle_is_small_and_records_its_accuracy():
    size = sum(p.stat().st_size for p in SHAPES_MODEL.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024, f"shapes bundle is {size:,} bytes"
    info = json.loads((SHAPES_MODEL / "vision.json").read_text())
    assert info["metrics"]["accuracy"] >= 0.95
    assert info["dataset"]["source"].endswith("shapes-data")
    assert info["labels"] == ["circle", "square", "star", "triangle"]


@pytest.mark.slow
def test_shapes_model_reaches_its_accuracy_on_the_regenerated_validation_split(tmp_path):
    # docs/models.md's command (make shapes-model) rebuilds the same data from seed 0: evaluate on its val/ split.
    from vision.bundle.store import load_bundle
    from vision.data.datasets import load_folder
    from vision.data.synthetic import write_shapes
    from vision.training.evaluate import evaluate_model

    info = json.loads((SHAPES_MODEL / "vision.json").read_text())
    size = info["preprocessing"]["size"][0]
    dataset = load_folder(write_shapes(tmp_path / "data", per_class=250, size=size, seed=0))
    bundle = load_bundle(SHAPES_MODEL)
    evaluation = evaluate_model(bundle.model, dataset.val, bundle.preprocessing, bundle.labels)
    assert len(dataset.val) == 200
    assert evaluation.accuracy >= 0.95
    assert evaluation.accuracy == pytest.approx(info["metrics"]["accuracy"], abs=1e-6)


def test_the_everyday_objects_model_is_the_default_with_real_photo_examples():
    from vision.cli import DEFAULT, _parser
    from vision.defaults import EVERYDAY_MODEL
    from vision.ui.config import AppConfig

    config = AppConfig.from_env({})
    assert config.default_model == EVERYDAY_MODEL
    assert {"chelsea.png", "coffee.png", "grace_hopper.jpg"} <= {Path(p).name for p in config.examples}
    assert _parser().parse_args(["predict", "x.jpg"]).model == DEFAULT


@pytest.mark.slow
def test_cli_predict_on_a_photo_prints_one_line_and_nothing_else():
    """TensorFlow's native start-up lines (CUDA probes, XNNPACK, MLIR) stay off the terminal."""
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    done = subprocess.run([sys.executable, "-m", "vision", "predict", str(photo)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1 and ": military uniform 0.4" in done.stdout, done.stdout
