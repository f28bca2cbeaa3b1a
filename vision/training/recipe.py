"""The whole recipe the CLI and the app share: which path trains a configuration, then
dataset -> trained, calibrated, evaluated, saved bundle."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from vision.bundle.examples import pick_examples
from vision.bundle.store import CONFUSION_FILE, CURVES_FILE, RELIABILITY_FILE, make_info, save_bundle
from vision.data.datasets import LabelledDataset
from vision.errors import DatasetError, InvalidBundleError, TrainingConfigError, VisionError
from vision.models.registry import get_spec, registered_names
from vision.plots import plot_confusion, plot_history, plot_reliability
from vision.training import distributed
from vision.training.callbacks import stop_if_cancelled
from vision.training.config import ProgressHook, TrainConfig, TrainProgress, TrainResult
from vision.training.evaluate import Evaluation, evaluation_from_probabilities
from vision.training.fast import fast_head_out_of_fold_logits, train_on_features
from vision.training.loop import fit_on_images
from vision.training.memory import release_memory
from vision.training.tensorboard import log_evaluation, new_run, stage
from vision.trust.audit import Audit, audit_dataset
from vision.trust.fit import MIN_CALIBRATION_IMAGES, Trust, fit_trust

#: The label audit's backbone input size for models that did not train on cached features.
AUDIT_SIZE = 224


def train(dataset: LabelledDataset, config: TrainConfig, progress: ProgressHook | None = None,
          cancel: threading.Event | None = None) -> TrainResult:
    """Train a new ``config.model`` on ``dataset`` and return it with its history.

    The weights of the epoch with the lowest validation loss are restored at the end. An
    architecture with ``cached_features`` and ImageNet weights trains its head on cached
    features (``vision.training.fast``), then, with ``fine_tune_layers``, its top layers end to end.

    Raises:
        TrainingCancelledError: ``cancel`` was set; training stopped after the current batch.
        UnknownModelError, WeightsUnavailableError, CheckpointError: from model creation.
        TrainingConfigError: ``config.distributed`` with the cached-features path.
    """
    spec = get_spec(config.model)
    if spec.cached_features and config.weights == "imagenet":
        if config.distributed:
            # A head on cached features trains in seconds on one machine: nothing to spread, and a
            # fine-tune would start each machine from the head it trained on its own.
            raise TrainingConfigError(
                f"--distributed trains end to end on images; {config.model} with ImageNet weights trains a "
                "head on cached features, in seconds on one machine: drop --distributed, or train end to end "
                "(--weights none, or another --model)")
        head_only = train_on_features(dataset, config, progress, cancel)
        if not config.fine_tune_layers:
            return head_only
        # Pretrained layers move in small steps: a tenth of the head's learning rate.
        gentle = stage(dataclasses.replace(config, learning_rate=config.learning_rate / 10), "fine_tune")
        fine_tuned = fit_on_images(dataset, gentle, progress, cancel, start_from=head_only.model)
        fine_tuned.config = config
        fine_tuned.seconds += head_only.seconds
        return fine_tuned
    return fit_on_images(dataset, config, progress, cancel)



@dataclass
class TrainedBundle:
    path: Path
    result: TrainResult
    evaluation: Evaluation
    trust: Trust
    #: cleanlab's label issues and near-duplicates, when asked for (``train_bundle(audit=True)``)
    #: and every class has the 2 images k folds need.
    audit: Audit | None = None


def train_bundle(dataset: LabelledDataset, config: TrainConfig, out: str | Path,
                 name: str | None = None, overwrite: bool = False,
                 progress: ProgressHook | None = None,
                 cancel: threading.Event | None = None, audit: bool = False) -> TrainedBundle:
    """Train ``config.model`` on ``dataset``, calibrate it and fit its "unknown" detector
    (``vision.trust.fit``), evaluate on its validation split, and save a bundle at ``out`` with
    metrics, dataset summary, model card, the detector and the plots.

    ``cancel`` is checked through every stage, after ``fit`` too (the calibration folds, the
    audit, saving): a cancelled run raises ``TrainingCancelledError`` and leaves nothing at
    ``out``. ``audit`` adds cleanlab's label audit (``TrainedBundle.audit``), run before saving.

    Whether it succeeds, fails or is cancelled, the memory the run freed is handed back to
    the system at the end (``vision.training.memory``): a long-running app would otherwise
    keep every training's peak.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        # Fail before training, not after an hour of it.
        raise InvalidBundleError(f"a model already exists at '{out}'; choose another name or overwrite")
    config = new_run(config, name or out.name)  # TensorBoard: a run folder of its own
    try:
        result = train(dataset, config, progress=progress, cancel=cancel)
        return save_trained(result, dataset, out, name, overwrite, cancel=cancel, audit=audit, progress=progress)
    finally:
        release_memory()


def save_trained(result: TrainResult, dataset: LabelledDataset, out: str | Path, name: str | None = None,
                 overwrite: bool = False, out_of_fold: Any = None, cancel: threading.Event | None = None,
                 audit: bool = False, progress: ProgressHook | None = None) -> TrainedBundle:
    """Calibrate ``result.model`` (in place), fit its "unknown" detector, evaluate it on
    ``dataset.val`` and save it as a bundle at ``out``: what every trained model goes through,
    whether trained here, distilled or pruned. ``result.info`` adds to ``vision.json``.

    A head on cached features with too few validation images to calibrate on (few-shot) is
    calibrated on the out-of-fold logits of k-fold heads over every image instead; a caller
    that trained another kind of head passes its own ``out_of_fold`` logits (``fit_trust``).

    ``cancel`` is checked between the stages and during the folds and the audit; ``audit``
    runs cleanlab's label audit before anything is saved (``progress`` hears a ``"checking"``
    stage). A run cancelled once the bundle is written removes it.

    Raises:
        TrainingCancelledError: ``cancel`` was set; nothing is left at ``out``.
    """
    out = Path(out)
    config = result.config
    stop_if_cancelled(cancel)
    # Calibrates result.model in place; the validation answers come from the same pass.
    if out_of_fold is None:
        out_of_fold = _out_of_fold(result, dataset, cancel)
    stop_if_cancelled(cancel)
    trust = fit_trust(result.model, dataset, result.preprocessing, result.features, out_of_fold)
    found = None
    if audit:
        stop_if_cancelled(cancel)
        if progress:
            progress(TrainProgress(config.epochs, config.epochs, 1, 1, {}, {}, stage="checking"))
        found = _audit(result, dataset, trust, cancel)
    stop_if_cancelled(cancel)
    evaluation = evaluation_from_probabilities(dataset.class_names, trust.val_labels, trust.val_probabilities)
    metrics: dict[str, Any] = evaluation.to_dict()
    metrics["best_epoch"] = result.best_epoch + 1
    metrics["epochs_run"] = len(result.history.get("loss", []))
    metrics["train_seconds"] = round(result.seconds, 1)
    # A model trained further from an import has no registry entry (vision.training.further).
    spec = get_spec(config.model) if config.model in registered_names() else None
    training = config.to_dict()
    if spec is None or not spec.transfer:  # pretrained weights and fine-tuning do not apply: don't record them
        training.pop("weights")
        training.pop("fine_tune_layers")
    info = make_info(
        name or out.name, dataset.class_names, config.model, result.preprocessing,
        base_model=spec.base_model if spec else None, training=training, metrics=metrics, history=result.history,
        dataset={**result.summary, "source": dataset.source, "skipped_files": len(dataset.skipped)},
        ood=trust.detector.to_info(),
    )
    info.update(result.info)
    files = {CURVES_FILE: _png(plot_history(result.history)), CONFUSION_FILE: _png(plot_confusion(evaluation)),
             **trust.detector.files()}
    if trust.calibration is not None:
        info["calibration"] = trust.calibration.to_dict()
        files[RELIABILITY_FILE] = _png(plot_reliability(info["calibration"]))
    stop_if_cancelled(cancel)
    # The model's own photos for its demo (validation ones first: the app shows them as examples).
    shown = [dataset.val, dataset.train]
    examples = pick_examples([s for split in shown for s in split.sources()],
                             [y for split in shown for y in split.labels], len(dataset.class_names))
    save_bundle(result.model, info, out, overwrite=overwrite, extra_files=files, examples=examples)
    try:
        log_evaluation(result, dataset, files)  # TensorBoard, when the run logs
        stop_if_cancelled(cancel)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a run that did not end well keeps nothing
        raise
    return TrainedBundle(out, result, evaluation, trust, found)


def _audit(result: TrainResult, dataset: LabelledDataset, trust: Trust,
           cancel: threading.Event | None) -> Audit | None:
    """cleanlab's label audit of every image, on out-of-fold probabilities of logistic-regression
    heads (``audit_dataset``'s own, as ``python -m vision audit`` ranks them); None where a class is
    too small for k folds. Its features come from the cache the fast path filled (at the
    training's size), else at ``AUDIT_SIZE``. The calibration's out-of-fold answers are not used:
    those heads train from random initial weights, and with a few photos a class whether a
    planted mislabel was flagged changed with the process's random state."""
    size = (result.preprocessing.size[0] if result.features is not None else None) or AUDIT_SIZE

    def embedded(_done: int, _total: int) -> None:
        stop_if_cancelled(cancel)

    try:
        return audit_dataset(dataset, progress=embedded, input_size=size)
    except DatasetError:
        return None


def _out_of_fold(result: TrainResult, dataset: LabelledDataset, cancel: threading.Event | None = None) -> Any:
    """Out-of-fold logits to fit the temperature on, where the validation split is too small
    and the model is a head on cached features (k more heads cost seconds): None otherwise.
    An end-to-end or fine-tuned model would need k more trainings on images; it stays uncalibrated."""
    if result.features is None or len(dataset.val) >= MIN_CALIBRATION_IMAGES:
        return None
    try:
        # As many epochs as the model's head kept: the folds have no validation split to stop on.
        return fast_head_out_of_fold_logits(dataset, result.config, result.best_epoch + 1,
                                            cancelled=(lambda: cancel.is_set()) if cancel is not None else None)
    except DatasetError:  # a class of one image: no fold can hold it out
        return None


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def train_bundle_on_cluster(cluster: distributed.Cluster, dataset: LabelledDataset, config: TrainConfig,
                            out: str | Path, name: str | None = None, overwrite: bool = False,
                            progress: ProgressHook | None = None) -> TrainedBundle | None:
    """``train_bundle`` as one task of ``cluster`` (``vision.training.distributed``): the chief
    saves at ``out`` and returns the ``TrainedBundle``; any other task saves into a temporary
    folder, deletes it and returns None.

    Raises:
        VisionError: another task stopped responding (nothing is saved), or what ``train_bundle`` raises.
    """
    config = dataclasses.replace(config, distributed=True)
    try:
        if cluster.is_chief:
            return train_bundle(dataset, config, out, name=name, overwrite=overwrite, progress=progress)
        scratch = Path(tempfile.mkdtemp(prefix="vision-worker-"))
        try:
            train_bundle(dataset, dataclasses.replace(config, tensorboard=None), scratch / Path(out).name,
                         name=name or Path(out).name, progress=progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return None
    except tf.errors.OpError as error:
        if not distributed.lost_peer(error):
            raise
        raise VisionError(distributed.peer_message(cluster, error)) from None
