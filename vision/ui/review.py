"""After training: why the model was wrong, and where the data itself is wrong.

- Misclassified validation images, each beside its Grad-CAM for the class the model
  predicted, filtered by a (true, predicted) pair of the confusion matrix.
- Likely label errors and near-duplicates from ``vision.trust.audit`` (cleanlab), as a gallery.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vision.data.images import DISPLAY_SIDE, load_image
from vision.explain.overlay import overlay
from vision.ui.cache import get_explainer

ALL_MISTAKES = "all"
#: Gallery tiles are this tall (the image and its Grad-CAM side by side).
TILE = 160


@dataclass
class Mistakes:
    """The validation images a freshly trained model got wrong, kept per session for the filter."""

    model: Path
    class_names: list[str]
    sources: list[Any]
    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray

    @classmethod
    def of(cls, model: Path, class_names: list[str], sources: list[Any], evaluation: Any) -> "Mistakes":
        wrong = np.flatnonzero(evaluation.y_pred != evaluation.y_true)
        return cls(model, class_names, [sources[i] for i in wrong], evaluation.y_true[wrong],
                   evaluation.y_pred[wrong], evaluation.probabilities[wrong, evaluation.y_pred[wrong]])

    def pairs(self) -> list[tuple[str, str]]:
        """Dropdown choices: every confused (true, predicted) pair with its count, most first."""
        found = Counter(zip(self.y_true.tolist(), self.y_pred.tolist()))
        names = self.class_names
        choices = [(f"all mistakes ({len(self.y_true)})", ALL_MISTAKES)]
        for (t, p), count in found.most_common():
            choices.append((f"true {names[t]} → predicted {names[p]} ({count})", f"{t}:{p}"))
        return choices

    def gallery(self, pair: str | None = ALL_MISTAKES, limit: int = 24) -> list[tuple[np.ndarray, str]]:
        """Each chosen mistake beside its Grad-CAM for the predicted class."""
        chosen = np.arange(len(self.y_true))
        if pair and pair != ALL_MISTAKES:
            true, predicted = (int(x) for x in pair.split(":"))
            chosen = chosen[(self.y_true == true) & (self.y_pred == predicted)]
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


def captioned(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` written in a strip under it: Gradio shows a gallery's
    captions only in some layouts, and the answer belongs with the picture."""
    from PIL import ImageDraw

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
