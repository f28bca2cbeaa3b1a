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


def build(view: LiveView) -> None:
    """The Live tab: webcam frames streamed to the server, labels back."""
    with gr.Tab("Live", id="live"):
        gr.Markdown("Start the webcam: labels update continuously while frames stream to the server.")
        with gr.Row():
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                              webcam_options=gr.WebcamOptions(mirror=True), elem_id="live-camera")
            with gr.Column():
                live_labels = gr.Label(num_top_classes=3, label="Live prediction", elem_id="live-prediction")
                fps = gr.Markdown(elem_id="live-fps")
        camera.stream(view.frame, camera, [live_labels, fps], stream_every=0.08, time_limit=300,
                      concurrency_limit=8, concurrency_id="live", api_name="live", show_progress="hidden")
