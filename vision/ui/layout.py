"""The Blocks: tabs, components, and every event's wiring (with its api_name) in one place."""

from __future__ import annotations

from typing import Any

import gradio as gr

from vision.explain.methods import METHODS
from vision.export.options import FORMATS, quantization_names
from vision.models.registry import list_models
from vision.training.config import LOSSES, MIXING, DistillConfig, TrainConfig
from vision.training.evaluate import COMPARE_COLUMNS
from vision.ui.classify import ClassifyView
from vision.ui.context import Context
from vision.ui.export import ExportView
from vision.ui.hub import HubView
from vision.ui.live import LiveView
from vision.ui.models import HEADERS, ModelsView
from vision.ui.optimize import EPOCHS, MAX_SPARSITY, STUDENT_SIZES, VIEWS, OptimizeView, students
from vision.ui.train import TrainView


def uploaded_file(image: gr.Image) -> gr.Image:
    """Make ``image`` hand its handler the visitor's file as it arrived, unopened.

    ``gr.Image`` opens (and for other modes converts) every upload before the handler runs;
    this way ``vision.data.images.load_image`` is the first to read it, so its format allow-list
    and pixel cap act on the header and the app answers exactly as the library does.
    (Per instance rather than a subclass: Gradio writes a ``.pyi`` beside any module that
    defines a component class.)
    """
    gradio_preprocess = image.preprocess

    def preprocess(payload):  # noqa: ANN001, ANN202 - Gradio's signature
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return gradio_preprocess(payload)  # a pasted data URL: Gradio decodes (Pillow's cap applies)

    image.preprocess = preprocess
    return image


UPLOAD = dict(type="filepath", image_mode=None)

#: Gradio's cache (uploads, outputs, export zips) is swept every 5 minutes of files older than
#: 15: an upload that no event ever used belongs to nobody, so nothing else would remove it.
CACHE_SWEEP = (300, 900)

# Concurrency groups: Gradio queues each group separately, so a cheap event never waits
# behind an expensive one, and ``vision.ui.fairness`` caps each session's share of a group.
QUICK = dict(concurrency_id="quick", concurrency_limit=4)  # classify, lists, cards: milliseconds
EXPLAIN = dict(concurrency_id="explain", concurrency_limit=2)
SAMPLES = dict(concurrency_id="samples", concurrency_limit=2)
TRAIN = dict(concurrency_id="train", concurrency_limit=1)
EXPORT = dict(concurrency_id="export", concurrency_limit=1)
HUB = dict(concurrency_id="hub", concurrency_limit=2)
#: Thumbnails per row on a class card.
CARD_COLUMNS = 10


def build_blocks(ctx: Context) -> gr.Blocks:
    config = ctx.config
    classify, live, train = ClassifyView(ctx), LiveView(ctx), TrainView(ctx)
    models, hub, export, optimize = ModelsView(ctx, train), HubView(ctx), ExportView(ctx), OptimizeView(ctx)
    architectures = [(f"{spec.name} — {spec.description}", spec.name) for spec in list_models()]
    labels = ctx.catalog.info(config.default_model).get("labels", [])

    with gr.Blocks(title="vision — image classifier", delete_cache=CACHE_SWEEP) as demo:
        with gr.Row():
            gr.Markdown("# Image classifier\nClassify pictures, see why, train your own model.")
            if config.oauth:
                gr.LoginButton(scale=0)
        if config.public:
            gr.Markdown("*Public demo: what you train or pull stays in your browser session and is removed "
                        "when you leave. Hub pushes use your own Hugging Face account.*")

        with gr.Tab("Classify", id="classify"):
            with gr.Row():
                with gr.Column():
                    image = uploaded_file(gr.Image(sources=["upload", "clipboard", "webcam"], label="Image",
                                                   elem_id="classify-image", **UPLOAD))
                    with gr.Row():
                        top_k = gr.Slider(1, 10, value=3, step=1, label="Top k")
                        method = gr.Radio(list(METHODS), value=METHODS[0], label="Explanation")
                    with gr.Row():
                        target = gr.Dropdown([("top prediction", "")] + [(x, x) for x in labels], value="",
                                             label="Explain class")
                        alpha = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
                    run = gr.Button("Classify", variant="primary")
                    if config.examples:
                        gr.Examples(list(config.examples), inputs=image, label="Examples (click one)")
                with gr.Column():
                    prediction = gr.Label(num_top_classes=10, label="Prediction", elem_id="prediction")
                    latency = gr.Markdown(elem_id="latency")
                    heatmap = gr.Image(type="numpy", label="Grad-CAM", interactive=False, elem_id="heatmap")
                    explanation = gr.Markdown()
            explain_inputs = [image, method, target, alpha]
            run.click(classify.classify, [image, top_k], [prediction, latency], api_name="classify", **QUICK) \
                .then(classify.explain, explain_inputs, [heatmap, explanation], api_name=False, **EXPLAIN)
            image.change(classify.classify, [image, top_k], [prediction, latency], api_name=False, **QUICK) \
                .then(classify.explain, explain_inputs, [heatmap, explanation], api_name=False, **EXPLAIN)
            gr.on([method.change, target.change, alpha.release], classify.explain, explain_inputs,
                  [heatmap, explanation], api_name="explain", **EXPLAIN)

        with gr.Tab("Live", id="live"):
            gr.Markdown("Start the webcam: labels update continuously while frames stream to the server.")
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                  webcam_options=gr.WebcamOptions(mirror=True), elem_id="live-camera")
                with gr.Column():
                    live_labels = gr.Label(num_top_classes=3, label="Live prediction", elem_id="live-prediction")
                    fps = gr.Markdown(elem_id="live-fps")
            camera.stream(live.frame, camera, [live_labels, fps], stream_every=0.08, time_limit=300,
                          concurrency_limit=8, concurrency_id="live", api_name="live", show_progress="hidden")

        with gr.Tab("Train", id="train"):
            gr.Markdown("Upload a **.zip** with one folder per class, **or** build classes here from webcam "
                        "snapshots and uploads. Then choose the model and train.")
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

        with gr.Tab("Models", id="models"):
            table = gr.Dataframe(headers=HEADERS, label="Models you can use", interactive=False)
            with gr.Row():
                # Choices differ per session: the handlers check every value against the catalog.
                choice = gr.Dropdown([], label="Model", allow_custom_value=True)
                use = gr.Button("Use for this session", variant="primary")
                remove = gr.Button("Delete", variant="stop")
                publish = gr.Button("Publish to everyone", visible=config.public)
            owner_token = gr.Textbox(label="Owner's Hub token (to delete shared models or publish)", type="password",
                                     visible=config.public and not config.oauth)
            chosen = gr.Markdown(elem_id="model-status")
            card = gr.Markdown()
            with gr.Row():
                card_curves = gr.Image(label="Training curves", interactive=False)
                card_confusion = gr.Image(label="Confusion matrix", interactive=False)
                card_reliability = gr.Image(label="Reliability", interactive=False)
            with gr.Accordion("Import a Teachable Machine model", open=False):
                gr.Markdown("Upload the zip Teachable Machine gave you: its TensorFlow.js, Keras or TFLite export. "
                            "It becomes a model here, with its preprocessing (centre crop, x / 127 - 1) kept.")
                with gr.Row():
                    tm_zip = gr.File(label="Teachable Machine zip", file_types=[".zip"], elem_id="tm-zip")
                    tm_name = gr.Textbox(label="Name", placeholder="my-tm-model")
                tm_import = gr.Button("Import", variant="primary")
                tm_status = gr.Markdown(elem_id="tm-status")
            with gr.Accordion("Compare models on the same photos", open=False):
                gr.Markdown("Evaluate models side by side on a zip of class folders, e.g. an imported Teachable "
                            "Machine model against one trained here on the same photos.")
                with gr.Row():
                    compare_models = gr.Dropdown([], multiselect=True, allow_custom_value=True,
                                                 label="Models (up to 4)")
                    compare_zip = gr.File(label="Labelled photos (zip of class folders)", file_types=[".zip"])
                compare_button = gr.Button("Compare")
                compare_table = gr.Dataframe(headers=list(COMPARE_COLUMNS), interactive=False,
                                             label="Side by side", elem_id="compare-table")

        with gr.Tab("Hub", id="hub"):
            whose = ("your own token (or your sign-in)" if config.oauth else "your own token") if config.public \
                else "the token (or `HF_TOKEN` on the server)"
            gr.Markdown(f"Share the active model on the Hugging Face Hub, or use one from it. Calls use {whose}, "
                        "for that request only; it is never stored.")
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

        with gr.Tab("Export", id="export"):
            gr.Markdown("Export the active model: **TF.js** runs in any visitor's browser "
                        "([the page](/web/) ships with the default model), **TFLite** on phones and "
                        "edge devices (**int8**: full integer, for NPUs and the Edge TPU; `-io`: integer input "
                        "and output), **ONNX** in ONNX Runtime, **SavedModel** in TF Serving. Every export is "
                        "checked against Keras on held-out images, and timed on this server.")
            with gr.Row():
                export_format = gr.Radio(list(FORMATS), value=FORMATS[0], label="Format")
                export_quantize = gr.Dropdown(["none", *quantization_names()], value="none",
                                              label="Quantization (uint8: TF.js; dynamic, int8*: TFLite)")
                export_button = gr.Button("Export", variant="primary")
            export_file = gr.File(label="Download (.zip)", interactive=False)
            export_status = gr.Markdown(elem_id="export-status")
            export_table = gr.Dataframe(headers=ExportView.TABLE_HEADERS, interactive=False, elem_id="export-table",
                                        label="This session's exports against Keras (each folder's parity.json)")

        with gr.Tab("Optimize", id="optimize"):
            gr.Markdown("Make a smaller variant of the active model: **distil** it into a small student trained "
                        "on its answers, **prune** the student (or the model) to a share of zero weights, and "
                        "**int8**-quantize the result; each step starts from the one before. Every variant is "
                        "measured as it ships (TFLite on this server) on the same held-out images. The models "
                        "appear in the Models tab (use, export or push them), the int8 one in the Export tab.")
            with gr.Row():
                optimize_zip = gr.File(label="The model's training images: .zip of class folders (else your "
                                       "classes from the Train tab)", file_types=[".zip"], type="filepath",
                                       elem_id="optimize-data")
                optimize_unlabelled = gr.File(label="More images, unlabelled, for distillation (optional)",
                                              file_count="multiple", file_types=["image"], type="filepath",
                                          elem_id="sample-uploads")
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

        # -- wiring that crosses tabs -------------------------------------------------
        card_outputs = [card, card_curves, card_confusion, card_reliability]
        export_button.click(export.export, [export_format, export_quantize], [export_file, export_status],
                            api_name="export", **EXPORT).then(export.table, None, export_table,
                                                              api_name="export_table", **QUICK)
        push_button.click(hub.push, [push_repo, push_private, push_tfjs, push_token], hub_status,
                          api_name="push", **HUB)
        pull_button.click(hub.pull, [pull_repo, pull_token], [hub_status, choice], api_name="pull", **HUB) \
            .then(classify.class_choices, None, target, api_name=False, **QUICK)
        add.click(train.add_samples, [class_name, snapshot, uploads], [samples, snapshot, uploads],
                  api_name="add_samples", **SAMPLES)
        clear.click(train.clear_samples, None, samples, api_name="clear_samples", **SAMPLES)
        start.click(train.train, [zip_file, architecture, size, epochs, augment, imagenet, model_name, loss,
                                  smoothing, mixing, class_weights],
                    [status, curves, metrics, confusion, mistakes, choice, reliability, issues, confusion_table],
                    api_name="train", **TRAIN) \
            .then(models.table, None, table, api_name=False, **QUICK) \
            .then(train.reveal, [curves, reliability, issues], [curves, reliability, issues], api_name=False,
                  **QUICK)
        stop.click(train.cancel, None, status, api_name="cancel_training", queue=False)
        board.click(train.tensorboard, None, board_link, api_name="tensorboard", **QUICK)
        optimize_button.click(optimize.optimize,
                              [optimize_zip, optimize_unlabelled, optimize_distil, optimize_student, optimize_size,
                               optimize_epochs, optimize_views, optimize_sparsity, optimize_int8, optimize_name],
                              [optimize_status, optimize_table, optimize_plot, optimize_file, choice],
                              api_name="optimize", **TRAIN) \
            .then(models.table, None, table, api_name=False, **QUICK) \
            .then(export.table, None, export_table, api_name=False, **QUICK)
        optimize_stop.click(optimize.cancel, None, optimize_status, api_name="cancel_optimize", queue=False)
        confusion_table.select(train.pick_cell, None, cell, api_name=False, **QUICK) \
            .then(train.show_mistakes, cell, mistakes, api_name="show_mistakes", **EXPLAIN)
        # The card actions for scripts (the cards' own buttons call the same handlers).
        gr.api(train.remove_sample, api_name="remove_sample", **SAMPLES)
        gr.api(train.rename_class, api_name="rename_class", **SAMPLES)
        gr.api(train.delete_class, api_name="delete_class", **SAMPLES)
        use.click(models.use, choice, chosen, api_name="use_model", **QUICK) \
            .then(models.show, choice, card_outputs, api_name=False, **QUICK) \
            .then(classify.class_choices, None, target, api_name=False, **QUICK)
        choice.input(models.show, choice, card_outputs, api_name="model_card", **QUICK)
        remove.click(models.delete, [choice, owner_token], [table, choice, chosen], api_name="delete_model", **QUICK)
        publish.click(models.publish, [choice, owner_token], [table, choice, chosen], api_name="publish_model", **QUICK)
        tm_import.click(models.import_teachable, [tm_zip, tm_name], [table, choice, tm_status],
                        api_name="import_teachable_machine", **EXPORT) \
            .then(models.show, choice, card_outputs, api_name=False, **QUICK) \
            .then(classify.class_choices, None, target, api_name=False, **QUICK)
        compare_button.click(models.compare, [compare_models, compare_zip], compare_table,
                             api_name="compare_models", **EXPORT)
        choice.change(models.compare_choices, None, compare_models, api_name=False, **QUICK)
        demo.load(models.refresh, None, [choice, table], api_name=False, **QUICK) \
            .then(models.show, choice, card_outputs, api_name=False, **QUICK)
        demo.unload(_ender(ctx))
        gr.api(models.names, api_name="list_models", **QUICK)
    return demo


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
