"""TensorBoard logs for every training.

A training with ``TrainConfig.tensorboard = DIR`` writes one run, ``DIR/<bundle name>-<time>``
(``new_run``), so trainings side by side are comparable in one TensorBoard:

- ``train/`` and ``validation/``: per-epoch loss, accuracy and learning rate, written by Keras's
  own ``keras.callbacks.TensorBoard`` (``tensorboard_callbacks``), the same on both training paths
  (the fast path fits a head on cached features; its epochs are epochs all the same);
- ``validation/``, once the bundle is saved (``log_evaluation``): the confusion matrix, the
  reliability diagram when the model was calibrated, and up to six validation images beside
  their Grad-CAM, at the step of the epoch whose weights were kept;
- ``fine_tune/{train,validation}``: the end-to-end stage after a head (``stage``), whose
  epochs count from 0 again.

Reading them in a TensorBoard server is ``vision.serve.tensorboard``.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vision.bundle.store import CONFUSION_FILE, RELIABILITY_FILE
from vision.data.images import load_image
from vision.errors import ExplainError, VisionError
from vision.explain.overlay import overlay

if TYPE_CHECKING:
    from vision.data.datasets import LabelledDataset, Split
    from vision.training.config import TrainConfig, TrainResult

log = logging.getLogger(__name__)

#: Validation images logged with their Grad-CAM, spread over the classes.
GRADCAM_IMAGES = 6
#: Side of each half (image, overlay) of a Grad-CAM panel, in pixels.
PANEL_SIDE = 224
#: The plots a bundle keeps that TensorBoard shows too: file name -> image tag.
PLOT_TAGS = {CONFUSION_FILE: "confusion_matrix", RELIABILITY_FILE: "reliability_diagram"}


def run_name(name: str, when: float | None = None) -> str:
    """``name`` (made safe as a folder name) and the local time, e.g. ``shapes-20261202-105644``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def new_run(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` with ``tensorboard`` moved to a new run folder under it, created now and
    named by ``run_name``; ``config`` itself when it logs nothing.

    Two runs of one name in the same second get ``-2``, ``-3``... rather than share a folder.
    """
    if not config.tensorboard:
        return config
    parent = Path(config.tensorboard)
    parent.mkdir(parents=True, exist_ok=True)
    base = run_name(name)
    for attempt in range(1, 1000):
        folder = parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            folder.mkdir()  # atomic: the run is ours
        except FileExistsError:
            continue
        return dataclasses.replace(config, tensorboard=str(folder))
    raise VisionError(f"too many TensorBoard runs named {base!r} in one second")


def stage(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` logging into the ``name`` subfolder of its run (a second ``fit`` whose
    epochs start at 0 again would otherwise draw over the first); unchanged when it logs nothing."""
    if not config.tensorboard:
        return config
    return dataclasses.replace(config, tensorboard=str(Path(config.tensorboard) / name))


def tensorboard_callbacks(config: TrainConfig) -> list[Any]:
    """``[keras.callbacks.TensorBoard]`` writing ``config.tensorboard/{train,validation}``, or
    ``[]`` when the config logs nothing.

    Keras's callback writes ``epoch_loss``, ``epoch_accuracy`` and ``epoch_learning_rate`` (the
    optimizer's rate after each epoch, the schedule included) under ``train/``, the ``val_``
    metrics without their prefix under ``validation/``, and the model's configuration (text, ``keras``).
    """
    if not config.tensorboard:
        return []
    import keras  # lazy: importing this module costs no Keras; only a logged training needs it

    return [keras.callbacks.TensorBoard(log_dir=config.tensorboard)]


def log_evaluation(result: TrainResult, dataset: LabelledDataset, files: dict[str, bytes]) -> None:
    """Add the saved bundle's pictures to the run's ``validation`` folder: the plots of
    ``files`` named in ``PLOT_TAGS`` (PNG bytes) and Grad-CAM panels of up to
    ``GRADCAM_IMAGES`` validation images, at the step of the epoch whose weights were kept.

    A model Grad-CAM cannot explain (no spatial layer) logs the plots and a warning.
    """
    logdir = result.config.tensorboard
    if not logdir:
        return
    import tensorflow as tf  # lazy: importing this module costs no TensorFlow; only a logged training needs it

    images = [(tag, _decode(files[name]), None) for name, tag in PLOT_TAGS.items() if name in files]
    try:
        images += gradcam_panels(result.model, result.preprocessing, dataset.class_names, dataset.val)
    except ExplainError as error:
        log.warning("no Grad-CAM images in TensorBoard: %s", error)
    writer = tf.summary.create_file_writer(str(Path(logdir) / "validation"))
    try:
        with writer.as_default(step=result.best_epoch):
            for tag, pixels, description in images:
                tf.summary.image(tag, pixels[None], description=description)
    finally:
        writer.close()


def gradcam_panels(model: Any, preprocessing: Any, labels: list[str], split: Split,
                   count: int = GRADCAM_IMAGES) -> list[tuple[str, np.ndarray, str]]:
    """(tag, image | Grad-CAM overlay side by side, description) for ``count`` images of
    ``split``, one class after another.

    Raises:
        ExplainError: the model has no layer Grad-CAM can use.
    """
    from vision.explain.cam import Explainer  # lazy: imports TensorFlow and Keras at its top

    # The tf.function path: the TFLite fast path would convert the model for six images.
    explainer = Explainer(model, preprocessing, labels, fast=False)
    sources = split.sources()
    panels = []
    for number, index in enumerate(_spread(np.asarray(split.labels), count)):
        pixels = load_image(sources[index])
        explanation = explainer.explain(pixels)
        panel = np.concatenate([_fit(pixels), _fit(overlay(pixels, explanation.heatmap))], axis=1)
        description = (f"true **{labels[int(split.labels[index])]}**, predicted **{explanation.label}** "
                       f"({explanation.probability:.0%}); Grad-CAM at `{explanation.layer}`")
        panels.append((f"gradcam/{number}", panel, description))
    return panels


def _spread(labels: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` indices taking each class in turn, first images first."""
    queues = [list(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(int(queue.pop(0)))
    return chosen


def _fit(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` scaled so the longer side is ``PANEL_SIDE``: nearest when enlarging (a 32 px
    input stays visibly 32 px), smooth when shrinking."""
    image = Image.fromarray(pixels)
    scale = PANEL_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
    fitted = np.asarray(image.resize(size, resample))
    # Same height for both halves of a panel, whatever the aspect.
    return np.pad(fitted, ((0, PANEL_SIDE - fitted.shape[0]), (0, 0), (0, 0)))


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
