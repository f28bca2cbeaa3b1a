"""Each model's top-1 answers on the same images, computed here rather than by the code under
test: the compression table's agreement column is checked against them (``test_compress.py``,
``test_optimize_view.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vision.data.datasets import Split


def top1_answers(check: Split, models: dict[str, Any], int8_bundle: Any) -> dict[str, np.ndarray]:
    """Each model's top-1 answers on ``check``: a bundle's Keras model, or a full-integer
    flatbuffer (path) run on LiteRT directly, fed as its input tensor's quantization says."""
    from ai_edge_litert.interpreter import Interpreter

    from vision.data.images import input_side, load_image, preprocess

    pixels = [load_image(source, max_side=input_side((512, 512))) for source in check.sources()]
    answers = {}
    for name, model in models.items():
        if not isinstance(model, Path):
            x = np.stack([np.asarray(preprocess(p, model.preprocessing), np.float32) for p in pixels])
            answers[name] = np.asarray(model.model(x)).argmax(-1)
            continue
        interpreter = Interpreter(model_content=model.read_bytes())
        interpreter.allocate_tensors()
        given = interpreter.get_input_details()[0]
        output = next(d for d in interpreter.get_output_details() if d["shape"][-1] == len(int8_bundle.labels))
        top1 = []
        for p in pixels:
            x = np.asarray(preprocess(p, int8_bundle.preprocessing), np.float32)
            if given["dtype"] != np.float32:
                scale, zero_point = given["quantization"]
                x = np.clip(np.round(x / scale + zero_point), -128, 127).astype(given["dtype"])
            interpreter.set_tensor(given["index"], x[None])
            interpreter.invoke()
            top1.append(int(np.argmax(interpreter.get_tensor(output["index"])[0])))
        answers[name] = np.array(top1)
    return answers
