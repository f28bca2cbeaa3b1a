"""What every view's builder shares: the concurrency groups and the untouched-upload image input.

Each view builds its own tab beside its handlers (``classify.build``, ``live.build``, ...);
``vision.ui.layout`` puts them together and wires what crosses views.
"""

from __future__ import annotations

import gradio as gr

UPLOAD = dict(type="filepath", image_mode=None)

# Concurrency groups: Gradio queues each group separately, so a cheap event never waits
# behind an expensive one, and ``vision.ui.fairness`` caps each session's share of a group.
QUICK = dict(concurrency_id="quick", concurrency_limit=4)  # classify, lists, cards: milliseconds
EXPLAIN = dict(concurrency_id="explain", concurrency_limit=2)
SAMPLES = dict(concurrency_id="samples", concurrency_limit=2)
TRAIN = dict(concurrency_id="train", concurrency_limit=1)
EXPORT = dict(concurrency_id="export", concurrency_limit=1)
HUB = dict(concurrency_id="hub", concurrency_limit=2)


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
