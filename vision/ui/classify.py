"""The Classify view: top-k labels and a Grad-CAM overlay for one uploaded image.

Uploads arrive as files, untouched (``gr.Image(image_mode=None)``), so ``load_image``
checks the format and pixel count from the header before anything is decoded, and the
app answers exactly as the library does for the same file. Each view decodes only the
pixels it needs: the model's ``input_side`` for a classification, ``DISPLAY_SIDE`` for a
Grad-CAM overlay, so a 40-megapixel photo never exists at full size in the shared app.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import numpy as np

from vision.data.images import DISPLAY_SIDE, input_side, load_image
from vision.explain.overlay import overlay
from vision.runtime.inference import Classification
from vision.ui.cache import get_bundle, get_classifier, get_explainer
from vision.ui.context import Context
from vision.ui.errors import user_errors

UNKNOWN_PREFIX = "Not sure"


def label_value(result: Classification) -> dict[str, float] | str:
    """What the Label shows: the probability bars, or for an image unlike the training data
    a plain "Not sure" with the nearest class and no bars (a 100 % bar would be a lie)."""
    if result.unknown:
        return f"{UNKNOWN_PREFIX} (nearest: {result.nearest.label})"
    return {p.label: p.probability for p in result.predictions}


def verdict(result: Classification) -> str:
    """A sentence on how familiar the image is, for the Markdown beside the Label."""
    if result.familiarity is None:
        return ""
    if result.unknown:
        return (f"⚠️ **Not sure: this image is unlike anything the model was trained on** (familiarity "
                f"{result.familiarity:.3f}, below the threshold {result.threshold:.3f}). The nearest class is "
                f"*{result.nearest.label}* at p = {result.nearest.probability:.3f}, which would not mean much.\n\n")
    return f"Familiarity {result.familiarity:.3f} (threshold {result.threshold:.3f}). "


class ClassifyView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @user_errors
    def classify(self, image: str | None, top_k: int, request: gr.Request) -> tuple[dict[str, float] | str, str]:
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
        return label_value(result), f"{verdict(result)}Prediction took **{elapsed:.1f} ms** (decode included)."

    @user_errors
    def explain(self, image: str | None, method: str, target: str | None, alpha: float,
                request: gr.Request) -> tuple[np.ndarray | None, str]:
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
    def class_choices(self, request: gr.Request) -> Any:
        """The "Explain class" options for the session's active model."""
        _, model = self.ctx.active_model(request)
        labels = get_bundle(model).labels
        return gr.Dropdown(choices=[("top prediction", "")] + [(label, label) for label in labels], value="")
