"""vision: train, explain, serve and export image classifiers.

Modules, one job each: ``images`` (decode + the shared preprocessing), ``synthetic``,
``archives``, ``data``, ``models``, ``train``, ``evaluate``, ``store`` (the model
bundle), ``modelcard``, ``inference``, ``cli``. TensorFlow is imported lazily by the
modules that need it, so ``import vision`` stays cheap.
"""

__version__ = "0.1.0"
