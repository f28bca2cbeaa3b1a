"""Train a bundle's model further on new photos: the way an imported model (Teachable
Machine's, whose architecture is not in the registry) gets better answers, an "unknown"
detector and a calibrated confidence from a few photos per class.

Its head (the Dense layers) learns the photos end to end at the bundle's own preprocessing;
the layers below stay as they came. The result is saved like every trained model
(``vision.training.recipe.save_trained``): calibrated, with a detector, evaluated, plotted.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from vision.bundle.store import Bundle
from vision.data.datasets import LabelledDataset
from vision.errors import InvalidBundleError
from vision.training.config import ProgressHook, TrainConfig
from vision.training.loop import fit_on_images
from vision.training.memory import release_memory
from vision.training.recipe import TrainedBundle, save_trained
from vision.training.tensorboard import new_run


def train_further(bundle: Bundle, dataset: LabelledDataset, config: TrainConfig, out: str | Path,
                  name: str | None = None, overwrite: bool = False, progress: ProgressHook | None = None,
                  cancel: threading.Event | None = None) -> TrainedBundle:
    """Train ``bundle``'s model further on ``dataset`` (folders named as its classes) and save
    the result at ``out``; ``config`` gives the epochs, learning rate and the like (its
    ``model`` and ``input_size`` are the bundle's).

    Raises:
        DatasetError: the dataset's classes are not the model's.
        InvalidBundleError: a TFLite-only bundle (no Keras model to train), or ``out`` exists.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise InvalidBundleError(f"a model already exists at '{out}'; choose another name or overwrite")
    dataset = dataset.in_label_order(bundle.labels)
    _ = bundle.model  # a TFLite-only bundle says so now, before any work
    config = new_run(dataclasses.replace(config, model=str(bundle.info.get("architecture", "unknown")),
                                         input_size=bundle.preprocessing.size[0]), name or out.name)
    try:
        result = fit_on_images(dataset, config, progress, cancel, continue_from=bundle)
        result.info = {**result.info, "trained_further_from": bundle.name,
                       **({"source": bundle.info["source"]} if "source" in bundle.info else {})}
        return save_trained(result, dataset, out, name, overwrite)
    finally:
        release_memory()
