"""The whole recipe the CLI and the app share: dataset -> trained, evaluated, saved bundle."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vision.calibration import plot_reliability
from vision.data import LabelledDataset
from vision.errors import InvalidBundleError
from vision.evaluate import Evaluation, evaluation_from_probabilities, plot_confusion, plot_history
from vision.models import get_spec
from vision.store import CONFUSION_FILE, CURVES_FILE, RELIABILITY_FILE, make_info, save_bundle
from vision.train import ProgressHook, TrainConfig, TrainResult, train
from vision.trust import Trust, fit_trust


@dataclass
class TrainedBundle:
    path: Path
    result: TrainResult
    evaluation: Evaluation
    trust: Trust


def train_bundle(dataset: LabelledDataset, config: TrainConfig, out: str | Path,
                 name: str | None = None, overwrite: bool = False,
                 progress: ProgressHook | None = None,
                 cancel: threading.Event | None = None) -> TrainedBundle:
    """Train ``config.model`` on ``dataset``, calibrate it and fit its "unknown" detector
    (``vision.trust``), evaluate on its validation split, and save a bundle at ``out`` with
    metrics, dataset summary, model card, the detector and the plots."""
    out = Path(out)
    if out.exists() and not overwrite:
        # Fail before training, not after an hour of it.
        raise InvalidBundleError(f"a model already exists at '{out}'; choose another name or overwrite")
    result = train(dataset, config, progress=progress, cancel=cancel)
    # Calibrates result.model in place; the validation answers come from the same pass.
    trust = fit_trust(result.model, dataset, result.preprocessing, result.features)
    evaluation = evaluation_from_probabilities(dataset.class_names, trust.val_labels, trust.val_probabilities)
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
        ood=trust.detector.to_info(),
    )
    files = {CURVES_FILE: _png(plot_history(result.history)), CONFUSION_FILE: _png(plot_confusion(evaluation)),
             **trust.detector.files()}
    if trust.calibration is not None:
        info["calibration"] = trust.calibration.to_dict()
        files[RELIABILITY_FILE] = _png(plot_reliability(info["calibration"]))
    save_bundle(result.model, info, out, overwrite=overwrite, extra_files=files)
    return TrainedBundle(out, result, evaluation, trust)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
