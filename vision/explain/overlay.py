"""Colour heatmaps and their overlay on the original image (display only; the maths is in
``vision.explain.cam``)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image


@lru_cache(maxsize=4)
def _lookup_table(colormap: str) -> np.ndarray:
    import matplotlib  # lazy: matplotlib is slow to import, and the CLI's start imports this module

    return (matplotlib.colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A (H, W) heatmap in [0, 1] as an RGB uint8 image."""
    indices = np.clip(np.nan_to_num(heatmap) * 255, 0, 255).astype(np.uint8)
    return _lookup_table(colormap)[indices]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend the coloured ``heatmap`` over ``image`` (RGB uint8, same H, W).

    ``alpha`` is the heatmap's opacity, 0 (image only) to 1 (heatmap only). A heatmap of
    another size is resized to the image first.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha}")
    if heatmap.shape != image.shape[:2]:
        heatmap = resize_heatmap(heatmap, image.shape[:2])
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(heatmap, colormap).astype(np.float32)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float heatmap to ``size`` = (H, W), clipped to [0, 1]."""
    height, width = size
    resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)
