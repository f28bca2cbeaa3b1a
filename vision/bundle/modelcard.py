"""The ``README.md`` model card written into every bundle, with Hub-valid YAML metadata."""

from __future__ import annotations

import json
from typing import Any

SHOWN_LABELS = 30  # an ImageNet card lists the first few; vision.json has them all


def render_model_card(info: dict[str, Any]) -> str:
    """Markdown for a bundle's ``vision.json`` contents ``info``, YAML front matter first."""
    metrics = info.get("metrics") or {}
    labels = info.get("labels", [])
    front = {
        "library_name": "keras",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "keras", "vision", info.get("architecture", "")],
    }
    if info.get("base_model"):
        front["tags"].append(f"base:{info['base_model']}")
    lines = ["---"]
    for key, value in front.items():
        lines.append(f"{key}: {json.dumps(value)}")
    if "accuracy" in metrics:
        lines += [
            "model-index:",
            f"- name: {json.dumps(info.get('name', 'model'))}",
            "  results:",
            "  - task: {type: image-classification, name: Image Classification}",
            f"    dataset: {{type: custom, name: {json.dumps(str(info.get('dataset', {}).get('source', 'custom')))}}}",
            "    metrics:",
            f"    - {{type: accuracy, value: {float(metrics['accuracy']):.4f}, name: Validation accuracy}}",
        ]
        if "macro_f1" in metrics:
            lines.append(f"    - {{type: f1, value: {float(metrics['macro_f1']):.4f}, name: Macro F1}}")
    lines.append("---")
    size = info.get("preprocessing", {}).get("size", ["?", "?"])
    shown = ", ".join(f"`{label}`" for label in labels[:SHOWN_LABELS])
    if len(labels) > SHOWN_LABELS:
        shown += f" and {len(labels) - SHOWN_LABELS} more (all in `vision.json`)"
    scale = float(info.get("preprocessing", {}).get("scale", 1 / 255))
    offset = float(info.get("preprocessing", {}).get("offset", 0.0))
    body = [
        f"# {info.get('name', 'model')}",
        "",
        f"An image classifier ({info.get('architecture', '?')}, {size[0]}x{size[1]} RGB input) "
        f"for {len(labels)} classes: {shown}.",
        "",
        "## Metrics (validation split)",
        "",
    ]
    if metrics:
        for key in ("accuracy", "macro_f1", "loss"):
            if key in metrics:
                body.append(f"- {key}: {float(metrics[key]):.4f}")
    else:
        body.append("Not evaluated.")
    calibration, ood = info.get("calibration"), info.get("ood")
    if calibration or ood:
        body += ["", "## Confidence and \"unknown\"", ""]
    if calibration:
        # Bundles made before "method" was recorded were all fitted on their validation split.
        held_out = (f"{calibration['images']} out-of-fold answers (k-fold heads over every training photo: "
                    "too few validation images to fit on)" if calibration.get("method") == "k-fold out-of-fold"
                    else f"{calibration['images']} validation images")
        body.append(f"- Temperature scaling, T = {calibration['temperature']:.3f} (folded into the `logits` "
                    f"layer): expected calibration error {calibration['ece_before']:.3f} before, "
                    f"{calibration['ece_after']:.3f} after, on {held_out} (`reliability.png`).")
    if ood:
        body.append(f"- Out-of-distribution detector `{ood['method']}`, threshold {ood['threshold']:.4f}: "
                    "below it the answer is \"unknown\"" + (f" (accepts {ood['accept_rate']:.0%} of "
                                                             f"{ood['held_out_images']} held-out images)"
                                                             if ood.get("accept_rate") is not None else "") + ".")
    body += [
        "",
        "## Use",
        "",
        "```python",
        "import keras",
        "model = keras.saving.load_model(\"path/to/this/folder\")  # or \"hf://user/repo\"",
        "```",
        "",
        "Input: float32 RGB, resized bilinearly to the size above, "
        f"value (0-255) * {scale:.6g} {'-' if offset < 0 else '+'} {abs(offset):.6g}. Output: class probabilities "
        "in the label order of `vision.json`.",
        "",
        "## Training",
        "",
        "```json",
        json.dumps({"training": info.get("training", {}), "dataset": info.get("dataset", {}),
                    # How a smaller variant was made from its original (``vision.training.compress``).
                    **{key: info[key] for key in ("distillation", "pruning") if key in info}},
                   indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines + [""] + body)
