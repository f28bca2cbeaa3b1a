"""The Gradio app (grows with the app issue): classify an image with the default model."""

from __future__ import annotations

import os

import gradio as gr

from vision.cli import DEFAULT_MODEL
from vision.errors import VisionError
from vision.inference import get_classifier


def classify(image):
    if image is None:
        raise gr.Error("Upload an image first.")
    try:
        predictions = get_classifier(DEFAULT_MODEL).predict(image, top_k=5)
    except VisionError as error:
        raise gr.Error(str(error)) from None
    return {p.label: p.probability for p in predictions}


with gr.Blocks(title="vision") as demo:
    image = gr.Image(type="numpy", label="Image")
    labels = gr.Label(num_top_classes=5)
    image.change(classify, image, labels, api_name="classify")

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("HOST", "127.0.0.1"), server_port=int(os.environ.get("PORT", 7860)))
