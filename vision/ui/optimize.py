"""The Optimize view: smaller variants of the session's active model (distilled into a small
student, pruned, quantized to int8: ``vision.optimize.compress``) and the table of what each
costs and keeps, measured the same way (its TFLite flatbuffer on LiteRT, on held-out images).

The work runs as a background ``TrainingJob`` in the app's training slot, like a training:
one at a time, cancelled when the visitor cancels or drops the stream. It writes into a
staging folder; only when every step has finished are the variants moved into place, so a
cancelled or failed run leaves no half-written model behind. The bundles become models like
trained ones (``mine/<name>`` in public mode, the models folder in private mode): the Models,
Export and Hub views take them as they are. The int8 variant is a TFLite export folder: it
becomes one of the session's exports (served, zipped and listed as the Export view's are).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
from PIL import Image

from vision.bundle.store import Bundle
from vision.data.datasets import LabelledDataset, load_folder, load_zip
from vision.errors import BundleExistsError, DatasetError, LimitExceededError, TrainingCancelledError
from vision.models.registry import list_models
from vision.optimize.compress import COLUMNS, CompressionPlan, compress
from vision.plots import figure_to_image
from vision.training.config import DistillConfig, TrainProgress
from vision.training.jobs import JobFailed, JobFinished, TrainingJob
from vision.ui.cache import get_bundle
from vision.ui.catalog import MINE
from vision.ui.context import Context
from vision.ui.errors import user_errors
from vision.ui.session import Session
from vision.ui.train import MODEL_NAME, TIME_LIMIT_S, TrainView, cancel_session_job, release_job

#: The inputs' ranges; the handler checks them too (an API caller is not held by the sliders).
STUDENT_SIZES = (32, 160)
EPOCHS = (1, 60)
VIEWS = (1, 48)
MAX_SPARSITY = 0.9
#: A variant's name is ``<prefix>-distilled`` (``-pruned``, ``-int8``): a model name, 64 at most.
PREFIX_MAX = 64 - len("-distilled")
#: What the progress bar says in each of ``compress``'s stages.
STAGES = {
    "measure": "measuring the original",
    "teacher": "the original labels augmented views",
    "features": "the original labels augmented views",
    "train": "distilling",
    "prune": "pruning",
    "int8": "quantizing to int8",
}


def students() -> list[tuple[str, str]]:
    """(label, name) of the architectures a model can be distilled into: those trained from
    scratch (a transfer model's pretrained base is the size distillation removes)."""
    return [(f"{spec.name} — {spec.description}", spec.name) for spec in list_models() if not spec.transfer]


class OptimizeView:
    #: The table's columns: ``vision.optimize.compress.COLUMNS``, the first naming the variant.
    TABLE_HEADERS = ["variant", *COLUMNS[1:]]

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._train = TrainView(ctx)  # where a model is saved, under the same limits as a trained one

    def _dataset(self, session: Session, bundle: Bundle, zip_file: str | None, workdir: Path) -> LabelledDataset:
        """The active model's training images: the upload, else the session's classes, else (private
        mode only) the folder its bundle records, in the model's class order."""
        config = self.ctx.config
        if zip_file:
            quota = session.remaining_bytes(config.limits.session_disk_mb) if config.public else None
            dataset = load_zip(zip_file, extract_to=workdir / "data", max_total_bytes=quota)
        elif any(session.samples.classes().values()):
            dataset = load_folder(session.samples.root)
        else:
            source = str((bundle.info.get("dataset") or {}).get("source") or "")
            # A server path: read only for the owner (private mode), never named to anyone.
            if config.public or not source or not Path(source).is_dir():
                raise DatasetError("upload a .zip of the model's training images (one folder per class), or add "
                                   "its classes and samples in the Train tab")
            dataset = load_folder(source)
        return _in_model_order(dataset, list(bundle.labels))

    def _destinations(self, session: Session, prefix: str, steps: list[str]) -> dict[str, tuple[str, Path]]:
        """Key and folder of each bundle variant (``<prefix>-distilled``, ``<prefix>-pruned``)."""
        config = self.ctx.config
        if not MODEL_NAME.match(prefix) or len(prefix) > PREFIX_MAX:
            raise DatasetError(f"name the variants with letters, digits, '-' or '_' (up to {PREFIX_MAX}), "
                               "e.g. my-model-small")
        bundles = [step for step in steps if step != "int8"]
        if config.public and len(session.models) + len(bundles) > config.limits.models_per_session:
            raise LimitExceededError(f"a session keeps at most {config.limits.models_per_session} models and this "
                                     f"makes {len(bundles)} more: delete one in the Models tab first")
        return {step: self._train.destination(session, f"{prefix}-{step}") for step in bundles}

    @user_errors
    def optimize(self, zip_file: str | None, unlabelled: list[str] | None, distil: bool, student: str,
                 student_size: int, epochs: int, views: int, sparsity: float, int8: bool, prefix: str,
                 request: gr.Request, progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        session = self.ctx.session(request)
        if session.training:
            raise LimitExceededError("this session is already training; wait for it or cancel it")
        plan = self._plan(distil, student, student_size, epochs, views, sparsity, int8)
        prefix = (prefix or "").strip()
        destinations = self._destinations(session, prefix, plan.steps())
        folder = self.ctx.catalog.active(session)
        bundle = get_bundle(folder)
        limits = self.ctx.config.limits
        unlabelled = [path for path in unlabelled or [] if path]
        if self.ctx.config.public and len(unlabelled) > limits.samples_per_session:
            raise LimitExceededError(f"{len(unlabelled)} unlabelled images; at most {limits.samples_per_session}")
        workdir = Path(tempfile.mkdtemp(prefix="vision-optimize-", dir=self.ctx.config.state_dir))
        staging = workdir / "variants"
        job = None
        try:
            dataset = self._dataset(session, bundle, zip_file, workdir)
            published: dict[str, Any] = {}

            def work(report: Any, cancel: threading.Event) -> Any:
                try:
                    return compress(bundle, dataset, plan, staging, unlabelled or None, progress=report,
                                    cancel=cancel, name=prefix)
                except BaseException:
                    shutil.rmtree(workdir, ignore_errors=True)  # nothing of a cancelled run is kept
                    raise

            def keep(rows: Any) -> None:  # in the job's thread: kept even if nobody watches
                try:
                    published.update(self._publish(session, staging, prefix, rows, destinations))
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)

            waiting = self.ctx.training_slot.locked()
            job = session.job = TrainingJob(work, slot=self.ctx.training_slot, on_success=keep,
                                            time_limit_s=TIME_LIMIT_S).start()
            status = (f"Optimizing **{bundle.name}** ({' → '.join(plan.steps())}) with {len(dataset.train)} training "
                      f"images ({len(unlabelled)} unlabelled), measuring on {len(dataset.val)}; classes: "
                      f"{', '.join(dataset.class_names)}.")
            yield status + (" Waiting for another training to finish…" if waiting else ""), [], None, None, gr.update()
            stage = None
            for update in job.updates():
                if isinstance(update, JobFailed):
                    if isinstance(update.error, TrainingCancelledError):
                        raise TrainingCancelledError("optimizing was cancelled; no variant was kept")
                    raise update.error
                if isinstance(update, JobFinished):
                    rows = update.trained
                    break
                progress(update.fraction, desc=_describe(update))
                if update.stage != stage or update.epoch_end:
                    stage = update.stage
                    yield f"{status}\n\n{_describe(update)}…", gr.update(), gr.update(), gr.update(), gr.update()
            table = [row.row() for row in rows]
            lines = [f"{status}\n\nDone. Measured as each ships (TFLite on this server's LiteRT) on "
                     f"{len(dataset.val)} held-out images:"]
            for row in rows[1:]:
                kept = published.get(row.name)
                share = row.size_bytes / rows[0].size_bytes
                lines.append(f"- **{row.name}**: {row.size_bytes / 1e6:.2f} MB ({share:.0%} of the original), "
                             f"{row.latency_ms:.2f} ms per image, agreement with the original "
                             f"{row.agreement:.0%}" + (f" — {kept}" if kept else ""))
            chosen = [key for key, _ in destinations.values()]
            yield ("\n".join(lines), table, plot_tradeoff(rows), published.get("archive"),
                   gr.update(choices=self.ctx.catalog.choices(session), value=chosen[-1]) if chosen else gr.update())
        finally:
            # Also where Gradio closes this generator because the visitor dropped the stream.
            release_job(job, workdir)

    def _plan(self, distil: bool, student: str, student_size: int, epochs: int, views: int, sparsity: float,
              int8: bool) -> CompressionPlan:
        sparsity = float(sparsity or 0.0)
        if not 0.0 <= sparsity <= MAX_SPARSITY:
            raise DatasetError(f"prune to a share of zero weights between 0 (off) and {MAX_SPARSITY}; got {sparsity}")
        distill = None
        if distil:
            allowed = [name for _, name in students()]
            if student not in allowed:
                raise DatasetError(f"distil into one of: {', '.join(allowed)}")
            if not STUDENT_SIZES[0] <= int(student_size) <= STUDENT_SIZES[1]:
                raise DatasetError(f"the student's image size is {STUDENT_SIZES[0]} to {STUDENT_SIZES[1]} px")
            if not EPOCHS[0] <= int(epochs) <= EPOCHS[1] or not VIEWS[0] <= int(views) <= VIEWS[1]:
                raise LimitExceededError(f"distil for {EPOCHS[0]} to {EPOCHS[1]} epochs on {VIEWS[0]} to {VIEWS[1]} "
                                         "views per image")
            distill = DistillConfig(student=student, input_size=int(student_size), epochs=int(epochs),
                                    views=int(views))
        plan = CompressionPlan(distill=distill, sparsity=sparsity or None, int8=bool(int8))
        if not plan.steps():
            raise DatasetError("choose at least one of: distil into a student, prune, int8")
        return plan

    def _publish(self, session: Session, staging: Path, prefix: str, rows: list[Any],
                 destinations: dict[str, tuple[str, Path]]) -> dict[str, Any]:
        """Move the finished variants into place and make them the session's: the bundles as
        models, the int8 folder as an export with its .zip. Returns what the status names."""
        said: dict[str, Any] = {}
        made = [row.name for row in rows[1:]]
        for step, (key, folder) in destinations.items():
            if folder.exists():
                raise BundleExistsError(f"a model named '{folder.name}' appeared meanwhile; choose another name")
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging / f"{prefix}-{step}"), str(folder))
            if key.startswith(MINE):
                session.models[key] = folder
            variant = next(name for name in made if name.endswith(step))
            where = "yours for this session" if key.startswith(MINE) else "saved for everyone"
            said[variant] = f"model `{key}`, {where}: pick it in the Models tab, export it or push it"
        if (staging / f"{prefix}-int8").is_dir():
            export_id, out = self.ctx.sessions.new_export(session)
            archive_folder = self.ctx.sessions.archive_folder(export_id)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(staging / f"{prefix}-int8"), str(out))
                said["archive"] = shutil.make_archive(str(archive_folder / f"{prefix}-int8"), "zip", out)
            except BaseException:
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(archive_folder, ignore_errors=True)
                raise
            session.exports[export_id] = out
            said[made[-1]] = "a full-integer TFLite model: download it below; it is listed in the Export tab"
        return said

    def cancel(self, request: gr.Request) -> str:
        return cancel_session_job(self.ctx, request, "Nothing is optimizing in this session.")


def _describe(update: TrainProgress) -> str:
    """The progress bar's words for one of ``compress``'s updates."""
    what = STAGES.get(update.stage, update.stage)
    if update.stage in ("teacher", "features"):
        return f"{what}: {update.batch}/{update.batches}"
    if update.stage == "train":
        logs = update.logs
        detail = (f", loss {logs['loss']:.3f}" if "loss" in logs else "") + \
            (f", val accuracy {logs['val_accuracy']:.3f}" if "val_accuracy" in logs else "")
        return f"{what}: epoch {update.epoch + 1}/{update.epochs}{detail if update.epoch_end else ''}"
    if update.stage == "prune":
        sparsity = update.logs.get("sparsity")
        return f"{what}: epoch {update.epoch + 1}/{update.epochs}" + \
            (f", {sparsity:.0%} zeros" if sparsity is not None else "")
    return what


def _in_model_order(dataset: LabelledDataset, labels: list[str]) -> LabelledDataset:
    """``dataset`` with its classes in the model's order, or a clear error if they are not the model's."""
    if list(dataset.class_names) == labels:
        return dataset
    if sorted(dataset.class_names) != sorted(labels):
        raise DatasetError(f"the images' classes ({', '.join(dataset.class_names)}) are not the active model's "
                           f"({', '.join(labels)}): optimize a model with the images it was trained on")
    order = np.array([labels.index(name) for name in dataset.class_names])
    return replace(dataset, class_names=list(labels), train=replace(dataset.train, labels=order[dataset.train.labels]),
                   val=replace(dataset.val, labels=order[dataset.val.labels]))


def plot_tradeoff(rows: list[Any]) -> Image.Image:
    """What each variant gives up for its size and speed: size against agreement with the
    original, and time per image against accuracy, one labelled point per variant."""
    import matplotlib  # lazy: slow to import; only the trade-off plot needs it (pyplot's state is never touched)

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # lazy: as matplotlib above

    figure = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    scored = all(row.accuracy is not None for row in rows)
    panels = (("size (MB)", [row.size_bytes / 1e6 for row in rows], "agreement with the original",
               [row.agreement for row in rows]),
              ("ms / image (LiteRT, this server)", [row.latency_ms for row in rows],
               "accuracy" if scored else "agreement with the original",
               [row.accuracy if scored else row.agreement for row in rows]))
    markers = "*osD^v"
    for index, (axis, (xlabel, xs, ylabel, ys)) in enumerate(zip(figure.subplots(1, 2), panels)):
        axis.plot(xs, ys, ":", color="0.7", zorder=1)  # the chain of steps, in order
        for number, (row, x, y) in enumerate(zip(rows, xs, ys)):
            # A legend, not labels by the points: a pruned model is as big and as fast as its parent.
            axis.scatter([x], [y], s=90 if number == 0 else 40, zorder=2 + number, marker=markers[number % 6],
                         label=row.name)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.set_ylim(-0.05, 1.05)
        axis.set_xlim(left=0, right=max(xs) * 1.1 if max(xs) > 0 else 1)
        axis.grid(alpha=0.3)
        if index == 0:
            axis.legend(fontsize=8, loc="lower right")
    return figure_to_image(figure)
