"""The Train view's parts that need no running app: a class's samples (order, removal,
rename) and the confusion matrix as a clickable table. The app-level and browser tests are
in test_app.py and test_browser_app.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vision.data.samples import SampleCollection
from vision.errors import DatasetError
from vision.ui.review import TRUE_COLUMN, cell_of, confusion_table


def _image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_classes_keep_their_order_and_samples_are_removed_by_id(tmp_path):
    samples = SampleCollection(tmp_path / "samples")
    samples.add_samples("cats", [_image(1), _image(2)])
    samples.add_samples("dogs", [_image(3)])
    samples.add_samples("cats", [_image(4)])  # a new picture does not move its class
    assert samples.classes() == {"cats": 3, "dogs": 1}
    first = samples.samples("cats")[0]
    assert np.asarray(Image.open(first))[0, 0, 0] == 1  # oldest first, as the card shows them
    samples.remove_sample("cats", first.stem)
    assert samples.classes() == {"cats": 2, "dogs": 1} and not first.exists()
    for bad in ("../dogs", first.stem, ""):
        with pytest.raises(DatasetError):
            samples.remove_sample("cats", bad)


def test_rename_keeps_samples_and_place_and_refuses_clashes(tmp_path):
    samples = SampleCollection(tmp_path / "samples")
    for name in ("a", "b", "c"):
        samples.add_samples(name, [_image(9)])
    assert samples.rename_class("a", "apples") == "apples"
    assert list(samples.classes()) == ["apples", "b", "c"]
    with pytest.raises(DatasetError, match="already exists"):
        samples.rename_class("b", "c")
    with pytest.raises(DatasetError, match="not allowed"):
        samples.rename_class("b", "../x")
    with pytest.raises(DatasetError, match="no class"):
        samples.rename_class("zebra", "z")
    samples.remove_class("b")
    assert samples.classes() == {"apples": 1, "c": 1}
    assert not (tmp_path / "x").exists()


def test_the_confusion_table_and_its_cells():
    confusion = np.array([[3, 1], [0, 2]])
    frame = confusion_table(["cat", "dog"], confusion).data
    assert list(frame.columns) == [TRUE_COLUMN, "cat", "dog"]
    assert frame.values.tolist() == [["cat", 3, 1], ["dog", 0, 2]]
    assert cell_of([0, 2]) == "0:1"  # true cat, predicted dog
    assert cell_of([1, 1]) == "1:0"
    assert cell_of([1, 0]) == "1:*"  # a class's name: its whole row
