"""The data's own mistakes: cleanlab ranks flipped labels and finds duplicates and
train/validation leaks, in the library and through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vision.cli import main
from vision.data.datasets import load_folder
from vision.data.photos import TEXTURES, write_texture_task
from vision.errors import DatasetError
from vision.trust.audit import audit_dataset, audit_features

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    return write_texture_task(tmp_path_factory.mktemp("audit"), train_per_class=12, test_per_class=1, patch=96)


def test_flipped_labels_rank_first(task):
    dataset = load_folder(task / "train", val_fraction=0.25)
    flipped = [0, 5, 11]  # train images given the next class's name
    for i in flipped:
        dataset.train.labels[i] = (dataset.train.labels[i] + 1) % 3
    audit = audit_dataset(dataset)
    top = [issue.index for issue in audit.ranked[:len(flipped)]]
    assert sorted(top) == flipped
    assert 0 < len(audit.label_issues) and {issue.index for issue in audit.label_issues} <= set(flipped)
    issue = audit.ranked[0]
    assert issue.given != issue.suggested and issue.split == "train" and Path(issue.source).is_file()
    assert audit.out_of_fold.shape == (36, 3) and np.allclose(audit.out_of_fold.sum(1), 1)


def test_duplicates_and_a_train_validation_leak_are_found(task, tmp_path):
    data = shutil.copytree(task / "train", tmp_path / "data")
    for texture in TEXTURES:  # one exact copy per class: some land in different splits
        shutil.copy(data / texture / f"{texture}_0000.png", data / texture / "copy.png")
    audit = audit_dataset(load_folder(data, val_fraction=0.5, seed=3))
    copies = [group for group in audit.duplicates if any(Path(s).name == "copy.png" for s in group.sources)]
    assert len(copies) == 3
    assert any(group.leak for group in copies) and all(len(group.sources) >= 2 for group in copies)


def test_the_audit_ranks_out_of_fold_probabilities_it_is_given(monkeypatch):
    """A few-shot training's calibration folds already answered every image: the audit ranks
    those answers and trains no folds of its own."""
    import vision.trust.audit as audit_module

    monkeypatch.setattr(audit_module, "out_of_fold_probabilities",
                        lambda *_: pytest.fail("the audit trained folds it was given"))
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 10)
    probabilities = np.where(np.eye(2)[labels] == 1, 0.9, 0.1)
    probabilities[3] = [0.02, 0.98]  # labelled 0, every fold says 1
    audit = audit_features(rng.normal(size=(20, 8)), labels, ["a", "b"], probabilities=probabilities)
    assert audit.out_of_fold is probabilities
    assert audit.ranked[0].index == 3 and audit.ranked[0].suggested == "b"


def test_a_class_of_one_image_is_refused_clearly():
    features = np.random.default_rng(0).normal(size=(5, 8))
    with pytest.raises(DatasetError, match="at least 2 images in every class"):
        audit_features(features, np.array([0, 0, 0, 0, 1]), ["a", "b"])


def test_the_cli_audits_a_folder(task, tmp_path, capsys):
    data = shutil.copytree(task / "train", tmp_path / "data")
    shutil.move(data / "brick" / "brick_0003.png", data / "grass" / "brick_0003.png")
    assert main(["audit", str(data)]) == 0
    out = capsys.readouterr().out
    assert "1 likely label error(s) among 36 images" in out
    assert "grass/brick_0003.png  given 'grass', looks like 'brick'" in out
    assert main(["audit", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label_issues"][0]["image"].endswith("brick_0003.png")
    assert report["label_issues"][0]["suggested"] == "brick"
