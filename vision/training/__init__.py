"""Training a classifier: the configuration, the Keras loop on images, the fast path on cached
features, the recipe that turns a dataset into a saved bundle, background jobs and metrics.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["TrainConfig", "TrainProgress", "TrainResult"],
        "recipe": ["TrainedBundle", "train", "train_bundle"],
        "loop": ["fit_on_images"],
        "fast": ["train_on_features"],
        "jobs": ["TrainingJob", "JobFinished", "JobFailed"],
        "evaluate": ["Evaluation", "evaluate_classifier", "evaluate_model", "evaluation_from_probabilities"],
    },
)
