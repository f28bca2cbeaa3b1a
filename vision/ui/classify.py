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

from vision.cache import get_bundle, get_classifier, get_explainer
from vision.images import load_image
from vision.overlay import overlay
from vision.ui.context import Context
from vision.ui.errors import user_errors


class ClassifyView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @user_errors
    def classify(self, image: str | None, top_k: int, request: gr.Request) -> tuple[dict[str, float], str]:
        if not image:
            return {}, ""  # cleared
        _, model = self.ctx.active_model(request)
        started = time.perf_counter()
        predictions = get_classifier(model).predict(image, top_k=int(top_k))
        elapsed = (time.perf_counter() - started) * 1000
        return ({p.label: p.probability for p in predictions},
                f"Prediction took **{elapsed:.1f} ms** (decode included).")

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
