"""After training: why the model was wrong, and where the data itself is wrong.

- The confusion matrix as a table whose cells are clicked: the validation images of a
  (true, predicted) cell, each beside its Grad-CAM for the class the model predicted.
- Likely label errors and near-duplicates from ``vision.trust.audit`` (cleanlab), as a gallery.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from vision.data.images import DISPLAY_SIDE, load_image
from vision.errors import DatasetError
from vision.explain.overlay import overlay
from vision.ui.cache import get_explainer

ALL_MISTAKES = "all"
#: Gallery tiles are this tall (the image and its Grad-CAM side by side).
TILE = 160
#: A cell shows at most this many images; only those are kept after training.
PER_CELL = 24
#: The kept copies' longest side: two tiles' worth, enough for the picture and its Grad-CAM.
KEPT_SIDE = 2 * TILE
#: The confusion table's first column (its row labels).
TRUE_COLUMN = "true \\ predicted"


@dataclass
class Mistakes:
    """A freshly trained model's answers on its validation images, kept per session so that
    a click on a confusion-matrix cell can show that cell's images. "Mistakes" are the
    off-diagonal cells; ``pairs`` and ``ALL_MISTAKES`` cover only those."""

    model: Path
    class_names: list[str]
    sources: list[Any]
    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray

    @classmethod
    def of(cls, model: Path, class_names: list[str], sources: list[Any], evaluation: Any) -> "Mistakes":
        """Every validation image with its true and predicted class and the confidence."""
        y_true, y_pred = np.asarray(evaluation.y_true), np.asarray(evaluation.y_pred)
        confidence = evaluation.probabilities[np.arange(len(y_pred)), y_pred]
        return cls(model, class_names, list(sources), y_true, y_pred, confidence)

    def keep(self, folder: Path, per_cell: int = PER_CELL) -> "Mistakes":
        """Copies of the first ``per_cell`` images of every cell, downscaled into ``folder``.

        The training's images may not outlive it (a zip's extraction is removed when the
        training ends, a sample can be removed from its class), and a click comes later.
        """
        folder.mkdir(parents=True, exist_ok=True)
        chosen = [i for cell in Counter(zip(self.y_true.tolist(), self.y_pred.tolist()))
                  for i in self._cell(*cell)[:per_cell]]
        chosen.sort()
        kept = []
        for n, i in enumerate(chosen):
            path = folder / f"{n}.png"
            Image.fromarray(load_image(self.sources[i], max_side=KEPT_SIDE)).save(path, compress_level=1)
            kept.append(str(path))
        return Mistakes(self.model, self.class_names, kept, self.y_true[chosen], self.y_pred[chosen],
                        self.confidence[chosen])

    def _cell(self, true: int, predicted: int | None) -> np.ndarray:
        """Indices of cell (true, predicted); every image of class ``true`` where predicted is None."""
        match = self.y_true == true
        if predicted is not None:
            match &= self.y_pred == predicted
        return np.flatnonzero(match)

    def pairs(self) -> list[tuple[str, str]]:
        """Every confused (true, predicted) pair with its count, most first."""
        wrong = self.y_true != self.y_pred
        found = Counter(zip(self.y_true[wrong].tolist(), self.y_pred[wrong].tolist()))
        names = self.class_names
        choices = [(f"all mistakes ({int(wrong.sum())})", ALL_MISTAKES)]
        for (t, p), count in found.most_common():
            choices.append((f"true {names[t]} → predicted {names[p]} ({count})", f"{t}:{p}"))
        return choices

    def gallery(self, pair: str | None = ALL_MISTAKES, limit: int = PER_CELL) -> list[tuple[np.ndarray, str]]:
        """The images of one cell, each beside its Grad-CAM for the predicted class.

        ``pair`` is ``"true:predicted"`` (class indices; the diagonal holds the right
        answers), ``"true:*"`` for every image of one class, or ``ALL_MISTAKES``.
        """
        if pair and pair != ALL_MISTAKES:
            try:
                true, predicted = pair.split(":")
                chosen = self._cell(int(true), None if predicted == "*" else int(predicted))
            except ValueError:
                raise DatasetError(f"no cell {pair!r}: name it 'true:predicted' (class indices) or 'all'") from None
        else:
            chosen = np.flatnonzero(self.y_true != self.y_pred)
        if not len(chosen):
            return []
        explainer = get_explainer(self.model)
        tiles = []
        for i in chosen[:limit]:
            pixels = load_image(self.sources[i], max_side=DISPLAY_SIDE)
            heatmap = explainer.explain(pixels, target=int(self.y_pred[i])).heatmap
            caption = (f"true {self.class_names[self.y_true[i]]} → predicted "
                       f"{self.class_names[self.y_pred[i]]} ({self.confidence[i]:.2f}); right: why")
            tiles.append((captioned(side_by_side(pixels, overlay(pixels, heatmap)), caption), caption))
        return tiles


def confusion_table(class_names: list[str], confusion: np.ndarray) -> Any:
    """The confusion matrix as a table (rows true, columns predicted), shaded by count: a
    ``gr.Dataframe`` shows the colours, and a click on a cell names its (row, column)."""
    frame = pd.DataFrame(np.asarray(confusion, dtype=int), columns=list(class_names))
    frame.insert(0, TRUE_COLUMN, list(class_names))
    return frame.style.background_gradient(cmap="Blues", subset=list(class_names), vmin=0)


def cell_of(index: Any) -> str:
    """The ``gallery`` pair for a click on confusion-table cell ``[row, column]``: a class's
    whole row where the click was on its name."""
    row, column = (int(x) for x in index)
    return f"{row}:*" if column == 0 else f"{row}:{column - 1}"


def captioned(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` written in a strip under it: Gradio shows a gallery's
    captions only in some layouts, and the answer belongs with the picture."""
    width = max(image.shape[1], 8 * len(text) + 12)
    canvas = Image.new("RGB", (width, image.shape[0] + 22), "white")
    canvas.paste(Image.fromarray(image), (0, 0))
    ImageDraw.Draw(canvas).text((6, image.shape[0] + 5), text, fill=(31, 35, 40))
    return np.asarray(canvas)


def side_by_side(*images: np.ndarray, height: int = TILE) -> np.ndarray:
    """Images scaled to one height and joined left to right."""
    scaled = [np.asarray(Image.fromarray(image).resize((max(1, round(image.shape[1] * height / image.shape[0])),
                                                         height), Image.Resampling.BILINEAR)) for image in images]
    return np.concatenate(scaled, axis=1)


def issue_gallery(audit: Any, limit: int = 24) -> list[tuple[np.ndarray, str]]:
    """Likely label errors (given → suggested, cleanlab's score), then near-duplicate sets."""
    tiles = []
    for issue in audit.label_issues[:limit]:
        caption = f"labelled {issue.given}, looks like {issue.suggested} (label quality {issue.score:.2f})"
        tiles.append((captioned(side_by_side(load_image(issue.source, max_side=DISPLAY_SIDE)), caption), caption))
    for group in audit.duplicates[: max(0, limit - len(tiles))]:
        caption = (f"{'same image in train and validation' if group.leak else 'near-duplicates'}: "
                   f"{len(group.sources)} images")
        shown = (load_image(source, max_side=DISPLAY_SIDE) for source in group.sources[:3])
        tiles.append((captioned(side_by_side(*shown), caption), caption))
    return tiles


def audit_summary(audit: Any) -> str:
    """One line on what the audit found."""
    return (f"Data check (cleanlab, out-of-fold on {len(audit.ranked)} images): **{len(audit.label_issues)}** likely "
            f"label error(s), **{len(audit.duplicates)}** near-duplicate set(s), "
            f"**{len(audit.leaks)}** shared by train and validation.")
