"""The explanation methods, named without importing TensorFlow: the CLI's ``--help`` and the
app list them, ``vision.explain.cam`` computes them."""

from __future__ import annotations

METHODS = ("gradcam", "gradcam++", "scorecam")
