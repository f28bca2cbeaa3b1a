"""The Live view: webcam frames streamed to the server, labels back, frames/s shown."""

from __future__ import annotations

import time

import gradio as gr
import numpy as np

from vision.errors import VisionError
from vision.ui.cache import get_classifier
from vision.ui.classify import label_value
from vision.ui.context import Context


class LiveView:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def frame(self, frame: np.ndarray | None, request: gr.Request) -> tuple[dict[str, float] | str, str]:
        """Classify one frame; a bad frame is skipped with its reason, the stream goes on."""
        if frame is None:
            return {}, ""
        try:
            session, model = self.ctx.active_model(request)
            result = get_classifier(model).classify(frame, top_k=3)
        except VisionError as error:
            return {}, f"frame skipped: {error}"
        times = session.frame_times
        times.append(time.perf_counter())
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return label_value(result), f"**{fps:.1f}** frames/s processed ({len(times)} recent)"
