"""The Train view: classes built from webcam snapshots and uploads (one card per class:
its thumbnails, a click removes a sample, rename, delete), or a .zip of class folders;
training with live curves, cancel, and the results once there are some (metrics, a
clickable confusion matrix whose cells show their images beside their Grad-CAMs).

In public mode a trained model belongs to the session that trained it (``mine/<name>``)
until the owner publishes it; in private mode it is saved to the models folder as before.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import gradio as gr
import numpy as np
from PIL import Image

from vision.bundle.store import RELIABILITY_FILE
from vision.data.datasets import load_folder, load_zip
from vision.data.samples import SampleCollection
from vision.errors import AccessDeniedError, BundleExistsError, DatasetError, LimitExceededError
from vision.models.registry import get_spec
from vision.plots import plot_confusion, plot_history
from vision.serve.tensorboard import start_tensorboard
from vision.training.callbacks import stop_if_cancelled
from vision.training.config import ProgressHook, TrainConfig
from vision.training.jobs import JobFailed, JobFinished, TrainingJob
from vision.training.objectives import check as check_objectives
from vision.training.recipe import TrainedBundle, train_bundle
from vision.ui.catalog import MINE, SHARED
from vision.ui.context import Context
from vision.ui.errors import user_errors
from vision.ui.review import Mistakes, audit_summary, cell_of, confusion_table, issue_gallery
from vision.ui.session import Session

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Where the app's trainings log for TensorBoard, inside the models folder (hidden: not a bundle).
TENSORBOARD_DIR = ".tensorboard"
#: A class card's thumbnails are at most this many pixels on a side.
THUMBNAIL_SIDE = 96
#: Where a session keeps its last training's cell images (see ``Mistakes.keep``).
REVIEW_DIR = "review"
#: A training's work (fit, calibration folds, label audit, Grad-CAM gallery, saving) is cancelled
#: past this, and the app's training slot is free again.
TIME_LIMIT_S = 30 * 60


@dataclass
class Trained:
    """What a Train-view job hands back: the saved bundle with its audit, and the validation
    images by confusion-matrix cell with the Grad-CAM gallery of the mistakes."""

    bundle: TrainedBundle
    mistakes: Mistakes
    gallery: list[tuple[np.ndarray, str]]


def hidden() -> dict[str, Any]:
    """An update that empties a result and hides it until a training produces it again."""
    return gr.update(value=None, visible=False)


class TrainView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _samples(self, session: Session) -> SampleCollection:
        return SampleCollection(session.samples.root, max_side=self.ctx.config.limits.sample_max_side)

    @staticmethod
    def _table(collection: SampleCollection) -> list[list[Any]]:
        return [[name, count] for name, count in collection.classes().items()]

    @user_errors
    def add_samples(self, class_name: str, snapshot: str | None, uploads: list[str] | None,
                    request: gr.Request) -> tuple[list[list[Any]], None, None]:
        """Add a snapshot and/or uploads to a class (or just create the class)."""
        limits = self.ctx.config.limits
        session = self.ctx.session(request)
        collection = self._samples(session)
        images = [path for path in [snapshot, *(uploads or [])] if path]
        if len(images) > limits.files_per_call:
            raise LimitExceededError(f"{len(images)} images in one go; add at most {limits.files_per_call} at a time")
        held = sum(collection.classes().values())
        if held + len(images) > limits.samples_per_session:
            raise LimitExceededError(f"this session holds {held} samples; the limit is {limits.samples_per_session}")
        session.check_disk(limits.session_disk_mb)
        if images:
            collection.add_samples(class_name, images)
        else:
            collection.add_class(class_name)
        return self._table(collection), None, None

    @user_errors
    def clear_samples(self, request: gr.Request) -> list[list[Any]]:
        self.ctx.session(request).samples.clear()
        return []

    def class_cards(self, request: gr.Request) -> list[tuple[str, list[str], list[np.ndarray]]]:
        """Each class as its card shows it: (name, sample ids, thumbnails), in creation order."""
        collection = self._samples(self.ctx.session(request))
        cards = []
        for name in collection.classes():
            files = collection.samples(name)
            cards.append((name, [path.stem for path in files], [_thumbnail(path) for path in files]))
        return cards

    @user_errors
    def remove_sample(self, class_name: str, index: int, request: gr.Request) -> list[list[Any]]:
        """Remove sample number ``index`` (0 = oldest, as the card shows them) from a class;
        returns the class table."""
        collection = self._samples(self.ctx.session(request))
        files = collection.samples(class_name)
        if not 0 <= int(index) < len(files):
            raise DatasetError(f"class '{class_name}' has no sample {index}")
        collection.remove_sample(class_name, files[int(index)].stem)
        return self._table(collection)

    @user_errors
    def remove_sample_id(self, class_name: str, sample: str, request: gr.Request) -> list[list[Any]]:
        """Remove the sample a card showed (by id: the card may be older than the folder)."""
        collection = self._samples(self.ctx.session(request))
        collection.remove_sample(class_name, sample)
        return self._table(collection)

    @user_errors
    def rename_class(self, class_name: str, new_name: str, request: gr.Request) -> list[list[Any]]:
        """Rename a class (its samples stay); returns the class table."""
        collection = self._samples(self.ctx.session(request))
        collection.rename_class(class_name, new_name)
        return self._table(collection)

    @user_errors
    def delete_class(self, class_name: str, request: gr.Request) -> list[list[Any]]:
        """Delete a class with its samples; returns the class table."""
        collection = self._samples(self.ctx.session(request))
        if class_name not in collection.classes():
            raise DatasetError(f"no class named {class_name!r}")
        collection.remove_class(class_name)
        return self._table(collection)

    def destination(self, session: Session, name: str) -> tuple[str, Path]:
        """Where a model called ``name`` is saved, and its key, after the limits are checked."""
        config = self.ctx.config
        if not MODEL_NAME.match(name):
            raise DatasetError("name the model with letters, digits, '-' or '_' (up to 64), e.g. my-pets")
        taken = self.ctx.catalog.visible(session)
        if SHARED + name in taken or MINE + name in taken or config.default_model.name == name:
            raise BundleExistsError(f"a model named '{name}' already exists; choose another name or delete it first")
        if not config.public:
            return SHARED + name, config.models_dir / name
        if len(session.models) >= config.limits.models_per_session:
            raise LimitExceededError(f"a session keeps at most {config.limits.models_per_session} models: delete "
                                     "one in the Models tab first")
        session.check_disk(config.limits.session_disk_mb)
        return MINE + name, session.root / "models" / name

    def _dataset(self, session: Session, zip_file: str | None, workdir: Path) -> Any:
        """The images to train on: an uploaded zip (extracted into ``workdir``), else the class cards."""
        if zip_file:
            # Extraction counts against the session's disk quota, and stops at it.
            limits = self.ctx.config.limits
            quota = session.remaining_bytes(limits.session_disk_mb) if self.ctx.config.public else None
            return load_zip(zip_file, extract_to=workdir / "data", max_total_bytes=quota)
        if any(session.samples.classes().values()):
            return load_folder(session.samples.root)
        raise DatasetError("upload a .zip of class folders, or add classes and samples above")

    @user_errors
    def train(self, zip_file: str | None, architecture: str, size: int, epochs: int, augment: bool,
              imagenet: bool, name: str, loss: str = TrainConfig.loss,
              label_smoothing: float = TrainConfig.label_smoothing, mixing: str = TrainConfig.mixing,
              class_weights: bool = TrainConfig.class_weights, request: gr.Request = None,
              progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        """Train a model on the upload or the class cards as the session's job, streaming its
        progress and curves, then its results (metrics, confusion matrix, mistakes, audit)."""
        session = self.ctx.session(request)
        if session.training:
            raise LimitExceededError("this session is already training; wait for it or cancel it")
        name = (name or "").strip()
        key, out = self.destination(session, name)
        workdir = Path(tempfile.mkdtemp(prefix="vision-train-", dir=self.ctx.config.state_dir))
        job = None
        try:
            dataset = self._dataset(session, zip_file, workdir)
            config = self._config(dataset, architecture, size, epochs, augment, imagenet, loss, label_smoothing,
                                  mixing, class_weights)
            waiting = self.ctx.training_slot.locked()
            job = session.job = self._start(session, dataset, config, key, out, name)
            status = _status(architecture, dataset)
            # The last training's results go until this one has its own.
            yield (status + (" Waiting for another training to finish…" if waiting else ""), hidden(), "", None,
                   hidden(), gr.update(), hidden(), hidden(), hidden())
            done = yield from _follow(job, status, progress)
            yield self._results(session, key, out, name, dataset, status, done)
        finally:
            # Also where Gradio closes this generator because the visitor dropped the stream.
            release_job(job, workdir)

    def _config(self, dataset: Any, architecture: str, size: int, epochs: int, augment: bool, imagenet: bool,
                loss: str, label_smoothing: float, mixing: str, class_weights: bool) -> TrainConfig:
        """The view's choices as a checked ``TrainConfig`` (the batch size follows the data's size)."""
        # Private mode: every training logs for TensorBoard beside the models (the owner's).
        logs = None if self.ctx.config.public else str(self.ctx.config.models_dir / TENSORBOARD_DIR)
        config = TrainConfig(model=architecture, input_size=int(size), epochs=int(epochs), augment=bool(augment),
                             weights="imagenet" if imagenet else None, tensorboard=logs,
                             batch_size=16 if len(dataset.train) < 200 else 32, loss=loss,
                             label_smoothing=float(label_smoothing), mixing=mixing,
                             class_weights=bool(class_weights))
        check_objectives(config, features=get_spec(architecture).cached_features and bool(imagenet))
        return config

    def _start(self, session: Session, dataset: Any, config: TrainConfig, key: str, out: Path,
               name: str) -> TrainingJob:
        """Start the training job in the app's training slot; once it succeeds, the model (in
        public mode) and its confusion-matrix cells are the session's."""
        review = session.root / REVIEW_DIR / uuid.uuid4().hex

        def keep(done: Trained) -> None:  # in the job's thread: kept even if nobody watches
            if key.startswith(MINE):
                session.models[key] = out
            session.mistakes = done.mistakes
            for older in (session.root / REVIEW_DIR).iterdir():  # the last training's cells go
                if older != review:
                    shutil.rmtree(older, ignore_errors=True)

        return TrainingJob(_work(dataset, config, out, name, review), slot=self.ctx.training_slot,
                           on_success=keep, time_limit_s=TIME_LIMIT_S).start()

    def _results(self, session: Session, key: str, out: Path, name: str, dataset: Any, status: str,
                 done: Trained) -> tuple[Any, ...]:
        """The finished training's outputs, in the order ``train`` yields them."""
        trained, audit = done.bundle, done.bundle.audit
        evaluation = trained.evaluation
        metrics = _metrics(name, trained, len(dataset.val), mine=key.startswith(MINE))
        reliability = out / RELIABILITY_FILE
        # Plain values where scripts read them (gradio_client gets an update's dict, not its
        # value); ``reveal`` shows those once this has ended.
        return (status + "\n\nDone.", plot_history(trained.result.history), metrics, plot_confusion(evaluation),
                gr.update(value=done.gallery, visible=True),
                gr.update(choices=self.ctx.catalog.choices(session), value=key),
                Image.open(reliability).convert("RGB") if reliability.is_file() else None,
                issue_gallery(audit) if audit else [],
                gr.update(value=confusion_table(dataset.class_names, evaluation.confusion), visible=True))

    @staticmethod
    def reveal(*results: Any) -> tuple[dict[str, Any], ...]:
        """Show each result that has a value, hide the others (after a training ends)."""
        return tuple(gr.update(visible=result is not None and not (isinstance(result, list) and not result))
                     for result in results)

    @staticmethod
    def pick_cell(selected: gr.SelectData) -> str:
        """The cell a click on the confusion table chose, as ``show_mistakes`` takes it."""
        return cell_of(selected.index)

    @user_errors
    def show_mistakes(self, pair: str | None, request: gr.Request) -> list[tuple[np.ndarray, str]]:
        """The last training's validation images of one (true, predicted) cell ("t:p", class
        indices; "t:*" a whole row; "all" every mistake), each beside its Grad-CAM."""
        mistakes = self.ctx.session(request).mistakes
        return mistakes.gallery(pair) if mistakes is not None else []

    @user_errors
    def tensorboard(self, request: gr.Request) -> str:
        """A link to TensorBoard on this machine's loopback, serving every training's logs: for
        the owner in private mode (it has no login, and serves only this machine's browser)."""
        if self.ctx.config.public:
            raise AccessDeniedError("TensorBoard is for the app's owner: run the app in private mode")
        logs = self.ctx.config.models_dir / TENSORBOARD_DIR
        logs.mkdir(parents=True, exist_ok=True)
        url = start_tensorboard(logs)
        return f"[Open TensorBoard]({url}) (on this machine: every training's curves, learning rate and pictures)"

    def cancel(self, request: gr.Request) -> str:
        return cancel_session_job(self.ctx, request, "Nothing is training in this session.")


def cancel_session_job(ctx: Context, request: gr.Request, idle: str) -> str:
    """Cancel the session's training or optimizing job (a session runs one at a time); ``idle``
    is the answer when it runs none."""
    session = ctx.sessions.find(request)  # a call with no session has nothing to cancel
    if session is None or not session.training:
        return idle
    session.job.cancel()
    return "Cancelling after the current batch…"


def release_job(job: TrainingJob | None, workdir: Path) -> None:
    """Let go of a view's job and its working folder, however the view's stream ended: the job
    stops after its current batch (holding the app's training slot until it has, see
    ``TrainingJob``), and ``workdir`` (the images it reads) goes once the job's thread has
    ended, or at once when no job started."""
    if job is not None:
        job.cancel()
        threading.Thread(target=_remove_after, args=(job, workdir), daemon=True).start()
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def _thumbnail(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        return np.asarray(image.convert("RGB"))


def _status(architecture: str, dataset: Any) -> str:
    """What is being trained on what (and which files were skipped)."""
    skipped = ""
    if dataset.skipped:
        skipped = (f" Skipped {len(dataset.skipped)} unreadable files: "
                   + ", ".join(f"`{item}`" for item in dataset.skipped[:5])
                   + (" …" if len(dataset.skipped) > 5 else "") + ".")
    return (f"Training **{architecture}** on {len(dataset.train)} images, validating on "
            f"{len(dataset.val)}; classes: {', '.join(dataset.class_names)}.{skipped}")


def _metrics(name: str, trained: TrainedBundle, validation_images: int, mine: bool) -> str:
    """The results in words: accuracy, calibration and the data check."""
    evaluation, audit = trained.evaluation, trained.audit
    where = "It is yours for this session" if mine else "Pick it in the Models tab"
    metrics = (f"Saved **{name}**: validation accuracy **{evaluation.accuracy:.3f}**, macro F1 "
               f"{evaluation.macro_f1:.3f}, best epoch {trained.result.best_epoch + 1}, "
               f"{trained.result.seconds:.0f} s. {where}.")
    calibration = trained.trust.calibration
    # Which answers the ECE is measured on: the ones T was fitted on, where a few dozen answers in
    # ten bins may even read worse after (T is the likelihood's choice, judged by its NLL).
    metrics += (f"\n\nConfidence calibrated: temperature {calibration.temperature:.2f}; expected calibration "
                f"error {calibration.ece_before:.3f} → {calibration.ece_after:.3f} on the {calibration.images} "
                f"{calibration.method} answers it was fitted on." if calibration else
                f"\n\nConfidence not calibrated: {validation_images} validation images are too few to fit a "
                "temperature.")
    return metrics + "\n\n" + (audit_summary(audit) if audit else "Data check skipped: every class needs 2 images.")


def _remove_after(job: TrainingJob, folder: Path) -> None:
    job.join()
    shutil.rmtree(folder, ignore_errors=True)


def _follow(job: TrainingJob, status: str, progress: gr.Progress) -> Generator[tuple[Any, ...], None, Trained]:
    """The job's progress on the bar, and its curves at each epoch's end; returns what it
    handed back, or raises its error."""
    for update in job.updates():
        if isinstance(update, JobFailed):
            raise update.error
        if isinstance(update, JobFinished):
            done: Trained = update.trained
            break
        if update.stage == "checking":
            progress(1.0, desc="checking the labels")
            continue
        if update.stage == "features":
            progress(update.fraction, desc=f"features {update.batch}/{update.batches} images")
            continue
        progress(update.fraction, desc=f"epoch {update.epoch + 1}/{update.epochs}")
        if update.epoch_end:
            logs = update.logs
            yield (f"{status}\n\nEpoch {update.epoch + 1}/{update.epochs}: loss {logs.get('loss', 0):.3f}"
                   f", val accuracy {logs.get('val_accuracy', 0):.3f}"), \
                gr.update(value=plot_history(update.history), visible=True), \
                "", None, gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
    return done


def _work(dataset: Any, config: TrainConfig, out: Path, name: str,
          review: Path) -> Callable[[ProgressHook, threading.Event], Trained]:
    """A Train-view training as one job: train, calibrate, audit the labels and save
    (``train_bundle``), then the validation images by cell and the Grad-CAM gallery of the
    mistakes, all inside the job (and the app's training slot). Cancelled or failed at any
    point, it leaves no model and no review folder behind."""

    def work(progress: ProgressHook, cancel: threading.Event) -> Trained:
        trained = train_bundle(dataset, config, out, name=name, progress=progress, cancel=cancel, audit=True)
        try:
            stop_if_cancelled(cancel)
            mistakes = Mistakes.of(out, dataset.class_names, dataset.val.sources(), trained.evaluation).keep(review)
            stop_if_cancelled(cancel)
            gallery = mistakes.gallery()  # Grad-CAMs: the model's work, so inside the slot
            stop_if_cancelled(cancel)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(review, ignore_errors=True)
            raise
        return Trained(trained, mistakes, gallery)

    return work
