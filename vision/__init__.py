"""vision: train, explain, serve and export image classifiers.

Grouped by stage, one folder each: ``data`` (decode, guard, datasets), ``models`` (the registry
and the networks), ``trust`` ("unknown", calibration, label audit), ``bundle`` (a model as a
folder), ``runtime`` (fast inference), ``explain`` (Grad-CAM), ``training``, ``export`` (TF.js,
TFLite, SavedModel, ONNX), ``optimize`` (smaller variants), ``zoo`` (ready-made models),
``serve`` (the serving protocols and the web page) and ``ui`` (the Gradio app), with ``hub``,
``cli``, ``errors`` and a few small modules beside them. TensorFlow is imported only by the
modules that need it, so ``import vision`` and the CLI's start stay cheap.

``STAGES`` is the order they build on each other: a module imports only from its own stage and
the stages before it, imports inside functions included (``tests/test_layout.py`` checks it).
Where two stages need each other, the shared piece moves down or the caller moves up.
"""

__version__ = "0.1.0"

#: The stages, bottom first, each a folder or a top-level module of ``vision``.
STAGES: tuple[tuple[str, ...], ...] = (
    ("errors", "defaults", "redact", "timing"),  # no vision imports: every stage may use them
    ("plots",),  # a leaf: draws the figures it is handed, and knows no stage that makes them
    ("data", "feedback_store"),  # pixels and labels in (visitors' labelled photos among them)
    ("models",),  # what a network is
    ("trust",),  # whether to believe an answer
    ("bundle",),  # a model as a folder, and reading foreign model files
    ("runtime",),  # running a bundle fast: LiteRT, and the int8 conversion and its I/O arithmetic
    ("explain",),  # why it answered
    ("training",),  # making and changing models: fit, distil, prune, QAT, bias correction
    ("export",),  # taking a model elsewhere: every format, and its parity figures
    ("optimize",),  # a recipe that trains *and* exports, so it sits above both
    ("zoo",),  # ready-made models
    ("hub",),  # the Hugging Face Hub
    ("serve",),  # protocols (TF Serving REST and gRPC), limits, client identity, the web page
    ("ui", "cli", "__main__"),  # wiring for people
)
