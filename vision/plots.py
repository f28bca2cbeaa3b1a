"""The pictures people would rather look at than read: learning curves, the confusion matrix,
the reliability diagram, each rendered to a PIL image (the app shows them, bundles keep them)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from vision.training.evaluate import Evaluation


def _figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` on the Agg backend: no display, safe in server threads."""
    import matplotlib  # lazy: slow to import, and the CLI imports this module; pyplot's global state is never touched

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # lazy: as matplotlib above

    return Figure(**kwargs)


def plot_history(history: dict[str, list[float]]) -> Image.Image:
    """Loss and accuracy per epoch, train against validation, as an image."""
    figure = _figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            # A copy first: during training the training's thread appends to these lists
            # while the app plots them, and x and y must be the same length.
            values = list(history.get(key) or [])
            if values:
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, values, style, markersize=3,
                          label="validation" if key.startswith("val_") else "train")
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    return figure_to_image(figure)


def plot_confusion(evaluation: Evaluation) -> Image.Image:
    """The confusion matrix with counts in each cell, as an image."""
    n = len(evaluation.labels)
    side = min(12, 2.5 + 0.55 * n)
    figure = _figure(figsize=(side, side * 0.85), dpi=100, layout="constrained")
    axis = figure.subplots()
    cm = evaluation.confusion
    image = axis.imshow(cm, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8)
    axis.set_xticks(range(n), evaluation.labels, rotation=45, ha="right")
    axis.set_yticks(range(n), evaluation.labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"accuracy {evaluation.accuracy:.3f}")
    if n <= 20:
        threshold = cm.max() / 2 if cm.size else 0
        for (row, col), count in np.ndenumerate(cm):
            axis.text(col, row, str(count), ha="center", va="center",
                      color="white" if count > threshold else "black", fontsize=9)
    return figure_to_image(figure)


def figure_to_image(figure: Any) -> Image.Image:
    """A matplotlib ``Figure`` rendered to an RGB PIL image."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def plot_reliability(calibration: dict[str, Any]) -> Image.Image:
    """A reliability diagram, before and after scaling, as a PIL image."""
    figure = _figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    for axis, when in zip(figure.subplots(1, 2, sharey=True), ("before", "after")):
        rows = calibration[f"bins_{when}"]
        width = 1 / len(rows)
        centres = [(i + 0.5) * width for i in range(len(rows))]
        accuracy = [r["accuracy"] if r["count"] else 0 for r in rows]
        gap = [r["confidence"] - r["accuracy"] if r["count"] else 0 for r in rows]
        axis.bar(centres, accuracy, width=width * 0.9, color="#4c78a8", label="accuracy")
        axis.bar(centres, gap, bottom=accuracy, width=width * 0.9, color="#e45756", alpha=0.35,
                 label="gap to confidence")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1)
        for centre, row in zip(centres, rows):
            if row["count"]:
                axis.text(centre, 1.02, str(row["count"]), ha="center", va="bottom", fontsize=7, color="#57606a")
        temperature = f", T = {calibration['temperature']:.2f}" if when == "after" else ""
        axis.set_title(f"{when}: ECE {calibration[f'ece_{when}']:.3f}{temperature}")
        axis.set_xlabel("confidence")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
    figure.axes[0].set_ylabel("accuracy")
    figure.axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"Reliability on {calibration['images']} held-out images (images per bin above the bars)")
    return figure_to_image(figure)
