"""What a network is: the registry of architectures, EfficientNet-Lite0 and its ImageNet weights,
the classification head every model ends in, the served graph, and cached frozen-backbone features.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "registry": ["ModelSpec", "create_model", "get_spec", "list_models", "register"],
        "heads": ["LOGITS_LAYER", "OUTPUT_LAYER", "classification_head", "freeze_pretrained"],
        "efficientnet_lite": ["efficientnet_lite0", "load_imagenet_weights", "imagenet_classifier", "imagenet_labels"],
        "serving": ["feature_model", "serving_model", "split_outputs", "with_preprocessing"],
        "features": ["FeatureExtractor", "get_extractor"],
        "checkpoint": ["load_legacy_state_dict"],
    },
)
