"""The Classify view: top-k labels and a Grad-CAM overlay for one uploaded image.

Uploads arrive as files, untouched (``gr.Image(image_mode=None)``), so ``load_image``
checks the format and pixel count from the header before anything is decoded, and the
app answers exactly as the library does for the same file.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import numpy as np

from vision.data.images import load_image
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
        result = get_classifier(model).classify(image, top_k=int(top_k))
        elapsed = (time.perf_counter() - started) * 1000
        return label_value(result), f"{verdict(result)}Prediction took **{elapsed:.1f} ms** (decode included)."

    @user_errors
    def explain(self, image: str | None, method: str, target: str | None, alpha: float,
                request: gr.Request) -> tuple[np.ndarray | None, str]:
        if not image:
            return None, ""
        _, model = self.ctx.active_model(request)
        pixels = load_image(image)
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
