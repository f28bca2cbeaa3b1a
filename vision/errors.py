"""Every error the package raises on purpose.

Each subclass also inherits the builtin it resembles, so callers that only know
``ValueError`` or ``FileNotFoundError`` still catch it (the huggingface_hub pattern).
The app turns any ``VisionError`` into a message for the user; anything else is a bug.
"""

from __future__ import annotations


class VisionError(Exception):
    """Base class: a problem with the user's input or environment, explained in the message."""


class InvalidImageError(VisionError, ValueError):
    """The input could not be decoded into an image."""


class EmptyImageError(InvalidImageError):
    """The file or buffer holds zero bytes."""


class NotAnImageError(InvalidImageError):
    """The bytes are not in any image format Pillow can read."""


class TruncatedImageError(InvalidImageError):
    """The image header is valid but the pixel data ends early or is corrupt."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the configured cap (decompression-bomb guard)."""


class DatasetError(VisionError, ValueError):
    """A dataset folder, archive or name cannot be used for training."""


class UnsafeArchiveError(DatasetError):
    """An archive tries to escape its folder, holds links, or exceeds the size/count caps."""


class UnknownModelError(VisionError, ValueError):
    """A model architecture name is not in the registry."""


class WeightsUnavailableError(VisionError, RuntimeError):
    """Pretrained weights were asked for but cannot be fetched (usually: no network)."""


class ModelNotFoundError(VisionError, FileNotFoundError):
    """No model bundle exists where one was named."""


class InvalidBundleError(VisionError, ValueError):
    """A model bundle exists but is incomplete or inconsistent."""


class TrainingCancelledError(VisionError):
    """Training was stopped by the caller before it finished."""


class BundleExistsError(InvalidBundleError, FileExistsError):
    """A model bundle already exists where a new one would be written."""


class ExplainError(VisionError, ValueError):
    """An explanation cannot be computed (unknown method, class or layer)."""


class ExportError(VisionError, RuntimeError):
    """An export failed, or its output did not match the Keras model."""


class HubError(VisionError, RuntimeError):
    """The Hub could not do what was asked; the message says why and what to do."""


class HubAuthError(HubError, PermissionError):
    """Missing, invalid or insufficient token."""


class TokenRejectedError(HubAuthError):
    """The Hub answered 401 to the token sent. The message is neutral: what to do about it
    depends on who is asking (a CLI user's ``HF_TOKEN``, an app visitor's typed token)."""


class HubNotFoundError(HubError, FileNotFoundError):
    """The repository, revision or file does not exist (or is private to others)."""


class HubConnectionError(HubError, ConnectionError):
    """The Hub cannot be reached: no network, time-out, or offline mode."""


class AccessDeniedError(VisionError, PermissionError):
    """The caller may not do this: an owner-only action, or another session's model."""


class LimitExceededError(VisionError, ValueError):
    """A per-call or per-session limit (files, samples, models, disk) would be exceeded."""


class TrainingConfigError(VisionError, ValueError):
    """A training option that does not exist, or that the chosen training path cannot do."""


class InvalidModelFileError(VisionError, ValueError):
    """A model file from elsewhere (Teachable Machine, Keras 2, TF.js, TFLite) is malformed,
    too large, or uses something that is not accepted (Lambda layers, custom classes)."""
