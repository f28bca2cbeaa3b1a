"""The optimize chain (distil -> prune -> int8) through the CLI and ``compress``: every variant
written, recorded and measured as it ships."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vision.bundle.store import load_bundle
from vision.cli import main
from vision.data.datasets import Split, load_folder
from vision.data.synthetic import SHAPES, make_shapes, write_shapes
from vision.errors import VisionError
from vision.optimize.compress import TABLE_FILE, CompressionPlan, compress
from vision.training.prune import measured_sparsity

from conftest import SHAPES_MODEL


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("shapes"), per_class=8, size=64, seed=3) / "train"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(SHAPES_MODEL)


def test_cli_optimize_writes_every_variant_and_the_table(tmp_path, shapes_data, capsys, monkeypatch):
    monkeypatch.setenv("VISION_NATIVE_LOGS", "1")  # the CLI's error line then reaches capsys
    out = tmp_path / "small"
    assert main(["optimize", str(SHAPES_MODEL), "--data", str(shapes_data), "--distill", "simple_cnn", "--size", "32",
                 "--epochs", "2", "--views", "3", "--prune", "0.5", "--int8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = json.loads((out / TABLE_FILE).read_text())
    names = [variant["name"] for variant in table["variants"]]
    assert names == ["original", "distilled", "distilled+pruned", "distilled+pruned+int8"]
    for name in names[1:]:
        assert name in printed
    student = load_bundle(out / "shapes-distilled")
    assert student.info["architecture"] == "simple_cnn" and student.preprocessing.size == (32, 32)
    assert student.info["distillation"]["teacher"] == "Shapes (default)"
    pruned = load_bundle(out / "shapes-pruned")
    assert pruned.info["pruning"]["target"] == 0.5
    # What is on disk is sparse (load_bundle reads it in Keras's safe mode).
    assert measured_sparsity(pruned.model)[0] == pytest.approx(0.5, abs=0.01)
    assert (out / "shapes-int8" / "model.tflite").is_file()
    rows = {variant["name"]: variant for variant in table["variants"]}
    assert rows["distilled+pruned"]["gzip_bytes"] < rows["distilled"]["gzip_bytes"]
    assert rows["distilled+pruned+int8"]["size_bytes"] < 0.35 * rows["distilled+pruned"]["size_bytes"]
    assert all(v["latency_ms"] > 0 for v in table["variants"])
    from top1 import top1_answers

    # Agreement recomputed here from each model's own answers on the check images (the
    # folder's validation split): Keras for the bundles, LiteRT for the int8 flatbuffer.
    answers = top1_answers(load_folder(shapes_data).val, {
        "original": load_bundle(SHAPES_MODEL), "distilled": student, "distilled+pruned": pruned,
        "distilled+pruned+int8": out / "shapes-int8" / "model.tflite"}, pruned)
    for name in names:
        assert rows[name]["agreement"] == pytest.approx(np.mean(answers[name] == answers["original"])), name
    assert min(rows[name]["agreement"] for name in names) < 1.0  # some variant disagrees: the check can fail
    # A second run into the same folder refuses rather than overwriting.
    assert main(["optimize", str(SHAPES_MODEL), "--data", str(shapes_data), "--int8", "--out", str(out)]) == 2
    assert "already in the output folder: shapes-int8" in capsys.readouterr().err


def test_int8_variant_answers_as_the_original(tmp_path, bundle, shapes_data):
    """Measured on the probabilities output (an export with the detector puts its familiarity
    first): an int8 shapes model agrees with the float one."""
    drawn = make_shapes(per_class=15, seed=31)
    order = np.array([bundle.labels.index(name) for name in SHAPES])
    check = Split(order[drawn.labels], images=drawn.images)
    rows = compress(bundle, load_folder(shapes_data), CompressionPlan(int8=True), tmp_path, check=check)
    original, int8 = rows
    assert original.accuracy >= 0.9 and int8.agreement >= 0.9 and int8.accuracy >= 0.85
    assert int8.size_bytes < 0.35 * original.size_bytes


def test_bad_plans_fail_clearly(tmp_path, bundle, shapes_data):
    dataset = load_folder(shapes_data)
    with pytest.raises(VisionError, match="choose at least one of"):
        compress(bundle, dataset, CompressionPlan(), tmp_path)
    with pytest.raises(VisionError, match="between 0 and 1; got 75"):
        compress(bundle, dataset, CompressionPlan(sparsity=75), tmp_path)
    assert list(tmp_path.iterdir()) == []
