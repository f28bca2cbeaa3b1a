"""The Blocks: each view's tab is built beside its view (``classify.build``, ``live.build``,
``models.build``; the Train, Hub, Export and Optimize tabs here, one function each), and what
crosses views is wired here.

The owner chooses what visitors see (``AppConfig.views``, ``--views`` / ``--demo``): a view
left out is not built at all, so its components, events and API routes do not exist (a call
to ``/train`` on a demo answers 404). Gradio builds one Blocks for every visitor, so the owner of
a public demo has a second one, the whole workbench, at ``/owner/`` behind their sign-in
(``vision.ui.owner``); in private mode the one user is the owner and every view is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import gradio as gr

from vision.bundle.modelcard import card_summary
from vision.bundle.store import open_bundle
from vision.errors import VisionError
from vision.export.options import FORMATS, quantization_names
from vision.models.registry import list_models
from vision.training.config import LOSSES, MIXING, DistillConfig, TrainConfig
from vision.ui import classify as classify_view
from vision.ui import live as live_view
from vision.ui import models as models_view
from vision.ui.classify import ClassifyView
from vision.ui.context import Context
from vision.ui.export import ExportView
from vision.ui.feedback import FeedbackView
from vision.ui.hub import HubView
from vision.ui.live import LiveView
from vision.ui.models import ModelsView
from vision.ui.optimize import EPOCHS, MAX_SPARSITY, STUDENT_SIZES, VIEWS, OptimizeView, students
from vision.ui.owner import owner_link, wants_workbench
from vision.ui.train import TrainView
from vision.ui.wiring import EXPLAIN, EXPORT, HUB, QUICK, SAMPLES, TRAIN, UPLOAD, uploaded_file

__all__ = ["build_blocks", "uploaded_file", "UPLOAD", "QUICK", "EXPLAIN", "SAMPLES", "TRAIN", "EXPORT", "HUB"]

#: Gradio's cache (uploads, outputs, export zips) is swept every 5 minutes of files older than
#: 15: an upload that no event ever used belongs to nobody, so nothing else would remove it.
CACHE_SWEEP = (300, 900)
#: Thumbnails per row on a class card.
CARD_COLUMNS = 10


def build_blocks(ctx: Context, feedback: FeedbackView | None = None) -> gr.Blocks:
    """The app's Blocks: the views ``ctx.config`` shows, and the events between them.

    ``feedback``: the app's one store of visitors' reports (one index and one lock on its folder),
    with the Train view it adds photos through; a demo and the owner's workbench share it.
    """
    config = ctx.config
    feedback = feedback or FeedbackView(ctx, TrainView(ctx))
    train = feedback.train
    with gr.Blocks(title=_app_title(ctx), delete_cache=CACHE_SWEEP) as demo:
        _header(ctx)
        parts = SimpleNamespace(classify=None, models=None)
        if config.shows("classify"):
            parts.classify = classify_view.build(ctx, ClassifyView(ctx))
            with parts.classify.extras:
                feedback.block(parts.classify.image, parts.classify.prediction, **QUICK)
        if config.shows("live"):
            live_view.build(LiveView(ctx))
        tabs = {name: build(ctx, demo, train) if name == "train" else build(ctx)
                for name, build in (("train", _train_tab), ("hub", _hub_tab), ("export", _export_tab),
                                    ("optimize", _optimize_tab)) if config.shows(name)}
        if config.shows("models"):
            parts.models = models_view.build(ctx, ModelsView(ctx, train), demo, _changed(parts))
        if parts.classify is not None:
            classify_view.refresh_after(demo.load(_nothing, None, None, api_name=False, queue=False), parts.classify)
        # What a training, a pull or an optimization answers for the Models view's picker: where
        # that view is not built, a hidden one keeps those events' outputs (and API) as they are.
        choice = parts.models.choice if parts.models else gr.Dropdown([], visible=False, allow_custom_value=True)
        if "train" in tabs:
            with tabs["train"].train_tab:
                feedback.owner_block(tabs["train"].samples, **QUICK)
            _wire_train(train, tabs["train"], choice, parts)
        if "hub" in tabs:
            _wire_hub(HubView(ctx), tabs["hub"], choice, parts)
        if "export" in tabs:
            _wire_export(ExportView(ctx), tabs["export"])
        if "optimize" in tabs:
            _wire_optimize(OptimizeView(ctx), tabs["optimize"], choice, parts, tabs.get("export"))
        demo.unload(_ender(ctx))
    return demo


@contextmanager
def _tab(title: str, intro: str) -> Iterator[gr.Tab]:
    """A workbench tab (its id: the title in lower case) that opens with ``intro``."""
    with gr.Tab(title, id=title.lower()) as tab:
        gr.Markdown(intro)
        yield tab


def _components(names: dict[str, Any]) -> SimpleNamespace:
    """A tab builder's components by their variable names (what the wiring functions use)."""
    return SimpleNamespace(**{name: value for name, value in names.items() if isinstance(value, gr.blocks.Block)})


def _nothing() -> None:
    """The first step of the page load's chain (the Classify header and examples follow)."""


def _app_title(ctx: Context) -> str:
    """The app's name for its visitors: the title of the model it serves by default (a link shows
    the trash sorter's name, not a generic "image classifier")."""
    try:
        return str(card_summary(open_bundle(ctx.config.default_model).info)["title"])
    except VisionError:
        return "Image classifier"


def _header(ctx: Context) -> None:
    config = ctx.config
    with gr.Row():
        link = " · [Run it in your browser](/web/)" if config.shows("web") else ""
        if wants_workbench(ctx):  # the owner of a demo: sign in, and the workbench opens
            link += f" · [Owner: the workbench]({owner_link(ctx)})"
        gr.Markdown(f"**{_app_title(ctx)}**{link}", elem_id="app-title")
        if config.oauth:
            gr.LoginButton(scale=0)
    if config.public and (config.shows("train") or config.shows("hub")):  # what a visitor could make or push
        gr.Markdown("*Public demo: what you train or pull stays in your browser session and is removed "
                    "when you leave. Hub pushes use your own Hugging Face account.*", elem_id="public-note")


def _changed(parts: SimpleNamespace):
    """Chain what follows a change of the session's model onto an event: the Models table and the
    Classify view's header, examples and classes, where those views are built."""
    def chain(event: Any) -> Any:
        if parts.models is not None:
            event = event.then(parts.models.view.table, None, parts.models.table, api_name=False, **QUICK)
        if parts.classify is not None:
            event = classify_view.refresh_after(event, parts.classify)
        return event
    return chain


def _train_tab(ctx: Context, demo: gr.Blocks, train: TrainView) -> SimpleNamespace:
    config = ctx.config
    architectures = [(f"{spec.name} — {spec.description}", spec.name) for spec in list_models()]
    with _tab("Train", "Upload a **.zip** with one folder per class, **or** build classes here from webcam "
              "snapshots and uploads. Then choose the model and train.") as train_tab:
        with gr.Row():
            with gr.Column():
                zip_file = gr.File(label="Dataset .zip (class folders)", file_types=[".zip"], type="filepath")
            with gr.Column():
                class_name = gr.Textbox(label="Class name", placeholder="e.g. thumbs-up", elem_id="class-name")
                with gr.Row():
                    snapshot = uploaded_file(gr.Image(sources=["webcam", "upload"], label="Snapshot", **UPLOAD))
                    uploads = gr.File(label=f"Images (up to {config.limits.files_per_call} at a time)",
                                      file_count="multiple", file_types=["image"], type="filepath",
                                      elem_id="sample-uploads")
                with gr.Row():
                    add = gr.Button("Add to class")
                    clear = gr.Button("Clear classes")
        # The class table is what /add_samples and the card actions answer (scripts read it);
        # the page shows the cards drawn from it instead.
        samples = gr.Dataframe(headers=["class", "samples"], label="Your classes", interactive=False,
                               visible=False)

        @gr.render(triggers=[samples.change, demo.load], **SAMPLES)
        def class_cards(request: gr.Request) -> None:
            _class_cards(train, samples, request)
        with gr.Row():
            architecture = gr.Dropdown(architectures, value="efficientnet_lite0", label="Architecture")
            size = gr.Slider(32, 224, value=224, step=16, label="Image size (px)")
            epochs = gr.Slider(1, 60, value=20, step=1, label="Epochs")
        with gr.Row():
            augment = gr.Checkbox(True, label="Augmentation (mirrored copies for the fast path; flip, rotate, "
                                  "zoom, contrast otherwise)")
            imagenet = gr.Checkbox(True, label="Pretrained ImageNet weights (EfficientNet-Lite0's ship with "
                                   "the app; the others are downloaded)")
            model_name = gr.Textbox(label="Save as", placeholder="my-model")
        with gr.Accordion("Imbalanced or hard data: loss, mixing, class weights", open=False):
            with gr.Row():
                loss = gr.Dropdown(list(LOSSES), value=TrainConfig.loss, label="Loss (focal: gamma 2)")
                smoothing = gr.Slider(0.0, 0.3, value=TrainConfig.label_smoothing, step=0.05,
                                      label="Label smoothing")
                mixing = gr.Dropdown(list(MIXING), value=TrainConfig.mixing,
                                     label="Mixing (the fast path: mixup of features)")
                class_weights = gr.Checkbox(TrainConfig.class_weights, label="Class weights (rare classes count "
                                            "more)")
        with gr.Row():
            start = gr.Button("Train", variant="primary")
            stop = gr.Button("Cancel", variant="stop")
            board = gr.Button("TensorBoard", visible=not config.public)
        board_link = gr.Markdown(elem_id="tensorboard-link")
        status = gr.Markdown(elem_id="train-status")
        # The results stay hidden until a training has produced them (see ``TrainView.reveal``).
        curves = gr.Image(label="Loss and accuracy", interactive=False, visible=False, elem_id="train-curves")
        # The picture, for scripts (/train answers its file); the page shows the table.
        confusion = gr.Image(label="Confusion matrix", interactive=False, visible=False)
        metrics = gr.Markdown(elem_id="train-metrics")
        with gr.Row():
            confusion_table = gr.Dataframe(label="Confusion matrix: rows true, columns predicted. Click a cell "
                                           "to see its images", interactive=False, visible=False,
                                           elem_id="confusion-table", scale=2)
            mistakes = gr.Gallery(label="The clicked cell's validation images (at first every mistake), each "
                                  "beside its Grad-CAM for the predicted class", columns=2, height=420,
                                  object_fit="contain", visible=False, elem_id="mistakes", scale=3)
        # The cell clicked ("true:predicted"), which /show_mistakes takes from scripts too.
        cell = gr.Textbox(visible=False, label="Cell (true:predicted class indices, or all)")
        reliability = gr.Image(label="Reliability (is p = 0.9 right 90 % of the time?)", interactive=False,
                               visible=False)
        issues = gr.Gallery(label="Likely label errors and near-duplicates (cleanlab)", columns=4,
                            height=420, object_fit="contain", elem_id="label-issues", visible=False)

    return _components(locals())


def _wire_train(train: TrainView, t: SimpleNamespace, choice: Any, parts: SimpleNamespace) -> None:
    t.add.click(train.add_samples, [t.class_name, t.snapshot, t.uploads], [t.samples, t.snapshot, t.uploads],
                api_name="add_samples", **SAMPLES)
    t.clear.click(train.clear_samples, None, t.samples, api_name="clear_samples", **SAMPLES)
    trained = t.start.click(train.train, [t.zip_file, t.architecture, t.size, t.epochs, t.augment, t.imagenet,
                                          t.model_name, t.loss, t.smoothing, t.mixing, t.class_weights],
                            [t.status, t.curves, t.metrics, t.confusion, t.mistakes, choice, t.reliability, t.issues,
                             t.confusion_table], api_name="train", **TRAIN)
    _changed(parts)(trained).then(train.reveal, [t.curves, t.reliability, t.issues],
                                  [t.curves, t.reliability, t.issues], api_name=False, **QUICK)
    t.stop.click(train.cancel, None, t.status, api_name="cancel_training", queue=False)
    t.board.click(train.tensorboard, None, t.board_link, api_name="tensorboard", **QUICK)
    t.confusion_table.select(train.pick_cell, None, t.cell, api_name=False, **QUICK) \
        .then(train.show_mistakes, t.cell, t.mistakes, api_name="show_mistakes", **EXPLAIN)
    # The card actions for scripts (the cards' own buttons call the same handlers).
    gr.api(train.remove_sample, api_name="remove_sample", **SAMPLES)
    gr.api(train.rename_class, api_name="rename_class", **SAMPLES)
    gr.api(train.delete_class, api_name="delete_class", **SAMPLES)


def _hub_tab(ctx: Context) -> SimpleNamespace:
    config = ctx.config
    whose = ("your own token (or your sign-in)" if config.oauth else "your own token") if config.public \
        else "the token (or `HF_TOKEN` on the server)"
    with _tab("Hub", f"Share the active model on the Hugging Face Hub, or use one from it. Calls use {whose}, "
                     "for that request only; it is never stored."):
        with gr.Row():
            with gr.Column():
                push_repo = gr.Textbox(label="Push to repo", placeholder="user/my-model")
                with gr.Row():
                    push_private = gr.Checkbox(False, label="Private")
                    push_tfjs = gr.Checkbox(False, label="Include the TF.js export")
                push_token = gr.Textbox(label="Write token", type="password")
                push_button = gr.Button("Push", variant="primary")
            with gr.Column():
                pull_repo = gr.Textbox(label="Pull repo", placeholder="user/repo or user/repo@revision")
                pull_token = gr.Textbox(label="Read token (private repos)", type="password")
                pull_button = gr.Button("Pull and use", variant="primary")
        hub_status = gr.Markdown(elem_id="hub-status")

    return _components(locals())


def _export_tab(ctx: Context) -> SimpleNamespace:
    with _tab("Export", "Export the active model: **TF.js** runs in any visitor's browser ([the page](/web/) runs "
              "the app's model), **TFLite** on phones and edge devices (**int8**: full integer, for NPUs and the "
              "Edge TPU; `-io`: integer input and output), **ONNX** in ONNX Runtime, **SavedModel** in TF Serving. "
              "Every export is checked against Keras on held-out images, and timed on this server."):
        with gr.Row():
            export_format = gr.Radio(list(FORMATS), value=FORMATS[0], label="Format")
            export_quantize = gr.Dropdown(["none", *quantization_names()], value="none",
                                          label="Quantization (uint8: TF.js; dynamic, int8*: TFLite)")
            export_button = gr.Button("Export", variant="primary")
        export_file = gr.File(label="Download (.zip)", interactive=False)
        export_status = gr.Markdown(elem_id="export-status")
        export_table = gr.Dataframe(headers=ExportView.TABLE_HEADERS, interactive=False, elem_id="export-table",
                                    label="This session's exports against Keras (each folder's parity.json)")

    return _components(locals())


def _wire_hub(hub: HubView, h: SimpleNamespace, choice: Any, parts: SimpleNamespace) -> None:
    h.push_button.click(hub.push, [h.push_repo, h.push_private, h.push_tfjs, h.push_token], h.hub_status,
                        api_name="push", **HUB)
    _changed(parts)(h.pull_button.click(hub.pull, [h.pull_repo, h.pull_token], [h.hub_status, choice],
                                        api_name="pull", **HUB))


def _wire_export(export: ExportView, e: SimpleNamespace) -> None:
    e.export_button.click(export.export, [e.export_format, e.export_quantize], [e.export_file, e.export_status],
                          api_name="export", **EXPORT) \
        .then(export.table, None, e.export_table, api_name="export_table", **QUICK)


def _optimize_tab(ctx: Context) -> SimpleNamespace:
    with _tab("Optimize", "Make a smaller variant of the active model: **distil** it into a small student trained "
              "on its answers, **prune** the student (or the model) to a share of zero weights, and **int8**-quantize "
              "the result; each step starts from the one before. Every variant is measured as it ships (TFLite on "
              "this server) on the same held-out images. The models appear in the Models tab (use, export or push "
              "them), the int8 one in the Export tab."):
        with gr.Row():
            optimize_zip = gr.File(label="The model's training images: .zip of class folders (else your "
                                   "classes from the Train tab)", file_types=[".zip"], type="filepath",
                                   elem_id="optimize-data")
            optimize_unlabelled = gr.File(label="More images, unlabelled, for distillation (optional)",
                                          file_count="multiple", file_types=["image"], type="filepath",
                                          elem_id="optimize-unlabelled")
        with gr.Row():
            optimize_distil = gr.Checkbox(True, label="Distil into")
            optimize_student = gr.Dropdown(students(), value="simple_cnn", label="Student")
            optimize_size = gr.Slider(*STUDENT_SIZES, value=96, step=16, label="Student image size (px)")
            optimize_epochs = gr.Slider(*EPOCHS, value=DistillConfig.epochs, step=1, label="Distillation epochs")
            optimize_views = gr.Slider(*VIEWS, value=DistillConfig.views, step=1, label="Augmented views per image")
        with gr.Row():
            optimize_sparsity = gr.Slider(0.0, MAX_SPARSITY, value=0.0, step=0.05,
                                          label="Prune to (share of zero weights; 0 = off)")
            optimize_int8 = gr.Checkbox(True, label="int8 (full-integer TFLite)")
            optimize_name = gr.Textbox(label="Name the variants", placeholder="my-model-small")
        with gr.Row():
            optimize_button = gr.Button("Optimize", variant="primary")
            optimize_stop = gr.Button("Cancel", variant="stop")
        optimize_status = gr.Markdown(elem_id="optimize-status")
        optimize_table = gr.Dataframe(headers=OptimizeView.TABLE_HEADERS, interactive=False,
                                      elem_id="optimize-table", label="The variants against the original")
        with gr.Row():
            optimize_plot = gr.Image(label="Trade-off", interactive=False)
            optimize_file = gr.File(label="int8 model (.zip)", interactive=False)

    return _components(locals())


def _wire_optimize(optimize: OptimizeView, o: SimpleNamespace, choice: Any, parts: SimpleNamespace,
                   export: SimpleNamespace | None) -> None:
    event = o.optimize_button.click(
        optimize.optimize, [o.optimize_zip, o.optimize_unlabelled, o.optimize_distil, o.optimize_student,
                            o.optimize_size, o.optimize_epochs, o.optimize_views, o.optimize_sparsity, o.optimize_int8,
                            o.optimize_name],
        [o.optimize_status, o.optimize_table, o.optimize_plot, o.optimize_file, choice], api_name="optimize", **TRAIN)
    event = _changed(parts)(event)
    if export is not None:
        event.then(ExportView(optimize.ctx).table, None, export.export_table, api_name=False, **QUICK)
    o.optimize_stop.click(optimize.cancel, None, o.optimize_status, api_name="cancel_optimize", queue=False)


def _class_cards(train: TrainView, samples: gr.Dataframe, request: gr.Request) -> None:
    """One card per class: its name and count, its thumbnails (a click removes that sample),
    rename and delete. Drawn inside ``gr.render``: each action answers the class table, whose
    change draws the cards again."""
    for i, (name, ids, thumbnails) in enumerate(train.class_cards(request)):
        with gr.Column(variant="panel", elem_id=f"class-card-{i}", elem_classes="class-card"):
            with gr.Row(equal_height=True):
                count = f"{len(ids)} sample{'' if len(ids) == 1 else 's'}"
                gr.Markdown(f"### {name.replace('_', chr(92) + '_')} · {count}", elem_classes="class-title")
                new_name = gr.Textbox(name, label=f"Rename {name}", show_label=False, container=False, scale=2,
                                      interactive=True, elem_classes="class-name")
                rename = gr.Button("Rename", size="sm", scale=0, elem_classes="class-rename")
                delete = gr.Button("Delete class", size="sm", variant="stop", scale=0, elem_classes="class-delete")
            if thumbnails:
                # Sized to its rows of thumbnails: "auto" leaves a gallery's default height, mostly empty.
                rows = -(-len(thumbnails) // CARD_COLUMNS)
                gallery = gr.Gallery(thumbnails, label="Click a picture to remove it", columns=CARD_COLUMNS,
                                     height=48 + 128 * rows, allow_preview=False, buttons=[],
                                     elem_classes="class-samples")
                gallery.select(_card_actions(train, name, ids)[0], None, samples, api_visibility="private",
                               **SAMPLES)
            else:
                gr.Markdown("No samples yet: add snapshots or images above.")
            _, rename_fn, delete_fn = _card_actions(train, name, ids)
            rename.click(rename_fn, new_name, samples, api_visibility="private", **SAMPLES)
            delete.click(delete_fn, None, samples, api_visibility="private", **SAMPLES)


def _card_actions(train: TrainView, name: str, ids: list[str]) -> tuple[Any, Any, Any]:
    """The handlers of one card, bound to its class. Plain functions, not ``functools.partial``:
    Gradio finds ``gr.Request`` and ``gr.SelectData`` parameters by their annotations."""
    def remove(selected: gr.SelectData, request: gr.Request) -> list[list[Any]]:
        # By the id the card showed: a click removes the picture it was on, whatever changed since.
        return train.remove_sample_id(name, ids[selected.index], request)

    def rename(new_name: str, request: gr.Request) -> list[list[Any]]:
        return train.rename_class(name, new_name, request)

    def delete(request: gr.Request) -> list[list[Any]]:
        return train.delete_class(name, request)

    return remove, rename, delete


def _ender(ctx: Context):
    """Gradio's unload hands the closing tab's request to a function annotated for it."""
    def end_session(request: gr.Request) -> None:
        ctx.sessions.close(request)
    return end_session
