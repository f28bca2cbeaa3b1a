"""Smaller models on purpose: a bundle distilled into a student, pruned, quantized to int8, each
step applied to the one before and each kept as a variant, then all measured the same way.

Every variant is measured as it ships: its TFLite flatbuffer (float for the bundles, full
integer for the int8 one) on LiteRT, on the same held-out images. The table's columns are
``COLUMNS``: size of the flatbuffer and of it gzipped (pruned zeros only save space once
compressed), latency here, accuracy on the held-out images and top-1 agreement with the
original. Distillation and pruning both learn from the original's answers on augmented views
of its training images (``vision.training.teacher``), computed once for both.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vision.bundle.store import Bundle, load_bundle
from vision.data.datasets import LabelledDataset, Split
from vision.data.images import ImageSource, input_side, load_image, preprocess
from vision.errors import VisionError
from vision.export.formats import export
from vision.models.serving import split_outputs
from vision.runtime.int8 import dequantize, quantize_input
from vision.runtime.tflite import TFLiteRunner, cached_flatbuffer, convert_to_tflite
from vision.timing import median_ms
from vision.training.config import DistillConfig, ProgressHook, TrainConfig, TrainProgress, TrainResult
from vision.training.distill import distill
from vision.training.prune import prune
from vision.training.recipe import save_trained
from vision.training.teacher import teacher_views
from vision.trust.calibration import softmax

TABLE_FILE = "compression.json"
COLUMNS = ("variant", "size (MB)", "gzip (MB)", "ms / image", "accuracy", "agreement with original")
#: Views per training image the pruning fine-tune learns from (the first of those distillation
#: labelled), and at most this many in all: a 224 px model's float inputs are 0.6 MB each.
PRUNE_VIEWS, MAX_PRUNE_VIEWS = 8, 2000


@dataclass
class CompressionPlan:
    """Which steps to take, in this order: distil, prune, quantize."""

    distill: DistillConfig | None = None
    sparsity: float | None = None  # prune to this share of zero weights
    int8: bool = False
    prune_epochs: int = 6

    def steps(self) -> list[str]:
        return [step for step, on in (("distilled", self.distill), ("pruned", self.sparsity),
                                      ("int8", self.int8)) if on]


@dataclass
class Variant:
    """One row of the table: a model and how it measured."""

    name: str
    path: str  # a bundle folder, or for int8 a TFLite export folder
    kind: str  # "bundle" or "tflite"
    size_bytes: int
    gzip_bytes: int
    latency_ms: float
    accuracy: float | None
    agreement: float
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> list[Any]:
        return [self.name, round(self.size_bytes / 1e6, 3), round(self.gzip_bytes / 1e6, 3),
                round(self.latency_ms, 2), None if self.accuracy is None else round(self.accuracy, 3),
                round(self.agreement, 3)]


def gzip_bytes(data: bytes) -> int:
    """Size of ``data`` gzipped at the level downloads use."""
    return len(gzip.compress(data, compresslevel=9))


def _checked_inputs(check: Split) -> list[np.ndarray]:
    return [load_image(source, max_side=input_side((512, 512))) for source in check.sources()]


def _measure(name: str, path: Path, kind: str, flatbuffer: bytes, bundle: Bundle, pixels: list[np.ndarray],
             labels: np.ndarray | None, reference: np.ndarray | None,
             details: dict[str, Any] | None = None) -> tuple[Variant, np.ndarray]:
    runner = TFLiteRunner(flatbuffer)
    interpreter = runner.interpreter
    input_detail, output_details = interpreter.get_input_details()[0], interpreter.get_output_details()
    inputs = [np.asarray(preprocess(p, bundle.preprocessing), np.float32) for p in pixels]
    outputs = [[dequantize(y, detail) for y, detail in zip(runner(quantize_input(x, input_detail)), output_details)]
               for x in inputs]
    # An export with the detector also outputs the familiarity, in an order TFLite chooses.
    top1 = np.array([np.argmax(split_outputs([y[None] for y in output], len(bundle.labels))[0])
                     for output in outputs])
    sample = quantize_input(inputs[0], input_detail)
    variant = Variant(
        name, str(path), kind, len(flatbuffer), gzip_bytes(flatbuffer), median_ms(lambda: runner(sample)),
        None if labels is None else float(np.mean(top1 == labels)),
        1.0 if reference is None else float(np.mean(top1 == reference)), details or {})
    return variant, top1


def _keras_gzip(model: Any) -> int:
    """Gzipped size of ``model`` saved as one ``.keras`` file (weights stored uncompressed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return gzip_bytes(path.read_bytes())


def model_flatbuffer(bundle: Bundle) -> bytes:
    """The float TFLite flatbuffer of ``bundle``'s model alone (preprocessed input, its outputs),
    converted once per bundle (``cached_flatbuffer``)."""
    return cached_flatbuffer(f"model|{bundle.fingerprint}", lambda: convert_to_tflite(bundle.model))


def _bundle_variant(name: str, bundle: Bundle, pixels: list[np.ndarray], labels: np.ndarray | None,
                    reference: np.ndarray | None, details: dict[str, Any]) -> tuple[Variant, np.ndarray]:
    # Cached by the bundle's fingerprint: the original is measured again on every run.
    flatbuffer = model_flatbuffer(bundle)
    details = {"keras_gzip_bytes": _keras_gzip(bundle.model), "architecture": bundle.info.get("architecture"),
               "input_size": list(bundle.preprocessing.size), "parameters": int(bundle.model.count_params()),
               **details}
    return _measure(name, bundle.path, "bundle", flatbuffer, bundle, pixels, labels, reference, details)


def compress(original: Bundle, dataset: LabelledDataset, plan: CompressionPlan, out: str | Path,
             unlabelled: list[ImageSource] | None = None, check: Split | None = None,
             progress: ProgressHook | None = None, cancel: threading.Event | None = None,
             name: str | None = None, overwrite: bool = False) -> list[Variant]:
    """Apply ``plan`` to ``original`` and write each variant into ``out``: ``<name>-distilled``
    and ``<name>-pruned`` as bundles, ``<name>-int8`` as a full-integer TFLite export; the table
    goes to ``out/compression.json``. Returns the rows, the original first.

    Args:
        dataset: The original's training images (its classes, in its order); ``dataset.train``
            is learnt from, ``dataset.val`` checked on unless ``check`` is given.
        unlabelled: More images for distillation, labelled by the original alone.
        name: Prefix of the variants' folders; the original's folder name by default.

    Raises:
        VisionError: an empty plan, a sparsity outside [0, 1), or variants already in ``out``.
        TrainingCancelledError: ``cancel`` was set; the variants finished before it are kept.
    """
    out = Path(out)
    targets = _variant_folders(original, plan, out, name, overwrite)
    check = check if check is not None else dataset.val
    pixels = _checked_inputs(check)
    labels = np.asarray(check.labels) if len(check) else None

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(TrainProgress(0, 1, done, total, {}, {}, stage=stage))

    report("measure", 0, 1)
    first, reference = _bundle_variant("original", original, pixels, labels, None, {})
    rows, current, made = [first], original, []
    if plan.distill or plan.sparsity:
        views, prune_on = _teacher_labelled(original, dataset, plan, unlabelled, report, cancel)
    if plan.distill:
        result = distill(original, dataset, plan.distill, unlabelled, progress, cancel)
        current = _save(result, dataset, targets["distilled"], overwrite)
        made.append("distilled")
        rows.append(_bundle_variant("+".join(made), current, pixels, labels, reference,
                                    {"seconds": round(result.seconds, 1)})[0])
    if plan.sparsity:
        current, pruned = _pruned(current, views, prune_on, plan, dataset, targets["pruned"], overwrite, progress,
                                  cancel)
        made.append("pruned")
        rows.append(_bundle_variant("+".join(made), current, pixels, labels, reference,
                                    {"sparsity": round(pruned.sparsity, 4), "seconds": round(pruned.seconds, 1)})[0])
    if plan.int8:
        report("int8", 0, 1)
        # Calibrated on the images this call was given, never on what the bundle records.
        exported = export(current, "tflite", targets["int8"], quantize="int8", overwrite=overwrite,
                          calibration=dataset.train)
        made.append("int8")
        flatbuffer = (exported.path / "model.tflite").read_bytes()
        rows.append(_measure("+".join(made), exported.path, "tflite", flatbuffer, current, pixels, labels, reference,
                             {"from": current.name})[0])
    write_table(out, rows)
    return rows


def _variant_folders(original: Bundle, plan: CompressionPlan, out: Path, name: str | None,
                     overwrite: bool) -> dict[str, Path]:
    """Step -> the folder its variant goes to, once the plan is checked and the folders are free."""
    if not plan.steps():
        raise VisionError("choose at least one of: distil into a student, prune, int8")
    if plan.sparsity is not None and not 0.0 < plan.sparsity < 1.0:
        raise VisionError(f"the sparsity is the share of weights set to zero, between 0 and 1; got {plan.sparsity}")
    name = name or original.path.name  # the folder's name: display names may hold spaces
    targets = {step: out / f"{name}-{step}" for step in plan.steps()}
    taken = [str(path.name) for path in targets.values() if path.exists()]
    if taken and not overwrite:
        raise VisionError(f"already in the output folder: {', '.join(taken)}; choose another name or overwrite")
    return targets


def _teacher_labelled(original: Bundle, dataset: LabelledDataset, plan: CompressionPlan,
                      unlabelled: list[ImageSource] | None, report: Any,
                      cancel: threading.Event | None) -> tuple[Any, np.ndarray]:
    """The original's answers on augmented views of the training images (and ``unlabelled``),
    computed once for distillation and pruning, and which of them pruning learns from
    (``PRUNE_VIEWS`` an image, ``MAX_PRUNE_VIEWS`` in all)."""
    per_image = max(1, min(PRUNE_VIEWS, MAX_PRUNE_VIEWS // max(len(dataset.train), 1)))
    config = plan.distill or DistillConfig(views=per_image)
    # The same sources and labels as ``distill`` passes: its call is then a cache hit.
    views = teacher_views(original, [*dataset.train.sources(), *(unlabelled or [])],
                          [*dataset.train.labels, *[-1] * len(unlabelled or [])], config.views, config.seed,
                          lambda done, total: report("teacher", done, total),
                          cancelled=lambda: cancel is not None and cancel.is_set())
    return views, np.arange(len(views)) % config.views < per_image


def _pruned(current: Bundle, views: Any, keep: np.ndarray, plan: CompressionPlan, dataset: LabelledDataset,
            folder: Path, overwrite: bool, progress: ProgressHook | None,
            cancel: threading.Event | None) -> tuple[Bundle, Any]:
    """``current`` pruned to ``plan.sparsity`` while learning the original's answers on the kept
    ``views``, saved as a bundle in ``folder``; and what pruning reported."""
    inputs = np.asarray(preprocess(views.images[keep], current.preprocessing), np.float32)
    soft = softmax(views.logits[keep]).astype(np.float32)
    pruned = prune(current.model, inputs, soft, plan.sparsity, epochs=plan.prune_epochs,
                   progress=lambda epoch, epochs, sparsity: _pruning_progress(progress, epoch, epochs, sparsity),
                   cancel=cancel)
    result = TrainResult(pruned.model, current.preprocessing, _config_of(current), pruned.history,
                         len(pruned.history.get("loss", [1])) - 1, pruned.seconds,
                         info={"pruning": {"sparsity": round(pruned.sparsity, 4), "target": plan.sparsity,
                                           "from": current.name, "epochs": plan.prune_epochs}})
    return _save(result, dataset, folder, overwrite), pruned


def _pruning_progress(progress: ProgressHook | None, epoch: int, epochs: int, sparsity: float) -> None:
    if progress:
        progress(TrainProgress(epoch, epochs, 1, 1, {"sparsity": sparsity}, {}, epoch_end=True, stage="prune"))


def _config_of(bundle: Bundle) -> Any:
    recorded = bundle.info.get("training") or {}
    known = {k: v for k, v in recorded.items() if k in TrainConfig.__dataclass_fields__}
    return TrainConfig(**{**known, "model": bundle.info.get("architecture", known.get("model", "unknown"))})


def _save(result: TrainResult, dataset: LabelledDataset, folder: Path, overwrite: bool) -> Bundle:
    save_trained(result, dataset, folder, name=folder.name, overwrite=overwrite)
    return load_bundle(folder)


def write_table(out: Path, rows: list[Variant]) -> Path:
    """``out/compression.json``: the columns and every variant's row and details."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / TABLE_FILE
    staging = path.with_suffix(f".tmp-{time.monotonic_ns()}")
    staging.write_text(json.dumps({"columns": list(COLUMNS), "variants": [asdict(row) for row in rows]}, indent=2))
    staging.replace(path)
    return path


def read_table(out: str | Path) -> dict[str, Any]:
    """What ``write_table`` wrote."""
    return json.loads((Path(out) / TABLE_FILE).read_text())
