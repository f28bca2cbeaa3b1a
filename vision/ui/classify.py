"""The Classify view: top-k labels and a Grad-CAM overlay for one uploaded image.

Uploads arrive as files, untouched (``gr.Image(image_mode=None)``), so ``load_image``
checks the format and pixel count from the header before anything is decoded, and the
app answers exactly as the library does for the same file. Each view decodes only the
pixels it needs: the model's ``input_side`` for a classification, ``DISPLAY_SIDE`` for a
Grad-CAM overlay, so a 40-megapixel photo never exists at full size in the shared app.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from vision.bundle.examples import list_examples, read_example
from vision.bundle.modelcard import card_summary
from vision.data.images import DISPLAY_SIDE, input_side, load_image
from vision.defaults import EVERYDAY_MODEL
from vision.explain.methods import METHODS
from vision.explain.overlay import overlay
from vision.runtime.inference import Classification
from vision.ui.cache import get_bundle, get_classifier, get_explainer
from vision.ui.context import Context
from vision.ui.errors import user_errors
from vision.ui.wiring import EXPLAIN, QUICK, UPLOAD, uploaded_file

UNKNOWN_PREFIX = "Not sure"
#: Classes a header or a "Not sure" sentence names before "and N more" (ImageNet has 1000).
NAMED_CLASSES = 8
_SERVED: dict[str, list[tuple[str, str]]] = {}
_SERVED_LOCK = threading.Lock()


def class_list(labels: list[str], limit: int = NAMED_CLASSES) -> str:
    """"a, b or c", or "a, b, ... and 992 more" past ``limit``."""
    if len(labels) > limit:
        return f"{', '.join(labels[:limit])} and {len(labels) - limit} more"
    return f"{', '.join(labels[:-1])} or {labels[-1]}" if len(labels) > 1 else "".join(labels)


def model_header(info: dict[str, Any]) -> str:
    """The Classify view's header: what the model is, for a visitor (``card_summary``)."""
    card = card_summary(info)
    figures = [f"**Classes:** {class_list(card['labels']).replace(' or ', ', ')}"]
    if card["accuracy"] is not None:
        figures.append(f"**{card['accuracy']:.0%}** right on validation photos")
    if card["images"]:
        figures.append(f"trained on **{card['images']}** photos")
    figures.append("confidence calibrated" if card["calibrated"] else "confidence not calibrated")
    if card["author"]:
        figures.append(f"made by {card['author']}")
    description = f"{card['description']}\n\n" if card["description"] else ""
    return f"## {card['title']}\n{description}{' · '.join(figures)}"


def label_value(result: Classification) -> dict[str, float] | str:
    """What the Label shows: the probability bars, or for an image unlike the training data
    a plain "Not sure" with the nearest class and no bars (a 100 % bar would be a lie)."""
    if result.unknown:
        return f"{UNKNOWN_PREFIX} (nearest: {result.nearest.label})"
    return {p.label: p.probability for p in result.predictions}


def verdict(result: Classification, labels: list[str], elapsed_ms: float) -> str:
    """Plain words for a visitor, the numbers one click away (a "Details" accordion)."""
    timing = f"Prediction took **{elapsed_ms:.1f} ms** (decode included)."
    if result.familiarity is None:
        return f"<details><summary>Details</summary>\n\n{timing}\n\n</details>"
    numbers = f"Familiarity {result.familiarity:.3f} (threshold {result.threshold:.3f})."
    if not result.unknown:
        return f"<details><summary>Details</summary>\n\n{numbers} {timing}\n\n</details>"
    return (f"⚠️ **Not sure: this does not look like {class_list(labels)}** (the photos it learned from).\n\n"
            f"<details><summary>Details</summary>\n\n{numbers} Below the threshold, the image is unlike anything "
            f"the model was trained on. The nearest class is *{result.nearest.label}* at "
            f"p = {result.nearest.probability:.3f}, which would not mean much. {timing}\n\n</details>")


def served_examples(folder: Path, package_photos: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The model's own examples as (file, caption), copied once into Gradio's upload folder
    (which Gradio serves; a bundle under the Hub cache or elsewhere is not). A bundle's files
    are decoded first (``read_example``: a pulled bundle's are somebody else's). The everyday
    model keeps the package photos; any other model without examples has none."""
    bundle = get_bundle(folder)
    everyday = folder.resolve() == EVERYDAY_MODEL.resolve()
    key = "everyday" if everyday else bundle.fingerprint[:32]
    with _SERVED_LOCK:
        if key in _SERVED and all(Path(path).is_file() for path, _ in _SERVED[key]):
            return _SERVED[key]
        target = Path(get_upload_folder()) / "vision-examples" / key
        target.mkdir(parents=True, exist_ok=True)
        found = []
        if everyday:
            for photo in map(Path, package_photos):
                shutil.copyfile(photo, target / photo.name)
                found.append((str(target / photo.name), photo.stem.replace("_", " ")))
        for label, path in list_examples(folder, bundle.labels):
            data = read_example(path)
            if data is not None:
                (target / path.name).write_bytes(data)
                found.append((str(target / path.name), label))
        _SERVED[key] = found
        return found


class ClassifyView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # classify and explain are MCP tools (AppConfig.mcp): Gradio sends their docstrings, Args and
    # Returns included, to the agent as the tools' descriptions.
    @user_errors
    def classify(self, image: str | None, top_k: int, request: gr.Request) -> tuple[dict[str, float] | str, str]:
        """Classify a photo with the app's model.

        Args:
            image: the photo (JPEG, PNG, WebP, GIF, BMP or TIFF), under the app's pixel cap.
            top_k: how many of the most likely classes to return, 1 to 10.
        Returns:
            The prediction as {"label": top class, "confidences": [{"label", "confidence"}, ...]}, the top_k classes
            most likely first; for a photo unlike the model's training photos, {"label": "Not sure (nearest: <class>)"}
            without confidences. Then a Markdown note: familiarity score and time taken.
        """
        if not image:
            return {}, ""  # cleared
        _, model = self.ctx.active_model(request)
        started = time.perf_counter()
        classifier = get_classifier(model)
        # Reduced as it is decoded (a JPEG at 1/2 to 1/8 scale): a full 40-megapixel array
        # would cost 120 MB, and the interpreter would size its buffers for it and keep them.
        pixels = load_image(image, max_side=input_side(classifier.preprocessing.size))
        result = classifier.classify(pixels, top_k=int(top_k))
        elapsed = (time.perf_counter() - started) * 1000
        return label_value(result), verdict(result, classifier.bundle.labels, elapsed)

    @user_errors
    def explain(self, image: str | None, method: str, target: str | None, alpha: float,
                request: gr.Request) -> tuple[np.ndarray | None, str]:
        """Show which parts of a photo made the app's model choose a class: a Grad-CAM heatmap.

        Args:
            image: the photo (JPEG, PNG, WebP, GIF, BMP or TIFF), under the app's pixel cap.
            method: "gradcam", "gradcam++" or "scorecam".
            target: the class to explain; empty for the top prediction.
            alpha: the heatmap's opacity over the photo, 0 to 1.
        Returns:
            The photo (at most 1024 px a side) with the heatmap over it, as an image; then a Markdown caption:
            method, class explained, its probability, the layer used and the time taken.
        """
        if not image:
            return None, ""
        _, model = self.ctx.active_model(request)
        # At display size: the explanation's heatmap and the overlay are made at the size of
        # the image they are given, and nobody looks at a Grad-CAM at 40 megapixels.
        pixels = load_image(image, max_side=DISPLAY_SIDE)
        started = time.perf_counter()
        explanation = get_explainer(model).explain(pixels, method=method, target=target or None)
        elapsed = (time.perf_counter() - started) * 1000
        caption = (f"{method} for **{explanation.label}** (p = {explanation.probability:.3f}), "
                   f"layer `{explanation.layer}`, {elapsed:.1f} ms")
        return overlay(pixels, explanation.heatmap, alpha=float(alpha)), caption

    @user_errors
    def present(self, request: gr.Request) -> tuple[str, Any]:
        """The header and the examples of the session's active model."""
        _, model = self.ctx.active_model(request)
        examples = served_examples(model, self.ctx.config.examples)
        return model_header(get_bundle(model).info), gr.Gallery(value=examples, visible=bool(examples))

    @user_errors
    def pick_example(self, selected: gr.SelectData, request: gr.Request) -> str | None:
        """The clicked example's file, for the image input (whose change classifies it)."""
        _, model = self.ctx.active_model(request)
        examples = served_examples(model, self.ctx.config.examples)
        return examples[selected.index][0] if 0 <= selected.index < len(examples) else None

    @user_errors
    def class_choices(self, request: gr.Request) -> Any:
        """The "Explain class" options for the session's active model."""
        _, model = self.ctx.active_model(request)
        labels = get_bundle(model).labels
        return gr.Dropdown(choices=[("top prediction", "")] + [(label, label) for label in labels], value="")


def build(ctx: Context, view: ClassifyView) -> SimpleNamespace:
    """The Classify tab: the model's header, the photo (camera or file) and the answer first, then
    the model's own examples and the explanation settings (closed): on a phone the first screen
    holds the input and the answer."""
    labels = ctx.catalog.info(ctx.config.default_model).get("labels", [])
    with gr.Tab("Classify", id="classify"):
        header = gr.Markdown(model_header(ctx.catalog.info(ctx.config.default_model) or {"labels": labels}),
                             elem_id="model-header")
        with gr.Row():
            with gr.Column(min_width=280):
                # A phone's file picker offers its camera first; the webcam stream is the Live tab's.
                image = uploaded_file(gr.Image(sources=["upload", "webcam", "clipboard"], label="Photo",
                                               elem_id="classify-image", height=280, **UPLOAD))
                run = gr.Button("Classify", variant="primary")
            with gr.Column(min_width=280):
                prediction = gr.Label(num_top_classes=10, label="Prediction", elem_id="prediction")
                latency = gr.Markdown(elem_id="latency")
                # Where the feedback block ("Wrong? Pick the right class") goes: under the answer.
                extras = gr.Column(elem_id="classify-extras")
                heatmap = gr.Image(type="numpy", label="Why: Grad-CAM", interactive=False, elem_id="heatmap",
                                   height=300)
                explanation = gr.Markdown()
        examples = gr.Gallery(label="Examples: photos it learned from (click one)", columns=8, height=170,
                              allow_preview=False, buttons=[], elem_id="model-examples", visible=False)
        with gr.Accordion("Explanation settings", open=False, elem_id="explain-settings"):
            with gr.Row():
                top_k = gr.Slider(1, 10, value=3, step=1, label="Top k")
                method = gr.Radio(list(METHODS), value=METHODS[0], label="Explanation")
            with gr.Row():
                target = gr.Dropdown([("top prediction", "")] + [(x, x) for x in labels], value="",
                                     label="Explain class")
                alpha = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
    explain_inputs = [image, method, target, alpha]
    run.click(view.classify, [image, top_k], [prediction, latency], api_name="classify", **QUICK) \
        .then(view.explain, explain_inputs, [heatmap, explanation], api_name=False, **EXPLAIN)
    image.change(view.classify, [image, top_k], [prediction, latency], api_name=False, **QUICK) \
        .then(view.explain, explain_inputs, [heatmap, explanation], api_name=False, **EXPLAIN)
    gr.on([method.change, target.change, alpha.release], view.explain, explain_inputs,
          [heatmap, explanation], api_name="explain", **EXPLAIN)
    examples.select(view.pick_example, None, image, api_name=False, **QUICK)
    return SimpleNamespace(view=view, image=image, prediction=prediction, target=target, header=header,
                           examples=examples, extras=extras)


def refresh_after(event: Any, parts: SimpleNamespace) -> Any:
    """Chain, after an event that changes the session's model, the Classify view's header,
    examples and "Explain class" choices."""
    return event.then(parts.view.present, None, [parts.header, parts.examples], api_name=False, **QUICK) \
        .then(parts.view.class_choices, None, parts.target, api_name=False, **QUICK)
