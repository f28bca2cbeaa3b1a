"""The whole recipe the CLI and the app share: dataset -> trained, evaluated, saved bundle."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vision.data import LabelledDataset
from vision.errors import InvalidBundleError
from vision.evaluate import (
    Evaluation,
    evaluate_model,
    evaluation_from_probabilities,
    plot_confusion,
    plot_history,
)
from vision.models import get_spec
from vision.store import make_info, save_bundle
from vision.train import ProgressHook, TrainConfig, TrainResult, train

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


@dataclass
class TrainedBundle:
    path: Path
    result: TrainResult
    evaluation: Evaluation


def train_bundle(dataset: LabelledDataset, config: TrainConfig, out: str | Path,
                 name: str | None = None, overwrite: bool = False,
                 progress: ProgressHook | None = None,
                 cancel: threading.Event | None = None) -> TrainedBundle:
    """Train ``config.model`` on ``dataset``, evaluate on its validation split, and save a
    bundle at ``out`` with metrics, dataset summary, model card and the two plots."""
    out = Path(out)
    if out.exists() and not overwrite:
        # Fail before training, not after an hour of it.
        raise InvalidBundleError(f"a model already exists at '{out}'; choose another name or overwrite")
    result = train(dataset, config, progress=progress, cancel=cancel)
    if result.val_probabilities is not None:  # already computed on cached features
        evaluation = evaluation_from_probabilities(dataset.class_names, dataset.val.labels, result.val_probabilities)
    else:
        evaluation = evaluate_model(result.model, dataset.val, result.preprocessing, dataset.class_names)
    metrics: dict[str, Any] = evaluation.to_dict()
    metrics["best_epoch"] = result.best_epoch + 1
    metrics["epochs_run"] = len(result.history.get("loss", []))
    metrics["train_seconds"] = round(result.seconds, 1)
    spec = get_spec(config.model)
    training = config.to_dict()
    if not spec.transfer:  # pretrained weights and fine-tuning do not apply: don't record them
        training.pop("weights")
        training.pop("fine_tune_layers")
    info = make_info(
        name or out.name, dataset.class_names, config.model, result.preprocessing,
        base_model=spec.base_model, training=training, metrics=metrics, history=result.history,
        dataset={**result.summary, "source": dataset.source, "skipped_files": len(dataset.skipped)},
    )
    save_bundle(result.model, info, out, overwrite=overwrite, extra_files={
        CURVES_FILE: _png(plot_history(result.history)),
        CONFUSION_FILE: _png(plot_confusion(evaluation)),
    })
    return TrainedBundle(out, result, evaluation)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
