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

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from vision.bundle.store import Bundle
from vision.data.datasets import LabelledDataset
from vision.errors import DatasetError, InvalidBundleError
from vision.training.config import ProgressHook, TrainConfig
from vision.training.loop import fit_on_images
from vision.training.memory import release_memory
from vision.training.recipe import TrainedBundle, save_trained
from vision.training.tensorboard import new_run
from vision.trust.fit import MIN_CALIBRATION_IMAGES


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
                            out_of_fold=out_of_fold_logits(result.model, dataset, config, result.preprocessing)
                            if few else None)
    finally:
        release_memory()


def out_of_fold_logits(model: Any, dataset: LabelledDataset, config: TrainConfig,
                       preprocessing: Any) -> np.ndarray | None:
    """Logits of every image of ``dataset.everything()``, each from a copy of ``model``'s Dense
    head retrained (fresh weights, ``config``'s epochs and learning rate) on the other folds'
    features from the layers below it; None where the model does not end in a Dense head or a
    class has a single image."""
    import keras

    from vision.data.datasets import make_pipeline
    from vision.trust.folds import out_of_fold

    layers = model.layers
    first = next((i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense)), None)
    head = layers[first:] if first is not None else []
    if not head or not all(isinstance(layer, (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation))
                           for layer in head):
        return None
    trunk = keras.Model(model.input, layers[first].input)
    everything = dataset.everything()
    images = make_pipeline(everything, preprocessing, 16).map(lambda x, _: x)
    features = np.asarray(trunk.predict(images, verbose=0), np.float32)
    dense = [layer.get_config() for layer in head if isinstance(layer, keras.layers.Dense)]
    estimator = DenseHead(dense, config.epochs, config.learning_rate, config.seed)
    try:
        return out_of_fold(estimator, features, everything.labels, "decision_function", seed=config.seed,
                           purpose="calibrating on out-of-fold logits")
    except DatasetError:
        return None


class DenseHead(ClassifierMixin, BaseEstimator):
    """A stack of Dense layers (the configs of a model's head, the last one giving logits) as a
    scikit-learn estimator, so ``vision.trust.folds.out_of_fold`` can train k fresh copies."""

    def __init__(self, layers: list[dict[str, Any]] | None = None, epochs: int = 20,
                 learning_rate: float = 1e-3, seed: int = 0) -> None:
        self.layers = layers
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> DenseHead:  # noqa: N803 (scikit-learn's names)
        """Train a fresh copy of the head on features ``X`` and classes ``y``; returns ``self``."""
        import keras

        from vision.training.seeding import ShuffledArrays, seed_weights

        self.classes_ = np.unique(y)
        head = keras.Sequential([keras.Input((X.shape[1],)),
                                 *(keras.layers.Dense.from_config({**c, "name": f"fold_{i}"})
                                   for i, c in enumerate(self.layers or []))])
        seed_weights(head, self.seed)  # a local seed, never the process's generators
        head.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        head.fit(ShuffledArrays(np.asarray(X, np.float32), np.searchsorted(self.classes_, y), 16, self.seed),
                 epochs=self.epochs, verbose=0)
        self.head_ = head
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The head's logits for features ``X``."""
        return np.asarray(self.head_.predict(np.asarray(X, np.float32), verbose=0))

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The winning class of each row (what scikit-learn requires of a classifier)."""
        return self.classes_[self.decision_function(X).argmax(axis=1)]
