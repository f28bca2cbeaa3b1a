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
from typing import Any

import keras
import numpy as np

from vision.bundle.store import Bundle
from vision.data.datasets import LabelledDataset, make_pipeline
from vision.errors import DatasetError, InvalidBundleError
from vision.models.heads import LOGITS_LAYER, OUTPUT_LAYER
from vision.training.config import ProgressHook, TrainConfig
from vision.training.fast import FoldHead
from vision.training.loop import fit_on_images
from vision.training.memory import release_memory
from vision.training.recipe import TrainedBundle, save_trained
from vision.training.tensorboard import new_run
from vision.trust.fit import MIN_CALIBRATION_IMAGES
from vision.trust.folds import out_of_fold


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
        # A few photos a class leave too few validation images to fit a temperature on: the head's
        # k-fold copies answer for every image instead, as the fast path's few-shot models do.
        few = len(dataset.val) < MIN_CALIBRATION_IMAGES
        return save_trained(result, dataset, out, name, overwrite,
                            out_of_fold=own_head_out_of_fold_logits(result.model, dataset, config, result.preprocessing)
                            if few else None)
    finally:
        release_memory()


def own_head_out_of_fold_logits(model: Any, dataset: LabelledDataset, config: TrainConfig,
                                 preprocessing: Any) -> np.ndarray | None:
    """Logits of every image of ``dataset.everything()``, each from a copy of ``model``'s own head
    (its layers from the first Dense one to the softmax, fresh weights) trained by ``fit_head``
    on the other folds' features from the layers below that head. None where the model does not
    end in such a head or a class has a single image.

    The fast path's ``fast_head_out_of_fold_logits`` differs in its head (the fast path's, not the
    model's) and its features (the frozen backbone's cache, with the views its head trained on)."""
    layers = model.layers
    first = next((i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense)), None)
    head = layers[first:] if first is not None else []
    names = [layer.name for layer in head]
    if (not head or names[-1] != OUTPUT_LAYER or LOGITS_LAYER not in names
            or not all(isinstance(layer, (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation))
                       for layer in head)):
        return None
    trunk = keras.Model(model.input, layers[first].input)
    everything = dataset.everything()
    images = make_pipeline(everything, preprocessing, 16).map(lambda x, _: x)
    features = np.asarray(trunk.predict(images, verbose=0), np.float32)
    estimator = FoldHead(config, config.epochs, layers=[keras.layers.serialize(layer) for layer in head])
    try:
        return out_of_fold(estimator, features, everything.labels, "decision_function", seed=config.seed,
                           purpose="calibrating on out-of-fold logits")
    except DatasetError:
        return None
