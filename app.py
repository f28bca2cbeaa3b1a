"""The Gradio app: classify, live webcam, explain, train, manage and export models.

    python app.py [--model PATH] [--host HOST] [--port PORT] [--share]

Environment: VISION_MODEL, VISION_MODELS_DIR, VISION_HOST (or GRADIO_SERVER_NAME),
VISION_PORT (or GRADIO_SERVER_PORT), VISION_SHARE=1. UI and type conversion only: the
work is in the ``vision`` package.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import shutil
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from vision.cache import forget, get_bundle, get_classifier, get_explainer  # noqa: E402
from vision.collect import SampleCollection  # noqa: E402
from vision.errors import VisionError  # noqa: E402
from vision.images import load_image  # noqa: E402
from vision.models import list_models  # noqa: E402
from vision.overlay import overlay  # noqa: E402
from vision.store import delete_bundle, list_bundles  # noqa: E402

log = logging.getLogger("vision.app")
REPO = Path(__file__).resolve().parent
DEFAULT_MODEL = Path(os.environ.get("VISION_MODEL", REPO / "models" / "shapes"))
MODELS_DIR = Path(os.environ.get("VISION_MODELS_DIR", REPO / "models"))
EXAMPLES = sorted(str(p) for p in (REPO / "docs" / "examples").glob("*.png"))
WEB_DIR = REPO / "web"
EXPORTS_DIR = Path(tempfile.mkdtemp(prefix="vision-exports-"))  # served at /exports
MAX_FILE_SIZE = "50mb"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_pulled: list[str] = []  # bundles pulled from the Hub in this process (snapshot folders)
_jobs: dict[str, Any] = {}  # session -> running TrainingJob, so "Cancel" can reach it
_live_frames: dict[str, deque] = {}  # session -> recent frame times, for the fps readout


def user_errors(fn: Callable) -> Callable:
    """Show ``VisionError``s as a message in the UI; log anything else as the bug it is."""

    def translate(error: Exception) -> gr.Error:
        if isinstance(error, VisionError):
            return gr.Error(str(error))
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(f"Something went wrong ({type(error).__name__}); see the server log.")

    if hasattr(fn, "__code__") and fn.__code__.co_flags & 0x20:  # a generator function
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:
                raise translate(error) from None
        return generator

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            raise translate(error) from None
    return plain


# -- Classify and explain -------------------------------------------------------------

@user_errors
def classify(image: str | None, top_k: int, model: str) -> tuple[dict[str, float], str]:
    if not image:
        return {}, ""  # cleared
    started = time.perf_counter()
    predictions = get_classifier(model).predict(image, top_k=int(top_k))
    elapsed = (time.perf_counter() - started) * 1000
    return {p.label: p.probability for p in predictions}, f"Prediction took **{elapsed:.1f} ms** (decode included)."


@user_errors
def explain(image: str | None, method: str, target: str | None, alpha: float,
            model: str) -> tuple[np.ndarray | None, str]:
    if not image:
        return None, ""
    pixels = load_image(image)
    started = time.perf_counter()
    explanation = get_explainer(model).explain(pixels, method=method, target=target or None)
    elapsed = (time.perf_counter() - started) * 1000
    caption = (f"{method} for **{explanation.label}** (p = {explanation.probability:.3f}), "
               f"layer `{explanation.layer}`, {elapsed:.1f} ms")
    return overlay(pixels, explanation.heatmap, alpha=float(alpha)), caption


def class_choices(model: str) -> gr.Dropdown:
    labels = get_bundle(model).labels
    return gr.Dropdown(choices=[("top prediction", "")] + [(label, label) for label in labels], value="")


# -- Live webcam ----------------------------------------------------------------------

def live(frame: np.ndarray | None, model: str, request: gr.Request) -> tuple[dict[str, float], str]:
    if frame is None:
        return {}, ""
    try:
        predictions = get_classifier(model).predict(frame, top_k=3)
    except VisionError as error:
        return {}, f"frame skipped: {error}"
    times = _live_frames.setdefault(request.session_hash or "anonymous", deque(maxlen=30))
    times.append(time.perf_counter())
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    return {p.label: p.probability for p in predictions}, f"**{fps:.1f}** frames/s processed ({len(times)} recent)"


# -- Train ----------------------------------------------------------------------------

def _collection(root: str | None) -> SampleCollection:
    return SampleCollection(root) if root else SampleCollection()


def _samples_table(collection: SampleCollection) -> list[list[Any]]:
    return [[name, count] for name, count in collection.classes().items()]


@user_errors
def add_samples(class_name: str, snapshot: str | None, uploads: list[str] | None,
                root: str | None) -> tuple[list[list[Any]], str, None, None]:
    collection = _collection(root)
    images = [path for path in [snapshot, *(uploads or [])] if path]
    if not images:
        collection.add_class(class_name)
    else:
        collection.add_samples(class_name, images)
    return _samples_table(collection), str(collection.root), None, None


def _remove_samples(root: str | None) -> None:
    if root:
        SampleCollection(root).clear()


def clear_samples(root: str | None) -> tuple[list[list[Any]], None]:
    _remove_samples(root)
    return [], None


@user_errors
def train(zip_file: str | None, samples_root: str | None, architecture: str, size: int, epochs: int,
          augment: bool, imagenet: bool, name: str, request: gr.Request,
          progress: gr.Progress = gr.Progress()) -> Any:
    from vision.data import load_folder, load_zip
    from vision.evaluate import plot_confusion, plot_history
    from vision.jobs import JobFailed, JobFinished, TrainingJob
    from vision.train import TrainConfig

    name = (name or "").strip()
    if not _MODEL_NAME.match(name):
        raise gr.Error("Name the model with letters, digits, '-' or '_' (up to 64), e.g. my-pets.")
    out = MODELS_DIR / name
    if out.exists():
        raise gr.Error(f"A model named '{name}' already exists; choose another name or delete it first.")
    workdir = Path(tempfile.mkdtemp(prefix="vision-train-"))
    try:
        if zip_file:
            dataset = load_zip(zip_file, extract_to=workdir / "data")
        elif samples_root and any(SampleCollection(samples_root).classes().values()):
            dataset = load_folder(samples_root)
        else:
            raise gr.Error("Upload a .zip of class folders, or add classes and samples above.")
        config = TrainConfig(model=architecture, input_size=int(size), epochs=int(epochs), augment=bool(augment),
                             weights="imagenet" if imagenet else None,
                             batch_size=16 if len(dataset.train) < 200 else 32)
        job = TrainingJob(dataset, config, out, name=name).start()
        session = request.session_hash or "anonymous"
        _jobs[session] = job
        skipped = f" Skipped {len(dataset.skipped)} unreadable files." if dataset.skipped else ""
        status = (f"Training **{architecture}** on {len(dataset.train)} images, validating on "
                  f"{len(dataset.val)}; classes: {', '.join(dataset.class_names)}.{skipped}")
        yield status, None, "", None, [], gr.update()
        try:
            for update in job.updates():
                if isinstance(update, JobFailed):
                    raise update.error
                if isinstance(update, JobFinished):
                    trained = update.trained
                    break
                progress(update.fraction, desc=f"epoch {update.epoch + 1}/{update.epochs}")
                if update.epoch_end:
                    logs = update.logs
                    yield (f"{status}\n\nEpoch {update.epoch + 1}/{update.epochs}: loss {logs.get('loss', 0):.3f}, "
                           f"val accuracy {logs.get('val_accuracy', 0):.3f}"), plot_history(update.history), \
                        "", None, [], gr.update()
        finally:
            _jobs.pop(session, None)
        evaluation = trained.evaluation
        metrics = (f"Saved **{name}**: validation accuracy **{evaluation.accuracy:.3f}**, macro F1 "
                   f"{evaluation.macro_f1:.3f}, best epoch {trained.result.best_epoch + 1}, "
                   f"{trained.result.seconds:.0f} s. Pick it in the Models tab.")
        yield (status + "\n\nDone.", plot_history(trained.result.history), metrics, plot_confusion(evaluation),
               _misclassified(dataset, evaluation), gr.update(choices=_model_choices()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _misclassified(dataset: Any, evaluation: Any, limit: int = 24) -> list[tuple[np.ndarray, str]]:
    wrong = np.flatnonzero(evaluation.y_pred != evaluation.y_true)[:limit]
    names = dataset.class_names
    gallery = []
    for i in wrong:
        source = dataset.val.images[i] if dataset.val.images is not None else dataset.val.paths[i]
        predicted = int(evaluation.y_pred[i])
        caption = (f"true {names[evaluation.y_true[i]]} → predicted {names[predicted]} "
                   f"({evaluation.probabilities[i, predicted]:.2f})")
        gallery.append((load_image(source), caption))
    return gallery


def cancel_training(request: gr.Request) -> str:
    job = _jobs.get(request.session_hash or "anonymous")
    if job is None:
        return "Nothing is training in this session."
    job.cancel()
    return "Cancelling after the current batch…"


# -- Models ---------------------------------------------------------------------------

def _model_choices() -> list[tuple[str, str]]:
    bundles = list_bundles(MODELS_DIR)
    paths = [str(Path(info["path"]).resolve()) for info in bundles]
    choices = [(f"{info.get('name') or Path(info['path']).name} ({Path(info['path']).name})", path)
               for info, path in zip(bundles, paths)]
    default = str(DEFAULT_MODEL.resolve())
    if default not in paths:
        choices.insert(0, (f"{_display_name(DEFAULT_MODEL)} (default)", default))
    choices += [(f"{_display_name(Path(p))} (from the Hub)", p) for p in _pulled if p != default]
    return choices


def _display_name(folder: Path) -> str:
    try:
        return get_bundle(folder).name
    except VisionError:
        return folder.name


def models_table() -> list[list[Any]]:
    rows = []
    for info in list_bundles(MODELS_DIR):
        accuracy = info.get("metrics", {}).get("accuracy")
        rows.append([Path(info["path"]).name, info.get("architecture", "?"), ", ".join(info["labels"]),
                     "" if accuracy is None else round(accuracy, 4), info.get("created", "")])
    return rows


@user_errors
def show_model(model: str) -> tuple[str, Any, Any]:
    from PIL import Image

    bundle = get_bundle(model)
    card = (Path(model) / "README.md").read_text()
    card = card.split("---", 2)[2] if card.startswith("---") else card  # hide the YAML header
    pictures = [Path(model) / name for name in ("training_curves.png", "confusion_matrix.png")]
    curves, confusion = (Image.open(p).convert("RGB") if p.is_file() else None for p in pictures)
    return f"**Active model:** `{bundle.name}` ({Path(model).name})\n\n{card}", curves, confusion


@user_errors
def use_model(choice: str) -> tuple[str, str]:
    if choice not in list_model_names():  # never an arbitrary server path from the API
        raise gr.Error(f"Unknown model {choice!r}; choose one listed in the Models tab.")
    get_classifier(choice)  # load (and cache) now, so the first prediction is fast
    return choice, f"Using **{get_bundle(choice).name}** in this browser session."


@user_errors
def delete_model(choice: str, active: str) -> tuple[list[list[Any]], gr.Dropdown, str, str]:
    if choice not in list_model_names():
        raise gr.Error(f"Unknown model {choice!r}.")
    folder = Path(choice).resolve()
    if folder == DEFAULT_MODEL.resolve():
        raise gr.Error("The default model cannot be deleted.")
    if folder.parent != MODELS_DIR.resolve():
        raise gr.Error("Only models in the models folder can be deleted.")
    delete_bundle(folder)
    forget(folder)
    still_active = active if Path(active).resolve() != folder else str(DEFAULT_MODEL.resolve())
    return (models_table(), gr.Dropdown(choices=_model_choices(), value=still_active), still_active,
            f"Deleted **{folder.name}**.")


# -- Hub ------------------------------------------------------------------------------

@user_errors
def hub_push(repo_id: str, private: bool, with_tfjs: bool, token: str, model: str,
             progress: gr.Progress = gr.Progress()) -> str:
    from vision.hub import push

    progress(0.1, desc="uploading")
    # The token is used for this call only: not stored, logged or echoed.
    url = push(model, (repo_id or "").strip(), token=token or None, private=bool(private),
               exports=("tfjs",) if with_tfjs else ())
    return f"Pushed **{get_bundle(model).name}** → [{url}]({url})"


@user_errors
def hub_pull(repo_id: str, token: str, progress: gr.Progress = gr.Progress()) -> tuple[str, str, gr.Dropdown]:
    from vision.hub import pull

    progress(0.1, desc="downloading")
    folder = str(pull((repo_id or "").strip(), token=token or None).resolve())
    if folder not in _pulled:
        _pulled.append(folder)
    get_classifier(folder)
    message = f"Pulled **{get_bundle(folder).name}** from `{repo_id}`; this session now uses it."
    return folder, message, gr.Dropdown(choices=_model_choices(), value=folder)


# -- Export ---------------------------------------------------------------------------

@user_errors
def export_model(fmt: str, quantize: str, model: str, progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
    from vision.export import export

    quantization = None if quantize in ("", "none", None) else quantize
    export_id = f"{Path(model).name}-{fmt}-{quantization or 'fp32'}-{int(time.time() * 1000) % 10**8}"
    progress(0.1, desc=f"exporting to {fmt}")
    result = export(get_bundle(model), fmt, EXPORTS_DIR / export_id, quantize=quantization)
    progress(0.9, desc="zipping")
    archive = shutil.make_archive(str(EXPORTS_DIR / export_id), "zip", result.path)
    checked_with = result.metadata["verification"]["checked_with"]
    lines = [f"Exported **{get_bundle(model).name}** as {fmt} ({result.size_bytes / 1e6:.2f} MB, "
             f"quantization {quantization or 'none'}).",
             f"Checked against Keras on {result.checked_images} images ({checked_with}): "
             f"max |Δp| {result.max_abs_diff:.1e}, top-1 agreement {result.top1_agreement:.0%}."]
    if fmt == "tfjs" and web_page_available():
        lines.append(f"[Open it in the browser page](/web/?model=/exports/{export_id}) — it runs client-side.")
    elif fmt == "tfjs":
        lines.append("This server has no TF.js install for the /web page (`npm ci` in web/); "
                     "`python -m vision export … --web-site DIR` builds a static site instead.")
    return archive, "\n\n".join(lines)


def web_page_available() -> bool:
    """Whether TF.js is installed for web/ (a Space built from requirements.txt has none)."""
    from vision.export import WEB_VENDOR

    return all((WEB_DIR / "node_modules" / name).is_file() for name in WEB_VENDOR)


def mount_static(demo: gr.Blocks) -> None:
    """Serve the web page at /web and this app's exports at /exports, nothing else."""
    from fastapi.staticfiles import StaticFiles

    from vision.export import WEB_FILES, WEB_VENDOR

    allowed = set(WEB_FILES) | {f"node_modules/{name}" for name in WEB_VENDOR}

    class WebFiles(StaticFiles):
        async def get_response(self, path: str, scope: Any) -> Any:
            # Only the page, its libraries and the shipped model: not package.json, tests, ...
            if path not in allowed and path not in (".", "") and not path.startswith("model/"):
                from starlette.exceptions import HTTPException

                raise HTTPException(status_code=404)
            return await super().get_response(path, scope)

    if web_page_available():
        demo.app.mount("/web", WebFiles(directory=WEB_DIR, html=True), name="web")
    else:
        log.warning("web/node_modules is missing (run `npm ci` in web/): the /web page is not served")
    demo.app.mount("/exports", StaticFiles(directory=EXPORTS_DIR), name="exports")


# -- Layout ---------------------------------------------------------------------------

def create_app() -> gr.Blocks:
    default = str(DEFAULT_MODEL.resolve())
    # Load and compile the default model now: a broken bundle fails at start with a clear
    # message, and the first visitor does not wait for the TFLite conversion.
    labels = get_bundle(default).labels
    get_classifier(default)
    get_explainer(default)
    architectures = [(f"{spec.name} — {spec.description}", spec.name) for spec in list_models()]

    with gr.Blocks(title="vision — image classifier", delete_cache=(3600, 3600)) as demo:
        active = gr.State(default)
        # A session's webcam/upload samples live in a temporary folder, removed with the session.
        samples_root = gr.State(None, time_to_live=6 * 3600, delete_callback=_remove_samples)
        gr.Markdown("# Image classifier\nClassify pictures, see why, train your own model.")

        with gr.Tab("Classify", id="classify"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"], label="Image",
                                     elem_id="classify-image")
                    with gr.Row():
                        top_k = gr.Slider(1, 10, value=3, step=1, label="Top k")
                        method = gr.Radio(["gradcam", "gradcam++", "scorecam"], value="gradcam", label="Explanation")
                    with gr.Row():
                        target = gr.Dropdown([("top prediction", "")] + [(x, x) for x in labels], value="",
                                             label="Explain class")
                        alpha = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
                    run = gr.Button("Classify", variant="primary")
                    if EXAMPLES:
                        gr.Examples(EXAMPLES, inputs=image, label="Examples (click one)")
                with gr.Column():
                    prediction = gr.Label(num_top_classes=10, label="Prediction", elem_id="prediction")
                    latency = gr.Markdown(elem_id="latency")
                    heatmap = gr.Image(type="numpy", label="Grad-CAM", interactive=False, elem_id="heatmap")
                    explanation = gr.Markdown()
            run.click(classify, [image, top_k, active], [prediction, latency], api_name="classify") \
                .then(explain, [image, method, target, alpha, active], [heatmap, explanation], api_name=False)
            image.change(classify, [image, top_k, active], [prediction, latency], api_name=False) \
                .then(explain, [image, method, target, alpha, active], [heatmap, explanation], api_name=False)
            gr.on([method.change, target.change, alpha.release], explain, [image, method, target, alpha, active],
                  [heatmap, explanation], api_name="explain")

        with gr.Tab("Live", id="live"):
            gr.Markdown("Start the webcam: labels update continuously while frames stream to the server.")
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                  webcam_options=gr.WebcamOptions(mirror=True), elem_id="live-camera")
                with gr.Column():
                    live_labels = gr.Label(num_top_classes=3, label="Live prediction", elem_id="live-prediction")
                    fps = gr.Markdown(elem_id="live-fps")
            camera.stream(live, [camera, active], [live_labels, fps], stream_every=0.08, time_limit=300,
                          concurrency_limit=8, concurrency_id="live", api_name="live", show_progress="hidden")

        with gr.Tab("Train", id="train"):
            gr.Markdown("Upload a **.zip** with one folder per class, **or** build classes here from webcam "
                        "snapshots and uploads. Then choose the model and train.")
            with gr.Row():
                with gr.Column():
                    zip_file = gr.File(label="Dataset .zip (class folders)", file_types=[".zip"], type="filepath")
                with gr.Column():
                    class_name = gr.Textbox(label="Class name", placeholder="e.g. thumbs-up")
                    with gr.Row():
                        snapshot = gr.Image(type="filepath", sources=["webcam", "upload"], label="Snapshot")
                        uploads = gr.File(label="Images", file_count="multiple", file_types=["image"],
                                          type="filepath")
                    with gr.Row():
                        add = gr.Button("Add to class")
                        clear = gr.Button("Clear classes")
                    samples = gr.Dataframe(headers=["class", "samples"], label="Your classes", interactive=False)
            with gr.Row():
                architecture = gr.Dropdown(architectures, value="resnet_small", label="Architecture")
                size = gr.Slider(32, 224, value=64, step=16, label="Image size (px)")
                epochs = gr.Slider(1, 60, value=15, step=1, label="Epochs")
            with gr.Row():
                augment = gr.Checkbox(True, label="Augmentation (flip, rotate, zoom, contrast)")
                imagenet = gr.Checkbox(False, label="ImageNet weights for transfer models (needs internet)")
                model_name = gr.Textbox(label="Save as", placeholder="my-model")
            with gr.Row():
                start = gr.Button("Train", variant="primary")
                stop = gr.Button("Cancel", variant="stop")
            status = gr.Markdown(elem_id="train-status")
            with gr.Row():
                curves = gr.Image(label="Loss and accuracy", interactive=False)
                confusion = gr.Image(label="Confusion matrix", interactive=False)
            metrics = gr.Markdown(elem_id="train-metrics")
            mistakes = gr.Gallery(label="Misclassified validation images", columns=6, height="auto")

        with gr.Tab("Models", id="models"):
            table = gr.Dataframe(models_table, headers=["folder", "architecture", "classes", "val accuracy",
                                                        "created"], label="Local models", interactive=False)
            with gr.Row():
                # Custom values pass the component check; use_model and delete_model validate them.
                choice = gr.Dropdown(_model_choices(), value=default, label="Model", allow_custom_value=True)
                use = gr.Button("Use for this session", variant="primary")
                remove = gr.Button("Delete", variant="stop")
            chosen = gr.Markdown(elem_id="model-status")
            card = gr.Markdown()
            with gr.Row():
                card_curves = gr.Image(label="Training curves", interactive=False)
                card_confusion = gr.Image(label="Confusion matrix", interactive=False)

        with gr.Tab("Hub", id="hub"):
            gr.Markdown("Share the active model on the Hugging Face Hub, or use one from it. The token "
                        "(or `HF_TOKEN` on the server) is used for that request only and never stored.")
            with gr.Row():
                with gr.Column():
                    push_repo = gr.Textbox(label="Push to repo", placeholder="user/my-model")
                    with gr.Row():
                        push_private = gr.Checkbox(False, label="Private")
                        push_tfjs = gr.Checkbox(False, label="Include the TF.js export")
                    push_token = gr.Textbox(label="Write token (optional)", type="password")
                    push_button = gr.Button("Push", variant="primary")
                with gr.Column():
                    pull_repo = gr.Textbox(label="Pull repo", placeholder="user/repo or user/repo@revision")
                    pull_token = gr.Textbox(label="Read token (private repos)", type="password")
                    pull_button = gr.Button("Pull and use", variant="primary")
            hub_status = gr.Markdown(elem_id="hub-status")

        with gr.Tab("Export", id="export"):
            gr.Markdown("Export the active model: **TF.js** runs in any visitor's browser "
                        "([the page](/web/) ships with the default model), **TFLite** on phones and "
                        "edge devices, **SavedModel** in TF Serving. Every export is checked against Keras.")
            with gr.Row():
                export_format = gr.Radio(["tfjs", "tflite", "savedmodel"], value="tfjs", label="Format")
                export_quantize = gr.Dropdown(["none", "float16", "uint8", "dynamic"], value="none",
                                              label="Weights (uint8: TF.js, dynamic int8: TFLite)")
                export_button = gr.Button("Export", variant="primary")
            export_file = gr.File(label="Download (.zip)", interactive=False)
            export_status = gr.Markdown(elem_id="export-status")
            export_button.click(export_model, [export_format, export_quantize, active],
                                [export_file, export_status], api_name="export")

        push_button.click(hub_push, [push_repo, push_private, push_tfjs, push_token, active], hub_status,
                          api_name="push")
        pull_button.click(hub_pull, [pull_repo, pull_token], [active, hub_status, choice], api_name="pull") \
            .then(class_choices, active, target, api_name=False)
        add.click(add_samples, [class_name, snapshot, uploads, samples_root],
                  [samples, samples_root, snapshot, uploads], api_name="add_samples")
        clear.click(clear_samples, samples_root, [samples, samples_root], api_name="clear_samples")
        start.click(train, [zip_file, samples_root, architecture, size, epochs, augment, imagenet, model_name],
                    [status, curves, metrics, confusion, mistakes, choice], api_name="train",
                    concurrency_limit=1, concurrency_id="train") \
            .then(models_table, None, table, api_name=False)
        stop.click(cancel_training, None, status, api_name="cancel_training", queue=False)
        use.click(use_model, choice, [active, chosen], api_name="use_model") \
            .then(show_model, active, [card, card_curves, card_confusion], api_name=False) \
            .then(class_choices, active, target, api_name=False)
        choice.change(show_model, choice, [card, card_curves, card_confusion], api_name=False)
        remove.click(delete_model, [choice, active], [table, choice, active, chosen], api_name="delete_model")
        demo.load(show_model, active, [card, card_curves, card_confusion], api_name=False)
        gr.api(list_model_names, api_name="list_models")
    return demo


def list_model_names() -> list[str]:
    """Paths of the models this app can use (for gradio_client)."""
    return [path for _, path in _model_choices()]


def start_model(flag: str | None) -> Path:
    """The model to start on: --model, else MODEL_REPO (a Hub repo: the Space case), else
    VISION_MODEL or the bundled default. Hub models are pulled (token: HF_TOKEN)."""
    from vision.hub import resolve_model

    ref = flag or (f"hf://{os.environ['MODEL_REPO']}" if os.environ.get("MODEL_REPO") else None)
    if ref is None:
        return DEFAULT_MODEL
    folder = resolve_model(ref)
    if str(ref).startswith("hf://"):
        _pulled.append(str(folder.resolve()))
    return folder


def main(argv: list[str] | None = None) -> None:
    global DEFAULT_MODEL
    parser = argparse.ArgumentParser(description="Image classifier app")
    parser.add_argument("--model", default=None,
                        help="bundle folder or hf://user/repo[@rev] to start on (env VISION_MODEL, or MODEL_REPO "
                             "for a Hub repo)")
    parser.add_argument("--host", default=os.environ.get("VISION_HOST", os.environ.get("GRADIO_SERVER_NAME",
                                                                                         "127.0.0.1")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("VISION_PORT",
                                                                       os.environ.get("GRADIO_SERVER_PORT", 7860))))
    parser.add_argument("--share", action="store_true", default=os.environ.get("VISION_SHARE") == "1",
                        help="create a temporary public link (needs internet)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        DEFAULT_MODEL = start_model(args.model)
        demo = create_app()
    except VisionError as error:
        parser.exit(2, f"error: {error}\n")
    demo.queue(default_concurrency_limit=4, max_size=64)
    # run_history=False: the browser must not keep past inputs (tokens, uploads) around.
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                prevent_thread_lock=True, run_history=False)
    mount_static(demo)
    demo.block_thread()


if __name__ == "__main__":
    main()
