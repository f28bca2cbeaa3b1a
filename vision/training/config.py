"""What decides a training run, what it reports while it runs, and what it returns.

Plain data, free of Keras, so the CLI and the app can describe a run without importing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from vision.data.images import Preprocessing

#: The losses and mixings a training can use (``vision.training.objectives``).
LOSSES = ("crossentropy", "focal")
MIXING = ("none", "mixup", "cutmix")


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved into the bundle."""

    model: str = "resnet_small"
    input_size: int | None = None  # the architecture's default when None
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # or "plateau"
    patience: int = 6  # epochs without val_loss improvement before stopping
    augment: bool = True
    #: On by default: bench/bench_hard.py's imbalanced digits (38:1) gained 7.9 points of macro-F1
    #: with them, more than any loss or mixing; a balanced dataset's weights are all 1 (no change).
    class_weights: bool = True
    seed: int = 0
    weights: str | None = "imagenet"  # transfer models only; None trains from scratch
    fine_tune_layers: int = 0  # transfer models: unfreeze the top N base layers
    mixed_precision: str = "auto"  # "auto" (on with a GPU), "on", "off"
    loss: str = "crossentropy"  # or "focal" (focal cross-entropy, ``focal_gamma``)
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    mixing: str = "none"  # "mixup" or "cutmix" (images; the fast path mixes cached features)
    jit_compile: bool = False  # XLA-compile the training step (Keras ``jit_compile``)
    distributed: bool = False  # data-parallel across the machines named in ``TF_CONFIG``
    #: Where TensorBoard logs go; None writes none. Not a property of the model: not saved.
    tensorboard: str | None = None

    def to_dict(self) -> dict[str, Any]:
        recorded = asdict(self)
        recorded.pop("tensorboard")  # a path on the machine that trained: not the model's
        return recorded


@dataclass
class TrainProgress:
    """What a progress hook receives after every batch and every epoch."""

    epoch: int  # 0-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    logs: dict[str, float]
    history: dict[str, list[float]]
    epoch_end: bool = False
    #: "features" while images go through a frozen backbone (batch/batches count images),
    #: then "train".
    stage: str = "train"

    @property
    def fraction(self) -> float:
        if self.stage == "features":
            return min(1.0, self.batch / max(self.batches, 1))
        return min(1.0, (self.epoch + self.batch / max(self.batches, 1)) / max(self.epochs, 1))


@dataclass
class TrainResult:
    model: Any
    preprocessing: Preprocessing
    config: TrainConfig
    history: dict[str, list[float]]
    best_epoch: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    #: Pooled features of the training images (one view) and of the validation images,
    #: when training computed them and the model still maps images to them.
    features: tuple[np.ndarray, np.ndarray] | None = None
    #: What else the bundle's ``vision.json`` records about how the model was made
    #: (``distillation``, ``pruning``).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistillConfig:
    """What decides a distillation; saved into the student's bundle."""

    student: str = "simple_cnn"
    input_size: int | None = 96  # the student's; its architecture's default when None
    temperature: float = 4.0
    #: Weight of the soft (teacher) term; the rest goes to the labels. High: with a few labelled
    #: photos the teacher's answers on hundreds of views carry most of what there is to learn.
    soft_weight: float = 0.9
    views: int = 24  # per training image, the image itself included
    epochs: int = 40  # the texture bench: 30 left the student at 0.92, its pruning fine-tune lifted it to 0.98
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        """The equivalent ``TrainConfig`` (the bundle's ``training`` record, the plots' labels)."""
        return TrainConfig(model=self.student, input_size=self.input_size, epochs=self.epochs,
                           batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
                           weights=None, augment=True)


ProgressHook = Callable[[TrainProgress], None]
