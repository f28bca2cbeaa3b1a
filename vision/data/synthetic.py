"""A built-in dataset of coloured shapes on cluttered backgrounds, with bounding boxes.

It lets the project train, test and demo without downloading anything, and its boxes are
ground truth for checking where Grad-CAM looks. Each image holds one shape of random size,
rotation, position and colour over a random gradient with distractor lines and dots.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
BOXES_FILE = "boxes.json"
_SUPERSAMPLE = 2  # draw at twice the size, then downsample: smooth, antialiased edges


@dataclass
class ShapesDataset:
    """Images (N, H, W, 3) uint8, integer labels (N,), boxes (N, 4) as x0, y0, x1, y1 pixels."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    class_names: tuple[str, ...] = SHAPES


def make_shapes(per_class: int = 100, size: int = 64, seed: int = 0) -> ShapesDataset:
    """Render ``per_class`` images of each shape, shuffled, reproducible from ``seed``."""
    if per_class < 1 or size < 16:
        raise ValueError(f"need per_class >= 1 and size >= 16; got {per_class}, {size}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(SHAPES)), per_class)
    rng.shuffle(labels)
    images = np.empty((len(labels), size, size, 3), np.uint8)
    boxes = np.empty((len(labels), 4), np.float32)
    for i, label in enumerate(labels):
        images[i], boxes[i] = _render(SHAPES[label], size, rng)
    return ShapesDataset(images, labels.astype(np.int64), boxes)


def write_shapes(
    folder: str | Path, per_class: int = 100, size: int = 64, seed: int = 0,
    val_fraction: float = 0.2,
) -> Path:
    """Write the shapes as ``folder/{train,val}/<shape>/<n>.png`` plus ``boxes.json``.

    ``boxes.json`` maps each image's path relative to ``folder`` to its box [x0, y0, x1, y1].
    """
    folder = Path(folder)
    data = make_shapes(per_class, size, seed)
    n_val = int(round(per_class * val_fraction))  # per class, so both splits stay balanced
    seen = [0] * len(SHAPES)
    boxes: dict[str, list[float]] = {}
    for i, (image, label, box) in enumerate(zip(data.images, data.labels, data.boxes)):
        split = "val" if seen[label] < n_val else "train"
        seen[label] += 1
        relative = f"{split}/{SHAPES[label]}/{i:05d}.png"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / relative)
        boxes[relative] = [round(float(v), 2) for v in box]
    (folder / BOXES_FILE).write_text(json.dumps(boxes, indent=1, sort_keys=True))
    return folder


def _render(shape: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    big = size * _SUPERSAMPLE
    canvas = _background(big, rng)
    draw = ImageDraw.Draw(canvas)
    _clutter(draw, big, rng)

    radius = rng.uniform(0.16, 0.32) * big
    margin = radius * 1.05
    cx, cy = rng.uniform(margin, big - margin, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    colour = _vivid_colour(rng)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        xs, ys = np.array([cx - radius, cx + radius]), np.array([cy - radius, cy + radius])
    else:
        points = _polygon(shape, cx, cy, radius, angle)
        draw.polygon([tuple(p) for p in points], fill=colour)
        xs, ys = points[:, 0], points[:, 1]

    image = canvas.resize((size, size), Image.Resampling.LANCZOS)
    box = np.clip(np.array([xs.min(), ys.min(), xs.max(), ys.max()]) / _SUPERSAMPLE, 0, size)
    return np.asarray(image, np.uint8), box.astype(np.float32)


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    if shape == "square":
        radii, count = [radius], 4
    elif shape == "triangle":
        radii, count = [radius * 1.1], 3
    elif shape == "star":
        radii, count = [radius * 1.1, radius * 0.45], 10
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    theta = angle + np.arange(count) * 2 * math.pi / count
    r = np.resize(np.array(radii), count)
    return np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1)


def _vivid_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _dull_colour(rng: np.random.Generator) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.1, 0.6))
    return np.array([r, g, b]) * 255


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    start, end = _dull_colour(rng), _dull_colour(rng)
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size] / size
    t = np.clip(0.5 + (xs - 0.5) * math.cos(direction) + (ys - 0.5) * math.sin(direction), 0, 1)
    pixels = start + t[..., None] * (end - start) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _clutter(draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
    # Thin lines and dots in muted colours: texture a model must learn to ignore.
    for _ in range(rng.integers(3, 8)):
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        draw.line([x0, y0, x1, y1], fill=tuple(int(v) for v in _dull_colour(rng) * 1.3),
                  width=int(rng.integers(1, 4)))
    for _ in range(rng.integers(5, 15)):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(1, size * 0.025)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in _dull_colour(rng)))
