"""Command line: ``python -m vision {synth,train,evaluate,predict,explain,export,push,pull,models,everyday} ...``.

User errors (``VisionError``) print one line on stderr and exit with status 2.

What a command needs that imports TensorFlow (training, Grad-CAM, export, the model
registry) is imported inside its handler, marked "lazy", so ``predict`` and ``--help`` do not
pay seconds for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from vision.bundle.examples import example_labels, from_folder, write_examples
from vision.bundle.store import describe_bundle, list_bundles, load_bundle, open_bundle
from vision.bundle.teachable import import_teachable
from vision.data.datasets import Split, load_dataset
from vision.data.images import load_image
from vision.data.synthetic import write_shapes
from vision.defaults import EVERYDAY_MODEL, MODELS_DIR
from vision.errors import DatasetError, ExportError, TokenRejectedError, VisionError
from vision.explain.methods import METHODS
from vision.explain.overlay import overlay
from vision.export.options import FORMATS, INT8_METHODS, quantization_help
from vision.feedback_store import FeedbackStore, feedback_home
from vision.hub import is_hub_ref, pull, push
from vision.hub import resolve_model as resolve_hub_model
from vision.plots import plot_confusion
from vision.runtime.inference import Classifier
from vision.training.config import LOSSES, MIXING, DistillConfig, TrainConfig, TrainProgress
from vision.training.evaluate import evaluate_classifier
from vision.zoo.everyday import build_everyday_bundle, default_model

DEFAULT = "default"
MODEL_HELP = f"bundle folder or hf://user/repo[@revision] (default: the everyday-objects model, {EVERYDAY_MODEL})"
#: What ``_parser``'s ``command`` is: it adds a sub-command and returns its parser.
_Command = Callable[..., argparse.ArgumentParser]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_logs_hidden(os.environ.get("VISION_NATIVE_LOGS") != "1"):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        try:
            return args.handler(args) or 0
        except TokenRejectedError as error:  # the CLI's user is the server's owner: HF_TOKEN is theirs
            print(f"error: {error}: set HF_TOKEN or run `hf auth login` with a valid token", file=sys.stderr)
            return 2
        except VisionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


@contextlib.contextmanager
def _native_logs_hidden(hide: bool) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while Python's ``sys.stderr`` keeps the terminal.

    TensorFlow's C++ runtime writes a dozen lines (CUDA probes, XNNPACK, MLIR passes)
    straight to descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says; our errors, warnings
    and progress bars go through ``sys.stderr`` and still show. ``VISION_NATIVE_LOGS=1``
    keeps the native lines for debugging.
    """
    if not hide:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    sys.stderr = open(saved, "w", buffering=1, errors="backslashreplace", closefd=False)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        sys.stderr.close()
        os.close(saved)
        sys.stderr = python_stderr


def _parser() -> argparse.ArgumentParser:
    """The whole command line, its sub-commands in the order ``--help`` lists them (the docs'
    CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(prog="python -m vision", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int | None], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    for add in (_synth_command, _train_command, _optimize_command, _evaluation_commands, _inference_commands,
                _export_commands, _hub_commands, _sharing_commands, _feedback_command, _everyday_command):
        add(command)
    return parser


def _synth_command(command: _Command) -> None:
    """``synth``: the synthetic shapes dataset, for trying everything without data."""
    synth = command("synth", _synth, "write the synthetic shapes dataset (with boxes.json) to a folder")
    synth.add_argument("out", type=Path)
    synth.add_argument("--per-class", type=int, default=250)
    synth.add_argument("--size", type=int, default=64)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--val-fraction", type=float, default=0.2)


def _train_command(command: _Command) -> None:
    """``train``: a model from a dataset (or further from a bundle), saved as a bundle."""
    train = command("train", _train, "train a model on a dataset and save it as a bundle")
    train.add_argument("data", help="folder of class subfolders, a .zip of one, "
                       "cifar10 | mnist | fashion_mnist, or synth[:N]")
    train.add_argument("--model", default="efficientnet_lite0",
                       help="architecture (see `models`); the default trains on cached pretrained features in seconds")
    train.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    train.add_argument("--from", dest="from_bundle", metavar="BUNDLE",
                       help="train this bundle's model further instead (e.g. one imported from Teachable Machine): "
                            "its head learns the photos, and it gets an 'unknown' detector and calibration; "
                            "the data's folders must be its classes")
    train.add_argument("--name", help="display name (default: the folder name)")
    train.add_argument("--size", type=int, help="input side in pixels (default: the model's)")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--schedule", choices=["cosine", "plateau"], default="cosine")
    train.add_argument("--patience", type=int, default=6)
    train.add_argument("--no-augment", action="store_true")
    train.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=TrainConfig.class_weights,
                       help="weigh each class by how rare it is (on by default; no effect on balanced data)")
    train.add_argument("--weights", default="imagenet", help="transfer models: imagenet | none")
    train.add_argument("--fine-tune", type=int, default=0,
                       help="transfer models: then also train the top N base layers (slower, end to end)")
    train.add_argument("--mixed-precision", choices=["auto", "on", "off"], default="auto")
    train.add_argument("--loss", choices=LOSSES, default=TrainConfig.loss,
                       help="focal: focal cross-entropy, for imbalanced or hard data (--focal-gamma)")
    train.add_argument("--focal-gamma", type=float, default=TrainConfig.focal_gamma)
    train.add_argument("--label-smoothing", type=float, default=TrainConfig.label_smoothing)
    train.add_argument("--mixing", choices=MIXING, default=TrainConfig.mixing,
                       help="mix pairs of training images and their labels (the fast path: mixup only)")
    train.add_argument("--jit-compile", action="store_true", help="XLA-compile the training step")
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--limit", type=int, help="Keras datasets: use only the first N training images")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="write TensorBoard logs (curves, learning rate, confusion matrix, Grad-CAM) "
                            "into DIR/<name>-<time>; view them with `tensorboard --logdir DIR`")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel across the machines TF_CONFIG names: run the same command on each; "
                            "the chief writes the bundle (README: 'Training on several machines')")


def _optimize_command(command: _Command) -> None:
    """``optimize``: smaller, faster variants of a bundle (distil, prune, int8)."""
    optimize = command("optimize", _optimize, "make a smaller, faster variant of a bundle: distil it into a small "
                       "student, prune it, quantize it to int8 (in that order), and compare them all in one table")
    optimize.add_argument("model", help=MODEL_HELP)
    optimize.add_argument("--distill", metavar="ARCH", help="student architecture (see `models`), e.g. simple_cnn")
    optimize.add_argument("--size", type=int, default=96, help="the student's input side in pixels (default 96)")
    optimize.add_argument("--prune", type=float, metavar="SPARSITY",
                          help="share of weights to zero, e.g. 0.75 (magnitude pruning during a short fine-tune)")
    optimize.add_argument("--int8", action="store_true", help="also export the last variant as full-integer TFLite")
    optimize.add_argument("--data", help="the model's training images (default: where its vision.json says)")
    optimize.add_argument("--unlabelled", type=Path,
                          help="folder of unlabelled images the model labels for the student")
    optimize.add_argument("--epochs", type=int, default=DistillConfig.epochs, help="distillation epochs")
    optimize.add_argument("--views", type=int, default=DistillConfig.views,
                          help="augmented views per training image the teacher labels")
    optimize.add_argument("--out", type=Path, required=True, help="folder for the variants and compression.json")
    optimize.add_argument("--overwrite", action="store_true")


def _evaluation_commands(command: _Command) -> None:
    """``evaluate`` and ``audit``: how good a model is, and how clean its data."""
    evaluate = command("evaluate", _evaluate, "evaluate a bundle on a dataset's validation split, or on all of it")
    evaluate.add_argument("data")
    evaluate.add_argument("--model", default=DEFAULT, help=MODEL_HELP)
    evaluate.add_argument("--all", action="store_true", help="score every image in DATA (a test folder), not a split")
    evaluate.add_argument("--confusion", type=Path, help="write the confusion matrix PNG here")
    evaluate.add_argument("--val-fraction", type=float, default=0.2)
    evaluate.add_argument("--seed", type=int, default=0)

    audit = command("audit", _audit, "rank likely label errors, near-duplicates and train/validation leaks")
    audit.add_argument("data", help="a folder of class folders, or a .zip of one")
    audit.add_argument("--top", type=int, default=20, help="label issues to list (all flagged ones: 0)")
    audit.add_argument("--json", action="store_true", help="print one JSON object")
    audit.add_argument("--val-fraction", type=float, default=0.2)
    audit.add_argument("--seed", type=int, default=0)


def _inference_commands(command: _Command) -> None:
    """``predict`` and ``explain``: a model's answers on images, and why."""
    predict = command("predict", _predict, "classify images with a bundle")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--model", default=DEFAULT, help=MODEL_HELP)
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="print JSON lines")

    explain = command("explain", _explain, "write a Grad-CAM (or Grad-CAM++ / Score-CAM) overlay PNG")
    explain.add_argument("image", type=Path)
    explain.add_argument("--model", default=DEFAULT, help=MODEL_HELP)
    explain.add_argument("--method", choices=METHODS, default=METHODS[0])
    explain.add_argument("--class", dest="target", help="label or index to explain (default: top-1)")
    explain.add_argument("--layer", help="target layer name (default: the last spatial layer)")
    explain.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity, 0..1")
    explain.add_argument("--out", type=Path, required=True, help="PNG to write")


def _export_commands(command: _Command) -> None:
    """``export`` and ``import-tm``: a bundle to other formats, and one from Teachable Machine."""
    export = command("export", _export,
                     "export a bundle for TF.js (the browser), TFLite, TF Serving (SavedModel), ONNX or "
                     "Teachable Machine")
    export.add_argument("bundle", help=MODEL_HELP)
    export.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    export.add_argument("--quantize", help=quantization_help())
    export.add_argument("--out", type=Path, required=True, help="folder to write")
    export.add_argument("--web-site", type=Path, help="tfjs: also write a self-contained static site here")
    export.add_argument("--single-output", action="store_true",
                        help="savedmodel: the signatures answer the probabilities alone, for clients written for "
                             "one-output models (TF Serving's resnet_client.py takes the argmax of each prediction)")
    export.add_argument("--features", action="store_true",
                        help="also output the pooled features (the web page trains new classes on them)")
    export.add_argument("--int8-method", choices=INT8_METHODS, default=None,
                        help="full-integer TFLite: post-training calibration (ptq, the default) or "
                             "quantization-aware fine-tuning on the calibration images (qat, slower)")
    export.add_argument("--overwrite", action="store_true")

    import_tm = command("import-tm", _import_tm,
                        "import a Teachable Machine export (its TF.js, Keras or TFLite zip, or the unpacked folder)")
    import_tm.add_argument("source", type=Path, help="the zip Teachable Machine gave you, or its folder")
    import_tm.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/my-tm-model")
    import_tm.add_argument("--name", help="display name (default: the export's model name or file name)")
    import_tm.add_argument("--overwrite", action="store_true")


def _hub_commands(command: _Command) -> None:
    """``push``, ``pull`` and ``models``: where bundles are kept."""
    push = command("push", _push, "upload a bundle to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)")
    push.add_argument("bundle", type=Path)
    push.add_argument("repo_id", help="user/repo")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", help="branch to commit to (created if missing)")
    push.add_argument("--message", help="commit message")
    push.add_argument("--with-exports", default="", help="comma-separated: tfjs,tflite")

    pull = command("pull", _pull, "download a bundle from the Hub into the cache and validate it")
    pull.add_argument("repo_id", help="user/repo[@revision] or hf://user/repo[@revision]")

    models = command("models", _models, "list architectures and local bundles")
    models.add_argument("--root", type=Path, default=MODELS_DIR, help="folder of bundles")


def _sharing_commands(command: _Command) -> None:
    """``describe`` and ``examples``: what the app's Classify view and page show of a model."""
    describe = command("describe", _describe, "set what visitors see of a bundle: its title, one-line "
                       "description and author (kept in vision.json and its README.md)")
    describe.add_argument("bundle", type=Path)
    describe.add_argument("--title", help="e.g. 'Trash sorter'")
    describe.add_argument("--description", help="one line, e.g. 'Which bin: cardboard, glass, metal, paper, plastic'")
    describe.add_argument("--author", help="who made it, e.g. a name or a Hub username")
    examples = command("examples", _examples, "give a bundle example photos (up to 2 per class, as small JPEGs "
                       "in its examples/ folder) from a folder of class sub-folders named as its classes")
    examples.add_argument("bundle", type=Path)
    examples.add_argument("folder", type=Path, help="one sub-folder per class, named as the model's classes")


def _feedback_command(command: _Command) -> None:
    """``feedback``: what visitors said the model got wrong (the app's "Wrong?" reports)."""
    feedback = command("feedback", _feedback, "count visitors' \"wrong answer\" reports on a model, or export "
                       "their photos as class folders (one per class the visitors picked)")
    feedback.add_argument("bundle", help=MODEL_HELP)
    feedback.add_argument("--export", type=Path, metavar="DIR", help="write DIR/<class>/<report>.jpg")
    feedback.add_argument("--dir", type=Path, help="the app's feedback folder (default: VISION_FEEDBACK_DIR, "
                          "else /data/feedback on a Space)")
    feedback.add_argument("--all-models", action="store_true",
                          help="every report, whichever model answered (default: the reports on this bundle)")
    feedback.add_argument("--include-none", action="store_true",
                          help="also export the \"none of these\" reports, as a class folder of that name")


def _everyday_command(command: _Command) -> None:
    """``everyday``: the everyday-objects model, built from the installed weights package."""
    everyday = command("everyday", _everyday, "build the everyday-objects (ImageNet-1k) model from the "
                       "installed weights package")
    everyday.add_argument("--out", type=Path, default=EVERYDAY_MODEL)
    everyday.add_argument("--overwrite", action="store_true")


def _feedback(args: argparse.Namespace) -> None:
    folder = args.dir or feedback_home()
    if folder is None:
        raise DatasetError("no feedback folder: pass --dir, or set VISION_FEEDBACK_DIR as the app had it")
    bundle = open_bundle(resolve_model(args.bundle))
    store = FeedbackStore(folder, writable=False)  # the app may be writing it: read only, drop nothing
    model = None if args.all_models else bundle.fingerprint
    if args.export is None:
        counts = Counter(item.label for item in store.items(model))
        print(f"{sum(counts.values())} reports on {'any model' if model is None else bundle.name}"
              + "".join(f"\n  {label}: {n}" for label, n in counts.most_common()))
        return
    written = store.export(args.export, model=model, include_none=args.include_none)
    print(f"wrote {sum(written.values())} photos to {args.export}"
          + "".join(f"\n  {label}: {n}" for label, n in sorted(written.items())))


def _describe(args: argparse.Namespace) -> None:
    card = describe_bundle(args.bundle, title=args.title, description=args.description, author=args.author)
    print(f"{args.bundle}: " + ("; ".join(f"{key}: {value}" for key, value in card.items()) or "no card fields"))


def _examples(args: argparse.Namespace) -> None:
    bundle = open_bundle(args.bundle)
    written = write_examples(bundle.path, from_folder(args.folder, bundle.labels))
    print(f"{args.bundle}: {len(written)} examples ({', '.join(example_labels(written, bundle.labels))})")


def _synth(args: argparse.Namespace) -> None:

    folder = write_shapes(args.out, per_class=args.per_class, size=args.size, seed=args.seed,
                          val_fraction=args.val_fraction)
    print(f"wrote {args.per_class * 4} images to {folder}")


def _train(args: argparse.Namespace) -> None:
    cluster = None
    if args.distributed:
        from vision.training import distributed  # lazy: TensorFlow loads after TF_CONFIG is checked (start_cluster)

        cluster = distributed.read_cluster()
        print(f"{cluster.name}: joining {cluster.size} tasks (waits until every one has started)", file=sys.stderr)
        distributed.start_cluster()  # before any other TensorFlow op of the process
    from vision.training.recipe import train_bundle, train_bundle_on_cluster  # lazy: imports TensorFlow

    dataset = load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed, limit=args.limit)
    for line in dataset.skipped[:20]:
        print(f"skipped {line}", file=sys.stderr)
    config = TrainConfig(
        model=args.model, input_size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        patience=args.patience, augment=not args.no_augment, class_weights=args.class_weights,
        seed=args.seed, weights=None if args.weights.lower() == "none" else args.weights,
        fine_tune_layers=args.fine_tune, mixed_precision=args.mixed_precision, loss=args.loss,
        focal_gamma=args.focal_gamma, label_smoothing=args.label_smoothing, mixing=args.mixing,
        jit_compile=args.jit_compile, tensorboard=args.tensorboard, distributed=args.distributed,
    )
    print(f"training {args.from_bundle or config.model} on {len(dataset.train)} images "
          f"({len(dataset.val)} for validation), classes: {', '.join(dataset.class_names)}")
    bar = tqdm(total=config.epochs, unit="epoch", dynamic_ncols=True, bar_format=
               "{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def show(progress: TrainProgress) -> None:
        if progress.stage == "features":
            bar.set_description_str(f"features {progress.batch}/{progress.batches}")
            return
        bar.set_description_str("")
        bar.update(progress.epoch + progress.batch / max(progress.batches, 1) - bar.n)
        if progress.epoch_end:
            bar.set_postfix({k: f"{v:.3f}" for k, v in progress.logs.items()
                             if k in ("loss", "accuracy", "val_loss", "val_accuracy")})

    try:
        if args.from_bundle:
            from vision.training.further import train_further  # lazy: imports TensorFlow

            if cluster is not None:
                raise VisionError("--from trains a head in seconds on one machine: drop --distributed")
            trained = train_further(load_bundle(resolve_model(args.from_bundle)), dataset, config, args.out,
                                    name=args.name, overwrite=args.overwrite, progress=show)
        elif cluster is None:
            trained = train_bundle(dataset, config, args.out, name=args.name, overwrite=args.overwrite,
                                   progress=show)
        else:
            trained = train_bundle_on_cluster(cluster, dataset, config, args.out, name=args.name,
                                                          overwrite=args.overwrite, progress=show)
    finally:
        bar.close()
    if trained is None:  # a worker: the chief writes the bundle
        print(f"{cluster.name}: done; the bundle is written by {cluster.chief}")
        return
    evaluation = trained.evaluation
    print(f"saved {trained.path}  val accuracy {evaluation.accuracy:.4f}  "
          f"macro F1 {evaluation.macro_f1:.4f}  ({trained.result.seconds:.0f} s)")


def _optimize(args: argparse.Namespace) -> None:
    from vision.optimize.compress import COLUMNS, CompressionPlan, compress  # lazy: imports TensorFlow

    bundle = load_bundle(resolve_model(args.model))
    if not args.data and is_hub_ref(args.model):
        # A pulled vision.json is somebody else's text: its dataset source is never a path to read.
        raise VisionError(f"{bundle.name} came from the Hub: pass its training images with --data")
    source = args.data or (bundle.info.get("dataset") or {}).get("source")
    if not source:
        raise VisionError(f"{bundle.name} records no training images; pass them with --data")
    try:
        dataset = load_dataset(source)
    except VisionError as error:
        raise VisionError(f"cannot read {bundle.name}'s training images ({error}); pass them with --data") from None
    unlabelled = sorted(str(p) for p in args.unlabelled.rglob("*") if p.is_file()) if args.unlabelled else []
    plan = CompressionPlan(
        distill=DistillConfig(student=args.distill, input_size=args.size, epochs=args.epochs, views=args.views)
        if args.distill else None, sparsity=args.prune, int8=args.int8)
    bar = tqdm(total=1.0, dynamic_ncols=True, bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}]")

    def show(progress: TrainProgress) -> None:
        done = progress.batch / max(progress.batches, 1)
        if progress.stage == "train":
            done = progress.fraction
        elif progress.stage == "prune":
            done = (progress.epoch + 1) / max(progress.epochs, 1)
        bar.set_description_str({"teacher": "teacher labels views", "features": "teacher labels views",
                                 "train": "distilling", "prune": "pruning", "int8": "int8",
                                 "measure": "measuring"}.get(progress.stage, progress.stage))
        bar.update(done - bar.n)

    try:
        rows = compress(bundle, dataset, plan, args.out, unlabelled=unlabelled, progress=show, overwrite=args.overwrite)
    finally:
        bar.close()
    widths = [max(len(str(c)), 10) for c in COLUMNS]
    widths[0] = max(len(row.name) for row in rows) + 2
    print("  ".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths)))
    for row in rows:
        print("  ".join(f"{'-' if v is None else v:>{w}}" for v, w in zip(row.row(), widths)))
    print(f"accuracy and agreement on {len(dataset.val)} validation images; "
          f"variants and compression.json in {args.out}")


def _evaluate(args: argparse.Namespace) -> None:

    bundle = open_bundle(resolve_model(args.model))
    dataset = load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed)
    split = dataset.everything() if args.all else dataset.val
    unknown = [name for name in dataset.class_names if name not in bundle.labels]
    if unknown:
        raise VisionError(f"dataset classes {unknown} are not among the model's labels")
    # The dataset's class folders may be a subset of the model's labels, in any order.
    model_index = np.array([bundle.labels.index(name) for name in dataset.class_names])
    split = Split(labels=model_index[split.labels], paths=split.paths, images=split.images)
    classifier = Classifier(bundle)
    evaluation = evaluate_classifier(classifier, split, bundle.labels,
                                     progress=lambda items: tqdm(items, unit="image", leave=False))
    report = evaluation.to_dict()
    which = "all of it" if args.all else "its validation split"
    print(f"accuracy {report['accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}  on {report['samples']} images "
          f"({which})")
    for label, m in report["per_class"].items():
        if not m["support"]:
            continue
        print(f"  {label:>20}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
              f"F1 {m['f1']:.3f}  n={m['support']}")
    if args.confusion:
        plot_confusion(evaluation).save(args.confusion)
        print(f"wrote {args.confusion}")


def _audit(args: argparse.Namespace) -> None:
    from vision.trust.audit import audit_dataset  # lazy: imports TensorFlow

    dataset = load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed)
    with tqdm(total=len(dataset.train) + len(dataset.val), unit="image", leave=False, desc="features") as bar:
        report = audit_dataset(dataset, progress=lambda done, _: bar.update(done - bar.n))
    if args.json:
        print(json.dumps(report.to_dict(args.top or None)))
        return
    issues = report.label_issues
    print(f"{len(issues)} likely label error(s) among {len(report.ranked)} images; "
          f"{len(report.duplicates)} near-duplicate set(s), {len(report.leaks)} across train/validation")
    for issue in issues[: args.top or None]:
        print(f"  label  {issue.score:.3f}  {issue.source}  given {issue.given!r}, looks like {issue.suggested!r}")
    for group in report.duplicates:
        print(f"  {'leak ' if group.leak else 'dup  '}  " + "  ".join(
            f"{source} ({split})" for source, split in zip(group.sources, group.splits)))


def _predict(args: argparse.Namespace) -> int:

    classifier = Classifier.from_path(resolve_model(args.model))
    failed = 0
    for path in args.images:
        try:
            result = classifier.classify(path, top_k=args.top_k)
        except VisionError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"image": str(path), **result.to_dict()}))
            continue
        answer = ", ".join(f"{p.label} {p.probability:.3f}" for p in result.predictions)
        if result.unknown:
            answer = (f"unknown (unlike the training images: familiarity {result.familiarity:.3f} < "
                      f"{result.threshold:.3f}; nearest {answer})")
        print(f"{path}: {answer}")
    return 2 if failed else 0


def _explain(args: argparse.Namespace) -> None:
    from vision.explain.cam import Explainer  # lazy: imports TensorFlow

    if not 0.0 <= args.alpha <= 1.0:
        raise VisionError(f"--alpha must be between 0 and 1; got {args.alpha}")
    pixels = load_image(args.image)
    explainer = Explainer.from_bundle(load_bundle(resolve_model(args.model)), layer=args.layer)
    explanation = explainer.explain(pixels, method=args.method, target=args.target)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(pixels, explanation.heatmap, alpha=args.alpha)).save(args.out)
    print(f"{args.image}: {explanation.method} for '{explanation.label}' (p={explanation.probability:.3f}) "
          f"at layer {explanation.layer} -> {args.out}")


def _export(args: argparse.Namespace) -> None:
    from vision.export.formats import build_web_site, export  # lazy: imports TensorFlow

    if args.web_site and args.format != "tfjs":
        raise ExportError("--web-site needs --format tfjs")
    result = export(load_bundle(resolve_model(args.bundle)), args.format, args.out, quantize=args.quantize,
                    features=args.features, overwrite=args.overwrite, int8_method=args.int8_method,
                    single_output=args.single_output)
    # The parity record's |dp| is on probabilities; max_abs_diff is on the raw outputs, which
    # for an int8 flatbuffer with integer I/O are quantized steps, not probabilities.
    parity = result.parity
    print(f"wrote {result.format} export to {result.path} ({result.size_bytes / 1e6:.2f} MB, "
          f"quantization {result.quantization or 'none'}); checked on {result.checked_images} images: "
          f"max |p - keras| {parity.get('max_abs_dp', result.max_abs_diff):.2e}, "
          f"top-1 agreement {result.top1_agreement:.1%}")
    if parity.get("latency_ms") is not None:
        print(f"latency {parity['latency_ms']:.2f} ms per image ({parity['latency_runtime']}, this machine)")
    full_integer = result.metadata.get("full_integer")
    if full_integer:
        source = full_integer["input"]
        print(f"int8 input {source['dtype']}: {source.get('from_pixels', 'float, preprocessed as for Keras')} "
              f"({full_integer.get('method', 'ptq')}, calibrated on {full_integer.get('calibration', '?')})")
    if args.web_site:
        site = build_web_site(result.path, args.web_site, overwrite=args.overwrite)
        print(f"wrote static site to {site} (serve it with any static file server)")


def _import_tm(args: argparse.Namespace) -> None:
    folder = import_teachable(args.source, args.out, name=args.name, overwrite=args.overwrite)
    bundle = open_bundle(folder)
    kind = bundle.info.get("source", {}).get("export", "?")
    print(f"imported Teachable Machine's {kind} export as {folder}: {len(bundle.labels)} classes "
          f"({', '.join(bundle.labels)}), {bundle.preprocessing.size[0]} px, centre crop, "
          f"x / {1 / bundle.preprocessing.scale:g} - 1")
    if bundle.tflite_only:
        print("TFLite only: it classifies, evaluates and exports to TFLite; Grad-CAM and training further need "
              "the Keras or TF.js export")


def _push(args: argparse.Namespace) -> None:

    exports = tuple(name for name in args.with_exports.split(",") if name)
    url = push(args.bundle, args.repo_id, private=args.private, revision=args.revision,
               commit_message=args.message, exports=exports)
    print(f"pushed {args.bundle} -> {url}")


def _pull(args: argparse.Namespace) -> None:

    folder = pull(args.repo_id)
    print(f"pulled {args.repo_id} -> {folder}")


def resolve_model(ref: str) -> Path:
    """A bundle folder, ``hf://user/repo[@rev]`` pulled from the Hub into the cache, or
    ``default`` (the everyday-objects model, built on first use if set-up has not)."""

    if ref == DEFAULT:
        return default_model()  # TensorFlow is imported only if it has to be built
    return resolve_hub_model(ref)


def _everyday(args: argparse.Namespace) -> None:
    print(f"wrote {build_everyday_bundle(args.out, overwrite=args.overwrite)}")


def _models(args: argparse.Namespace) -> None:
    from vision.models.registry import list_models  # lazy: imports TensorFlow

    print("architectures:")
    for spec in list_models():
        print(f"  {spec.name:<16} {spec.default_size:>4}px  {spec.description}")
    bundles: list[dict[str, Any]] = list_bundles(args.root)
    print(f"bundles in {args.root}:" if bundles else f"no bundles in {args.root}")
    for info in bundles:
        accuracy = info.get("metrics", {}).get("accuracy")
        score = f"val acc {accuracy:.3f}" if accuracy is not None else "not evaluated"
        print(f"  {Path(info['path']).name:<20} {info['architecture']:<16} {len(info['labels'])} classes  {score}")
