"""vision: train, explain, serve and export image classifiers.

Grouped by stage, one folder each: ``data`` (decode, guard, datasets), ``models`` (the registry
and the networks), ``training``, ``trust`` ("unknown", calibration, label audit), ``bundle`` (a
model as a folder), ``runtime`` (fast inference), ``explain`` (Grad-CAM), ``export`` (TF.js,
TFLite, SavedModel, the web page), ``zoo`` (ready-made models) and ``ui`` (the Gradio app), with
``hub``, ``cli`` and ``errors`` beside them. TensorFlow is imported only by the modules that
need it, so ``import vision`` and the CLI's start stay cheap.
"""

__version__ = "0.1.0"
