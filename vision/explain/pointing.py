"""The pointing game: does a heatmap's peak fall inside the object's bounding box?

A check of explanations against ground truth (the synthetic dataset's boxes), with a
random-point baseline computed on the same images for contrast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from vision.explain.cam import Explainer


@dataclass
class PointingResult:
    hits: int
    evaluated: int  # correctly classified images, the only ones scored
    skipped_wrong: int  # misclassified images, left out
    random_hits: int  # a uniformly random point per image, seeded
    expected_random: float  # mean box area / image area: the baseline's expectation

    @property
    def rate(self) -> float:
        return self.hits / max(self.evaluated, 1)

    @property
    def random_rate(self) -> float:
        return self.random_hits / max(self.evaluated, 1)


def pointing_game(explainer: Explainer, samples: Iterable[tuple[np.ndarray, int, np.ndarray]],
                  method: str = "gradcam", seed: int = 0) -> PointingResult:
    """Score ``explainer`` on (image, true label index, box x0 y0 x1 y1) samples."""
    rng = np.random.default_rng(seed)
    hits = evaluated = wrong = random_hits = 0
    area_fractions = []
    for image, label, box in samples:
        explanation = explainer.explain(image, method=method)
        if explanation.class_index != int(label):
            wrong += 1
            continue
        evaluated += 1
        height, width = explanation.heatmap.shape
        row, col = np.unravel_index(int(np.argmax(explanation.heatmap)), explanation.heatmap.shape)
        hits += _inside(col + 0.5, row + 0.5, box)
        random_hits += _inside(rng.uniform(0, width), rng.uniform(0, height), box)
        area_fractions.append((box[2] - box[0]) * (box[3] - box[1]) / (width * height))
    return PointingResult(hits, evaluated, wrong, random_hits,
                          float(np.mean(area_fractions)) if area_fractions else 0.0)


def _inside(x: float, y: float, box: np.ndarray) -> bool:
    x0, y0, x1, y1 = box
    return bool(x0 <= x <= x1 and y0 <= y <= y1)
