"""Reproducible trainings without process-wide seeds.

``keras.utils.set_random_seed`` reseeds Python's, NumPy's and TensorFlow's global generators: in
a threaded server, one visitor's training would reset the randomness of every other thread. A
training here draws everything from its own ``numpy.random.default_rng(seed)`` instead (the habit
of scikit-learn's ``random_state``):

- ``seed_weights`` re-initializes a freshly built model's randomly initialized weights, each
  from its layer's own initializer given an explicit seed, and gives every random layer
  (dropout, augmentation) a seeded state;
- ``ShuffledArrays`` feeds ``fit`` arrays in an order from the local generator (Keras shuffles
  arrays with ``tf.random.shuffle`` and no seed: only the global TensorFlow seed fixes it);
- ``tf.data`` shuffles take an explicit op-level ``seed=`` (deterministic without a global one).

What Keras gives no local way to seed: building a layer whose initializer has no seed draws
that seed from Python's global ``random`` (``keras.random.make_default_seed``). That advances
the global generator (as any library's use of it does) but never resets it; ``seed_weights``
then overwrites what those seeds produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

#: A layer's ``<name>_initializer`` fills its ``<name>`` weight, except these.
_WEIGHT_OF = {"depthwise_initializer": ("depthwise_kernel", "kernel")}
_SEEDS = 2**31 - 1


def _layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model``, nested models' layers included (each once)."""
    seen: set[int] = set()
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(getattr(layer, "layers", []))


def seed_weights(model: Any, seed: int, fresh: Callable[[Any], bool] = lambda layer: True) -> Any:
    """Re-initialize the randomly initialized weights of ``model``'s layers for which ``fresh(layer)``
    holds (not pretrained ones) and reseed all its random layers, from ``default_rng(seed)``, in
    place; returns ``model``. Constant initializers (zeros, ones, batch norm's) are left alone; so
    are weights a layer has no ``<name>_initializer`` for."""
    rng = np.random.default_rng(seed)
    for layer in _layers(model):
        renew = fresh(layer)
        for attribute, initializer in sorted(vars(layer).items(), key=lambda item: item[0]):
            if renew and attribute.endswith("_initializer") and isinstance(initializer,
                                                                           keras.initializers.Initializer):
                config = initializer.get_config()
                if "seed" not in config:  # a constant: nothing random to fix
                    continue
                names = _WEIGHT_OF.get(attribute, (attribute[:-len("_initializer")],))
                weight = next((w for w in (getattr(layer, name, None) for name in names)
                               if isinstance(w, keras.Variable)), None)
                if weight is None:
                    continue
                seeded = type(initializer).from_config({**config, "seed": int(rng.integers(_SEEDS))})
                weight.assign(seeded(tuple(weight.shape), dtype=weight.dtype))
            elif isinstance(initializer, keras.random.SeedGenerator):
                state = initializer.state
                state.assign(np.array([rng.integers(_SEEDS), 0]).astype(state.dtype))
    return model


class ShuffledArrays(keras.utils.PyDataset):
    """``(x, y)`` in batches, in a new order every epoch drawn from ``default_rng(seed)``.

    Read in the training's own thread (no workers, no processes)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        return self.x[chosen], self.y[chosen]

    def on_epoch_end(self) -> None:
        self._order = self._rng.permutation(len(self.x))
