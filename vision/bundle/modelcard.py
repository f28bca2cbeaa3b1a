"""The ``README.md`` model card written into every bundle, with Hub-valid YAML metadata."""

from __future__ import annotations

import json
from typing import Any

SHOWN_LABELS = 30  # an ImageNet card lists the first few; vision.json has them all
#: What the owner sets (``python -m vision describe``): kept under ``card`` in ``vision.json``.
CARD_FIELDS = ("title", "description", "author")


def card_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What a visitor is shown of a model (the app's Classify header, the page's title):
    its title (the owner's, else its name), description, author, classes, validation
    accuracy, training images and whether its confidences are calibrated; a figure the
    bundle does not have is None."""
    card = info.get("card") or {}
    metrics = info.get("metrics") or {}
    dataset = info.get("dataset") or {}
    counts = dataset.get("train_counts")
    images = sum(int(n) for n in counts.values()) if isinstance(counts, dict) else None
    if images is not None and isinstance(dataset.get("val_counts"), dict):
        images += sum(int(n) for n in dataset["val_counts"].values())
    accuracy = metrics.get("accuracy")
    return {
        "title": str(card.get("title") or info.get("name") or "model"),
        "description": str(card.get("description") or ""),
        "author": str(card.get("author") or ""),
        "labels": [str(label) for label in info.get("labels", [])],
        "accuracy": float(accuracy) if isinstance(accuracy, (int, float)) else None,
        "images": images,
        "calibrated": bool(info.get("calibration")),
    }


def render_model_card(info: dict[str, Any]) -> str:
    """Markdown for a bundle's ``vision.json`` contents ``info``, YAML front matter first."""
    return "\n".join(_front_matter(info) + [""] + _about(info) + _trust(info) + _use(info))


def _front_matter(info: dict[str, Any]) -> list[str]:
    metrics = info.get("metrics") or {}
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
    return lines


def _about(info: dict[str, Any]) -> list[str]:
    metrics = info.get("metrics") or {}
    labels = info.get("labels", [])
    card = card_summary(info)
    size = info.get("preprocessing", {}).get("size", ["?", "?"])
    shown = ", ".join(f"`{label}`" for label in labels[:SHOWN_LABELS])
    if len(labels) > SHOWN_LABELS:
        shown += f" and {len(labels) - SHOWN_LABELS} more (all in `vision.json`)"
    body = [f"# {card['title']}", ""]
    if card["description"]:
        body += [card["description"], ""]
    if card["author"]:
        body += [f"Made by {card['author']}.", ""]
    body += [
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
    return body


def _trust(info: dict[str, Any]) -> list[str]:
    body: list[str] = []
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
    return body


def _use(info: dict[str, Any]) -> list[str]:
    scale = float(info.get("preprocessing", {}).get("scale", 1 / 255))
    offset = float(info.get("preprocessing", {}).get("offset", 0.0))
    return [
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
                    # How a smaller variant was made from its original (``vision.optimize.compress``).
                    **{key: info[key] for key in ("distillation", "pruning") if key in info}},
                   indent=2, sort_keys=True),
        "```",
        "",
    ]
